"""The PostgreSQL store's own guarantees, beyond the contract suite: its schema's versions, claims shared by
several nodes, caps across them, fenced ends, the claim's index, and a daemon that keeps its queue there."""

from __future__ import annotations

import asyncio
import logging
import subprocess

import asyncpg
import pytest

from queuectl_client.protocol import JobSpec
from queuectld.pg import schema
from queuectld.pg.store import _CLAIM, PgStore
from queuectld.rules import plan_end
from queuectld.store import StoreError
from tests.conftest import QUEUECTLD, Env


def spec(job_id: str | None = None, **kw: object) -> JobSpec:
    return JobSpec(id=job_id, command="true", **kw)  # type: ignore[arg-type]


async def opened(url: str, node: str) -> PgStore:
    store = PgStore(url, node=node)
    await store.open()
    return store


async def test_a_database_of_a_newer_schema_refuses_the_start_in_one_line(pg_database: str, home: str) -> None:
    store = await opened(pg_database, "a")
    await store.close()
    conn = await asyncpg.connect(pg_database)
    await conn.execute("UPDATE queuectl_meta SET value = '99' WHERE key = 'schema'")
    await conn.close()
    with pytest.raises(StoreError) as e:
        await opened(pg_database, "a")
    assert str(e.value) == (f"the database's queuectl schema is version 99; this queuectld knows up to "
                            f"{schema.VERSION}: upgrade queuectld")
    proc = subprocess.run([QUEUECTLD, "--store", pg_database, "--home", home], capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 1, proc
    lines = [line for line in proc.stderr.splitlines() if "ERROR" in line]
    assert len(lines) == 1 and lines[0].endswith("upgrade queuectld") and "Traceback" not in proc.stderr


async def test_nodes_starting_together_migrate_once(pg_database: str) -> None:
    stores = await asyncio.gather(*(opened(pg_database, f"n{i}") for i in range(4)))
    conn = await asyncpg.connect(pg_database)
    assert await conn.fetchval("SELECT value FROM queuectl_meta WHERE key = 'schema'") == str(schema.VERSION)
    assert await conn.fetchval("SELECT count(*) FROM queuectl_nodes") == 4
    await conn.close()
    for store in stores:
        await store.close()


async def test_two_nodes_claim_every_job_once(pg_database: str) -> None:
    a, b = await opened(pg_database, "a"), await opened(pg_database, "b")
    await a.add([spec() for _ in range(600)], 0.0, "many")
    got: dict[str, list[str]] = {"a": [], "b": []}

    async def drain(store: PgStore) -> None:
        while jobs := await store.claim(1.0, 7):
            for job in jobs:
                await store.start(job, 1.0, 1, 0, 0)
                assert await store.finish(job, 2.0, plan_end(job, 2.0, 0, None, store.config))
            got[store.node] += [job.id for job in jobs]

    await asyncio.gather(drain(a), drain(b), drain(a), drain(b))
    every = got["a"] + got["b"]
    assert len(every) == len(set(every)) == 600 and got["a"] and got["b"]
    assert (await a.counts())["completed"] == 600
    await a.close()
    await b.close()


async def test_a_groups_cap_holds_across_nodes(pg_database: str) -> None:
    a, b = await opened(pg_database, "a"), await opened(pg_database, "b")
    await a.define_group("two", 2, create=True)
    await a.add([spec(group="two") for _ in range(20)] + [spec() for _ in range(5)], 0.0, "cap")
    held = await asyncio.gather(*(store.claim(1.0, 10) for store in (a, b, a, b)))
    capped = [job for jobs in held for job in jobs if job.group == "two"]
    assert len(capped) == 2 and sum(len(jobs) for jobs in held) == 7
    await a.close()
    await b.close()


async def test_an_end_is_not_recorded_once_the_job_was_rescued(pg_database: str,
                                                                 caplog: pytest.LogCaptureFixture) -> None:
    a = await opened(pg_database, "a")
    await a.add([spec("r", max_retries=3)], 0.0)
    (job,) = await a.claim(1.0, 1)
    await a.start(job, 1.0, 1, 0, 0)
    conn = await asyncpg.connect(pg_database)  # what a rescue does: the failure path, the lock dropped
    await conn.execute("UPDATE queuectl_jobs SET state = 'failed', locked_by = NULL, error_message = 'rescued', "
                       "due = 5.0, next_retry_at = 5.0 WHERE id = 'r'")
    await conn.close()
    with caplog.at_level(logging.WARNING, "queuectld.store"):
        assert await a.finish(job, 2.0, plan_end(job, 2.0, 0, None, a.config))
    assert "the end of job r's attempt 1 was not recorded: the job was rescued from this node" in caplog.text
    again = await a.get("r")
    assert (again.state, again.error_message) == ("failed", "rescued")
    await a.close()


async def test_a_restarted_node_gives_back_what_it_held_and_takes_its_runs(pg_database: str) -> None:
    first = await opened(pg_database, "a")
    await first.add([spec("held"), spec("ran")], 0.0)
    _held, ran = await first.claim(1.0, 2)
    await first.start(ran, 1.0, 2, 4242, 77)
    other = await opened(pg_database, "b")  # another node's runs are not this one's
    again = await opened(pg_database, "a")  # the same name, a new node id: a restart after a crash
    runs = await again.interrupted()
    assert [(r.job.id, r.pgid, r.pid_start) for r in runs] == [("ran", 4242, 77)]
    assert await other.interrupted() == []
    back = await again.get("held")
    assert (back.state, back.attempts) == ("pending", 0)
    assert [job.id for job in await again.claim(2.0, 5)] == ["held"]
    for store in (first, other, again):
        await store.close()


async def test_the_claim_keeps_to_its_partial_index_at_depth(pg_database: str) -> None:
    a = await opened(pg_database, "a")
    await a.add([spec() for _ in range(50_000)], 0.0, "deep")
    conn = await asyncpg.connect(pg_database)
    await conn.execute("ANALYZE queuectl_jobs_live")
    async with conn.transaction():
        plan = "\n".join(r[0] for r in await conn.fetch("EXPLAIN " + _CLAIM, 1.0, 10, [], [], "x/0", "a", 0))
        capped = "\n".join(r[0] for r in await conn.fetch("EXPLAIN " + _CLAIM, 1.0, 10, ["batch"], [2], "x/0",
                                                          "a", 3))
        # the plan a pooled session caches after five runs, made without the values
        await conn.execute("SET LOCAL plan_cache_mode = force_generic_plan")
        await conn.execute("PREPARE claim(float8, int, text[], int[], text, text, int) AS " + _CLAIM)
        generic = "\n".join(r[0] for r in await conn.fetch("EXPLAIN EXECUTE claim(1.0, 10, '{}', '{}', 'x/0', 'a', 0)"))
    await conn.close()
    for shown in (plan, generic):
        assert "Index Scan using queuectl_jobs_claim" in shown and "Seq Scan on queuectl_jobs_live" not in shown, shown
    # a capped group through the per-group index, a capped default group through the claim index
    assert "Index Scan using queuectl_jobs_grp_claim" in capped and "Seq Scan" not in capped, capped
    await a.close()


def test_a_daemon_keeps_its_queue_in_the_database_named_by_queuectl_store(env: Env, pg_database: str) -> None:
    env.env["QUEUECTL_STORE"] = pg_database
    env.start_daemon("--node", "one")
    job = env.enqueue(command="echo from-pg", max_retries=0)
    env.ok("worker", "start", "--count", "1", "--detach")
    assert env.wait_state(job, "completed")["attempts"] == 1
    assert env.ok("logs", job, "--stdout").out.strip().endswith("from-pg")
    assert env.stop_daemon() == 0
    env.start_daemon("--node", "one")  # the queue is the database's, not the home's
    assert env.show(job)["state"] == "completed"
    assert env.stop_daemon() == 0



async def test_a_unique_key_is_held_by_one_live_job_across_nodes(pg_database: str) -> None:
    a, b = await opened(pg_database, "a"), await opened(pg_database, "b")
    first = await a.add([spec("k1", unique_key="nightly")], 0.0)
    again = await b.add([spec("k2", unique_key="nightly"), spec("k3", unique_key="other")], 1.0)
    assert [j.id for j in first] == ["k1"] and [j.id for j in again] == ["k1", "k3"] and again.created == [False, True]
    (job,) = await b.claim(2.0, 1)
    await b.start(job, 2.0, 1, 0, 0)
    assert await b.finish(job, 3.0, plan_end(job, 3.0, 0, None, b.config))  # completed: the key is free
    made = await a.add([spec("k4", unique_key="nightly")], 4.0)
    assert [j.id for j in made] == ["k4"] and made.created == [True]
    await a.close()
    await b.close()


async def test_a_large_batch_refused_midway_writes_nothing_and_the_store_goes_on(pg_database: str) -> None:
    from queuectld.pg.adding import PART
    from queuectld.rules import QueueError

    a = await opened(pg_database, "a")
    bad = PART + 5  # in a later part than the first, which the COPY has sent by then
    batch = [spec() for _ in range(PART + 10)]
    batch[bad] = spec(run_at=100.0, delay=5.0)
    with pytest.raises(QueueError, match=f"job mid-{bad + 1}: give run_at or delay, not both"):
        await a.add(batch, 0.0, "mid")
    assert (await a.counts())["pending"] == 0
    for i in range(30):  # the aborted COPY leaves no cancel behind to hit a later statement
        added = await a.add([spec() for _ in range(70)], 1.0, f"after{i}")
        assert len(added) == 70 and added[0].id == f"after{i}-1" and added[69].id == f"after{i}-70"
        claimed = await a.claim(2.0, 1)
        assert len(claimed) == 1
        await a.release(claimed[0])
    assert (await a.counts())["pending"] == 30 * 70
    await a.close()
