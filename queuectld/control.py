"""Handlers that control the queue: groups, pause and resume, cancel, retry, rerun, edit, prune.

As in `handlers`: each checks and commits through the store, then tells the
pool what to act on.  A change to many jobs is one store call, so one
journal record; its reply names them in `Changed` pages.
"""

from __future__ import annotations

import time
from typing import Any

from queuectl_client import protocol as p
from queuectl_client.wire import new_id_prefix

from .bus import Bus
from .model import Job
from .retention import Retention
from .rules import QueueError
from .store import Store

IDS_PAGE = 10_000  # ids per `Changed` frame


class Control:
    def __init__(self, store: Store, pool: Any, bus: Bus, retention: Retention) -> None:
        self.store = store
        self.pool = pool  # handlers.PoolControl
        self.bus = bus
        self.retention = retention
        self.table: dict[type, Any] = {
            p.GroupAdd: self.group_add,
            p.GroupSet: self.group_set,
            p.GroupRemove: self.group_remove,
            p.GroupList: self.group_list,
            p.Pause: self.pause,
            p.Cancel: self.cancel,
            p.Retry: self.retry,
            p.Rerun: self.rerun,
            p.Edit: self.edit,
            p.Prune: self.prune,
        }

    # -- groups -------------------------------------------------------------------

    async def group_add(self, req: p.GroupAdd, conn: Any) -> p.Message:
        await self.store.define_group(req.name, req.parallel, create=True)
        return p.Ok()

    async def group_set(self, req: p.GroupSet, conn: Any) -> p.Message:
        await self.store.define_group(req.name, req.parallel, create=False)
        self.pool.wake()  # a higher cap may let jobs start
        return p.Ok()

    async def group_remove(self, req: p.GroupRemove, conn: Any) -> p.Message:
        await self.store.remove_group(req.name)
        return p.Ok()

    async def group_list(self, req: p.GroupList, conn: Any) -> p.Message:
        return p.GroupsReply(await self.store.groups())

    async def pause(self, req: p.Pause, conn: Any) -> p.Message:
        names = await self.store.pause(req.groups, not req.resume)
        if req.resume:
            self.pool.wake()
        return p.Changed(len(names), names)

    # -- jobs -------------------------------------------------------------------------

    async def cancel(self, req: p.Cancel, conn: Any) -> None:
        ids, stop = await self.store.cancel(req.ids, req.select, time.time())
        if stop:
            self.pool.cancel(stop, req.signal, req.grace)
        stopping = set(stop)
        for job_id in ids:
            if job_id not in stopping:  # a waiting job is dead now; a running one says so when it ends
                await self._announce(job_id)
        await send_ids(conn, ids)

    async def retry(self, req: p.Retry, conn: Any) -> None:
        ids = await self.store.retry(req.ids, req.select, time.time())
        if ids:
            self.pool.wake()
            for job_id in ids:
                await self._announce(job_id)
        await send_ids(conn, ids)

    async def rerun(self, req: p.Rerun, conn: Any) -> p.Message:
        job = await self.store.get(req.id)
        if job.group not in {g.name for g in await self.store.groups()}:
            raise QueueError("state", f"job {job.id} is in the group {job.group}, which no longer exists; create it "
                                      f"with `queuectl group add {job.group}`")
        spec = p.JobSpec(command=job.command, id=req.new_id, max_retries=job.max_retries, priority=job.priority,
                         timeout=job.timeout, cwd=job.cwd, group=job.group)
        prefix = "" if req.new_id else new_id_prefix()
        # The copy runs with the original's environment (None: the daemon's, as the original does).
        jobs = await self.store.add([spec], time.time(), prefix, env=await self.store.environment(job.env))
        self.pool.wake()
        return p.Enqueued([j.id for j in jobs], [j.view(self.store.node) for j in jobs])

    async def edit(self, req: p.Edit, conn: Any) -> p.Message:
        job = await self.store.edit(req, time.time())
        self.pool.wake()  # it may be due now, or in a group that can start it
        return p.JobReply(job.view(self.store.node, (await self.store.blockers([job])).get(job.id)))

    async def prune(self, req: p.Prune, conn: Any) -> None:
        before = self.retention.cutoffs(time.time(), req.state, req.older_than)
        if req.dry_run:
            ids = await self.store.expired(before, None) if before else []
        else:
            ids = await self.retention.run(before) if before else []
        await send_ids(conn, ids)

    async def _announce(self, job_id: str) -> None:
        """Tell followers and waits the job's new state."""
        if self.bus.listeners:
            job: Job = await self.store.get(job_id)
            self.bus.publish(job.event(None))


async def send_ids(conn: Any, ids: list[str]) -> None:
    """The `Changed` reply: the count, and the ids in pages."""
    count = len(ids)
    for start in range(0, max(count, 1), IDS_PAGE):
        await conn.send(p.Changed(count, ids[start : start + IDS_PAGE], start + IDS_PAGE < count))
