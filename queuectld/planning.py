"""Planning changes to the queue: check a request against the state, and name the event that makes it.

Pure functions of a `Queue` and the request, with time passed in: nothing
here changes the queue.  The store journals the event, then applies it.
Each rule is stated so that a database can say it too: a selection is a
`WHERE` on state, group and age; a group's cap is a count; pausing a flag.
"""

from __future__ import annotations

from collections.abc import Iterable
from itertools import chain

from msgspec import UNSET

from queuectl_client import protocol as p

from . import deps
from . import events as ev
from .model import Job, NewJob
from .queue import Queue
from .rules import COMPLETED, DEAD, FAILED, PENDING, PROCESSING, WAITS, QueueError
from .unique import revive_conflict

CANCELLABLE = (PENDING, FAILED, PROCESSING)
RETRYABLE = (FAILED, DEAD)


def check_new(q: Queue, jobs: list[NewJob]) -> None:
    """Refuse a batch that names a job the queue holds, or a group it does not; or a dependency that is
    neither in the queue nor earlier in the batch; or an id that a job not completed names as a dependency."""
    find, groups, index = q.find, q.groups, q.deps
    places: dict[str, int] | None = None
    for i, job in enumerate(jobs):
        if find(job.id) is not None:
            raise QueueError("duplicate", f"a job with id {job.id!r} already exists")
        if job.group not in groups:
            raise QueueError("invalid", f"unknown group {job.group}; create it with `queuectl group add {job.group}`")
        if (job.id in index.after_of or job.id in index.any_of) and (by := index.reserved(job.id)) is not None:
            raise QueueError("duplicate", f"the id {job.id} is still named as a dependency by job {by.id}, which is "
                                          f"{by.state}; choose another id, or delete {by.id} first")
        if job.after is None and job.after_any is None:
            continue
        for d in deps.names(job):
            if find(d) is None:
                if places is None:
                    places = {j.id: n for n, j in enumerate(jobs)}
                if places.get(d, i) >= i:
                    raise QueueError("invalid", f"job {job.id}: unknown dependency {d}")


def select(q: Queue, sel: p.Selector, at: float) -> list[Job]:
    """The jobs a selector names: in `state`, of `group`, whose state changed before `at - older_than`."""
    if sel.group is not None and sel.group not in q.groups and sel.group not in q.tallies:
        raise QueueError("not_found", f"no group named {sel.group!r}")
    jobs: Iterable[Job] = q.by_state[sel.state].values()
    if sel.group is not None:
        jobs = (job for job in jobs if job.group == sel.group)
    if sel.older_than is not None:
        before = at - sel.older_than
        jobs = (job for job in jobs if job.updated_at <= before)
    return list(jobs)


def _named(q: Queue, ids: list[str], sel: p.Selector | None, at: float) -> list[Job]:
    if sel is not None:
        if ids:
            raise QueueError("invalid", "give job ids or a selection, not both")
        return select(q, sel, at)
    if not ids:
        raise QueueError("invalid", "name the jobs, or select them by state")
    return [q.get(job_id) for job_id in dict.fromkeys(ids)]


def plan_delete(q: Queue, ids: list[str], sel: p.Selector | None, at: float,
                cascade: bool = False) -> ev.DeletedMany:
    """Without `cascade`, a job that is not final and has pending dependents outside the selection is
    refused: deleting it would kill its `after` dependents (and release its `after_any` ones)."""
    if sel is not None and sel.state == PROCESSING:
        raise QueueError("invalid", "delete never touches running jobs: select another state")
    jobs = _named(q, ids, sel, at)
    for job in jobs:
        if q.busy(job):
            if sel is not None:
                continue  # taken for a start in this moment: a selection leaves it out
            raise QueueError("state", f"job {job.id} is running; delete it after it finishes")
    chosen = [job for job in jobs if not q.busy(job)]
    if not cascade:
        _check_dependents(q, chosen)
    return ev.DeletedMany([job.id for job in chosen], at)


