"""Cron schedules as the queue keeps them: their definitions, their last fire, and which slot is due.

Part of the pure state machine (no I/O, no clock): `Queue` applies the
schedule records through a `Schedules` table, and the store asks it what is
due at a time it passes in.  What a fire makes is planned by `firing`.

A schedule fires for the slots after `since` (when it was added or last
resumed) and after its last slot.  At `now`, the slot due is the latest one
at or before `now`: after downtime that is the latest missed slot, fired
once, never the slots before it; it is *late* when `now` is more than
LATE_AFTER seconds past it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, fields
from datetime import tzinfo

import msgspec

from queuectl_client.protocol import JobSpec, ScheduleInfo

from . import cron as slots
from . import events as ev
from .model import Job
from .rules import QueueError

LATE_AFTER = 10.0  # seconds past its slot after which a fire counts as late (load delays one by less)


@dataclass(slots=True)
class Schedule:
    """A schedule's definition and state, in the order of `events.ScheduleDefined`'s fields."""

    name: str
    cron: str
    zone: str
    job: JobSpec
    cwd: str | None
    no_overlap: bool
    since: float
    paused: bool = False
    last_slot: float | None = None
    last_at: float | None = None
    last_job: str | None = None
    last_late: bool = False
    last_skipped: bool = False
    last_error: str | None = None
    fires: int = 0
    skipped: int = 0
    failed: int = 0
    env: str | None = None
    _fields: str = field(default="", init=False)
    _tz: tzinfo = field(default=slots.UTC_ZONE, init=False)
    _next: float | None = field(default=None, init=False)
    _known: bool = field(default=False, init=False)  # whether _next is computed for the current state
    problem: str | None = field(default=None, init=False)  # why it cannot fire at all

    def __post_init__(self) -> None:
        try:
            self._fields = slots.expression(self.cron)
            self._tz = slots.zone(self.zone)
        except QueueError as e:
            # A zone that left the tz database since (or an expression a later cronsim refuses): the
            # schedule is kept and listed with the reason, and never fires; it never stops a start.
            self.problem = str(e)
            self._known = True

    def floor(self) -> float:
        """Slots at or before this are fired (or were never to be)."""
        return self.since if self.last_slot is None else max(self.since, self.last_slot)

    def next_slot(self) -> float | None:
        """The first slot that is not fired yet, paused or not; None if there is none before 9999."""
        if not self._known:
            self._next = slots.next_slot(self._fields, self._tz, self.floor())
            self._known = True
        return self._next

    def changed(self) -> None:
        self._known = bool(self.problem)

    def due(self, now: float) -> tuple[float, bool] | None:
        """The slot to fire at `now`, and whether that is late; None if no slot is due."""
        first = self.next_slot()
        if self.paused or self.problem or first is None or first > now:
            return None
        slot = slots.prev_slot(self._fields, self._tz, now)
        if slot is None or slot <= self.floor():
            slot = first
        return slot, now - slot > LATE_AFTER

    def info(self) -> ScheduleInfo:
        return ScheduleInfo(
            self.name, self.cron, self.zone, self.job, self.cwd, self.no_overlap, self.paused,
            None if self.paused else self.next_slot(), self.last_slot, self.last_at, self.last_job, self.last_late,
            self.last_skipped, self.problem or self.last_error, self.fires, self.skipped, self.failed,
        )


class Schedules:
    """Every schedule, by name, in the order they were added."""

    def __init__(self) -> None:
        self.by_name: dict[str, Schedule] = {}

    def __len__(self) -> int:
        return len(self.by_name)

    def get(self, name: str) -> Schedule | None:
        return self.by_name.get(name)

    def defined(self, e: ev.ScheduleDefined) -> None:
        fields = zip(e.__struct_fields__, msgspec.structs.astuple(e))
        self.by_name[e.name] = Schedule(*(value for name, value in fields if name != "by"))  # who is the trail's

    def removed(self, e: ev.ScheduleRemoved) -> None:
        self.by_name.pop(e.name, None)

    def paused(self, e: ev.SchedulePaused) -> None:
        s = self.by_name.get(e.name)
        if s is not None:
            if s.paused and not e.paused:
                s.since = e.at  # what it missed while paused is not fired
            s.paused = e.paused
            s.changed()

    def fired(self, e: ev.Fired, add: Callable[[float, list[Job]], None]) -> None:
        """Apply a fire: its job (if any) is added through `add`, and the schedule's last slot moves."""
        if e.job is not None:
            add(e.at, [Job(*msgspec.structs.astuple(e.job))])
        s = self.by_name.get(e.name)
        if s is None:
            return
        s.last_slot, s.last_at, s.last_late = e.slot, e.at, e.late
        s.last_skipped, s.last_error = e.skipped, e.error
        if e.job is not None:
            s.last_job = e.job.id
            s.fires += 1
        elif e.skipped:
            s.skipped += 1
        else:
            s.failed += 1
        s.changed()

    def due(self, now: float) -> list[tuple[Schedule, float, bool]]:
        """The schedules with a slot due at `now`: each with that slot and whether it is late."""
        out = []
        for s in self.by_name.values():
            due = s.due(now)
            if due is not None:
                out.append((s, *due))
        return out

    def next_fire(self) -> float | None:
        """When the earliest next fire of a schedule that is not paused comes, or None."""
        times = [t for s in self.by_name.values() if not s.paused and (t := s.next_slot()) is not None]
        return min(times) if times else None

    def snapshot(self) -> list[ev.ScheduleDefined]:
        return [ev.ScheduleDefined(*(getattr(s, f) for f in RECORD_FIELDS)) for s in self.by_name.values()]


RECORD_FIELDS = [f.name for f in fields(Schedule) if f.init]  # those of a ScheduleDefined, in its order
