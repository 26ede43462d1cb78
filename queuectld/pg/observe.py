"""What a person sees of the whole cluster from any node: the other nodes' saved run stats.

Each node saves its own stats blob (`save_stats`, a row of `queuectl_stats` under its name, at most
once a minute and at a stop); `queuectl stats` on any node adds the others' last saved blobs to its
own live stats, so it shows the cluster's runs, the other nodes' up to a minute late.  The
Prometheus metrics stay per node (see docs/DECISIONS.md "Output and events across nodes").
"""

from __future__ import annotations

from typing import Any

from ..store import StoreError


class ObserveMixin:
    """The cluster-wide reads of PgStore (needs `self.db` and `self.node`)."""

    db: Any
    node: str
    reread_every: float | None = 5.0  # a wait's safety re-read (rereads.py): NOTIFY is a hint

    async def other_stats(self) -> list[bytes]:
        try:
            rows = await self.db.fetch("SELECT data FROM queuectl_stats WHERE node <> $1", self.node)
        except Exception as e:  # the database is away: said in one line, as for the store's other reads
            raise StoreError(f"the database: {type(e).__name__}: {e}".splitlines()[0]) from None
        return [bytes(row[0]) for row in rows]
