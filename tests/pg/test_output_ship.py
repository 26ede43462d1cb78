"""The output shipper (pg/output.py) against a run whose end moves its row while a round locks it.  Real
PostgreSQL (tests/pgserver.py), store to store."""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from tests.pg.test_cluster import Cluster2, until
from tests.pg.test_starts import _claimed, _in_state

_WAITING = "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND datname = current_database()"


@pytest.fixture
async def cluster(pg_database: str) -> AsyncIterator[Cluster2]:
    c = Cluster2(pg_database)
    yield c
    await c.close()


async def _running(node: Any, job_id: str) -> Any:
    job = await _claimed(node, job_id)
    await node.begin(job, time.time(), 1, 0, 0)
    await until(lambda: _in_state(node, job_id, "processing"), what=f"the start of {job_id}")
    return job


def _files(tmp_path: Path, name: str, out: bytes) -> tuple[str, str]:
    paths = (str(tmp_path / f"{name}.out"), str(tmp_path / f"{name}.err"))
    Path(paths[0]).write_bytes(out)
    Path(paths[1]).write_bytes(b"")
    return paths


async def test_a_run_whose_end_moves_its_row_during_a_round_costs_no_warning_and_the_others_output_goes(
        cluster: Cluster2, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    a = await cluster.node("a")
    ending = await _running(a, "ending")
    other = await _running(a, "other")
    conn = await asyncpg.connect(cluster.url)
    try:
        tx = conn.transaction()
        await tx.start()
        # The end of "ending" on its way (its row moves to the done partition), not committed yet.
        await conn.execute("UPDATE queuectl_jobs SET state = 'completed', locked_by = NULL WHERE id = 'ending'")
        with caplog.at_level(logging.WARNING, logger="queuectld.store"):
            a.output_started(ending, _files(tmp_path, "ending", b""))
            a.output_started(other, _files(tmp_path, "other", b"hello\n"))
            await until(lambda: conn.fetchval(_WAITING), what="a round waiting for the row of 'ending'")
            await tx.commit()
            await until(lambda: conn.fetchval(
                "SELECT string_agg(convert_from(data, 'UTF8'), '' ORDER BY seq) FROM queuectl_output "
                "WHERE job_id = 'other' AND stream = 'o'"), what="the output of 'other'")
            await a.output_ended([other])
    finally:
        await conn.close()
    assert [r.getMessage() for r in caplog.records if "cannot ship" in r.getMessage()] == []
