"""What a node mends after its link to the database was down: any lost connection is a possible lost write.

Starts and ends commit without waiting for the WAL flush (claims wait: see DECISIONS), so a crash of the
database may lose one that was acknowledged.  The store keeps what it holds (`_held`: the jobs it claimed or
adopted and has not yet ended or given back, with the start it recorded) and the ends it wrote lazily that
no durable commit has flushed yet (`_lazy`: a heartbeat commits durably, which flushes every commit before
it).  After the heartbeat's connection comes back, before the node claims again, `mend()` compares the
rows locked by this node with what it holds:

- a row locked here that the node does not hold: an end written lazily and lost is written again; any
  other is ended through the failure path (processing) or given back (held, never started), each with a
  compare-and-set, as the rescue does;
- a row held here whose start was lost (the run goes on): the start is written again;
- a job the node holds whose row is no longer this node's (rescued meanwhile): its run is stopped.
"""

from __future__ import annotations

import logging
import time

from ..model import Job
from ..rules import Outcome, plan_end
from . import deps
from .rescue import _RESCUE, Rescue, held_range
from .statements import _START

log = logging.getLogger("queuectld.cluster")

_MINE = "SELECT id, state, attempts, locked_by FROM queuectl_jobs_live WHERE locked_by >= $1 AND locked_by < $2"
_GIVE_BACK = """
UPDATE queuectl_jobs SET locked_by = NULL, locked_at = NULL, node = NULL, attempts = attempts - 1
 WHERE id = $1 AND locked_by = $2 AND state <> 'processing'
"""


class Held:
    """A job this node holds, and the start it recorded for it (None: not started)."""

    __slots__ = ("job", "start")

    def __init__(self, job: Job) -> None:
        self.job = job
        self.start: tuple[float, int, int, int] | None = None


class Mend(Rescue):
    def _init_held(self) -> None:
        if not hasattr(self, "_held"):
            self._held: dict[str, Held] = {}
            self._lazy: dict[str, tuple[Job, float, Outcome, float]] = {}  # id -> end written lazily, when

    def _flushed(self, sent: float) -> None:
        """A durable commit begun at monotonic `sent` succeeded: the lazy ends written before it are durable."""
        self._init_held()
        for job_id in [i for i, (_, _, _, at) in self._lazy.items() if at < sent]:
            del self._lazy[job_id]

    async def _write_ends(self, items: list[tuple[Job, float, Outcome]]) -> list[bool | BaseException]:
        raise NotImplementedError  # PgStore's

    async def mend(self) -> None:
        """Make the rows locked by this node and what it holds agree again (see the module's text)."""
        self._init_held()
        before = set(self._held)
        low, high = held_range(self.node_id)
        rows = {r[0]: r for r in await self.db.fetch(_MINE, low, high)}
        held = dict(self._held)  # after the read: a claim that returned meanwhile is held, not an orphan
        at = self.clock()
        again: list[tuple[Job, float, Outcome]] = []
        for job_id, r in rows.items():
            h = held.get(job_id)
            lazy = self._lazy.get(job_id)
            if h is not None:
                if h.start is not None and r[1] != "processing":
                    await self._start_again(h, r[3])
                continue
            if lazy is not None and r[1] == "processing" and r[2] == lazy[0].attempts:
                lazy[0].worker = int(r[3].rpartition("/")[2])  # the end names the run's holder
                again.append(lazy[:3])
            elif r[1] == "processing":
                await self._orphan(job_id, r[2], r[3], at)
            elif await self.db.execute(_GIVE_BACK, job_id, r[3]) == "UPDATE 1":
                log.warning("job %s was held by node %s without a run (a lost write): given back", job_id, self.node)
        if again:
            log.warning("writing again %d end(s) a crash of the database lost", len(again))
            await self._write_ends(again)
        gone = [i for i in before if i in self._held and i not in rows]
        if gone:
            log.warning("node %s stops the runs of job(s) %s: they are no longer this node's", self.node,
                        ", ".join(sorted(gone)))
            for job_id in gone:
                self._held.pop(job_id, None)
            if self.on_stop is not None:
                self.on_stop(gone)

    async def _start_again(self, h: Held, holder: str) -> None:
        assert h.start is not None
        started, worker, pgid, pid_start = h.start
        got = await self.db.fetch(_START, [h.job.id], holder, [worker], [started], [pgid], [pid_start], self.me,
                                  self.node)
        if got:
            log.warning("the start of job %s was lost (a crash of the database): written again", h.job.id)

    async def _orphan(self, job_id: str, attempts: int, holder: str, at: float) -> None:
        """A run recorded here that no run of this node holds: it ends through the failure path."""
        from .rows import JOB_COLUMNS, job

        changed: list[str] = []
        async with self.tx() as conn:
            r = await conn.fetchrow(f"SELECT {JOB_COLUMNS}, cancelled FROM queuectl_jobs_live WHERE id = $1", job_id)
            if r is None:
                return
            held = job(r)
            outcome = plan_end(held, at, None, f"interrupted: node {self.node} lost its run", self.config,
                               cancelled=r["cancelled"])
            status = await conn.execute(_RESCUE, job_id, attempts, holder, outcome.state, outcome.error,
                                        outcome.next_retry_at, at)
            if status != "UPDATE 1":
                return
            log.warning("job %s (attempt %d) was recorded as running on node %s, which runs it no more: %s",
                        job_id, attempts, self.node, outcome.state)
            changed.append(job_id)
            if outcome.state == "dead":
                changed += await deps.died(conn, [job_id], at)
            await self.notify(conn, "queuectl_changed", *changed)
            await self.notify(conn, "queuectl_wake", "")
        self.rescued(changed)

    def _holding(self, jobs: list[Job]) -> None:
        self._init_held()
        for j in jobs:
            self._held[j.id] = Held(j)

    def _started(self, job: Job, at: float, worker: int, pgid: int, pid_start: int) -> None:
        self._init_held()
        h = self._held.get(job.id)
        if h is None:
            h = self._held[job.id] = Held(job)
        h.start = (at, worker, pgid, pid_start)

    def _let_go(self, job: Job, outcome: Outcome | None = None, at: float = 0.0) -> None:
        self._init_held()
        self._held.pop(job.id, None)
        if outcome is not None:
            self._lazy[job.id] = (job, at, outcome, time.monotonic())
