from .quick import entry

entry()
