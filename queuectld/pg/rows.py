"""Jobs as rows of `queuectl_jobs`: the columns read, a row made a `model.Job`, a new job made a COPY row."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import msgspec

from ..model import Extras, Job, NewJob

# The columns a Job is made from, in the order `job` reads them.
JOB_COLUMNS = ("id, command, max_retries, priority, run_at, timeout, cwd, grp, env, after, after_any, unique_key, "
               "retry_on, no_retry_on, idle_timeout, schedule, slot, late, blocked, cause, state, attempts, "
               "created_at, updated_at, started_at, finished_at, next_retry_at, exit_code, error_message, worker, "
               "due, ticket, node")

# The columns a new job is written with (ticket and entered come from their sequences), in COPY order.
NEW_COLUMNS = ("id", "command", "state", "priority", "max_retries", "run_at", "timeout", "cwd", "grp", "env",
               "after", "after_any", "unique_key", "retry_on", "no_retry_on", "idle_timeout", "schedule", "slot",
               "late", "blocked", "cause", "created_at", "updated_at", "due", "finished_at", "error_message")

_encode = msgspec.json.encode
_decode = msgspec.json.decode


def rule(value: Any) -> list[int | str] | None:
    """A retry rule as stored (jsonb text) made a list."""
    if value is None:
        return None
    return _decode(value) if isinstance(value, str | bytes) else list(value)


def rule_text(value: list[int | str] | None) -> str | None:
    return None if value is None else _encode(value).decode()


def job(r: Any) -> Job:
    """A job from a record with JOB_COLUMNS (by position)."""
    (id_, command, max_retries, priority, run_at, timeout, cwd, grp, env, after, after_any, unique_key, retry_on,
     no_retry_on, idle_timeout, schedule, slot, late, blocked, cause, state, attempts, created_at, updated_at,
     started_at, finished_at, next_retry_at, exit_code, error_message, worker, due, ticket, node) = tuple(r)[:33]
    if state != "processing":
        node = None  # the node that holds it: named while it runs only
    extra = None
    if (after is not None or after_any is not None or unique_key is not None or retry_on is not None
            or no_retry_on is not None or idle_timeout is not None or schedule is not None or slot is not None
            or late or blocked or cause is not None or node is not None):
        extra = Extras(after, after_any, unique_key, rule(retry_on), rule(no_retry_on), idle_timeout, schedule, slot,
                       late, blocked, cause, node)
    return Job(id_, command, max_retries, priority, run_at, timeout, cwd, grp, env, extra, state, attempts,
               created_at, updated_at, started_at, finished_at, next_retry_at, exit_code, error_message, worker,
               due, ticket)


def new_row(n: NewJob, at: float, state: str = "pending", blocked: int = 0, cause: str | None = None,
            error: str | None = None) -> tuple[Any, ...]:
    """The COPY row (NEW_COLUMNS) of a job as an enqueue decided it, added at `at`."""
    run_at = n.run_at
    due = run_at if run_at is not None and run_at > at else at
    e = n.extra
    if e is None:
        return (n.id, n.command, state, n.priority, n.max_retries, run_at, n.timeout, n.cwd, n.group, n.env,
                None, None, None, None, None, None, None, None, False, blocked, cause, at, at, due,
                at if state == "dead" else None, error)
    return (n.id, n.command, state, n.priority, n.max_retries, run_at, n.timeout, n.cwd, n.group, n.env,
            e.after, e.after_any, e.unique_key, rule_text(e.retry_on), rule_text(e.no_retry_on), e.idle_timeout,
            e.schedule, e.slot, e.late, blocked, cause, at, at, due, at if state == "dead" else None, error)


# The columns of a COPY of pending jobs without extras (most): the others are NULL or their defaults.
PLAIN_COLUMNS = ("id", "command", "state", "priority", "max_retries", "run_at", "timeout", "cwd", "grp", "env",
                 "created_at", "updated_at", "due", "ticket", "entered")
NUMBERED_COLUMNS = (*NEW_COLUMNS, "ticket", "entered")


def new_rows(jobs: list[NewJob], at: float, places: list[tuple[int, int]], span: int, plain: bool,
             made: list[Job], start: int = 0) -> Iterator[tuple[Any, ...]]:
    """The COPY rows of pending jobs added at `at`, made as they are sent (PLAIN_COLUMNS if `plain`, which
    none of the jobs may have extras for, else NUMBERED_COLUMNS); `made` receives each job as `fresh` makes it.
    The i-th job of the batch (`start`: the batch's place of the first of `jobs`) gets the (i // span)-th pair
    of `places` (ticket, entered) plus i % span."""
    for i, n in enumerate(jobs, start):
        t, e = places[i // span]
        k = i % span
        job = fresh(n, at)
        made.append(job)
        if plain:
            yield (n.id, n.command, "pending", n.priority, n.max_retries, n.run_at, n.timeout, n.cwd, n.group, n.env,
                   at, at, job.due, t + k, e + k)
        else:
            yield (*new_row(n, at), t + k, e + k)


def fresh(n: NewJob, at: float) -> Job:
    """The job an enqueue at `at` made of `n`, as its row holds it (its ticket aside)."""
    run_at = n.run_at
    return Job(n.id, n.command, n.max_retries, n.priority, run_at, n.timeout, n.cwd, n.group, n.env, n.extra,
               created_at=at, updated_at=at, due=run_at if run_at is not None and run_at > at else at)


def json_text(value: Any) -> str:
    return _encode(value).decode()
