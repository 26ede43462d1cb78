"""The queue's behaviour, written against the storage port: every store must pass these."""

from __future__ import annotations

from collections.abc import Awaitable

import pytest

from queuectl_client.protocol import Edit, JobSpec, ScheduleAdd, Selector
from queuectld.config import ConfigError
from queuectld.rules import INTERRUPTED, QueueError, plan_end
from queuectld.store import Job, Store, Withdrawn
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


async def test_a_retry_rule_and_the_backoff_cap_hold_through_the_store_and_a_reopen(open_store: Opener) -> None:
    store = await open_store()
    await store.configure("backoff-base", "60")
    await store.configure("backoff-max", "2")
    await store.add([spec("ruled", no_retry_on=[2, "signal"], max_retries=3), spec("capped", max_retries=3),
                     spec("kept", retry_on=[75, "timeout"], idle_timeout=1.5)], 0.0)
    for job_id, code, error, failure in (("ruled", 2, "exited with status 2", 2),
                                         ("capped", 1, "exited with status 1", 1)):
        (job,) = await store.claim(0.0, 1)  # a start records the run of a claimed job
        assert job.id == job_id
        await store.start(job, 0.0, 1, 0, 0)
        outcome = plan_end(job, 1.0, code, error, store.config, failure=failure)
        assert await store.finish(job, 1.0, outcome)
    again = await open_store()
    job = await again.get("ruled")
    assert (job.state, job.attempts, job.error_message) == ("dead", 1, "exited with status 2; exit 2 is not retried")
    job = await again.get("capped")
    assert (job.state, job.next_retry_at) == ("failed", 3.0)  # 1 + min(60 ^ 1, 2)
    job = await again.get("kept")
    assert (job.retry_on, job.no_retry_on, job.idle_timeout) == ([75, "timeout"], None, 1.5)
    assert again.config.backoff_max == 2


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


# -- queue control: groups, caps, pauses, cancel, retry, edit, bulk deletes, retention -----------------


async def claim_ids(store: Store, now: float, count: int = 100) -> list[str]:
    """Claim and start what the store hands out; the ids, in its order."""
    jobs = await store.claim(now, count)
    for job in jobs:
        await store.start(job, now, 1, 0, 0)
    return [job.id for job in jobs]


async def refused(code: str, call: Awaitable[object]) -> None:
    with pytest.raises(QueueError) as e:
        await call
    assert e.value.code == code, e.value


async def snapshot(store: Store) -> list[tuple[str, str, str, int]]:
    """Every job as (id, state, group, attempts), to see that a refused change changed nothing."""
    return [(j.id, j.state, j.group, j.attempts) async for page in store.pages(None, None, 100) for j in page]


async def group_infos(store: Store) -> dict[str, tuple[int, bool, int]]:
    return {g.name: (g.parallel, g.paused, g.running) for g in await store.groups()}


async def test_groups_are_added_changed_listed_and_removed(store: Store) -> None:
    assert await group_infos(store) == {"default": (0, False, 0)}
    await store.define_group("batch", 2, create=True)
    await refused("duplicate", store.define_group("batch", 3, create=True))
    await refused("not_found", store.define_group("nope", 3, create=False))
    await store.define_group("batch", 3, create=False)
    await store.add([spec("a", group="batch"), spec("b", group="batch"), spec("c")], 0.0)
    await refused("invalid", store.add([spec("x", group="nope")], 0.0))
    assert await claim_ids(store, 1.0, 1) == ["a"]
    infos = {g.name: g for g in await store.groups()}
    assert (infos["batch"].parallel, infos["batch"].paused, infos["batch"].running) == (3, False, 1)
    assert infos["batch"].jobs == {"pending": 1, "processing": 1, "completed": 0, "failed": 0, "dead": 0}
    assert infos["default"].jobs["pending"] == 1
    await refused("state", store.remove_group("default"))
    await refused("state", store.remove_group("batch"))  # jobs that are not final
    await refused("not_found", store.remove_group("nope"))
    await store.cancel(["a", "b"], None, 2.0)
    await refused("state", store.remove_group("batch"))  # a's run has not ended yet
    await end(store, await store.get("a"), 3.0)
    await store.remove_group("batch")
    assert await group_infos(store) == {"default": (0, False, 0)}
    assert (await store.get("a")).group == "batch"  # its final jobs stay
    await store.define_group("batch", 1, create=True)  # and the name may be used again
    assert (await group_infos(store))["batch"] == (1, False, 0)


