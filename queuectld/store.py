"""The queue and its journal together: every change goes through `Store.record`.

Recording writes the events to the journal first, so that a full disk
refuses the change before memory sees it, and then applies them to the
queue.  A caller that acknowledges the change awaits `commit()` first.
"""

from __future__ import annotations

from collections.abc import Callable

from queuectl_client import protocol as p

from . import events as ev
from .journal import Journal
from .queue import Queue

Listener = Callable[[p.Message], None]


class Store:
    def __init__(self, queue: Queue, journal: Journal) -> None:
        self.queue = queue
        self.journal = journal
        self.listeners: set[Listener] = set()  # subscribers to job events

    def record(self, events: list[ev.Event]) -> None:
        """Write and apply; raises journal.DiskFull or SyncFailed with nothing changed."""
        self.journal.write(events)
        apply = self.queue.apply
        for e in events:
            apply(e)

    async def commit(self, events: list[ev.Event]) -> None:
        """Record, then wait until the events are on disk."""
        self.record(events)
        await self.journal.commit()

    def broadcast(self, msg: p.Message) -> None:
        for listener in list(self.listeners):
            listener(msg)
