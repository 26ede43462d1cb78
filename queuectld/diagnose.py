"""Why a job is not running now: the first reason that holds, in a fixed order.

A pure function of the queue, the time and the pool (its size and how many
of its workers are busy, which only the pool knows), so that every store
gives the same answer.  The order, and each rule in SQL for a database
store (`j` the job, `g` its group):

1. final: completed (at finished_at) or dead (its error):  j.state IN ('completed', 'dead')
2. running, on which worker since when:  j.state = 'processing' (or claimed for a start)
3. waiting for a dependency, the first in `after` not completed or in `after_any` not final; one that
   is gone (deleted) counts as satisfied:
   SELECT d.id, d.state FROM unnest(j.after) WITH ORDINALITY a(id, n) JOIN jobs d USING (id)
   WHERE d.state <> 'completed' ORDER BY n LIMIT 1  (then the same over after_any, state NOT IN final)
4. its group paused:  g.paused
5. scheduled for later:  j.state = 'pending' AND j.due > now
6. backing off:  j.state = 'failed' AND j.due > now  (due is next_retry_at)
7. no workers:  the pool's size is 0
8. every worker busy:  busy >= the pool's size
9. its group full:  g.parallel > 0 AND (SELECT count(*) ... state = 'processing' AND group = g) >= g.parallel
10. otherwise next in line, with the due jobs of open groups that start before it:
   SELECT count(*) FROM jobs o JOIN groups og ON og.name = o.group
   WHERE o.state IN ('pending', 'failed') AND o.due <= now AND o.blocked = 0 AND NOT og.paused
     AND (og.parallel = 0 OR og.running < og.parallel)
     AND (-o.priority, o.due, o.ticket) < (-j.priority, j.due, j.ticket)
"""

from __future__ import annotations

from collections.abc import Iterable

from msgspec.structs import replace

from queuectl_client.protocol import Reason

from .model import Job
from .queue import Queue
from .rules import COMPLETED, DEAD, FAILED, PENDING, PROCESSING

FINAL = (COMPLETED, DEAD)


def why(q: Queue, job_id: str, now: float, pool_size: int, busy: int, node: str) -> Reason:
    """The first reason the job is not running at `now` (QueueError not_found for an unknown id)."""
    job = q.get(job_id)
    state = job.state
    if state == COMPLETED:
        return Reason(code="completed", at=job.finished_at)
    if state == DEAD:
        return Reason(code="dead", at=job.finished_at, error=job.error_message, job=job.cause)
    if state == PROCESSING:
        return Reason(code="running", worker=f"{node}/{job.worker}", at=job.started_at)
    if job.id in q.held:
        return Reason(code="running")  # claimed, its process being started
    if state == PENDING:
        dep = unmet(q, job)
        if dep is not None:
            return Reason(code="dependency", job=dep.id, state=dep.state)
    group = q.groups.get(job.group)
    reason = waiting(job, now, None if group is None else (group.name, group.parallel, group.paused, group.active),
                     pool_size, busy)
    return replace(reason, ahead=ahead(q, job, now)) if reason.code in COUNTS_AHEAD else reason


COUNTS_AHEAD = ("busy", "next")  # the reasons that say how many jobs would start first


def waiting(job: Job, now: float, group: tuple[str, int, bool, int] | None, pool_size: int, busy: int) -> Reason:
    """The first reason, from its group on, that a waiting job whose dependencies are met does not run;
    `group`: its name, cap, whether it is paused, and its active jobs (None: gone).  Every store decides
    here; a reason in COUNTS_AHEAD is returned with `ahead` 0, for the store to count."""
    if group is not None and group[2]:
        return Reason(code="paused", group=group[0])
    if job.due > now:
        if job.state == FAILED:
            return Reason(code="backoff", at=job.due, count=job.attempts, limit=job.max_retries)
        return Reason(code="scheduled", at=job.due)
    if pool_size <= 0:
        return Reason(code="no_workers", limit=0)
    if busy >= pool_size:
        return Reason(code="busy", count=busy, limit=pool_size, ahead=0)
    if group is not None and group[1] and group[3] >= group[1]:
        return Reason(code="group_full", group=group[0], count=group[3], limit=group[1])
    return Reason(code="next", ahead=0)


def unmet(q: Queue, job: Job) -> Job | None:
    """The first dependency the job still waits for: in `after` one not completed, then in `after_any`
    one not final.  A dependency that is gone counts as satisfied."""
    find = q.find
    for dep_id in job.after or ():
        dep = find(dep_id)
        if dep is not None and dep.state != COMPLETED:
            return dep
    for dep_id in job.after_any or ():
        dep = find(dep_id)
        if dep is not None and dep.state not in FINAL:
            return dep
    return None


def ahead(q: Queue, job: Job, now: float) -> int:
    """How many due jobs of open groups would be taken before `job`, by (priority desc, due, ticket).

    One pass over the waiting jobs, with no list built: a diagnostic, not a
    dispatch path (0.1 to 0.4 s per million waiting jobs; see docs/DECISIONS.md).
    """
    open_groups = {name for name, group in q.groups.items() if group.open()}
    priority, due, ticket = job.priority, job.due, job.ticket
    held = q.held
    waiting: Iterable[Job] = (j for jobs in (q.by_state[PENDING], q.by_state[FAILED]) for j in jobs.values())
    return sum(
        1 for j in waiting
        if (j.priority > priority or (j.priority == priority and (j.due < due or (j.due == due and j.ticket < ticket))))
        and j.due <= now and j.group in open_groups and not j.blocked and j.id not in held
    )
