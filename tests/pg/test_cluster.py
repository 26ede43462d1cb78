"""Several nodes on one database, store to store: heartbeats, the election, fencing, the rescue of a lost
node's jobs, cancels and changes heard across nodes.  Real PostgreSQL (tests/pgserver.py); a node's link
is cut with a TCP forwarder the test controls (tests/pg/proxy.py)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import pytest

from queuectl_client import protocol as p
from queuectld.pg.cluster import Cluster
from queuectld.pg.store import PgStore
from queuectld.rules import Outcome
from tests.pg.proxy import Proxy

Node: Any = PgStore if issubclass(PgStore, Cluster) else type("Node", (Cluster, PgStore), {})
BEAT = 0.2  # seconds: fence after 0.4 s of silence, lost after 0.8 s


async def until(predicate: Callable[[], Any], timeout: float = 10.0, what: str = "condition") -> Any:
    """Poll `predicate` (a function, or one returning an awaitable) until it gives something truthy."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        await asyncio.sleep(0.02)


class Cluster2:
    """Nodes opened on one database, closed at the end."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.nodes: list[Any] = []
        self.proxies: list[Proxy] = []

    async def node(self, name: str, via_proxy: bool = False, poll_only: bool = False) -> Any:
        url = self.url
        proxy = None
        if via_proxy:
            parts = urlsplit(url)
            proxy = Proxy(parts.hostname or "127.0.0.1", parts.port or 5432)
            port = await proxy.start()
            self.proxies.append(proxy)
            netloc = (parts.username + "@" if parts.username else "") + f"127.0.0.1:{port}"
            url = urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))
        n = Node(url, node=name)
        n.poll_only = poll_only
        n.proxy = proxy
        n.fences, n.stops, n.changes, n.wakes = [], [], [], [0]
        n.on_fence = n.fences.append
        n.on_stop = n.stops.append
        n.on_change = n.changes.append
        n.on_wake = lambda: n.wakes.__setitem__(0, n.wakes[0] + 1)
        await n.open()
        if not self.nodes:
            await n.configure("heartbeat", str(BEAT))
        self.nodes.append(n)
        return n

    async def close(self) -> None:
        for n in self.nodes:
            if n.proxy is not None:
                n.proxy.resume()
            try:
                await asyncio.wait_for(n.close(), 10)
            except Exception:
                pass
        for proxy in self.proxies:
            await proxy.close()


@pytest.fixture
async def cluster(pg_database: str) -> AsyncIterator[Cluster2]:
    c = Cluster2(pg_database)
    yield c
    await c.close()


async def _running(node: Any, job_id: str, command: str = "sleep 100", **fields: Any) -> Any:
    """Enqueue a job, and have `node` claim it and record its start."""
    await node.add([p.JobSpec(command=command, id=job_id, **fields)], time.time())
    got = await until(lambda: node.claim(time.time(), 1), what="a claim")
    job = got[0]
    await node.start(job, time.time(), 1, 0, 0)
    return job


async def test_nodes_heartbeat_and_one_of_them_is_elected(cluster: Cluster2) -> None:
    a = await cluster.node("a")
    b = await cluster.node("b")
    assert b.config.heartbeat == BEAT  # a cluster-wide setting
    listed = await a.nodes()
    assert [(n.name, n.state, n.this) for n in listed] == [("b", "up", False), ("a", "up", True)]
    assert all(n.version and n.heartbeat_age is not None for n in listed)
    await until(lambda: a._leader != b._leader, what="one elected node")
    first = a if a._leader else b
    other = b if first is a else a
    await first.close()
    cluster.nodes.remove(first)
    await until(lambda: other._leader, what="the election taken over")
    assert {n.name: n.state for n in await other.nodes()}[first.node] == "stopped"


async def test_a_lost_nodes_running_job_is_rescued_and_its_late_end_is_fenced_out(cluster: Cluster2) -> None:
    a = await cluster.node("a")
    b = await cluster.node("b")
    job = await _running(b, "j", max_retries=3)
    for task in b._tasks:  # b stops heartbeating, as a node that froze or died
        task.cancel()
    rescued = await until(lambda: _state(a, "j", "failed"), what="the rescue")
    assert rescued.error_message == "interrupted: node b lost" and rescued.attempts == 1
    assert rescued.next_retry_at is not None and rescued.next_retry_at > rescued.finished_at
    assert {n.name: n.state for n in await a.nodes()}["b"] == "lost"
    await until(lambda: any(j.id == "j" and j.state == "failed" for batch in a.changes for j in batch),
                what="the rescue announced on the rescuing node")
    # b's run ends late: its end matches nothing (attempt and holder fenced), the rescue stands.
    await b.finish(job, time.time(), Outcome("completed", 0, None, None))
    again = await a.get("j")
    assert again.state == "failed" and again.error_message == "interrupted: node b lost"


async def test_a_node_frozen_inside_a_transaction_holds_back_only_the_row_it_locked(cluster: Cluster2) -> None:
    from queuectld.pg.output import _HELD

    a = await cluster.node("a")
    b = await cluster.node("b")
    await _running(b, "locked", max_retries=3)
    await _running(b, "free", max_retries=3)
    # b froze between two statements of a transaction that holds its job's row (as its output shipper's
    # does): its session stays open, idle in the transaction, until PostgreSQL ends it.
    conn = await b.db.acquire()
    frozen = conn.transaction()
    await frozen.start()
    assert len(await conn.fetch(_HELD, ["locked"], [1], b.me)) == 1
    for task in b._tasks:
        task.cancel()
    rescued = await until(lambda: _state(a, "free", "failed"), what="the rescue of the row nobody locks")
    assert rescued.error_message == "interrupted: node b lost"
    assert (await a.get("locked")).state == "processing"  # skipped, not waited for: the election goes on
    await frozen.rollback()  # the session ends (idle_in_transaction_session_timeout, or b comes back)
    await b.db.release(conn)
    again = await until(lambda: _state(a, "locked", "failed"), what="the rescue of the row once free")
    assert again.error_message == "interrupted: node b lost"


async def test_a_job_with_no_retry_left_dies_and_its_dependents_with_it(cluster: Cluster2) -> None:
    a = await cluster.node("a")
    b = await cluster.node("b")
    await _running(b, "last", max_retries=0)
    await a.add([p.JobSpec(command="true", id="after-it")], time.time())
    await a.db.execute("INSERT INTO queuectl_deps VALUES ('after-it', 'last', false)")
    await a.db.execute("UPDATE queuectl_jobs SET blocked = 1 WHERE id = 'after-it'")
    for task in b._tasks:
        task.cancel()
    dead = await until(lambda: _state(a, "last", "dead"), what="the rescue")
    assert dead.error_message == "interrupted: node b lost"
    follower = await until(lambda: _state(a, "after-it", "dead"), what="the dependent's death")
    assert follower.cause == "last"


async def test_a_cut_off_node_fences_itself_before_its_jobs_are_rescued_and_rejoins(cluster: Cluster2) -> None:
    a = await cluster.node("a")
    b = await cluster.node("b", via_proxy=True)
    await _running(b, "cut", max_retries=3)
    old = b.node_id
    b.proxy.pause()
    await until(lambda: b.fences, what="the fence")
    assert b.fenced and await b.claim(time.time(), 5) == []
    assert b.fences == ["interrupted: node b lost contact with the database"]
    rescued = await until(lambda: _state(a, "cut", "failed"), what="the rescue")
    assert rescued.error_message == "interrupted: node b lost"
    b.proxy.resume()
    await until(lambda: not b.fenced and b.node_id != old, timeout=20, what="the rejoin under a new id")
    states = {(n.name, n.id == old): n.state for n in await a.nodes()}
    assert states[("b", True)] == "lost" and states[("b", False)] == "up"


async def test_a_short_cut_fences_and_unfences_under_the_same_id(cluster: Cluster2) -> None:
    await cluster.node("a")
    b = await cluster.node("b", via_proxy=True)
    b.proxy.pause()
    await until(lambda: b.fenced, what="the fence")
    b.proxy.resume()
    await until(lambda: not b.fenced, timeout=20, what="heartbeats again")


async def test_a_cancel_asked_on_one_node_stops_the_run_on_its_owner(cluster: Cluster2) -> None:
    a = await cluster.node("a")
    b = await cluster.node("b")
    await _running(b, "long")
    async with a.tx() as conn:
        await conn.execute("UPDATE queuectl_jobs SET cancelled = true WHERE id = 'long'")
        await a.notify(conn, "queuectl_cancel", b.node_id)
    await until(lambda: b.stops, timeout=5, what="the stop")
    assert b.stops == [["long"]] and a.stops == []
    await asyncio.sleep(CANCEL_POLLS)  # a later look asks no second stop of the same run
    assert b.stops == [["long"]]


CANCEL_POLLS = 1.2


async def test_a_change_on_one_node_reaches_the_other_and_not_itself_twice(cluster: Cluster2) -> None:
    a = await cluster.node("a")
    b = await cluster.node("b")
    job = await _running(a, "quick", command="true")
    a.changes.clear()
    await a.finish(job, time.time(), Outcome("completed", 0, None, None))
    heard = await until(lambda: [j for batch in b.changes for j in batch if j.id == "quick"], what="the change")
    assert heard[0].state == "completed"
    await asyncio.sleep(0.3)
    assert [j.id for batch in a.changes for j in batch].count("quick") <= 1  # a's own, announced by its finish


async def _state(node: Any, job_id: str, state: str) -> Any:
    job = await node.get(job_id)
    return job if job.state == state else None


async def test_a_poll_only_node_listens_to_nothing_yet_polls_wakes_cancels_and_settings(cluster: Cluster2) -> None:
    a = await cluster.node("a")
    b = await cluster.node("b", poll_only=True)
    assert b._hb is None or not b._hb._listeners  # no LISTEN: a pooler in transaction mode breaks it
    before = b.wakes[0]
    await until(lambda: b.wakes[0] >= before + 2, what="the polls' wake-ups")
    await _running(b, "polled")
    await a.db.execute("UPDATE queuectl_jobs SET cancelled = true WHERE id = 'polled'")  # no NOTIFY at all
    await until(lambda: b.stops, what="the stop found by polling")
    await a.configure("heartbeat", "0.3")
    await until(lambda: b.config.heartbeat == 0.3, what="the setting read again")


async def test_the_elected_node_vacuums_the_live_partition_once_dead_rows_pile_up(cluster: Cluster2) -> None:
    from queuectld.pg.tidy import TIDY_DEAD

    a = await cluster.node("a")
    await until(lambda: a._leader, what="a elected")
    n = TIDY_DEAD + 500
    await a.add([p.JobSpec(command="true") for _ in range(n)], time.time(), "dead")
    done = 0
    while done < n:  # each claim and end leaves a dead row in the live partition
        for job in await a.claim(time.time(), 100):
            await a.begin(job, time.time(), 1, 0, 0)
            assert await a.finish(job, time.time(), Outcome("completed", 0, None, None))
            done += 1
    vacuumed = "SELECT last_vacuum FROM pg_stat_user_tables WHERE relname = 'queuectl_jobs_live'"
    await until(lambda: a.db.fetchval(vacuumed), timeout=30, what="a VACUUM of the live partition")
