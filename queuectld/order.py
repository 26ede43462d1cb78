"""Keyset pages: the jobs of a state newest first, from any point, at the same cost at any depth.

Each state has a log of the jobs that entered it, in that order: a sequence
number (the cursor a page hands out), the time the job entered, and the job.
A job that leaves the state leaves its entry behind; an entry counts while its
job is still in that state and still holds the time it entered with (a job that
left and came back has a newer entry, so an older one never shows it twice).
A page seeks its cursor by bisection and walks back from there, so it costs
the jobs it returns plus the left-behind entries it passes.  Those are swept
out a bounded step at a time (SWEEP_WIDTH entries every SWEEP_EVERY changes,
while a log holds more than a quarter of its live entries left behind), so no
change pays for a whole log, and no request walks more than its scan budget.

The logs are built the first time a page is asked for (one pass over the
jobs, in their dicts' order), and kept from then on: a daemon that nobody
pages through pays nothing.  The time a job entered its state is only final
once the change that moved it is applied, so a move is recorded at the next
move or the next page, whichever comes first.
"""

from __future__ import annotations

from array import array
from bisect import bisect_left
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

from .model import Job
from .rules import COMPLETED, DEAD, FAILED, LIST_ORDER, PENDING, PROCESSING, QueueError

if TYPE_CHECKING:
    from .queue import Queue

SLACK = 4096  # left-behind entries a log may hold beyond a quarter of its live ones
SWEEP_EVERY = 512  # changes of a log between two looks at its left-behind entries
SWEEP_WIDTH = 2048  # entries a sweep looks at: 4 a change, outpacing the 1 a change leaves behind
PAGE_BYTES = 4 << 20  # a page's jobs, about, so that a page of long commands fits in a frame
JOB_OVERHEAD = 512  # a job's encoded size beyond its strings, at most
END = 1 << 62  # a cursor before the newest entry of a log


def _entered(state: str) -> Callable[[Job], float]:
    """When a job in `state` entered it: a field that stays put while it stays there."""
    if state == PROCESSING:
        return lambda job: job.started_at or 0.0
    if state in (FAILED, COMPLETED, DEAD):
        return lambda job: job.finished_at or 0.0
    return lambda job: job.updated_at


class Log:
    __slots__ = ("debt", "entered", "jobs", "seqs", "stamps", "state", "swept")

    def __init__(self, state: str) -> None:
        self.state = state
        self.entered = _entered(state)
        self.seqs = array("q")
        self.stamps = array("d")
        self.jobs: list[Job] = []
        self.swept = 0  # where the next sweep starts
        self.debt = 0  # entries added or left behind since the last sweep

    def append(self, seq: int, job: Job) -> None:
        self.seqs.append(seq)
        self.stamps.append(self.entered(job))
        self.jobs.append(job)

    def live(self, i: int) -> bool:
        job = self.jobs[i]
        return job.state == self.state and self.entered(job) == self.stamps[i]

    def sweep(self, width: int) -> None:
        """Drop the left-behind entries of the next `width` entries (from where the last sweep
        stopped, round the log): a bounded step, however long the log."""
        if self.swept >= len(self.jobs):
            self.swept = 0
        a, b = self.swept, min(len(self.jobs), self.swept + width)
        keep = [i for i in range(a, b) if self.live(i)]
        self.jobs[a:b] = [self.jobs[i] for i in keep]
        self.seqs[a:b] = array("q", [self.seqs[i] for i in keep])
        self.stamps[a:b] = array("d", [self.stamps[i] for i in keep])
        self.swept = a + len(keep)


