"""The values the protocol carries: bounded scalar types, jobs, groups and selectors.

`protocol` re-exports every name here; its messages are made of these.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

import msgspec

from .wire import STATES  # noqa: F401

State = Literal["pending", "processing", "completed", "failed", "dead"]

# Every value a job holds must be storable and must never break a read command, so the
# boundary refuses what could not run or be shown: NUL bytes (no `execve` argument or path
# can hold one), integers past 32 bits, and times past the year 9999.
INT32 = 2**31 - 1
MAX_TIME = 253_402_300_799.0  # 9999-12-31T23:59:59Z, the last second ISO 8601 can write
MAX_DELAY = 100 * 365.25 * 86400  # a century
MAX_TIMEOUT = 10 * 365.25 * 86400  # a decade
MAX_COMMAND_BYTES = 128 * 1024 - 1  # one `execve` argument (MAX_ARG_STRLEN, with its NUL)

# Ids name files under the state dir, so they are restricted to a safe alphabet.
JobId = Annotated[str, msgspec.Meta(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")]
Command = Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_COMMAND_BYTES, pattern=r"^(?=[\s\S]*\S)[^\x00]*$")]
NonNegInt = Annotated[int, msgspec.Meta(ge=0, le=INT32)]
Priority = Annotated[int, msgspec.Meta(ge=-INT32, le=INT32)]
Delay = Annotated[float, msgspec.Meta(ge=0, le=MAX_DELAY)]
Timestamp = Annotated[float, msgspec.Meta(ge=0, le=MAX_TIME)]
Timeout = Annotated[float, msgspec.Meta(gt=0, le=MAX_TIMEOUT)]
# The daemon changes directory to spawn: no relative paths.
AbsPath = Annotated[str, msgspec.Meta(max_length=4095, pattern=r"^/[^\x00]*$")]
# Groups are named like jobs.
GroupName = JobId
DEFAULT_GROUP = "default"
Parallel = Annotated[int, msgspec.Meta(ge=0, le=1_000_000)]  # 0: no cap beyond the pool
Signal = Annotated[int, msgspec.Meta(ge=1, le=64)]
Grace = Annotated[float, msgspec.Meta(ge=0, le=86_400)]
Age = Annotated[float, msgspec.Meta(ge=0, le=MAX_DELAY)]  # "older than" this many seconds
MAX_DEPENDENCIES = 1_000_000  # ids in one job's `after` or `after_any`
JobIds = Annotated[list[JobId], msgspec.Meta(max_length=MAX_DEPENDENCIES)]
UniqueKey = Annotated[str, msgspec.Meta(min_length=1, max_length=256, pattern=r"^[^\x00]*$")]
ExitCode = Annotated[int, msgspec.Meta(ge=0, le=255)]
# What a retry rule names: an exit code, or a run killed for its timeout, or by a signal.
RetryRule = Annotated[list[ExitCode | Literal["timeout", "signal"]], msgspec.Meta(max_length=256)]
# A schedule's jobs are named NAME-20261201T0300Z (15 more characters, or 17 with seconds): they fit in a JobId.
ScheduleName = Annotated[str, msgspec.Meta(min_length=1, max_length=47, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")]
EnvName = Annotated[str, msgspec.Meta(min_length=1, max_length=255, pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")]
EnvValue = Annotated[str, msgspec.Meta(max_length=MAX_COMMAND_BYTES, pattern=r"^[^\x00]*$")]
Environment = Annotated[dict[EnvName, EnvValue], msgspec.Meta(max_length=4096)]


class Message(msgspec.Struct, frozen=True, tag=True, forbid_unknown_fields=False):
    """Base of every wire message; the tag is the class name."""


class JobSpec(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """A job as the user writes it in JSON, and as it crosses the wire.

    `run_at` is an ISO 8601 time (without a zone: local time) or UNIX seconds;
    `delay` is seconds from the enqueue, instead of `run_at`.  `max_retries`
    and `timeout` left out take the daemon's config defaults at enqueue time.
    A job without an id gets one from the request's `id_prefix`.

    The job model's other fields are accepted when they hold a new job's
    values (`state` pending, `attempts` 0, the rest null), so a job object
    written for that model enqueues as it is; `created_at` and `updated_at`
    are ignored, since the daemon stamps its own.
    """

    command: Command
    id: JobId | None = None
    max_retries: NonNegInt | None = None
    priority: Priority = 0
    run_at: datetime | Timestamp | None = None
    delay: Delay | None = None
    timeout: Timeout | None = None
    cwd: AbsPath | None = None  # the directory the job runs in; None: the request's
    group: GroupName | None = None  # the group must exist; None: `default`
    after: JobIds | None = None  # runs once all of these are completed
    after_any: JobIds | None = None  # runs once all of these are final (completed or dead)
    unique_key: UniqueKey | None = None  # while a job with this key is not final, no other is created
    retry_on: RetryRule | None = None  # only these failures are retried
    no_retry_on: RetryRule | None = None  # these failures are not retried
    idle_timeout: Timeout | None = None  # seconds without output before the run is killed
    env: Environment | None = None  # variables added to (or overriding) the inherited ones
    inherit_env: bool = True  # False: only PATH, HOME, USER, LANG and SHELL are inherited
    # A new job's values of the job model's other fields: anything else is refused.
    state: Literal["pending"] | None = None
    attempts: Literal[0] | None = None
    created_at: str | float | None = None
    updated_at: str | float | None = None
    started_at: None = None
    finished_at: None = None
    next_retry_at: None = None
    exit_code: None = None
    error_message: None = None
    worker: None = None
    locked_by: None = None
    locked_at: None = None
    created: bool | None = None  # what `enqueue --json` adds to a job: ignored
    blocked_by: list[JobId] | None = None  # the view's: ignored (the dependencies are `after`, `after_any`)
    schedule: str | None = None  # a fire's: ignored (the copy is a job of its own)
    slot: float | None = None
    late: bool | None = None


class Job(msgspec.Struct, frozen=True):
    """A job as the daemon reports it.  Times are UNIX seconds or None."""

    id: str
    command: str
    state: State
    attempts: int
    max_retries: int
    priority: int
    timeout: float | None
    run_at: float | None
    created_at: float
    updated_at: float
    started_at: float | None
    finished_at: float | None
    next_retry_at: float | None
    exit_code: int | None
    error_message: str | None
    worker: int | None
    cwd: str | None = None
    locked_by: str | None = None  # "node/worker" while the job runs
    locked_at: float | None = None  # when that worker took it
    group: str = DEFAULT_GROUP
    after: list[str] | None = None
    after_any: list[str] | None = None
    blocked_by: list[str] = []  # the dependencies not satisfied yet, while the job is pending
    unique_key: str | None = None
    retry_on: list[int | str] | None = None
    no_retry_on: list[int | str] | None = None
    idle_timeout: float | None = None
    env: dict[str, str] | None = None  # given by `show` only: the variables the job runs with
    schedule: str | None = None  # the schedule that fired the job
    slot: float | None = None  # the slot it was fired for
    late: bool = False  # fired after its slot, when the daemon came back from downtime


class GroupInfo(msgspec.Struct, frozen=True):
    """A group: its cap on running jobs (0: none beyond the pool), whether it is paused, its jobs."""

    name: str
    parallel: int
    paused: bool
    jobs: dict[str, int]  # per state
    running: int


class Selector(msgspec.Struct, frozen=True):
    """The jobs in `state` now, of `group` if given, whose state changed more than `older_than` s ago."""

    state: State
    group: GroupName | None = None
    older_than: Age | None = None


class Retention(msgspec.Struct, frozen=True):
    """The background removal of finished jobs: its last pass, and what it removed since the daemon started."""

    last_at: float | None = None
    last_removed: dict[str, int] = {}
    total_removed: dict[str, int] = {}


class WaitedJob(msgspec.Struct, frozen=True, array_like=True):
    """A job a wait follows, and its state: one of STATES, or "deleted"."""

    id: str
    state: str
