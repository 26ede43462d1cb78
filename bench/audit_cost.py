"""What the audit trail and the command policy cost, in the daemon's own structures.

    .venv/bin/python bench/audit_cost.py [--daemon]

Prints: the bytes `by` adds to an `Added` record, the cost of setting the request's actor, the cost of
applying a person's record (noted) against the daemon's own, the memory and snapshot size of
100,000 entries, and the policy's cost per command.  With --daemon, also batch enqueues of 100,000
distinct commands to real daemons, with and without a policy of 10 patterns, alternating (the median
of 4 runs each).
"""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import timeit
import tracemalloc

import msgspec

from queuectl_client import Client
from queuectl_client.protocol import JobSpec
from queuectld import events as ev
from queuectld import rules
from queuectld.audit import Actor, actor
from queuectld.policy import Policy, parse
from queuectld.queue import Queue

N = 100_000


def added_bytes() -> tuple[int, int, int]:
    q = Queue()
    one = ev.Added(1.0, rules.new_jobs([JobSpec(id="x", command="echo hi")], 1.0, q.config))
    by = Actor(time.time(), 1000, "cli", "Enqueue")
    return len(ev.encoder.encode(one)), len(ev.encoder.encode(msgspec.structs.replace(one, by=by))), len(
        msgspec.msgpack.encode(by))


def actor_us() -> float:
    def request() -> None:
        token = actor.set(Actor(time.time(), 1000, "cli", "Enqueue"))
        actor.reset(token)

    return timeit.timeit(request, number=N) / N * 1e6


def apply_us(by: Actor | None) -> float:
    q = Queue()
    records = [ev.ConfigChanged("max-retries", str(i % 9), by) for i in range(N)]
    start = time.perf_counter()
    for r in records:
        q.apply(r)
    return (time.perf_counter() - start) / N * 1e6


def entries() -> tuple[float, int, float]:
    q = Queue()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    for i in range(N):
        q.trail.note(ev.Cancelled([f"job-{i:08d}"], float(i), Actor(float(i), 1000, "cli", "Cancel")))
    per_entry = (tracemalloc.get_traced_memory()[0] - before) / N
    tracemalloc.stop()
    size = sum(len(ev.encoder.encode(r)) for r in q.trail.snapshot())
    start = time.perf_counter()
    q.trail.since(0.0)
    return per_entry, size, (time.perf_counter() - start) * 1e3


def policy_us() -> tuple[float, float]:
    pol = Policy("p", parse("\n".join([f"/usr/bin/tool{i} *" for i in range(9)] + ["re:echo [0-9]+"]), "p"))
    distinct = [f"echo {i}" for i in range(N)]
    start = time.perf_counter()
    assert pol.first_refused(distinct) is None
    per_command = (time.perf_counter() - start) / N * 1e6
    start = time.perf_counter()
    pol.first_refused(["echo 5"] * N)
    return per_command, (time.perf_counter() - start) * 1e3


PATTERNS = "\n".join([f"/usr/bin/tool{i} *" for i in range(9)] + ["re:echo [0-9]+"]) + "\n"


def enqueue_rate(policy: bool) -> float:
    """Jobs/s of a batch of N distinct commands to a fresh daemon (the median of 3 batches)."""
    home = tempfile.mkdtemp(prefix="qb-", dir="/tmp")
    args = [os.path.join(os.path.dirname(sys.executable), "queuectld"), "--home", home, "--workers", "0"]
    if policy:
        with open(os.path.join(home, "allow"), "w") as f:
            f.write(PATTERNS)
        args += ["--allow-commands", os.path.join(home, "allow")]
    daemon = subprocess.Popen(args, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        while not os.path.exists(os.path.join(home, "queuectld.sock")) and time.monotonic() < deadline:
            time.sleep(0.05)
        times = []
        with Client(home, autostart=False) as c:
            for r in range(3):
                jobs = [{"command": f"echo {r}{i}"} for i in range(N)]
                start = time.perf_counter()
                c.enqueue_many(jobs)
                times.append(time.perf_counter() - start)
        return N / statistics.median(times)
    finally:
        daemon.terminate()
        daemon.wait()
        shutil.rmtree(home, ignore_errors=True)


def main() -> None:
    plain, stamped, by = added_bytes()
    print(f"Added of one job: {plain} B, with by {stamped} B (an Actor: {by} B, once per batch)")
    print(f"setting the request's actor: {actor_us():.2f} us per request")
    print(f"applying ConfigChanged: {apply_us(None):.2f} us (the daemon's), "
          f"{apply_us(Actor(1.0, 1000, 'cli', 'ConfigSet')):.2f} us (a person's: noted)")
    per_entry, size, scan = entries()
    print(f"{N:,} entries: {per_entry:.0f} B each in memory, {size / 1e6:.1f} MB in a snapshot, {scan:.1f} ms to list")
    distinct, same = policy_us()
    print(f"policy of 10 patterns, the last matching: {distinct:.2f} us per distinct command; "
          f"{N:,} copies of one command: {same:.1f} ms")
    if "--daemon" in sys.argv[1:]:
        rates: dict[bool, list[float]] = {False: [], True: []}
        for policy in (False, True) * 4:
            rates[policy].append(enqueue_rate(policy))
        for policy, found in rates.items():
            print(f"batch enqueue, {'a policy of 10 patterns' if policy else 'no policy':>23}: median "
                  f"{statistics.median(found):,.0f} jobs/s (runs: {', '.join(f'{r:,.0f}' for r in found)})")


if __name__ == "__main__":
    main()
