"""The other nodes' saved run stats, read from PostgreSQL (queuectld/pg/observe.py)."""

from __future__ import annotations

from typing import Any

import pytest

from queuectld import stats as st
from queuectld.pg.observe import ObserveMixin
from queuectld.store import StoreError

asyncpg = pytest.importorskip("asyncpg")


class Node(ObserveMixin):
    def __init__(self, db: Any, node: str) -> None:
        self.db = db
        self.node = node


async def test_a_node_reads_the_others_saved_stats_not_its_own(pg_database: str) -> None:
    db = await asyncpg.create_pool(pg_database, min_size=1, max_size=2)
    try:
        await db.execute("CREATE TABLE IF NOT EXISTS queuectl_stats (node text PRIMARY KEY, data bytea)")
        now = 1_800_000_000.0
        for name, n in (("a", 1), ("b", 2), ("c", 3)):
            s = st.Stats(began=now)
            for _ in range(n):
                s.ended("default", "completed", now - 1, now - 1, now)
            await db.execute("INSERT INTO queuectl_stats VALUES ($1, $2)", name, st.encode(s))
        blobs = await Node(db, "a").other_stats()
        assert sorted(st.decode(b, now).groups["default"].ends[0] for b in blobs) == [2, 3]
    finally:
        await db.close()
    with pytest.raises(StoreError, match=r"^the database: "):
        await Node(db, "a").other_stats()  # a closed pool: one line, no traceback
