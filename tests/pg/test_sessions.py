"""The sessions of a node's pool: what PostgreSQL does with the statements a claim and a dispatch run.  Real
PostgreSQL (tests/pgserver.py), store to store."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import pytest

from queuectld.pg.queries import _NEXT_DUE
from tests.pg.test_cluster import Cluster2


@pytest.fixture
async def cluster(pg_database: str) -> AsyncIterator[Cluster2]:
    c = Cluster2(pg_database)
    yield c
    await c.close()


async def test_the_next_due_time_is_not_compiled_at_every_call(cluster: Cluster2) -> None:
    """A generic plan's estimates pass `jit_above_cost` (on by default since PostgreSQL 12): JIT compiling
    the walk of an empty queue costs a dispatch far more than running it."""
    a = await cluster.node("a")
    async with a.db.acquire() as conn:
        (plan,) = json.loads(await conn.fetchval("EXPLAIN (ANALYZE, FORMAT JSON) " + _NEXT_DUE))
    assert "JIT" not in plan, plan["JIT"]
