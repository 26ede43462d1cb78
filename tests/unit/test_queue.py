"""The pure queue state machine: no sockets, files, processes or clock."""

from __future__ import annotations

import pytest

from queuectl_client.protocol import JobSpec
from queuectld import events as ev
from queuectld.queue import Queue
from queuectld.rules import INTERRUPTED, QueueError
from tests.unit.plans import plan_add, plan_end, plan_start


def add(q: Queue, at: float, *specs: JobSpec) -> None:
    q.apply(plan_add(q, list(specs), at))


def run(q: Queue, at: float, worker: int = 1) -> str | None:
    job = q.take(at)
    if job is None:
        return None
    q.apply(plan_start(job, at, worker, 0, 0))
    return job.id


def end(q: Queue, job_id: str, at: float, code: int | None = 0, error: str | None = None) -> ev.Ended:
    e = plan_end(q, q.get(job_id), at, code, error)
    q.apply(e)
    return e


def spec(job_id: str, **kw: object) -> JobSpec:
    return JobSpec(id=job_id, command="true", **kw)  # type: ignore[arg-type]


def test_lifecycle_to_completed() -> None:
    q = Queue()
    add(q, 100.0, spec("a"))
    assert q.counts()["pending"] == 1
    assert run(q, 101.0) == "a"
    job = q.get("a")
    assert job.state == "processing" and job.attempts == 1 and job.worker == 1 and job.started_at == 101.0
    assert run(q, 101.0, 2) is None  # nobody else can take it
    end(q, "a", 102.0)
    assert job.state == "completed" and job.exit_code == 0 and job.worker is None and job.finished_at == 102.0
    assert q.counts() == {"pending": 0, "processing": 0, "completed": 1, "failed": 0, "dead": 0}


def test_backoff_then_dead_after_one_plus_max_retries_runs() -> None:
    q = Queue()
    add(q, 0.0, spec("a", max_retries=2))
    t = 0.0
    delays = []
    for attempt in (1, 2):
        assert run(q, t) == "a"
        e = end(q, "a", t, 1, "exited with status 1")
        assert e.state == "failed" and q.get("a").attempts == attempt
        assert e.next_retry_at is not None
        delays.append(e.next_retry_at - t)
        assert run(q, e.next_retry_at - 0.001) is None  # not before it is due
        t = e.next_retry_at
    assert delays == [2.0, 4.0]
    assert run(q, t) == "a"
    e = end(q, "a", t, 1, "exited with status 1")
    assert e.state == "dead" and e.next_retry_at is None and q.get("a").attempts == 3
    assert run(q, t + 1000) is None


def test_backoff_base_applies_to_retries_scheduled_afterwards() -> None:
    q = Queue()
    add(q, 0.0, spec("a"))
    run(q, 0.0)
    q.apply(ev.ConfigChanged("backoff-base", "3"))
    assert end(q, "a", 10.0, 1, "x").next_retry_at == 13.0


def test_max_retries_default_applies_to_later_enqueues() -> None:
    q = Queue()
    add(q, 0.0, spec("a"))
    q.apply(ev.ConfigChanged("max-retries", "0"))
    add(q, 0.0, spec("b"), spec("c", max_retries=5))
    assert [q.get(x).max_retries for x in "abc"] == [3, 0, 5]


def test_order_priority_then_due_then_fifo() -> None:
    q = Queue()
    add(q, 10.0, spec("low"), spec("high", priority=5), spec("low2"))
    add(q, 11.0, spec("high2", priority=5))
    add(q, 5.0, spec("early"))  # an earlier due time beats enqueue order
    got = [run(q, 20.0, w) for w in range(5)]
    assert got == ["high", "high2", "early", "low", "low2"]


def test_run_at_in_the_future_waits() -> None:
    q = Queue()
    add(q, 0.0, spec("later", run_at=50.0), spec("now"))
    assert q.next_due() == 0.0
    assert run(q, 1.0) == "now"
    assert q.next_due() == 50.0
    assert run(q, 49.9) is None
    assert run(q, 50.0) == "later"


def test_duplicate_ids_are_refused_whole() -> None:
    q = Queue()
    add(q, 0.0, spec("a"))
    with pytest.raises(QueueError) as e:
        plan_add(q, [spec("b"), spec("a")], 1.0)
    assert e.value.code == "duplicate"
    with pytest.raises(QueueError):
        plan_add(q, [spec("c"), spec("c")], 1.0)
    assert [j.id for j in q.iter_jobs()] == ["a"]


