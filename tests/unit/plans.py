"""The journal records a live daemon would make, built from the shared rules (for queue and journal tests)."""

from __future__ import annotations

from queuectl_client.protocol import JobSpec
from queuectld import events as ev
from queuectld import rules
from queuectld.model import Job
from queuectld.planning import check_new
from queuectld.queue import Queue


def plan_add(q: Queue, specs: list[JobSpec], at: float) -> ev.Added:
    new = rules.new_jobs(specs, at, q.config)
    check_new(q, new)
    return ev.Added(at, new)


def plan_start(job: Job, at: float, worker: int, pgid: int, pid_start: int) -> ev.Started:
    return ev.Started(job.id, at, worker, pgid, pid_start)


def plan_end(q: Queue, job: Job, at: float, exit_code: int | None, error: str | None) -> ev.Ended:
    o = rules.plan_end(job, at, exit_code, error, q.config)
    return ev.Ended(job.id, at, o.state, o.exit_code, o.error, o.next_retry_at)
