"""One handler per request: check it, change the queue through the store, reply.

Handlers decide; they never touch processes, files or sockets.  A change is
committed through the store, and then the pool is woken to act on it.  A
handler returns its reply, or for streaming requests sends frames through
the connection it is given.  Refusals are raised as QueueError, ConfigError
or StoreError and turned into `Error` replies by the server.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from queuectl_client import protocol as p
from queuectl_client.environ import inherited
from queuectl_client.wire import VERSION

from . import faults
from .audit_requests import AuditRequests
from .bus import Bus, Deleted, Notice
from .config import KEYS, canonical_key
from .control import Control, send_ids
from .nodes import NodeRequests
from .paging import Paging
from .policy import Policy
from .retention import Retention
from .rules import DEAD, QueueError
from .store import Store
from .waits import Waits

MAX_STAGED_JOBS = 2_000_000  # jobs in one multi-frame enqueue (a wait's ids: waits.py)
PAGE_BYTES = 4 << 20  # a page of jobs stays well under the frame limit, whatever their commands
JOB_OVERHEAD = 512  # a job's encoded size beyond its strings, at most (UTF-8 may take 4 bytes a character:
                    # counted below as 1, which PAGE_BYTES' margin under MAX_FRAME covers)


class Conn(Protocol):
    """What a streaming handler needs from its connection."""

    staged: list[p.JobSpec]

    async def send(self, msg: p.Message) -> None: ...

    def send_nowait(self, msg: p.Message) -> bool: ...

    async def closed(self) -> None: ...


class PoolControl(Protocol):
    """What handlers may ask of the pool: act on a change, and how busy it is."""

    idle: asyncio.Event

    @property
    def busy(self) -> int: ...

    def wake(self) -> None: ...

    def resized(self) -> None: ...

    def forget(self, job_ids: list[str]) -> None: ...

    def cancel(self, job_ids: list[str], signum: int, grace: float) -> None: ...

    def output_paths(self, job_id: str) -> tuple[str, str]: ...

    def stopped(self) -> bool: ...


Handler = Callable[[Any, Conn], Awaitable[p.Message | None]]


class Handlers:
    def __init__(self, store: Store, pool: PoolControl, bus: Bus, retention: Retention,
                 scheduler: Any = None, observer: Any = None, policy: Policy | None = None) -> None:
        self.store = store
        self.pool = pool
        self.bus = bus
        self.retention = retention
        self.node = store.node
        self.started_at = time.time()
        self.own_env = inherited(os.environ)  # for the jobs of a client that sends no environment
        self.stopping = False  # the daemon is shutting down: reads and changes go on, the pool is not resized
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
            p.Why: self.why,
        }
        self.table.update(Control(store, pool, bus, retention).table)
        self.table.update(Paging(store).table)
        self.table.update(Waits(store, bus).table)
        self.table.update(NodeRequests(store, pool, self.started_at).table)
        if scheduler is not None:
            self.table.update(scheduler.table)  # scheduler.Scheduler: the schedule requests
        if observer is not None:
            self.table.update(observer.table)  # metrics.Observer: Stats and Metrics
        self.table.update(AuditRequests(store, policy, self.table).table)  # last: it checks the requests above

    def stop(self) -> None:
        """The daemon begins to stop: say so to every follower, whose stream then ends."""
        self.stopping = True
        self.bus.publish(p.Error("stopping", f"queuectld (pid {os.getpid()}) is stopping"))

    async def enqueue(self, req: p.Enqueue, conn: Conn) -> p.Message | None:
        if req.more:
            if len(conn.staged) + len(req.jobs) > MAX_STAGED_JOBS:
                conn.staged = []
                raise QueueError("invalid", f"a batch may hold at most {MAX_STAGED_JOBS} jobs")
            conn.staged.extend(req.jobs)
            return None
        specs = conn.staged + req.jobs if conn.staged else req.jobs
        conn.staged = []
        # A client that sends no environment (one older than the enqueuer's environment) gets the
        # daemon's, as its jobs always did.
        env = req.env if req.env is not None else self.own_env
        jobs = await self.store.add(specs, time.time(), req.id_prefix, req.cwd, env)
        faults.point("enqueue-committed")
        self.pool.wake()
        if req.want_jobs:
            blocked = await self.store.blockers(jobs)
            views = [job.view(self.node, blocked.get(job.id)) for job in jobs]
        else:
            views = []
        return p.Enqueued([job.id for job in jobs], views, jobs.created)

    async def status(self, req: p.Status, conn: Conn) -> p.Message:
        return p.StatusReply(
            await self.store.counts(), p.Workers(self.store.pool_size, self.pool.busy),
            os.getpid(), VERSION, self.started_at, self.stopping, await self.store.groups(), self.retention.info(),
            nodes=await self.store.nodes() or [],
        )

    async def list(self, req: p.List, conn: Conn) -> None:
        await self._stream(req.state, req.limit, req.page_size, conn, req.group)

    async def dlq_list(self, req: p.DlqList, conn: Conn) -> None:
        await self._stream(DEAD, req.limit, req.page_size, conn)

    async def _stream(self, state: str | None, limit: int | None, page_size: int, conn: Conn,
                      group: str | None = None) -> None:
        # Pages hold at most `page_size` jobs and about PAGE_BYTES of them, so that a page of
        # long commands still fits in a frame.  The last page is held back to be sent with more=False.
        node = self.node
        views: list[p.Job] = []
        size = 0
        async for page in self.store.pages(state, limit, page_size, group):
            blocked = await self.store.blockers(page)
            for job in page:
                cost = JOB_OVERHEAD + len(job.command) + len(job.cwd or "") + len(job.error_message or "")
                if views and (len(views) == page_size or size + cost > PAGE_BYTES):
                    await conn.send(p.JobPage(views, True))
                    views, size = [], 0
                views.append(job.view(node, blocked.get(job.id)))
                size += cost
        await conn.send(p.JobPage(views, False))

    async def show(self, req: p.Show, conn: Conn) -> p.Message:
        job = await self.store.get(req.id)
        return p.JobReply(job.view(self.node, (await self.store.blockers([job])).get(job.id),
                                    await self.store.environment(job.env)))

    async def why(self, req: p.Why, conn: Conn) -> p.Message:
        now = time.time()
        reason = await self.store.why(req.id, now, self.store.pool_size, self.pool.busy)
        return p.WhyReply(req.id, reason, p.sentence(reason, now), now)

    async def logs(self, req: p.Logs, conn: Conn) -> p.Message:
        job = await self.store.get(req.id)
        stdout, stderr = await self.store.output_files(job, self.pool.output_paths(job.id))
        return p.LogsReply(job.view(self.node), stdout, stderr)

    async def delete(self, req: p.Delete, conn: Conn) -> p.Message | None:
        if req.id and (req.ids or req.select):
            raise QueueError("invalid", "give one id, or many ids, or a selection")
        if req.id:
            await self.store.delete(req.id, time.time(), req.cascade)
            ids = [req.id]
        else:
            ids = await self.store.delete_many(req.ids, req.select, time.time(), req.cascade)
        self.pool.forget(ids)
        for job_id in ids:
            self.bus.publish(Deleted(job_id))  # the pool announces every change but this one
        if req.id:
            return p.Ok()
        await send_ids(conn, ids)
        return None

    async def dlq_retry(self, req: p.DlqRetry, conn: Conn) -> p.Message:
        ids = await self.store.revive(req.ids, req.all, time.time())
        if ids:
            self.pool.wake()
        return p.Retried(ids)

    async def config_get(self, req: p.ConfigGet, conn: Conn) -> p.Message:
        key = canonical_key(req.key)
        return p.ConfigReply({key: self.store.config.show(key)})

    async def config_set(self, req: p.ConfigSet, conn: Conn) -> p.Message:
        key, value = await self.store.configure(req.key, req.value)
        return p.ConfigReply({key: value})

    async def config_list(self, req: p.ConfigList, conn: Conn) -> p.Message:
        return p.ConfigReply({k: self.store.config.show(k) for k in KEYS})

    async def worker_start(self, req: p.WorkerStart, conn: Conn) -> p.Message | None:
        if self.stopping:
            raise QueueError("stopping", f"queuectld (pid {os.getpid()}) is stopping")
        if req.follow:
            # Listen before resizing, so the first starts are seen too.
            await self._follow(conn, self._resize(req.count))
            return None
        await self._resize(req.count)
        return p.Ok()

    async def _resize(self, count: int) -> None:
        await self.store.resize(count)
        self.pool.resized()

    async def worker_stop(self, req: p.WorkerStop, conn: Conn) -> p.Message:
        await self._resize(0)
        await self.pool.idle.wait()
        return p.Ok()

    async def subscribe(self, req: p.Subscribe, conn: Conn) -> None:
        await self._follow(conn, None)

    async def _follow(self, conn: Conn, first: Awaitable[None] | None) -> None:
        """Forward job events until the pool stops (then PoolStopped) or the client hangs up."""
        loop = asyncio.get_running_loop()
        done: asyncio.Future[p.Message] = loop.create_future()
        dropped = 0

        def listener(msg: Notice) -> None:
            nonlocal dropped
            if done.done() or isinstance(msg, Deleted):
                return
            if isinstance(msg, (p.PoolStopped, p.Error)):
                done.set_result(msg)
                return
            if dropped and conn.send_nowait(p.EventsDropped(dropped)):
                dropped = 0
            if dropped or not conn.send_nowait(msg):
                dropped += 1

        self.bus.listeners.add(listener)
        hangup = asyncio.ensure_future(conn.closed())
        try:
            if first is not None:
                await first
            if self.pool.stopped() and not done.done():
                done.set_result(p.PoolStopped())
            waits: list[asyncio.Future[Any]] = [done, hangup]
            await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        finally:
            self.bus.listeners.discard(listener)
            hangup.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await hangup
        if done.done():
            await conn.send(done.result())
