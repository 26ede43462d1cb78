"""Retention: finished jobs older than `keep-completed` / `keep-dead` go, with their output.

A ranged delete, in bounded slices: each slice is one journal record of at
most SLICE jobs, and the loop serves everything else between two slices, so
a million expired jobs never stall dispatch.  The daemon runs a pass at
start and every PERIOD seconds; `queuectl prune` runs one on demand.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from typing import Protocol

from queuectl_client import protocol as p

from .bus import Bus, Deleted
from .rules import COMPLETED, DEAD
from .store import Store

log = logging.getLogger("queuectld.retention")

PERIOD = 60.0  # seconds between two passes
SLICE = 1000  # jobs per journal record


class Forgetting(Protocol):
    def forget(self, job_ids: list[str]) -> None: ...


class Retention:
    def __init__(self, store: Store, pool: Forgetting, bus: Bus) -> None:
        self.store = store
        self.pool = pool
        self.bus = bus
        self.last_at: float | None = None
        self.last_removed: Counter[str] = Counter()
        self.total_removed: Counter[str] = Counter()
        self._task: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()  # one pass at a time

    def cutoffs(self, at: float, state: str | None = None, older_than: float | None = None) -> dict[str, float]:
        """Per final state, the finish time before which its jobs go: `older_than`, or the settings (0: never)."""
        config = self.store.config
        keep = {COMPLETED: config.keep_completed, DEAD: config.keep_dead}
        states = (state,) if state else (COMPLETED, DEAD)
        if older_than is not None:
            return {s: at - older_than for s in states}
        return {s: at - keep[s] for s in states if keep[s] > 0}

    async def run(self, before: dict[str, float]) -> list[str]:
        """Remove what `before` names, a slice at a time; returns the ids removed."""
        removed: list[str] = []
        counts: Counter[str] = Counter()
        async with self._lock:
            for state, cutoff in before.items():
                while ids := await self.store.prune({state: cutoff}, SLICE):
                    counts[state] += len(ids)
                    for job_id in ids:
                        self.bus.publish(Deleted(job_id))
                    self.pool.forget(ids)
                    removed += ids
                    await asyncio.sleep(0)  # let dispatch and requests in between slices
            self.last_at = time.time()
            self.last_removed = counts
            self.total_removed.update(counts)
        if removed:
            log.info("retention removed %s", ", ".join(f"{n} {s}" for s, n in counts.items()))
        return removed

    def info(self) -> p.Retention:
        return p.Retention(self.last_at, dict(self.last_removed), dict(self.total_removed))

    # -- the background pass ---------------------------------------------------------

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._every(), name="retention")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.wait([self._task])

    async def _every(self) -> None:
        while True:
            try:
                await self.store.trim_audit(time.time())  # the audit trail follows keep-dead too
                before = self.cutoffs(time.time())
                if before:
                    await self.run(before)
                else:
                    self.last_at = time.time()
                    self.last_removed = Counter()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("the retention pass failed; the next one comes in %g s", PERIOD)
            await asyncio.sleep(PERIOD)
