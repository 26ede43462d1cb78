"""The dashboard's one connection to queuectld, shared by every browser.

The blocking `Client` runs in a worker thread, one request at a time under a
lock: the daemon never sees more than one request in flight from a dashboard,
however many pages are open.  A lost connection is opened again by the next
request, so a daemon restart is a few failed requests (the page says the
daemon is unreachable), then business as usual.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, TypeVar

from .. import protocol as p
from ..connection import Client, ConnectionLost, DaemonUnavailable

T = TypeVar("T")


class Unreachable(Exception):
    """The daemon did not answer: not running, restarting, or its socket is gone."""


class Link:
    def __init__(self, home: str | None) -> None:
        self.client = Client(home, autostart=False, via="dashboard")
        self.lock = asyncio.Lock()

    async def call(self, fn: Callable[[Client], T]) -> T:
        """Run `fn(client)` in a thread, alone; a daemon's refusal is the client's `RequestFailed`, a dead
        socket `Unreachable`."""
        async with self.lock:
            return await asyncio.to_thread(self._guarded, fn)

    def _guarded(self, fn: Callable[[Client], T]) -> T:
        try:
            return fn(self.client)
        except (DaemonUnavailable, ConnectionLost, OSError) as e:
            self.client.close()
            raise Unreachable(str(e).splitlines()[0] if str(e) else "queuectld is not answering") from None

    async def request(self, msg: p.Message) -> Any:
        """One request, its one reply.  A lost reply is asked again only for a read; a change is sent after
        a read has found the connection alive (or opened it again), so that a connection the daemon dropped
        while nobody asked anything (a restart) does not lose the first click after it."""
        if _is_read(msg):
            return await self.call(lambda c: c.request(msg))

        def change(c: Client) -> Any:
            c.request(p.Status())
            return c.request(msg, retry=False)

        return await self.call(change)

    def close(self) -> None:
        self.client.close()


_READS = (p.Status, p.Show, p.Logs, p.GroupList, p.ScheduleList, p.Why, p.Stats, p.Metrics, p.Page, p.Audit)


def _is_read(msg: p.Message) -> bool:
    return isinstance(msg, _READS)
