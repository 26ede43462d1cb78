"""What a person sees of the whole cluster from any node: run stats, and a wait's safety re-read.

Each node keeps its own run stats (the runs it ran) and saves them as its row of `queuectl_stats`,
under its name (`save_stats`, at most once a minute and at a stop); `queuectl stats` on any node
adds the others' last saved rows to its own live stats (`other_stats`), so it shows the cluster's
runs, the other nodes' up to a minute late.  The Prometheus metrics stay per node (see
docs/DECISIONS.md "Output and events across nodes").
"""

from __future__ import annotations

from ..store import StoreError
from .core import PgCore


class ObserveMixin(PgCore):
    """The cluster-wide reads of PgStore."""

    reread_every: float | None = 5.0  # a wait's safety re-read (rereads.py): NOTIFY is a hint

    async def other_stats(self) -> list[bytes]:
        try:
            rows = await self.db.fetch("SELECT data FROM queuectl_stats WHERE node <> $1", self.node)
        except Exception as e:  # the database is away: said in one line, as for the store's other reads
            raise StoreError(f"the database: {type(e).__name__}: {e}".splitlines()[0]) from None
        return [bytes(row[0]) for row in rows]
