"""Claims on PostgreSQL without processes: a raw COPY of job rows, and claim+complete with execution
stubbed out on 4 workers, on the empty queue and with `depth` due jobs of lower priority waiting.

Two paths, each figure in a fresh database with the daemon's schema (queuectld.pg.schema):

- `store`: 4 asyncio tasks on one PgStore (what a node's pool does, less the processes): claim(now,
  count), then begin and finish each job (planned by rules.plan_end as the pool does; a run that ends
  before its start is written is recorded with it, pg/starts.py);
- `sql`: the design's claim (a MATERIALIZED CTE, FOR UPDATE SKIP LOCKED, LIMIT count) and its fenced
  end (id, state, attempts, locked_by; row count checked), one transaction each, 4 connections:
  what the database alone costs, whatever the store adds.

The waiting jobs are due (in the claim index's range: jobs not due or in a paused group would sit
where the index or the query skips them at no cost) but of priority -1, below the measured jobs.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from typing import Any

from bench.pg_nodes import srv_db
from tests import pgserver

WORKERS = 4

CLAIM = """
WITH c AS MATERIALIZED (
    SELECT id FROM queuectl_jobs_live
    WHERE state IN ('pending', 'failed') AND blocked = 0 AND locked_by IS NULL
      AND due <= extract(epoch FROM now()) AND grp <> ALL($2::text[])
    ORDER BY priority DESC, due, ticket LIMIT $1 FOR UPDATE SKIP LOCKED)
UPDATE queuectl_jobs_live j SET state = 'processing', attempts = j.attempts + 1, locked_by = $3,
       locked_at = now(), node = 'bench', updated_at = extract(epoch FROM now())
FROM c WHERE j.id = c.id RETURNING j.id, j.attempts, j.priority"""

FINISH = """
UPDATE queuectl_jobs j SET state = 'completed', exit_code = 0, finished_at = extract(epoch FROM now()),
       updated_at = extract(epoch FROM now()), locked_by = NULL, entered = nextval('queuectl_entered')
FROM unnest($1::text[], $2::int[]) AS e(id, attempts)
WHERE j.id = e.id AND j.state = 'processing' AND j.attempts = e.attempts AND j.locked_by = $3"""


async def _schema(url: str) -> None:
    import asyncpg

    from queuectld.pg import schema

    conn = await asyncpg.connect(url)
    try:
        await schema.migrate(conn)
    finally:
        await conn.close()


def job_rows(n: int, prefix: str, priority: int = 0) -> list[tuple[Any, ...]]:
    """n new `true` jobs as COPY rows of the daemon's own (rows.new_row), due now."""
    from queuectld.model import NewJob
    from queuectld.pg import rows

    at = time.time() - 1
    return [rows.new_row(NewJob(f"{prefix}{i}", "true", 3, priority, None, None), at) for i in range(n)]


async def _copy(url: str, records: list[tuple[Any, ...]]) -> float:
    import asyncpg

    from queuectld.pg import rows

    conn = await asyncpg.connect(url)
    try:
        t = time.perf_counter()
        await conn.copy_records_to_table("queuectl_jobs", records=records, columns=list(rows.NEW_COLUMNS))
        return time.perf_counter() - t
    finally:
        await conn.close()


def raw_copy(srv: pgserver.Server, n: int) -> float:
    """Rows per second of one binary COPY of n job rows (made beforehand) into a fresh schema."""
    records = job_rows(n, "c")
    with srv_db(srv) as url:
        asyncio.run(_schema(url))
        return n / asyncio.run(_copy(url, records))


# --- the SQL path ---------------------------------------------------------------------------------


async def _sql_worker(conn: Any, count: int, me: str, done: list[int],
                      marks: list[tuple[float, int]]) -> None:
    import asyncpg

    while True:
        try:
            async with conn.transaction():
                got = await conn.fetch(CLAIM, count, [], me)
        except asyncpg.SerializationError:  # a row it would lock moved partition under a finish: again
            continue
        if not got:
            return
        async with conn.transaction():
            status = await conn.execute(FINISH, [g[0] for g in got], [g[1] for g in got], me)
        if int(status.split()[-1]) != len(got):
            raise RuntimeError(f"the fence matched {status}, not {len(got)}")
        done.append(sum(1 for g in got if g[2] >= 0))
        if len(done) % 200 == 0:
            marks.append((time.perf_counter(), sum(done)))
        if any(g[2] < 0 for g in got):  # the measured jobs are done; the waiting ones stay
            return


async def _sql_drain(url: str, count: int, marks: list[tuple[float, int]] | None = None,
                     vacuum_every: float | None = None) -> float:
    """Jobs/s of 4 workers claiming `count` at a time until the measured jobs are done.  `marks`
    receives (time, jobs done) as it goes; `vacuum_every` s, a VACUUM of the live partition beside."""
    import asyncpg

    conns = [await asyncpg.connect(url) for _ in range(WORKERS)]
    marks = [] if marks is None else marks
    stop = asyncio.Event()

    async def vacuum() -> None:
        conn = await asyncpg.connect(url)
        try:
            while not stop.is_set():
                try:
                    await asyncio.wait_for(stop.wait(), vacuum_every)
                except TimeoutError:
                    await conn.execute("VACUUM queuectl_jobs_live")
        finally:
            await conn.close()

    side = asyncio.ensure_future(vacuum()) if vacuum_every else None
    try:
        done: list[int] = []
        t = time.perf_counter()
        marks.append((t, 0))
        await asyncio.gather(*(_sql_worker(c, count, f"bench/{i}", done, marks) for i, c in enumerate(conns)))
        marks.append((time.perf_counter(), sum(done)))
        return sum(done) / (time.perf_counter() - t)
    finally:
        stop.set()
        if side is not None:
            await side
        for c in conns:
            await c.close()


