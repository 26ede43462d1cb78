"""The job queue as a pure state machine: no I/O, no clock, no await.

Handlers ask it to *plan* a change (`planning`), which validates and returns
an event; the store journals the event and then *applies* it here.  Replay
applies the same events, so the queue after a restart is the queue before it.

Ordering: a job is *due* at its run_at, its next_retry_at, or when it was
enqueued or revived.  Due jobs start highest priority first, then earliest
due, then in the order they were scheduled (for new jobs, enqueue order).
Each scheduling draws a new ticket, stored in the job and in its heap entry;
an entry whose ticket is no longer the job's is stale, and is dropped lazily.

Groups: every job belongs to one.  Each group keeps its waiting jobs in its
own `Lanes`, so a group that may not start a job (paused, or as many of its
jobs running as its `parallel` allows) is simply not looked at: it never
holds back another group's jobs.  `take` compares the first due job of each
*open* group, by (priority, due, ticket); tickets are drawn queue-wide, so
the order across groups is the order within one.  A group's `active` count
is its jobs claimed or running, checked when a job is taken, as a database
would check a count at claim time.

Memory: each job is in exactly one per-state dict, and nowhere else but a
heap entry while it waits; there is no table of all jobs (a million jobs
would pay ~40 bytes each for it).  An id lookup tries the five states.
"""

from __future__ import annotations

import sys
from collections import Counter
from collections.abc import Callable, Iterable
from itertools import chain, islice
from math import inf
from typing import Any

from queuectl_client.protocol import DEFAULT_GROUP, STATES

from . import events as ev
from . import snapshots
from .config import Config
from .deps import GONE, Deps
from .environments import Environments
from .lanes import Group, by_place
from .model import Job
from .order import Order
from .rules import CANCELLED, COMPLETED, DEAD, FAILED, LIST_ORDER, PENDING, PROCESSING, WAITS, QueueError
from .schedules import Schedules
from .trail import Trail
from .unique import Uniques


