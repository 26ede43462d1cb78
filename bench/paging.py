"""What a page of the dashboard's job table costs the daemon, at the top and deep down.

A real daemon is filled with `--depth` waiting jobs; then the Page request
(50 jobs, newest first) is timed over the socket at depth 0 and at 90% of the
depth, with a search (which looks at 20,000 jobs), and the first page, which
builds the daemon's entry logs.  Memory: the daemon's RSS before and after that
first page, per job, and the logs' own allocations in a queue built in this process.

    .venv/bin/python bench/paging.py [--depth 1000000] [--reps 51]

Nothing here is a pass/fail test: it reports.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench.run import daemon, fill, rss_bytes
from queuectl_client import protocol as p


def timed(fn: Callable[[], Any]) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def traced_bytes_per_job(n: int) -> float:
    """The entry logs' own allocations per job, in a queue of n waiting jobs built in this process."""
    import tracemalloc

    from queuectld import events as ev
    from queuectld.model import NewJob
    from queuectld.order import paged
    from queuectld.queue import Queue

    q = Queue()
    for start in range(0, n, 50_000):
        q.apply(ev.Added(0.0, [NewJob(f"w{i}", "true", 0, 0, None, None) for i in range(start, min(n, start + 50_000))]))
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    paged(q, "pending", None, None, None, 50, 20_000)
    used = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    return used / n


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--depth", type=int, default=1_000_000)
    ap.add_argument("--reps", type=int, default=51)
    args = ap.parse_args()
    r: dict[str, Any] = {"depth": args.depth}
    with daemon() as (_, proc, c):
        fill(c, args.depth)
        rss0 = rss_bytes(proc.pid)
        r["first_page_ms"] = timed(lambda: c.request(p.Page(state="pending"))) * 1000
        r["index_rss_bytes_per_job"] = (rss_bytes(proc.pid) - rss0) / args.depth
        # Newest first: the cursor of the job at depth d is its entry's number, depth - d (see order.py).
        deep = args.depth - int(args.depth * 0.9)
        for name, cursor in (("page_depth0_ms", None), ("page_depth90pct_ms", f"pending:{deep}")):
            reply = c.request(p.Page(state="pending", cursor=cursor))
            assert len(reply.jobs) == 50, reply
            r[name] = statistics.median(timed(lambda: c.request(p.Page(state="pending", cursor=cursor)))
                                        for _ in range(args.reps)) * 1000
        r["first_deep_id"] = c.request(p.Page(state="pending", cursor=f"pending:{deep}")).jobs[0].id
        r["status_ms"] = statistics.median(timed(c.status) for _ in range(args.reps)) * 1000
        r["search_ms"] = statistics.median(timed(lambda: c.request(p.Page(query="no such text")))
                                           for _ in range(max(5, args.reps // 5))) * 1000
    r["index_traced_bytes_per_job"] = traced_bytes_per_job(args.depth)
    print(json.dumps(r, indent=2))


if __name__ == "__main__":
    main()
