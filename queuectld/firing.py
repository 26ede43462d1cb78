"""Planning schedule changes and fires: check against the state, and name the record that makes it.

Pure functions of a `Queue`, the request and a time passed in, as in
`planning`.  A fire is one record: the job it makes (named NAME-<slot in
UTC>) and the schedule's new last slot together, so that a slot is fired
once, whatever crashes.  A fire that cannot make its job (its group was
removed, its id is taken, the job is refused) is recorded all the same,
with the reason and no job: the slot counts as fired, `schedule list` shows
why, and nothing stops the daemon.
"""

from __future__ import annotations

from collections.abc import Callable

from queuectl_client import protocol as p

from . import cron
from . import events as ev
from .planning import check_new
from .queue import Queue
from .rules import COMPLETED, DEAD, QueueError, environments, new_jobs
from .schedules import Schedule


def check_job(q: Queue, spec: p.JobSpec, cwd: str | None, at: float) -> None:
    """Refuse a job a schedule could never enqueue, as `enqueue` would."""
    problem = p.unschedulable(spec)
    if problem is not None:
        raise QueueError("invalid", problem)
    (job,) = new_jobs([spec], at, q.config, "x", cwd)
    if job.group not in q.groups:
        raise QueueError("invalid", f"unknown group {job.group}; create it with `queuectl group add {job.group}`")
    for dep in [*(job.after or ()), *(job.after_any or ())]:
        if q.find(dep) is None:  # as at enqueue; one deleted later fails that fire, which says so
            raise QueueError("invalid", f"invalid job: unknown dependency {dep}")


def plan_define(q: Queue, req: p.ScheduleAdd, at: float, local_zone: str,
                envs: dict[str, dict[str, str]] | None = None) -> ev.ScheduleDefined:
    """A new schedule; its first fire is its first slot after `at`.  Its jobs' environment is composed
    now, as an enqueue's (`rules.environments`), and put in `envs` by its key."""
    text = " ".join(req.cron.split())
    cron.expression(text)
    zone = req.zone or local_zone
    cron.zone(zone)
    check_job(q, req.job, req.cwd, at)
    if q.schedules.get(req.name) is not None:
        raise QueueError("duplicate", f"a schedule named {req.name!r} already exists")
    (env,) = environments([req.job], req.env, {} if envs is None else envs)
    return ev.ScheduleDefined(req.name, text, zone, req.job, req.cwd, req.no_overlap, at, env=env)


def schedule(q: Queue, name: str) -> Schedule:
    s = q.schedules.get(name)
    if s is None:
        raise QueueError("not_found", f"no schedule named {name!r}")
    return s


def plan_removal(q: Queue, name: str) -> ev.ScheduleRemoved:
    schedule(q, name)
    return ev.ScheduleRemoved(name)


def plan_pause(q: Queue, name: str, paused: bool, at: float) -> ev.SchedulePaused:
    """Pausing a paused schedule, or resuming a running one, is no error (and changes nothing)."""
    schedule(q, name)
    return ev.SchedulePaused(name, paused, at)


def plan_fire(q: Queue, s: Schedule, slot: float, late: bool, at: float,
              refuse: Callable[[str], str | None] | None = None) -> ev.Fired:
    """What firing `s` for `slot` at `at` makes: its job, or a skip (no_overlap), or a failure and why."""
    if s.no_overlap and s.last_job is not None:
        previous = q.find(s.last_job)
        if previous is not None and previous.state not in (COMPLETED, DEAD):
            return ev.Fired(s.name, slot, at, None, late, skipped=True)
    job_id = cron.job_id(s.name, slot)
    try:
        (job,) = new_jobs([s.job], at, q.config, job_id, s.cwd)
        key = job.unique_key
        holder = None if key is None else q.uniques.holders.get(key)
        if holder is not None:  # as an enqueue of it would: nothing is created
            return ev.Fired(s.name, slot, at, None, late, skipped=True,
                            error=f"skipped: job {holder} holds the unique key {key!r}")
        check_new(q, [job])
        refused = refuse(job.command) if refuse is not None else None
        if refused is not None:  # the caller's policy, checked again at each fire
            raise QueueError("refused", refused)
    except QueueError as e:
        return ev.Fired(s.name, slot, at, None, late, error=str(e))
    job.env = s.env  # composed when the schedule was added
    job.schedule, job.slot, job.late = s.name, slot, late
    return ev.Fired(s.name, slot, at, job, late)


def plan_fires(q: Queue, now: float, refuse: Callable[[str], str | None] | None = None) -> list[ev.Fired]:
    """A fire for each schedule with a slot due at `now`: its latest due slot, once."""
    return [plan_fire(q, s, slot, late, now, refuse) for s, slot, late in q.schedules.due(now)]
