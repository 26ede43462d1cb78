"""Job dependencies: which jobs wait for which, and what a dependency's change does to its dependents.

A job names its dependencies in `after` (each must complete) and `after_any` (each must be final:
completed, dead or deleted).  Each name is an *edge*, unmet while its dependency is live (pending,
processing or failed), whatever its kind.  `Job.blocked` counts a pending job's unmet edges; while
it is above 0 the job is in no lane, so dispatch never sees it.

The queue calls `Deps` from its appliers.  A dependency's change reaches its dependents through an
index (dependency id -> the jobs that name it), so completing a job costs O(its dependents), never a
scan.  These changes write no record of their own: they follow from the record applied, on replay
as live:

- completed: each pending dependent has one unmet edge fewer; at none it is scheduled, due now.
- dead (retries spent, cancelled), or deleted before it completed: its pending `after` dependents
  die at once, "dependency X is dead", with `cause` X, and theirs in turn (iteratively); its
  pending `after_any` dependents count it met.  Deleted, it can never come back: its dead `after`
  dependents take it as their cause.
- revived (dead -> pending): its dependents whose cause it is come back to pending, and theirs,
  unless another `after` dependency of theirs is dead; pending `after_any` dependents that counted
  it met wait for it again (a new ticket: the lane entry they had goes stale).

An id a job that is not completed names as a dependency cannot be taken by a new job (see
`reserved`): so a name always means the job it meant at enqueue, and the index rebuilt from the
jobs' own lists after a restart is the one the daemon had.  The rules' SQL form is in
docs/DECISIONS.md ("Dependencies").
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from operator import attrgetter
from typing import TYPE_CHECKING

from .model import Job, JobFields
from .rules import COMPLETED, DEAD, FAILED, PENDING, PROCESSING

if TYPE_CHECKING:
    from .queue import Queue

LIVE = frozenset((PENDING, PROCESSING, FAILED))
GONE = "gone"  # as queue.GONE: a deleted job's state

StateOf = Callable[[str], "str | None"]  # a job's state by id; None: no such job
_ticket = attrgetter("ticket")


# -- the rules, as pure functions -------------------------------------------------------------


def unmet(state: str | None) -> bool:
    """An edge of either kind waits while its dependency is live; completed, dead and deleted are final."""
    return state in LIVE


def names(job: JobFields) -> list[str]:
    """The job's dependencies, each once, `after` first."""
    if job.after_any is None:
        return job.after or []
    return list(dict.fromkeys((job.after or []) + job.after_any))


def count_unmet(job: Job, state_of: StateOf) -> int:
    """Unmet edges: what `blocked` holds for a pending job (a name in both lists is two edges)."""
    return sum(unmet(state_of(d)) for d in job.after or ()) + sum(unmet(state_of(d)) for d in job.after_any or ())


def blocked_by(job: Job, state_of: StateOf) -> list[str]:
    """The dependencies a pending job still waits for, in the order it names them."""
    if job.state != PENDING or not job.blocked:
        return []
    return [d for d in names(job) if unmet(state_of(d))]


def fatal(job: Job, state_of: StateOf) -> list[str]:
    """What keeps a job from running at all: its `after` dependencies that are dead, or its cause if that
    was deleted before it completed (a deleted dependency that completed first is met)."""
    out = [d for d in job.after or () if state_of(d) == DEAD]
    if job.cause is not None and state_of(job.cause) is None and job.cause not in out:
        out.append(job.cause)
    return out


def _names_any(job: JobFields) -> bool:
    """Whether the job names a dependency; most jobs have no extras, and are told apart by one slot."""
    e = job.extra
    return e is not None and (e.after is not None or e.after_any is not None)


def death(dep: str) -> str:
    """The error of a job that died because its `after` dependency did."""
    return f"dependency {dep} is dead"


# -- the index, and the changes that travel along it ------------------------------------------


