"""The journal-backed store: the queue in memory, every change in the journal first.

A change is written to the journal before memory sees it, so a full disk
refuses it with nothing changed; a request is acknowledged once its records
are on disk (group commit).  Runs' starts and ends are written as they
happen and made durable by the next commit.  An ending refused by a full
disk is held and written again every second; until it lands, claims return
nothing, so no job starts past an ending that is not on record.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
from collections.abc import AsyncIterator, Callable

import msgspec

from queuectl_client.protocol import (
    STATES,
    AuditEntry,
    Edit,
    GroupInfo,
    JobSpec,
    Reason,
    ScheduleAdd,
    ScheduleInfo,
    Selector,
)

from . import audit, diagnose, firing, rules, unique
from . import events as ev
from . import planning as plan
from .journal import DiskFull, Journal, JournalError
from .journal_files import STATS_FILE, fsync_dir, write_file
from .model import Job
from .order import paged
from .queue import Queue
from .rules import WAITS, Outcome
from .store import Batch, PageOf, RunRecord, Store, Withdrawn

log = logging.getLogger("queuectld.store")

RETRY_WRITE_AFTER = 1.0  # seconds before a refused journal write is tried again


class JournalStore(Store):
    def __init__(self, path: str, salvage: bool = False, compact_min: int = 4 << 20, node: str | None = None) -> None:
        self.node = node or socket.gethostname()
        self.queue = Queue()
        self.config = self.queue.config
        self.journal = Journal(path, salvage=salvage, compact_min=compact_min)
        self.salvage = salvage
        self._held: list[ev.Ended] = []  # endings a full disk refused, written again later
        self._retry: asyncio.TimerHandle | None = None

    @property
    def pool_size(self) -> int:  # type: ignore[override]
        return self.queue.pool_size

    # -- life -------------------------------------------------------------------

    async def open(self) -> int:
        log.info("replaying the journal in %s", self.journal.dir)
        replayed = 0
        apply = self.queue.apply
        for event in self.journal.open():
            apply(event)
            replayed += 1
        self.queue.deps.changed = []  # from now on, what dependencies change is announced
        self.journal.snapshot_source = self.queue.snapshot
        self.journal.on_fatal.append(self._fatal)
        self.journal.on_sync = self._synced
        if self.salvage:
            # Start the repaired state on fresh files; the damaged ones are kept aside.
            await self.journal.compact(keep_old=True)
            log.warning("salvage complete: %d jobs kept; the damaged files are in %s/salvaged-*",
                        len(self.queue), self.journal.dir)
        return replayed

    def _synced(self, seconds: float) -> None:
        if self.on_sync is not None:
            self.on_sync(seconds)

    def _fatal(self, err: JournalError) -> None:
        if self.on_fatal is not None:
            self.on_fatal(err)

    async def sync(self) -> None:
        await self.journal.commit()

    async def close(self) -> None:
        if self._retry is not None:
            self._retry.cancel()
        await self.journal.aclose()

    # -- writing --------------------------------------------------------------------

    def _record(self, events: list[ev.Event]) -> None:
        """Write, then apply; raises DiskFull or SyncFailed with nothing changed."""
        self.journal.write(events)
        apply = self.queue.apply
        for e in events:
            apply(e)
        self._report()

    def _report(self) -> None:
        """Tell the pool what a record changed beyond the jobs it names: dependents that died or came
        back, or may start now; after the caller's own announcements (next loop turn)."""
        deps = self.queue.deps
        if deps.changed or deps.woke:
            changed, deps.changed, deps.woke = deps.changed or [], [], False
            if self.on_change is not None:
                asyncio.get_running_loop().call_soon(self.on_change, changed)

    async def _commit(self, events: list[ev.Event]) -> None:
        by = audit.actor.get()
        if by is not None:  # a person's request: its records say who
            replace = msgspec.structs.replace
            events = [replace(e, by=by) if "by" in e.__struct_fields__ else e for e in events]
        self._record(events)
        await self.journal.commit()

    # -- changes ----------------------------------------------------------------------

    async def add(self, specs: list[JobSpec], at: float, id_prefix: str = "", cwd: str | None = None,
                  env: dict[str, str] | None = None) -> Batch:
        envs: dict[str, dict[str, str]] = {}
        new = rules.new_jobs(specs, at, self.config, id_prefix, cwd, env, envs)
        fresh, instead = unique.plan_batch(self.queue.uniques.holders, new)
        plan.check_new(self.queue, fresh)
        jobs: list[Job] = []
        if fresh:
            event = ev.Added(at, fresh, audit.actor.get())
            if instead:  # some jobs stand for others: only the created ones' environments are kept
                used = {job.env for job in fresh}
                envs = {key: env for key, env in envs.items() if key in used}
            defined = self.queue.envs.new(envs)  # written before the jobs that use them, in the same write
            self.journal.write([*defined, event])
            for e in defined:
                self.queue.apply(e)
            jobs = self.queue.add_new(event)
            self._report()
        await self.journal.commit()  # a job that holds a key is answered for once it is on disk too
        if not instead:
            return Batch(jobs)
        made = iter(jobs)
        return Batch([next(made) if other is None else self.queue.get(other) for other in instead],
                     [other is None for other in instead])

    async def claim(self, now: float, count: int) -> list[Job]:
        if self._held:
            return []
        take = self.queue.take
        jobs: list[Job] = []
        while len(jobs) < count:
            job = take(now)
            if job is None:
                break
            jobs.append(job)
        return jobs

    async def release(self, job: Job) -> None:
        self.queue.put_back(job)

    async def start(self, job: Job, at: float, worker: int, pgid: int, pid_start: int) -> None:
        if job.state not in WAITS:
            raise Withdrawn(f"job {job.id} was {'deleted' if job.state == 'gone' else 'cancelled'} while it started")
        if job.blocked:
            raise Withdrawn(f"job {job.id} waits for a dependency brought back while it started")
        self._record([ev.Started(job.id, at, worker, pgid, pid_start)])

    async def finish(self, job: Job, at: float, outcome: Outcome) -> bool:
        if job.id in self.queue.cancelled:
            outcome = rules.plan_end(job, at, outcome.exit_code, outcome.error, self.config, cancelled=True)
        event = ev.Ended(job.id, at, outcome.state, outcome.exit_code, outcome.error, outcome.next_retry_at)
        try:
            self._record([event])
        except DiskFull as e:
            log.error("cannot record the end of job %s: %s", job.id, e)
            self._hold(event)
            return False
        return True

    def _hold(self, event: ev.Ended) -> None:
        self._held.append(event)
        if self._retry is None:
            self._retry = asyncio.get_running_loop().call_later(RETRY_WRITE_AFTER, self._write_held)

    def _write_held(self) -> None:
        self._retry = None
        held, self._held = self._held, []
        landed = []
        for i, event in enumerate(held):
            try:
                self._record([event])
            except DiskFull:
                self._held = held[i:]
                self._retry = asyncio.get_running_loop().call_later(RETRY_WRITE_AFTER, self._write_held)
                break
            except JournalError:
                return  # the journal failed for good; the daemon is stopping
            landed.append(self.queue.get(event.id))
        if landed and self.on_change is not None:
            self.on_change(landed)

    async def delete(self, job_id: str, at: float, cascade: bool = False) -> None:
        await self._commit([plan.plan_delete(self.queue, [job_id], None, at, cascade)])

    async def delete_many(self, ids: list[str], select: Selector | None, at: float,
                          cascade: bool = False) -> list[str]:
        event = plan.plan_delete(self.queue, ids, select, at, cascade)
        if event.ids:
            await self._commit([event])
        return event.ids

    async def revive(self, ids: list[str], everything: bool, at: float) -> list[str]:
        return await self._revive(plan.plan_revive(self.queue, ids, everything, at))

    async def retry(self, ids: list[str], select: Selector | None, at: float) -> list[str]:
        return await self._revive(plan.plan_retry(self.queue, ids, select, at))

    async def _revive(self, event: ev.Revived) -> list[str]:
        if event.ids:
            await self._commit([event])
        return event.ids

    async def cancel(self, ids: list[str], select: Selector | None, at: float) -> tuple[list[str], list[str]]:
        event, stop = plan.plan_cancel(self.queue, ids, select, at)
        if event.ids:
            await self._commit([event])
        return event.ids, stop

    async def edit(self, req: Edit, at: float) -> Job:
        event = plan.plan_edit(self.queue, req, at)
        await self._commit([event])
        return self.queue.get(event.id)

    async def prune(self, before: dict[str, float], limit: int) -> list[str]:
        ids = await self.expired(before, limit)
        if ids:
            await self._commit([ev.DeletedMany(ids, time.time())])
        return ids

    async def expired(self, before: dict[str, float], limit: int | None) -> list[str]:
        ids: list[str] = []
        for state, cutoff in before.items():
            ids += plan.expired(self.queue, state, cutoff, None if limit is None else limit - len(ids))
        return ids

    async def define_group(self, name: str, parallel: int, create: bool) -> None:
        await self._commit([plan.plan_group(self.queue, name, parallel, create)])

    async def remove_group(self, name: str) -> None:
        await self._commit([plan.plan_group_removal(self.queue, name)])

    async def pause(self, names: list[str], paused: bool) -> list[str]:
        event = plan.plan_pause(self.queue, names, paused)
        await self._commit([event])
        return event.groups

    async def define_schedule(self, req: ScheduleAdd, at: float, local_zone: str) -> ScheduleInfo:
        envs: dict[str, dict[str, str]] = {}
        event = firing.plan_define(self.queue, req, at, local_zone, envs)
        await self._commit([*self.queue.envs.new(envs), event])  # its environment first, as for an enqueue
        return self._schedule(req.name)

    async def remove_schedule(self, name: str) -> None:
        await self._commit([firing.plan_removal(self.queue, name)])

    async def pause_schedule(self, name: str, paused: bool, at: float) -> ScheduleInfo:
        await self._commit([firing.plan_pause(self.queue, name, paused, at)])
        return self._schedule(name)

    def _schedule(self, name: str) -> ScheduleInfo:
        return firing.schedule(self.queue, name).info()

    async def fire(self, now: float, refuse: Callable[[str], str | None] | None = None) -> list[Job]:
        events = firing.plan_fires(self.queue, now, refuse)
        if not events:
            return []
        await self._commit(list(events))
        return [job for e in events if e.job is not None and (job := self.queue.find(e.job.id)) is not None]

    async def configure(self, key: str, value: str) -> tuple[str, str]:
        key, value = self.config.parse(key, value)
        await self._commit([ev.ConfigChanged(key, value)])
        return key, value

    async def resize(self, count: int) -> None:
        if count != self.queue.pool_size:
            await self._commit([ev.PoolSized(count)])

    async def refuse(self, action: str, detail: str) -> None:
        await self._commit([ev.Refused(action, detail)])

    async def audit(self, since: float, limit: int | None) -> list[AuditEntry]:
        return self.queue.trail.since(since, limit)

    async def trim_audit(self, now: float) -> int:
        return self.queue.trail.trim(now)

    # -- reads ----------------------------------------------------------------------------

    async def get(self, job_id: str) -> Job:
        return self.queue.get(job_id)

    async def environment(self, key: str | None) -> dict[str, str] | None:
        return self.queue.envs.get(key)

    async def pages(self, state: str | None, limit: int | None, size: int,
                    group: str | None = None) -> AsyncIterator[list[Job]]:
        jobs = self.queue.iter_jobs(state, limit, group)  # a copy: the stream may pause between pages
        for i in range(0, len(jobs), size):
            # A job deleted while the stream was sent is left out.
            yield [job for job in jobs[i : i + size] if job.state in STATES]

    async def page(self, state: str | None, group: str | None, query: str | None, cursor: str | None,
                   limit: int, scan: int) -> PageOf:
        return PageOf(*paged(self.queue, state, group, query, cursor, limit, scan))

    async def blockers(self, jobs: list[Job]) -> dict[str, list[str]]:
        blockers = self.queue.deps.blockers
        return {job.id: blockers(job) for job in jobs if job.blocked and job.state == rules.PENDING}

    async def counts(self) -> dict[str, int]:
        return self.queue.counts()

    async def groups(self) -> list[GroupInfo]:
        q = self.queue
        return [GroupInfo(g.name, g.parallel, g.paused, q.tally(g.name), q.tally(g.name)["processing"])
                for g in q.groups.values()]

    async def schedules(self) -> list[ScheduleInfo]:
        return [s.info() for s in self.queue.schedules.by_name.values()]

    async def next_fire(self) -> float | None:
        return self.queue.schedules.next_fire()

    async def next_due(self) -> float | None:
        return self.queue.next_due()

    async def why(self, job_id: str, now: float, pool_size: int, busy: int) -> Reason:
        return diagnose.why(self.queue, job_id, now, pool_size, busy, self.node)

    async def oldest_due(self, now: float) -> dict[str, float]:
        return {name: due for name, group in self.queue.groups.items()
                if group.lanes and (due := group.lanes.oldest_due(now)) is not None}

    def disk_bytes(self) -> int:
        return self.journal.log_bytes + self.journal.snapshot_bytes

    def load_stats(self) -> bytes | None:
        try:
            with open(os.path.join(self.journal.dir, STATS_FILE), "rb") as f:
                return f.read()
        except FileNotFoundError:
            return None

    def save_stats(self, data: bytes) -> None:
        path = os.path.join(self.journal.dir, STATS_FILE)
        write_file(path + ".tmp", data)
        os.rename(path + ".tmp", path)
        fsync_dir(self.journal.dir)

    async def interrupted(self) -> list[RunRecord]:
        running, cancelled = self.queue.running, self.queue.cancelled
        return [RunRecord(job, *running.get(job.id, (0, 0)), job.id in cancelled)
                for job in self.queue.by_state[rules.PROCESSING].values()]

