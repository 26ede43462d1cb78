"""Dependencies in SQL: what a dependency's end does to its dependents (docs/DECISIONS.md, "Dependencies").

Edges are rows of `queuectl_deps` (job_id, dep_id, is_any); `blocked` on a pending job counts its unmet
ones.  Each function runs in the caller's transaction and returns the ids of the dependents it
changed (died, or may start now), for the caller to announce.
"""

from __future__ import annotations

from typing import Any

_MET = """
WITH e AS (SELECT d.job_id, count(*)::int AS n FROM queuectl_deps d
            WHERE d.dep_id = ANY($1::text[]) AND (d.is_any OR NOT $3::bool) GROUP BY d.job_id)
UPDATE queuectl_jobs_live j
   SET blocked = greatest(j.blocked - e.n, 0),
       due = CASE WHEN j.blocked <= e.n AND j.due < $2 THEN $2 ELSE j.due END,
       ticket = CASE WHEN j.blocked <= e.n THEN nextval('queuectl_ticket') ELSE j.ticket END
  FROM e WHERE j.id = e.job_id AND j.state = 'pending' AND j.blocked > 0
RETURNING j.id, j.blocked
"""

_KILL = """
WITH RECURSIVE doomed(id, cause) AS (
    SELECT d.job_id, d.dep_id FROM queuectl_deps d JOIN queuectl_jobs_live j ON j.id = d.job_id
     WHERE d.dep_id = ANY($1::text[]) AND NOT d.is_any AND j.state = 'pending'
  UNION
    SELECT d.job_id, d.dep_id FROM doomed JOIN queuectl_deps d ON d.dep_id = doomed.id
      JOIN queuectl_jobs_live j ON j.id = d.job_id WHERE NOT d.is_any AND j.state = 'pending')
UPDATE queuectl_jobs j
   SET state = 'dead', cause = x.cause, blocked = 0, error_message = 'dependency ' || x.cause || ' is dead',
       next_retry_at = NULL, finished_at = $2, updated_at = $2, entered = nextval('queuectl_entered')
  FROM (SELECT DISTINCT ON (id) id, cause FROM doomed ORDER BY id, cause) x
 WHERE j.id = x.id AND j.state = 'pending'
RETURNING j.id
"""


async def _met(conn: Any, ids: list[str], at: float, only_any: bool) -> list[str]:
    rows = await conn.fetch(_MET, ids, at, only_any)
    return [r[0] for r in rows if r[1] == 0]


async def completed(conn: Any, ids: list[str], at: float) -> list[str]:
    """These jobs completed: each edge to them is met; dependents left with none may start, due `at` at the
    earliest."""
    if not ids:
        return []
    return await _met(conn, ids, at, False)


async def died(conn: Any, ids: list[str], at: float) -> list[str]:
    """These jobs died (or were deleted before they completed): their pending `after` dependents die, down the
    line, with the dependency as their cause; the `after_any` edges to all of them are met."""
    if not ids:
        return []
    killed = [r[0] for r in await conn.fetch(_KILL, ids, at)]
    return killed + await _met(conn, ids + killed, at, True)


async def states(conn: Any, ids: list[str]) -> dict[str, str]:
    """The state of each of these jobs that exists."""
    return dict(await conn.fetch("SELECT id, state FROM queuectl_jobs WHERE id = ANY($1::text[])", ids))


async def reserved(conn: Any, ids: list[str]) -> tuple[str, str, str] | None:
    """An id of these that a job not completed names as a dependency: (id, that job, its state)."""
    row = await conn.fetchrow(
        "SELECT d.dep_id, j.id, j.state FROM queuectl_deps d JOIN queuectl_jobs j ON j.id = d.job_id "
        "WHERE d.dep_id = ANY($1::text[]) AND j.state <> 'completed' LIMIT 1", ids)
    return None if row is None else (row[0], row[1], row[2])


async def blockers(conn: Any, ids: list[str]) -> dict[str, list[str]]:
    """For each of these jobs, its unmet dependencies (live ones)."""
    out: dict[str, list[str]] = {}
    for job_id, dep in await conn.fetch(
            "SELECT d.job_id, d.dep_id FROM queuectl_deps d JOIN queuectl_jobs_live x ON x.id = d.dep_id "
            "WHERE d.job_id = ANY($1::text[]) ORDER BY d.job_id, NOT d.is_any, d.dep_id", ids):
        deps = out.setdefault(job_id, [])
        if dep not in deps:
            deps.append(dep)
    return out
