"""queuectl's benchmark suite: `make bench`.

Every figure is the median of repeated runs, and each is printed next to the
baseline measured in the same run on the same machine (the raw spawn rate of
`sh -c true`, a bare interpreter start) and next to the peers (task-spooler,
huey with SQLite).  It writes bench/results/results.json and a chart of
throughput against queue depth, bench/results/throughput.png.

    .venv/bin/python bench/run.py [--quick] [--no-peers] [--depth 1000000]

Nothing here is a pass/fail test: it reports.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench import peers
from queuectl_client import Client

BIN = os.path.dirname(sys.executable)
QUEUECTL = os.path.join(BIN, "queuectl")
QUEUECTLD = os.path.join(BIN, "queuectld")
FAR_FUTURE = 4_000_000_000.0  # a run_at that keeps jobs waiting
RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")


def median(xs: list[float]) -> float:
    return statistics.median(xs)


def say(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# --- baselines ------------------------------------------------------------------


def _spawn_loop(n: int) -> None:
    env = dict(os.environ)
    for _ in range(n):
        pid = os.posix_spawn("/bin/sh", ["sh", "-c", "true"], env)
        os.waitpid(pid, 0)


def raw_spawn_rate(loops: int, n: int) -> float:
    """`sh -c true` spawned and reaped by `loops` processes in parallel, per second."""
    ctx = multiprocessing.get_context("fork")
    t = time.perf_counter()
    procs = [ctx.Process(target=_spawn_loop, args=(n,)) for _ in range(loops)]
    for p in procs:
        p.start()
    for p in procs:
        p.join()
    return loops * n / (time.perf_counter() - t)


def command_time(argv: list[str], env: dict[str, str] | None = None, runs: int = 21) -> float:
    """Median wall time of a command, in seconds."""
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env, check=True)
        times.append(time.perf_counter() - t)
    return median(times)


# --- a daemon to measure ----------------------------------------------------------


@contextmanager
def daemon(*args: str) -> Iterator[tuple[str, subprocess.Popen[bytes], Client]]:
    home = tempfile.mkdtemp(prefix="qc-bench-", dir="/tmp")
    log = open(os.path.join(home, "queuectld.log"), "wb")
    proc = subprocess.Popen([QUEUECTLD, "--home", home, "--workers", "0", *args], stdout=log, stderr=log)
    client = Client(home, autostart=False)
    try:
        wait_answer(client, proc)
        yield home, proc, client
    finally:
        client.close()
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()
        shutil.rmtree(home, ignore_errors=True)


def wait_answer(client: Client, proc: subprocess.Popen[bytes], timeout: float = 120) -> float:
    """Seconds until the daemon answers `status`."""
    t = time.perf_counter()
    while True:
        try:
            client.close()
            client.status()
            return time.perf_counter() - t
        except Exception:
            if proc.poll() is not None:
                raise RuntimeError("queuectld exited") from None
            if time.perf_counter() - t > timeout:
                raise
            time.sleep(0.005)


def rss_bytes(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def fill(client: Client, n: int, batch: int = 50_000) -> None:
    """n more jobs that wait far in the future: depth that never runs."""
    offset = sum(client.status().jobs.values())
    for start in range(0, n, batch):
        count = min(batch, n - start)
        client.enqueue_many(({"command": "true", "run_at": FAR_FUTURE, "id": f"w{offset + start + i}"}
                             for i in range(count)), batch=batch)


def drain_rate(client: Client, n: int, workers: int = 4) -> float:
    """Run n `true` jobs on `workers` workers; jobs per second from the start to the last exit."""
    before = client.status().jobs["completed"]
    client.enqueue_many([{"command": "true"} for _ in range(n)])
    t = time.perf_counter()
    client.worker_start(workers)
    while client.status().jobs["completed"] < before + n:
        time.sleep(0.005)
    elapsed = time.perf_counter() - t
    client.worker_stop()
    return n / elapsed


# --- the measurements ---------------------------------------------------------------


def measure(args: argparse.Namespace) -> dict[str, Any]:
    r: dict[str, Any] = {"machine": {"cores": os.cpu_count(), "python": sys.version.split()[0]}}
    reps = 1 if args.quick else 3
    n_jobs = 2000 if args.quick else 10_000

    say(f"throughput: {n_jobs} trivial jobs on 4 workers, empty queue, each run beside a raw spawn run")
    # The spawn cost on a shared VM drifts by several times over seconds, so each queuectl run is
    # paired with a raw spawn run just before it, and the target is judged on the pairs' ratios.
    cores = os.cpu_count() or 1
    raw_1, raw_all, rates, ratios = [], [], [], []
    for _ in range(max(reps, 5) if not args.quick else 1):
        raw_1.append(raw_spawn_rate(1, 2000))
        raw_all.append(raw_spawn_rate(cores, 2000))
        with daemon() as (_, _, c):
            rates.append(drain_rate(c, n_jobs))
        ratios.append(rates[-1] / raw_all[-1])
    r["raw_spawn_1"] = median(raw_1)
    r["raw_spawn_all"] = median(raw_all)
    r["throughput_empty"] = median(rates)
    r["throughput_ratio"] = median(ratios)
    r["throughput_ratios"] = ratios

    say(f"batch enqueue: {args.depth} JSON lines through `queuectl enqueue -`")
    lines_path = os.path.join(tempfile.gettempdir(), f"qc-bench-{args.depth}.jsonl")
    with open(lines_path, "w") as f:
        f.write("".join('{"command": "true"}\n' for _ in range(args.depth)))
    rates = []
    for _ in range(1 if args.depth >= 500_000 else reps):
        with daemon() as (home, _, _c):
            env = dict(os.environ, QUEUECTL_HOME=home, QUEUECTL_NO_AUTOSTART="1")
            t = time.perf_counter()
            with open(lines_path, "rb") as f:
                subprocess.run([QUEUECTL, "enqueue", "-"], stdin=f, stdout=subprocess.DEVNULL, env=env, check=True)
            rates.append(args.depth / (time.perf_counter() - t))
    os.unlink(lines_path)
    r["batch_enqueue"] = median(rates)

    say(f"depth: {args.depth} waiting jobs; memory, queries, throughput, restart")
    r["throughput_by_depth"] = {0: r["throughput_empty"]}
    if args.depth // 10 >= 1000:
        with daemon() as (_, _, c):
            fill(c, args.depth // 10)
            r["throughput_by_depth"][args.depth // 10] = median([drain_rate(c, n_jobs) for _ in range(reps)])
    with daemon() as (home, proc, c):
        rss0 = rss_bytes(proc.pid)
        status_empty = median([_timed(c.status) for _ in range(51)])
        list_empty = median([_timed(lambda: list(c.list("pending", 10))) for _ in range(51)])
        # Memory is measured right after the fill, before any job has run, so that it is what
        # the waiting jobs cost (the completed jobs of the drains below would add to it).
        fill(c, args.depth)
        r["memory_per_job"] = (rss_bytes(proc.pid) - rss0) / args.depth
        r["throughput_by_depth"][args.depth] = median([drain_rate(c, n_jobs) for _ in range(reps)])
        r["status_empty_ms"] = status_empty * 1000
        r["status_deep_ms"] = median([_timed(c.status) for _ in range(51)]) * 1000
        r["list10_empty_ms"] = list_empty * 1000
        r["list10_deep_ms"] = median([_timed(lambda: list(c.list("pending", 10))) for _ in range(51)]) * 1000
        r["throughput_deep"] = r["throughput_by_depth"][args.depth]
        c.close()
        proc.send_signal(signal.SIGTERM)
        proc.wait(120)
        restarts = []
        for _ in range(reps):
            p2 = subprocess.Popen([QUEUECTLD, "--home", home], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            restarts.append(wait_answer(Client(home, autostart=False), p2))
            p2.send_signal(signal.SIGTERM)
            p2.wait(120)
        r["restart_s"] = median(restarts)
        proc.wait()

    say("one CLI call against a bare interpreter")
    with daemon() as (home, _, c):
        env = dict(os.environ, QUEUECTL_HOME=home, QUEUECTL_NO_AUTOSTART="1")
        bare = command_time([sys.executable, "-c", "pass"])
        r["python_bare_ms"] = bare * 1000
        r["cli_status_ms"] = command_time([QUEUECTL, "status"], env) * 1000
        r["cli_enqueue_ms"] = command_time([QUEUECTL, "enqueue", '{"command": "true"}'], env) * 1000

    say("dispatch latency: enqueue to start with an idle worker")
    with daemon() as (_, _, c):
        c.worker_start(1)
        lat = []
        for _ in range(100 if args.quick else 300):
            job_id = c.enqueue("true")
            job = c.wait_for(job_id, ("completed",))
            assert job.started_at is not None
            lat.append((job.started_at - job.created_at) * 1000)
        lat.sort()
        r["dispatch_p50_ms"] = median(lat)
        r["dispatch_p99_ms"] = lat[int(len(lat) * 0.99) - 1]

    if not args.no_peers:
        r["peers"] = peers.measure(n=1000 if args.quick else 3000, reps=reps, say=say)
    return r


def _timed(fn: Callable[[], object]) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


# --- the report ------------------------------------------------------------------------


def report(r: dict[str, Any], depth: int) -> str:
    raw = r["raw_spawn_all"]
    rows = [
        ("1 throughput, empty queue", f"{r['throughput_empty']:,.0f} jobs/s",
         f">= 85% of raw spawn {raw:,.0f}/s", r["throughput_ratio"], 0.85),
        ("1   median of paired ratios", f"{r['throughput_ratio']:.0%}", "each run / the raw run before it",
         r["throughput_ratio"], 0.85),
        (f"2 throughput, {depth:,} waiting", f"{r['throughput_deep']:,.0f} jobs/s",
         ">= 90% of empty", r["throughput_deep"] / r["throughput_empty"], 0.90),
        ("3 batch enqueue", f"{r['batch_enqueue']:,.0f} jobs/s", ">= 100,000/s", r["batch_enqueue"] / 100_000, 1.0),
        ("4 one CLI call (status)", f"{r['cli_status_ms']:.1f} ms",
         f"<= 3.5x bare python {r['python_bare_ms']:.1f} ms", 3.5 / (r["cli_status_ms"] / r["python_bare_ms"]), 1.0),
        ("4 one CLI call (enqueue)", f"{r['cli_enqueue_ms']:.1f} ms",
         "<= 3.5x bare python", 3.5 / (r["cli_enqueue_ms"] / r["python_bare_ms"]), 1.0),
        ("5 dispatch latency p50", f"{r['dispatch_p50_ms']:.2f} ms", "<= 2 ms", 2 / r["dispatch_p50_ms"], 1.0),
        ("5 dispatch latency p99", f"{r['dispatch_p99_ms']:.2f} ms", "<= 10 ms", 10 / r["dispatch_p99_ms"], 1.0),
        ("6 memory per waiting job", f"{r['memory_per_job']:,.0f} B", "<= 500 B", 500 / r["memory_per_job"], 1.0),
        ("7 restart to first answer", f"{r['restart_s']:.2f} s", f"<= 3 s at {depth:,}", 3 / r["restart_s"], 1.0),
        ("8 status, empty vs deep", f"{r['status_empty_ms']:.2f} / {r['status_deep_ms']:.2f} ms", "O(1)",
         r["status_empty_ms"] * 3 / r["status_deep_ms"], 1.0),
        ("8 list --limit 10, empty vs deep", f"{r['list10_empty_ms']:.2f} / {r['list10_deep_ms']:.2f} ms",
         "O(limit)", r["list10_empty_ms"] * 3 / r["list10_deep_ms"], 1.0),
    ]
    out = [f"machine: {r['machine']['cores']} cores, Python {r['machine']['python']}; "
           f"raw spawn of sh -c true: {r['raw_spawn_1']:,.0f}/s from one loop, {raw:,.0f}/s from one per core", ""]
    out.append(f"{'target':34} {'measured':>22}  {'bar':30} {'':6}")
    for name, value, bar, score, need in rows:
        verdict = "meets" if score >= need else "MISSES"
        out.append(f"{name:34} {value:>22}  {bar:30} {verdict}")
    peer = r.get("peers")
    if peer:
        out += ["", "side by side, trivial jobs, 4 workers/slots:"]
        out.append(f"{'':24} {'drain jobs/s':>14} {'enqueue jobs/s':>16}")
        ours = f"{r['throughput_empty']:>14,.0f} {r['batch_enqueue']:>16,.0f}"
        out.append(f"{'queuectl':24} {ours}   (Python, journal fsynced; enqueue: one batch)")
        for name, v in peer.items():
            if "skipped" in v:
                out.append(f"{name:24} skipped: {v['skipped']}")
            else:
                out.append(f"{name:24} {v['drain']:>14,.0f} {v['enqueue']:>16,.0f}   ({v['note']})")
    return "\n".join(out)


def chart(r: dict[str, Any], path: str) -> str | None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return "matplotlib is not installed: no chart (pip install matplotlib)"
    fig, ax = plt.subplots(figsize=(7, 4.2))
    depths = sorted(int(d) for d in r["throughput_by_depth"])
    ax.plot([max(d, 1) for d in depths], [r["throughput_by_depth"][d] for d in depths], "o-", label="queuectl")
    for name, v in (r.get("peers") or {}).items():
        if "by_depth" in v:
            ds = sorted(int(d) for d in v["by_depth"])
            ax.plot([max(d, 1) for d in ds], [v["by_depth"][d] for d in ds], "s--", label=name)
    ax.axhline(r["raw_spawn_all"], color="grey", linestyle=":", label="raw spawn limit (sh -c true)")
    ax.set_xscale("log")
    ax.set_xlabel("jobs waiting in the queue (1 = empty)")
    ax.set_ylabel("trivial jobs run per second")
    ax.set_ylim(bottom=0)
    ax.set_title("Throughput against queue depth, 4 workers")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return None


def main() -> None:
    ap = argparse.ArgumentParser(description="queuectl benchmarks")
    ap.add_argument("--quick", action="store_true", help="fewer repeats and smaller runs")
    ap.add_argument("--no-peers", action="store_true", help="skip task-spooler and huey")
    ap.add_argument("--depth", type=int, default=1_000_000, help="jobs waiting for the depth figures")
    args = ap.parse_args()
    r = measure(args)
    os.makedirs(RESULTS, exist_ok=True)
    with open(os.path.join(RESULTS, "results.json"), "w") as f:
        json.dump(r, f, indent=2, default=str)
    problem = chart(r, os.path.join(RESULTS, "throughput.png"))
    print(report(r, args.depth))
    print(f"\nwrote {RESULTS}/results.json" + (f"; {problem}" if problem else f" and {RESULTS}/throughput.png"))


if __name__ == "__main__":
    main()
