"""`PgStore`: the queue kept in PostgreSQL, shared by every node on the database.

A claim takes due jobs with `FOR UPDATE SKIP LOCKED` through a MATERIALIZED CTE on the live
partition's partial index, and marks them held (`locked_by` = "<node id>/0"); it counts the attempt.
A held job keeps its state (pending or failed) until its start, as the journal store's do; a job
with `locked_by` set is busy: it counts against its group's cap, and only a cancel changes it.
Starts and ends are batched (group commit) and fenced: an end matches id, state, attempts and
`locked_by`, so a node whose job was rescued cannot overwrite the rescue.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import asyncpg

from queuectl_client.protocol import DEFAULT_GROUP

from .. import audit, rules
from .. import events as ev
from ..model import Job
from ..rules import DEAD, Outcome
from ..store import RunRecord, StoreError, Withdrawn
from . import deps, names, rows
from .adding import Adding
from .cluster import Cluster
from .control import ControlMixin
from .core import MAX_PAYLOAD, Batcher, PgCore
from .groups import Groups
from .missing import Missing
from .observe import ObserveMixin
from .output import OutputMixin
from .queries import Reads
from .schedules import ScheduleMixin
from .starts import DeferredStarts
from .statements import _CLAIM, _END, _END_QUICK, _START
from .trail import TrailMixin

log = logging.getLogger("queuectld.store")

GROUPS_TTL = 1.0  # seconds a claim trusts what it read of paused and capped groups
RETRY_HELD = 1.0  # seconds between tries of the ends the database could not take


class PgStore(DeferredStarts, Adding, OutputMixin, ObserveMixin, ControlMixin, ScheduleMixin, TrailMixin, Cluster,
              Groups, Reads, PgCore, Missing):
    def __init__(self, url: str, node: str | None = None, **kw: Any) -> None:
        super().__init__(url, node, **kw)
        self._starts: Batcher[tuple[Job, float, int, int, int], bool] = Batcher(self._write_starts)
        self._ends: Batcher[tuple[Job, float, Outcome], bool] = Batcher(self._write_ends, width=3)
        self._capped: tuple[bool, float] | None = None
        self._unwritten: list[tuple[Job, float, Outcome]] = []  # ends the database could not take, written again
        self._unreleased: list[Job] = []  # claims it could not take back, given back again
        self._rewriting: asyncio.Task[None] | None = None
        self._init_soon()

    async def close(self) -> None:
        self._close_soon()
        if self._rewriting is not None:
            self._rewriting.cancel()  # ends still held are lost: their runs come back as interrupted
            await asyncio.wait([self._rewriting])
        await super().close()

    async def _opened(self, conn: Any) -> None:
        await conn.execute(names.GIVE_BACK, self.node, self.me, self.host, self.home)  # earlier runs' claims

    # -- claims and runs --------------------------------------------------------------------

    async def claim(self, now: float, count: int) -> list[Job]:
        if self.fenced or self._unwritten or self._unreleased or count <= 0:  # nothing starts past an end not on record
            return []
        for _ in range(10):
            try:
                if await self._any_capped():
                    async with self.tx() as conn:  # durable, as every claim: see DECISIONS
                        got = await self._claim_capped(conn, now, count)
                else:  # one statement, its own transaction, durable (the sessions' default)
                    got = await self.db.fetch(_CLAIM, now, count, [], [], self.me + "0", self.node, 0)
            except asyncpg.SerializationError:
                continue
            jobs = [rows.job(r) for r in got]
            self._holding(jobs)
            for job in jobs:
                job.attempts -= 1  # counted in the database; the run's number is attempts + 1 until it starts
            jobs.sort(key=lambda j: (-j.priority, j.due, j.ticket))
            return jobs
        return []

    def groups_changed(self) -> None:
        """A group was paused, resumed, capped or uncapped (here, or on another node: its notification)."""
        self._capped = None

    async def _any_capped(self) -> bool:
        """Whether a group has a cap (read again at most every GROUPS_TTL seconds, and at once after a change
        of groups this node made or heard of).  Paused and capped groups are read by the claim itself."""
        now = time.monotonic()
        if self._capped is None or now - self._capped[1] > GROUPS_TTL:
            got = await self.db.fetchval("SELECT EXISTS (SELECT 1 FROM queuectl_groups WHERE parallel > 0 "
                                         "AND NOT paused)")
            self._capped = (bool(got), now)
        return self._capped[0]

    async def _claim_capped(self, conn: Any, now: float, count: int) -> list[Any]:
        capped = [r[0] for r in await conn.fetch("SELECT name FROM queuectl_groups WHERE parallel > 0 AND NOT paused "
                                                 "ORDER BY name")]
        # A cap holds across the cluster: one claimer per capped group at a time (in name order: no deadlock).
        await conn.execute("SELECT pg_advisory_xact_lock(hashtext(n)) FROM unnest($1::text[]) n", capped)
        rooms = dict(await conn.fetch(
            "SELECT g.name, g.parallel - (SELECT count(*) FROM queuectl_jobs b WHERE b.grp = g.name "
            "AND b.locked_by IS NOT NULL)::int FROM queuectl_groups g "
            "WHERE g.name = ANY($1::text[]) AND g.parallel > 0 AND NOT g.paused", capped))
        open_ = [g for g in capped if rooms.get(g, 0) > 0 and g != DEFAULT_GROUP]
        return list(await conn.fetch(_CLAIM, now, count, open_, [rooms[g] for g in open_], self.me + "0", self.node,
                                     max(rooms.get(DEFAULT_GROUP, 0), 0)))

    async def release(self, job: Job) -> None:
        try:
            await self._release([job])
        except Exception as e:  # the database is away: given back once it is here again
            log.warning("cannot give job %s back now (%s); it is given back once the database answers", job.id,
                        (str(e) or type(e).__name__).splitlines()[0])
            self._unreleased.append(job)
            self._keep(None)

    async def _release(self, jobs: list[Job]) -> None:
        await self.db.execute(
            "UPDATE queuectl_jobs SET locked_by = NULL, locked_at = NULL, node = NULL, attempts = attempts - 1 "
            "WHERE id = ANY($1::text[]) AND locked_by = $2 AND state <> 'processing'", [j.id for j in jobs],
            self.me + "0")
        for job in jobs:
            self._let_go(job)

    async def start(self, job: Job, at: float, worker: int, pgid: int, pid_start: int) -> None:
        try:
            started = await self._starts((job, at, worker, pgid, pid_start))
        except Exception as e:  # not on record: the pool stops the run and gives the job back
            raise StoreError(f"cannot record the start of job {job.id}: "
                             f"{(str(e) or type(e).__name__).splitlines()[0]}") from None
        if not started:
            raise Withdrawn(f"job {job.id} was cancelled, deleted or blocked while it started")
        self._started(job, at, worker, pgid, pid_start)

    async def _write_starts(self, items: list[tuple[Job, float, int, int, int]]) -> list[bool | BaseException]:
        # One statement, its own transaction (committed without waiting for the flush: statements.LAZY).
        got = dict(await self.db.fetch(
            _START, [j.id for j, *_ in items], self.me + "0", [w for _, _, w, _, _ in items],
            [a for _, a, *_ in items], [p for *_, p, _ in items], [s for *_, s in items], self.me, self.node))
        out: list[bool | BaseException] = []
        for job, at, worker, _, _ in items:
            attempts = got.get(job.id)
            if attempts is not None:
                job.state, job.attempts, job.worker = rules.PROCESSING, attempts, worker
                job.started_at = job.updated_at = at
                job.finished_at = job.next_retry_at = job.exit_code = job.error_message = None
            out.append(attempts is not None)
        return out

    async def finish(self, job: Job, at: float, outcome: Outcome) -> bool:
        if (done := await self._ended_unstarted(job, at, outcome)) is not None:  # its start not on record yet
            return done
        if self._unwritten:  # in order, behind the ends kept already
            self._keep((job, at, outcome))
            return False
        try:
            done = await self._ends((job, at, outcome))
        except Exception as e:  # the database is away (a restart, a cut link): hold it, as a full disk's
            log.error("cannot record the end of job %s now (%s); it is written again every %g s, and this node "
                      "starts nothing until it is", job.id, (str(e) or type(e).__name__).splitlines()[0],
                      RETRY_HELD)
            self._keep((job, at, outcome))
            return False
        self._let_go(job, outcome if job.state != rules.PROCESSING else None, at)
        return done

    def _keep(self, item: tuple[Job, float, Outcome] | None) -> None:
        if item is not None:
            self._unwritten.append(item)
        if self._rewriting is None or self._rewriting.done():
            self._rewriting = asyncio.get_running_loop().create_task(self._write_kept(), name="kept-ends")

    async def _write_kept(self) -> None:
        """Write the held ends again every RETRY_HELD s until they land (fenced as any end: one whose job
        was rescued meanwhile is not recorded); then tell the pool, as the journal store does."""
        while self._unwritten or self._unreleased:
            await asyncio.sleep(RETRY_HELD)
            items, back = list(self._unwritten), list(self._unreleased)
            try:
                if back:
                    await self._release(back)
                    del self._unreleased[: len(back)]
                if items:
                    await self._write_ends(items)
            except Exception as e:
                log.debug("the held ends are not written yet: %r", e)
                continue
            del self._unwritten[: len(items)]
            for job, at, outcome in items:
                self._let_go(job, outcome if job.state != rules.PROCESSING else None, at)
            if items:
                log.info("%d held end(s) recorded", len(items))
            if self.on_change is not None:  # announces them, and wakes the pool
                self.on_change([job for job, _, _ in items])

    async def _write_ends(self, items: list[tuple[Job, float, Outcome]]) -> list[bool | BaseException]:
        args = self._end_args(items)
        text = ",".join(args[0])
        quick = await self.db.fetch(_END_QUICK, *args, "*" if len(text.encode()) > MAX_PAYLOAD else text)
        got = {r[0]: r for r in quick}
        if len(got) < len(items):
            rest = [item for item in items if item[0].id not in got]
            got.update(await self._write_ends_slow(rest))
        for job, at, _ in items:
            r = got.get(job.id)
            if r is None:
                log.warning("the end of job %s's attempt %d was not recorded: the job was rescued from this node",
                            job.id, job.attempts)
                continue
            job.state, job.error_message, job.next_retry_at, job.due, job.ticket = r[1], r[2], r[3], r[4], r[5]
            job.finished_at = job.updated_at = at
            job.worker = None
        self._disk = None
        return [True] * len(items)

    def _end_args(self, items: list[tuple[Job, float, Outcome]]) -> list[list[Any]]:
        return [[j.id for j, _, _ in items], [j.attempts for j, _, _ in items],
                [f"{self.me}{j.worker or 0}" for j, _, _ in items], [o.state for _, _, o in items],
                [o.exit_code for _, _, o in items], [o.error for _, _, o in items],
                [o.next_retry_at for _, _, o in items], [a for _, a, _ in items]]

    async def _write_ends_slow(self, items: list[tuple[Job, float, Outcome]]) -> dict[str, Any]:
        """Ends of jobs others depend on, resolved with their dependents in one transaction."""
        async with self.flat_tx(durable=False) as conn:  # durable at the next flush: see `sync`
            got = {r[0]: r for r in await conn.fetch(_END, *self._end_args(items))}
            done: dict[float, list[str]] = {}
            dead: dict[float, list[str]] = {}
            for r in got.values():
                if not r[7]:
                    continue
                if r[1] == rules.COMPLETED:
                    done.setdefault(r[6], []).append(r[0])
                elif r[1] == DEAD:
                    dead.setdefault(r[6], []).append(r[0])
            changed: list[str] = []
            for at, ids in done.items():
                changed += await deps.completed(conn, ids, at)
            for at, ids in dead.items():
                changed += await deps.died(conn, ids, at)
            if got:
                await self.notify(conn, "queuectl_changed", *got, *changed)
            if changed or any(r[1] == rules.FAILED for r in got.values()):
                await self.notify(conn, "queuectl_wake", "")
        if changed:
            await self._announce(changed)
        return got

    async def _announce(self, ids: list[str]) -> None:
        if self.on_change is not None:
            jobs = await self.jobs(ids)
            self.on_change(jobs)

    async def interrupted(self) -> list[RunRecord]:
        # An earlier run of this daemon (a crash, a restart; same name, host and home: pg/names.py) left these
        # running: they are this node's now.
        async with self.tx() as conn:
            got = await conn.fetch(
                f"UPDATE queuectl_jobs SET locked_by = $1 || coalesce(worker, 0), node = $2 "
                f"WHERE node = $2 AND state = 'processing' AND NOT starts_with(locked_by, $1) "
                f"AND {names.earlier('$2', '$3', '$4')} "
                f"RETURNING {rows.JOB_COLUMNS}, pgid, pid_start, cancelled", self.me, self.node, self.host, self.home)
        out = [RunRecord(rows.job(r), r["pgid"] or 0, r["pid_start"] or 0, r["cancelled"]) for r in got]
        out.sort(key=lambda r: r.job.started_at or 0.0)
        return out

    # -- settings ----------------------------------------------------------------------------

    async def configure(self, key: str, value: str) -> tuple[str, str]:
        key, value = self.config.parse(key, value)
        async with self.tx() as conn:
            await conn.execute("INSERT INTO queuectl_settings VALUES ($1, $2) "
                               "ON CONFLICT (key) DO UPDATE SET value = excluded.value", key, value)
            await self.notify(conn, "queuectl_config", key)
            await self._audited(conn, ev.ConfigChanged(key, value, audit.actor.get()))
        self.config.restore(key, value)
        return key, value

    async def resize(self, count: int) -> None:
        async with self.tx() as conn:
            await conn.execute("INSERT INTO queuectl_node_pools VALUES ($1, $2) "
                               "ON CONFLICT (name) DO UPDATE SET pool = excluded.pool", self.node, count)
            await conn.execute("UPDATE queuectl_nodes SET pool = $2 WHERE id = $1", self.node_id, count)
            if count != self._pool_size:  # as the journal store: a change of size is a person's change
                await self._audited(conn, ev.PoolSized(count, audit.actor.get()))
        self._pool_size = count
