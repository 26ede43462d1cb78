"""Who asked for a change: the `Actor` a person's records carry, and the request's context.

The server sets `actor` around each request it handles (every connection is
its own asyncio task, so the value is the request's own); a store reads it
when it builds the record of a change, so the record says who made it.  The
daemon's own changes (retention, a schedule's fire, a run's start and end)
happen outside any request: their records carry None.

Imports nothing of the queue's state: the server sets it, the stores read it.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

import msgspec


class Actor(msgspec.Struct, frozen=True, array_like=True, gc=False):
    """Who made a change, as the daemon knows it when it handles the request.

    `uid` is the kernel's word (SO_PEERCRED); `via` is the client's own (its
    Hello: cli, shell, dashboard, python); `request` is the request's name
    (Enqueue, Rerun, Prune...), which tells apart changes that write the same record.
    """

    at: float
    uid: int
    via: str
    request: str = ""


actor: ContextVar[Actor | None] = ContextVar("actor", default=None)


@contextmanager
def acting(uid: int, via: str, request: str) -> Iterator[Actor]:
    """The changes made inside are recorded as made by `uid` through `via`."""
    who = Actor(time.time(), uid, via, request)
    token = actor.set(who)
    try:
        yield who
    finally:
        actor.reset(token)
