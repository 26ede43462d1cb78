"""The queue's behaviour, written against the storage port: every store must pass these."""

from __future__ import annotations

import pytest

from queuectl_client.protocol import JobSpec
from queuectld.config import ConfigError
from queuectld.rules import INTERRUPTED, QueueError, plan_end
from queuectld.store import Job, Store
from tests.contract.conftest import Opener


def spec(job_id: str | None = None, **kw: object) -> JobSpec:
    return JobSpec(id=job_id, command="true", **kw)  # type: ignore[arg-type]


async def ids(store: Store, state: str | None = None, limit: int | None = None) -> list[str]:
    return [job.id async for page in store.pages(state, limit, 2) for job in page]


async def run(store: Store, now: float, worker: int = 1) -> Job | None:
    jobs = await store.claim(now, 1)
    if not jobs:
        return None
    await store.start(jobs[0], now, worker, 0, 0)
    return jobs[0]


async def end(store: Store, job: Job, at: float, code: int | None = 0, error: str | None = None) -> None:
    assert await store.finish(job, at, plan_end(job, at, code, error, store.config))


async def test_add_names_and_counts_jobs(store: Store) -> None:
    jobs = await store.add([spec(), spec(), spec("own")], 100.0, "b8")
    assert [j.id for j in jobs] == ["b8-1", "b8-2", "own"]
    single = await store.add([spec()], 100.0, "x9")
    assert [j.id for j in single] == ["x9"]
    assert (await store.counts())["pending"] == 4
    job = await store.get("own")
    assert (job.state, job.attempts, job.created_at, job.max_retries) == ("pending", 0, 100.0, 3)
    assert await ids(store) == ["b8-1", "b8-2", "own", "x9"]
    assert await ids(store, "pending", 3) == ["b8-1", "b8-2", "own"]


async def test_a_batch_with_a_duplicate_adds_nothing(store: Store) -> None:
    await store.add([spec("a")], 0.0)
    for batch, code in (([spec("b"), spec("a")], "duplicate"), ([spec("c"), spec("c")], "invalid")):
        with pytest.raises(QueueError) as e:
            await store.add(batch, 1.0)
        assert e.value.code == code
    assert await ids(store) == ["a"]
    with pytest.raises(QueueError) as e:
        await store.get("b")
    assert e.value.code == "not_found"


async def test_claims_go_by_priority_then_due_time_then_order(store: Store) -> None:
    await store.add([spec("low"), spec("high", priority=5), spec("later", run_at=50.0), spec("low2")], 10.0)
    order = []
    while (job := await run(store, 10.0)) is not None:
        order.append(job.id)
    assert order == ["high", "low", "low2"]
    assert await store.next_due() == 50.0
    assert await run(store, 49.9) is None
    assert (await run(store, 50.0)).id == "later"  # type: ignore[union-attr]


async def test_a_claimed_job_has_one_holder_until_released(store: Store) -> None:
    await store.add([spec("a"), spec("b")], 0.0)
    first = await store.claim(0.0, 1)
    second = await store.claim(0.0, 5)
    assert [j.id for j in first] == ["a"] and [j.id for j in second] == ["b"]
    assert await store.claim(0.0, 5) == []
    await store.release(first[0])
    assert [j.id for j in await store.claim(0.0, 5)] == ["a"]


async def test_a_run_completes(store: Store) -> None:
    await store.add([spec("a")], 0.0)
    job = await run(store, 1.0, worker=3)
    assert job is not None and (job.state, job.attempts, job.worker, job.started_at) == ("processing", 1, 3, 1.0)
    view = job.view(store.node)
    assert view.locked_by == f"{store.node}/3" and view.locked_at == 1.0
    await end(store, job, 2.0)
    job = await store.get("a")
    assert (job.state, job.exit_code, job.finished_at, job.worker) == ("completed", 0, 2.0, None)
    assert job.view(store.node).locked_by is None
    assert await store.claim(100.0, 5) == []


async def test_failures_wait_out_the_backoff_then_die(store: Store) -> None:
    await store.add([spec("a", max_retries=1)], 0.0)
    job = await run(store, 0.0)
    assert job is not None
    await end(store, job, 1.0, 3, "exited with status 3")
    job = await store.get("a")
    assert (job.state, job.next_retry_at, job.exit_code) == ("failed", 3.0, 3)  # 1 + 2**1
    assert await run(store, 2.9) is None
    job = await run(store, 3.0)
    assert job is not None and job.attempts == 2
    await end(store, job, 4.0, 3, "exited with status 3")
    job = await store.get("a")
    assert (job.state, job.error_message, job.next_retry_at) == ("dead", "exited with status 3", None)


async def test_delete_refuses_running_and_unknown_jobs_and_frees_the_id(store: Store) -> None:
    await store.add([spec("a"), spec("b")], 0.0)
    await store.delete("a", 1.0)
    assert await ids(store) == ["b"]
    job = await run(store, 2.0)
    assert job is not None and job.id == "b"
    for job_id, code in (("b", "state"), ("zzz", "not_found")):
        with pytest.raises(QueueError) as e:
            await store.delete(job_id, 3.0)
        assert e.value.code == code
    await store.add([spec("a")], 4.0)
    assert (await run(store, 5.0)).id == "a"  # type: ignore[union-attr]


async def test_revive_takes_only_dead_jobs_and_resets_them(store: Store) -> None:
    await store.add([spec("a", max_retries=0), spec("b")], 0.0)
    job = await run(store, 0.0)
    assert job is not None
    await end(store, job, 1.0, 9, "exited with status 9")
    with pytest.raises(QueueError) as e:
        await store.revive(["b"], False, 2.0)
    assert e.value.code == "state"
    assert await store.revive(["a"], False, 2.0) == ["a"]
    job = await store.get("a")
    assert (job.state, job.attempts, job.error_message, job.exit_code) == ("pending", 0, None, None)
    assert await store.revive([], True, 3.0) == []


async def test_settings_and_pool_size_are_kept(open_store: Opener) -> None:
    store = await open_store()
    assert await store.configure("max_retries", "5") == ("max-retries", "5")
    with pytest.raises(ConfigError):
        await store.configure("backoff-base", "0.5")
    await store.resize(4)
    await store.add([spec("a")], 0.0)
    again = await open_store()
    assert again.config.max_retries == 5 and again.pool_size == 4
    assert (await again.get("a")).max_retries == 5


async def test_acknowledged_changes_survive_a_crash_and_runs_come_back_as_interrupted(open_store: Opener) -> None:
    store = await open_store()
    await store.add([spec("a"), spec("b"), spec("c")], 0.0)
    claimed = await store.claim(1.0, 2)
    await store.start(claimed[0], 1.0, 1, 4242, 77)
    await store.start(claimed[1], 1.0, 2, 4243, 78)
    await end(store, claimed[1], 2.0)
    await store.sync()
    # A second store on the same state, the first never closed: a restart after kill -9.
    again = await open_store()
    runs = await again.interrupted()
    assert [(r.job.id, r.pgid, r.pid_start) for r in runs] == [("a", 4242, 77)]
    run_ = runs[0]
    await again.finish(run_.job, 3.0, plan_end(run_.job, 3.0, None, INTERRUPTED, again.config))
    job = await again.get("a")
    assert (job.state, job.attempts, job.error_message) == ("failed", 1, INTERRUPTED)
    assert (await again.get("b")).state == "completed"
    assert await ids(again, "pending") == ["c"]