class Deps:
    """The dependents of each job, and the changes a dependency's state makes to them.

    A list of dependents is in the order they were indexed, which a restart changes (a snapshot holds
    jobs state by state); so a change acts on them in the order of their tickets, which are unique and
    kept: the same order live, on replay and after a restore.
    """

    __slots__ = ("_dirty", "after_of", "any_of", "changed", "q", "woke")

    def __init__(self, q: Queue) -> None:
        self.q = q
        self.after_of: dict[str, list[Job]] = {}  # dependency id -> jobs naming it in `after`
        self.any_of: dict[str, list[Job]] = {}  # dependency id -> jobs naming it in `after_any`
        # Jobs a dependency's change moved (died, came back) since the store last looked, and whether it
        # scheduled any; `changed` is None while replaying (nobody looks).
        self.changed: list[Job] | None = None
        self.woke = False
        self._dirty: set[str] = set()  # dependencies some of whose dependents were deleted

    def state_of(self, job_id: str) -> str | None:
        job = self.q.find(job_id)
        return None if job is None else job.state

    def index(self, jobs: Iterable[Job]) -> None:
        after_of, any_of = self.after_of, self.any_of
        for job in jobs:
            for table, deps in ((after_of, job.after), (any_of, job.after_any)):
                for d in deps or ():
                    dependents = table.get(d)
                    if dependents is None:
                        table[d] = [job]
                    else:
                        dependents.append(job)

    def reserved(self, job_id: str) -> Job | None:
        """A job, not completed, that names `job_id` as a dependency: the id is not free for a new job."""
        for table in (self.after_of, self.any_of):
            for job in table.get(job_id, ()):
                if job.state not in (COMPLETED, GONE):
                    return job
        return None

    def blockers(self, job: Job) -> list[str]:
        return blocked_by(job, self.state_of)

    def fatal(self, job: Job) -> list[str]:
        return fatal(job, self.state_of)

    # -- appliers --------------------------------------------------------------------------

    def added(self, jobs: list[Job], at: float) -> list[Job]:
        """New jobs, pending already: count their unmet edges; a job whose `after` dependency is dead
        is dead at once (and so are those after it in the batch).  Returns the jobs to schedule."""
        mine = [job for job in jobs if _names_any(job)]
        if not mine:
            return jobs
        self.index(mine)
        state_of = self.state_of
        for job in mine:  # a job names only jobs before it: one pass in order sees each cause first
            dead = next((d for d in job.after or () if state_of(d) == DEAD), None)
            if dead is not None:
                self._kill(job, dead, at)
            else:
                job.blocked = count_unmet(job, state_of)
        return [job for job in jobs if not job.blocked and job.state == PENDING]

    def restored(self, jobs: list[Job]) -> None:
        """Jobs from a snapshot: `blocked` and `cause` came with them; the index is rebuilt."""
        self.index(job for job in jobs if _names_any(job))

    def _of(self, table: dict[str, list[Job]], job_id: str) -> list[Job]:
        """The jobs naming `job_id` in `table`, in ticket order."""
        dependents = table.get(job_id)
        if not dependents:
            return []
        return dependents if len(dependents) == 1 else sorted(dependents, key=_ticket)

    def completed(self, job: Job, at: float) -> None:
        both = self._of(self.after_of, job.id) + self._of(self.any_of, job.id)
        for dependent in sorted(both, key=_ticket) if len(both) > 1 else both:
            if dependent.state == PENDING:
                self._unblock(dependent, at)

    def died(self, job: Job, at: float) -> None:
        """A live job became dead."""
        job.blocked = 0
        self._cascade([job], at)

    def revive(self, job: Job, at: float) -> None:
        """A dead job back to pending, attempts reset, due now; `revived` then counts and schedules it."""
        self.q._move(job, PENDING)
        self.q._draw(job)  # a lane entry it had before it died is stale, even while it is blocked again
        job.attempts = 0
        job.error_message = job.next_retry_at = job.exit_code = job.cause = None
        if job.run_at is not None and job.run_at > at:
            job.run_at = None  # it runs now, not at the time it was once given
        job.updated_at = job.due = at

    def deleted(self, job: Job, was: str, at: float) -> None:
        """A job in state `was` is gone: its dependents see it final, its own edges leave the index."""
        job_id = job.id
        if was != COMPLETED:
            victims = []
            for dependent in self._of(self.after_of, job_id):
                if dependent.state == PENDING:
                    self._kill(dependent, job_id, at)
                    victims.append(dependent)
                elif dependent.state == DEAD:
                    dependent.cause = job_id  # it can never come back now
            if was in LIVE:
                for dependent in self._of(self.any_of, job_id):
                    if dependent.state == PENDING:
                        self._unblock(dependent, at)
            self._cascade(victims, at)
        if _names_any(job):
            self._dirty.update(names(job))

    def purge(self) -> None:
        """After a record that deleted jobs: they leave the dependents lists they were in, each list
        filtered once per record (a retention slice of a fan-out costs one pass, not one per job)."""
        for d in self._dirty:
            for table in (self.after_of, self.any_of):
                dependents = table.get(d)
                if dependents is not None:
                    kept = [j for j in dependents if j.state != GONE]
                    if kept:
                        table[d] = kept
                    else:
                        del table[d]
        self._dirty.clear()

    def revived(self, back: list[Job], at: float) -> None:
        """Dead jobs brought back to pending (attempts reset): their dependents that died because of
        them come back too, then every one's edges are counted and those with none are scheduled."""
        q = self.q
        revived = list(back)
        i = 0
        while i < len(revived):  # breadth first, iteratively: a chain of any length
            x = revived[i]
            i += 1
            for dependent in self._of(self.after_of, x.id):
                if dependent.state != DEAD or dependent.cause != x.id:
                    continue
                if dependent.group not in q.groups:
                    dependent.cause = None  # stays dead; `retry` brings it back once its group exists
                    continue
                other = self.fatal(dependent)
                if other:
                    dependent.cause = other[0]
                    dependent.error_message = death(other[0])
                    continue
                key = dependent.unique_key
                holder = None if key is None else q.uniques.holders.get(key)
                if holder is not None and holder != dependent.id:
                    # Its key was taken meanwhile: it stays dead, and `retry` names the holder.
                    dependent.cause = None
                    dependent.error_message = f"dependency {x.id} came back, but job {holder} holds the unique " \
                                              f"key {key!r}"
                    continue
                self.revive(dependent, at)
                revived.append(dependent)
                self._note(dependent)
        for job in back:  # planning named only jobs whose `after` dependencies come back too
            other = self.fatal(job)
            if other and job.state == PENDING:
                self._kill(job, other[0], at)
                self._cascade([job], at)
        now_back = {id(job) for job in revived}
        for x in revived:
            if x.state != PENDING:
                continue
            for dependent in self._of(self.any_of, x.id):
                if dependent.state == PENDING and id(dependent) not in now_back:
                    if not dependent.blocked:
                        q._draw(dependent)  # its lane entry is stale from now
                    dependent.blocked += 1
        state_of = self.state_of
        for job in revived:
            if job.state == PENDING:
                job.blocked = count_unmet(job, state_of)
                if not job.blocked:
                    q._schedule(job, at)
                    self.woke = True

    # -- steps -----------------------------------------------------------------------------

    def _note(self, job: Job) -> None:
        if self.changed is not None:
            self.changed.append(job)

    def _kill(self, job: Job, cause: str, at: float) -> None:
        """A pending job dies because its `after` dependency `cause` did."""
        self.q._move(job, DEAD)
        job.cause = cause
        job.error_message = death(cause)
        job.next_retry_at = None
        job.finished_at = job.updated_at = at
        job.blocked = 0
        self._note(job)

    def _unblock(self, job: Job, at: float) -> None:
        """One of a pending job's edges is met; with none left it is scheduled, due now at the earliest."""
        if job.blocked <= 0:
            return
        job.blocked -= 1
        if not job.blocked:
            if job.due < at:
                job.due = at
            self.q._schedule(job, at)
            self._note(job)

    def _cascade(self, dead: list[Job], at: float) -> None:
        """Jobs that just died: their pending `after` dependents die too, down the line, and their
        pending `after_any` dependents count them met.  A stack, not recursion."""
        of, after_of, any_of = self._of, self.after_of, self.any_of
        stack = list(dead)
        while stack:
            x = stack.pop()
            x_id = x.id
            for dependent in of(after_of, x_id):
                if dependent.state == PENDING:
                    self._kill(dependent, x_id, at)
                    stack.append(dependent)
            for dependent in of(any_of, x_id):
                if dependent.state == PENDING:
                    self._unblock(dependent, at)
