"""The PostgreSQL store's control changes: delete, revive, retry, cancel, edit, prune, and `why`.

Each change is one transaction: the jobs it names are read `FOR UPDATE` (so a concurrent claim,
end or change on another node waits for it or skips them), checked by the same rules and with the
same refusals as `planning` (a refusal raises before anything is written, and the transaction
rolls back: all or nothing), then written with their dependents (`pg/deps.py`, `pg/revival.py`),
the audit entry, and one NOTIFY per channel sent at the commit.

A job is *busy* while it runs (`processing`) or while a node holds it for a start (`locked_by` set):
nothing but a cancel changes it.  A held job that is cancelled is dead at once but keeps its
`locked_by` until its node gives it back (its start is withdrawn), so it still counts in its group.
A running job's cancel sets `cancelled`; its node (this one, or the one `locked_by` names, told by
NOTIFY queuectl_cancel and its own check every 0.5 s) stops the run, which then ends dead.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, TypeVar

from msgspec import UNSET

from queuectl_client import protocol as p

from .. import events as ev
from .. import trail
from ..model import Job
from ..planning import CANCELLABLE, RETRYABLE, edited
from ..rules import CANCELLED, DEAD, FAILED, PENDING, PROCESSING, QueueError
from . import deps, revival, rows
from .revival import ENTERED, TICKET, job_of

if TYPE_CHECKING:
    import asyncpg

    from .base import PgBase
else:
    PgBase = object

LIVE = (PENDING, PROCESSING, FAILED)
TRIES = 5  # a change that meets a concurrent one (a row moved partition, a deadlock, a key taken) is tried again
F = TypeVar("F", bound=Callable[..., Awaitable[Any]])


def retried(fn: F) -> F:
    """Run the change again, from its reads, when the database refused it for a concurrent one."""
    import asyncpg

    @functools.wraps(fn)
    async def again(*args: Any, **kw: Any) -> Any:
        for attempt in range(TRIES):
            try:
                return await fn(*args, **kw)
            except (asyncpg.SerializationError, asyncpg.DeadlockDetectedError, asyncpg.UniqueViolationError):
                # (a unique key taken on another node between the check and the revive: the check says so next)
                if attempt == TRIES - 1:
                    raise
        raise AssertionError("unreachable")

    return again  # type: ignore[return-value]


def _owner(job_locked_by: str | None) -> str | None:
    return None if not job_locked_by else job_locked_by.split("/", 1)[0]


class ControlMixin(PgBase):
    """delete, delete_many, revive, retry, cancel, edit, prune, expired, why."""

    # -- naming jobs ----------------------------------------------------------------------------

    async def _named(self, conn: asyncpg.Connection, ids: list[str], sel: p.Selector | None,
                     at: float) -> list[asyncpg.Record]:
        """The jobs named (each must exist) or selected, locked, as rows; in the order named, or entered."""
        if sel is not None:
            if ids:
                raise QueueError("invalid", "give job ids or a selection, not both")
            if sel.group is not None and not await conn.fetchval(
                    "SELECT EXISTS (SELECT 1 FROM queuectl_groups WHERE name = $1) "
                    "OR EXISTS (SELECT 1 FROM queuectl_jobs WHERE grp = $1)", sel.group):
                raise QueueError("not_found", f"no group named {sel.group!r}")
            before = None if sel.older_than is None else at - sel.older_than
            return list(await conn.fetch(
                f"SELECT {rows.JOB_COLUMNS}, locked_by FROM queuectl_jobs WHERE state = $1 "
                "AND ($2::text IS NULL OR grp = $2) AND ($3::float8 IS NULL OR updated_at <= $3) "
                "ORDER BY entered FOR UPDATE", sel.state, sel.group, before))
        if not ids:
            raise QueueError("invalid", "name the jobs, or select them by state")
        named = list(dict.fromkeys(ids))
        found = {r["id"]: r for r in await conn.fetch(
            f"SELECT {rows.JOB_COLUMNS}, locked_by FROM queuectl_jobs WHERE id = ANY($1::text[]) "
            "ORDER BY id FOR UPDATE", named)}
        for job_id in named:
            if job_id not in found:
                raise QueueError("not_found", f"no job with id {job_id!r}")
        return [found[job_id] for job_id in named]

    async def _get_locked(self, conn: asyncpg.Connection, job_id: str) -> asyncpg.Record:
        (row,) = await self._named(conn, [job_id], None, 0.0)
        return row

    async def _changed(self, conn: asyncpg.Connection, ids: list[str], wake: bool = False) -> None:
        if ids:
            await self.notify(conn, "queuectl_changed", *ids)
        if wake:
            await self.notify(conn, "queuectl_wake", "")

    # -- delete ----------------------------------------------------------------------------------

    async def delete(self, job_id: str, at: float, cascade: bool = False) -> None:
        await self._delete([job_id], None, at, cascade, ev.Deleted(job_id, at))

    async def delete_many(self, ids: list[str], select: p.Selector | None, at: float,
                          cascade: bool = False) -> list[str]:
        return await self._delete(ids, select, at, cascade, None)

    @retried
    async def _delete(self, ids: list[str], sel: p.Selector | None, at: float, cascade: bool,
                      record: ev.Deleted | None, request_prune: bool = False) -> list[str]:
        if sel is not None and sel.state == PROCESSING:
            raise QueueError("invalid", "delete never touches running jobs: select another state")
        async with self.tx() as conn:
            jobs = await self._named(conn, ids, sel, at)
            chosen = []
            for r in jobs:
                if r["state"] == PROCESSING or r["locked_by"] is not None:
                    if sel is not None:
                        continue  # taken for a start in this moment: a selection leaves it out
                    raise QueueError("state", f"job {r['id']} is running; delete it after it finishes")
                chosen.append(r)
            if not cascade:
                await self._check_dependents(conn, chosen)
            gone = [r["id"] for r in chosen]
            if not gone:
                return []
            moved = await self._remove(conn, chosen, at)
            await self._audited(conn, record if record is not None and len(gone) == 1 else ev.DeletedMany(gone, at))
            await self._changed(conn, gone + moved, wake=bool(moved))
        return gone

    async def _check_dependents(self, conn: asyncpg.Connection, jobs: list[asyncpg.Record]) -> None:
        live = [r["id"] for r in jobs if r["state"] in LIVE]
        if not live:
            return
        deleting = [r["id"] for r in jobs]
        waiting = await conn.fetch(
            "SELECT d.dep_id, d.job_id FROM queuectl_deps d JOIN queuectl_jobs j ON j.id = d.job_id "
            "WHERE d.dep_id = ANY($1::text[]) AND j.state = 'pending' AND NOT (d.job_id = ANY($2::text[])) "
            "ORDER BY j.ticket, d.is_any", live, deleting)
        for job_id in live:
            names = list(dict.fromkeys(r["job_id"] for r in waiting if r["dep_id"] == job_id))
            if names:
                some = ", ".join(names[:5]) + (", ..." if len(names) > 5 else "")
                raise QueueError("state", f"job {job_id} has dependents waiting for it ({some}); delete them too, "
                                          "or delete with --cascade (its `after` dependents die with it)")

    async def _remove(self, conn: asyncpg.Connection, jobs: list[asyncpg.Record], at: float) -> list[str]:
        """Delete the rows; their dependents see them final (pending `after` ones die, `after_any` ones count
        them met), and dead `after` dependents of one deleted before it completed take it as their cause."""
        gone = [r["id"] for r in jobs]
        unfinished = [r["id"] for r in jobs if r["state"] != "completed"]
        live = [r["id"] for r in jobs if r["state"] in LIVE]
        await conn.execute("DELETE FROM queuectl_jobs WHERE id = ANY($1::text[])", gone)
        moved: list[str] = []
        if live:
            moved += changed_ids_of(await deps.died(conn, live, at))
        if unfinished:
            await conn.execute(
                "UPDATE queuectl_jobs j SET cause = d.dep_id FROM queuectl_deps d "
                "WHERE d.dep_id = ANY($1::text[]) AND NOT d.is_any AND j.id = d.job_id AND j.state = 'dead'",
                unfinished)
        # Their own edges go; edges naming them stay while a dependent names them (a bound id).
        await conn.execute("DELETE FROM queuectl_deps WHERE job_id = ANY($1::text[])", gone)
        return moved

    # -- cancel ----------------------------------------------------------------------------------

    @retried
    async def cancel(self, ids: list[str], select: p.Selector | None, at: float) -> tuple[list[str], list[str]]:
        if select is not None and select.state not in CANCELLABLE:
            raise QueueError("invalid", f"only pending, failed or processing jobs can be cancelled, not {select.state}")
        async with self.tx() as conn:
            jobs = await self._named(conn, ids, select, at)
            for r in jobs:
                if r["state"] not in CANCELLABLE:
                    raise QueueError("state", f"job {r['id']} is already {r['state']}")
            busy = [r for r in jobs if r["state"] == PROCESSING or r["locked_by"] is not None]
            waiting = [r["id"] for r in jobs if r["state"] != PROCESSING]
            running = [r["id"] for r in jobs if r["state"] == PROCESSING]
            moved: list[str] = []
            if waiting:
                await conn.execute(
                    f"UPDATE queuectl_jobs SET state = 'dead', error_message = $2, next_retry_at = NULL, "
                    f"finished_at = $3, updated_at = $3, blocked = 0, entered = {ENTERED}, "
                    "cancelled = (locked_by IS NOT NULL) WHERE id = ANY($1::text[])", waiting, CANCELLED, at)
                moved = changed_ids_of(await deps.died(conn, waiting, at))
            if running:
                await conn.execute("UPDATE queuectl_jobs SET cancelled = true WHERE id = ANY($1::text[])", running)
            owners = sorted({o for r in busy if (o := _owner(r["locked_by"])) and o != self.node_id})
            if owners:
                await self.notify(conn, "queuectl_cancel", *owners)
            changed = [r["id"] for r in jobs]
            if changed:
                await self._audited(conn, ev.Cancelled(changed, at))
            await self._changed(conn, changed + moved, wake=bool(moved))
        stop = [r["id"] for r in busy if _owner(r["locked_by"]) == self.node_id]
        return changed, stop

    # -- revive and retry ------------------------------------------------------------------------

    @retried
    async def revive(self, ids: list[str], everything: bool, at: float) -> list[str]:
        async with self.tx() as conn:
            if everything:
                jobs = await conn.fetch(f"SELECT {rows.JOB_COLUMNS}, locked_by FROM queuectl_jobs WHERE state = 'dead' "
                                        "ORDER BY entered FOR UPDATE")
                # --all leaves out a job whose `after` dependency is dead (it comes back with its cause)
                chosen = await revival.choose(conn, jobs, set(), strict=False)
            else:
                if not ids:
                    raise QueueError("invalid", "name the jobs to retry, or use --all")
                jobs = await self._named(conn, ids, None, at)
                for r in jobs:
                    if r["state"] != DEAD:
                        raise QueueError("state", f"job {r['id']} is {r['state']}, not dead; "
                                                  "only dead jobs can be retried")
                chosen = await revival.choose(conn, jobs, {r["id"] for r in jobs}, strict=True)
            return await self._bring_back(conn, chosen, at)

    @retried
    async def retry(self, ids: list[str], select: p.Selector | None, at: float) -> list[str]:
        if select is not None and select.state not in RETRYABLE:
            raise QueueError("invalid", f"only failed or dead jobs can be retried, not {select.state}")
        async with self.tx() as conn:
            jobs = await self._named(conn, ids, select, at)
            naming = {r["id"] for r in jobs} if select is None else set()
            chosen = await revival.choose(conn, jobs, naming, strict=select is None)
            return await self._bring_back(conn, chosen, at)

    async def _bring_back(self, conn: asyncpg.Connection, chosen: list[asyncpg.Record], at: float) -> list[str]:
        if not chosen:
            return []
        ids = [r["id"] for r in chosen]
        failed = [r["id"] for r in chosen if r["state"] == FAILED]
        if failed:  # their backoff is cut short, in the order they were named
            await conn.execute(
                "UPDATE queuectl_jobs j SET next_retry_at = $2, updated_at = $2, due = $2, ticket = s.t "
                f"FROM (SELECT o.id, {TICKET} AS t FROM (SELECT * FROM unnest($1::text[]) WITH ORDINALITY AS n(id, i) "
                "ORDER BY i) o) s WHERE j.id = s.id", failed, at)
        moved = await revival.revive(conn, [r["id"] for r in chosen if r["state"] == DEAD], at)
        await self._audited(conn, ev.Revived(ids, at))
        await self._changed(conn, ids + moved, wake=True)
        return ids

    # -- edit ------------------------------------------------------------------------------------

    @retried
    async def edit(self, req: p.Edit, at: float) -> Job:
        async with self.tx() as conn:
            r = await self._get_locked(conn, req.id)
            job = job_of(r)
            if job.state == PROCESSING or r["locked_by"] is not None:
                raise QueueError("state", f"job {job.id} is running; edit it after it finishes")
            group = job.group if req.group is UNSET else req.group
            if group != job.group and not await conn.fetchval(
                    "SELECT EXISTS (SELECT 1 FROM queuectl_groups WHERE name = $1)", group):
                raise QueueError("not_found", f"no group named {group!r}")
            record = edited(job, req, group, at)
            waits = job.state in (PENDING, FAILED)
            before = (job.priority, job.run_at, job.group, job.max_retries, job.timeout)
            row = await conn.fetchrow(
                f"UPDATE queuectl_jobs SET priority = $2, run_at = $3, grp = $4, max_retries = $5, timeout = $6, "
                f"due = $7, next_retry_at = CASE WHEN state = 'failed' THEN $7 ELSE next_retry_at END, "
                f"ticket = CASE WHEN $8 THEN {TICKET} ELSE ticket END WHERE id = $1 RETURNING {rows.JOB_COLUMNS}",
                job.id, record.priority, record.run_at, group, record.max_retries, record.timeout, record.due,
                record.reschedule)
            await self._audited(conn, record, trail.edited(record, before))
            await self._changed(conn, [job.id], wake=waits)
        return job_of(row)

    # -- retention -------------------------------------------------------------------------------

    async def expired(self, before: dict[str, float], limit: int | None) -> list[str]:
        async with self.db.acquire() as conn:
            return [r["id"] for r in await self._expired(conn, before, limit, lock=False)]

    async def _expired(self, conn: asyncpg.Connection, before: dict[str, float], limit: int | None,
                       lock: bool) -> list[asyncpg.Record]:
        out: list[asyncpg.Record] = []
        locking = " FOR UPDATE SKIP LOCKED" if lock else ""
        for state, cutoff in before.items():
            left = None if limit is None else limit - len(out)
            if left is not None and left <= 0:
                break
            out += await conn.fetch(
                # A final job always has finished_at: the done partition's (state, finished_at) index serves it.
                "SELECT id, state FROM queuectl_jobs_done WHERE state = $1 AND finished_at < $2 "
                f"ORDER BY finished_at, entered LIMIT $3{locking}",
                state, cutoff, left)
        return out

    @retried
    async def prune(self, before: dict[str, float], limit: int) -> list[str]:
        async with self.tx() as conn:
            jobs = await self._expired(conn, before, limit, lock=True)
            gone = [r["id"] for r in jobs]
            if gone:
                await self._remove(conn, jobs, self.clock())
                await self._audited(conn, ev.DeletedMany(gone, self.clock()))
                await self._changed(conn, gone)
        return gone

    # -- why ---------------------------------------------------------------------------------------

    async def why(self, job_id: str, now: float, pool_size: int, busy: int) -> p.Reason:
        async with self.db.acquire() as conn:
            return await revival.why(conn, job_id, now, pool_size, busy)


def changed_ids_of(jobs: object) -> list[str]:
    """The ids of what `deps.died` reports changed (jobs, rows or ids), whatever its form."""
    if not isinstance(jobs, list):
        return []
    return [j if isinstance(j, str) else j["id"] if not isinstance(j, Job) else j.id for j in jobs]