class Queue:
    def __init__(self) -> None:
        # Every job, by state, each dict in the order the jobs entered that state.
        self.by_state: dict[str, dict[str, Job]] = {s: {} for s in STATES}
        self._states = tuple(self.by_state[s] for s in (PENDING, PROCESSING, FAILED, COMPLETED, DEAD))
        # The process group of each running job's run, to kill it if the daemon dies.
        self.running: dict[str, tuple[int, int]] = {}  # id -> (pgid, start time of its leader)
        self.cancelled: set[str] = set()  # running jobs whose cancel was asked for: their run ends dead
        self.groups: dict[str, Group] = {DEFAULT_GROUP: Group(DEFAULT_GROUP)}
        self._open: dict[str, Group] = dict(self.groups)  # the groups that may start a job
        # Jobs per group per state, including groups removed since (they may hold final jobs).
        self.tallies: dict[str, Counter[str]] = {}
        self.held: set[str] = set()  # jobs taken, not started yet: they count as running for changes
        self.uniques = Uniques()  # the unique keys the jobs that are not final hold
        self._ticket = 0
        self.envs = Environments()  # the environments jobs run with, by key
        self.config = Config()
        self.pool_size = 0
        self.deps = Deps(self)  # who depends on whom (a blocked job is in no lane until its dependencies are met)
        self.schedules = Schedules()
        self.order = Order(self.by_state)  # keyset pages, newest first
        self.trail = Trail(self.config, self.find)  # who changed what: records with `by`, noted once applied
        self._appliers = self.trail.wrap(self._table())

    # -- queries ----------------------------------------------------------

    def counts(self) -> dict[str, int]:
        return {s: len(d) for s, d in self.by_state.items()}

    def __len__(self) -> int:
        return sum(map(len, self._states))

    def find(self, job_id: str) -> Job | None:
        for jobs in self._states:
            job = jobs.get(job_id)
            if job is not None:
                return job
        return None

    def get(self, job_id: str) -> Job:
        job = self.find(job_id)
        if job is None:
            raise QueueError("not_found", f"no job with id {job_id!r}")
        return job

    def busy(self, job: Job) -> bool:
        """It runs, or is being started: nothing but a cancel may change it."""
        return job.state == PROCESSING or job.id in self.held

    def group(self, name: str) -> Group:
        group = self.groups.get(name)
        if group is None:
            raise QueueError("not_found", f"no group named {name!r}")
        return group

    def tally(self, name: str) -> dict[str, int]:
        counts = self.tallies.get(name)
        return {s: counts[s] if counts else 0 for s in STATES}

    def iter_jobs(self, state: str | None = None, limit: int | None = None, group: str | None = None) -> list[Job]:
        """Jobs in the order they entered `state`, or every job in LIST_ORDER: a copy, O(limit)."""
        if state:
            jobs: Iterable[Job] = self.by_state[state].values()
        else:
            jobs = chain.from_iterable(self.by_state[s].values() for s in LIST_ORDER)
        if group is not None:
            jobs = (job for job in jobs if job.group == group)
        return list(jobs if limit is None else islice(jobs, limit))

    # -- dispatch ---------------------------------------------------------

    def take(self, now: float) -> Job | None:
        """The next due job of a group that may start one, removed from its lanes; the caller
        starts it or puts it back.  Until then it is *held*: it counts in its group's `active`."""
        while True:
            best: Group | None = None
            key: tuple[int, float, int] = (0, inf, 0)
            for group in self._open.values():
                if not group.lanes:
                    continue
                entry = group.lanes.peek(now)
                if entry is not None:
                    mine = (-entry[2].priority, entry[0], entry[1])
                    if best is None or mine < key:
                        best, key = group, mine
            if best is None:
                return None
            job = best.lanes.pop(now)
            if job.id in self.held:
                # A second entry of a job taken already: it moved to another group and back,
                # and its old entry there is its own again.  Dropped, never handed out twice.
                continue
            self.held.add(job.id)
            self._count_in(best)
            return job

    def put_back(self, job: Job) -> None:
        """Return a taken job, unstarted: if it still waits, to its place, due at once."""
        if job.id not in self.held:
            return
        self.held.discard(job.id)
        group = self.groups.get(job.group)
        if group is not None:
            self._count_out(group)
            if job.state in WAITS and not job.blocked:
                group.lanes.place(job.priority, [(job.due, job.ticket, job)], job.due, True)

    def next_due(self) -> float | None:
        """When the next job that is not due yet becomes due in a group that may start it, or None.

        Exact once a `take` has found nothing due (which is when the pool asks).
        """
        dues = [due for group in self._open.values() if group.lanes and (due := group.lanes.next_due()) is not None]
        return min(dues) if dues else None

    def _count_in(self, group: Group) -> None:
        group.active += 1
        if not group.open():
            self._open.pop(group.name, None)

    def _count_out(self, group: Group) -> None:
        group.active -= 1
        self._reopen(group)

    def _reopen(self, group: Group) -> None:
        if group.open():
            if self.groups.get(group.name) is group:
                self._open[group.name] = group
        else:
            self._open.pop(group.name, None)

    def _group_of(self, job: Job) -> Group:
        """The job's group; one a damaged or hand-edited journal lost is made again, so replay goes on."""
        group = self.groups.get(job.group)
        if group is None:
            group = self.groups[job.group] = Group(job.group)
            self._reopen(group)
        return group

    # -- applying events ----------------------------------------------------

    def apply(self, event: ev.Event | ev.AddedJobs) -> None:
        self._appliers[type(event)](event)

    def _table(self) -> dict[type, Callable[[Any], object]]:
        """What applies each kind of record."""
        return {
            ev.Started: self._started, ev.Ended: self._ended,
            ev.AddedJobs: lambda e: self._added(e.at, e.jobs),  # replay: decoded as Job structs already
            ev.Added: self.add_new, ev.Deleted: lambda e: self._deleted([e.id], e.at),
            ev.DeletedMany: lambda e: self._deleted(e.ids, e.at), ev.Revived: self._revived,
            ev.Cancelled: self._cancelled, ev.Edited: self._edited, ev.GroupDefined: self._group_defined,
            ev.GroupRemoved: self._group_removed, ev.Paused: self._paused,
            ev.ConfigChanged: lambda e: self.config.restore(e.key, e.value),
            ev.PoolSized: lambda e: setattr(self, "pool_size", e.count),
            ev.Restored: lambda e: snapshots.restore(self, e),
            ev.Running: self._running, ev.EnvDefined: self.envs.define,
            ev.ScheduleDefined: self.schedules.defined, ev.ScheduleRemoved: self.schedules.removed,
            ev.SchedulePaused: self.schedules.paused, ev.Fired: lambda e: self.schedules.fired(e, self._added),
            ev.SnapshotEnd: lambda e: setattr(self, "_ticket", max(self._ticket, e.ticket)),
        }

    def _running(self, e: ev.Running) -> None:
        self.running[e.id] = (e.pgid, e.pid_start)
        if e.cancelled:
            self.cancelled.add(e.id)

    def _paused(self, e: ev.Paused) -> None:
        for name in e.groups:
            group = self.groups.get(name)
            if group is not None:
                group.paused = e.paused
                self._reopen(group)

    def add_new(self, event: ev.Added) -> list[Job]:
        """Apply an `Added` record made live; returns the new jobs."""
        jobs = [Job(n.id, n.command, n.max_retries, n.priority, n.run_at, n.timeout, n.cwd, n.group, n.env, n.extra)
                for n in event.jobs]
        self._added(event.at, jobs)
        self.trail.note(event)
        return jobs

    def _move(self, job: Job, state: str) -> None:
        self.order.moved(job, state)
        del self.by_state[job.state][job.id]
        tally = self.tallies[job.group]
        tally[job.state] -= 1
        tally[state] += 1
        job.state = state
        self.by_state[state][job.id] = job
        if job.unique_key is not None:
            self.uniques.moved(job)

    def _tally(self, jobs: list[Job], state: str) -> None:
        name = jobs[0].group
        if all(job.group == name for job in jobs):
            self.tallies.setdefault(name, Counter())[state] += len(jobs)
        else:
            for name, n in Counter(job.group for job in jobs).items():
                self.tallies.setdefault(name, Counter())[state] += n

    def _added(self, at: float, jobs: list[Job]) -> None:
        """New jobs, with only their NewJob fields set yet: the rest are set here."""
        if not jobs:
            return
        intern, ticket = sys.intern, self._ticket
        ordered, last = True, -inf
        for job in jobs:
            ticket += 1
            job.command = intern(job.command)
            job.group = intern(job.group)
            if job.cwd is not None:
                job.cwd = intern(job.cwd)
            if job.env is not None:
                job.env = intern(job.env)  # one string for every job of the environment
            job.created_at = job.updated_at = at
            run_at = job.run_at
            due = job.due = run_at if run_at is not None and run_at > at else at
            job.ticket = ticket
            if due < last:
                ordered = False
            last = due
        self._ticket = ticket
        self.by_state[PENDING].update({job.id: job for job in jobs})
        self.order.added(jobs)
        self._tally(jobs, PENDING)
        self.uniques.added(jobs)
        for (_, priority), same in by_place(self.deps.added(jobs, at)).items():
            self._group_of(same[0]).lanes.place(priority, [(job.due, job.ticket, job) for job in same], at, ordered)

    def _started(self, e: ev.Started) -> None:
        job = self.by_state[PENDING].get(e.id) or self.by_state[FAILED][e.id]
        if job.id in self.held:
            self.held.discard(job.id)  # taken live: it counts already
        else:
            self._count_in(self._group_of(job))  # replay
        self._move(job, PROCESSING)
        job.attempts += 1
        job.worker = e.worker
        job.started_at = job.updated_at = e.at
        job.finished_at = job.next_retry_at = job.exit_code = job.error_message = None
        self.running[job.id] = (e.pgid, e.pid_start)

    def _ended(self, e: ev.Ended) -> None:
        job = self.by_state[PROCESSING][e.id]
        self._move(job, e.state)
        del self.running[job.id]
        self.cancelled.discard(job.id)
        self._count_out(self._group_of(job))
        job.finished_at = job.updated_at = e.at
        job.exit_code = e.exit_code
        job.error_message = e.error
        job.next_retry_at = e.next_retry_at
        job.worker = None
        if e.state == FAILED:
            assert e.next_retry_at is not None
            job.due = e.next_retry_at
            self._schedule(job, e.at)
        elif e.state == COMPLETED:
            self.deps.completed(job, e.at)
        else:
            self.deps.died(job, e.at)

    def _schedule(self, job: Job, at: float) -> None:
        """(Re)schedule a waiting job at `at` with a new ticket; its old entry, if any, is stale from now.
        A blocked job only draws the ticket: it enters a lane once its dependencies are met."""
        self._draw(job)
        if not job.blocked:
            self._group_of(job).lanes.place(job.priority, [(job.due, job.ticket, job)], at, True)

    def _draw(self, job: Job) -> None:
        self._ticket += 1
        job.ticket = self._ticket

    def _deleted(self, ids: list[str], at: float) -> None:
        for job_id in ids:
            job = self.get(job_id)
            self.uniques.deleted(job)
            self.order.moved(job, GONE)
            was = job.state
            del self.by_state[was][job.id]
            self.tallies[job.group][was] -= 1
            job.state = GONE
            self.deps.deleted(job, was, at)
        self.deps.purge()

    def _revived(self, e: ev.Revived) -> None:
        back = []
        for job_id in e.ids:
            job = self.get(job_id)
            if job.state == DEAD:
                self.deps.revive(job, e.at)
                back.append(job)
            elif job.state == FAILED:
                job.next_retry_at = job.updated_at = job.due = e.at  # its backoff is cut short
                self._schedule(job, e.at)
        self.deps.revived(back, e.at)  # they and their dependents are counted, and scheduled if unblocked

    def _cancelled(self, e: ev.Cancelled) -> None:
        for job_id in e.ids:
            job = self.get(job_id)
            if job.state == PROCESSING:
                self.cancelled.add(job_id)
            elif job.state in WAITS:
                self._move(job, DEAD)  # its heap entry is stale from now
                job.error_message = CANCELLED
                job.next_retry_at = None
                job.finished_at = job.updated_at = e.at
                self.deps.died(job, e.at)

    def _edited(self, e: ev.Edited) -> None:
        job = self.get(e.id)
        moved = e.group != job.group
        if moved:
            tally = self.tallies[job.group]
            tally[job.state] -= 1
            self.tallies.setdefault(e.group, Counter())[job.state] += 1
        job.priority, job.run_at, job.max_retries, job.timeout = e.priority, e.run_at, e.max_retries, e.timeout
        job.group = sys.intern(e.group)  # updated_at stays: it is when the job's state last changed
        if job.state not in WAITS:
            return
        if job.state == FAILED:
            job.next_retry_at = e.due
        job.due = e.due
        if e.reschedule:
            self._schedule(job, e.at)
        elif moved and not job.blocked:  # another group, the same place: the old entry is stale (not the job's group)
            self._group_of(job).lanes.place(job.priority, [(job.due, job.ticket, job)], e.at, True)
        # else: the same group and place: its entry stands (a second one would hand the job out twice)

    def _group_defined(self, e: ev.GroupDefined) -> None:
        group = self.groups.get(e.name)
        if group is None:
            group = self.groups[e.name] = Group(e.name)
        group.parallel, group.paused = e.parallel, e.paused
        self._reopen(group)

    def _group_removed(self, e: ev.GroupRemoved) -> None:
        self.groups.pop(e.name, None)
        self._open.pop(e.name, None)

    # -- snapshots ------------------------------------------------------------

    def snapshot(self, chunk: int = 10_000) -> list[ev.Event]:
        """Events that rebuild this state exactly (see `snapshots`)."""
        return snapshots.snapshot(self, chunk)
