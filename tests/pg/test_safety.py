"""The PostgreSQL store's safety: a claim is durable before its run starts, a start needs the claim it
names, a node mends what a lost connection may have lost, and a node name reused elsewhere adopts
nothing.  Real PostgreSQL (tests/pgserver.py); a crash is a throwaway cluster stopped `-m immediate`."""

from __future__ import annotations

import os
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

from queuectl_client import protocol as p
from queuectld.pg.store import PgStore
from queuectld.rules import Outcome
from queuectld.store import Withdrawn
from tests import pgserver
from tests.pg.test_cluster import Cluster2, _running, until


@pytest.fixture
async def cluster(pg_database: str) -> AsyncIterator[Cluster2]:
    c = Cluster2(pg_database)
    yield c
    await c.close()


@pytest.fixture
def crashable(pg_server: Any) -> Iterator[pgserver.Cluster]:
    """A cluster of this test's own, whose WAL writer flushes lazy commits only every 10 s: a commit that
    does not wait for its flush is lost by a crash right after it."""
    bindir = pgserver.binaries()
    if bindir is None:
        pytest.skip("no PostgreSQL binaries to make a cluster that may crash")
    c = pgserver.Cluster(bindir)
    c._run("initdb", "-D", c.data, "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync")
    with open(os.path.join(c.data, "postgresql.auto.conf"), "a") as f:
        f.write(f"listen_addresses = '{c.host}'\nport = {c.port}\nunix_socket_directories = '{c.dir}'\n"
                "wal_writer_delay = 10000\nfsync = on\n")
    c.start()
    try:
        yield c
    finally:
        c.remove()


def _row(url: str, job_id: str) -> Any:
    got = pgserver.execute(url, f"SELECT state, attempts, locked_by FROM queuectl_jobs WHERE id = '{job_id}'")
    rows = got[0]
    return rows[0] if rows else None  # type: ignore[index]


async def test_the_pools_sessions_commit_durably_by_default(cluster: Cluster2) -> None:
    a = await cluster.node("a")
    assert await a.db.fetchval("SHOW synchronous_commit") == "on"


async def test_a_claim_outlives_a_crash_of_the_database(crashable: pgserver.Cluster) -> None:
    store = PgStore(crashable.url, node="a")
    await store.open()
    try:
        for task in store._tasks:  # no heartbeat flushes the WAL behind the claim's back
            task.cancel()
        await store.add([p.JobSpec(command="sleep 100", id="held")], time.time())
        assert len(await store.claim(time.time(), 1)) == 1
        crashable.stop("immediate")  # the claim was acknowledged: its run could start now
        crashable.start()
        row = _row(crashable.url, "held")
        assert row is not None and row[2] == store.me + "0", "the claim was lost: another node could run it too"
    finally:
        store.db.terminate()


async def test_a_start_needs_the_claim_it_names(cluster: Cluster2) -> None:
    a = await cluster.node("a")
    await a.add([p.JobSpec(command="true", id="given-back")], time.time())
    (job,) = await a.claim(time.time(), 1)
    # A rescue gave the claim back meanwhile (as `_UNHOLD` does): the start must not take the job.
    await a.db.execute("UPDATE queuectl_jobs SET locked_by = NULL, locked_at = NULL, node = NULL, "
                       "attempts = attempts - 1 WHERE id = 'given-back'")
    with pytest.raises(Withdrawn):
        await a.start(job, time.time(), 1, 0, 0)
    assert (await a.get("given-back")).state == "pending"


async def test_a_start_and_an_end_are_recorded(cluster: Cluster2) -> None:
    a = await cluster.node("a")
    job = await _running(a, "ok", command="true")
    assert (await a.get("ok")).state == "processing"
    await a.finish(job, time.time(), Outcome("completed", 0, None, None))
    assert (await a.get("ok")).state == "completed"



async def _quiet(name: str, cluster: Cluster2) -> Any:
    """A node whose heartbeats are stopped: its lazy writes stay unflushed, and `mend` is called by hand."""
    n = await cluster.node(name)
    for task in n._tasks:
        task.cancel()
    return n


async def test_an_end_lost_in_a_crash_is_written_again(cluster: Cluster2) -> None:
    a = await _quiet("a", cluster)
    job = await _running(a, "ended", command="true")
    await a.finish(job, time.time(), Outcome("completed", 0, None, None))
    # The crash loses the lazy end: the row says running again, under this node's run.
    await a.db.execute("UPDATE queuectl_jobs SET state = 'processing', locked_by = $1, worker = 1 WHERE id = 'ended'",
                       a.me + "1")
    await a.mend()
    again = await a.get("ended")
    assert (again.state, again.attempts) == ("completed", 1)


async def test_a_start_lost_in_a_crash_is_written_again(cluster: Cluster2) -> None:
    a = await _quiet("a", cluster)
    await _running(a, "started")
    await a.db.execute("UPDATE queuectl_jobs SET state = 'pending', locked_by = $1, worker = NULL, started_at = NULL "
                       "WHERE id = 'started'", a.me + "0")
    await a.mend()
    again = await a.get("started")
    assert (again.state, again.attempts, again.worker) == ("processing", 1, 1)


async def test_a_row_no_run_of_the_node_holds_ends_or_goes_back(cluster: Cluster2) -> None:
    a = await _quiet("a", cluster)
    await _running(a, "orphan", max_retries=3)
    await a.add([p.JobSpec(command="true", id="unstarted")], time.time())
    assert [j.id for j in await a.claim(time.time(), 1)] == ["unstarted"]
    a._held.clear()  # the node ran them no more: their ends were lost with the node's memory of them
    await a.mend()
    orphan, unstarted = await a.get("orphan"), await a.get("unstarted")
    assert (orphan.state, orphan.error_message) == ("failed", "interrupted: node a lost its run")
    assert (unstarted.state, unstarted.attempts) == ("pending", 0)
    assert await a.db.fetchval("SELECT count(*) FROM queuectl_jobs WHERE locked_by IS NOT NULL") == 0
    assert len(await a.claim(time.time() + 3600, 5)) == 2  # neither is stuck


async def test_a_run_whose_row_is_no_longer_the_nodes_is_stopped(cluster: Cluster2) -> None:
    a = await _quiet("a", cluster)
    await _running(a, "taken", max_retries=3)
    await a.db.execute("UPDATE queuectl_jobs SET state = 'failed', locked_by = NULL, worker = NULL WHERE id = 'taken'")
    await a.mend()
    assert a.stops == [["taken"]]


async def test_a_node_whose_link_comes_back_mends_before_it_claims(cluster: Cluster2) -> None:
    await cluster.node("a")
    b = await cluster.node("b", via_proxy=True)
    await _running(b, "cut", max_retries=3)
    b._held.clear()
    b.proxy.pause()
    await until(lambda: b.fenced, what="the fence")
    b.proxy.resume()
    await until(lambda: not b.fenced, timeout=20, what="heartbeats again")
    row = _row(cluster.url, "cut")
    assert row is not None and row[0] == "failed" and row[2] is None  # not left running for ever
