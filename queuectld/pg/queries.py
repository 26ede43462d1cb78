"""The PostgreSQL store's reads: jobs by id, counts, due times, environments, pages, blockers."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import msgspec

from queuectl_client.protocol import STATES

from .. import deps as rules_deps
from ..model import Job
from ..order import END, JOB_OVERHEAD, PAGE_BYTES
from ..rules import LIST_ORDER, PENDING, QueueError
from ..store import PageOf, Store
from . import deps, rows

_SELECT = f"SELECT {rows.JOB_COLUMNS} FROM queuectl_jobs"
_OPEN = ("grp NOT IN (SELECT g.name FROM queuectl_groups g WHERE g.paused OR (g.parallel > 0 AND g.parallel <= "
         "(SELECT count(*) FROM queuectl_jobs b WHERE b.grp = g.name AND b.locked_by IS NOT NULL)))")


_W = "state IN ('pending', 'failed') AND blocked = 0 AND locked_by IS NULL"
_NEXT_DUE = f"""
WITH RECURSIVE pr(p) AS (
    (SELECT priority FROM queuectl_jobs_live WHERE {_W} ORDER BY priority DESC LIMIT 1)
  UNION ALL
    SELECT (SELECT priority FROM queuectl_jobs_live WHERE {_W} AND priority < pr.p ORDER BY priority DESC LIMIT 1)
      FROM pr WHERE pr.p IS NOT NULL
)
SELECT min((SELECT due FROM queuectl_jobs_live WHERE {_W} AND priority = pr.p AND {_OPEN} ORDER BY due LIMIT 1))
  FROM pr WHERE pr.p IS NOT NULL
