"""The protocol's messages for cron schedules: add, list, remove, pause and resume, and what `list` says.

`protocol` re-exports them and lists them among its requests and replies.
"""

from __future__ import annotations

from typing import Annotated

import msgspec

from .schema import AbsPath, Environment, JobSpec, Message, ScheduleName

CronText = Annotated[str, msgspec.Meta(min_length=1, max_length=256, pattern=r"^[^\x00]*$")]
ZoneName = Annotated[str, msgspec.Meta(min_length=1, max_length=255, pattern=r"^[^\x00-\x1f\x7f]*$")]
REFUSED_FIELDS = ("id", "run_at", "delay")  # each fire names its job and runs it at once


def unschedulable(spec: JobSpec) -> str | None:
    """Why `spec` cannot be a schedule's job (it names a field each fire decides), or None."""
    for name in REFUSED_FIELDS:
        if getattr(spec, name) is not None:
            return (f"invalid job: a scheduled job has no `{name}`: each fire names its job NAME-<slot time> "
                    "and runs it at once")
    return None


class ScheduleAdd(Message, frozen=True):
    """Add a schedule: `job` (without id, run_at, delay) is enqueued at each slot of `cron` in `zone`
    (None: the daemon's local zone, resolved now).  With `no_overlap`, a slot is skipped while the
    previous fire's job is not final.  Replied to with `SchedulesReply` holding the new schedule."""

    name: ScheduleName
    cron: CronText
    job: JobSpec
    zone: ZoneName | None = None
    no_overlap: bool = False
    cwd: AbsPath | None = None  # for a job that names no directory
    env: Environment | None = None  # the caller's environment, as `Enqueue.env`: each fire's job runs with it


class ScheduleList(Message, frozen=True):
    pass


class ScheduleRemove(Message, frozen=True):
    """Remove a schedule; the jobs it made stay."""

    name: str


class SchedulePause(Message, frozen=True):
    """Pause a schedule (or with `resume`, resume it): a paused schedule fires nothing, and once
    resumed it fires from its next slot on, never for the slots it missed."""

    name: str
    resume: bool = False


class ScheduleInfo(msgspec.Struct, frozen=True):
    """A schedule and its fires.  Times are UNIX seconds."""

    name: str
    cron: str
    zone: str
    job: JobSpec
    cwd: str | None
    no_overlap: bool
    paused: bool
    next_fire: float | None  # None while paused, or when no slot is left
    last_slot: float | None  # the slot of the last fire, whatever came of it
    last_at: float | None
    last_job: str | None  # the job of the last fire that made one
    last_late: bool
    last_skipped: bool
    last_error: str | None  # why the last fire made no job
    fires: int
    skipped: int  # by no_overlap
    failed: int


class SchedulesReply(Message, frozen=True):
    schedules: list[ScheduleInfo]
