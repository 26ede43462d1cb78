"""The job queue as a pure state machine: no I/O, no clock, no await.

Handlers ask it to *plan* a change, which validates and returns an event;
the daemon journals the event and then *applies* it.  Replay applies the
same events, so the queue after a restart is the queue before it.

Ordering: a job is *due* at its run_at, its next_retry_at, or when it was
enqueued or revived.  Due jobs start highest priority first, then earliest
due, then in enqueue order.  Jobs not yet due wait in a heap keyed by due
time; both heaps delete lazily, through a per-job version stamp.
"""

from __future__ import annotations

import heapq
import sys
from itertools import islice

from queuectl_client.protocol import STATES, JobSpec

from . import events as ev
from .config import Config
from .events import Job

PENDING, PROCESSING, COMPLETED, FAILED, DEAD = STATES
GONE = "gone"  # a deleted job's state, so stale heap entries see it

INTERRUPTED = "interrupted: daemon stopped while the job ran"


class QueueError(Exception):
    """A request the queue refuses; `code` is a protocol error code."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


class Queue:
    def __init__(self) -> None:
        self.jobs: dict[str, Job] = {}
        # Jobs by state, each dict in the order the jobs entered that state.
        self.by_state: dict[str, dict[str, Job]] = {s: {} for s in STATES}
        self._ready: list[tuple[int, float, int, int, Job]] = []  # (-priority, due, seq, stamp, job)
        self._waiting: list[tuple[float, int, int, Job]] = []  # (due, seq, stamp, job)
        self._seq = 0
        self._heapify = False
        self.config = Config()
        self.pool_size = 0

    # -- queries ----------------------------------------------------------

    def counts(self) -> dict[str, int]:
        return {s: len(d) for s, d in self.by_state.items()}

    def get(self, job_id: str) -> Job:
        job = self.jobs.get(job_id)
        if job is None:
            raise QueueError("not_found", f"no job with id {job_id!r}")
        return job

    def iter_jobs(self, state: str | None = None, limit: int | None = None) -> list[Job]:
        """Jobs in enqueue order, or in the order they entered `state`: a copy, O(limit)."""
        jobs = (self.by_state[state] if state else self.jobs).values()
        if limit is None:
            return list(jobs)
        return list(islice(jobs, limit))

    # -- dispatch ---------------------------------------------------------

    def take(self, now: float) -> Job | None:
        """The next due job, removed from the heaps; the caller starts it or puts it back."""
        if self._heapify:
            self._fix_heap()
        waiting, ready = self._waiting, self._ready
        while waiting and waiting[0][0] <= now:
            due, seq, stamp, job = heapq.heappop(waiting)
            if job.stamp == stamp and job.state in (PENDING, FAILED):
                heapq.heappush(ready, (-job.priority, due, seq, stamp, job))
        while ready:
            _, _, _, stamp, job = heapq.heappop(ready)
            if job.stamp == stamp and job.state in (PENDING, FAILED):
                job.stamp += 1
                return job
        return None

    def put_back(self, job: Job) -> None:
        self._schedule(job)

    def next_due(self) -> float | None:
        """When the earliest waiting job becomes due, or None."""
        if self._heapify:
            self._fix_heap()
        waiting = self._waiting
        while waiting:
            _, _, stamp, job = waiting[0]
            if job.stamp == stamp and job.state in (PENDING, FAILED):
                return waiting[0][0]
            heapq.heappop(waiting)
        return None

    def _fix_heap(self) -> None:
        heapq.heapify(self._waiting)  # O(n) once after a snapshot, instead of a push per job
        self._heapify = False

    def _schedule(self, job: Job) -> None:
        if self._heapify:
            self._fix_heap()
        job.stamp += 1
        heapq.heappush(self._waiting, (job.due, job.seq, job.stamp, job))

    # -- planning: validate a request and return the event to journal -----

    def plan_add(self, specs: list[JobSpec], at: float, id_prefix: str = "", cwd: str | None = None) -> ev.Added:
        """Name, check and resolve a batch: ids, run_at from `delay` or an ISO time, config defaults."""
        jobs, seen = self.jobs, set()
        cfg = self.config
        max_retries, timeout = cfg.max_retries, cfg.job_timeout
        single = len(specs) == 1
        new = []
        for i, s in enumerate(specs, 1):
            job_id = s.id
            if job_id is None:
                if not id_prefix:
                    raise QueueError("invalid", "a job without an id needs the request's id_prefix")
                job_id = id_prefix if single else f"{id_prefix}-{i}"
            if job_id in jobs or job_id in seen:
                raise QueueError("duplicate", f"a job with id {job_id!r} already exists")
            seen.add(job_id)
            run_at = s.run_at
            if run_at.__class__ is not float and run_at is not None:
                run_at = run_at.timestamp()  # type: ignore[union-attr]
            if s.delay is not None:
                if run_at is not None:
                    raise QueueError("invalid", f"job {job_id}: give run_at or delay, not both")
                run_at = at + s.delay
            new.append(ev.NewJob(
                job_id, s.command, max_retries if s.max_retries is None else s.max_retries, s.priority,
                run_at, timeout if s.timeout is None else s.timeout, s.cwd or cwd,
            ))
        return ev.Added(at, new)

    def plan_start(self, job: Job, at: float, worker: int, pgid: int, pid_start: int) -> ev.Started:
        return ev.Started(job.id, at, worker, pgid, pid_start)

    def plan_end(self, job: Job, at: float, exit_code: int | None, error: str | None) -> ev.Ended:
        """The outcome of a run: completed, or failed with a retry time, or dead."""
        if error is None and exit_code == 0:
            return ev.Ended(job.id, at, COMPLETED, 0, None, None)
        if job.attempts <= job.max_retries:
            delay = self.config.backoff_base ** job.attempts
            return ev.Ended(job.id, at, FAILED, exit_code, error, at + delay)
        return ev.Ended(job.id, at, DEAD, exit_code, error, None)

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

    def interrupted(self, at: float) -> list[ev.Ended]:
        """End every run the journal shows as still going (after a crash or a forced stop)."""
        return [self.plan_end(job, at, None, INTERRUPTED) for job in self.by_state[PROCESSING].values()]

    # -- applying events ----------------------------------------------------

    def apply(self, event: ev.Event) -> None:
        if isinstance(event, ev.Started):
            self._started(event)
        elif isinstance(event, ev.Ended):
            self._ended(event)
        elif isinstance(event, ev.Added):
            self._added(event)
        elif isinstance(event, ev.Deleted):
            self._deleted(event)
        elif isinstance(event, ev.Revived):
            self._revived(event)
        elif isinstance(event, ev.ConfigChanged):
            self.config.set(event.key, event.value)
        elif isinstance(event, ev.PoolSized):
            self.pool_size = event.count
        elif isinstance(event, ev.Restored):
            self._restored(event)
        elif isinstance(event, ev.SnapshotEnd):
            pass

    def _move(self, job: Job, state: str) -> None:
        del self.by_state[job.state][job.id]
        job.state = state
        self.by_state[state][job.id] = job

    def _added(self, e: ev.Added) -> None:
        pending, jobs, at = self.by_state[PENDING], self.jobs, e.at
        intern = sys.intern
        for new in e.jobs:
            self._seq += 1
            run_at = new.run_at
            job = Job(
                new.id, intern(new.command), PENDING, 0, new.max_retries, new.priority, new.timeout, run_at,
                at, at, None, None, None, None, None, None, new.cwd and intern(new.cwd), self._seq,
                run_at if run_at is not None and run_at > at else at, 0, 0,
            )
            jobs[job.id] = job
            pending[job.id] = job
            self._schedule(job)

    def _started(self, e: ev.Started) -> None:
        job = self.jobs[e.id]
        self._move(job, PROCESSING)
        job.stamp += 1
        job.attempts += 1
        job.worker = e.worker
        job.started_at = job.updated_at = e.at
        job.finished_at = job.next_retry_at = job.exit_code = job.error_message = None
        job.pgid, job.pid_start = e.pgid, e.pid_start

    def _ended(self, e: ev.Ended) -> None:
        job = self.jobs[e.id]
        self._move(job, e.state)
        job.finished_at = job.updated_at = e.at
        job.exit_code = e.exit_code
        job.error_message = e.error
        job.next_retry_at = e.next_retry_at
        job.worker = None
        job.pgid = job.pid_start = 0
        if e.state == FAILED:
            assert e.next_retry_at is not None
            job.due = e.next_retry_at
            self._schedule(job)

    def _restored(self, e: ev.Restored) -> None:
        # Comprehensions rather than one loop doing everything: a million jobs restore in about
        # half the time.
        chunk = e.jobs
        if not chunk:
            return
        intern = sys.intern
        for job in chunk:
            job.command = intern(job.command)
        self.jobs.update({job.id: job for job in chunk})
        for state, jobs in self.by_state.items():
            jobs.update({job.id: job for job in chunk if job.state == state})
        self._waiting.extend([(job.due, job.seq, job.stamp, job) for job in chunk if job.state in (PENDING, FAILED)])
        self._seq = max(self._seq, chunk[-1].seq)
        self._heapify = True  # once, when the heap is next used

    # -- snapshots ------------------------------------------------------------

    def snapshot(self, chunk: int = 10_000) -> list[ev.Event]:
        """Events that rebuild this state exactly: settings, pool, then every job."""
        out: list[ev.Event] = [ev.ConfigChanged(k, self.config.show(k)) for k in self.config.values]
        out.append(ev.PoolSized(self.pool_size))
        # The live Job structs themselves, in enqueue order: the caller encodes them before
        # the loop runs again, so the snapshot is the state of this moment.
        jobs = list(self.jobs.values())
        out += [ev.Restored(jobs[i : i + chunk]) for i in range(0, len(jobs), chunk)]
        out.append(ev.SnapshotEnd(len(jobs)))
        return out

    def _deleted(self, e: ev.Deleted) -> None:
        job = self.jobs.pop(e.id)
        del self.by_state[job.state][job.id]
        job.state = GONE

    def _revived(self, e: ev.Revived) -> None:
        for job_id in e.ids:
            job = self.jobs[job_id]
            self._move(job, PENDING)
            job.attempts = 0
            job.error_message = job.next_retry_at = job.exit_code = None
            job.updated_at = job.due = e.at
            self._schedule(job)
