"""Journal records: every change to the queue is one of these events.

The queue applies them and the journal stores them, so replaying the journal
rebuilds exactly the state the daemon had.  Each event carries the outcome
(for example the retry time), never a rule to re-evaluate, so that a config
change cannot alter history on replay.  Structs are array-like to keep
records small; fields are only ever appended, with defaults.
"""

from __future__ import annotations

import sys
from typing import Union

import msgspec

from queuectl_client.protocol import AuditEntry, JobSpec

from .audit import Actor
from .model import Job, NewJob


class Record(msgspec.Struct, frozen=True, array_like=True, tag=True, gc=False):
    pass


class Added(Record, frozen=True, tag="a"):
    """Jobs enqueued in one request; one record, so the batch is atomic."""

    at: float
    jobs: list[NewJob]
    by: Actor | None = None  # who asked for it (None: the daemon itself, or a snapshot)


class AddedJobs(Record, frozen=True, tag="a"):
    """An `Added` record as replay reads it: each job decodes straight into a `Job`.

    The array of a NewJob is the start of a Job's; the fields after it take
    their defaults, and applying the record fills them, with no Python call
    per job to build it.
    """

    at: float
    jobs: list[Job]
    by: Actor | None = None  # who asked for it (None: the daemon itself, or a snapshot)


class EnvDefined(Record, frozen=True, tag="V"):
    """An environment jobs run with, under its key (rules.env_key): written once, before the
    first `Added` whose jobs name it, in the same journal write; a snapshot writes those jobs still use."""

    key: str
    vars: dict[str, str]


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
    by: Actor | None = None  # who asked for it (None: the daemon itself, or a snapshot)


class Revived(Record, frozen=True, tag="r"):
    """Jobs retried now: dead ones back to pending with their attempts reset, failed ones due at once."""

    ids: list[str]
    at: float
    by: Actor | None = None  # who asked for it (None: the daemon itself, or a snapshot)


class DeletedMany(Record, frozen=True, tag="D"):
    """Jobs deleted at once (a selection, or retention's slice): none of them was running."""

    ids: list[str]
    at: float
    by: Actor | None = None  # who asked for it (None: the daemon itself, or a snapshot)


class Cancelled(Record, frozen=True, tag="C"):
    """Waiting jobs become dead ("cancelled"); running ones are marked, and their run ends dead."""

    ids: list[str]
    at: float
    by: Actor | None = None  # who asked for it (None: the daemon itself, or a snapshot)


class Edited(Record, frozen=True, tag="M"):
    """A job that is not running, with its new values; `reschedule`: it draws a new place in line."""

    id: str
    at: float
    priority: int
    run_at: float | None
    due: float
    group: str
    max_retries: int
    timeout: float | None
    reschedule: bool
    by: Actor | None = None  # who asked for it (None: the daemon itself, or a snapshot)


class GroupDefined(Record, frozen=True, tag="g"):
    """A group added or changed: its cap on running jobs (0: none) and whether it is paused."""

    name: str
    parallel: int
    paused: bool = False
    by: Actor | None = None  # who asked for it (None: the daemon itself, or a snapshot)


class GroupRemoved(Record, frozen=True, tag="x"):
    name: str
    by: Actor | None = None  # who asked for it (None: the daemon itself, or a snapshot)


class Paused(Record, frozen=True, tag="P"):
    """Groups paused (or resumed): they start no new job, and their running jobs finish."""

    groups: list[str]
    paused: bool
    by: Actor | None = None  # who asked for it (None: the daemon itself, or a snapshot)


class ConfigChanged(Record, frozen=True, tag="c"):
    key: str
    value: str
    by: Actor | None = None  # who asked for it (None: the daemon itself, or a snapshot)


class PoolSized(Record, frozen=True, tag="p"):
    count: int
    by: Actor | None = None  # who asked for it (None: the daemon itself, or a snapshot)


class Restored(Record, frozen=True, tag="R"):
    """Jobs from a snapshot: one state's, in the order they entered it."""

    jobs: list[Job]


class Running(Record, frozen=True, tag="G"):
    """In a snapshot: the process group of a running job's run (as its `Started` said)."""

    id: str
    pgid: int
    pid_start: int
    cancelled: bool = False  # a cancel was asked for: the run ends dead


class SnapshotEnd(Record, frozen=True, tag="E"):
    """The last record of a snapshot; a snapshot without it is incomplete.

    `jobs` counts the jobs its `Restored` records hold; replay checks it.
    """

    jobs: int
    ticket: int = 0  # the queue's last scheduling ticket


class ScheduleDefined(Record, frozen=True, tag="k"):
    """A schedule added; in a snapshot, with its state.  It fires for the slots after `at` (when it was
    added or last resumed) and after `last_slot`; `cron` and `zone` are as given, resolved at `add`."""

    name: str
    cron: str
    zone: str
    job: JobSpec  # the job each fire enqueues, without id, run_at and delay
    cwd: str | None  # for a job that names no directory: the directory of `schedule add`
    no_overlap: bool
    at: float
    paused: bool = False
    last_slot: float | None = None  # the slot of the last fire, whatever came of it
    last_at: float | None = None  # when that fire was recorded
    last_job: str | None = None  # the job of the last fire that made one
    last_late: bool = False
    last_skipped: bool = False
    last_error: str | None = None  # why the last fire made no job (its group is gone, its id is taken)
    fires: int = 0  # jobs made
    skipped: int = 0  # fires skipped by no_overlap
    failed: int = 0  # fires that made no job for another reason
    env: str | None = None  # the key of its jobs' environment (None: the daemon's)
    by: Actor | None = None  # who asked for it (None: the daemon itself, or a snapshot)