async def test_a_claim_honours_each_groups_cap_and_never_waits_on_a_full_one(store: Store) -> None:
    await store.define_group("one", 1, create=True)
    await store.define_group("two", 2, create=True)
    await store.add([spec(f"o{i}", group="one", priority=9) for i in range(4)], 0.0)
    await store.add([spec(f"t{i}", group="two", priority=5) for i in range(4)], 0.0)
    await store.add([spec(f"d{i}") for i in range(3)], 0.0)
    held = await store.claim(1.0, 100)  # claimed, not started yet: they count against the caps
    assert [j.id for j in held] == ["o0", "t0", "t1", "d0", "d1", "d2"]
    assert await store.claim(1.0, 100) == []
    await store.release(held[0])
    assert [j.id for j in await store.claim(1.0, 100)] == ["o0"]
    await store.start(held[1], 1.0, 1, 0, 0)
    await end(store, held[1], 2.0)
    assert await claim_ids(store, 2.0) == ["t2"]
    await store.define_group("two", 0, create=False)  # no cap
    assert await claim_ids(store, 3.0) == ["t3"]


async def test_the_default_group_can_be_capped_beside_a_capped_group(store: Store) -> None:
    await store.define_group("default", 2, create=False)
    await store.define_group("one", 1, create=True)
    await store.add([spec(f"d{i}", priority=5) for i in range(4)], 0.0)
    await store.add([spec(f"o{i}", group="one", priority=9) for i in range(2)], 0.0)
    held = await store.claim(1.0, 100)
    assert [j.id for j in held] == ["o0", "d0", "d1"]
    assert await store.claim(1.0, 100) == []
    await store.start(held[1], 1.0, 1, 0, 0)
    await end(store, held[1], 2.0)
    assert await claim_ids(store, 2.0) == ["d2"]
    await store.define_group("default", 0, create=False)  # no cap
    assert await claim_ids(store, 3.0) == ["d3"]


async def test_a_paused_group_starts_nothing_and_its_running_jobs_finish(store: Store) -> None:
    await store.define_group("p", 0, create=True)
    await store.add([spec("p0", group="p"), spec("p1", group="p"), spec("p2", group="p", run_at=5.0)], 0.0)
    await store.add([spec("d0"), spec("d1")], 0.0)
    assert await claim_ids(store, 1.0, 1) == ["p0"]
    assert await store.pause(["p"], True) == ["p"]
    assert (await group_infos(store))["p"] == (0, True, 1)
    assert await claim_ids(store, 10.0) == ["d0", "d1"]
    assert await store.next_due() is None  # a paused group sets no timer
    await end(store, await store.get("p0"), 11.0)
    assert (await store.get("p0")).state == "completed"
    await refused("not_found", store.pause(["p", "nope"], False))
    assert (await group_infos(store))["p"][1] is True  # all or nothing
    assert await store.pause(["p"], False) == ["p"]
    assert await claim_ids(store, 12.0) == ["p1", "p2"]
    assert sorted(await store.pause([], True)) == ["default", "p"]  # no names: every group
    await store.add([spec("d2")], 13.0)
    assert await store.claim(13.0, 10) == []
    await store.pause([], False)
    assert await claim_ids(store, 13.0) == ["d2"]