async def _explain(url: str) -> list[str]:
    import asyncpg

    conn = await asyncpg.connect(url)
    try:
        await conn.execute("ANALYZE queuectl_jobs_live")
        plan = await conn.fetch("EXPLAIN (COSTS OFF) " + CLAIM, 10, [], "bench/x")
        return [p[0] for p in plan]
    finally:
        await conn.close()


# --- the store path -------------------------------------------------------------------------------


async def _store_drain(url: str, count: int) -> float:
    from queuectld.pg.store import PgStore
    from queuectld.rules import plan_end

    store = PgStore(url, node="bench")
    await store.open()
    try:
        done: list[int] = []

        async def run(job: Any, slot: int) -> None:
            now = store.clock()
            await store.begin(job, now, slot, 0, 0)  # as the pool records a start
            await store.finish(job, now, plan_end(job, now, 0, None, store.config))

        async def worker(slot: int) -> None:
            while True:
                jobs = await store.claim(store.clock(), count)
                if not jobs:
                    return
                await asyncio.gather(*(run(j, slot) for j in jobs))
                done.append(sum(1 for j in jobs if j.priority >= 0))
                if any(j.priority < 0 for j in jobs):  # the measured jobs are done; the waiting ones stay
                    return

        t = time.perf_counter()
        await asyncio.gather(*(worker(i + 1) for i in range(WORKERS)))
        return sum(done) / (time.perf_counter() - t)
    finally:
        await store.close()


def _rate(srv: pgserver.Server, path: str, n: int, count: int, depth: int) -> tuple[float, list[str]]:
    with srv_db(srv) as url:
        asyncio.run(_schema(url))
        if depth:
            for start in range(0, depth, 250_000):
                asyncio.run(_copy(url, job_rows(min(250_000, depth - start), f"w{start}-", priority=-1)))
        asyncio.run(_copy(url, job_rows(n, "m")))
        plan = asyncio.run(_explain(url))  # ANALYZEs first, as autovacuum does soon after a large add
        drain = _sql_drain if path == "sql" else _store_drain
        return asyncio.run(drain(url, count)), plan


def measure(srv: pgserver.Server, depth: int, n: int, reps: int) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for path in ("store", "sql"):
        try:
            figures: dict[str, list[float]] = {"batch": [], "single": [], "deep": []}
            for _ in range(reps):
                figures["batch"].append(_rate(srv, path, n, 10, 0)[0])
                figures["single"].append(_rate(srv, path, n // 5, 1, 0)[0])
            for _ in range(1 if depth >= 500_000 else reps):
                rate, plan = _rate(srv, path, n, 10, depth)
                figures["deep"].append(rate)
                out["explain"] = [line for line in plan if "Filter" not in line]
            out[path] = {k: statistics.median(v) for k, v in figures.items()}
            out[path]["depth"] = depth
            out[path]["each"] = figures
        except ImportError as e:
            out[path] = {"skipped": f"not measured: {e}"}
    out = {k: v for k, v in out.items() if "skipped" not in v or k == "explain"} | {
        f"{k}_skipped": v["skipped"] for k, v in out.items() if isinstance(v, dict) and "skipped" in v}
    return out


def decay(srv: pgserver.Server, n: int, vacuum_every: float | None) -> list[float]:
    """A drain of n jobs (batches of 10) with nothing else waiting: the rate of each tenth of it, to
    see the claim slow down as the claimed rows' dead entries pile up at the head of the claim index
    until a VACUUM clears them; with `vacuum_every`, one runs beside the workers every so many s."""
    with srv_db(srv) as url:
        asyncio.run(_schema(url))
        for start in range(0, n, 250_000):
            asyncio.run(_copy(url, job_rows(min(250_000, n - start), f"d{start}-")))
        asyncio.run(_explain(url))
        marks: list[tuple[float, int]] = []
        asyncio.run(_sql_drain(url, 10, marks, vacuum_every))
    rates, k = [], 0
    for i in range(1, 11):
        goal = n * i // 10
        j = next((m for m in range(k, len(marks)) if marks[m][1] >= goal), len(marks) - 1)
        rates.append((marks[j][1] - marks[k][1]) / max(marks[j][0] - marks[k][0], 1e-9))
        k = j
    return rates


async def _plans(url: str) -> list[float]:
    import asyncpg

    conn = await asyncpg.connect(url)
    try:
        ms = []
        for _ in range(2):
            rows = await conn.fetch("EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF) " + CLAIM, 10, [], "bench/x")
            ms.append(float(rows[-1][0].split(":")[1].split()[0]))
            await conn.execute("ANALYZE queuectl_jobs_live")
        return ms
    finally:
        await conn.close()


def unanalyzed(srv: pgserver.Server, n: int) -> list[float]:
    """Milliseconds of one claim of 10 right after a COPY of n jobs, before and after an ANALYZE."""
    with srv_db(srv) as url:
        asyncio.run(_schema(url))
        asyncio.run(_copy(url, job_rows(n, "u")))
        return asyncio.run(_plans(url))  # type: ignore[no-any-return]
