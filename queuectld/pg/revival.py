"""Dead jobs brought back, and `why`, in SQL: the rules of `deps`, `planning` and `diagnose`.

Revival (DECISIONS "Dependencies"): a dead job brought back brings back, breadth first, its dead
`after` dependents whose cause it is, unless another `after` dependency of theirs is dead (that one
becomes their cause), their group is gone, or another live job holds their unique key; every job
brought back counts its unmet edges again and is scheduled (a new ticket) when it has none; a
pending job that counted a revived one met through `after_any` waits for it again (a new ticket).
A job's dependents are walked in ticket order, as the journal store walks them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from msgspec.structs import replace

from queuectl_client.protocol import Reason

from ..deps import death
from ..diagnose import COUNTS_AHEAD, waiting
from ..model import Job
from ..rules import COMPLETED, DEAD, FAILED, PENDING, PROCESSING, QueueError
from . import rows

if TYPE_CHECKING:
    import asyncpg

TICKET = "nextval('queuectl_ticket')"  # a new place in line
ENTERED = "nextval('queuectl_entered')"  # a new place in its state's pages
BUSY = "(state = 'processing' OR locked_by IS NOT NULL)"  # running, or held for a start
LIVE_STATES = "('pending', 'processing', 'failed')"
NCOL = rows.JOB_COLUMNS.count(",") + 1


def job_of(r: asyncpg.Record) -> Job:
    """The job of a row that holds JOB_COLUMNS first, then others."""
    return rows.job(tuple(r)[:NCOL])


async def _states(conn: asyncpg.Connection, ids: list[str]) -> dict[str, str]:
    if not ids:
        return {}
    return {r["id"]: r["state"] for r in await conn.fetch(
        "SELECT id, state FROM queuectl_jobs WHERE id = ANY($1::text[])", ids)}


async def fatal(conn: asyncpg.Connection, r: asyncpg.Record) -> list[str]:
    """Its `after` dependencies that are dead, and its cause if that was deleted before it completed."""
    job = job_of(r)
    states = await _states(conn, [*(job.after or ()), *([job.cause] if job.cause else [])])
    out = [d for d in job.after or () if states.get(d) == DEAD]
    if job.cause is not None and job.cause not in states and job.cause not in out:
        out.append(job.cause)
    return out


async def _holder(conn: asyncpg.Connection, key: str | None, job_id: str, taken: dict[str, str]) -> str | None:
    """Another job that is not final and holds `key` (or one revived earlier in this change)."""
    if key is None:
        return None
    holder = await conn.fetchval("SELECT id FROM queuectl_jobs_live WHERE unique_key = $1 AND id <> $2",
                                 key, job_id) or taken.get(key)
    return holder if holder != job_id else None


async def choose(conn: asyncpg.Connection, jobs: list[asyncpg.Record], naming: set[str],
                 strict: bool) -> list[asyncpg.Record]:
    """The jobs that may be retried; with `strict`, the first that may not is refused (QueueError state)."""
    chosen: list[asyncpg.Record] = []
    taken: dict[str, str] = {}
    groups = {r["name"] for r in await conn.fetch("SELECT name FROM queuectl_groups")}
    for r in jobs:
        why = await _not_retryable(conn, r, groups, taken) or await _dead_dependency(conn, r, naming)
        if why is None:
            chosen.append(r)
        elif strict:
            raise QueueError("state", why)
    return chosen


async def _not_retryable(conn: asyncpg.Connection, r: asyncpg.Record, groups: set[str],
                         taken: dict[str, str]) -> str | None:
    job_id, state = r["id"], r["state"]
    if state not in (FAILED, DEAD):
        return f"job {job_id} is {state}; only failed or dead jobs can be retried"
    if r["locked_by"] is not None:
        return f"job {job_id} is starting already"
    if r["grp"] not in groups:
        return (f"job {job_id} is in the group {r['grp']}, which no longer exists; create it with "
                f"`queuectl group add {r['grp']}` or move the job with `queuectl edit {job_id} --group G`")
    key = r["unique_key"]
    if key is None or state != DEAD:
        return None
    holder = await _holder(conn, key, job_id, taken)
    if holder is not None:
        return f"job {job_id} cannot take back its unique key {key!r}: job {holder} holds it"
    taken[key] = job_id
    return None


async def _dead_dependency(conn: asyncpg.Connection, r: asyncpg.Record, naming: set[str]) -> str | None:
    if r["state"] != DEAD:
        return None
    job_id = r["id"]
    states = await _states(conn, job_of(r).after or [])
    for d in await fatal(conn, r):
        if d not in states:
            return (f"job {job_id} waits for {d}, which was deleted before it completed, so it can never run; "
                    f"`queuectl rerun {job_id}` makes a copy that waits for nothing")
        if d not in naming:
            return f"job {job_id} waits for {d}, which is dead: retry {d} first"
    return None


async def _back(conn: asyncpg.Connection, ids: list[str], at: float) -> None:
    """Dead jobs back to pending, attempts reset, due now, each with a new ticket and place, in this order."""
    await conn.execute(
        "UPDATE queuectl_jobs j SET state = 'pending', ticket = s.t, entered = s.e, attempts = 0, "
        "error_message = NULL, next_retry_at = NULL, exit_code = NULL, cause = NULL, cancelled = false, "
        "run_at = CASE WHEN j.run_at > $2 THEN NULL ELSE j.run_at END, updated_at = $2, due = $2 "
        f"FROM (SELECT o.id, {TICKET} AS t, {ENTERED} AS e FROM (SELECT * FROM unnest($1::text[]) "
        "WITH ORDINALITY AS n(id, i) ORDER BY i) o) s WHERE j.id = s.id", ids, at)
    # Its next run is attempt 1 again: the old runs' output goes now, or a silent run would show it.
    await conn.execute("DELETE FROM queuectl_output WHERE job_id = ANY($1::text[])", ids)


def _fatal(job: Job, states: dict[str, str]) -> list[str]:
    """`fatal`, from the states of its dependencies and cause (a missing one: deleted)."""
    out = [d for d in job.after or () if states.get(d) == DEAD]
    if job.cause is not None and job.cause not in states and job.cause not in out:
        out.append(job.cause)
    return out


async def revive(conn: asyncpg.Connection, ids: list[str], at: float) -> list[str]:
    """Bring back these dead jobs (checked already) and the dependents that died because of them;
    returns the dependents that moved (came back, or wait again)."""
    if not ids:
        return []
    await _back(conn, ids, at)
    revived = list(ids)
    groups = {r["name"] for r in await conn.fetch("SELECT name FROM queuectl_groups")}
    taken: dict[str, str] = {}
    frontier = list(ids)
    while frontier:  # breadth first, a level a query: a chain of any length, a fan-out of any width
        place = {job_id: i for i, job_id in enumerate(frontier)}
        found = await conn.fetch(
            f"SELECT {rows.JOB_COLUMNS} FROM queuectl_deps e JOIN queuectl_jobs j "
            "ON j.id = e.job_id WHERE e.dep_id = ANY($1::text[]) AND NOT e.is_any AND j.state = 'dead' "
            "AND j.cause = e.dep_id FOR UPDATE OF j", frontier)
        level = sorted((job_of(d) for d in found), key=lambda job: (place[job.cause or ""], job.ticket))
        states = await _states(conn, list({d for job in level for d in [*(job.after or ()), job.cause or ""]}))
        uncaused, recaused, back = [], [], []
        for job in level:
            x = job.cause or ""
            if job.group not in groups:
                uncaused.append((job.id, job.error_message))  # stays dead; `retry` brings it back once its group exists
                continue
            other = _fatal(job, states)
            if other:
                recaused.append((job.id, other[0], death(other[0])))
                continue
            holder = await _holder(conn, job.unique_key, job.id, taken)
            if holder is not None:
                uncaused.append((job.id, f"dependency {x} came back, but job {holder} holds the unique key "
                                         f"{job.unique_key!r}"))
                continue
            if job.unique_key is not None:
                taken[job.unique_key] = job.id
            states[job.id] = PENDING
            back.append(job.id)
        if uncaused:
            await conn.executemany("UPDATE queuectl_jobs SET cause = NULL, error_message = $2 WHERE id = $1", uncaused)
        if recaused:
            await conn.executemany("UPDATE queuectl_jobs SET cause = $2, error_message = $3 WHERE id = $1", recaused)
        if back:
            await _back(conn, back, at)
        revived += back
        frontier = back
    # Pending jobs that counted a revived one met through after_any wait for it again.
    waiting = await conn.fetch(
        f"UPDATE queuectl_jobs j SET blocked = j.blocked + e.n, ticket = CASE WHEN j.blocked = 0 THEN {TICKET} "
        "ELSE j.ticket END FROM (SELECT job_id, count(*) AS n FROM queuectl_deps WHERE dep_id = ANY($1::text[]) "
        "AND is_any GROUP BY job_id) e WHERE j.id = e.job_id AND j.state = 'pending' AND NOT (j.id = ANY($1::text[])) "
        "RETURNING j.id", revived)
    # Each one brought back counts its unmet edges; those with none are scheduled, in the order they came back.
    await conn.execute(
        "UPDATE queuectl_jobs j SET blocked = (SELECT count(*) FROM queuectl_deps e JOIN queuectl_jobs x "
        f"ON x.id = e.dep_id WHERE e.job_id = j.id AND x.state IN {LIVE_STATES}) WHERE j.id = ANY($1::text[])",
        revived)
    await conn.execute(
        f"UPDATE queuectl_jobs j SET ticket = s.t FROM (SELECT o.id, {TICKET} AS t FROM (SELECT n.id, n.i "
        "FROM unnest($1::text[]) WITH ORDINALITY AS n(id, i) JOIN queuectl_jobs q ON q.id = n.id "
        "WHERE q.state = 'pending' AND q.blocked = 0 ORDER BY n.i) o) s WHERE j.id = s.id", revived)
    return revived[len(ids):] + [r["id"] for r in waiting]


# -- why -------------------------------------------------------------------------------------------


async def why(conn: asyncpg.Connection, job_id: str, now: float, pool_size: int, busy: int) -> Reason:
    """The first reason the job is not running at `now`: diagnose.py's rules, one query each."""
    r = await conn.fetchrow(f"SELECT {rows.JOB_COLUMNS}, locked_by FROM queuectl_jobs WHERE id = $1", job_id)
    if r is None:
        raise QueueError("not_found", f"no job with id {job_id!r}")
    job = job_of(r)
    state = job.state
    if state == COMPLETED:
        return Reason(code="completed", at=job.finished_at)
    if state == DEAD:
        return Reason(code="dead", at=job.finished_at, error=job.error_message, job=job.cause)
    if state == PROCESSING and job.worker:
        return Reason(code="running", worker=f"{r['node']}/{job.worker}", at=job.started_at)
    if state == PROCESSING or r["locked_by"] is not None:
        return Reason(code="running")  # claimed, its process being started
    if state == PENDING:
        states = await _states(conn, [*(job.after or ()), *(job.after_any or ())])
        dep = next((d for d in job.after or () if d in states and states[d] != COMPLETED), None)
        if dep is None:
            dep = next((d for d in job.after_any or () if d in states and states[d] not in (COMPLETED, DEAD)), None)
        if dep is not None:
            return Reason(code="dependency", job=dep, state=states[dep])
    group = await conn.fetchrow(
        f"SELECT name, parallel, paused, (SELECT count(*) FROM queuectl_jobs WHERE grp = g.name AND {BUSY}) "
        "AS active FROM queuectl_groups g WHERE name = $1", job.group)
    reason = waiting(job, now, None if group is None else (group["name"], group["parallel"], group["paused"],
                                                           group["active"]), pool_size, busy)
    return replace(reason, ahead=await ahead(conn, job, now)) if reason.code in COUNTS_AHEAD else reason


async def ahead(conn: asyncpg.Connection, job: Job, now: float) -> int:
    """How many due jobs of open groups would be claimed before `job`: a COUNT on the claim index's order."""
    n = await conn.fetchval(
        "WITH open AS (SELECT name FROM queuectl_groups g WHERE NOT paused AND (parallel = 0 OR "
        f"(SELECT count(*) FROM queuectl_jobs WHERE grp = g.name AND {BUSY}) < parallel)) "
        "SELECT count(*) FROM queuectl_jobs_live o WHERE o.state IN ('pending', 'failed') AND o.blocked = 0 "
        "AND o.locked_by IS NULL AND o.due <= $1 AND o.grp IN (SELECT name FROM open) "
        "AND (o.priority > $2 OR (o.priority = $2 AND (o.due < $3 OR (o.due = $3 AND o.ticket < $4))))",
        now, job.priority, job.due, job.ticket)
    return int(n)


__all__ = ["BUSY", "ENTERED", "TICKET", "choose", "fatal", "job_of", "revive", "why"]
