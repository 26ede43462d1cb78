"""The nodes' run stats in PostgreSQL (queuectld/pg/observe.py): each node saves and reloads its own
row, and reads the others' rows, on real PgStores."""

from __future__ import annotations

import asyncio

import pytest

from queuectld import stats as st
from queuectld.store import StoreError

pytest.importorskip("asyncpg")

from queuectld.pg.store import PgStore  # asyncpg is there


async def test_each_node_keeps_its_own_stats_and_reads_the_others(pg_database: str) -> None:
    now = 1_800_000_000.0
    stores = {name: PgStore(pg_database, node=name) for name in ("a", "b", "c")}
    for store in stores.values():
        await store.open()
    try:
        for n, store in enumerate(stores.values(), 1):
            assert store.load_stats() is None
            s = st.Stats(began=now)
            for _ in range(n):
                s.ended("default", "completed", now - 1, now - 1, now)
            await asyncio.to_thread(store.save_stats, st.encode(s))  # as the keeper saves: from a thread
        blobs = await stores["a"].other_stats()
        assert sorted(st.decode(b, now).groups["default"].ends[0] for b in blobs) == [2, 3]
        again = PgStore(pg_database, node="b")  # b restarted: it goes on from its row
        await again.open()
        try:
            data = again.load_stats()
            assert data is not None and st.decode(data, now).groups["default"].ends[0] == 2
        finally:
            await again.close()
    finally:
        for store in stores.values():
            await store.close()
    with pytest.raises(StoreError, match=r"^the database: "):
        await stores["a"].other_stats()  # its pool is closed: one line, no traceback
