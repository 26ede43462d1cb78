"""Text the OS hands over (arguments, paths) that may not be UTF-8.

Python decodes such bytes as surrogate escapes, which no request can carry
and no message should print raw: they are found here and shown as \\xNN.
"""

from __future__ import annotations


def utf8(text: str) -> bool:
    """Whether `text` holds no surrogate escape (or other lone surrogate), so it can be sent."""
    if text.isascii():
        return True
    try:
        text.encode()
    except UnicodeEncodeError:
        return False
    return True


def not_utf8(argv: list[str]) -> str | None:
    """What is wrong with the first argument that is not UTF-8, or None when all are.

    Python hands over bytes that are not UTF-8 as surrogate escapes, which
    no request can carry: they are refused here, once, for every command.
    """
    for n, arg in enumerate(argv, 1):
        if not utf8(arg):
            return f"argument {n} is not valid UTF-8: {shown_bytes(arg)}"
    return None


def shown_bytes(text: str, limit: int = 60) -> str:
    """Text that may hold surrogate escapes (bytes that are not UTF-8) as one printable line, bytes as \\xNN."""
    from .render import escaped

    try:
        raw = text.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:  # a surrogate that is no escaped byte
        raw = text.encode("utf-8", "backslashreplace")
    shown = escaped(raw.decode("utf-8", "backslashreplace")).replace("\n", "\\n").replace("\t", "\\t")
    return shown if len(shown) <= limit else shown[: limit - 1] + "…"


