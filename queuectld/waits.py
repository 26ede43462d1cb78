"""The `wait` request: the set of jobs it names (by id, in frames, and by state), sent with their states,
then their changes until every one is final or the time is up.

A multi-frame wait stages its ids per connection; the last frame starts the wait (or is refused, so that
each request still gets one reply).  The set is read a slice per loop turn, so that others are served
meanwhile; the bus is listened to before the read, so no change falls between the read and the listen.
"""

from __future__ import annotations

import asyncio
import contextlib
import weakref
from collections.abc import Iterable, MutableSequence
from itertools import islice
from typing import TYPE_CHECKING, Any

from queuectl_client import protocol as p

from .bus import DELETED, Bus, Watch
from .rereads import Reread
from .rules import FAILED, PENDING, PROCESSING, QueueError
from .store import Store

if TYPE_CHECKING:
    from .handlers import Conn

MAX_WAIT_IDS = 2_000_000  # ids in one multi-frame wait
WAIT_PAGE = 10_000  # jobs per WaitSet or WaitChanges frame
WAIT_SLICE = 1000  # jobs a wait reads per loop turn, so that others are served meanwhile
PROGRESS_PERIOD = 0.2  # seconds between the frames of a wait with `progress`


class Waits:
    def __init__(self, store: Store, bus: Bus) -> None:
        self.store = store
        self.bus = bus
        # Ids of a multi-frame wait, per connection (None: too many); they go with the connection.
        self.wait_ids: weakref.WeakKeyDictionary[Conn, list[str] | None] = weakref.WeakKeyDictionary()
        self.table: dict[type, Any] = {p.Wait: self.wait}

    async def wait(self, req: p.Wait, conn: Conn) -> None:
        staged = self.wait_ids.pop(conn, [])
        if staged is not None and len(staged) + len(req.ids) > MAX_WAIT_IDS:
            staged = None  # refused at the last frame, so that each request still gets one reply
        if req.more:
            if staged is not None:
                staged.extend(req.ids)
            self.wait_ids[conn] = staged
            return
        if staged is None:
            raise QueueError("invalid", f"a wait may name at most {MAX_WAIT_IDS} jobs")
        ids = staged + req.ids if staged else list(req.ids)
        del staged  # the watch keys each job by the store's copy of its id: these go once the set is read
        loop = asyncio.get_running_loop()
        deadline = None if req.timeout is None else loop.time() + req.timeout
        watch = Watch()
        self.bus.listeners.add(watch)  # before the set is read: no change falls between the read and the listen
        hangup = asyncio.ensure_future(conn.closed())
        try:
            timed_out = await self._follow_set(req, ids, watch, conn, hangup, deadline)
        finally:
            self.bus.listeners.discard(watch)
            hangup.cancel()  # before the last frame: what the client sends next is its next request
            with contextlib.suppress(asyncio.CancelledError):
                await hangup
        if timed_out is None:
            return
        await self.store.sync()  # what the wait reports as final is on disk
        await self._send_changes(conn, watch.take_changes(), done=True, timed_out=timed_out)

    async def _follow_set(self, req: p.Wait, ids: MutableSequence[str], watch: Watch, conn: Conn,
                          hangup: asyncio.Future[None], deadline: float | None) -> bool | None:
        """Read the set, send it, follow it until it is final (False) or the time is up (True).

        None: the client hung up.
        """
        if not await self._read_set(req, ids, watch, hangup):
            return None
        loop = asyncio.get_running_loop()
        final: asyncio.Future[None] = loop.create_future()

        def on_final() -> None:
            if not final.done():
                final.set_result(None)

        watch.on_final = on_final
        if not watch.open:
            on_final()
        watch.take_changes()  # the set sent holds them
        await self._send_set(conn, watch)
        reread = Reread(self.store, watch, loop.time())
        while not final.done():
            pause = None if deadline is None else deadline - loop.time()
            if pause is not None and pause <= 0:
                return True
            if req.progress:
                pause = PROGRESS_PERIOD if pause is None else min(pause, PROGRESS_PERIOD)
            await asyncio.wait([final, hangup], timeout=reread.pause(pause, loop.time()),
                               return_when=asyncio.FIRST_COMPLETED)
            if hangup.done():
                return None
            await reread(loop.time())
            if req.progress and not final.done():
                await self._send_changes(conn, watch.take_changes())
        return False

    async def _read_set(self, req: p.Wait, ids: MutableSequence[str], watch: Watch,
                        hangup: asyncio.Future[None]) -> bool:
        """Each job of the set with its state now, a slice per loop turn; False if the client hung up.

        Empties `ids` once read.
        """
        store = self.store
        for n, job_id in enumerate(ids, 1):
            try:
                job = await store.get(job_id)
            except QueueError as e:
                if not (req.resume and e.code == "not_found"):
                    raise
                watch.add(job_id, DELETED)
            else:
                watch.add(job.id, job.state)
            if n % WAIT_SLICE == 0:
                await asyncio.sleep(0)
                if hangup.done():
                    return False
        ids.clear()
        states: tuple[str, ...] = (req.state,) if req.state else ()
        if req.all:
            states += (PROCESSING, PENDING, FAILED)
        for state in states:
            async for page in store.pages(state, None, WAIT_SLICE):
                for job in page:
                    watch.add(job.id, job.state)
                await asyncio.sleep(0)
                if hangup.done():
                    return False
        return not hangup.done()

    async def _send_set(self, conn: Conn, watch: Watch) -> None:
        # The set no longer grows; its states may change meanwhile, and the changes follow.
        total = len(watch.states)
        items = iter(watch.states.items())
        for start in range(0, max(total, 1), WAIT_PAGE):
            await conn.send(p.WaitSet(_waited(islice(items, WAIT_PAGE)), start + WAIT_PAGE < total))
            await asyncio.sleep(0)

    async def _send_changes(self, conn: Conn, changes: dict[str, str], done: bool = False,
                            timed_out: bool = False) -> None:
        total = len(changes)
        items = iter(changes.items())
        for start in range(0, max(total, 1), WAIT_PAGE):
            last = start + WAIT_PAGE >= total
            await conn.send(p.WaitChanges(_waited(islice(items, WAIT_PAGE)), done and last, timed_out and last))
            await asyncio.sleep(0)


def _waited(items: Iterable[tuple[str, str]]) -> list[p.WaitedJob]:
    return [p.WaitedJob(job_id, state) for job_id, state in items]