"""


class Reads(Store):
    db: Any
    _envs: dict[str, dict[str, str]]

    async def get(self, job_id: str) -> Job:
        r = await self.db.fetchrow(f"{_SELECT} WHERE id = $1", job_id)
        if r is None:
            raise QueueError("not_found", f"no job with id {job_id!r}")
        return rows.job(r)

    async def jobs(self, ids: list[str]) -> list[Job]:
        """These jobs (those that exist), in the order given."""
        got = {r[0]: rows.job(r) for r in await self.db.fetch(f"{_SELECT} WHERE id = ANY($1::text[])", ids)}
        return [got[i] for i in dict.fromkeys(ids) if i in got]

    async def environment(self, key: str | None) -> dict[str, str] | None:
        if key is None:
            return None
        env = self._envs.get(key)
        if env is None:
            raw = await self.db.fetchval("SELECT vars::text FROM queuectl_environments WHERE key = $1", key)
            if raw is None:
                return None
            env = self._envs[key] = msgspec.json.decode(raw)
        return dict(env)

    async def counts(self) -> dict[str, int]:
        out = dict.fromkeys(STATES, 0)
        out.update(await self.db.fetch("SELECT state, count(*)::int FROM queuectl_jobs GROUP BY state"))
        return out

    async def next_due(self) -> float | None:
        # The earliest due time per priority (a walk down the claim index's priorities: a few probes), of the
        # groups that may start a job.
        due = await self.db.fetchval(_NEXT_DUE)
        return None if due is None else float(due)

    async def oldest_due(self, now: float) -> dict[str, float]:
        return dict(await self.db.fetch(
            f"SELECT grp, min(due) FROM queuectl_jobs_live WHERE {_W} AND due <= $1 GROUP BY grp", now))

    _disk: int | None = None  # the bytes measured last; None: changed since

    def disk_bytes(self) -> int:
        """The bytes the queue's tables take; measured again (on a connection of its own, from a thread:
        this call may not wait) once something was written since the last time."""
        if self._disk is None:
            box: list[int] = []
            thread = threading.Thread(target=lambda: box.append(asyncio.run(self._measure_disk())), daemon=True)
            thread.start()
            thread.join(10.0)
            if box:
                self._disk = box[0]
        return self._disk or 0

    async def _measure_disk(self) -> int:
        try:
            conn = await asyncpg.connect(self.url, timeout=5.0)  # type: ignore[attr-defined]
        except (OSError, asyncpg.PostgresError, TimeoutError):
            return 0
        try:
            return int(await conn.fetchval(
                "SELECT coalesce(sum(pg_total_relation_size(c.oid)), 0)::int8 FROM pg_class c "
                "JOIN pg_namespace s ON s.oid = c.relnamespace WHERE c.relkind = 'r' "
                "AND c.relname LIKE 'queuectl\\_%' AND s.nspname = current_schema()"))
        except (OSError, asyncpg.PostgresError, TimeoutError):
            return 0
        finally:
            await conn.close()

    async def blockers(self, jobs: list[Job]) -> dict[str, list[str]]:
        mine = [job for job in jobs if job.blocked and job.state == PENDING]
        if not mine:
            return {}
        live = await deps.blockers(self.db, [job.id for job in mine])
        return {job.id: [d for d in rules_deps.names(job) if d in live.get(job.id, ())] for job in mine}

    async def pages(self, state: str | None, limit: int | None, size: int,
                    group: str | None = None) -> AsyncIterator[list[Job]]:
        left = limit
        buf: list[Job] = []
        for s in [state] if state else LIST_ORDER:
            after = -1
            while left is None or left > 0:
                n = size if left is None else min(size, left)
                got = await self.db.fetch(
                    f"SELECT {rows.JOB_COLUMNS}, entered FROM queuectl_jobs WHERE state = $1 AND entered > $2 "
                    "AND ($3::text IS NULL OR grp = $3) ORDER BY entered LIMIT $4", s, after, group, n)
                if not got:
                    break
                after = got[-1]["entered"]
                if left is not None:
                    left -= len(got)
                buf += [rows.job(r) for r in got]
                while len(buf) >= size:
                    yield buf[:size]
                    buf = buf[size:]
                if len(got) < n:
                    break
        if buf:
            yield buf

    async def page(self, state: str | None, group: str | None, query: str | None, cursor: str | None,
                   limit: int, scan: int) -> PageOf:
        states = [state] if state else list(LIST_ORDER)
        at, seq = states[0], END
        if cursor is not None:
            name, _, num = cursor.partition(":")
            if name not in STATES or not num.isdigit() or int(num) > END or (state is not None and name != state):
                raise QueueError("invalid", f"{cursor!r} is not a cursor of this listing")
            at, seq = name, int(num)
        first: list[Job] = []
        exact: str | None = None
        if query is not None:
            r = await self.db.fetchrow(f"{_SELECT} WHERE id = $1", query)
            if r is not None:
                job = rows.job(r)
                if (state is None or job.state == state) and (group is None or job.group == group):
                    exact = job.id
                    if cursor is None:
                        first = [job]
                        limit -= 1
        filtered = query is not None or group is not None
        bound = scan if filtered else max(scan, 4 * limit)
        out: list[Job] = []
        nxt: str | None = None
        scanned = 0
        if limit > 0 and at in states:
            nxt, scanned = await self._walk(states, at, seq, limit, bound, group, query, exact, out)
        total: int | None = None
        if query is None:
            total = await self.db.fetchval(
                "SELECT count(*)::int FROM queuectl_jobs WHERE ($1::text IS NULL OR state = $1) "
                "AND ($2::text IS NULL OR grp = $2)", state, group)
        elif limit <= 0:
            nxt = f"{states[0]}:{END}"
        return PageOf(first + out, nxt, scanned, total)

    async def _walk(self, states: list[str], at: str, seq: int, limit: int, bound: int, group: str | None,
                    query: str | None, exact: str | None, out: list[Job]) -> tuple[str | None, int]:
        """Newest first from (at, seq), looking at no more than `bound` jobs; the next cursor and jobs looked at."""
        filtered = group is not None or query is not None
        scanned = size = 0
        first = states.index(at)
        for k in range(first, len(states)):
            s, cur = states[k], seq if k == first else END
            while True:
                chunk = min(1000, (bound - scanned if filtered else limit - len(out)) + 1)
                got = await self.db.fetch(
                    f"SELECT {rows.JOB_COLUMNS}, entered FROM queuectl_jobs WHERE state = $1 AND entered < $2 "
                    "ORDER BY entered DESC LIMIT $3", s, cur, chunk)
                for r in got:
                    if len(out) == limit or scanned == bound or size > PAGE_BYTES:
                        return f"{s}:{r['entered'] + 1}", scanned
                    scanned += 1
                    cur = r["entered"]
                    if group is not None and r["grp"] != group:
                        continue
                    if query is not None and (r["id"] == exact or query not in r["command"]):
                        continue
                    job = rows.job(r)
                    out.append(job)
                    size += JOB_OVERHEAD + len(job.command) + len(job.cwd or "") + len(job.error_message or "")
                if len(got) < chunk:
                    break
            if len(out) == limit and k + 1 < len(states):
                return f"{states[k + 1]}:{END}", scanned
        return None, scanned
