"""Journal records: every change to the queue is one of these events.

The queue applies them and the journal stores them, so replaying the journal
rebuilds exactly the state the daemon had.  Each event carries the outcome
(for example the retry time), never a rule to re-evaluate, so that a config
change cannot alter history on replay.  Structs are array-like to keep
records small; fields are only ever appended, with defaults.
"""

from __future__ import annotations

from typing import Union

import msgspec

from queuectl_client.protocol import Job as JobView


class Record(msgspec.Struct, frozen=True, array_like=True, tag=True, gc=False):
    pass


class Job(msgspec.Struct, array_like=True, gc=False):
    """A job in memory, and in a snapshot as it is.

    Untracked by the cyclic GC (it holds only strings and numbers), so a
    million of them cost no collector time and 16 bytes less each; snapshots
    and replayed `Added` records decode straight into these, with no Python
    per job.  The first seven fields are a `NewJob`'s.  The fields mirror
    protocol.Job on purpose: that one is the frozen, versioned wire view, this
    one the mutable record with the daemon's own fields.
    """

    id: str
    command: str
    max_retries: int
    priority: int
    run_at: float | None
    timeout: float | None
    cwd: str | None = None
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

    def view(self) -> JobView:
        return JobView(
            self.id, self.command, self.state, self.attempts, self.max_retries, self.priority,  # type: ignore[arg-type]
            self.timeout, self.run_at, self.created_at, self.updated_at, self.started_at,
            self.finished_at, self.next_retry_at, self.exit_code, self.error_message, self.worker,
            self.cwd,
        )


class NewJob(msgspec.Struct, frozen=True, array_like=True, gc=False):
    """A job as an enqueue decided it: the first seven fields of `Job`, in the same order."""

    id: str
    command: str
    max_retries: int
    priority: int
    run_at: float | None
    timeout: float | None
    cwd: str | None = None


class Added(Record, frozen=True, tag="a"):
    """Jobs enqueued in one request; one record, so the batch is atomic."""

    at: float
    jobs: list[NewJob]


class AddedJobs(Record, frozen=True, tag="a"):
    """An `Added` record as replay reads it: each job decodes straight into a `Job`.

    The array of a NewJob is the start of a Job's; the fields after it take
    their defaults, and applying the record fills them, with no Python call
    per job to build it.
    """

    at: float
    jobs: list[Job]


class Started(Record, frozen=True, tag="s"):
    """A worker started a run.  `pgid` and `pid_start` identify its process group after a crash."""

    id: str
    at: float
    worker: int
    pgid: int
    pid_start: int


class Ended(Record, frozen=True, tag="e"):
    """A run ended: `state` is completed, failed (retry at `next_retry_at`) or dead."""

    id: str
    at: float
    state: str
    exit_code: int | None
    error: str | None
    next_retry_at: float | None


class Deleted(Record, frozen=True, tag="d"):
    id: str
    at: float


class Revived(Record, frozen=True, tag="r"):
    """Dead jobs moved back to pending with their attempts reset."""

    ids: list[str]
    at: float


class ConfigChanged(Record, frozen=True, tag="c"):
    key: str
    value: str


class PoolSized(Record, frozen=True, tag="p"):
    count: int


class Restored(Record, frozen=True, tag="R"):
    """Jobs from a snapshot: one state's, in the order they entered it."""

    jobs: list[Job]


class Running(Record, frozen=True, tag="G"):
    """In a snapshot: the process group of a running job's run (as its `Started` said)."""

    id: str
    pgid: int
    pid_start: int


class SnapshotEnd(Record, frozen=True, tag="E"):
    """The last record of a snapshot; a snapshot without it is incomplete."""

    jobs: int
    ticket: int = 0  # the queue's last scheduling ticket


# What the daemon writes; replay reads `Added` as `AddedJobs` (the same bytes).
Event = Union[Added, Started, Ended, Deleted, Revived, ConfigChanged, PoolSized, Restored, Running, SnapshotEnd]
Replayed = Union[AddedJobs, Started, Ended, Deleted, Revived, ConfigChanged, PoolSized, Restored, Running, SnapshotEnd]

encoder = msgspec.msgpack.Encoder()
decoder = msgspec.msgpack.Decoder(Replayed)
