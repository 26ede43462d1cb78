"""The PostgreSQL store's cron schedules: each slot fired by exactly one node.

A schedule is a row of `queuectl_schedules`: its definition and state encoded as the journal's
`ScheduleDefined` record (as a snapshot writes it), its next fire and whether it is paused, so
that `next_fire` is one `min()`.  What is due and what a fire makes are decided by the same code
as the journal store's (`schedules.Schedule`, `cron`, the checks of `firing`).

A fire is one transaction: the schedule's row `FOR UPDATE`, the slot due read from the row as
it is then (a node that waited for the lock finds the slot fired and does nothing: the
compare-and-set on the last slot), the job (named NAME-<slot>: a second insert of the slot's job
would be refused by the id's unique index) and the schedule's new state together.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import msgspec

from queuectl_client import protocol as p

from .. import cron
from .. import events as ev
from ..deps import names
from ..model import Job
from ..rules import COMPLETED, DEAD, QueueError, environments, new_jobs
from ..schedules import RECORD_FIELDS, Schedule

if TYPE_CHECKING:
    import asyncpg

    from .base import PgBase
else:
    PgBase = object

_encode = msgspec.msgpack.Encoder().encode
_decode = msgspec.msgpack.Decoder(ev.ScheduleDefined).decode


def decode(data: bytes) -> Schedule:
    e = _decode(data)
    return Schedule(*(value for name, value in zip(e.__struct_fields__, msgspec.structs.astuple(e)) if name != "by"))


def encode(s: Schedule) -> bytes:
    return _encode(ev.ScheduleDefined(*(getattr(s, f) for f in RECORD_FIELDS)))


def next_fire(s: Schedule) -> float | None:
    return None if s.paused or s.problem else s.next_slot()


class ScheduleMixin(PgBase):
    """define_schedule, remove_schedule, pause_schedule, schedules, next_fire, fire."""

    async def _check_job(self, conn: asyncpg.Connection, spec: p.JobSpec, cwd: str | None, at: float) -> None:
        """Refuse a job a schedule could never enqueue, as `enqueue` would (firing.check_job)."""
        problem = p.unschedulable(spec)
        if problem is not None:
            raise QueueError("invalid", problem)
        (job,) = new_jobs([spec], at, self.config, "x", cwd)
        if not await conn.fetchval("SELECT EXISTS (SELECT 1 FROM queuectl_groups WHERE name = $1)", job.group):
            raise QueueError("invalid", f"unknown group {job.group}; create it with `queuectl group add {job.group}`")
        deps = names(job)
        if deps:
            known = {r["id"] for r in await conn.fetch("SELECT id FROM queuectl_jobs WHERE id = ANY($1::text[])", deps)}
            for dep in deps:
                if dep not in known:
                    raise QueueError("invalid", f"invalid job: unknown dependency {dep}")

    async def _put(self, conn: asyncpg.Connection, s: Schedule) -> None:
        await conn.execute("UPDATE queuectl_schedules SET data = $2, next_fire = $3, paused = $4 WHERE name = $1",
                           s.name, encode(s), next_fire(s), s.paused)

    async def _locked(self, conn: asyncpg.Connection, name: str) -> Schedule:
        data = await conn.fetchval("SELECT data FROM queuectl_schedules WHERE name = $1 FOR UPDATE", name)
        if data is None:
            raise QueueError("not_found", f"no schedule named {name!r}")
        return decode(data)

    async def define_schedule(self, req: p.ScheduleAdd, at: float, local_zone: str) -> p.ScheduleInfo:
        text = " ".join(req.cron.split())
        cron.expression(text)
        zone = req.zone or local_zone
        cron.zone(zone)
        envs: dict[str, dict[str, str]] = {}
        async with self.tx() as conn:
            await self._check_job(conn, req.job, req.cwd, at)
            (env,) = environments([req.job], req.env, envs)
            record = ev.ScheduleDefined(req.name, text, zone, req.job, req.cwd, req.no_overlap, at, env=env)
            s = decode(_encode(record))
            done = await conn.execute(
                "INSERT INTO queuectl_schedules (name, data, next_fire, paused) VALUES ($1, $2, $3, false) "
                "ON CONFLICT (name) DO NOTHING", req.name, encode(s), next_fire(s))
            if done.endswith(" 0"):
                raise QueueError("duplicate", f"a schedule named {req.name!r} already exists")
            if envs:
                await conn.executemany("INSERT INTO queuectl_environments (key, vars) VALUES ($1, $2) "
                                       "ON CONFLICT (key) DO NOTHING",
                                       [(k, msgspec.json.encode(v).decode()) for k, v in envs.items()])
            await self._audited(conn, record)
            await self.notify(conn, "queuectl_config", "schedules")
        return s.info()

    async def remove_schedule(self, name: str) -> None:
        async with self.tx() as conn:
            if await conn.execute("DELETE FROM queuectl_schedules WHERE name = $1", name) == "DELETE 0":
                raise QueueError("not_found", f"no schedule named {name!r}")
            await self._audited(conn, ev.ScheduleRemoved(name))
            await self.notify(conn, "queuectl_config", "schedules")

    async def pause_schedule(self, name: str, paused: bool, at: float) -> p.ScheduleInfo:
        async with self.tx() as conn:
            s = await self._locked(conn, name)
            if s.paused and not paused:
                s.since = at  # what it missed while paused is not fired
            s.paused = paused
            s.changed()
            await self._put(conn, s)
            await self._audited(conn, ev.SchedulePaused(name, paused, at))
            await self.notify(conn, "queuectl_config", "schedules")
        return s.info()

    async def schedules(self) -> list[p.ScheduleInfo]:
        found = await self.db.fetch("SELECT data FROM queuectl_schedules ORDER BY seq")
        return [decode(r["data"]).info() for r in found]

    async def next_fire(self) -> float | None:
        value = await self.db.fetchval("SELECT min(next_fire) FROM queuectl_schedules WHERE NOT paused")
        return None if value is None else float(value)

    async def fire(self, now: float, refuse: Callable[[str], str | None] | None = None) -> list[Job]:
        made: list[Job] = []
        for r in await self.db.fetch("SELECT name FROM queuectl_schedules WHERE NOT paused AND next_fire <= $1 "
                                     "ORDER BY seq", now):
            async with self.tx() as conn:
                try:
                    s = await self._locked(conn, r["name"])
                except QueueError:
                    continue  # removed meanwhile
                due = s.due(now)
                if due is None:
                    continue  # fired meanwhile by another node
                job = await self._fire(conn, s, *due, now, refuse)
                if job is not None:
                    made.append(job)
                    await self.notify(conn, "queuectl_wake", "")
                    await self.notify(conn, "queuectl_changed", job.id)
                await self._put(conn, s)
        return made

    async def _fire(self, conn: asyncpg.Connection, s: Schedule, slot: float, late: bool, at: float,
                    refuse: Callable[[str], str | None] | None) -> Job | None:
        """Fire `s` for `slot` (firing.plan_fire's rules) and move its state as `Schedules.fired` does."""
        job: Job | None = None
        skipped, error = False, None
        previous = None
        if s.no_overlap and s.last_job is not None:
            previous = await conn.fetchval("SELECT state FROM queuectl_jobs WHERE id = $1", s.last_job)
        if previous is not None and previous not in (COMPLETED, DEAD):
            skipped = True
        else:
            (new,) = new_jobs([s.job], at, self.config, cron.job_id(s.name, slot), s.cwd)
            key = new.unique_key
            holder = None if key is None else await conn.fetchval(
                "SELECT id FROM queuectl_jobs_live WHERE unique_key = $1", key)
            if holder is not None:  # as an enqueue of it would: nothing is created
                skipped, error = True, f"skipped: job {holder} holds the unique key {key!r}"
            else:
                try:
                    refused = refuse(new.command) if refuse is not None else None
                    if refused is not None:  # the caller's policy, checked again at each fire
                        raise QueueError("refused", refused)
                    new.env = s.env  # composed when the schedule was added
                    new.schedule, new.slot, new.late = s.name, slot, late
                    async with conn.transaction():  # a refusal leaves nothing behind
                        (job,) = await self._insert(conn, [new], at, {})
                except QueueError as e:
                    error = str(e)
        s.last_slot, s.last_at, s.last_late = slot, at, late
        s.last_skipped, s.last_error = skipped, error
        if job is not None:
            s.last_job = job.id
            s.fires += 1
        elif skipped:
            s.skipped += 1
        else:
            s.failed += 1
        s.changed()
        return job

