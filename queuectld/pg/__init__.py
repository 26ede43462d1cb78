"""The PostgreSQL store: several queuectld on one database serve one queue (see docs/DECISIONS.md)."""
