"""The job as every store keeps it, and its wire view.

`NewJob` is a job as an enqueue decided it; `Job` is the same fields
followed by the ones runs fill in.  Both are array-like, so a `NewJob`'s
encoding is the start of a `Job`'s: replay decodes enqueued jobs straight
into `Job` structs.  Both are untracked by the cyclic GC (they hold only
strings and numbers), so a million jobs cost the collector nothing.
"""

from __future__ import annotations

import msgspec

from queuectl_client.protocol import Event
from queuectl_client.protocol import Job as JobView


class JobFields(msgspec.Struct, array_like=True, gc=False):
    """What an enqueue decides about a job; shared, in this order, by `NewJob` and `Job`.

    Fields are only ever appended, with defaults (a job of an older journal
    decodes with the newer fields at their defaults).
    """

    id: str
    command: str
    max_retries: int
    priority: int
    run_at: float | None
    timeout: float | None
    cwd: str | None = None
    group: str = "default"
    after: list[str] | None = None  # dependencies that must complete
    after_any: list[str] | None = None  # dependencies that must be final, completed or dead
    unique_key: str | None = None
    retry_on: list[int | str] | None = None  # exit codes, "timeout", "signal": only these are retried
    no_retry_on: list[int | str] | None = None  # these are not retried
    idle_timeout: float | None = None
    env: str | None = None  # the key of its environment in the queue's table; None: the daemon's own
    schedule: str | None = None  # the schedule whose fire made it
    slot: float | None = None  # that fire's slot (UTC seconds)
    late: bool = False  # fired after downtime, for a slot that had passed


class NewJob(JobFields, array_like=True, gc=False):
    """A job as an enqueue decided it, before any run."""


class Job(JobFields, array_like=True, gc=False):
    """A job in memory: the enqueue's fields, then what its runs changed.

    The fields mirror protocol.Job on purpose: that one is the frozen,
    versioned wire view, this one the mutable record with the daemon's own
    fields.  Stores hand these out for reading; only a store changes them.
    """

    state: str = "pending"
    attempts: int = 0
    created_at: float = 0.0
    updated_at: float = 0.0
    started_at: float | None = None
    finished_at: float | None = None
    next_retry_at: float | None = None
    exit_code: int | None = None
    error_message: str | None = None
    worker: int | None = None
    due: float = 0.0  # when it may start: run_at, next_retry_at, or when it was enqueued or revived
    ticket: int = 0  # drawn at each scheduling; a heap entry with an older one is stale
    blocked: int = 0  # dependencies not satisfied yet: while above 0, a pending job is in no lane
    cause: str | None = None  # the dependency whose death made this job dead

    def view(self, node: str, blocked_by: list[str] | None = None, env: dict[str, str] | None = None) -> JobView:
        """The wire view; `node` names the machine whose worker holds a running job.  What the job
        alone cannot tell comes from the store: its unsatisfied dependencies, its environment."""
        running = self.state == "processing"
        return JobView(
            self.id, self.command, self.state, self.attempts, self.max_retries, self.priority,  # type: ignore[arg-type]
            self.timeout, self.run_at, self.created_at, self.updated_at, self.started_at,
            self.finished_at, self.next_retry_at, self.exit_code, self.error_message, self.worker,
            self.cwd, f"{node}/{self.worker}" if running else None, self.started_at if running else None,
            self.group, self.after, self.after_any, blocked_by or [], self.unique_key, self.retry_on,
            self.no_retry_on, self.idle_timeout, env, self.schedule, self.slot, self.late,
        )

    def event(self, slot: int | None) -> Event:
        """The job's latest change, for followers; `slot` is the worker that holds or held it."""
        return Event(
            self.updated_at, self.id, self.state, self.attempts, slot,  # type: ignore[arg-type]
            self.exit_code, self.error_message, self.command, self.next_retry_at, self.max_retries,
        )