async def test_cancel_makes_waiting_jobs_dead_and_a_running_ones_run_end_dead(store: Store) -> None:
    await store.add([spec("run", max_retries=5), spec("wait"), spec("fail", max_retries=5),
                     spec("later", run_at=100.0)], 0.0)
    assert await claim_ids(store, 1.0, 1) == ["run"]
    assert await claim_ids(store, 1.0, 2) == ["wait", "fail"]
    await end(store, await store.get("wait"), 2.0)
    await end(store, await store.get("fail"), 2.0, 1, "exited with status 1")
    assert (await store.get("fail")).state == "failed"
    await refused("state", store.cancel(["later", "wait"], None, 3.0))  # wait is completed: nothing changes
    await refused("not_found", store.cancel(["later", "zzz"], None, 3.0))
    await refused("invalid", store.cancel([], None, 3.0))
    await refused("invalid", store.cancel(["later"], Selector(state="pending"), 3.0))
    await refused("invalid", store.cancel([], Selector(state="dead"), 3.0))
    assert (await store.get("later")).state == "pending"
    changed, stop = await store.cancel(["run", "fail", "later"], None, 3.0)
    assert sorted(changed) == ["fail", "later", "run"] and stop == ["run"]
    for job_id in ("fail", "later"):
        job = await store.get(job_id)
        assert (job.state, job.error_message, job.next_retry_at) == ("dead", "cancelled", None)
    job = await store.get("run")
    assert job.state == "processing"  # until its run ends
    assert await store.cancel(["run"], None, 3.5) == (["run"], ["run"])  # again: its processes get the new signal
    # The run exits with a failure that would be retried: it ends dead, "cancelled", whatever `outcome` says.
    assert await store.finish(job, 4.0, plan_end(job, 4.0, 1, "exited with status 1", store.config))
    job = await store.get("run")
    assert (job.state, job.error_message, job.next_retry_at, job.attempts) == ("dead", "cancelled", None, 1)
    assert await store.claim(1000.0, 10) == []


async def test_cancel_by_selection(store: Store) -> None:
    await store.define_group("g", 0, create=True)
    await store.add([spec("a", group="g"), spec("b", group="g"), spec("c")], 0.0)
    assert await claim_ids(store, 1.0, 1) == ["a"]
    await refused("not_found", store.cancel([], Selector(state="pending", group="nope"), 2.0))
    changed, stop = await store.cancel([], Selector(state="pending", group="g"), 2.0)
    assert changed == ["b"] and stop == []
    changed, stop = await store.cancel([], Selector(state="processing"), 2.0)
    assert changed == ["a"] and stop == ["a"]
    assert (await store.get("c")).state == "pending"


async def test_a_job_cancelled_while_held_is_dead_at_once_and_its_start_is_withdrawn(store: Store) -> None:
    await store.define_group("one", 1, create=True)
    await store.add([spec("h", group="one"), spec("next", group="one")], 0.0)
    (held,) = await store.claim(1.0, 10)
    changed, stop = await store.cancel(["h"], None, 2.0)
    assert changed == ["h"] and stop == ["h"]  # its start is under way: it must be stopped
    job = await store.get("h")
    assert (job.state, job.error_message) == ("dead", "cancelled")
    # Until the pool gives it back it counts as running: nothing else changes it, and the cap holds.
    await refused("state", store.retry(["h"], None, 2.0))
    await refused("state", store.delete("h", 2.0))
    await refused("state", store.edit(Edit(id="h", priority=3), 2.0))
    assert await store.delete_many([], Selector(state="dead"), 2.0) == []
    assert await store.claim(2.0, 10) == []
    with pytest.raises(Withdrawn):
        await store.start(held, 2.0, 1, 4242, 77)
    await store.release(held)
    assert (await store.get("h")).state == "dead" and await store.interrupted() == []
    assert await claim_ids(store, 3.0) == ["next"]


async def test_a_group_is_kept_while_a_job_cancelled_in_its_start_is_held(store: Store) -> None:
    await store.define_group("solo", 1, create=True)
    await store.add([spec("h", group="solo")], 0.0)
    (held,) = await store.claim(1.0, 1)
    await store.cancel(["h"], None, 2.0)
    await refused("state", store.remove_group("solo"))  # its only job is dead, but still counts there
    with pytest.raises(Withdrawn):
        await store.start(held, 2.0, 1, 0, 0)
    await store.release(held)
    await store.remove_group("solo")
    await store.define_group("solo", 1, create=True)
    await store.add([spec("a", group="solo"), spec("b", group="solo")], 3.0)
    assert await claim_ids(store, 3.0) == ["a"]  # the cap of the group made again holds


