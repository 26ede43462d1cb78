"""Starts recorded a moment late (`begin`), and a run that ends first recorded with its start in one statement.

The pool hands each run's start to `begin` as its spawner reports it.  The start is written START_WAIT
seconds later, with the others of that moment, by the statement `start` uses; a run that ends before
then has its start and its end written by one statement (`_START_END`), so a short job costs its claim
and one write rather than three.  Until its start is on record the row shows the job held (pending or
failed, `locked_by` '<node id>/0'), as between any claim and its start; a node lost meanwhile has the
job given back, as any claim it held.  A start the database refuses (the job was cancelled, deleted or
blocked meanwhile) or cannot take (it is away) stops the run through `on_withdraw`: the pool kills it
and gives the job back, as when `start` raises.  A run that ends while its start cannot be recorded is
given back: it is not on record, so the job runs again.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

from .. import faults
from ..model import Job
from ..rules import PROCESSING, Outcome
from .core import MAX_PAYLOAD, Batcher
from .statements import _START_END

if TYPE_CHECKING:
    from .base import PgBase
else:
    PgBase = object

log = logging.getLogger("queuectld.store")

START_WAIT = 0.02  # seconds a start waits to be written with the others of that moment, or with its run's end

Start = tuple[Job, float, int, int, int]  # the job, when its run started, its slot, pgid and pid_start


class DeferredStarts(PgBase):
    _soon: dict[str, Start]  # starts handed to `begin`, not written yet
    _writing: dict[str, asyncio.Future[bool]]  # starts being written: whether each was recorded
    _soon_timer: asyncio.TimerHandle | None
    _soon_tasks: set[asyncio.Task[None]]
    _start_ends: Batcher[tuple[Start, float, Outcome], bool]

    def _init_soon(self) -> None:
        self._soon, self._writing, self._soon_timer, self._soon_tasks = {}, {}, None, set()
        self._start_ends = Batcher(self._write_start_ends, width=3)

    async def begin(self, job: Job, at: float, worker: int, pgid: int, pid_start: int) -> None:
        self._soon[job.id] = (job, at, worker, pgid, pid_start)
        # The run as the pool sees it from now on: started, its attempt counted (as the claim did in the row).
        job.state, job.attempts, job.worker = PROCESSING, job.attempts + 1, worker
        job.started_at = job.updated_at = at
        job.finished_at = job.next_retry_at = job.exit_code = job.error_message = None
        if self._soon_timer is None:
            self._soon_timer = asyncio.get_running_loop().call_later(faults.start_wait or START_WAIT, self._write_soon)

    def _write_soon(self) -> None:
        self._soon_timer = None
        items, self._soon = list(self._soon.values()), {}
        if items:
            loop = asyncio.get_running_loop()
            self._writing.update({item[0].id: loop.create_future() for item in items})
            task = loop.create_task(self._write_begun(items), name="starts")
            self._soon_tasks.add(task)
            task.add_done_callback(self._soon_tasks.discard)

    async def _write_begun(self, items: list[Start]) -> None:
        try:
            results: list[bool | BaseException] = await self._write_starts(items)
        except Exception as e:
            results = [e] * len(items)
        withdrawn = []
        for item, result in zip(items, results):
            job = item[0]
            if result is True:
                self._started(*item)
            else:
                withdrawn.append(job.id)
                log.info("stopping the run of job %s: its start could not be recorded (%s)", job.id,
                         "cancelled, deleted or blocked meanwhile" if result is False else
                         (str(result) or type(result).__name__).splitlines()[0])
            fut = self._writing.pop(job.id, None)
            if fut is not None and not fut.done():
                fut.set_result(result is True)
        if withdrawn and self.on_withdraw is not None:
            self.on_withdraw(withdrawn)

    async def _ended_unstarted(self, job: Job, at: float, outcome: Outcome) -> bool | None:
        """The end of a run handed to `begin`: None if its start is on record (the end goes as any end);
        else the end is recorded here with its start, or the job given back (False) if that cannot be."""
        writing = self._writing.get(job.id)
        if writing is not None:  # an end waits for its start: never the other way round
            if await asyncio.shield(writing):
                return None
            return await self._given_back(job)  # the start was refused: the run was stopped, and said so
        item = self._soon.pop(job.id, None)
        if item is None:
            return None
        try:
            if await self._start_ends((item, at, outcome)):
                self._let_go(job, outcome, at)
                return True
            # Not matched (a job others depend on, or one withdrawn meanwhile): the start alone, then the end.
            if not (await self._write_starts([item]))[0]:
                log.warning("the run of job %s (attempt %d) was not recorded: its claim is no longer this node's "
                            "(cancelled, deleted or blocked meanwhile, or given back by a rescue)", job.id,
                            job.attempts)
                return await self._given_back(job)
        except Exception as e:
            log.warning("the run of job %s ended while its start could not be recorded (%s): the job is given "
                        "back", job.id, (str(e) or type(e).__name__).splitlines()[0])
            return await self._given_back(job)
        self._started(*item)
        return None

    async def _given_back(self, job: Job) -> bool:
        await self.release(job)
        return False

    async def _write_start_ends(self, items: list[tuple[Start, float, Outcome]]) -> list[bool | BaseException]:
        ids = [s[0].id for s, _, _ in items]
        text = ",".join(ids)
        got = {r[0]: r for r in await self.db.fetch(
            _START_END, ids, [s[0].attempts for s, _, _ in items], [self.me + "0"] * len(items),
            [o.state for _, _, o in items], [o.exit_code for _, _, o in items], [o.error for _, _, o in items],
            [o.next_retry_at for _, _, o in items], [at for _, at, _ in items], [s[1] for s, _, _ in items],
            "*" if len(text.encode()) > MAX_PAYLOAD else text)}
        out: list[bool | BaseException] = []
        for (start, at, _), job_id in zip(items, ids):
            r = got.get(job_id)
            if r is not None:
                job = start[0]
                job.state, job.error_message, job.next_retry_at, job.due, job.ticket = r[1], r[2], r[3], r[4], r[5]
                job.finished_at = job.updated_at = at
                job.worker = None
            out.append(r is not None)
        if got:
            self._disk = None
        return out

    def _close_soon(self) -> None:
        if self._soon_timer is not None:
            self._soon_timer.cancel()
            self._soon_timer = None

    if TYPE_CHECKING:  # PgStore's (and mend's)
        async def _write_starts(self, items: list[Start]) -> list[bool | BaseException]: ...

        def _started(self, job: Job, at: float, worker: int, pgid: int, pid_start: int) -> None: ...

        def _let_go(self, job: Job, outcome: Outcome | None = None, at: float = 0.0) -> None: ...

        async def release(self, job: Job) -> None: ...