def _check_dependents(q: Queue, jobs: list[Job]) -> None:
    deleting = {job.id for job in jobs}
    for job in jobs:
        if job.state in deps.LIVE:
            waiting = [d.id for d in chain(q.deps.after_of.get(job.id, ()), q.deps.any_of.get(job.id, ()))
                       if d.state == PENDING and d.id not in deleting]
            if waiting:
                some = ", ".join(dict.fromkeys(waiting[:5])) + (", ..." if len(waiting) > 5 else "")
                raise QueueError("state", f"job {job.id} has dependents waiting for it ({some}); delete them too, "
                                          "or delete with --cascade (its `after` dependents die with it)")


def plan_cancel(q: Queue, ids: list[str], sel: p.Selector | None, at: float) -> tuple[ev.Cancelled, list[str]]:
    """The event, and the jobs whose processes must be stopped (running, or being started).

    A job whose cancel is under way may be cancelled again: its processes get the new signal,
    and SIGKILL at the sooner of the two deadlines."""
    if sel is not None and sel.state not in CANCELLABLE:
        raise QueueError("invalid", f"only pending, failed or processing jobs can be cancelled, not {sel.state}")
    jobs = _named(q, ids, sel, at)
    for job in jobs:
        if job.state not in CANCELLABLE:
            raise QueueError("state", f"job {job.id} is already {job.state}")
    stop = [job.id for job in jobs if q.busy(job)]
    return ev.Cancelled([job.id for job in jobs], at), stop


def plan_retry(q: Queue, ids: list[str], sel: p.Selector | None, at: float) -> ev.Revived:
    """Failed jobs made due now, dead ones revived; a selection leaves out what cannot be retried."""
    if sel is not None and sel.state not in RETRYABLE:
        raise QueueError("invalid", f"only failed or dead jobs can be retried, not {sel.state}")
    jobs = _named(q, ids, sel, at)
    chosen = []
    naming = {job.id for job in jobs} if sel is None else set()
    taken: dict[str, str] = {}
    for job in jobs:
        why = _not_retryable(q, job, taken) or _dead_dependency(q, job, naming)
        if why is None:
            chosen.append(job.id)
        elif sel is None:
            raise QueueError("state", why)
    return ev.Revived(chosen, at)


def _not_retryable(q: Queue, job: Job, taken: dict[str, str]) -> str | None:
    """Why the job cannot be retried, or None; `taken`: the unique keys the jobs revived before it take back."""
    if job.state not in RETRYABLE:
        return f"job {job.id} is {job.state}; only failed or dead jobs can be retried"
    if q.busy(job):
        return f"job {job.id} is starting already"
    if job.group not in q.groups:
        return (f"job {job.id} is in the group {job.group}, which no longer exists; create it with "
                f"`queuectl group add {job.group}` or move the job with `queuectl edit {job.id} --group G`")
    return revive_conflict(q.uniques.holders, job, taken)


def _dead_dependency(q: Queue, job: Job, naming: set[str]) -> str | None:
    """Why a dead job cannot come back: an `after` dependency of it is dead and not brought back in the same
    request, or was deleted before it completed.  (Its dependents whose cause is revived come back anyway.)"""
    if job.state != DEAD:
        return None
    for d in q.deps.fatal(job):
        if q.find(d) is None:
            return (f"job {job.id} waits for {d}, which was deleted before it completed, so it can never run; "
                    f"`queuectl rerun {job.id}` makes a copy that waits for nothing")
        if d not in naming:
            return f"job {job.id} waits for {d}, which is dead: retry {d} first"
    return None


