"""Whole daemons on PostgreSQL: the batch enqueue, a drain by 2 nodes, and dispatch to another node.

Every node is a `queuectld --store URL --node NAME` with a home of its own (its socket) and the
database of the measurement; the embedded figures beside them come from daemons of the same run.
"""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from typing import Any

from queuectl_client import Client
from tests import pgserver

STALL = 120.0  # seconds a drain may take before it is reported as stalled


class Stalled(Exception):
    pass


def say(msg: str) -> None:
    from bench.pg import say as _say

    _say(msg)


def missing() -> str | None:
    """Why the daemon cannot be measured on PostgreSQL, or None."""
    from bench.run import QUEUECTLD

    helptext = subprocess.run([QUEUECTLD, "--help"], capture_output=True, text=True).stdout
    if "--store" not in helptext:
        return "this queuectld has no --store"
    return None


@contextmanager
def nodes(url: str, *names: str) -> Iterator[list[tuple[str, Client]]]:
    """A daemon per name on the database `url`, pools 0: (home, client) each."""
    from bench.run import daemon

    with ExitStack() as stack:
        out = []
        for name in names:
            home, _, client = stack.enter_context(daemon("--store", url, "--node", name))
            out.append((home, client))
        yield out


def _enqueue_lines(home: str, path: str, n: int) -> float:
    from bench.run import QUEUECTL

    env = dict(os.environ, QUEUECTL_HOME=home, QUEUECTL_NO_AUTOSTART="1")
    t = time.perf_counter()
    with open(path, "rb") as f:
        subprocess.run([QUEUECTL, "enqueue", "-"], stdin=f, stdout=subprocess.DEVNULL, env=env, check=True)
    return n / (time.perf_counter() - t)


def enqueue(srv: pgserver.Server, n: int) -> dict[str, Any]:
    """`queuectl enqueue -` of n JSON lines (one batch) into a PG node, then into an embedded daemon."""
    from bench.run import daemon

    why = missing()
    if why:
        return {"skipped": why}
    say(f"PostgreSQL: batch enqueue of {n:,} JSON lines through `queuectl enqueue -`, PG node then embedded")
    path = os.path.join(tempfile.gettempdir(), f"qc-bench-pg-{n}.jsonl")
    with open(path, "w") as f:
        f.write('{"command": "true"}\n' * n)
    try:
        with srv_db(srv) as url, nodes(url, "n1") as [(home, _)]:
            pg = _enqueue_lines(home, path, n)
        with daemon() as (home, _, _c):
            embedded = _enqueue_lines(home, path, n)
    finally:
        os.unlink(path)
    return {"pg": pg, "embedded": embedded}


@contextmanager
def _removed(path: str) -> Iterator[None]:
    try:
        yield
    finally:
        shutil.rmtree(path, ignore_errors=True)


@contextmanager
def srv_db(srv: pgserver.Server) -> Iterator[str]:
    url = srv.create_database()
    try:
        yield url
    finally:
        srv.drop_database(url)


def _completed(client: Client) -> int:
    return client.status().jobs["completed"]


def _drain(clients: list[Client], n: int, workers: int) -> float:
    """n `true` jobs enqueued through the first client, then `workers` started on each: jobs/s."""
    from queuectl_client.protocol import JobSpec

    first = clients[0]
    first.enqueue_specs([JobSpec(command="true")] * n)
    before = _completed(first)
    t = time.perf_counter()
    for c in clients:
        c.worker_start(workers)
    while _completed(first) < before + n:
        if time.perf_counter() - t > STALL:
            raise Stalled(f"{_completed(first) - before:,} of {n:,} jobs completed after {STALL:.0f} s")
        time.sleep(0.01)
    elapsed = time.perf_counter() - t
    for c in clients:
        c.worker_stop()
    return n / elapsed


def drain(srv: pgserver.Server, n: int, reps: int, workers: int = 4) -> dict[str, Any]:
    """Trivial jobs drained by 2 PG nodes of `workers` each, beside one embedded node of `workers`."""
    from bench.run import daemon

    why = missing()
    if why:
        return {"skipped": why}
    say(f"PostgreSQL: {n:,} `true` jobs drained by 2 PG nodes of {workers} workers, beside 1 embedded node")
    pg, embedded = [], []
    for _ in range(reps):
        with daemon() as (_, _, c):
            embedded.append(_drain([c], n, workers))
        with srv_db(srv) as url, nodes(url, "n1", "n2") as both:
            pg.append(_drain([c for _, c in both], n, workers))
    return {"pg": statistics.median(pg), "embedded": statistics.median(embedded), "workers": workers,
            "pg_each": pg, "embedded_each": embedded, "jobs": n}


IDLE_GAP = 0.5  # seconds between a run's end and the next enqueue in the dispatch measure


def dispatch(srv: pgserver.Server, samples: int) -> dict[str, Any]:
    """Enqueue on node 1 (pool 0); the job starts on node 2 (pool 1, idle).  Each job writes the wall
    clock as its first act (`date +%s.%N`, its own process); the latency runs from the enqueue's
    reply (and, beside it, from just before it was sent) to that time, on the same machine."""
    why = missing()
    if why:
        return {"skipped": why}
    say(f"PostgreSQL: dispatch latency, {samples} jobs enqueued on node 1 and run by node 2's idle worker")
    marks = tempfile.mkdtemp(prefix="qc-bench-marks-")
    from_ack, from_send = [], []
    with srv_db(srv) as url, nodes(url, "n1", "n2") as [(_, one), (_, two)], _removed(marks):
        two.worker_start(1)
        for _ in range(samples):
            # The worker idle: its last run's end recorded and announced a while ago.  Enqueued at once
            # after that end, the next job waits for the node's pass that records it (`busy_p50_ms`).
            time.sleep(IDLE_GAP)
            sent = time.time()
            job_id = one.enqueue(f'date +%s.%N > {marks}/"$QUEUECTL_JOB_ID"')
            acked = time.time()
            two.wait_for(job_id, ("completed",), timeout=30)
            with open(os.path.join(marks, job_id)) as f:
                started = float(f.read())
            from_ack.append((started - acked) * 1000)
            from_send.append((started - sent) * 1000)
        busy = []
        for _ in range(max(10, samples // 5)):  # back to back: each enqueued as the one before completes
            job_id = one.enqueue(f'date +%s.%N > {marks}/"$QUEUECTL_JOB_ID"')
            acked = time.time()
            two.wait_for(job_id, ("completed",), timeout=30)
            with open(os.path.join(marks, job_id)) as f:
                busy.append((float(f.read()) - acked) * 1000)
    from_ack.sort()
    from_send.sort()
    return {"p50_ms": statistics.median(from_ack), "p99_ms": from_ack[max(0, int(len(from_ack) * 0.99) - 1)],
            "send_p50_ms": statistics.median(from_send), "busy_p50_ms": statistics.median(busy),
            "samples": samples}