class ScheduleRemoved(Record, frozen=True, tag="K"):
    name: str
    by: Actor | None = None  # who asked for it (None: the daemon itself, or a snapshot)


class SchedulePaused(Record, frozen=True, tag="h"):
    """A schedule paused, or resumed at `at`: the slots it missed while paused are not fired."""

    name: str
    paused: bool
    at: float
    by: Actor | None = None  # who asked for it (None: the daemon itself, or a snapshot)


class Fired(Record, frozen=True, tag="f"):
    """A schedule fired for `slot`: its job (None when skipped or failed) and the schedule's last slot,
    in one record, so a slot is never fired twice, even across a crash."""

    name: str
    slot: float
    at: float
    job: NewJob | None
    late: bool = False  # fired after downtime, more than schedules.LATE_AFTER s after its slot
    skipped: bool = False  # no_overlap: the previous fire's job was not final
    error: str | None = None  # the job could not be made: why



class Refused(Record, frozen=True, tag="Z"):
    """A request the daemon's command policy refused: kept on record like a change, though nothing changed."""

    action: str  # the request refused: enqueue, rerun, schedule add
    detail: str  # what it asked for, shortened
    by: Actor | None = None


class AuditKept(Record, frozen=True, tag="A"):
    """In a snapshot: audit entries, oldest first, so that compaction keeps the trail."""

    entries: list[AuditEntry]


# What the daemon writes; replay reads `Added` as `AddedJobs` (the same bytes).
Event = Union[Added, Started, Ended, Deleted, Revived, ConfigChanged, PoolSized, Restored, Running, SnapshotEnd,
              DeletedMany, Cancelled, Edited, GroupDefined, GroupRemoved, Paused, EnvDefined, ScheduleDefined,
              ScheduleRemoved, SchedulePaused, Fired, Refused, AuditKept]
Replayed = Union[AddedJobs, Started, Ended, Deleted, Revived, ConfigChanged, PoolSized, Restored, Running, SnapshotEnd,
                 DeletedMany, Cancelled, Edited, GroupDefined, GroupRemoved, Paused, EnvDefined, ScheduleDefined,
                 ScheduleRemoved, SchedulePaused, Fired, Refused, AuditKept]

encoder = msgspec.msgpack.Encoder()
decoder = msgspec.msgpack.Decoder(Replayed)


def interned(event: Replayed) -> Replayed:
    """A record as read, its jobs' environment keys made one string per environment at once: a
    file's records are all read before any is applied, and a million copies of a key, freed only
    then, would leave their memory scattered between the jobs'."""
    if isinstance(event, (AddedJobs, Restored)):
        intern = sys.intern
        for job in event.jobs:
            if job.env is not None:
                job.env = intern(job.env)
    return event


# -- snapshots of formats 3 (before groups) and 4 (before scheduling) ---------------------
# A job array of these formats lacks fields that were added in the middle of the Job (after
# its enqueue fields, before its run fields): they are read as such, and upgraded.

SCHEDULING_DEFAULTS = (None, None)  # env, extra


class Job4(msgspec.Struct, array_like=True, gc=False):
    id: str
    command: str
    max_retries: int
    priority: int
    run_at: float | None
    timeout: float | None
    cwd: str | None
    group: str
    state: str
    attempts: int
    created_at: float
    updated_at: float
    started_at: float | None
    finished_at: float | None
    next_retry_at: float | None
    exit_code: int | None
    error_message: str | None
    worker: int | None
    due: float
    ticket: int


class Job3(msgspec.Struct, array_like=True, gc=False):
    id: str
    command: str
    max_retries: int
    priority: int
    run_at: float | None
    timeout: float | None
    cwd: str | None
    state: str
    attempts: int
    created_at: float
    updated_at: float
    started_at: float | None
    finished_at: float | None
    next_retry_at: float | None
    exit_code: int | None
    error_message: str | None
    worker: int | None
    due: float
    ticket: int


class Restored4(Record, frozen=True, tag="R"):
    jobs: list[Job4]


class Restored3(Record, frozen=True, tag="R"):
    jobs: list[Job3]


Legacy = Union[Restored4, Restored3, ConfigChanged, PoolSized, GroupDefined, Running, SnapshotEnd]
Snapshot4 = Union[Restored4, ConfigChanged, PoolSized, GroupDefined, Running, SnapshotEnd]  # groups came in format 4
Snapshot3 = Union[Restored3, ConfigChanged, PoolSized, Running, SnapshotEnd]
decoder4: msgspec.msgpack.Decoder[Legacy] = msgspec.msgpack.Decoder(Snapshot4)
decoder3: msgspec.msgpack.Decoder[Legacy] = msgspec.msgpack.Decoder(Snapshot3)


def upgrade(event: Legacy) -> Replayed:
    """A format-3 or format-4 snapshot record as this version keeps it: format-3 jobs in the
    group `default`, and every job without the scheduling fields."""
    if isinstance(event, Restored4):
        fields = msgspec.structs.astuple
        return Restored([Job(*(t := fields(j))[:8], *SCHEDULING_DEFAULTS, *t[8:])  # type: ignore[call-arg]
                         for j in event.jobs])
    if isinstance(event, Restored3):
        fields = msgspec.structs.astuple
        return Restored([Job(*(t := fields(j))[:7], "default", *SCHEDULING_DEFAULTS, *t[7:])  # type: ignore[call-arg]
                         for j in event.jobs])
    return event
