"""Unique keys and `why`, on the pure queue: the index follows every record, and each reason in its order."""

from __future__ import annotations

import pytest

from queuectl_client.protocol import JobSpec, sentence
from queuectld import diagnose, rules
from queuectld import events as ev
from queuectld import planning as plan
from queuectld.queue import Queue
from queuectld.rules import QueueError
from queuectld.unique import plan_batch
from tests.unit.plans import plan_end, plan_start


def spec(job_id: str, **kw: object) -> JobSpec:
    return JobSpec(id=job_id, command="true", **kw)  # type: ignore[arg-type]


def add(q: Queue, at: float, *specs: JobSpec) -> list[str | None]:
    """Add as the store does: only the new jobs go in the record; for each, the job it stands for instead."""
    fresh, instead = plan_batch(q.uniques.holders, rules.new_jobs(list(specs), at, q.config))
    plan.check_new(q, fresh)
    if fresh:
        q.apply(ev.Added(at, fresh))
    return instead


def run(q: Queue, at: float, code: int | None = 0, error: str | None = None) -> str:
    job = q.take(at)
    assert job is not None
    q.apply(plan_start(job, at, 1, 0, 0))
    q.apply(plan_end(q, job, at + 1, code, error))
    return job.id


def rebuilt(q: Queue) -> Queue:
    again = Queue()
    for e in q.snapshot():
        again.apply(e)
    return again


def test_a_key_is_held_until_its_job_is_final_and_a_batch_maps_repeats_to_the_first() -> None:
    q = Queue()
    assert add(q, 1.0, spec("a", unique_key="k")) == [None]
    assert add(q, 2.0, spec("b", unique_key="k"), spec("c", unique_key="j"), spec("d", unique_key="j"),
               spec("e")) == ["a", None, "c", None]
    assert sorted(j.id for j in q.iter_jobs()) == ["a", "c", "e"]
    assert q.uniques.holders == {"k": "a", "j": "c"}
    assert rebuilt(q).uniques.holders == {"k": "a", "j": "c"}
    assert run(q, 3.0) == "a"  # completed: the key is free
    assert q.uniques.holders == {"j": "c"}
    assert add(q, 5.0, spec("b", unique_key="k")) == [None]
    q.apply(plan.plan_cancel(q, ["b"], None, 6.0)[0])  # dead: free again
    q.apply(plan.plan_delete(q, ["c"], None, 6.0))  # deleted: free
    assert q.uniques.holders == {}
    assert rebuilt(q).uniques.holders == {}


def test_a_revive_takes_the_key_back_unless_another_live_job_holds_it() -> None:
    q = Queue()
    add(q, 1.0, spec("a", unique_key="k", max_retries=0), spec("b", unique_key="j", max_retries=0))
    run(q, 2.0, 1, "exited with status 1")
    run(q, 2.0, 1, "exited with status 1")
    add(q, 3.0, spec("c", unique_key="k"))
    with pytest.raises(QueueError) as e:
        plan.plan_revive(q, ["a"], False, 4.0)
    assert e.value.code == "state" and "'k'" in str(e.value) and "job c holds it" in str(e.value)
    with pytest.raises(QueueError):
        plan.plan_retry(q, ["a", "b"], None, 4.0)
    assert plan.plan_revive(q, [], True, 4.0).ids == ["b"]  # --all leaves it out
    assert plan.plan_retry(q, [], plan.p.Selector("dead"), 4.0).ids == ["b"]
    q.apply(plan.plan_revive(q, ["b"], False, 4.0))
    assert q.uniques.holders == {"k": "c", "j": "b"}
    q.apply(plan.plan_delete(q, ["c"], None, 5.0))
    q.apply(plan.plan_retry(q, ["a"], None, 6.0))
    assert q.uniques.holders == {"k": "a", "j": "b"} == rebuilt(q).uniques.holders
    # Two dead jobs with one key: one change cannot bring both back.
    q2 = Queue()
    add(q2, 1.0, spec("x", unique_key="k", max_retries=0))
    run(q2, 2.0, 1, "exited with status 1")
    add(q2, 3.0, spec("y", unique_key="k", max_retries=0))
    run(q2, 4.0, 1, "exited with status 1")
    with pytest.raises(QueueError, match="job x holds it"):
        plan.plan_revive(q2, ["x", "y"], False, 5.0)
    assert plan.plan_revive(q2, [], True, 5.0).ids == ["x"]


