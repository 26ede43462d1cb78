"""Dependencies in the pure queue: blocking, the dead cascade, revival, deletes, replay and snapshots."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from queuectl_client.protocol import JobSpec, Selector
from queuectld import deps
from queuectld import events as ev
from queuectld import planning as plan
from queuectld.model import Extras, Job
from queuectld.queue import Queue
from queuectld.rules import QueueError
from tests.unit.plans import check_dependencies, plan_add, plan_end, plan_start


def spec(job_id: str, **kw: object) -> JobSpec:
    return JobSpec(id=job_id, command="true", **kw)  # type: ignore[arg-type]


class Log:
    """A queue and the records applied to it, to replay and to snapshot."""

    def __init__(self) -> None:
        self.q = Queue()
        self.records: list[ev.Event] = []

    def apply(self, e: ev.Event) -> None:
        self.records.append(e)
        self.q.apply(e)

    def add(self, at: float, *specs: JobSpec) -> None:
        self.apply(plan_add(self.q, list(specs), at))

    def run(self, at: float, code: int = 0) -> str | None:
        """Take, start and end the next job; its id."""
        job = self.q.take(at)
        if job is None:
            return None
        self.apply(plan_start(job, at, 1, 0, 0))
        self.apply(plan_end(self.q, job, at, code, None if code == 0 else "x"))
        return job.id

    def state(self, job_id: str) -> str:
        return self.q.get(job_id).state

    def check(self) -> None:
        """Replaying the records, and restoring a snapshot, both give this state, index included."""
        twin = Queue()
        for e in self.records:
            twin.apply(ev.decoder.decode(ev.encoder.encode(e)))
        snap = Queue()
        for e in self.q.snapshot(chunk=2):
            snap.apply(ev.decoder.decode(ev.encoder.encode(e)))
        for other in (twin, snap):
            assert _state(other) == _state(self.q)


def _state(q: Queue) -> object:
    jobs = sorted(q.iter_jobs(), key=lambda j: j.id)
    index = {name: {d: sorted(j.id for j in js) for d, js in table.items()}
             for name, table in (("after", q.deps.after_of), ("any", q.deps.any_of))}
    return ([(j.id, j.state, j.blocked, j.cause, j.error_message, q.deps.blockers(j)) for j in jobs], index,
            _order(q))


def _order(q: Queue) -> list[str]:
    """The order the waiting jobs would start in, far in the future (on a copy of the lanes' jobs)."""
    waiting = [j for s in ("pending", "failed") for j in q.by_state[s].values() if not j.blocked]
    return [j.id for j in sorted(waiting, key=lambda j: (-j.priority, j.due, j.ticket))]


def test_the_rules_as_functions() -> None:
    states = {"a": "completed", "b": "dead", "c": "pending", "d": "failed"}
    job = Job("j", "true", 0, 0, None, None, extra=Extras(after=["a", "c"], after_any=["b", "d", "gone"]))
    assert [deps.unmet(states.get(x)) for x in "abcd"] == [False, False, True, True]
    assert deps.count_unmet(job, states.get) == 2
    job.blocked = 2
    assert deps.blocked_by(job, states.get) == ["c", "d"]
    assert deps.fatal(job, states.get) == []
    job.after = ["b", "a"]
    assert deps.fatal(job, states.get) == ["b"]
    job.cause = "gone"
    assert deps.fatal(job, states.get) == ["b", "gone"]
    assert deps.death("x") == "dependency x is dead"


def test_a_pipeline_runs_in_order_and_blocked_jobs_are_in_no_lane() -> None:
    log = Log()
    log.add(0.0, spec("a"), spec("b", after=["a"]), spec("c", after=["b"]))
    q = log.q
    assert [q.get(x).blocked for x in "abc"] == [0, 1, 1]
    assert q.deps.blockers(q.get("c")) == ["b"]
    assert sum(len(lane.heap) for lane in q.groups["default"].lanes._lanes.values()) == 1
    assert log.run(1.0) == "a"
    assert log.run(1.0) is None or True  # b is due at 1.0, scheduled when a completed
    assert [log.state(x) for x in "abc"] == ["completed", "completed", "pending"]
    assert q.get("c").blocked == 0 and q.get("c").due == 1.0
    assert log.run(2.0) == "c"
    log.check()


def test_enqueue_refuses_unknown_and_later_dependencies_and_counts_met_ones() -> None:
    log = Log()
    log.add(0.0, spec("a"))
    log.run(0.0)
    with pytest.raises(QueueError, match="job b: unknown dependency zz") as e:
        plan_add(log.q, [spec("b", after=["a", "zz"])], 1.0)
    assert e.value.code == "invalid"
    with pytest.raises(QueueError, match="unknown dependency c"):
        plan_add(log.q, [spec("b", after=["c"]), spec("c")], 1.0)  # only earlier in the batch
    with pytest.raises(QueueError, match="cannot depend on itself"):
        plan_add(log.q, [spec("b", after_any=["b"])], 1.0)
    log.add(1.0, spec("b", after=["a"]), spec("c", after_any=["a", "b"]))
    assert log.q.get("b").blocked == 0 and log.q.get("c").blocked == 1  # a is met already
    log.check()


def test_a_dead_dependency_kills_its_after_dependents_transitively_and_releases_after_any_ones() -> None:
    log = Log()
    log.add(0.0, spec("a", max_retries=0), spec("b", after=["a"]), spec("c", after=["b"]),
            spec("any", after_any=["a"]), spec("both", after=["c"], after_any=["a"]))
    assert log.run(1.0, code=3) == "a"
    q = log.q
    assert [log.state(x) for x in ("b", "c", "both")] == ["dead"] * 3
    assert (q.get("b").cause, q.get("c").cause, q.get("both").cause) == ("a", "b", "c")
    assert q.get("c").error_message == "dependency b is dead"
    assert log.state("any") == "pending" and q.get("any").blocked == 0
    assert log.run(2.0) == "any"
    log.check()


def test_a_job_enqueued_after_a_dead_one_is_dead_at_once_with_those_after_it() -> None:
    log = Log()
    log.add(0.0, spec("a", max_retries=0))
    log.run(0.0, code=1)
    log.add(1.0, spec("b", after=["a"]), spec("c", after=["b"]), spec("d", after_any=["b"]))
    assert [log.state(x) for x in "bcd"] == ["dead", "dead", "pending"]
    assert log.q.get("d").blocked == 0 and log.run(2.0) == "d"
    log.apply(plan.plan_revive(log.q, ["a"], False, 3.0))
    assert [log.state(x) for x in "abc"] == ["pending"] * 3
    log.check()


def test_cancel_of_a_blocked_job_kills_its_dependents() -> None:
    log = Log()
    log.add(0.0, spec("a"), spec("b", after=["a"]), spec("c", after=["b"]))
    event, _ = plan.plan_cancel(log.q, ["b"], None, 1.0)
    log.apply(event)
    assert log.q.get("b").error_message == "cancelled" and log.q.get("c").cause == "b"
    log.check()


def test_revive_brings_back_the_jobs_that_died_because_of_it_blocked_again() -> None:
    log = Log()
    log.add(0.0, spec("a", max_retries=0), spec("b", after=["a"]), spec("c", after=["b"]),
            spec("x", max_retries=0), spec("d", after=["b", "x"]), spec("any", after_any=["a"]))
    assert log.run(1.0, 1) == "a"
    assert log.run(1.0, 1) == "x"  # d died with b already: its cause stays b
    assert log.run(1.0) == "any"
    q = log.q
    # b and c come back; d's other dependency x is dead: it stays, x its cause now.
    with pytest.raises(QueueError, match="job c waits for b, which is dead: retry b first"):
        plan.plan_revive(q, ["c"], False, 2.0)
    log.apply(plan.plan_revive(q, ["a"], False, 2.0))
    assert [log.state(j) for j in "abcd"] == ["pending", "pending", "pending", "dead"]
    assert (q.get("b").blocked, q.get("c").blocked, q.get("d").cause) == (1, 1, "x")
    assert q.get("d").error_message == "dependency x is dead"
    assert q.deps.blockers(q.get("c")) == ["b"]
    log.check()
    assert [log.run(3.0) for _ in range(4)] == ["a", "b", "c", None]
    log.apply(plan.plan_revive(q, ["x"], False, 4.0))
    assert log.state("d") == "pending" and q.get("d").blocked == 1  # x again; b completed
    log.check()


def test_a_selection_leaves_out_jobs_whose_dependency_is_dead_unless_their_cause_comes_back() -> None:
    log = Log()
    log.add(0.0, spec("a", max_retries=0), spec("b", after=["a"]), spec("c", after=["a"]))
    log.run(0.0, 1)
    assert plan.plan_retry(log.q, [], Selector("dead", None, None), 1.0).ids == ["a"]
    log.apply(plan.plan_revive(log.q, [], True, 1.0))
    assert [log.state(j) for j in "abc"] == ["pending"] * 3
    log.check()


def test_an_after_any_dependent_waits_again_for_a_revived_dependency_and_its_entry_goes_stale() -> None:
    log = Log()
    log.add(0.0, spec("a", max_retries=0), spec("other"), spec("j", after_any=["a"], priority=5))
    log.run(0.0, 1)
    q = log.q
    assert q.get("j").blocked == 0
    ticket = q.get("j").ticket
    log.apply(plan.plan_revive(q, ["a"], False, 1.0))
    assert q.get("j").blocked == 1 and q.get("j").ticket != ticket
    assert [log.run(2.0) for _ in range(3)] == ["other", "a", "j"]  # j's old entry (priority 5) went stale
    log.check()


def test_delete_refuses_a_live_job_with_pending_dependents_unless_cascade() -> None:
    log = Log()
    log.add(0.0, spec("a"), spec("b", after=["a"]), spec("c", after=["b"]), spec("any", after_any=["a"]))
    with pytest.raises(QueueError, match=r"job a has dependents waiting for it \(b, any\)") as e:
        plan.plan_delete(log.q, ["a"], None, 1.0)
    assert e.value.code == "state"
    with pytest.raises(QueueError, match=r"job a has dependents waiting for it \(any\)"):
        plan.plan_delete(log.q, ["a", "b"], None, 1.0)  # c waits for b, and any for a
    assert plan.plan_delete(log.q, ["a", "b", "c", "any"], None, 1.0).ids == ["a", "b", "c", "any"]
    log.apply(plan.plan_delete(log.q, ["a"], None, 1.0, cascade=True))
    assert [log.state(j) for j in ("b", "c", "any")] == ["dead", "dead", "pending"]
    assert log.q.get("b").cause == "a" and log.q.get("any").blocked == 0
    with pytest.raises(QueueError, match="deleted before it completed"):
        plan.plan_revive(log.q, ["b"], False, 2.0)
    assert plan.plan_revive(log.q, [], True, 2.0).ids == []
    log.check()


def test_a_completed_dependency_deleted_later_stays_met_and_is_never_counted_twice() -> None:
    log = Log()
    log.add(0.0, spec("a"), spec("slow"), spec("j", after=["a", "slow"]), spec("k", after_any=["a", "slow"]))
    assert log.run(1.0) == "a"
    log.apply(plan.plan_delete(log.q, ["a"], None, 2.0))  # retention would do this: a is final
    assert log.q.get("j").blocked == 1 and log.q.get("k").blocked == 1
    assert log.q.deps.blockers(log.q.get("j")) == ["slow"]
    # The id a is still named by j and k, which are not completed: a new job may not take it.
    with pytest.raises(QueueError, match="still named as a dependency by job j") as e:
        plan_add(log.q, [spec("a")], 3.0)
    assert e.value.code == "duplicate"
    log.check()
    assert log.run(3.0) == "slow"
    assert sorted(filter(None, [log.run(4.0), log.run(4.0)])) == ["j", "k"]
    log.add(5.0, spec("a"))  # every job naming it is completed: the id is free
    log.check()


def test_prune_of_final_jobs_never_kills_a_pending_one() -> None:
    log = Log()
    log.add(0.0, spec("a", max_retries=0), spec("b", after_any=["a"]), spec("c", after=["b"]))
    log.run(0.0, 1)
    assert log.state("b") == "pending" and log.q.get("b").blocked == 0
    log.apply(ev.DeletedMany(plan.expired(log.q, "dead", 10.0, None), 10.0))
    assert log.state("b") == "pending" and log.state("c") == "pending"
    log.check()


def test_a_chain_of_100000_neither_recurses_nor_scans() -> None:
    n = 100_000
    log = Log()
    log.add(0.0, spec("j0", max_retries=0), *(spec(f"j{i}", after=[f"j{i - 1}"]) for i in range(1, n)))
    log.run(1.0, 1)  # j0 dies: the rest die with it, iteratively
    assert log.q.counts()["dead"] == n and log.q.get(f"j{n - 1}").cause == f"j{n - 2}"
    log.apply(plan.plan_revive(log.q, ["j0"], False, 2.0))
    assert log.q.counts()["pending"] == n and log.q.get(f"j{n - 1}").blocked == 1


def test_a_job_blocked_while_held_is_not_put_back_in_a_lane() -> None:
    log = Log()
    log.add(0.0, spec("a", max_retries=0), spec("j", after_any=["a"]))
    log.run(0.0, 1)
    q = log.q
    held = q.take(1.0)
    assert held is not None and held.id == "j"
    log.apply(plan.plan_revive(q, ["a"], False, 1.0))
    assert held.blocked == 1
    q.put_back(held)
    assert log.run(2.0) == "a" and log.run(2.0) == "j"


# -- a model check through random histories ---------------------------------------------------------
# Jobs with random dependencies on earlier ones, run to completion or death, cancelled, deleted (with or
# without --cascade), revived by name or all at once, the queue snapshotted and restored: after each step
# every pending job counts its unmet edges and waits for no dead `after` dependency, nothing ran before its
# `after` dependencies completed, and a replay of the records and a restored snapshot give the same state.

step = st.one_of(
    st.tuples(st.just("run"), st.sampled_from([0, 1]), st.just(None)),
    st.tuples(st.just("revive_all"), st.just(0), st.just(None)),
    st.tuples(st.just("add"), st.lists(st.tuples(st.integers(0, 30), st.sampled_from(["after", "after_any"])),
                                       max_size=3), st.booleans()),
    st.tuples(st.just("run"), st.sampled_from([0, 0, 1]), st.just(None)),
    st.tuples(st.just("cancel"), st.integers(0, 30), st.just(None)),
    st.tuples(st.just("delete"), st.integers(0, 30), st.booleans()),
    st.tuples(st.just("retry"), st.lists(st.integers(0, 30), min_size=1, max_size=2), st.just(None)),
    st.tuples(st.just("revive_all"), st.just(0), st.just(None)),
    st.tuples(st.just("prune"), st.just(0), st.just(None)),
    st.tuples(st.just("snapshot"), st.just(0), st.just(None)),
)


def _invariants(q: Queue) -> None:
    check_dependencies(q)
    state_of = q.deps.state_of
    for job in q.by_state["dead"].values():
        if job.cause is not None:
            assert job.cause in (job.after or ()), job.id
            assert state_of(job.cause) in ("dead", None), (job.id, job.cause, state_of(job.cause))


@settings(max_examples=300, deadline=None)
@given(st.lists(step, max_size=40))
# A cascade that dies and comes back, then a job deleted under a dead dependent.
@example([("add", [], False), ("add", [(0, "after")], True), ("run", 1, None), ("snapshot", 0, None),
          ("revive_all", 0, None), ("run", 1, None), ("delete", 0, True), ("retry", [1, 2], None)])
def test_dependencies_hold_through_any_history(steps: list[tuple[str, Any, Any]]) -> None:
    log = Log()
    now, n = 0.0, 0

    def pick(k: int) -> Job | None:
        jobs = log.q.iter_jobs()
        return sorted(jobs, key=lambda j: j.id)[k % len(jobs)] if jobs else None

    for name, a, b in steps:
        now += 1.0
        q = log.q
        if name == "add":
            n += 1
            edges: dict[str, list[str]] = {}
            for k, kind in a:
                if (job := pick(k)) is not None:
                    edges.setdefault(kind, []).append(job.id)
            specs = [spec(f"j{n}", max_retries=0, **edges)]  # type: ignore[arg-type]
            if b:
                specs.append(spec(f"j{n}b", max_retries=0, after_any=[f"j{n}"]))
            try:
                log.add(now, *specs)
            except QueueError as e:
                assert e.code == "duplicate", e  # an id a job not completed still names
        elif name == "run":
            log.run(now, a)
        elif name == "cancel" and (job := pick(a)) is not None and job.state in ("pending", "failed"):
            log.apply(plan.plan_cancel(q, [job.id], None, now)[0])
        elif name == "delete" and (job := pick(a)) is not None and job.state != "processing":
            try:
                log.apply(plan.plan_delete(q, [job.id], None, now, b))
            except QueueError as e:
                assert not b and e.code == "state", e
        elif name == "retry":
            ids = [job.id for k in a if (job := pick(k)) is not None]
            if not ids:
                continue
            try:
                event = plan.plan_retry(q, ids, None, now)
            except QueueError as e:
                assert e.code == "state", e
                continue
            log.apply(event)
            assert all(q.get(i).state in ("pending", "failed") for i in event.ids)
        elif name == "revive_all":
            log.apply(plan.plan_revive(q, [], True, now))
        elif name == "prune":
            log.apply(ev.DeletedMany(plan.expired(q, "dead", now, None) + plan.expired(q, "completed", now, None),
                                     now))
        elif name == "snapshot":
            twin = Queue()
            for e in q.snapshot(chunk=2):
                twin.apply(ev.decoder.decode(ev.encoder.encode(e)))
            log.q = twin
        _invariants(log.q)
    log.check()
