"""Where the daemon's loop goes during a drain right after a large batch enqueue: py-spy on it.

Starts a daemon, enqueues --depth `true` jobs in batches of 100,000, then
--jobs jobs of higher priority, and records the daemon with py-spy from just
before 4 workers start until those jobs have run.  Prints the functions with
the most samples (inclusive, on the loop's thread), the share of compaction,
and the worst `status` wait seen by a probe every 5 ms.

    .venv/bin/pip install py-spy
    .venv/bin/python bench/profile_depth.py [--depth 1000000] [--jobs 3000] [--raw out.txt]
"""

from __future__ import annotations

import argparse
import collections
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench.run import Probe, daemon, run_until_completed
from queuectl_client.protocol import JobSpec


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--depth", type=int, default=1_000_000)
    ap.add_argument("--jobs", type=int, default=3000)
    ap.add_argument("--raw", help="keep py-spy's collapsed stacks in this file")
    ap.add_argument("--top", type=int, default=25)
    args = ap.parse_args()
    spy = shutil.which("py-spy", path=os.path.dirname(sys.executable)) or shutil.which("py-spy")
    if spy is None:
        sys.exit("py-spy is not installed: .venv/bin/pip install py-spy")
    raw = args.raw or tempfile.mktemp(prefix="qc-spy-", suffix=".txt")
    with daemon() as (home, proc, c):
        for start in range(0, args.depth, 100_000):
            c.enqueue_specs([JobSpec(command="true")] * min(100_000, args.depth - start), batch=100_000)
        c.enqueue_specs([JobSpec(command="true", priority=1)] * args.jobs)
        rec = subprocess.Popen([spy, "record", "-p", str(proc.pid), "-r", "500", "--format", "raw", "-o", raw,
                                "--idle", "--nonblocking"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(1.0)  # py-spy attaches
        with Probe(home) as probe:
            elapsed = run_until_completed(c, args.jobs)
        rec.send_signal(signal.SIGINT)
        rec.wait(60)
        with open(os.path.join(home, "queuectld.log")) as f:
            compactions = [line.strip() for line in f if "compacted" in line]
    print(f"{args.jobs:,} jobs after {args.depth:,}: {args.jobs / elapsed:,.0f} jobs/s; "
          f"worst status wait {probe.worst_ms:,.1f} ms")
    for line in compactions:
        print("daemon log:", line)
    summarize(raw, args.top)
    if not args.raw:
        os.unlink(raw)


def summarize(path: str, top: int) -> None:
    """Inclusive samples per function on the loop's thread, its idle share, and compaction's share."""
    stacks: list[tuple[list[str], int]] = []
    with open(path) as f:
        for line in f:
            stack, _, count = line.rstrip().rpartition(" ")
            frames = stack.split(";")
            if "Runner.run (asyncio/runners.py" in stack:  # the loop's thread, not the executor's
                stacks.append((frames, int(count)))
    total = sum(n for _, n in stacks)
    # Idle: waiting in the selector (asyncio's loop) or in uvloop's C loop, under no Python frame.
    idle = sum(n for frames, n in stacks if frames[-1].startswith(("select (selectors.py", "Runner.run (")))
    incl: collections.Counter[str] = collections.Counter()
    lines: collections.Counter[str] = collections.Counter()
    for frames, n in stacks:
        for name in {f.rsplit(":", 1)[0] + ")" for f in frames}:  # per function, not per line
            incl[name] += n
        for name in set(frames):
            if name.startswith("Queue."):
                lines[name] += n
    busy = total - idle
    print(f"\nthe loop: {total} samples, {idle} ({idle / total:.0%}) idle in select, {busy} busy")
    compaction = sum(n for name, n in incl.items() if name.startswith("Journal.compact "))
    print(f"compaction on the loop: {compaction} samples ({compaction / max(busy, 1):.1%} of busy)")
    print("inclusive samples per function, share of the loop's busy samples:")
    for name, n in incl.most_common(top):
        if not name.startswith(("select (selectors.py", "Runner.run (", "<module> (", "entry (", "main (")):
            print(f"{n:7} {n / max(busy, 1):6.1%}  {name}")
    print("the queue's lines:")
    for name, n in lines.most_common(12):
        print(f"{n:7} {n / max(busy, 1):6.1%}  {name}")


if __name__ == "__main__":
    main()
