"""The PostgreSQL store's benchmarks: `make bench` runs them; `bench/run.py --pg-only` runs only them.

The server is the one the tests use (tests/pgserver.py: QUEUECTL_TEST_PG, the local server, or a
throwaway cluster from the installed binaries) and every measurement gets a database of its own.
Each figure is a median of repeats, printed beside its baseline from the same run:

1. enqueue of `--depth` jobs through a daemon on PostgreSQL (`queuectl enqueue -`, one batch),
   beside the embedded store's and a raw COPY of as many rows into `queuectl_jobs`;
2. claim and complete with execution stubbed out, 4 workers, batches of 10 and of 1; per core beside
   the peers' published figures;
3. trivial jobs (`true`) drained by 2 nodes on this machine, beside one embedded node;
4. depth independence: 2 with `--depth` due jobs of lower priority waiting, and the claim's EXPLAIN;
5. dispatch latency to an idle worker on another node;
and the two drivers side by side (asyncpg, psycopg 3): a COPY of 100,000 rows, 1,000 transactions.

Nothing here is a pass/fail test: it reports.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench import pg_nodes
from tests import pgserver

CORES = os.cpu_count() or 1
# What the peers publish for claim-and-complete of no-op jobs (jobs/s, cores where known).
PEERS = [
    ("River (Go)", 46_000, 8, "8-core laptop, River's README benchmark"),
    ("graphile-worker (Node)", 183_000, None, "'well-specced' machine, cores not published"),
    ("Oban (Elixir)", 16_700, None, "one node, cores not published"),
]


def say(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


@contextmanager
def server() -> Iterator[pgserver.Server]:
    found = pgserver.find_server()
    if found is None:
        raise RuntimeError(pgserver.ENABLE)
    say(f"PostgreSQL: {found.origin}")
    try:
        yield found
    finally:
        found.close()


def run(coro_fn: Callable[..., Any], *args: Any) -> Any:
    return asyncio.run(coro_fn(*args))


# --- the drivers ------------------------------------------------------------------------------

SHAPE = "CREATE TABLE t (id text PRIMARY KEY, command text, state text, priority int, due float8, n int)"


async def _asyncpg_figures(url: str, rows: list[tuple[Any, ...]], txs: int) -> tuple[float, float]:
    import asyncpg

    conn = await asyncpg.connect(url)
    try:
        await conn.execute(SHAPE)
        t = time.perf_counter()
        await conn.copy_records_to_table("t", records=rows)
        copy = len(rows) / (time.perf_counter() - t)
        t = time.perf_counter()
        for i in range(txs):
            async with conn.transaction():
                await conn.execute("UPDATE t SET n = n + 1 WHERE id = $1", rows[i][0])
        return copy, txs / (time.perf_counter() - t)
    finally:
        await conn.close()


async def _psycopg_figures(url: str, rows: list[tuple[Any, ...]], txs: int) -> tuple[float, float]:
    import psycopg

    conn = await psycopg.AsyncConnection.connect(url)
    try:
        async with conn.transaction():
            await conn.execute(SHAPE)
        t = time.perf_counter()
        async with conn.transaction(), conn.cursor() as cur:
            async with cur.copy("COPY t FROM STDIN (FORMAT BINARY)") as copy:
                copy.set_types(["text", "text", "text", "int4", "float8", "int4"])
                for row in rows:
                    await copy.write_row(row)
        copy_rate = len(rows) / (time.perf_counter() - t)
        t = time.perf_counter()
        for i in range(txs):
            async with conn.transaction():
                await conn.execute("UPDATE t SET n = n + 1 WHERE id = %s", (rows[i][0],))
        return copy_rate, txs / (time.perf_counter() - t)
    finally:
        await conn.close()


def drivers(srv: pgserver.Server, n: int = 100_000, txs: int = 1000, reps: int = 3) -> dict[str, Any]:
    """asyncpg and psycopg 3 (async API, binary COPY) on the same rows, alternating, each in a fresh database."""
    rows = [(f"j{i}", "true", "pending", 0, 1.0e9 + i, 0) for i in range(n)]
    out: dict[str, Any] = {"rows": n, "transactions": txs}
    figures: dict[str, list[tuple[float, float]]] = {"asyncpg": [], "psycopg": []}
    try:
        import psycopg  # noqa: F401
    except ImportError:
        figures.pop("psycopg")
        out["psycopg"] = {"skipped": "psycopg is not installed (pip install 'psycopg[binary]')"}
    for _ in range(reps):
        for name, fn in (("asyncpg", _asyncpg_figures), ("psycopg", _psycopg_figures)):
            if name in figures:
                with pg_nodes.srv_db(srv) as url:
                    figures[name].append(run(fn, url, rows, txs))
    for name, each in figures.items():
        out[name] = {"copy": statistics.median(c for c, _ in each), "tx": statistics.median(x for _, x in each)}
    return out


# --- the report -------------------------------------------------------------------------------


def report(r: dict[str, Any]) -> str:
    if "skipped" in r:
        return f"PostgreSQL store: skipped: {r['skipped']}"
    out = [f"PostgreSQL store ({r['server']}; {CORES} cores, the server on the same machine; 1-minute load "
           f"average {r['load'][0]:.1f} before, {r['load'][1]:.1f} after)"]
    rows: list[tuple[str, str, str, float | None]] = []
    e = r.get("enqueue", {})
    if "pg" in e:
        rows.append((f"P1 enqueue of {e.get('jobs', r.get('depth', 0)):,}, PG", f"{e['pg']:,.0f} jobs/s",
                     f">= 100,000/s; embedded {e['embedded']:,.0f}/s, raw COPY {e.get('copy', 0):,.0f}/s",
                     e["pg"] / 100_000))
    elif "copy" in e:
        rows.append((f"P1 raw COPY of {e['jobs']:,} job rows", f"{e['copy']:,.0f} rows/s",
                     f"(daemon: {e.get('skipped', 'not measured')})"[:60], None))
    c = r.get("claims", {})
    for path in ("store", "sql"):
        if path in c:
            v = c[path]
            what = "PgStore" if path == "store" else "SQL"
            rows.append((f"P2 claim+complete, 4 workers, {what}", f"{v['batch']:,.0f} jobs/s",
                         f">= 10,000/s; one at a time {v['single']:,.0f}/s", v["batch"] / 10_000))
            if "deep" in v:
                rows.append((f"P4 the same, {v['depth']:,} waiting", f"{v['deep']:,.0f} jobs/s",
                             f">= 90% of empty: {v['deep'] / v['batch']:.0%}", v["deep"] / v["batch"] / 0.9))
    d = r.get("drain", {})
    if "pg" in d:
        rows.append(("P3 drain of `true`, 2 PG nodes", f"{d['pg']:,.0f} jobs/s",
                     f"1 embedded node {d['embedded']:,.0f}/s ({d['workers']} workers each)", None))
    lat = r.get("dispatch", {})
    if "p50_ms" in lat:
        rows.append(("P5 dispatch to another node, p50", f"{lat['p50_ms']:.1f} ms",
                     f"<= 10 ms; p99 {lat['p99_ms']:.1f} ms, from send p50 {lat['send_p50_ms']:.1f}; "
                     f"back to back p50 {lat.get('busy_p50_ms', float('nan')):.1f}",
                     10 / lat["p50_ms"]))
    out.append(f"{'target':40} {'measured':>16}  {'bar':56}")
    for name, value, bar, score in rows:
        verdict = "" if score is None else "meets" if score >= 1 else "MISSES"
        out.append(f"{name:40} {value:>16}  {bar:56} {verdict}")
    for key in ("enqueue", "claims", "drain", "dispatch", "drivers", "decay"):
        if "skipped" in r.get(key, {}):
            out.append(f"{key}: not measured: {r[key]['skipped']}")
    best = c.get("store") or c.get("sql")
    if best:
        out.append("")
        out.append(f"claim+complete per core: {best['batch'] / CORES:,.0f} jobs/s/core here "
                   f"({best['batch']:,.0f}/s on {CORES} cores shared by the bench, the server and the workers)")
        for name, rate, cores, note in PEERS:
            per = f"{rate / cores:,.0f}/s/core" if cores else "per core: unknown"
            out.append(f"  {name:24} {rate:>8,}/s  {per:18} ({note})")
    if isinstance(r.get("unanalyzed_ms"), list):
        before, after = r["unanalyzed_ms"]
        out += ["", f"one claim of 10 right after a COPY of 100,000 jobs: {before:,.1f} ms before an ANALYZE of the "
                    f"live partition, {after:.2f} ms after"]
    if "none" in r.get("decay", {}):
        dec = r["decay"]
        out.append(f"a drain of {dec['jobs']:,} (SQL path, batches of 10), jobs/s by tenths: "
                   + ", ".join(f"{x:,.0f}" for x in dec["none"]))
        out.append("  the same with a VACUUM of the live partition every second: "
                   + ", ".join(f"{x:,.0f}" for x in dec["vacuum"]))
    if c.get("explain"):
        out += ["", "the claim's plan with the depth waiting:", *("  " + line for line in c["explain"])]
    dr = r.get("drivers")
    if dr and "rows" in dr:
        out.append("")
        out.append(f"drivers, {dr['rows']:,}-row binary COPY and {dr['transactions']:,} one-row transactions:")
        for name in ("asyncpg", "psycopg"):
            v = dr.get(name, {})
            if "skipped" in v:
                out.append(f"  {name:10} skipped: {v['skipped']}")
            elif v:
                out.append(f"  {name:10} COPY {v['copy']:>10,.0f} rows/s   transactions {v['tx']:>7,.0f}/s")
    return "\n".join(out)


# --- all of it ----------------------------------------------------------------------------------


def measure(depth: int = 1_000_000, quick: bool = False) -> dict[str, Any]:
    from bench import pg_claims

    reps = 1 if quick else 3
    r: dict[str, Any] = {}
    try:
        srv_cm = server()
        srv = srv_cm.__enter__()
    except RuntimeError as e:
        return {"skipped": str(e)}
    try:
        r["server"] = srv.origin
        r["load"] = [os.getloadavg()[0]]
        r["depth"] = depth
        steps: list[tuple[str, Callable[[], Any]]] = [
            ("drivers", lambda: drivers(srv, 20_000 if quick else 100_000, 1000, reps)),
            ("enqueue", lambda: {"jobs": depth, "copy": statistics.median(
                [pg_claims.raw_copy(srv, depth) for _ in range(1 if depth >= 500_000 else reps)])}),
            ("claims", lambda: pg_claims.measure(srv, depth, 5000 if quick else 20_000, reps)),
            ("unanalyzed_ms", lambda: pg_claims.unanalyzed(srv, 100_000)),
            ("decay", lambda: {"jobs": n_decay, "none": pg_claims.decay(srv, n_decay, None),
                               "vacuum": pg_claims.decay(srv, n_decay, 1.0)}),
            ("enqueue_daemon", lambda: pg_nodes.enqueue(srv, depth)),
            ("drain", lambda: pg_nodes.drain(srv, 2000 if quick else 10_000, reps)),
            ("dispatch", lambda: pg_nodes.dispatch(srv, 100 if quick else 300)),
        ]
        n_decay = 20_000 if quick else 100_000
        for name, step in steps:
            say(f"PostgreSQL: {name}")
            try:
                r[name] = step()
            except Exception as e:  # one step's failure is reported; the others go on
                r[name] = {"skipped": f"failed: {type(e).__name__}: {str(e)[:200]}"}
                say(f"PostgreSQL: {name} failed: {e!r}")
        r["enqueue"] = {**r["enqueue"], **r.pop("enqueue_daemon")}
    finally:
        srv_cm.__exit__(None, None, None)
    r["load"].append(os.getloadavg()[0])
    return r


def new_id() -> str:
    return uuid.uuid4().hex[:12]
