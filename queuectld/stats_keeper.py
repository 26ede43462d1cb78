"""Keeps the run stats across restarts: read at start, saved at most once a minute and at a stop.

The store keeps the file (the journal-backed store: `stats` in the journal's
directory, written to a temporary file, synced and renamed into place).  A
save encodes on the loop and writes in a worker thread, and only when
something changed since the last one.  A file that is missing, truncated,
damaged or of a later version is logged, and the stats start empty: the
stats never keep the daemon from starting.  A crash loses what ended since
the last save: at most a minute of stats.
"""

from __future__ import annotations

import asyncio
import logging
import time

from . import faults
from .stats import Stats, StatsFileError, decode, encode
from .store import Store

log = logging.getLogger("queuectld.stats")

SAVE_PERIOD = 60.0  # seconds between saves, at most one a period


class Keeper:
    def __init__(self, store: Store) -> None:
        self.store = store
        self.stats = self.load()
        self.period = faults.stats_every or SAVE_PERIOD
        self._task: asyncio.Task[None] | None = None
        self._writing: asyncio.Future[None] | None = None  # the write in its thread, until it ends

    def load(self) -> Stats:
        try:
            data = self.store.load_stats()
        except OSError as e:
            log.warning("cannot read the run stats file (%s); the stats start empty", e.strerror or e)
            return Stats()
        if data is None:
            return Stats()
        try:
            return decode(data, time.time())
        except StatsFileError as e:
            log.warning("the run stats file is unreadable: %s; the stats start empty", e)
            return Stats()

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="stats")

    async def close(self) -> None:
        """Stop saving periodically, and save what changed (a clean stop loses nothing)."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.wait([self._task])
            self._task = None
        await self.save()

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.period)
            await self.save()

    async def save(self) -> None:
        """Write the stats if they changed; one write at a time, each to its end even if the
        caller is cancelled (the next one replaces the file it wrote)."""
        if self._writing is not None:
            await asyncio.wait([self._writing])
        stats = self.stats
        if not stats.changed:
            return
        try:
            stats.forget({g.name for g in await self.store.groups()})
        except Exception as e:  # the store failed: keep every group for now
            log.debug("cannot list the groups: %s", e)
        data = encode(stats)
        stats.changed = False
        writing = self._writing = asyncio.get_running_loop().run_in_executor(None, self.store.save_stats, data)
        writing.add_done_callback(self._written)
        try:
            await asyncio.shield(writing)
        except Exception:  # _written reports it
            pass

    def _written(self, writing: asyncio.Future[None]) -> None:
        if self._writing is writing:
            self._writing = None
        if writing.cancelled():
            return
        e = writing.exception()
        if e is not None:
            self.stats.changed = True  # tried again at the next period
            log.warning("cannot save the run stats: %s", getattr(e, "strerror", None) or e)
