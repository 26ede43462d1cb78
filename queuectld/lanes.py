"""A group, and its waiting jobs in the order they start: one *lane* per priority.

A lane is a heap by (due, ticket), so a lane's due jobs are the first ones
of its order, and no job ever moves from a waiting structure to a ready
one.  A lane is *awake* while its first job is due (a heap of awake
priorities gives the best one), and *asleep* otherwise, with its first due
time in a heap of wake-up times.  `peek` wakes the lanes whose time has
come, which costs one step per lane, not per job: a million jobs due at once
cost what one does.  A job due when it is scheduled wakes its lane at once.

An entry is live while its job still holds that ticket, waits (pending or
failed) and belongs to this group; any other entry is stale and is dropped
when met.  See docs/DECISIONS.md, "Waiting jobs heap" and "Groups".
"""

from __future__ import annotations

import heapq
from math import inf

from .model import Job
from .rules import FAILED, PENDING

_WAITS = (PENDING, FAILED)  # the states in which a heap entry can be live

Entry = tuple[float, int, Job]  # (due, ticket, job)


class _Lane:
    """The jobs of one priority that wait to start: a heap by (due, ticket), and its place in the group."""

    __slots__ = ("awake", "group", "heap", "last", "unsorted", "wake")

    def __init__(self, group: str) -> None:
        self.group = group
        self.heap: list[Entry] = []
        # The highest (due, ticket) ever added: entries above it, in order, extend the heap as it is.
        self.last: tuple[float, int] = (-inf, 0)
        self.awake = False  # its first job was due when last seen: peek looks here
        self.wake: float | None = None  # while asleep, the time it is registered to wake at
        self.unsorted = False  # entries were appended out of order: heapify before use

    def first(self) -> Entry | None:
        """The first live entry, stale ones dropped; None if the lane holds no live job."""
        heap = self.heap
        if self.unsorted:
            heapq.heapify(heap)  # O(n), once, instead of a push per entry of a large batch or a snapshot
            self.unsorted = False
        group = self.group
        while heap:
            entry = heap[0]
            job = entry[2]
            if job.ticket == entry[1] and job.state in _WAITS and job.group == group:
                return entry
            heapq.heappop(heap)
        return None


class Lanes:
    """The waiting jobs of one group."""

    __slots__ = ("_awake", "_lanes", "_sleeping", "name")

    def __init__(self, name: str) -> None:
        self.name = name
        self._lanes: dict[int, _Lane] = {}  # priority -> its lane, while it holds entries
        self._awake: list[int] = []  # -priority of each awake lane, a heap: the best lane first
        self._sleeping: list[tuple[float, int]] = []  # (wake time, priority), a heap; stale if not lane.wake

    def __bool__(self) -> bool:
        return bool(self._lanes)

    def peek(self, now: float) -> Entry | None:
        """The entry of the next job due at `now`, left in place; `pop` removes it.

        Bounded work: a step per lane whose wake-up time has passed, then a
        look at the best awake lane, plus the stale entries met on the way.
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
                return entry
            self._look(lane, priority, now)
        return None

    def pop(self, now: float) -> Job:
        """Remove the entry `peek(now)` just returned; its job's only live entry goes with it."""
        priority = -self._awake[0]
        lane = self._lanes[priority]
        job = heapq.heappop(lane.heap)[2]
        self._look(lane, priority, now)
        return job

    def next_due(self) -> float | None:
        """When the next job that is not due yet becomes due, or None.

        Exact once a `peek` has found nothing due (which is when the pool asks);
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

    def oldest_due(self, now: float) -> float | None:
        """The earliest due time among the jobs due at `now`, or None: a look at each lane's first job."""
        dues = [entry[0] for lane in self._lanes.values() if (entry := lane.first()) is not None and entry[0] <= now]
        return min(dues) if dues else None

    # -- lanes ------------------------------------------------------------------

    def _rouse(self, lane: _Lane, priority: int) -> None:
        """The lane's first job is due: peek looks at it, by priority."""
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
        """After a pop from the best awake lane, or finding nothing due in it: it stays awake,
        falls asleep, or goes if empty."""
        entry = lane.first()
        if entry is not None and entry[0] <= now:
            return
        heapq.heappop(self._awake)  # it is the top: only the best lane is looked at
        lane.awake = False
        if entry is None:
            del self._lanes[priority]
        else:
            self._doze(lane, priority, entry[0])

    def place(self, priority: int, entries: list[Entry], at: float, ordered: bool) -> None:
        """Add entries of one priority, scheduled at `at`; `ordered`: sorted by (due, ticket)."""
        lane = self._lanes.get(priority)
        if lane is None:
            lane = self._lanes[priority] = _Lane(self.name)
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

    def restore(self, priority: int, entries: list[Entry]) -> None:
        """Entries from a snapshot, in no useful order: heapified once, when first used."""
        lane = self._lanes.get(priority)
        if lane is None:
            lane = self._lanes[priority] = _Lane(self.name)
        lane.heap.extend(entries)
        lane.unsorted = True
        top = max(entries)
        lane.last = max(lane.last, (top[0], top[1]))
        # Whether its first job is due is not known without a clock: peek looks, and sleeps it if not.
        self._rouse(lane, priority)


def by_place(jobs: list[Job]) -> dict[tuple[str, int], list[Job]]:
    """Jobs by (group, priority), each list in the given order: what one `place` (or `restore`) takes."""
    if not jobs:
        return {}
    first = jobs[0]
    if all(job.priority == first.priority and job.group == first.group for job in jobs):
        return {(first.group, first.priority): jobs}
    places: dict[tuple[str, int], list[Job]] = {}
    for job in jobs:
        places.setdefault((job.group, job.priority), []).append(job)
    return places


class Group:
    """A group's settings, its waiting jobs, and how many of its jobs are claimed or running."""

    __slots__ = ("active", "lanes", "name", "parallel", "paused")

    def __init__(self, name: str, parallel: int = 0, paused: bool = False) -> None:
        self.name = name
        self.parallel = parallel  # 0: no cap beyond the pool
        self.paused = paused
        self.lanes = Lanes(name)
        self.active = 0

    def open(self) -> bool:
        """It may start a job now."""
        return not self.paused and (self.parallel == 0 or self.active < self.parallel)
