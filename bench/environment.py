"""The enqueuer's environment: memory per waiting job and the CLI's batch enqueue rate.

Each figure is measured on one daemon of the code this file's tree holds:
  - RSS per waiting job: a daemon's RSS after --depth jobs (enqueued through
    the Python API in batches of 100,000, so sharing one environment), less
    its RSS when empty; and again after a restart (the jobs replayed);
  - the rate of `queuectl enqueue -` for --lines JSON lines (one environment
    for the whole batch), --reps times.

    .venv/bin/python bench/environment.py [--depth 1000000] [--lines 300000] [--reps 3]
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time
from statistics import median

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench.run import QUEUECTL, QUEUECTLD, daemon, rss_bytes, wait_answer
from queuectl_client import Client
from queuectl_client.protocol import JobSpec


def memory(depth: int) -> tuple[float, float]:
    with daemon() as (home, proc, c):
        rss0 = rss_bytes(proc.pid)
        for start in range(0, depth, 100_000):
            c.enqueue_specs([JobSpec(command="true", delay=86400.0)] * min(100_000, depth - start), batch=100_000)
        live = (rss_bytes(proc.pid) - rss0) / depth
        c.close()
        proc.send_signal(signal.SIGTERM)
        proc.wait(120)
        log = open(os.path.join(home, "queuectld.log"), "ab")
        again = subprocess.Popen([QUEUECTLD, "--home", home, "--workers", "0"], stdout=log, stderr=log)
        try:
            client = Client(home, autostart=False)
            wait_answer(client, again, timeout=600)
            replayed = (rss_bytes(again.pid) - rss0) / depth
            client.close()
        finally:
            again.send_signal(signal.SIGTERM)
            again.wait(120)
            log.close()
    return live, replayed


def enqueue_rate(lines: int) -> float:
    path = tempfile.mktemp(prefix="qc-lines-", suffix=".jsonl")
    with open(path, "w") as f:
        f.writelines(f'{{"command": "echo {i}", "delay": 86400}}\n' for i in range(lines))
    try:
        with daemon() as (home, _, _):
            env = dict(os.environ, QUEUECTL_HOME=home, QUEUECTL_NO_AUTOSTART="1")
            t = time.perf_counter()
            with open(path, "rb") as f:
                subprocess.run([QUEUECTL, "enqueue", "-"], stdin=f, stdout=subprocess.DEVNULL, env=env, check=True)
            return lines / (time.perf_counter() - t)
    finally:
        os.unlink(path)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--depth", type=int, default=1_000_000)
    ap.add_argument("--lines", type=int, default=300_000)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--only", choices=("memory", "rate"))
    args = ap.parse_args()
    if args.only != "rate":
        live, replayed = memory(args.depth)
        print(f"memory: {live:,.0f} B per waiting job live, {replayed:,.0f} B after a restart ({args.depth:,} jobs)")
    if args.only != "memory":
        rates = [enqueue_rate(args.lines) for _ in range(args.reps)]
        print(f"enqueue -: {median(rates):,.0f} jobs/s median of {', '.join(f'{r:,.0f}' for r in rates)} "
              f"({args.lines:,} lines)")


if __name__ == "__main__":
    main()
