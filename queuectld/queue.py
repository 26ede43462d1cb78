"""The job queue as a pure state machine: no I/O, no clock, no await.

Handlers ask it to *plan* a change, which validates and returns an event;
the daemon journals the event and then *applies* it.  Replay applies the
same events, so the queue after a restart is the queue before it.

Ordering: a job is *due* at its run_at, its next_retry_at, or when it was
enqueued or revived.  Due jobs start highest priority first, then earliest
due, then in the order they were scheduled (for new jobs, enqueue order).
Each scheduling draws a new ticket, stored in the job and in its heap entry;
an entry whose ticket is no longer the job's is stale, and is dropped lazily.

The jobs that wait to start are kept in one *lane* per priority: a heap by
(due, ticket), so a lane's due jobs are the first ones of its order, and no
job ever moves from a waiting structure to a ready one.  A lane is *awake*
while its first job is due (a heap of awake priorities gives the best one),
and *asleep* otherwise, with its first due time in a heap of wake-up times.
`take` wakes the lanes whose time has come, which costs one step per lane,
not per job: a million jobs due at once cost what one does.  A job due when
it is scheduled wakes its lane at once.  See docs/DECISIONS.md.

Memory: each job is in exactly one per-state dict, and nowhere else but a
heap entry while it waits; there is no table of all jobs (a million jobs
would pay ~40 bytes each for it).  An id lookup tries the five states.
"""

from __future__ import annotations

import heapq
import sys
from collections.abc import Iterable
from itertools import chain, islice
from math import inf

from queuectl_client.protocol import STATES

from . import events as ev
from .config import Config
from .model import Job, NewJob
from .rules import COMPLETED, DEAD, FAILED, LIST_ORDER, PENDING, PROCESSING, QueueError

GONE = "gone"  # a deleted job's state, so stale heap entries see it
_WAITS = (PENDING, FAILED)  # the states in which a heap entry can be live

Entry = tuple[float, int, Job]  # (due, ticket, job)


class _Lane:
    """The jobs of one priority that wait to start: a heap by (due, ticket), and its place in the queue."""

    __slots__ = ("heap", "last", "awake", "wake", "unsorted")  # no __dict__: one per priority, but tidy

    def __init__(self) -> None:
        self.heap: list[Entry] = []
        # The highest (due, ticket) ever added: entries above it, in order, extend the heap as it is.
        self.last: tuple[float, int] = (-inf, 0)
        self.awake = False  # its first job was due when last seen: take looks here
        self.wake: float | None = None  # while asleep, the time it is registered to wake at
        self.unsorted = False  # entries were appended out of order: heapify before use

    def first(self) -> Entry | None:
        """The first live entry, stale ones dropped; None if the lane holds no live job."""
        heap = self.heap
        if self.unsorted:
            heapq.heapify(heap)  # O(n), once, instead of a push per entry of a large batch or a snapshot
            self.unsorted = False
        while heap:
            entry = heap[0]
            job = entry[2]
            if job.ticket == entry[1] and job.state in _WAITS:
                return entry
            heapq.heappop(heap)
        return None


