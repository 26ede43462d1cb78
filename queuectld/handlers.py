"""One handler per request: check it, change the queue through the store, reply.

Handlers never touch processes or sockets.  A handler returns its reply, or
for streaming requests sends frames through the connection it is given.
Refusals are raised as QueueError, ConfigError or JournalError and turned
into `Error` replies by the server.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from queuectl_client import protocol as p
from queuectl_client.connection import __version__
from queuectl_client.paths import Paths

from . import events as ev
from . import faults
from .config import KEYS, canonical_key
from .pool import Pool, _remove
from .queue import DEAD, QueueError
from .store import Store

MAX_STAGED_JOBS = 2_000_000  # jobs in one multi-frame enqueue


class Conn(Protocol):
    """What a streaming handler needs from its connection."""

    staged: list[p.JobSpec]

    async def send(self, msg: p.Message) -> None: ...

    def send_nowait(self, msg: p.Message) -> bool: ...

    async def closed(self) -> None: ...


Handler = Callable[[Any, Conn], Awaitable[p.Message | None]]


class Handlers:
    def __init__(self, store: Store, pool: Pool, paths: Paths) -> None:
        self.store = store
        self.queue = store.queue
        self.pool = pool
        self.paths = paths
        self.started_at = time.time()
        self.table: dict[type, Handler] = {
            p.Enqueue: self.enqueue,
            p.Status: self.status,
            p.List: self.list,
            p.Show: self.show,
            p.Logs: self.logs,
            p.Delete: self.delete,
            p.DlqList: self.dlq_list,
            p.DlqRetry: self.dlq_retry,
            p.ConfigGet: self.config_get,
            p.ConfigSet: self.config_set,
            p.ConfigList: self.config_list,
            p.WorkerStart: self.worker_start,
            p.WorkerStop: self.worker_stop,
            p.Subscribe: self.subscribe,
        }

    async def enqueue(self, req: p.Enqueue, conn: Conn) -> p.Message | None:
        if req.more:
            if len(conn.staged) + len(req.jobs) > MAX_STAGED_JOBS:
                conn.staged = []
                raise QueueError("invalid", f"a batch may hold at most {MAX_STAGED_JOBS} jobs")
            conn.staged.extend(req.jobs)
            return None
        specs = conn.staged + req.jobs if conn.staged else req.jobs
        conn.staged = []
        added = self.queue.plan_add(specs, time.time(), req.id_prefix, req.cwd)
        await self.store.commit([added])
        faults.point("enqueue-committed")
        self.pool.dispatch()
        return p.Enqueued([j.id for j in added.jobs])

    async def status(self, req: p.Status, conn: Conn) -> p.Message:
        return p.StatusReply(
            self.queue.counts(), p.Workers(self.queue.pool_size, self.pool.busy),
            os.getpid(), __version__, self.started_at,
        )

    async def list(self, req: p.List, conn: Conn) -> None:
        await self._stream(req.state, req.limit, req.page_size, conn)

    async def dlq_list(self, req: p.DlqList, conn: Conn) -> None:
        await self._stream(DEAD, req.limit, req.page_size, conn)

    async def _stream(self, state: str | None, limit: int | None, page_size: int, conn: Conn) -> None:
        page: list[p.Job] = []
        for job in self.queue.iter_jobs(state, limit):
            if job.state not in p.STATES:  # deleted while the stream was sent
                continue
            page.append(job.view())
            if len(page) == page_size:
                await conn.send(p.JobPage(page, True))
                page = []
        await conn.send(p.JobPage(page, False))

    async def show(self, req: p.Show, conn: Conn) -> p.Message:
        return p.JobReply(self.queue.get(req.id).view())

    async def logs(self, req: p.Logs, conn: Conn) -> p.Message:
        job = self.queue.get(req.id)
        return p.LogsReply(job.view(), self.paths.output_file(job.id, "out"), self.paths.output_file(job.id, "err"))

    async def delete(self, req: p.Delete, conn: Conn) -> p.Message:
        await self.store.commit([self.queue.plan_delete(req.id, time.time())])
        _remove(self.paths.output_file(req.id, "out"), self.paths.output_file(req.id, "err"))
        return p.Ok()

    async def dlq_retry(self, req: p.DlqRetry, conn: Conn) -> p.Message:
        event = self.queue.plan_revive(req.ids, req.all, time.time())
        if event.ids:
            await self.store.commit([event])
            self.pool.dispatch()
        return p.Retried(event.ids)

    async def config_get(self, req: p.ConfigGet, conn: Conn) -> p.Message:
        key = canonical_key(req.key)
        return p.ConfigReply({key: self.queue.config.show(key)})

    async def config_set(self, req: p.ConfigSet, conn: Conn) -> p.Message:
        key, value = self.queue.config.parse(req.key, req.value)
        await self.store.commit([ev.ConfigChanged(key, value)])
        return p.ConfigReply({key: value})

    async def config_list(self, req: p.ConfigList, conn: Conn) -> p.Message:
        return p.ConfigReply({k: self.queue.config.show(k) for k in KEYS})

    async def worker_start(self, req: p.WorkerStart, conn: Conn) -> p.Message | None:
        if req.follow:
            # Listen before resizing, so the first starts are seen too.
            await self._follow(conn, self._resize(req.count))
            return None
        await self._resize(req.count)
        return p.Ok()

    async def _resize(self, count: int) -> None:
        events = self.pool.resize(count)
        if events:
            await self.store.commit(events)
        self.pool.dispatch()
        if self.pool.stopped():
            self.store.broadcast(p.PoolStopped())

    async def worker_stop(self, req: p.WorkerStop, conn: Conn) -> p.Message:
        await self._resize(0)
        await self.pool.idle.wait()
        return p.Ok()

    async def subscribe(self, req: p.Subscribe, conn: Conn) -> None:
        await self._follow(conn, None)

    async def _follow(self, conn: Conn, first: Awaitable[None] | None) -> None:
        """Forward job events until the pool stops (then PoolStopped) or the client hangs up."""
        loop = asyncio.get_running_loop()
        done: asyncio.Future[None] = loop.create_future()
        dropped = 0

        def listener(msg: p.Message) -> None:
            nonlocal dropped
            if done.done():
                return
            if isinstance(msg, p.PoolStopped):
                done.set_result(None)
                return
            if dropped and conn.send_nowait(p.EventsDropped(dropped)):
                dropped = 0
            if dropped or not conn.send_nowait(msg):
                dropped += 1

        self.store.listeners.add(listener)
        hangup = asyncio.ensure_future(conn.closed())
        try:
            if first is not None:
                await first
            if self.pool.stopped() and not done.done():
                done.set_result(None)
            await asyncio.wait([done, hangup], return_when=asyncio.FIRST_COMPLETED)
        finally:
            self.store.listeners.discard(listener)
            hangup.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await hangup
        if done.done():
            await conn.send(p.PoolStopped())