def plan_revive(q: Queue, ids: list[str], everything: bool, at: float) -> ev.Revived:
    """`dlq retry`: the named dead jobs (all must be dead), or every dead job whose group exists, whose unique
    key is free, and whose `after` dependencies are not dead (those whose cause comes back come back with it)."""
    taken: dict[str, str] = {}
    if everything:
        fatal = q.deps.fatal
        return ev.Revived([job.id for job in q.by_state[DEAD].values()
                           if job.group in q.groups and not (job.after is not None and fatal(job))
                           and not _not_retryable(q, job, taken)], at)
    if not ids:
        raise QueueError("invalid", "name the jobs to retry, or use --all")
    for job_id in dict.fromkeys(ids):
        job = q.get(job_id)
        if job.state != DEAD:
            raise QueueError("state", f"job {job_id} is {job.state}, not dead; only dead jobs can be retried")
        why = _not_retryable(q, job, taken) or _dead_dependency(q, job, set(ids))
        if why is not None:
            raise QueueError("state", why)
    return ev.Revived(list(dict.fromkeys(ids)), at)


def plan_edit(q: Queue, req: p.Edit, at: float) -> ev.Edited:
    job = q.get(req.id)
    if q.busy(job):
        raise QueueError("state", f"job {job.id} is running; edit it after it finishes")
    group = job.group if req.group is UNSET else req.group
    if group != job.group:
        q.group(group)  # it must exist
    return edited(job, req, group, at)


def edited(job: Job, req: p.Edit, group: str, at: float) -> ev.Edited:
    """The edit of a job that is not running, into `group` (which exists): its record, or QueueError
    invalid for a bad time.  Every store decides an edit here."""
    priority = job.priority if req.priority is UNSET else req.priority
    run_at, due = job.run_at, job.due
    if req.delay is not UNSET:
        if req.run_at is not UNSET:
            raise QueueError("invalid", "give run_at or delay, not both")
        run_at = due = at + req.delay
    elif req.run_at is not UNSET:
        run_at = req.run_at
        due = at if run_at is None or run_at < at else run_at
    if run_at is not None and run_at > p.MAX_TIME:
        raise QueueError("invalid", "run_at must fall between 1970 and 9999")
    timeout = job.timeout if req.timeout is UNSET else req.timeout
    max_retries = job.max_retries if req.max_retries is UNSET else req.max_retries
    waits = job.state in WAITS
    reschedule = waits and (priority != job.priority or due != job.due)
    return ev.Edited(job.id, at, priority, run_at, due if waits else job.due, group, max_retries, timeout, reschedule)


def plan_group(q: Queue, name: str, parallel: int, create: bool) -> ev.GroupDefined:
    group = q.groups.get(name)
    if create and group is not None:
        raise QueueError("duplicate", f"a group named {name!r} already exists")
    if not create and group is None:
        q.group(name)  # raises not_found
    return ev.GroupDefined(name, parallel, group.paused if group is not None else False)


def plan_group_removal(q: Queue, name: str) -> ev.GroupRemoved:
    if name == p.DEFAULT_GROUP:
        raise QueueError("state", "the group default cannot be removed")
    q.group(name)
    tally = q.tally(name)
    live = sum(n for state, n in tally.items() if state not in (COMPLETED, DEAD))
    if live:
        raise QueueError("state", f"group {name} holds {live} job(s) that are not completed or dead; "
                                  "cancel, delete or move them first")
    # A job cancelled while it was being started is dead, but counts in its group until given back.
    if any(job.group == name for job_id in q.held if (job := q.find(job_id)) is not None):
        raise QueueError("state", f"group {name} is stopping the start of a cancelled job; try again in a moment")
    return ev.GroupRemoved(name)


def plan_pause(q: Queue, names: list[str], paused: bool) -> ev.Paused:
    """The named groups (each must exist), or every group; pausing a paused group is no error."""
    for name in names:
        q.group(name)
    return ev.Paused(list(dict.fromkeys(names)) if names else list(q.groups), paused)


def expired(q: Queue, state: str, before: float, limit: int | None) -> list[str]:
    """Up to `limit` jobs of a final state that finished before `before`, oldest first.

    A state's dict is in the order its jobs entered it, so these are its
    first jobs: the scan stops at the first one that is young enough.
    """
    out: list[str] = []
    for job in q.by_state[state].values():
        finished = job.finished_at if job.finished_at is not None else job.updated_at
        if finished >= before or len(out) == limit:
            break
        out.append(job.id)
    return out
