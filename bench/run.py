"""queuectl's benchmark suite: `make bench`.

Every figure is the median of repeated runs, and each is printed next to the
baseline measured in the same run on the same machine (the raw spawn rate of
`sh -c true`, `xargs -P 4`, a bare interpreter start, the empty queue) and next
to the peers (task-spooler, huey with SQLite, GNU parallel).  It writes
bench/results/results.json and a chart of throughput against queue depth and
of the drain rates side by side, bench/results/throughput.png.

    .venv/bin/python bench/run.py [--quick] [--no-peers] [--depth 1000000]
                                  [--stall-only | --groups-only | --retention-only | --deps-only
                                   | --dashboard-only | --pg-only]

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
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench import dashboard as dashboard_bench
from bench import peers
from bench import pg as pg_bench
from queuectl_client import Client
from queuectl_client import protocol as p
from queuectl_client.protocol import JobSpec

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
    for proc in procs:
        proc.start()
    for proc in procs:
        proc.join()
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
    except BaseException:
        log.flush()
        with open(log.name, "rb") as f:  # why it failed, if the daemon said: the home goes below
            say("queuectld's log, last lines:\n" + b"".join(f.readlines()[-20:]).decode(errors="replace"))
        raise
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


def drain_rate(client: Client, n: int, workers: int = 4, command: str = "true", priority: int = 0) -> float:
    """Run n jobs of `command` on `workers` workers; jobs per second from the start to the last exit."""
    client.enqueue_specs([JobSpec(command=command, priority=priority)] * n)
    return n / run_until_completed(client, n, workers)


def run_until_completed(client: Client, n: int, workers: int = 4) -> float:
    """Start `workers` workers; seconds until n more jobs have completed (then the pool stops)."""
    before = client.status().jobs["completed"]
    t = time.perf_counter()
    client.worker_start(workers)
    while client.status().jobs["completed"] < before + n:
        time.sleep(0.005)
    elapsed = time.perf_counter() - t
    client.worker_stop()
    return elapsed


class Probe:
    """`status` every `period` s over a connection of its own, from a thread: the longest reply wait.

    The thread only sends, waits and sleeps, so the bench's own GIL costs it
    little; what it sees is how long the daemon's loop left the request alone.
    """

    def __init__(self, home: str, period: float = 0.005) -> None:
        self.client = Client(home, autostart=False)
        self.period = period
        self.waits: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="status-probe", daemon=True)

    def __enter__(self) -> Probe:
        self.client.status()  # connected before the clock starts
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.client.close()

    def _run(self) -> None:
        status, clock = self.client.status, time.perf_counter
        while not self._stop.is_set():
            t = clock()
            status()
            wait = clock() - t
            self.waits.append(wait)
            self._stop.wait(max(0.0, self.period - wait))

    @property
    def worst_ms(self) -> float:
        return max(self.waits, default=0.0) * 1000


def stall_at_depth(depth: int, n: int, reps: int) -> dict[str, Any]:
    """The drain of n higher-priority jobs right after a batch enqueue of `depth` due jobs, beside
    the same drain on the empty queue of the same daemon just before; a `status` probe every 5 ms
    during each.  The `depth` jobs go in as a user would send them: batches of 100,000 `true`."""
    empty, deep, ratios, worst_empty, worst_deep = [], [], [], [], []
    for _ in range(reps):
        with daemon() as (home, _, c):
            c.enqueue_specs([JobSpec(command="true", priority=1)] * n)
            with Probe(home) as probe:
                empty.append(n / run_until_completed(c, n))
            worst_empty.append(probe.worst_ms)
            for start in range(0, depth, 100_000):
                c.enqueue_specs([JobSpec(command="true")] * min(100_000, depth - start), batch=100_000)
            c.enqueue_specs([JobSpec(command="true", priority=1)] * n)
            with Probe(home) as probe:
                deep.append(n / run_until_completed(c, n))
            worst_deep.append(probe.worst_ms)
            ratios.append(deep[-1] / empty[-1])
    return {"empty": median(empty), "deep": median(deep), "ratio": median(ratios), "ratios": ratios,
            "worst_empty_ms": median(worst_empty), "worst_deep_ms": median(worst_deep),
            "worst_deep_each_ms": worst_deep, "depth": depth, "jobs": n}


# --- groups ---------------------------------------------------------------------------


def drain_paused(home: str, c: Client, n: int, group: str = p.DEFAULT_GROUP) -> float:
    """n `true` jobs enqueued into `group` while it is paused, then the group resumed: jobs per
    second from the resume to the last of them ending (a `Wait` on their ids says when, so the
    daemon is not polled meanwhile).  The group is paused again after."""
    ids = c.enqueue_specs([JobSpec(command="true", group=group)] * n)
    with Client(home, autostart=False) as w:
        frames = w.wait(ids)
        for frame in frames:  # the set, as the daemon read it: then it follows
            if isinstance(frame, p.WaitSet) and not frame.more:
                break
        t = time.perf_counter()
        c.request(p.Pause([group], resume=True))
        for frame in frames:
            if isinstance(frame, p.WaitChanges) and frame.done:
                break
        elapsed = time.perf_counter() - t
    c.request(p.Pause([group]))
    return n / elapsed


def groups_dispatch(waiting: int, n: int, reps: int, groups: int = 100, full: int = 10,
                    workers: int = 4) -> dict[str, Any]:
    """The drain of n `true` jobs in the one open group of `groups`, on `workers` free workers,
    while the others are full (`full` of them, `parallel 1`, each running a `sleep 600`) or paused,
    with `waiting` due jobs waiting in them; beside the same drain on an empty queue with `workers`
    workers, in a daemon of its own.  The two alternate, empty first, `reps` times each.

    The open group is `default`; the pool is `workers` + `full`, so the measured group has
    `workers` workers to itself.  The waiting jobs go in as 50,000-job requests, each spread
    over the closed groups in turn."""
    full_names = [f"full-{i}" for i in range(full)]
    paused_names = [f"paused-{i}" for i in range(groups - 1 - full)]
    closed = full_names + paused_names
    with daemon() as (home_e, _, e), daemon() as (home_g, _, g):
        e.request(p.Pause([p.DEFAULT_GROUP]))
        e.worker_start(workers)
        for name in full_names:
            g.request(p.GroupAdd(name, 1))
        for name in paused_names:
            g.request(p.GroupAdd(name))
        g.request(p.Pause([*paused_names, p.DEFAULT_GROUP]))
        g.enqueue_specs([JobSpec(command="sleep 600", group=name) for name in full_names])
        g.worker_start(workers + full)
        while g.status().workers.busy < full:
            time.sleep(0.01)
        # One request's jobs, spread over the closed groups, made once: the time is the daemon's, as
        # for the same requests into one group (target 14's set-up), not this process making specs.
        batch = 50_000
        spread = [JobSpec(command="true", group=closed[i % len(closed)]) for i in range(batch)]
        t = time.perf_counter()
        for start in range(0, waiting, batch):
            g.enqueue_specs(spread[: min(batch, waiting - start)], batch=batch)
        enqueue_rate = waiting / (time.perf_counter() - t)
        counts = g.status().jobs
        assert counts["pending"] == waiting and counts["processing"] == full, counts
        status_empty = median([_timed(e.status) for _ in range(51)]) * 1000
        status_groups = median([_timed(g.status) for _ in range(51)]) * 1000
        empty, grouped, ratios = [], [], []
        for _ in range(reps):
            empty.append(drain_paused(home_e, e, n))
            grouped.append(drain_paused(home_g, g, n))
            ratios.append(grouped[-1] / empty[-1])
        counts = g.status().jobs
        assert counts["pending"] == waiting and counts["processing"] == full, counts
        # Nothing may start once the sleeps end: every group paused, then the sleeps cancelled.
        g.request(p.Pause([]))
        for _ in g.stream(p.Cancel(select=p.Selector(state="processing"), signal=9, grace=0)):
            pass
    return {"empty": median(empty), "groups": median(grouped), "ratio": median(ratios), "ratios": ratios,
            "empty_each": empty, "groups_each": grouped, "waiting": waiting, "jobs": n, "group_count": groups,
            "full": full, "paused": len(paused_names), "workers": workers, "enqueue_rate": enqueue_rate,
            "status_empty_ms": status_empty, "status_groups_ms": status_groups}


# --- retention ------------------------------------------------------------------------


def latency_window(home: str, c: Client, done: Callable[[p.StatusReply, int], bool], period: float = 0.01,
                   status_every: int = 5) -> dict[str, Any]:
    """One `true` job enqueued every `period` s until `done(status, jobs sent)`, asked every
    `status_every` jobs.  A job's latency runs from just before its enqueue is sent (the wall
    clock here) to its start as the daemon stamps it (the same clock), so the time a request
    waits for the daemon's loop, or for its fsync, counts.  The next enqueue waits for the
    reply, so a slow daemon gets fewer jobs than one per `period`: its percentiles are, if
    anything, kind to it.  A `status` probe every 5 ms beside it."""
    sent: list[tuple[str, float]] = []
    replies: list[float] = []
    with Probe(home) as probe:
        t0 = time.perf_counter()
        while True:
            at = time.time()
            t = time.perf_counter()
            sent.append((c.enqueue("true"), at))
            replies.append(time.perf_counter() - t)
            if len(sent) % status_every == 0 and done(c.status(), len(sent)):
                break
            time.sleep(max(0.0, t0 + len(sent) * period - time.perf_counter()))
        ended = time.perf_counter()
    lat = []
    for job_id, at in sent:
        job = c.wait_for(job_id, ("completed",))
        assert job.started_at is not None
        lat.append((job.started_at - at) * 1000)
    lat.sort()
    replies.sort()
    return {"p50_ms": median(lat), "p99_ms": _pct(lat, 0.99), "max_ms": lat[-1], "samples": len(lat),
            "enqueue_p50_ms": median(replies) * 1000, "enqueue_p99_ms": _pct(replies, 0.99) * 1000,
            "worst_status_ms": probe.worst_ms, "seconds": ended - t0, "ended": ended}


def _pct(sorted_xs: list[float], q: float) -> float:
    return sorted_xs[max(0, int(len(sorted_xs) * q) - 1)]


def retention_dispatch(expired: int, samples: int, workers: int = 4) -> dict[str, Any]:
    """Dispatch latency while retention removes `expired` expired final jobs, beside the same
    latency in the same daemon and state just before, with retention having nothing to remove.

    The expired jobs are made by cancelling `expired` waiting jobs of a paused group, which
    makes them dead at once (running a million would take 7 to 8 minutes at ~2,200 jobs/s),
    and they expire by `keep-dead`: retention treats both final states alike (the same
    cutoffs, slices, records and file removal; a silent `true` job leaves no output files, a
    cancelled one none either).  The pass is the on-demand one (`Prune`, from a thread), which
    does what the background pass does, at once instead of within a minute."""
    with daemon() as (home, _, c):
        c.request(p.GroupAdd("parked"))
        c.request(p.Pause(["parked"]))
        t = time.perf_counter()
        for start in range(0, expired, 50_000):
            c.enqueue_specs([JobSpec(command="true", group="parked")] * min(50_000, expired - start), batch=50_000)
        enqueue_s = time.perf_counter() - t
        t = time.perf_counter()
        for _ in c.stream(p.Cancel(select=p.Selector(state="pending", group="parked"))):
            pass
        cancel_s = time.perf_counter() - t
        assert c.status().jobs["dead"] == expired
        c.worker_start(workers)
        # keep-dead is 0 (never): the background pass finds nothing to remove.
        quiet = latency_window(home, c, lambda _, sent: sent >= samples)
        finished: dict[str, float] = {}

        def prune() -> None:
            with Client(home, autostart=False) as pc:
                for frame in pc.stream(p.Prune()):
                    assert isinstance(frame, p.Changed)
                    finished["count"] = frame.count
            finished["at"] = time.perf_counter()

        c.config_set("keep-dead", "1s")
        pruner = threading.Thread(target=prune, name="prune")
        started = time.perf_counter()
        pruner.start()
        busy = latency_window(home, c, lambda status, _: status.jobs["dead"] == 0)
        removed_s = busy["ended"] - started
        pruner.join()
    return {"quiet": quiet, "busy": busy, "expired": expired, "removal_s": removed_s,
            "prune_reply_s": finished["at"] - started, "removed": finished.get("count", 0),
            "enqueue_s": enqueue_s, "cancel_s": cancel_s, "workers": workers}


# --- the measurements ---------------------------------------------------------------


def measure(args: argparse.Namespace) -> dict[str, Any]:
    r: dict[str, Any] = {"machine": {"cores": os.cpu_count(), "python": sys.version.split()[0],
                                     "load_at_start": os.getloadavg()[1]}}
    reps = 1 if args.quick else 3
    n_jobs = 2000 if args.quick else 10_000

    say(f"throughput: {n_jobs} trivial jobs on 4 workers, empty queue, each run beside a raw spawn run")
    # The spawn cost on a shared VM drifts by several times over seconds, so each queuectl run is
    # paired with a raw spawn run just before it, and the target is judged on the pairs' ratios.
    # xargs -P 4 and GNU parallel -j 4 run the same commands just before, paired the same way
    # (parallel, at a few hundred jobs a second, in the first `reps` rounds only).
    cores = os.cpu_count() or 1
    cmds = peers.commands_file(["true"] * n_jobs)
    parallel = None if args.no_peers else peers.ensure_parallel(say)
    raw_1: list[float] = []
    raw_all: list[float] = []
    rates: list[float] = []
    ratios: list[float] = []
    xargs: list[float] = []
    x_ratios: list[float] = []
    par: list[float] = []
    p_ratios: list[float] = []
    for i in range(max(reps, 5) if not args.quick else 1):
        xargs.append(n_jobs / peers.xargs_wall(cmds))
        if parallel is not None and i < reps:
            par.append(n_jobs / peers.parallel_wall(parallel, cmds))
        raw_1.append(raw_spawn_rate(1, 2000))
        raw_all.append(raw_spawn_rate(cores, 2000))
        with daemon() as (_, _, c):
            rates.append(drain_rate(c, n_jobs))
        ratios.append(rates[-1] / raw_all[-1])
        x_ratios.append(rates[-1] / xargs[-1])
        if len(par) > len(p_ratios):
            p_ratios.append(rates[-1] / par[-1])
    os.unlink(cmds)
    r["raw_spawn_1"] = median(raw_1)
    r["raw_spawn_all"] = median(raw_all)
    r["throughput_empty"] = median(rates)
    r["throughput_ratio"] = median(ratios)
    r["throughput_ratios"] = ratios
    r["xargs"] = {"drain": median(xargs), "ratio": median(x_ratios), "ratios": x_ratios}
    if par:
        r["parallel"] = {"drain": median(par), "ratio": median(p_ratios), "ratios": p_ratios}
    elif args.no_peers:
        r["parallel"] = {"skipped": "--no-peers"}
    else:
        r["parallel"] = {"skipped": "GNU parallel is not installed and cannot be (Debian package `parallel`, "
                                    "needs root and apt-get)"}

    n_sleep = 400 if args.quick else 2000
    say(f"overhead: {n_sleep} jobs of `sleep 0.01` on 4 workers, beside xargs -P 4 on the same")
    # (wall - ideal) / jobs, with ideal = jobs x 10 ms / 4; each queuectl run paired with an xargs run.
    ideal = n_sleep * 0.010 / 4
    cmds = peers.commands_file(["sleep 0.01"] * n_sleep)
    ours, theirs = [], []
    for _ in range(reps):
        theirs.append((peers.xargs_wall(cmds) - ideal) / n_sleep * 1e6)
        with daemon() as (_, _, c):
            ours.append((n_sleep / drain_rate(c, n_sleep, command="sleep 0.01") - ideal) / n_sleep * 1e6)
    os.unlink(cmds)
    r["overhead_10ms_us"] = median(ours)
    r["overhead_10ms_xargs_us"] = median(theirs)

    n_hi = 1000 if args.quick else 3000
    say(f"stall at depth: {n_hi} higher-priority jobs right after a batch enqueue of {args.depth} due jobs, "
        "a status probe every 5 ms")
    r["stall"] = stall_at_depth(args.depth, n_hi, reps)

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

    say("wait at depth: `queuectl wait` on the first 1,000 of 10,000 queued jobs, 4 workers")
    r["wait_lag_s"] = median([wait_lag(10_000 if not args.quick else 4000, 1000) for _ in range(reps)])

    r["groups"] = measure_groups(args)
    r["retention"] = measure_retention(args)
    r["deps"] = measure_deps(args)
    r["dashboard"] = measure_dashboard(args)
    r["pg"] = pg_bench.measure(args.depth, args.quick)

    if not args.no_peers:
        r["peers"] = peers.measure(n=1000 if args.quick else 3000, reps=reps, say=say)
    r["machine"]["load_at_end"] = os.getloadavg()[1]
    return r


def measure_groups(args: argparse.Namespace) -> dict[str, Any]:
    n = 2000 if args.quick else 5000
    reps = 1 if args.quick else 5
    say(f"groups: dispatch with 99 of 100 groups full or paused and {args.depth:,} jobs waiting in them: "
        f"{n:,} trivial jobs in the open group on 4 free workers, alternating with an empty queue's drain")
    return groups_dispatch(args.depth, n, reps)


def measure_retention(args: argparse.Namespace) -> dict[str, Any]:
    samples = 300 if args.quick else 1000
    say(f"retention while dispatching: enqueue-to-start latency of trivial jobs (one every 10 ms, 4 workers) "
        f"while {args.depth:,} expired jobs are removed, beside the same state with nothing to remove")
    return retention_dispatch(args.depth, samples)


def measure_dashboard(args: argparse.Namespace) -> dict[str, Any]:
    n = 2000 if args.quick else 10_000
    return dashboard_bench.measure(QUEUECTL, daemon, drain_rate, n, 1 if args.quick else 5,
                                   100 if args.quick else 300, say)


def deps_drains(n: int) -> dict[str, Any]:
    """A fan-in (n trivial jobs, then one `after` all of them, 4 workers) and a chain (n jobs, each `after`
    the one before: one runs at a time, so 1 worker), each beside the plain drain of n trivial jobs on the
    same number of workers, on a fresh daemon each, in the same run.  Rates count every job, the sink too."""
    out: dict[str, Any] = {"jobs": n}

    def run(specs: list[JobSpec], workers: int) -> tuple[float, float]:
        with daemon() as (_, _, c):
            t = time.perf_counter()
            for start in range(0, len(specs), 20_000):
                c.enqueue_specs(specs[start : start + 20_000])
            enqueue = len(specs) / (time.perf_counter() - t)
            return len(specs) / run_until_completed(c, len(specs), workers), enqueue

    plain = [JobSpec(command="true", id=f"p{i}") for i in range(n)]
    fan_in = [JobSpec(command="true", id=f"f{i}") for i in range(n)]
    fan_in.append(JobSpec(command="true", id="sink", after=[f"f{i}" for i in range(n)]))
    chain = [JobSpec(command="true", id="c0")]
    chain += [JobSpec(command="true", id=f"c{i}", after=[f"c{i - 1}"]) for i in range(1, n)]
    for name, specs, workers in (("plain_4", plain, 4), ("fan_in", fan_in, 4),
                                 ("plain_1", plain, 1), ("chain", chain, 1)):
        say(f"dependencies: {name.replace('_', ' ')}, {len(specs):,} jobs on {workers} worker(s)")
        out[name], out[f"{name}_enqueue"] = run(specs, workers)
    return out


def measure_deps(args: argparse.Namespace) -> dict[str, Any]:
    n = 10_000 if args.quick else args.deps_jobs
    return deps_drains(n)


def wait_lag(queued: int, watched: int) -> float:
    """Seconds from the last of `watched` jobs ending to `queuectl wait` on them returning."""
    with daemon() as (home, _, c):
        env = dict(os.environ, QUEUECTL_HOME=home, QUEUECTL_NO_AUTOSTART="1")
        ids = c.enqueue_many([{"command": "true"}] * queued)
        waiter = subprocess.Popen([QUEUECTL, "wait", *ids[:watched]], env=env, stdout=subprocess.DEVNULL)
        time.sleep(0.5)  # the wait has read its set before the first job starts (a bench, not a test)
        c.worker_start(4)
        waiter.wait()
        returned = time.time()
        last_end = max(c.show(job_id).finished_at or 0.0 for job_id in ids[:watched])
        return returned - last_end


def _timed(fn: Callable[[], object]) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


# --- the report ------------------------------------------------------------------------


def report(r: dict[str, Any], depth: int) -> str:
    raw = r["raw_spawn_all"]
    xargs, par, stall = r["xargs"], r["parallel"], r["stall"]
    groups, ret, deps = r["groups"], r["retention"], r["deps"]
    quiet, busy = ret["quiet"], ret["busy"]
    rows: list[tuple[str, str, str, float, float | None]] = [
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
        ("9 throughput against xargs -P 4", f"{xargs['ratio']:.0%}",
         f">= 90% of xargs {xargs['drain']:,.0f}/s (paired)", xargs["ratio"], 0.9),
        ("9 throughput against parallel -j 4",
         f"{par['ratio']:.0%}" if "ratio" in par else "skipped",
         f"parallel {par['drain']:,.0f}/s (paired)" if "drain" in par else par["skipped"][:30], 0.0, None),
        ("10 overhead per 10 ms job", f"{r['overhead_10ms_us']:,.0f} us",
         f"xargs -P 4: {r['overhead_10ms_xargs_us']:,.0f} us", 0.0, None),
        (f"11 drain after {stall['depth']:,} enqueued", f"{stall['deep']:,.0f} jobs/s",
         f">= 90% of empty {stall['empty']:,.0f}/s", stall["ratio"], 0.9),
        ("11   median of paired ratios", f"{stall['ratio']:.0%}", "each deep drain / its empty one",
         stall["ratio"], 0.9),
        ("11 worst status wait in it", f"{stall['worst_deep_ms']:,.1f} ms",
         f"<= 50 ms (empty: {stall['worst_empty_ms']:.1f} ms)", 50 / max(stall["worst_deep_ms"], 1e-9), 1.0),
        ("12 wait on 1,000 of 10,000 queued", f"{r['wait_lag_s']:.3f} s",
         "<= 0.5 s after its last job ended", 0.5 / max(r["wait_lag_s"], 1e-9), 1.0),
        ("13 drain, 99 of 100 groups closed", f"{groups['groups']:,.0f} jobs/s",
         f">= 90% of empty {groups['empty']:,.0f}/s", groups["ratio"], 0.9),
        ("13   median of paired ratios", f"{groups['ratio']:.0%}", "each groups drain / its empty one",
         groups["ratio"], 0.9),
        ("14 dispatch p99, retention running", f"{busy['p99_ms']:.2f} ms",
         f"<= 10 ms (5's bar); without {quiet['p99_ms']:.2f} ms", 10 / busy["p99_ms"], 1.0),
        ("14 dispatch p50, retention running", f"{busy['p50_ms']:.2f} ms",
         f"without: {quiet['p50_ms']:.2f} ms", 0.0, None),
        (f"14 removal of {ret['expired']:,} expired", f"{ret['removal_s']:.1f} s",
         f"{ret['expired'] / ret['removal_s']:,.0f} jobs/s", 0.0, None),
        (f"15 fan-in of {deps['jobs']:,} into one", f"{deps['fan_in']:,.0f} jobs/s",
         f"plain drain {deps['plain_4']:,.0f}/s, 4 workers", 0.0, None),
        (f"16 chain of {deps['jobs']:,}", f"{deps['chain']:,.0f} jobs/s",
         f"plain drain {deps['plain_1']:,.0f}/s, 1 worker", 0.0, None),
        *dashboard_rows(r.get("dashboard") or {"skipped": "not measured"}),
    ]
    out = [f"machine: {r['machine']['cores']} cores, Python {r['machine']['python']}; "
           f"raw spawn of sh -c true: {r['raw_spawn_1']:,.0f}/s from one loop, {raw:,.0f}/s from one per core",
           f"5-minute load average {r['machine']['load_at_start']:.1f} before the run, "
           f"{r['machine']['load_at_end']:.1f} at its end (this run's own work included)", ""]
    out.append(f"{'target':34} {'measured':>22}  {'bar':30} {'':6}")
    for name, value, bar, score, need in rows:
        verdict = "" if need is None else "meets" if score >= need else "MISSES"
        out.append(f"{name:34} {value:>22}  {bar:30} {verdict}")
    out += ["", groups_report(groups), retention_report(ret), deps_report(deps),
            dashboard_bench.report(r.get("dashboard") or {"skipped": "not measured"}),
            "", pg_bench.report(r.get("pg") or {"skipped": "not measured"})]
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
    out.append(f"{'xargs -P 4 -n 1 sh -c':24} {xargs['drain']:>14,.0f} {'-':>16}   (C, no queue, nothing kept)")
    if "drain" in par:
        out.append(f"{'GNU parallel -j 4':24} {par['drain']:>14,.0f} {'-':>16}   (Perl, no queue, nothing kept)")
    else:
        out.append(f"{'GNU parallel -j 4':24} skipped: {par['skipped']}")
    return "\n".join(out)


def dashboard_rows(d: dict[str, Any]) -> list[tuple[str, str, str, float, float | None]]:
    if "skipped" in d:
        return [("17 throughput, dashboard open", "skipped", d["skipped"][:30], 0.0, None)]
    return [
        ("17 throughput, dashboard open", f"{d['watched']:,.0f} jobs/s",
         f">= 95% of without {d['plain']:,.0f}/s (paired)", d["ratio"], 0.95),
        ("17   median of paired ratios", f"{d['ratio']:.0%}", "each run with / the run without before it",
         d["ratio"], 0.95),
        ("18 dispatch p99, dashboard open", f"{d['dispatch_p99_ms']:.2f} ms",
         f"<= 10 ms; without {d['dispatch_quiet_p99_ms']:.2f} ms", 10 / d["dispatch_p99_ms"], 1.0),
    ]


def stall_report(s: dict[str, Any]) -> str:
    each = ", ".join(f"{x:.0%}" for x in s["ratios"])
    worst = ", ".join(f"{x:,.1f}" for x in s["worst_deep_each_ms"])
    return (f"drain of {s['jobs']:,} higher-priority jobs right after a batch enqueue of {s['depth']:,}: "
            f"{s['deep']:,.0f} jobs/s against {s['empty']:,.0f}/s on the empty queue "
            f"(median of paired ratios {s['ratio']:.0%}: {each})\n"
            f"worst status wait during it: {s['worst_deep_ms']:,.1f} ms (each run: {worst} ms); "
            f"on the empty queue: {s['worst_empty_ms']:.1f} ms")


def deps_report(d: dict[str, Any]) -> str:
    n = d["jobs"]
    return (f"dependencies: a fan-in of {n:,} trivial jobs into one (the sink `after` all of them) drains at "
            f"{d['fan_in']:,.0f} jobs/s on 4 workers against {d['plain_4']:,.0f}/s for {n:,} jobs without "
            f"dependencies ({d['fan_in'] / d['plain_4']:.0%}); a chain of {n:,} (each `after` the one before, so "
            f"one at a time) runs at {d['chain']:,.0f} jobs/s on 1 worker against {d['plain_1']:,.0f}/s "
            f"without ({d['chain'] / d['plain_1']:.0%})\n"
            f"  enqueue, 20,000 a request: fan-in {d['fan_in_enqueue']:,.0f} jobs/s, chain "
            f"{d['chain_enqueue']:,.0f} jobs/s, plain {d['plain_4_enqueue']:,.0f} jobs/s")


def groups_report(g: dict[str, Any]) -> str:
    each = ", ".join(f"{x:.0%}" for x in g["ratios"])
    return (f"groups: dispatch with {g['group_count'] - 1} of {g['group_count']} groups full or paused and "
            f"{g['waiting']:,} jobs waiting ({g['full']} groups of parallel 1 each running a `sleep 600`, "
            f"{g['paused']} paused; the pool {g['workers']} + {g['full']}): {g['jobs']:,} trivial jobs in the open "
            f"group drain at {g['groups']:,.0f} jobs/s against {g['empty']:,.0f}/s on an empty queue with "
            f"{g['workers']} workers (median of paired ratios {g['ratio']:.0%}: {each})\n"
            f"  enqueue of the {g['waiting']:,} waiting jobs, 50,000 a request spread over {g['group_count'] - 1} "
            f"groups: {g['enqueue_rate']:,.0f} jobs/s; status: {g['status_groups_ms']:.2f} ms with the groups, "
            f"{g['status_empty_ms']:.2f} ms empty")


def retention_report(t: dict[str, Any]) -> str:
    quiet, busy = t["quiet"], t["busy"]
    return (f"retention while dispatching: {t['expired']:,} expired jobs (dead, cancelled while waiting) "
            f"removed in {t['removal_s']:.1f} s ({t['expired'] / t['removal_s']:,.0f} jobs/s; the prune's reply "
            f"of their ids came {t['prune_reply_s']:.1f} s after it was sent)\n"
            f"  enqueue to start, one `true` job every 10 ms on {t['workers']} workers: "
            f"p50 {busy['p50_ms']:.2f} ms, p99 {busy['p99_ms']:.2f} ms, max {busy['max_ms']:.1f} ms "
            f"({busy['samples']} jobs) while it ran; p50 {quiet['p50_ms']:.2f} ms, p99 {quiet['p99_ms']:.2f} ms, "
            f"max {quiet['max_ms']:.1f} ms ({quiet['samples']} jobs) just before, nothing to remove\n"
            f"  enqueue reply (fsynced) p50 {busy['enqueue_p50_ms']:.2f} ms, p99 {busy['enqueue_p99_ms']:.2f} ms "
            f"against {quiet['enqueue_p50_ms']:.2f} / {quiet['enqueue_p99_ms']:.2f} ms; "
            f"worst status wait {busy['worst_status_ms']:.1f} ms against {quiet['worst_status_ms']:.1f} ms\n"
            f"  set-up: {t['expired']:,} jobs enqueued into one paused group in {t['enqueue_s']:.1f} s "
            f"({t['expired'] / t['enqueue_s']:,.0f} jobs/s, 50,000 a request), cancelled in {t['cancel_s']:.1f} s")


def drain_rates(r: dict[str, Any]) -> dict[str, float]:
    """Trivial jobs per second on 4 workers or slots, empty queue: queuectl and every baseline run."""
    rates = {"queuectl": r["throughput_empty"]}
    for name, v in (r.get("peers") or {}).items():
        if "drain" in v:
            rates[name.split(" (")[0]] = v["drain"]
    rates["xargs -P 4"] = r["xargs"]["drain"]
    if "drain" in r["parallel"]:
        rates["parallel -j 4"] = r["parallel"]["drain"]
    return rates


def chart(r: dict[str, Any], path: str) -> str | None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return "matplotlib is not installed: no chart (pip install matplotlib)"
    fig, (ax, bars) = plt.subplots(1, 2, figsize=(12, 4.2), gridspec_kw={"width_ratios": [3, 2]})
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
    rates = drain_rates(r)
    bars.bar(list(rates), list(rates.values()), color=["C0"] + ["C7"] * (len(rates) - 1))
    bars.axhline(r["raw_spawn_all"], color="grey", linestyle=":")
    bars.set_ylabel("trivial jobs run per second")
    bars.set_title("Drain rate, empty queue, 4 workers or slots")
    bars.tick_params(axis="x", labelrotation=20)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return None


def main() -> None:
    ap = argparse.ArgumentParser(description="queuectl benchmarks")
    ap.add_argument("--quick", action="store_true", help="fewer repeats and smaller runs")
    ap.add_argument("--no-peers", action="store_true", help="skip task-spooler, huey and GNU parallel")
    ap.add_argument("--depth", type=int, default=1_000_000, help="jobs waiting for the depth figures")
    only = ap.add_mutually_exclusive_group()
    only.add_argument("--stall-only", action="store_true",
                      help="only the drain right after a batch enqueue of --depth jobs, and the status probe")
    only.add_argument("--groups-only", action="store_true",
                      help="only the drain in the one open group of 100, --depth jobs waiting in the others")
    only.add_argument("--retention-only", action="store_true",
                      help="only the dispatch latency while retention removes --depth expired jobs")
    only.add_argument("--deps-only", action="store_true",
                      help="only the fan-in and the chain of --deps-jobs jobs, beside plain drains")
    only.add_argument("--dashboard-only", action="store_true",
                      help="only the throughput and dispatch latency with a dashboard and two chromium tabs open")
    only.add_argument("--pg-only", action="store_true",
                      help="only the PostgreSQL store's figures (bench/pg.py), beside their baselines")
    ap.add_argument("--deps-jobs", type=int, default=100_000, help="jobs in the fan-in and in the chain")
    args = ap.parse_args()
    if args.stall_only:
        print(stall_report(stall_at_depth(args.depth, 1000 if args.quick else 3000, 1 if args.quick else 3)))
        return
    if args.groups_only:
        print(groups_report(measure_groups(args)))
        return
    if args.retention_only:
        print(retention_report(measure_retention(args)))
        return
    if args.deps_only:
        print(deps_report(measure_deps(args)))
        return
    if args.dashboard_only:
        print(dashboard_bench.report(measure_dashboard(args)))
        return
    if args.pg_only:
        r = pg_bench.measure(args.depth, args.quick)
        os.makedirs(RESULTS, exist_ok=True)
        with open(os.path.join(RESULTS, "pg.json"), "w") as f:
            json.dump(r, f, indent=2, default=str)
        print(pg_bench.report(r))
        return
    r = measure(args)
    os.makedirs(RESULTS, exist_ok=True)
    with open(os.path.join(RESULTS, "results.json"), "w") as f:
        json.dump(r, f, indent=2, default=str)
    problem = chart(r, os.path.join(RESULTS, "throughput.png"))
    print(report(r, args.depth))
    print(f"\nwrote {RESULTS}/results.json" + (f"; {problem}" if problem else f" and {RESULTS}/throughput.png"))


if __name__ == "__main__":
    main()
