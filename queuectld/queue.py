"""The job queue as a pure state machine: no I/O, no clock, no await.

Handlers ask it to *plan* a change, which validates and returns an event;
the daemon journals the event and then *applies* it.  Replay applies the
same events, so the queue after a restart is the queue before it.

Ordering: a job is *due* at its run_at, its next_retry_at, or when it was
enqueued or revived.  Due jobs start highest priority first, then earliest
due, then in the order they were scheduled (for new jobs, enqueue order).
Jobs not yet due wait in a heap keyed by due time.  Each scheduling draws a
new ticket, stored in the job and in its heap entry; an entry whose ticket is
no longer the job's is stale, and both heaps drop stale entries lazily.

Memory: each job is in exactly one per-state dict, and nowhere else but a
heap entry while it waits; there is no table of all jobs (a million jobs
would pay ~40 bytes each for it).  An id lookup tries the five states.
"""

from __future__ import annotations

import heapq
import sys
from collections.abc import Iterable
from itertools import chain, islice

from queuectl_client.protocol import STATES

from . import events as ev
from .config import Config
from .model import Job, NewJob
from .rules import COMPLETED, DEAD, FAILED, LIST_ORDER, PENDING, PROCESSING, QueueError

GONE = "gone"  # a deleted job's state, so stale heap entries see it