def test_delete_refuses_running_jobs_and_leaves_no_stale_entry() -> None:
    q = Queue()
    add(q, 0.0, spec("a"), spec("b"))
    q.apply(q.plan_delete("a", 1.0))
    assert q.find("a") is None and q.counts()["pending"] == 1
    assert run(q, 2.0) == "b"
    with pytest.raises(QueueError) as e:
        q.plan_delete("b", 3.0)
    assert e.value.code == "state"
    with pytest.raises(QueueError) as e:
        q.plan_delete("zzz", 3.0)
    assert e.value.code == "not_found"
    add(q, 4.0, spec("a"))  # the id is free again
    assert run(q, 5.0) == "a"


def test_revive_resets_attempts_and_clears_error() -> None:
    q = Queue()
    add(q, 0.0, spec("a", max_retries=0), spec("b"))
    run(q, 0.0)
    end(q, "a", 1.0, 9, "exited with status 9")
    assert q.get("a").state == "dead"
    with pytest.raises(QueueError):
        q.plan_revive(["b"], False, 2.0)
    q.apply(q.plan_revive(["a"], False, 2.0))
    job = q.get("a")
    assert job.state == "pending" and job.attempts == 0
    assert job.error_message is None and job.next_retry_at is None and job.exit_code is None
    assert q.plan_revive([], True, 3.0).ids == []


def test_interrupted_runs_follow_the_retry_path() -> None:
    q = Queue()
    add(q, 0.0, spec("a"), spec("b", max_retries=0))
    run(q, 0.0, 1)
    run(q, 0.0, 2)
    ends = [plan_end(q, job, 5.0, None, INTERRUPTED) for job in q.by_state["processing"].values()]
    assert {e.id: e.state for e in ends} == {"a": "failed", "b": "dead"}
    assert all(e.error == INTERRUPTED for e in ends)


def test_replay_rebuilds_the_same_state() -> None:
    q = Queue()
    log: list[ev.Event] = []

    def apply(e: ev.Event) -> None:
        log.append(e)
        q.apply(e)

    apply(plan_add(q, [spec("a"), spec("b", priority=2), spec("c", max_retries=0)], 0.0))
    for t in (1.0, 2.0):
        job = q.take(t)
        assert job is not None
        apply(plan_start(job, t, 1, 0, 0))
        apply(plan_end(q, job, t + 0.5, 1, "x"))
    apply(ev.ConfigChanged("max-retries", "1"))
    apply(ev.PoolSized(4))
    apply(q.plan_delete("c", 9.0) if q.get("c").state != "processing" else ev.PoolSized(4))
    twin = Queue()
    for e in log:
        twin.apply(ev.decoder.decode(ev.encoder.encode(e)))
    assert [j.view("n") for j in twin.iter_jobs()] == [j.view("n") for j in q.iter_jobs()]
    assert twin.counts() == q.counts() and twin.pool_size == 4 and twin.config.max_retries == 1
    assert twin.next_due() == q.next_due()


def test_a_snapshot_rebuilds_order_running_groups_and_tickets() -> None:
    q = Queue()
    q.apply(plan_add(q, [spec(x) for x in "abcdef"], 0.0))
    for pgid, job_id in ((101, "a"), (102, "b")):
        job = q.take(1.0)
        assert job is not None and job.id == job_id
        q.apply(plan_start(job, 1.0, 1, pgid, 555))
    q.apply(plan_end(q, q.get("a"), 2.0, 1, None))  # failed, waits to retry
    twin = Queue()
    for e in q.snapshot(chunk=2):
        twin.apply(ev.decoder.decode(ev.encoder.encode(e)))
    for state in ("pending", "processing", "failed"):
        assert list(twin.by_state[state]) == list(q.by_state[state]), state
    assert twin.running == q.running == {"b": (102, 555)}
    assert [j.view("n") for j in twin.iter_jobs()] == [j.view("n") for j in q.iter_jobs()]
    # The same jobs come out in the same order, and a new job never reuses a ticket.
    twin.apply(plan_add(twin, [spec("g")], 4.0))
    q.apply(plan_add(q, [spec("g")], 4.0))
    assert twin.get("g").ticket == q.get("g").ticket
    order = []
    while (job := twin.take(10.0)) is not None:
        order.append(job.id)
    assert order == ["c", "d", "e", "f", "a", "g"]  # a: retry due at 2 + 2**1 = 4, scheduled before g