async def test_retry_makes_failed_jobs_due_now_and_revives_dead_ones(store: Store) -> None:
    await store.add([spec("f", max_retries=3), spec("d", max_retries=0), spec("p", run_at=1000.0)], 0.0)
    assert await claim_ids(store, 1.0, 2) == ["f", "d"]
    for job_id in ("f", "d"):
        await end(store, await store.get(job_id), 2.0, 1, "exited with status 1")
    assert (await store.get("f")).next_retry_at == 4.0
    await refused("state", store.retry(["f", "p"], None, 3.0))  # p is pending: nothing changes
    await refused("not_found", store.retry(["f", "zzz"], None, 3.0))
    await refused("invalid", store.retry([], Selector(state="pending"), 3.0))
    assert (await store.get("f")).next_retry_at == 4.0
    assert sorted(await store.retry(["f", "d"], None, 3.0)) == ["d", "f"]
    f, d = await store.get("f"), await store.get("d")
    assert (f.state, f.attempts, f.next_retry_at) == ("failed", 1, 3.0)
    assert (d.state, d.attempts, d.error_message, d.exit_code) == ("pending", 0, None, None)
    assert await claim_ids(store, 3.0) == ["f", "d"]  # due now, in the order they were retried


async def test_retry_by_selection_takes_what_can_be_retried(store: Store) -> None:
    await store.define_group("g", 0, create=True)
    await store.add([spec("a", group="g"), spec("b", group="g"), spec("c")], 0.0)
    await store.cancel(["a", "b", "c"], None, 1.0)
    assert await store.retry([], Selector(state="dead", group="g"), 2.0) == ["a", "b"]
    assert (await store.get("c")).state == "dead"
    assert await store.retry([], Selector(state="failed"), 2.0) == []


async def test_delete_many_by_ids_is_all_or_nothing_and_by_selection_leaves_running_jobs(store: Store) -> None:
    await store.define_group("g", 0, create=True)
    await store.add([spec("run"), spec("a", group="g"), spec("b", group="g"), spec("c")], 0.0)
    assert await claim_ids(store, 1.0, 1) == ["run"]
    before = await snapshot(store)
    await refused("state", store.delete_many(["a", "run"], None, 2.0))
    await refused("not_found", store.delete_many(["a", "zzz"], None, 2.0))
    await refused("invalid", store.delete_many([], None, 2.0))
    await refused("invalid", store.delete_many(["a"], Selector(state="pending"), 2.0))
    await refused("invalid", store.delete_many([], Selector(state="processing"), 2.0))
    assert await snapshot(store) == before
    assert await store.delete_many([], Selector(state="pending", group="g"), 2.0) == ["a", "b"]
    assert await ids(store) == ["run", "c"]
    assert await store.delete_many(["c"], None, 3.0) == ["c"]
    for job_id in ("a", "c"):
        await refused("not_found", store.get(job_id))
    assert (await store.counts())["pending"] == 0


async def test_a_selection_by_age_counts_from_the_last_change(store: Store) -> None:
    await store.add([spec("old")], 0.0)
    await store.add([spec("new")], 50.0)
    assert await store.delete_many([], Selector(state="pending", older_than=30.0), 60.0) == ["old"]
    assert await ids(store) == ["new"]


async def test_edit_keeps_the_place_unless_priority_or_due_time_changes(store: Store) -> None:
    await store.define_group("other", 0, create=True)
    await store.add([spec("a"), spec("b"), spec("c"), spec("d")], 0.0)
    job = await store.edit(Edit(id="b", max_retries=9, timeout=5.0, group="other"), 1.0)
    # updated_at stays: the job's state did not change
    assert (job.max_retries, job.timeout, job.group, job.updated_at) == (9, 5.0, "other", 0.0)
    job = await store.edit(Edit(id="a", priority=2), 1.0)
    assert job.priority == 2
    job = await store.edit(Edit(id="c", delay=10.0), 1.0)
    assert job.run_at == 11.0
    assert await claim_ids(store, 2.0) == ["a", "b", "d"]  # b kept its place in its new group
    assert await store.next_due() == 11.0
    await store.edit(Edit(id="c", run_at=None), 3.0)
    assert await claim_ids(store, 3.0) == ["c"]


