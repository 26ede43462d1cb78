"""Control changes across nodes: two PgStores on one database are two nodes of one queue."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from queuectl_client.protocol import JobSpec, Reason, ScheduleAdd
from queuectld.audit import acting
from queuectld.journal_store import JournalStore
from queuectld.rules import QueueError, plan_end
from queuectld.store import Store

pytest.importorskip("asyncpg")

from queuectld.pg.store import PgStore

H = 3600.0
Nodes = Callable[[str], Awaitable[PgStore]]


@pytest.fixture
async def nodes(pg_database: str) -> AsyncIterator[Nodes]:
    opened: list[PgStore] = []

    async def node(name: str) -> PgStore:
        store = PgStore(pg_database, node=name)
        await store.open()
        opened.append(store)
        return store

    yield node
    for store in opened:
        await store.close()


async def listen(url: str, channel: str) -> tuple[object, asyncio.Queue[str]]:
    import asyncpg

    heard: asyncio.Queue[str] = asyncio.Queue()
    conn = await asyncpg.connect(url)
    await conn.add_listener(channel, lambda _c, _pid, _ch, payload: heard.put_nowait(payload))
    return conn, heard


async def test_a_cancel_on_one_node_of_a_run_on_another_tells_its_owner_and_ends_the_run_dead(
        nodes: Nodes, pg_database: str) -> None:
    a, b = await nodes("a"), await nodes("b")
    await a.add([JobSpec(id="run", command="sleep 30", max_retries=5), JobSpec(id="wait", command="true")], 0.0)
    (job,) = await a.claim(1.0, 1)
    await a.start(job, 1.0, 1, 4242, 77)
    conn, heard = await listen(pg_database, "queuectl_cancel")
    try:
        with acting(1000, "cli", "Cancel"):
            changed, stop = await b.cancel(["run", "wait"], None, 2.0)
        assert sorted(changed) == ["run", "wait"] and stop == []  # b runs neither: a must stop its run
        assert a.node_id in (await asyncio.wait_for(heard.get(), 5.0)).split(",")
    finally:
        await conn.close()  # type: ignore[attr-defined]
    assert (await a.get("wait")).state == "dead"
    # a's run ends: whatever its outcome says, it was cancelled, so it is dead, "cancelled".
    assert await a.finish(job, 3.0, plan_end(job, 3.0, 1, "exited with status 1", a.config))
    done = await b.get("run")
    assert (done.state, done.error_message, done.next_retry_at) == ("dead", "cancelled", None)
    assert [(e.action, e.detail) for e in await a.audit(0.0, None)] == [("cancel", "run, wait")]


async def test_a_cancel_of_a_run_this_node_holds_says_to_stop_it(nodes: Nodes) -> None:
    a = await nodes("a")
    await a.add([JobSpec(id="run", command="sleep 30")], 0.0)
    (job,) = await a.claim(1.0, 1)
    await a.start(job, 1.0, 1, 4242, 77)
    assert await a.cancel(["run"], None, 2.0) == (["run"], ["run"])


async def test_a_slot_fired_by_two_nodes_at_once_is_fired_once(nodes: Nodes) -> None:
    a, b, c = await nodes("a"), await nodes("b"), await nodes("c")
    await a.define_schedule(ScheduleAdd("hourly", "@hourly", JobSpec(command="true")), 10 * H + 5, "UTC")
    assert await b.next_fire() == 11 * H
    made = await asyncio.gather(*(n.fire(11 * H + 1) for n in (a, b, c, a, b, c)))
    assert sorted(job.id for jobs in made for job in jobs) == ["hourly-19700101T1100Z"]
    (info,) = await c.schedules()
    assert (info.fires, info.failed, info.skipped, info.last_slot, info.next_fire) == (1, 0, 0, 11 * H, 12 * H)
    assert (await c.counts())["pending"] == 1


async def test_the_stats_blob_is_each_nodes_own(nodes: Nodes) -> None:
    a, b = await nodes("a"), await nodes("b")
    a.save_stats(b"a's")
    assert (a.load_stats(), b.load_stats()) == (b"a's", None)
    await asyncio.get_running_loop().run_in_executor(None, b.save_stats, b"b's")  # as the stats keeper does
    assert await asyncio.get_running_loop().run_in_executor(None, b.load_stats) == b"b's"
    assert a.load_stats() == b"a's"


async def scenario(store: Store) -> dict[str, Reason]:
    """The same queue on any store, and why each of its jobs is not running."""
    await store.define_group("paused", 0, create=True)
    await store.define_group("one", 1, create=True)
    await store.pause(["paused"], True)
    await store.configure("backoff-base", "100")
    await store.add([JobSpec(id="done", command="true"), JobSpec(id="fail", command="x", max_retries=0),
                     JobSpec(id="retry", command="x", max_retries=3), JobSpec(id="run", command="x")], 0.0)
    for job_id, code in (("done", 0), ("fail", 1), ("retry", 1)):
        (job,) = await store.claim(1.0, 1)
        assert job.id == job_id
        await store.start(job, 1.0, 1, 0, 0)
        await store.finish(job, 2.0, plan_end(job, 2.0, code, None if code == 0 else "exited with status 1",
                                              store.config))
    (run,) = await store.claim(3.0, 1)
    await store.start(run, 3.0, 2, 0, 0)
    await store.add([JobSpec(id="o1", command="x", group="one"), JobSpec(id="o2", command="x", group="one"),
                     JobSpec(id="dep", command="x", after=["run"]), JobSpec(id="p", command="x", group="paused"),
                     JobSpec(id="later", command="x", run_at=1000.0), JobSpec(id="hi", command="x", priority=5),
                     JobSpec(id="lo", command="x"), JobSpec(id="last", command="x")], 4.0)
    held = await store.claim(5.0, 2)
    assert [j.id for j in held] == ["hi", "o1"]
    await store.start(held[1], 5.0, 3, 0, 0)
    reasons = {job_id: await store.why(job_id, 6.0, 4, 2) for job_id in
               ("done", "fail", "run", "hi", "dep", "p", "later", "retry", "o2", "lo", "last")}
    reasons["lo busy"] = await store.why("lo", 6.0, 2, 2)
    reasons["lo none"] = await store.why("lo", 6.0, 0, 0)
    return reasons


async def test_why_gives_the_same_reasons_as_the_embedded_store(nodes: Nodes, tmp_path: str) -> None:
    journal = JournalStore(os.path.join(tmp_path, "journal"), node="a")
    await journal.open()
    try:
        expected = await scenario(journal)
    finally:
        await journal.close()
    got = await scenario(await nodes("a"))
    assert got == expected
    assert got["run"].code == "running" and got["run"].worker == "a/2"
    assert [got[j].code for j in ("done", "fail", "hi", "dep", "p", "later", "retry", "o2")] == [
        "completed", "dead", "running", "dependency", "paused", "scheduled", "backoff", "group_full"]
    assert (got["last"].code, got["last"].ahead) == ("next", 1)  # lo: o2's group is full, p's paused, dep blocked
    assert (got["lo"].code, got["lo"].ahead, got["lo busy"].code, got["lo none"].code) == ("next", 0, "busy",
                                                                                             "no_workers")
    with pytest.raises(QueueError) as e:
        await (await nodes("b")).why("nope", 6.0, 4, 0)
    assert e.value.code == "not_found"