class Queue:
    def __init__(self) -> None:
        # Every job, by state, each dict in the order the jobs entered that state.
        self.by_state: dict[str, dict[str, Job]] = {s: {} for s in STATES}
        self._states = tuple(self.by_state[s] for s in (PENDING, PROCESSING, FAILED, COMPLETED, DEAD))
        # The process group of each running job's run, to kill it if the daemon dies.
        self.running: dict[str, tuple[int, int]] = {}  # id -> (pgid, start time of its leader)
        self._lanes: dict[int, _Lane] = {}  # priority -> its lane, while it holds entries
        self._awake: list[int] = []  # -priority of each awake lane, a heap: the best lane first
        self._sleeping: list[tuple[float, int]] = []  # (wake time, priority), a heap; stale if not lane.wake
        self._ticket = 0
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
        """The next due job, removed from its lane; the caller starts it or puts it back.

        Bounded work: a step per lane whose wake-up time has passed, then a pop
        from the best awake lane, plus the stale entries met on the way.
        """
        sleeping, lanes = self._sleeping, self._lanes
        while sleeping and sleeping[0][0] <= now:
            wake, priority = heapq.heappop(sleeping)
            lane = lanes.get(priority)
            if lane is not None and lane.wake == wake:
                self._rouse(lane, priority)
        awake = self._awake
        while awake:
            priority = -awake[0]
            lane = lanes.get(priority)
            if lane is None or not lane.awake:
                heapq.heappop(awake)  # stale: the lane fell asleep when a job was scheduled
                continue
            entry = lane.first()
            if entry is not None and entry[0] <= now:
                heapq.heappop(lane.heap)  # the job's only live entry: put_back makes it another
                self._look(lane, priority, now)
                return entry[2]
            self._look(lane, priority, now)
        return None

    def put_back(self, job: Job) -> None:
        """Return a taken job, unstarted, to its place: same due time, same ticket, due at once."""
        self._place(job.priority, [(job.due, job.ticket, job)], job.due, True)

    def next_due(self) -> float | None:
        """When the next job that is not due yet becomes due, or None.

        Exact once a `take` has found nothing due (which is when the pool asks);
        a lane whose first job is due holds no timer for the jobs behind it.
        """
        sleeping, lanes = self._sleeping, self._lanes
        while sleeping:
            wake, priority = sleeping[0]
            lane = lanes.get(priority)
            if lane is not None and lane.wake == wake:
                entry = lane.first()
                if entry is not None and entry[0] == wake:
                    return wake
                # Its first job went (deleted): register the lane again at the next one's time.
                heapq.heappop(sleeping)
                lane.wake = None
                if entry is None:
                    del lanes[priority]
                else:
                    self._doze(lane, priority, entry[0])
            else:
                heapq.heappop(sleeping)
        return None

    # -- lanes --------------------------------------------------------------

    def _rouse(self, lane: _Lane, priority: int) -> None:
        """The lane's first job is due: take looks at it, by priority."""
        if not lane.awake:
            lane.awake = True
            lane.wake = None  # its registrations in the sleeping heap are stale now
            heapq.heappush(self._awake, -priority)

    def _doze(self, lane: _Lane, priority: int, wake: float) -> None:
        """The lane (asleep) holds a job due at `wake`: register it, unless it wakes earlier already."""
        if lane.wake is None or wake < lane.wake:
            lane.wake = wake
            heapq.heappush(self._sleeping, (wake, priority))

    def _look(self, lane: _Lane, priority: int, now: float) -> None:
        """After a pop from the best awake lane: it stays awake, falls asleep, or goes if empty."""
        entry = lane.first()
        if entry is not None and entry[0] <= now:
            return
        heapq.heappop(self._awake)  # it is the top: take only pops the best lane
        lane.awake = False
        if entry is None:
            del self._lanes[priority]
        else:
            self._doze(lane, priority, entry[0])

    def _place(self, priority: int, entries: list[Entry], at: float, ordered: bool) -> None:
        """Add entries of one priority, scheduled at `at`, to its lane; `ordered`: by (due, ticket)."""
        lane = self._lanes.get(priority)
        if lane is None:
            lane = self._lanes[priority] = _Lane()
        heap = lane.heap
        first, top = entries[0], entries[-1]
        if ordered and (first[0], first[1]) > lane.last:
            heap.extend(entries)  # all above the lane's keys, in order: the heap stays a heap, O(k)
            lane.last = (top[0], top[1])
        else:
            if len(entries) * 8 > len(heap) or lane.unsorted:
                heap.extend(entries)  # cheaper to heapify with the rest, once, when next used
                lane.unsorted = True
            else:
                push = heapq.heappush
                for entry in entries:
                    push(heap, entry)
            if not ordered:
                top = max(entries)
            lane.last = max(lane.last, (top[0], top[1]))
        soonest = first[0] if ordered else min(entry[0] for entry in entries)
        if soonest <= at:
            self._rouse(lane, priority)  # due when scheduled: no timer, no move later
        elif not lane.awake:
            self._doze(lane, priority, soonest)
        else:
            # Awake, perhaps only on the strength of jobs gone since (taken elsewhere, deleted, or
            # never looked at after a replay): if nothing in it is due, it sleeps, so that
            # next_due names this entry's time.
            head = lane.first()
            assert head is not None
            if head[0] > at:
                lane.awake = False  # its entry in the awake heap is stale from now
                self._doze(lane, priority, head[0])

    def _schedule(self, job: Job, at: float) -> None:
        """(Re)schedule a job at `at` with a new ticket; its old entry, if any, is stale from now."""
        self._ticket += 1
        job.ticket = self._ticket
        self._place(job.priority, [(job.due, self._ticket, job)], at, True)

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
        if not jobs:
            return
        intern, ticket = sys.intern, self._ticket
        ordered, one_priority, priority, last = True, True, jobs[0].priority, -inf
        for job in jobs:
            ticket += 1
            job.command = intern(job.command)
            if job.cwd is not None:
                job.cwd = intern(job.cwd)
            job.created_at = job.updated_at = at
            run_at = job.run_at
            due = job.due = run_at if run_at is not None and run_at > at else at
            job.ticket = ticket
            if due < last:
                ordered = False
            last = due
            if job.priority != priority:
                one_priority = False
        self._ticket = ticket
        self.by_state[PENDING].update({job.id: job for job in jobs})
        for p, group in ({priority: jobs} if one_priority else _by_priority(jobs)).items():
            self._place(p, [(job.due, job.ticket, job) for job in group], at, ordered)

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
            self._schedule(job, e.at)

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
        waits = [job for job in chunk if job.state in _WAITS]
        if not waits:
            return
        priority = waits[0].priority
        one = all(job.priority == priority for job in waits)
        for p, group in ({priority: waits} if one else _by_priority(waits)).items():
            lane = self._lanes.get(p)
            if lane is None:
                lane = self._lanes[p] = _Lane()
            entries = [(job.due, job.ticket, job) for job in group]
            lane.heap.extend(entries)
            lane.unsorted = True  # heapified once, when first used
            top = max(entries)
            lane.last = max(lane.last, (top[0], top[1]))
            # Whether its first job is due is not known without a clock: take looks, and sleeps it if not.
            self._rouse(lane, p)

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
            self._schedule(job, e.at)


def _by_priority(jobs: list[Job]) -> dict[int, list[Job]]:
    groups: dict[int, list[Job]] = {}
    for job in jobs:
        groups.setdefault(job.priority, []).append(job)
    return groups
