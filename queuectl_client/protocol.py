"""The wire protocol between `queuectl` and `queuectld`.

Every message is one msgspec Struct, tagged with its class name, encoded as
msgpack and sent in a frame: a 4-byte big-endian length followed by the
payload.  The receiver checks the length against MAX_FRAME before it reads
the body.  A connection starts with `Hello` in both directions; after that
the client sends requests and reads one reply each, except for `List`
(a stream of `JobPage` frames, the last with `more=False`), `Subscribe`
(a stream of `Event` frames until the pool stops or the client hangs up) and
`Wait` (`WaitSet` frames, then `WaitChanges` frames until one is `done`).

Fields are only ever added, with defaults, so older peers keep working.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal, Union

import msgspec

# The constants and framing live in `wire` (no msgspec, for the CLI's quick path); re-exported here.
from .wire import ERROR_CODES, HEADER_SIZE, MAX_FRAME, PROTOCOL_VERSION, STATES, ProtocolError, frame, frame_length  # noqa: F401

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


# --- requests -------------------------------------------------------------


class Hello(Message, frozen=True):
    """First message on a connection, from either side."""

    version: int = PROTOCOL_VERSION
    pid: int = 0
    server_version: str = ""
    stopping: bool = False  # the daemon is shutting down: it answers, but starts no job


class Enqueue(Message, frozen=True):
    """Add jobs, all or nothing.  The reply comes after they are on disk.

    A batch too big for one frame is sent as several, all but the last with
    `more=True`; the daemon replies only to the last, for the whole batch.
    """

    jobs: list[JobSpec]
    more: bool = False
    # Jobs without an id are named by their place in the batch: the prefix
    # alone for a batch of one, else `prefix-N` (N from 1).  A client that
    # resends the same batch with the same prefix after a lost reply gets a
    # duplicate-id refusal instead of a second copy.
    id_prefix: Annotated[str, msgspec.Meta(max_length=40, pattern=r"^([A-Za-z0-9][A-Za-z0-9._-]*)?$")] = ""
    cwd: AbsPath | None = None  # for jobs that name no directory
    want_jobs: bool = False  # reply with the created jobs, not only their ids


class Status(Message, frozen=True):
    """Counts per state, the pool, and the daemon."""


class List(Message, frozen=True):
    """Stream jobs as `JobPage` frames, filtered by state."""

    state: State | None = None
    limit: NonNegInt | None = None
    page_size: Annotated[int, msgspec.Meta(ge=1, le=10_000)] = 1000


class Show(Message, frozen=True):
    id: str


class Logs(Message, frozen=True):
    """Ask where a job's output files are."""

    id: str


class Delete(Message, frozen=True):
    id: str


class DlqList(Message, frozen=True):
    limit: NonNegInt | None = None
    page_size: Annotated[int, msgspec.Meta(ge=1, le=10_000)] = 1000


class DlqRetry(Message, frozen=True):
    """Move dead jobs back to pending; all of them, or none if one is not dead."""

    ids: list[str] = []
    all: bool = False


class ConfigGet(Message, frozen=True):
    key: str


class ConfigSet(Message, frozen=True):
    key: str
    value: str


class ConfigList(Message, frozen=True):
    pass


class WorkerStart(Message, frozen=True):
    """Set the pool to `count` workers; the size is stored durably.

    With `follow`, the reply is a stream of `Event` frames, as for
    `Subscribe`, starting before the first job is dispatched.
    """

    count: Annotated[int, msgspec.Meta(ge=0, le=1024)]
    follow: bool = False


class WorkerStop(Message, frozen=True):
    """Set the pool to 0 and reply once the running jobs have finished."""


class Subscribe(Message, frozen=True):
    """Stream job events until the pool is stopped."""


class Wait(Message, frozen=True):
    """Follow a set of jobs until each is completed, dead or deleted, or `timeout` s have passed.

    The set: `ids` (an unknown id is refused as not_found; with `resume`, it
    counts as deleted), then the jobs in `state` now, then with `all` every
    job not final now.  The reply is a stream: the set with each job's state,
    in `WaitSet` pages, then `WaitChanges` frames, the last with `done=True`.
    With `progress` a `WaitChanges` comes every 0.2 s; without, only the last.
    The daemon ends the wait when the client hangs up.

    Ids too many for one frame are sent in several `Wait` frames, all but the
    last with `more=True` (and nothing else); the daemon replies to the last.
    """

    ids: list[str] = []
    state: State | None = None
    all: bool = False
    timeout: Annotated[float, msgspec.Meta(ge=0, le=MAX_TIMEOUT)] | None = None
    progress: bool = False
    resume: bool = False  # the client waited for these before and lost the connection
    more: bool = False


Request = Union[
    Hello, Enqueue, Status, List, Show, Logs, Delete, DlqList, DlqRetry,
    ConfigGet, ConfigSet, ConfigList, WorkerStart, WorkerStop, Subscribe, Wait,
]


# --- replies --------------------------------------------------------------


class Ok(Message, frozen=True):
    pass


class Error(Message, frozen=True):
    """A refused or invalid request.  `code` picks the CLI's exit status."""

    code: str  # one of ERROR_CODES
    message: str


class Enqueued(Message, frozen=True):
    ids: list[str]
    jobs: list[Job] = []  # with `want_jobs`


class Workers(Message, frozen=True):
    configured: int
    busy: int


class StatusReply(Message, frozen=True):
    jobs: dict[str, int]
    workers: Workers
    pid: int
    version: str
    started_at: float
    stopping: bool = False


class JobPage(Message, frozen=True):
    jobs: list[Job]
    more: bool


class JobReply(Message, frozen=True):
    job: Job


class LogsReply(Message, frozen=True):
    """Paths of the job's latest run's output; a path that does not exist means no output."""

    job: Job
    stdout: str
    stderr: str


class ConfigReply(Message, frozen=True):
    values: dict[str, str]


class Retried(Message, frozen=True):
    ids: list[str]


class Event(Message, frozen=True):
    """A job changed state (for `worker start` in the foreground)."""

    at: float
    id: str
    state: State
    attempts: int
    worker: int | None = None
    exit_code: int | None = None
    error_message: str | None = None
    command: str = ""
    next_retry_at: float | None = None
    max_retries: int = 0


class PoolStopped(Message, frozen=True):
    """The pool was set to 0 and its running jobs have finished."""


class EventsDropped(Message, frozen=True):
    """The subscriber read too slowly; this many events were not sent."""

    count: int


class WaitedJob(msgspec.Struct, frozen=True, array_like=True):
    """A job a wait follows, and its state: one of STATES, or "deleted"."""

    id: str
    state: str


class WaitSet(Message, frozen=True):
    """A page of the jobs a wait follows, with their states when it began; the last has `more=False`."""

    jobs: list[WaitedJob] = []
    more: bool = False


class WaitChanges(Message, frozen=True):
    """The jobs of a wait whose state changed since its last frame.

    `done`: the last frame; every job is final, or with `timed_out`, the
    timeout ran out first.
    """

    jobs: list[WaitedJob] = []
    done: bool = False
    timed_out: bool = False


Reply = Union[
    Hello, Ok, Error, Enqueued, StatusReply, JobPage, JobReply, LogsReply,
    ConfigReply, Retried, Event, PoolStopped, EventsDropped, WaitSet, WaitChanges,
]
