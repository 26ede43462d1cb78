"""What a person sees of the whole cluster from any node: run stats, and a wait's safety re-read.

Each node keeps its own run stats (the runs it ran) and saves them as its row of `queuectl_stats`,
under its name, at most once a minute and at a stop (stats_keeper.py); a restarted node of the same
name goes on from its row.  `queuectl stats` on any node adds the others' last saved rows to its own
live stats (`other_stats`), so it shows the cluster's runs, the other nodes' up to a minute late.
The Prometheus metrics stay per node (see docs/DECISIONS.md "Output and events across nodes").
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Coroutine
from typing import Any

import asyncpg

from ..store import StoreError
from .core import PgCore

SAVE_WAIT = 30.0  # seconds a save waits for the database
_SAVE = "INSERT INTO queuectl_stats (node, data) VALUES ($1, $2) ON CONFLICT (node) DO UPDATE SET data = EXCLUDED.data"


def _on(loop: asyncio.AbstractEventLoop) -> bool:
    try:
        return asyncio.get_running_loop() is loop
    except RuntimeError:
        return False


def _in_thread(fn: Callable[[bytes], Coroutine[Any, Any, None]], data: bytes) -> None:
    """Run `fn(data)` to its end on a loop of its own, in a thread of its own; raise what it raised."""
    error: list[BaseException] = []

    def target() -> None:
        try:
            asyncio.run(fn(data))
        except BaseException as e:  # handed to the caller
            error.append(e)

    t = threading.Thread(target=target, name="stats-save")
    t.start()
    t.join()
    if error:
        raise error[0]


def _error(e: BaseException) -> StoreError:
    return StoreError(f"the database: {type(e).__name__}: {e}".splitlines()[0])


class ObserveMixin(PgCore):
    """The cluster-wide reads of PgStore."""

    reread_every: float | None = 5.0  # a wait's safety re-read (rereads.py): NOTIFY is a hint
    _own_stats: bytes | None = None
    _stats_loop: asyncio.AbstractEventLoop | None = None

    async def open(self) -> int:
        n = await super().open()
        self._stats_loop = asyncio.get_running_loop()
        try:
            data = await self.db.fetchval("SELECT data FROM queuectl_stats WHERE node = $1", self.node)
        except Exception as e:
            raise _error(e) from None
        self._own_stats = None if data is None else bytes(data)
        return n

    def load_stats(self) -> bytes | None:
        """This node's row, as it was when the store opened."""
        return self._own_stats

    def save_stats(self, data: bytes) -> None:
        """Replace this node's row; blocking (the keeper calls it from a worker thread, where it uses
        the loop's pool; on the loop's own thread it writes on a connection of its own)."""
        loop = self._stats_loop
        if loop is None:
            raise StoreError("the store is not open")
        try:
            if _on(loop):
                _in_thread(self._save_alone, data)
            else:
                asyncio.run_coroutine_threadsafe(self.db.execute(_SAVE, self.node, data), loop).result(SAVE_WAIT)
        except StoreError:
            raise
        except Exception as e:
            raise _error(e) from None
        self._own_stats = data

    async def _save_alone(self, data: bytes) -> None:
        conn = await asyncpg.connect(self.url, timeout=SAVE_WAIT, **self._connect)
        try:
            await conn.execute(_SAVE, self.node, data)
        finally:
            await conn.close()

    async def other_stats(self) -> list[bytes]:
        try:
            rows = await self.db.fetch("SELECT data FROM queuectl_stats WHERE node <> $1", self.node)
        except Exception as e:  # the database is away: said in one line, as for the store's other reads
            raise _error(e) from None
        return [bytes(row[0]) for row in rows]
