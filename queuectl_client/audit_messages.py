"""The protocol's messages for the audit trail: `audit` asks, the daemon answers in pages.

`protocol` re-exports them and lists them among its requests and replies.
"""

from __future__ import annotations

from typing import Annotated

import msgspec

from .schema import Message

MAX_AUDIT_LIMIT = 2**31 - 1


class AuditEntry(msgspec.Struct, frozen=True, array_like=True, gc=False):
    """One change a person made (or one request the command policy refused): when, who, through
    what, the action and a bounded summary.  `uid` is the kernel's word (SO_PEERCRED); `via` is
    what the client said it is."""

    at: float
    uid: int
    via: str
    action: str
    detail: str


class Policy(msgspec.Struct, frozen=True):
    """The command policy a daemon enforces (`queuectld --allow-commands FILE`), as `status` shows it."""

    file: str
    patterns: int  # how many patterns it holds (a command must match one)
    loaded_at: float  # when the file was last read (at start, or on SIGHUP)


class Audit(Message, frozen=True):
    """The entries from `since` (Unix time) on, oldest first; with `limit`, only the newest `limit`."""

    since: float = 0.0
    limit: Annotated[int, msgspec.Meta(ge=0, le=MAX_AUDIT_LIMIT)] | None = None


class AuditReply(Message, frozen=True):
    """A page of entries, oldest first; every page but the last has `more=True`."""

    entries: list[AuditEntry]
    more: bool = False
    now: float = 0.0  # the daemon's clock when it answered
