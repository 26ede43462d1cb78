"""The journal records a live daemon would make, built from the shared rules (for queue and journal tests),
and the recount the queue's tallies are checked against."""

from __future__ import annotations

from collections import Counter

from queuectl_client.protocol import JobSpec
from queuectld import deps, rules
from queuectld import events as ev
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
    """A run's end as the store records it: a run whose cancel was asked for ends dead."""
    o = rules.plan_end(job, at, exit_code, error, q.config, cancelled=job.id in q.cancelled)
    return ev.Ended(job.id, at, o.state, o.exit_code, o.error, o.next_retry_at)


def recount(q: Queue) -> dict[str, dict[str, int]]:
    """Jobs per group per state, counted from the jobs themselves (groups without any left out)."""
    counts: dict[str, Counter[str]] = {}
    for state, jobs in q.by_state.items():
        for job in jobs.values():
            counts.setdefault(job.group, Counter())[state] += 1
    return {name: dict(c) for name, c in counts.items()}


def tallies(q: Queue) -> dict[str, dict[str, int]]:
    """The queue's own tallies, zeros left out."""
    out = {name: {s: n for s, n in c.items() if n} for name, c in q.tallies.items()}
    return {name: c for name, c in out.items() if c}


def check_dependencies(q: Queue) -> None:
    """A pending job counts its unmet edges and has no dead `after` dependency; a job that ran had every
    `after` dependency completed (or deleted once completed)."""
    state_of = q.deps.state_of
    for job in q.by_state["pending"].values():
        assert job.blocked == deps.count_unmet(job, state_of), job.id
        assert not deps.fatal(job, state_of), job.id
    for s in ("processing", "failed", "completed"):
        for job in q.by_state[s].values():
            assert all(state_of(d) in ("completed", None) for d in job.after or ()), job.id