def why(q: Queue, job_id: str, now: float, pool: int = 2, busy: int = 0) -> tuple[str, str]:
    r = diagnose.why(q, job_id, now, pool, busy, "node")
    return r.code, sentence(r, now)


def test_each_reason_in_its_order() -> None:
    q = Queue()
    q.apply(ev.GroupDefined("one", 1))
    q.apply(ev.GroupDefined("held", 0, paused=True))
    add(q, 100.0, spec("done"), spec("failing", max_retries=2))
    run(q, 100.0)
    assert why(q, "done", 200.0) == ("completed", "completed at 1970-01-01T00:01:41Z (2m ago)")
    run(q, 101.0, 3, "exited with status 3")
    assert why(q, "failing", 102.0) == ("backoff", "backoff until 1970-01-01T00:01:44Z (in 2s; retry 1 of 2)")
    add(q, 110.0, spec("dep"), spec("child", after=["dep"], after_any=["done"], group="held"),
        spec("any", after_any=["dep"], group="held"), spec("later", run_at=500.0),
        spec("paused", group="held", run_at=500.0), spec("free"))
    assert why(q, "child", 120.0) == ("dependency", "waiting for dependency dep (pending)")
    assert why(q, "any", 120.0)[1] == "waiting for dependency dep (pending)"
    assert why(q, "paused", 120.0)[1] == "group held paused"  # paused comes before scheduled
    assert why(q, "later", 120.0) == ("scheduled", "scheduled for 1970-01-01T00:08:20Z (in 6m)")
    assert why(q, "dep", 120.0, pool=0) == ("no_workers", "no workers (pool is 0)")
    assert why(q, "child", 120.0, pool=0)[0] == "dependency"  # before no workers
    # Due in open groups, in line by priority, then due, then ticket: failing (due 103), dep, free (110).
    assert why(q, "free", 120.0) == ("next", "next in line, 2 jobs ahead of it")
    assert why(q, "failing", 120.0)[1] == "next in line, nothing ahead of it"
    assert why(q, "free", 120.0, pool=2, busy=2) == ("busy", "all 2 workers busy; 2 jobs ahead of it")
    assert why(q, "failing", 120.0, pool=1, busy=1)[1] == "the only worker is busy"
    # A deleted dependency: its `after` dependent dies with it, its `after_any` one counts it as met.
    q.apply(plan.plan_delete(q, ["dep"], None, 121.0, cascade=True))
    assert why(q, "child", 122.0) == ("dead", "dead: dependency dep is dead (at 1970-01-01T00:02:01Z)")
    assert why(q, "any", 122.0)[1] == "group held paused"
    add(q, 130.0, spec("capped1", group="one", priority=5), spec("capped2", group="one", priority=5))
    first = q.take(131.0)
    assert first is not None and first.id == "capped1"
    assert why(q, "capped1", 131.0)[1] == "starting on a worker now"
    q.apply(plan_start(first, 131.0, 3, 0, 0))
    assert why(q, "capped1", 140.0) == ("running", "running on worker node/3 since 1970-01-01T00:02:11Z (9s ago)")
    assert why(q, "capped2", 140.0) == ("group_full", "group one full (1 of 1 running)")
    # A full group's jobs are not ahead of anyone: capped2 (priority 5) does not count.
    assert why(q, "free", 140.0)[1] == "next in line, 1 job ahead of it"
    q.apply(plan_end(q, first, 141.0, None, "killed by SIGKILL"))
    q.apply(plan.plan_cancel(q, ["capped1"], None, 142.0)[0])
    assert why(q, "capped1", 150.0) == ("dead", "dead: cancelled (at 1970-01-01T00:02:22Z)")
    with pytest.raises(QueueError) as e:
        diagnose.why(q, "nope", 150.0, 1, 0, "node")
    assert e.value.code == "not_found"
