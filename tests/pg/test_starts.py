"""Starts recorded a moment late (`begin`, pg/starts.py): a run that ends first is recorded with its start in one
statement; a start recorded late shows the job running; a start the database refuses stops the run and gives the
job back.  Real PostgreSQL (tests/pgserver.py), store to store."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any

import pytest

from queuectl_client import protocol as p
from queuectld.pg.starts import START_WAIT
from queuectld.pg.statements import _START_END
from queuectld.rules import Outcome
from tests.pg.test_cluster import Cluster2, until


@pytest.fixture
async def cluster(pg_database: str) -> AsyncIterator[Cluster2]:
    c = Cluster2(pg_database)
    yield c
    await c.close()


async def _claimed(node: Any, job_id: str, **fields: Any) -> Any:
    await node.add([p.JobSpec(command="true", id=job_id, **fields)], time.time())
    (job,) = await until(lambda: node.claim(time.time(), 1), what="a claim")
    return job


def _counting(node: Any) -> list[str]:
    """The statements the node runs through its pool's `fetch`."""
    seen: list[str] = []
    fetch = node.db.fetch

    async def counted(query: str, *args: Any, **kw: Any) -> Any:
        seen.append(query)
        return await fetch(query, *args, **kw)

    node.db = _Wrap(node.db, counted)
    return seen


class _Wrap:
    def __init__(self, pool: Any, fetch: Any) -> None:
        self._pool, self.fetch = pool, fetch

    def __getattr__(self, name: str) -> Any:
        return getattr(self._pool, name)


async def test_a_run_that_ends_before_its_start_is_written_is_recorded_in_one_statement(cluster: Cluster2) -> None:
    a = await cluster.node("a")
    job = await _claimed(a, "quick")
    seen = _counting(a)
    await a.begin(job, time.time(), 1, 0, 0)
    assert job.attempts == 1 and job.state == "processing"  # the run as the pool sees it
    assert (await a.get("quick")).state == "pending"  # held: its start is not on record yet
    assert await a.finish(job, time.time(), Outcome("completed", 0, None, None)) is True
    done = await a.get("quick")
    assert (done.state, done.attempts, done.exit_code) == ("completed", 1, 0) and done.started_at is not None
    assert seen == [_START_END], seen  # no start of its own, no end of its own


async def test_a_start_recorded_late_shows_the_job_running_and_its_end_goes_as_any(cluster: Cluster2) -> None:
    a = await cluster.node("a")
    job = await _claimed(a, "long", max_retries=2)
    await a.begin(job, time.time(), 3, 0, 0)
    running = await until(lambda: _in_state(a, "long", "processing"), timeout=START_WAIT * 100, what="the start")
    assert running.attempts == 1 and running.worker == 3
    assert await a.finish(job, time.time(), Outcome("failed", 1, "exit code 1", time.time() + 60)) is True
    assert (await a.get("long")).state == "failed"


async def test_a_start_refused_late_stops_the_run_and_its_end_gives_the_job_back(cluster: Cluster2) -> None:
    a = await cluster.node("a")
    b = await cluster.node("b")
    withdrawn: list[list[str]] = []
    a.on_withdraw = withdrawn.append
    job = await _claimed(a, "cancelled")
    await a.begin(job, time.time(), 1, 0, 0)
    assert await b.cancel(["cancelled"], None, time.time()) == (["cancelled"], [])  # dead at once: it was held
    await until(lambda: withdrawn, timeout=START_WAIT * 100, what="the run stopped")
    assert withdrawn == [["cancelled"]]
    await a.release(job)  # what the pool does at the stopped run's exit
    dead = await a.get("cancelled")
    assert dead.state == "dead" and dead.error_message == "cancelled"
    assert await a.db.fetchval("SELECT locked_by FROM queuectl_jobs WHERE id = 'cancelled'") is None


async def test_a_run_that_ends_after_its_job_was_cancelled_unstarted_gives_the_job_back(
        cluster: Cluster2, caplog: pytest.LogCaptureFixture) -> None:
    a = await cluster.node("a")
    b = await cluster.node("b")
    job = await _claimed(a, "gone")
    await a.begin(job, time.time(), 1, 0, 0)
    await b.cancel(["gone"], None, time.time())
    assert await a.finish(job, time.time(), Outcome("completed", 0, None, None)) is False  # before the start's write
    assert "the run of job gone (attempt 1) was not recorded: its claim is no longer this node's" in caplog.text
    dead = await a.get("gone")
    assert dead.state == "dead"
    assert await a.db.fetchval("SELECT locked_by FROM queuectl_jobs WHERE id = 'gone'") is None


async def test_a_job_others_depend_on_ends_with_its_dependents_when_its_start_was_late(cluster: Cluster2) -> None:
    a = await cluster.node("a")
    job = await _claimed(a, "first")
    await a.add([p.JobSpec(command="true", id="then", after=["first"])], time.time())
    await a.begin(job, time.time(), 1, 0, 0)
    assert await a.finish(job, time.time(), Outcome("completed", 0, None, None)) is True
    assert (await a.get("first")).state == "completed"
    then = await a.get("then")
    assert then.state == "pending" and not then.blocked


async def _in_state(node: Any, job_id: str, state: str) -> Any:
    job = await node.get(job_id)
    return job if job.state == state else None