class Order:
    """The logs of every state; `pages` reads them, `moved` and `added` keep them."""

    def __init__(self, by_state: dict[str, dict[str, Job]]) -> None:
        self.by_state = by_state
        self.logs: dict[str, Log] | None = None  # None until a page is asked for
        self.seq = 0
        self.last: tuple[Job, str] | None = None  # the latest move, recorded at the next one

    # -- keeping ------------------------------------------------------------------

    def added(self, jobs: Iterable[Job]) -> None:
        """New pending jobs (their times are set)."""
        if self.logs is None:
            return
        log = self.logs[PENDING]
        n = 0
        for job in jobs:
            self.seq += 1
            log.append(self.seq, job)
            n += 1
        self._owe(log, n)

    def moved(self, job: Job, state: str) -> None:
        """`job` is entering `state` (the time it does is set after this call), or leaving for good."""
        if self.logs is None:
            return
        self.settle()
        self.last = (job, state)
        if job.state in self.logs:
            self._owe(self.logs[job.state], 1)  # its entry there is left behind

    def settle(self) -> None:
        if self.last is None or self.logs is None:
            return
        job, state = self.last
        self.last = None
        if job.state == state and state in self.logs:  # else it moved on (or was deleted): nothing to record
            log = self.logs[state]
            self.seq += 1
            log.append(self.seq, job)
            self._owe(log, 1)

    def _owe(self, log: Log, n: int) -> None:
        """`n` entries were added to `log` or left behind in it: sweep a step of it now and then, while
        it holds more than a quarter of its live entries (plus SLACK) left behind."""
        log.debt += n
        while log.debt >= SWEEP_EVERY:
            log.debt -= SWEEP_EVERY
            live = len(self.by_state[log.state])
            if len(log.jobs) - live <= live // 4 + SLACK:
                log.debt = 0
                return
            log.sweep(SWEEP_WIDTH)

    def _build(self) -> dict[str, Log]:
        logs = {}
        for state, jobs in self.by_state.items():
            log = logs[state] = Log(state)
            first = self.seq + 1
            self.seq += len(jobs)
            log.seqs = array("q", range(first, self.seq + 1))
            entered = log.entered
            log.stamps = array("d", (entered(job) for job in jobs.values()))
            log.jobs = list(jobs.values())
        self.last = None
        return logs

    # -- reading ------------------------------------------------------------------

    def page(self, state: str | None, cursor: tuple[str, int] | None, limit: int, scan: int,
             keep: Callable[[Job], bool] | None) -> tuple[list[Job], tuple[str, int] | None, int]:
        """Up to `limit` jobs of `state` (or of every state, in LIST_ORDER), newest first, before
        `cursor`, that `keep` keeps, looking at no more than `scan` entries.  Returns the jobs, the
        cursor of what follows (None: nothing), and how many entries it looked at."""
        if self.logs is None:
            self.logs = self._build()
        self.settle()
        states = [state] if state else list(LIST_ORDER)
        at, seq = cursor if cursor is not None else (states[0], END)
        if at not in states:
            return [], None, 0
        out: list[Job] = []
        scanned = size = 0
        for s in states[states.index(at):]:
            log = self.logs[s]
            i = bisect_left(log.seqs, seq) - 1
            seq = END
            jobs, live = log.jobs, log.live
            while i >= 0:
                if len(out) == limit or scanned == scan or size > PAGE_BYTES:
                    return out, (s, log.seqs[i + 1] if i + 1 < len(jobs) else END), scanned
                scanned += 1
                job = jobs[i]
                if live(i) and (keep is None or keep(job)):
                    out.append(job)
                    size += JOB_OVERHEAD + len(job.command) + len(job.cwd or "") + len(job.error_message or "")
                i -= 1
            nxt = states.index(s) + 1
            if len(out) == limit and nxt < len(states):
                return out, (states[nxt], END), scanned
        return out, None, scanned


def paged(q: Queue, state: str | None, group: str | None, query: str | None, cursor: str | None,
          limit: int, scan: int) -> tuple[list[Job], str | None, int, int | None]:
    """A page as the store gives it (see `Store.page`): jobs, next cursor, jobs looked at, total."""
    at = None
    if cursor is not None:
        name, _, seq = cursor.partition(":")
        if name not in q.by_state or not seq.isdigit() or int(seq) > END or (state is not None and name != state):
            raise QueueError("invalid", f"{cursor!r} is not a cursor of this listing")
        at = (name, int(seq))
    keep: Callable[[Job], bool] | None = None
    first: list[Job] = []
    if query is not None:
        exact = q.find(query)
        if exact is not None and (state is None or exact.state == state) and (group is None or exact.group == group):
            if cursor is None:
                first = [exact]  # the job of that id first, then the commands that hold the text
                limit -= 1

        def keep(job: Job) -> bool:
            return (group is None or job.group == group) and job is not exact and query in job.command
    elif group is not None:
        def keep(job: Job) -> bool:
            return job.group == group
    jobs: list[Job] = []
    nxt: tuple[str, int] | None = (state or LIST_ORDER[0], END)
    scanned = 0
    if limit > 0:  # (0: the job of that id fills the page; the search goes on from the top)
        jobs, nxt, scanned = q.order.page(state, at, limit, scan if keep is not None else max(scan, 4 * limit), keep)
    if query is not None:
        total = None
    elif group is not None:
        tally = q.tally(group)
        total = tally[state] if state else sum(tally.values())
    else:
        total = q.counts()[state] if state else len(q)
    return first + jobs, None if nxt is None else f"{nxt[0]}:{nxt[1]}", scanned, total
