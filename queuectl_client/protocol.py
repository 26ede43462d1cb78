"""The wire protocol between `queuectl` and `queuectld`.

Every message is one msgspec Struct, tagged with its class name, encoded as
msgpack and sent in a frame: a 4-byte big-endian length followed by the
payload.  The receiver checks the length against MAX_FRAME before it reads
the body.  A connection starts with `Hello` in both directions; after that
the client sends requests and reads one reply each, except for `List`
(a stream of `JobPage` frames, the last with `more=False`), `Subscribe`
(a stream of `Event` frames until the pool stops or the client hangs up),
`Wait` (`WaitSet` frames, then `WaitChanges` frames until one is `done`)
and the commands that change many jobs at once (`Changed` frames, the last
with `more=False`).

Fields are only ever added, with defaults, so older peers keep working.
"""

from __future__ import annotations

from typing import Annotated, Literal, Union

import msgspec

from .audit_messages import Audit, AuditEntry, AuditReply, Policy  # noqa: F401
from .group_messages import GroupAdd, GroupList, GroupRemove, GroupSet, GroupsReply, Pause
from .node_messages import NodeInfo, Nodes, NodesReply
from .page_messages import Page, PageReply
from .reasons import Reason, Why, WhyReply, sentence  # noqa: F401
from .schedule_messages import (  # noqa: F401
    ScheduleAdd,
    ScheduleInfo,
    ScheduleList,
    SchedulePause,
    ScheduleRemove,
    SchedulesReply,
    unschedulable,
)
from .schema import (  # noqa: F401
    DEFAULT_GROUP,
    INT32,
    MAX_COMMAND_BYTES,
    MAX_DELAY,
    MAX_TIME,
    MAX_TIMEOUT,
    AbsPath,
    Age,
    Command,
    Delay,
    Environment,
    Grace,
    GroupInfo,
    GroupName,
    Job,
    JobId,
    JobSpec,
    Message,
    NonNegInt,
    Parallel,
    Priority,
    Retention,
    Selector,
    Signal,
    State,
    Timeout,
    Timestamp,
    WaitedJob,
)
from .stats_messages import GroupMetrics, GroupStats, Histogram, Metrics, MetricsReply, Minute, Stats, StatsReply  # noqa: F401

# The constants and framing live in `wire` (no msgspec, for the CLI's quick path); re-exported here.
from .wire import ERROR_CODES, HEADER_SIZE, MAX_FRAME, PROTOCOL_VERSION, STATES, ProtocolError, frame, frame_length  # noqa: F401

# --- requests -------------------------------------------------------------


class Hello(Message, frozen=True):
    """First message on a connection, from either side."""

    version: int = PROTOCOL_VERSION
    pid: int = 0
    server_version: str = ""
    stopping: bool = False  # the daemon is shutting down: it answers, but starts no job
    via: str = ""  # what the client is (cli, shell, dashboard, python): the audit trail's "where from"


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
    # The caller's environment (see `environ`), for the whole batch: sent with the last frame.
    # None: an older client; its jobs run with the daemon's environment.
    env: Environment | None = None


class Status(Message, frozen=True):
    """Counts per state, the pool, and the daemon."""


class List(Message, frozen=True):
    """Stream jobs as `JobPage` frames, filtered by state and group."""

    state: State | None = None
    limit: NonNegInt | None = None
    page_size: Annotated[int, msgspec.Meta(ge=1, le=10_000)] = 1000
    group: GroupName | None = None


class Show(Message, frozen=True):
    id: str


class Logs(Message, frozen=True):
    """Ask where a job's output files are."""

    id: str


class Delete(Message, frozen=True):
    """Delete a job that is not running (`id`); or with `ids` or `select`, many at once, replied to with `Changed`.

    A job that is not final and has pending dependents is refused unless `cascade`: then its `after`
    dependents die with it ("dependency X is dead"), and its `after_any` ones count it met.
    """

    id: str = ""
    ids: list[str] = []
    select: Selector | None = None
    cascade: bool = False


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


class Cancel(Message, frozen=True):
    """Pending and failed jobs become dead ("cancelled"); running ones get `signal`, SIGKILL `grace` s later,
    and end dead.  By `ids` (all or nothing) or by `select`.  Replied to with `Changed`."""

    ids: list[str] = []
    select: Selector | None = None
    signal: Signal = 15
    grace: Grace = 3.0


class Retry(Message, frozen=True):
    """Failed jobs become due now; dead ones go back to pending, attempts reset.  Replied to with `Changed`."""

    ids: list[str] = []
    select: Selector | None = None


class Rerun(Message, frozen=True):
    """Enqueue a copy of a job under a new id; replied to with `Enqueued`."""

    id: str
    new_id: JobId | None = None


class Edit(Message, frozen=True):
    """Change a job that is not running; fields left unset keep their value.  Replied to with `JobReply`.

    `timeout` null clears the timeout; `run_at` null makes the job due now.
    """

    id: str
    priority: Priority | msgspec.UnsetType = msgspec.UNSET
    run_at: Timestamp | msgspec.UnsetType | None = msgspec.UNSET
    delay: Delay | msgspec.UnsetType = msgspec.UNSET
    group: GroupName | msgspec.UnsetType = msgspec.UNSET
    max_retries: NonNegInt | msgspec.UnsetType = msgspec.UNSET
    timeout: Timeout | msgspec.UnsetType | None = msgspec.UNSET


class Prune(Message, frozen=True):
    """Remove final jobs and their output: of `state` (default completed and dead) finished more than
    `older_than` s ago, or by default past the keep-completed and keep-dead settings.  Replied to with `Changed`."""

    state: Literal["completed", "dead"] | None = None
    older_than: Age | None = None
    dry_run: bool = False


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
    GroupAdd, GroupSet, GroupRemove, GroupList, Pause, Cancel, Retry, Rerun, Edit, Prune, Why,
    ScheduleAdd, ScheduleList, ScheduleRemove, SchedulePause,
    Stats, Metrics,
    Audit,
    Page,
    Nodes,
]


# --- replies --------------------------------------------------------------


class Ok(Message, frozen=True):
    pass


class Error(Message, frozen=True):
    """A refused or invalid request.  `code` picks the CLI's exit status."""

    code: str  # one of ERROR_CODES
    message: str


class Enqueued(Message, frozen=True):
    """The job of each spec, in order: the one it created, or the one that holds its unique key."""

    ids: list[str]
    jobs: list[Job] = []  # with `want_jobs`
    created: list[bool] = []  # whether each job was created; empty: every one was


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
    groups: list[GroupInfo] = []
    retention: Retention | None = None
    policy: Policy | None = None  # the command policy, if the daemon has one
    nodes: list[NodeInfo] = []  # the nodes of a PostgreSQL store (none: the journal store)


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


class Changed(Message, frozen=True):
    """The jobs a command changed (or with dry_run, would change): `count` of them, their ids in pages,
    all but the last with `more=True`."""

    count: int
    ids: list[str] = []
    more: bool = False


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
    ConfigReply, Retried, Event, PoolStopped, EventsDropped, WaitSet, WaitChanges, Changed, GroupsReply, WhyReply,
    SchedulesReply, StatsReply, MetricsReply,
    AuditReply,
    PageReply,
    NodesReply,
]