async def test_an_edited_job_is_claimed_once(store: Store) -> None:
    await store.define_group("other", 0, create=True)
    await store.add([spec("a"), spec("b")], 0.0)
    await store.edit(Edit(id="a", max_retries=1), 1.0)
    await store.edit(Edit(id="b", group="other"), 1.0)
    await store.edit(Edit(id="b", group="default"), 1.0)  # and back
    assert [j.id for j in await store.claim(2.0, 10)] == ["a", "b"]
    assert await store.claim(2.0, 10) == []


async def test_edit_refusals_change_nothing(store: Store) -> None:
    await store.add([spec("r"), spec("w")], 0.0)
    assert await claim_ids(store, 1.0, 1) == ["r"]
    await refused("state", store.edit(Edit(id="r", priority=1), 2.0))
    await refused("not_found", store.edit(Edit(id="zzz", priority=1), 2.0))
    await refused("not_found", store.edit(Edit(id="w", group="nope"), 2.0))
    await refused("invalid", store.edit(Edit(id="w", delay=1.0, run_at=5.0), 2.0))
    job = await store.get("w")
    assert (job.priority, job.group, job.run_at, job.updated_at) == (0, "default", None, 0.0)


async def test_pages_of_one_group(store: Store) -> None:
    await store.define_group("g", 0, create=True)
    await store.add([spec("a", group="g"), spec("b"), spec("c", group="g"), spec("d", group="g")], 0.0)
    assert await claim_ids(store, 1.0, 1) == ["a"]
    pages = [[j.id for j in page] async for page in store.pages(None, None, 2, group="g")]
    assert pages == [["a", "c"], ["d"]]  # processing first, then pending
    assert [j.id async for page in store.pages("pending", 1, 2, group="g") for j in page] == ["c"]
    assert [j.id async for page in store.pages("pending", None, 2, group="default") for j in page] == ["b"]


async def test_expired_and_prune_take_the_oldest_final_jobs_first(store: Store) -> None:
    await store.add([spec(f"j{i}", max_retries=0) for i in range(5)], 0.0)
    for i, at in enumerate((10.0, 20.0, 30.0, 40.0)):
        (job,) = await store.claim(at, 1)
        await store.start(job, at, 1, 0, 0)
        await end(store, job, at + 1, 0 if i % 2 == 0 else 1, None if i % 2 == 0 else "exited with status 1")
    await store.cancel(["j4"], None, 50.0)
    # completed: j0 (11), j2 (31); dead: j1 (21), j3 (41), j4 (50)
    assert await store.expired({"completed": 35.0, "dead": 45.0}, None) == ["j0", "j2", "j1", "j3"]
    assert await store.expired({"dead": 100.0}, 2) == ["j1", "j3"]
    assert await store.expired({"completed": 5.0}, None) == []
    assert await ids(store) == ["j1", "j3", "j4", "j0", "j2"]  # expired removes nothing
    assert await store.prune({"dead": 100.0}, 2) == ["j1", "j3"]
    assert await store.prune({"completed": 20.0, "dead": 45.0}, 10) == ["j0"]
    assert await ids(store) == ["j4", "j2"]
    assert await store.prune({"completed": 20.0}, 10) == []