class Queue:
    def __init__(self) -> None:
        # Every job, by state, each dict in the order the jobs entered that state.
        self.by_state: dict[str, dict[str, Job]] = {s: {} for s in STATES}
        self._states = tuple(self.by_state[s] for s in (PENDING, PROCESSING, FAILED, COMPLETED, DEAD))
        # The process group of each running job's run, to kill it if the daemon dies.
        self.running: dict[str, tuple[int, int]] = {}  # id -> (pgid, start time of its leader)
        self._ready: list[tuple[int, float, int, Job]] = []  # (-priority, due, ticket, job)
        self._waiting: list[tuple[float, int, Job]] = []  # (due, ticket, job)
        self._ticket = 0
        self._heapify = False
        self.config = Config()
        self.pool_size = 0

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

    def iter_jobs(self, state: str | None = None, limit: int | None = None) -> list[Job]:
        """Jobs in the order they entered `state`, or every job in LIST_ORDER: a copy, O(limit)."""
        if state:
            jobs: Iterable[Job] = self.by_state[state].values()
        else:
            jobs = chain.from_iterable(self.by_state[s].values() for s in LIST_ORDER)
        return list(jobs if limit is None else islice(jobs, limit))

    # -- dispatch ---------------------------------------------------------

    def take(self, now: float) -> Job | None:
        """The next due job, removed from the heaps; the caller starts it or puts it back."""
        if self._heapify:
            self._fix_heap()
        waiting, ready = self._waiting, self._ready
        while waiting and waiting[0][0] <= now:
            due, ticket, job = heapq.heappop(waiting)
            if job.ticket == ticket and job.state in (PENDING, FAILED):
                heapq.heappush(ready, (-job.priority, due, ticket, job))
        while ready:
            _, _, ticket, job = heapq.heappop(ready)
            if job.ticket == ticket and job.state in (PENDING, FAILED):
                return job  # its only live entry is gone; put_back draws a new ticket
        return None

    def put_back(self, job: Job) -> None:
        self._schedule(job)

    def next_due(self) -> float | None:
        """When the earliest waiting job becomes due, or None."""
        if self._heapify:
            self._fix_heap()
        waiting = self._waiting
        while waiting:
            due, ticket, job = waiting[0]
            if job.ticket == ticket and job.state in (PENDING, FAILED):
                return due
            heapq.heappop(waiting)
        return None

    def _fix_heap(self) -> None:
        heapq.heapify(self._waiting)  # O(n) once after a snapshot, instead of a push per job
        self._heapify = False

    def _schedule(self, job: Job) -> None:
        if self._heapify:
            self._fix_heap()
        self._ticket += 1
        job.ticket = self._ticket
        heapq.heappush(self._waiting, (job.due, self._ticket, job))

    # -- planning: validate a request and return the event to journal -----

    def check_new(self, jobs: list[NewJob]) -> None:
        """Refuse a batch that names a job the queue holds."""
        find = self.find
        for job in jobs:
            if find(job.id) is not None:
                raise QueueError("duplicate", f"a job with id {job.id!r} already exists")

    def plan_delete(self, job_id: str, at: float) -> ev.Deleted:
        job = self.get(job_id)
        if job.state == PROCESSING:
            raise QueueError("state", f"job {job_id} is running; delete it after it finishes")
        return ev.Deleted(job_id, at)

    def plan_revive(self, ids: list[str], everything: bool, at: float) -> ev.Revived:
        if everything:
            return ev.Revived(list(self.by_state[DEAD]), at)
        if not ids:
            raise QueueError("invalid", "name the jobs to retry, or use --all")
        for job_id in ids:
            job = self.get(job_id)
            if job.state != DEAD:
                raise QueueError("state", f"job {job_id} is {job.state}, not dead; only dead jobs can be retried")
        return ev.Revived(list(dict.fromkeys(ids)), at)

    # -- applying events ----------------------------------------------------

    def apply(self, event: ev.Event | ev.AddedJobs) -> None:
        if isinstance(event, ev.Started):
            self._started(event)
        elif isinstance(event, ev.Ended):
            self._ended(event)
        elif isinstance(event, ev.AddedJobs):
            self._added(event.at, event.jobs)  # replay: decoded as Job structs already
        elif isinstance(event, ev.Added):
            self.add_new(event)
        elif isinstance(event, ev.Deleted):
            self._deleted(event)
        elif isinstance(event, ev.Revived):
            self._revived(event)
        elif isinstance(event, ev.ConfigChanged):
            self.config.restore(event.key, event.value)
        elif isinstance(event, ev.PoolSized):
            self.pool_size = event.count
        elif isinstance(event, ev.Restored):
            self._restored(event)
        elif isinstance(event, ev.Running):
            self.running[event.id] = (event.pgid, event.pid_start)
        elif isinstance(event, ev.SnapshotEnd):
            self._ticket = max(self._ticket, event.ticket)

    def add_new(self, event: ev.Added) -> list[Job]:
        """Apply an `Added` record made live; returns the new jobs."""
        jobs = [Job(n.id, n.command, n.max_retries, n.priority, n.run_at, n.timeout, n.cwd) for n in event.jobs]
        self._added(event.at, jobs)
        return jobs

    def _move(self, job: Job, state: str) -> None:
        del self.by_state[job.state][job.id]
        job.state = state
        self.by_state[state][job.id] = job

    def _added(self, at: float, jobs: list[Job]) -> None:
        """New jobs, with only their NewJob fields set yet: the rest are set here."""
        intern, ticket = sys.intern, self._ticket
        for job in jobs:
            ticket += 1
            job.command = intern(job.command)
            if job.cwd is not None:
                job.cwd = intern(job.cwd)
            job.created_at = job.updated_at = at
            run_at = job.run_at
            job.due = run_at if run_at is not None and run_at > at else at
            job.ticket = ticket
        self._ticket = ticket
        self.by_state[PENDING].update({job.id: job for job in jobs})
        entries = [(job.due, job.ticket, job) for job in jobs]
        waiting = self._waiting
        if self._heapify or len(entries) * 8 > len(waiting):
            waiting.extend(entries)  # a batch this size is cheaper to heapify with the rest, once
            self._heapify = True
        else:
            push = heapq.heappush
            for entry in entries:
                push(waiting, entry)

    def _started(self, e: ev.Started) -> None:
        job = self.by_state[PENDING].get(e.id) or self.by_state[FAILED][e.id]
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
        job.finished_at = job.updated_at = e.at
        job.exit_code = e.exit_code
        job.error_message = e.error
        job.next_retry_at = e.next_retry_at
        job.worker = None
        if e.state == FAILED:
            assert e.next_retry_at is not None
            job.due = e.next_retry_at
            self._schedule(job)

    def _restored(self, e: ev.Restored) -> None:
        chunk = e.jobs
        if not chunk:
            return
        intern = sys.intern
        for job in chunk:
            job.command = intern(job.command)
        # A snapshot writes each state's jobs in their own chunks (see snapshot()), so a chunk
        # normally goes into one dict in one pass.  Comprehensions, not one loop doing everything:
        # a million jobs restore in about half the time.
        state = chunk[0].state
        if all(job.state == state for job in chunk):
            self.by_state[state].update({job.id: job for job in chunk})
        else:
            for s, jobs in self.by_state.items():
                jobs.update({job.id: job for job in chunk if job.state == s})
        self._waiting.extend([(job.due, job.ticket, job) for job in chunk if job.state in (PENDING, FAILED)])
        self._heapify = True  # once, when the heap is next used

    # -- snapshots ------------------------------------------------------------

    def snapshot(self, chunk: int = 10_000) -> list[ev.Event]:
        """Events that rebuild this state exactly: settings, pool, every job, the running groups."""
        out: list[ev.Event] = [ev.ConfigChanged(k, self.config.show(k)) for k in self.config.values]
        out.append(ev.PoolSized(self.pool_size))
        # The live Job structs themselves, state by state in the order they entered it: the
        # caller encodes them before the loop runs again, so the snapshot is the state of this moment.
        total = 0
        for state in STATES:
            jobs = list(self.by_state[state].values())
            total += len(jobs)
            out += [ev.Restored(jobs[i : i + chunk]) for i in range(0, len(jobs), chunk)]
        out += [ev.Running(job_id, pgid, start) for job_id, (pgid, start) in self.running.items()]
        out.append(ev.SnapshotEnd(total, self._ticket))
        return out

    def _deleted(self, e: ev.Deleted) -> None:
        job = self.get(e.id)
        del self.by_state[job.state][job.id]
        job.state = GONE

    def _revived(self, e: ev.Revived) -> None:
        dead = self.by_state[DEAD]
        for job_id in e.ids:
            job = dead[job_id]
            self._move(job, PENDING)
            job.attempts = 0
            job.error_message = job.next_retry_at = job.exit_code = None
            job.updated_at = job.due = e.at
            self._schedule(job)
