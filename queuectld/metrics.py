"""Handlers that report what the queue did: `Stats` (per group, over a window of minutes) and
`Metrics` (the numbers behind the Prometheus exposition).

Both read the kept stats and the store's counters: their cost grows with
the groups and the minutes asked for, never with the jobs.
"""

from __future__ import annotations

import logging
import platform
import time
from typing import Any

from queuectl_client import protocol as p
from queuectl_client.wire import VERSION

from . import stats as st
from .rules import QueueError
from .store import Store

log = logging.getLogger("queuectld.stats")

# The fdatasync histogram's edges, in seconds: from a fast SSD's 100 µs to a stalled disk's 10 s.
FSYNC_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                 10.0)


class Observer:
    def __init__(self, store: Store, pool: Any, stats: st.Stats, started_at: float) -> None:
        self.store = store
        self.pool = pool  # handlers.PoolControl
        self.stats = stats
        self.started_at = started_at
        self.python = platform.python_version()
        self.table: dict[type, Any] = {p.Stats: self.window, p.Metrics: self.metrics}

    async def window(self, req: p.Stats, conn: Any) -> p.Message:
        now = time.time()
        stats = await self._cluster(now)
        names = [g.name for g in await self.store.groups()]
        if req.group is not None:
            if req.group not in names:
                raise QueueError("not_found", f"no group named {req.group!r}")
            names = [req.group]
        out = []
        for name in names:
            w = stats.window(name, now, req.since)
            completed, failed, dead = w.ends
            total = completed + failed + dead
            minutes: list[p.Minute] = []
            if req.minutes:
                last = int(now // 60)
                seen = {m.minute: m for m in w.minutes}
                for minute in range(last - int(-(-req.since // 60)) + 1, last + 1):
                    m = seen.get(minute)
                    minutes.append(p.Minute(minute * 60.0, *(m.ends if m else (0, 0, 0))))
            out.append(p.GroupStats(
                name, completed, failed, dead, completed / total if total else None,
                w.duration(0.5), w.duration(0.95), w.duration(0.99), w.wait(0.5), w.wait(0.95), minutes,
            ))
        return p.StatsReply(req.since, now, out, stats.began)

    async def _cluster(self, now: float) -> st.Stats:
        """This node's stats, with those the other nodes sharing the store saved last (a store of
        one node: this node's alone)."""
        parts = [self.stats]
        for blob in await self.store.other_stats():
            try:
                parts.append(st.decode(blob, now))
            except st.StatsFileError as e:
                log.debug("another node's saved stats are unreadable: %s", e)
        return parts[0] if len(parts) == 1 else st.combined(parts)

    async def metrics(self, req: p.Metrics, conn: Any) -> p.Message:
        now = time.time()
        bounds = list(self.store.config.metrics_buckets)
        oldest = await self.store.oldest_due(now)
        groups = []
        for g in await self.store.groups():
            kept = self.stats.groups.get(g.name) or st.GroupStats()
            due = oldest.get(g.name)
            groups.append(p.GroupMetrics(
                g.name, dict(g.jobs), dict(zip(st.OUTCOMES, kept.ends, strict=True)),
                histogram(kept.duration, bounds), histogram(kept.wait, bounds),
                max(0.0, now - due) if due is not None else None,
            ))
        return p.MetricsReply(
            VERSION, self.started_at, self.store.pool_size, self.pool.busy, self.store.disk_bytes(),
            histogram(self.stats.fsync, list(FSYNC_BUCKETS)), groups, self.python, now,
        )


def histogram(totals: st.Totals, bounds: list[float]) -> p.Histogram:
    """The totals at these bucket edges (each rounded to its nearest grid edge)."""
    counts = totals.cumulative(bounds)
    return p.Histogram(bounds, counts, totals.count, totals.sum)