async def test_control_changes_survive_a_crash_and_a_cancelled_run_comes_back_cancelled(open_store: Opener) -> None:
    store = await open_store()
    await store.define_group("capped", 1, create=True)
    await store.define_group("held", 0, create=True)
    await store.define_group("gone", 0, create=True)
    await store.pause(["held"], True)
    await store.add([spec("c0", group="capped"), spec("c1", group="capped"), spec("h0", group="held"),
                     spec("h1", group="held"), spec("h2", group="held"), spec("d0"), spec("d1"),
                     spec("f0", max_retries=3), spec("x0", group="gone")], 0.0)
    assert await claim_ids(store, 1.0, 2) == ["c0", "d0"]
    claimed = await store.claim(1.0, 10)
    assert [j.id for j in claimed] == ["d1", "f0", "x0"]
    for job in claimed:
        await store.start(job, 1.0, 2, 4242, 77)
    await end(store, await store.get("f0"), 2.0, 1, "exited with status 1")
    await end(store, await store.get("x0"), 2.0)
    await store.remove_group("gone")
    await store.define_group("capped", 2, create=False)
    await store.cancel(["c0", "h1"], None, 3.0)  # one running, one waiting
    await store.edit(Edit(id="h0", priority=4, max_retries=1), 3.0)
    await store.retry(["f0"], None, 3.0)
    assert await store.delete_many(["h2"], None, 3.0) == ["h2"]
    assert await store.delete_many([], Selector(state="completed"), 3.0) == ["x0"]
    await store.sync()
    expected = (await snapshot(store), await group_infos(store))
    # A second store on the same state, the first never closed: a restart after kill -9.
    again = await open_store()
    assert (await snapshot(again), await group_infos(again)) == expected
    runs = {r.job.id: r for r in await again.interrupted()}
    assert sorted(runs) == ["c0", "d0", "d1"]
    assert runs["c0"].cancelled and not runs["d0"].cancelled
    assert (runs["d1"].pgid, runs["d1"].pid_start) == (4242, 77)
    for job_id in ("h2", "x0"):
        await refused("not_found", again.get(job_id))
    h0 = await again.get("h0")
    assert (h0.priority, h0.max_retries) == (4, 1)
    assert ((await again.get("h1")).state, (await again.get("h1")).error_message) == ("dead", "cancelled")
    f0 = await again.get("f0")
    assert (f0.state, f0.attempts, f0.next_retry_at) == ("failed", 1, 3.0)
    for r in runs.values():
        assert await again.finish(r.job, 4.0, plan_end(r.job, 4.0, None, INTERRUPTED, again.config))
    assert ((await again.get("c0")).state, (await again.get("c0")).error_message) == ("dead", "cancelled")
    assert (await again.get("d0")).state == "failed"  # the retry path: it was not cancelled
    assert await claim_ids(again, 4.0) == ["c1", "f0"]  # held is paused; capped's cap is 2 now
    assert (await group_infos(again))["held"][1] is True
    # And once more, from what the second store wrote.
    await again.sync()
    third = await open_store()
    assert await snapshot(third) == await snapshot(again)
    assert await group_infos(third) == await group_infos(again)


async def test_dependencies_block_cascade_come_back_and_survive_a_reopen(open_store: Opener) -> None:
    store = await open_store()
    await store.add([spec("a", max_retries=0), spec("b", after=["a"]), spec("c", after_any=["a", "b"])], 0.0)
    with pytest.raises(QueueError) as e:
        await store.add([spec("d", after=["zz"])], 0.0)
    assert e.value.code == "invalid" and "unknown dependency zz" in str(e.value)
    jobs = [await store.get(x) for x in "abc"]
    assert await store.blockers(jobs) == {"b": ["a"], "c": ["a", "b"]}
    with pytest.raises(QueueError) as e:
        await store.delete("a", 1.0)
    assert e.value.code == "state"
    job = await run(store, 1.0)
    assert job is not None and job.id == "a" and await run(store, 1.0) is None  # b and c wait
    await end(store, job, 2.0, 1, "x")
    b = await store.get("b")
    assert (b.state, b.error_message) == ("dead", "dependency a is dead")
    assert await store.blockers([await store.get("c")]) == {}  # both final: c may run
    assert await store.revive(["a"], False, 3.0) == ["a"]
    again = await open_store()  # a restart: the same blocks
    assert await again.blockers([await again.get(x) for x in "abc"]) == {"b": ["a"], "c": ["a", "b"]}
    await again.delete("a", 4.0, cascade=True)
    assert (await again.get("b")).state == "dead" and await again.blockers([await again.get("c")]) == {}


async def test_each_job_runs_with_its_composed_environment_kept_across_a_restart(open_store: Opener) -> None:
    store = await open_store()
    caller = {"PATH": "/bin", "HOME": "/h", "TERM": "xterm", "FOO": "1"}
    jobs = await store.add([spec("a"), spec("b"), spec("own", env={"FOO": "2"}), spec("clean", inherit_env=False)],
                           1.0, env=caller)
    assert jobs[0].env == jobs[1].env and len({j.env for j in jobs}) == 3
    assert await store.environment(jobs[0].env) == {"PATH": "/bin", "HOME": "/h", "FOO": "1"}
    assert await store.environment(jobs[2].env) == {"PATH": "/bin", "HOME": "/h", "FOO": "2"}
    assert await store.environment(jobs[3].env) == {"PATH": "/bin", "HOME": "/h"}
    # No environment from the caller: the daemon's, as for a job of an older journal.
    (old,) = await store.add([spec("old")], 2.0)
    assert old.env is None and await store.environment(None) is None
    again = await open_store()
    for job in jobs:
        assert (await again.get(job.id)).env == job.env
        assert await again.environment(job.env) == await store.environment(job.env)


