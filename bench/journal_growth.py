"""How big the journal gets against the live state over a long run of churn.

Each round enqueues a batch of jobs, runs them to completion, and deletes
most of them, so the live state stays small while the number of records
written grows without bound.  Prints the journal's size on disk next to the
size of its snapshot (the live state) after every tenth round.

    .venv/bin/python bench/journal_growth.py [--rounds 200] [--batch 1000]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time

from queuectl_client import Client

BIN = os.path.dirname(sys.executable)


def dir_sizes(path: str) -> dict[str, int]:
    return {n: os.path.getsize(os.path.join(path, n)) for n in os.listdir(path)
            if os.path.isfile(os.path.join(path, n))}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=200)
    ap.add_argument("--batch", type=int, default=1000)
    ap.add_argument("--keep", type=int, default=20, help="jobs kept (not deleted) per round")
    ap.add_argument("--compact-min", default="4M", help="the daemon's --compact-min")
    args = ap.parse_args()
    home = tempfile.mkdtemp(prefix="qc-bench-", dir="/tmp")
    daemon = subprocess.Popen([os.path.join(BIN, "queuectld"), "--home", home, "--workers", "4",
                               "--compact-min", args.compact_min],
                              stderr=open(os.path.join(home, "queuectld.log"), "w"))
    try:
        c = Client(home, autostart=False)
        deadline = time.monotonic() + 10
        while True:
            try:
                c.status()
                break
            except Exception:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        print(f"{'round':>5} {'records':>9} {'live jobs':>9} {'journal':>10} {'snapshot':>10} {'ratio':>6}")
        for r in range(1, args.rounds + 1):
            ids = c.enqueue_many([{"command": "true"} for _ in range(args.batch)])
            while c.status().jobs["completed"] < args.keep * (r - 1) + args.batch:
                time.sleep(0.01)
            for job_id in ids[args.keep:]:
                c.delete(job_id)
            if r % 10 == 0 or r == args.rounds:
                sizes = dir_sizes(os.path.join(home, "journal"))
                total = sum(sizes.values())
                snap = sum(v for k, v in sizes.items() if k.startswith("snap-"))
                live = sum(c.status().jobs.values())
                records = r * (1 + 2 * args.batch + args.batch - args.keep)  # add, start, end, delete
                ratio = f"{total / snap:5.1f}x" if snap else "   - "
                print(f"{r:5d} {records:9d} {live:9d} {total:10d} {snap:10d} {ratio}")
        c.close()
    finally:
        daemon.terminate()
        daemon.wait()
        shutil.rmtree(home, ignore_errors=True)


if __name__ == "__main__":
    main()
