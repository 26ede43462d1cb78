"""The job as every store keeps it, and its wire view.

`NewJob` is a job as an enqueue decided it; `Job` is the same fields
followed by the ones runs fill in.  Both are array-like, so a `NewJob`'s
encoding is the start of a `Job`'s: replay decodes enqueued jobs straight
into `Job` structs.  Both are untracked by the cyclic GC (they hold only
strings and numbers), so a million jobs cost the collector nothing.
"""

from __future__ import annotations

from typing import Generic, TypeVar

import msgspec

from queuectl_client.protocol import Event
from queuectl_client.protocol import Job as JobView

T = TypeVar("T")


class Extras(msgspec.Struct, array_like=True, gc=False):
    """A job's rarer fields, in one struct that most jobs do without (a job pays 8 bytes for
    `extra`, not one slot per field).  `blocked` and `cause` are kept by the queue, not enqueued."""

    after: list[str] | None = None  # dependencies that must complete
    after_any: list[str] | None = None  # dependencies that must be final, completed or dead
    unique_key: str | None = None
    retry_on: list[int | str] | None = None  # exit codes, "timeout", "signal": only these are retried
    no_retry_on: list[int | str] | None = None  # these are not retried
    idle_timeout: float | None = None
    schedule: str | None = None  # the schedule whose fire made the job
    slot: float | None = None  # that fire's slot (UTC seconds)
    late: bool = False  # fired after downtime, for a slot that had passed
    blocked: int = 0  # dependencies not satisfied yet: while above 0, a pending job is in no lane
    cause: str | None = None  # the dependency whose death made this job dead
    node: str | None = None  # a shared store's: the name of the node whose worker holds it


class _Extra(Generic[T]):
    """A field of `Extras` read and written as if it were the job's own."""

    __slots__ = ("default", "name")

    def __init__(self, name: str, default: T) -> None:
        self.name = name
        self.default = default

    def __get__(self, job: JobFields | None, owner: type | None = None) -> T:
        if job is None:
            return self  # type: ignore[return-value]  # on the class: the descriptor itself
        e = job.extra
        return self.default if e is None else getattr(e, self.name)

    def __set__(self, job: JobFields, value: T) -> None:
        e = job.extra
        if e is None:
            if value == self.default:
                return
            e = job.extra = Extras()
        setattr(e, self.name, value)


class JobFields(msgspec.Struct, array_like=True, gc=False):
    """What an enqueue decides about a job; shared, in this order, by `NewJob` and `Job`.

    Fields are only ever appended, with defaults (a job of an older journal
    decodes with the newer fields at their defaults).  The rarer ones are in
    `extra`, read and written through the properties below.
    """

    id: str
    command: str
    max_retries: int
    priority: int
    run_at: float | None
    timeout: float | None
    cwd: str | None = None
    group: str = "default"
    env: str | None = None  # the key of its environment in the queue's table; None: the daemon's own
    extra: Extras | None = None

    after = _Extra[list[str] | None]("after", None)
    after_any = _Extra[list[str] | None]("after_any", None)
    unique_key = _Extra[str | None]("unique_key", None)
    retry_on = _Extra[list[int | str] | None]("retry_on", None)
    no_retry_on = _Extra[list[int | str] | None]("no_retry_on", None)
    idle_timeout = _Extra[float | None]("idle_timeout", None)
    schedule = _Extra[str | None]("schedule", None)
    slot = _Extra[float | None]("slot", None)
    late = _Extra[bool]("late", False)
    blocked = _Extra[int]("blocked", 0)
    cause = _Extra[str | None]("cause", None)
    holder = _Extra[str | None]("node", None)


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

    def view(self, node: str, blocked_by: list[str] | None = None, env: dict[str, str] | None = None) -> JobView:
        """The wire view; `node` names the machine whose worker holds a running job (unless the job
        names it: a shared store's job held by another node).  What the job
        alone cannot tell comes from the store: its unsatisfied dependencies, its environment."""
        running = self.state == "processing"
        return JobView(
            self.id, self.command, self.state, self.attempts, self.max_retries, self.priority,  # type: ignore[arg-type]
            self.timeout, self.run_at, self.created_at, self.updated_at, self.started_at,
            self.finished_at, self.next_retry_at, self.exit_code, self.error_message, self.worker,
            self.cwd, f"{self.holder or node}/{self.worker}" if running else None, self.started_at if running else None,
            self.group, self.after, self.after_any, blocked_by or [], self.unique_key, self.retry_on,
            self.no_retry_on, self.idle_timeout, env, self.schedule, self.slot, self.late,
        )

    def event(self, slot: int | None) -> Event:
        """The job's latest change, for followers; `slot` is the worker that holds or held it."""
        return Event(
            self.updated_at, self.id, self.state, self.attempts, slot,  # type: ignore[arg-type]
            self.exit_code, self.error_message, self.command, self.next_retry_at, self.max_retries,
        )