# --- cron schedules --------------------------------------------------------------------------------

H = 3600.0  # slots of "@hourly" in UTC are the multiples of this


async def test_a_schedule_fires_each_slot_once_and_its_state_survives_a_crash(open_store: Opener) -> None:
    store = await open_store()
    info = await store.define_schedule(ScheduleAdd("hourly", "@hourly", spec(max_retries=0)), 10 * H + 5, "UTC")
    assert (info.zone, info.next_fire, info.fires) == ("UTC", 11 * H, 0)
    assert await store.next_fire() == 11 * H
    assert await store.fire(11 * H - 1) == []
    (job,) = await store.fire(11 * H + 1)
    assert (job.id, job.schedule, job.slot, job.late, job.max_retries) == ("hourly-19700101T1100Z", "hourly", 11 * H,
                                                                           False, 0)
    assert await store.fire(11 * H + 2) == []  # fired: never twice
    (late,) = await store.fire(15 * H + 600)  # down for hours: the latest missed slot, once, late
    assert (late.slot, late.late) == (15 * H, True)
    await store.define_schedule(ScheduleAdd("paused", "* * * * *", spec(), "Europe/Berlin", no_overlap=True),
                                15 * H, "UTC")
    await store.pause_schedule("paused", True, 15 * H)
    await refused("duplicate", store.define_schedule(ScheduleAdd("paused", "@daily", spec()), 15 * H, "UTC"))
    await refused("invalid", store.define_schedule(ScheduleAdd("bad", "@sometimes", spec()), 15 * H, "UTC"))
    await refused("invalid", store.define_schedule(ScheduleAdd("bad", "@daily", spec(), "No/Where"), 15 * H, "UTC"))
    await refused("not_found", store.remove_schedule("nope"))
    await store.sync()
    expected = await store.schedules()
    again = await open_store()  # the first never closed: a restart after kill -9
    assert await again.schedules() == expected
    assert await again.fire(15 * H + 700) == []
    assert [s.name for s in expected] == ["hourly", "paused"] and expected[1].paused and expected[1].next_fire is None
    assert (await again.get("hourly-19700101T1500Z")).late
    await again.remove_schedule("hourly")
    assert [s.name for s in await again.schedules()] == ["paused"]
    assert (await again.get("hourly-19700101T1100Z")).schedule == "hourly"  # its jobs stay


async def all_pages(store: Store, state: str | None, limit: int, group: str | None = None,
                    query: str | None = None, scan: int = 20_000) -> list[list[str]]:
    pages, cursor = [], None
    for _ in range(1000):
        got = await store.page(state, group, query, cursor, limit, scan)
        pages.append([job.id for job in got.jobs])
        cursor = got.next
        if cursor is None:
            return pages
    raise AssertionError("pages never ended")


async def test_pages_go_newest_first_from_their_cursor_while_jobs_come_and_go(store: Store) -> None:
    await store.add([spec(f"j{i}") for i in range(25)], 10.0)
    first = await store.page("pending", None, None, None, 10, 20_000)
    assert [j.id for j in first.jobs] == [f"j{i}" for i in range(24, 14, -1)] and first.total == 25
    # Meanwhile: new jobs (newer than the cursor: not on the next pages), and two leave for processing.
    await store.add([spec("late1"), spec("late2")], 11.0)
    started = [await run(store, 12.0), await run(store, 12.0)]
    assert [j.id for j in started if j] == ["j0", "j1"]
    rest = await all_pages(store, "pending", 10)
    seen = [job_id for page in rest for job_id in page]
    assert seen == ["late2", "late1", *(f"j{i}" for i in range(24, 1, -1))]
    second = await store.page("pending", None, None, first.next, 10, 20_000)
    assert [j.id for j in second.jobs] == [f"j{i}" for i in range(14, 4, -1)]
    # Every state in list order, each newest first; the total is every job.
    every = await store.page(None, None, None, None, 200, 20_000)
    assert [j.id for j in every.jobs][:3] == ["j1", "j0", "late2"] and every.total == 27 and every.next is None


async def test_a_job_back_in_a_state_is_paged_once_as_its_newest(store: Store) -> None:
    await store.add([spec("a", max_retries=2), spec("b", max_retries=2)], 0.0)
    for at in (1.0, 2.0):
        job = await run(store, at)
        assert job is not None
        await end(store, job, at + 0.5, 1)
    assert await all_pages(store, "failed", 10) == [["b", "a"]]
    await store.retry(["a"], None, 3.0)
    job = await run(store, 3.0)
    assert job is not None and job.id == "a"
    await end(store, job, 3.5, 1)
    # (A page can come back empty, before the end: it passed only entries of jobs gone since.)
    assert [page for page in await all_pages(store, "failed", 1) if page] == [["a"], ["b"]]
    assert await all_pages(store, "processing", 10) == [[]]


async def test_a_filtered_page_looks_at_a_bounded_number_of_jobs_and_says_where_to_go_on(store: Store) -> None:
    await store.define_group("g", 0, True)
    await store.add([JobSpec(id=f"n{i}", command=f"echo {i}", group="g" if i % 10 == 0 else "default")
                     for i in range(100)], 0.0)
    got = await store.page("pending", "g", None, None, 50, 30)
    assert [j.id for j in got.jobs] == ["n90", "n80", "n70"] and got.scanned == 30 and got.next is not None
    assert got.total == 10  # from the kept counts, not from what was looked at
    pages = await all_pages(store, "pending", 50, "g", scan=30)
    assert [job_id for page in pages for job_id in page] == [f"n{i}" for i in range(90, -1, -10)]
    # A search: the job of that id first, then the commands that hold the text; no total.
    found = await store.page(None, None, "n7", None, 50, 20_000)
    assert [j.id for j in found.jobs] == ["n7"] and found.total is None
    one = await store.page(None, None, "n7", None, 1, 20_000)
    assert [j.id for j in one.jobs] == ["n7"] and one.next is not None
    assert [page for page in await all_pages(store, None, 1, query="n7") if page] == [["n7"]]
    found = await store.page(None, None, "echo 7", None, 50, 20_000)
    assert [j.id for j in found.jobs] == [f"n{i}" for i in range(79, 69, -1)] + ["n7"]
    for bad in ("nonsense", "dead:12", "pending:x"):
        with pytest.raises(QueueError) as e:
            await store.page("failed", None, None, bad, 10, 100)
        assert e.value.code == "invalid"


async def test_pages_after_a_reopen_keep_the_order_jobs_entered_their_state(open_store: Opener) -> None:
    store = await open_store()
    await store.add([spec(f"k{i}") for i in range(5)], 0.0)
    job = await run(store, 1.0)
    assert job is not None
    await end(store, job, 2.0, 0)
    await store.sync()
    again = await open_store()
    assert await all_pages(again, "pending", 2) == [["k4", "k3"], ["k2", "k1"]]
    assert await all_pages(again, "completed", 2) == [["k0"]]


async def test_deleted_jobs_leave_the_pages_and_their_entries_are_swept(store: Store) -> None:
    await store.add([spec(f"d{i}") for i in range(30_000)], 0.0)
    assert (await store.page("pending", None, None, None, 1, 100)).total == 30_000
    gone = [f"d{i}" for i in range(30_000) if i % 3]
    assert len(await store.delete_many(gone, None, 1.0)) == 20_000
    seen, scanned, cursor = [], 0, None
    while True:
        got = await store.page("pending", None, None, cursor, 200, 20_000)
        seen += [job.id for job in got.jobs]
        scanned += got.scanned
        if (cursor := got.next) is None:
            break
    assert seen == [f"d{i}" for i in range(29_997, -1, -3)]
    # The 20,000 entries the deleted jobs left behind were mostly swept out: a walk through every
    # page passes at most a quarter of the live ones, and a few thousand more.
    assert scanned < 10_000 + 2_500 + 4_096 + 200, scanned
