"""Groups and queue control in the pure queue: caps, pauses, cancel, retry, edit, removal, retention, snapshots."""

from __future__ import annotations

from collections import Counter

import pytest

from queuectl_client.protocol import Edit, JobSpec, Selector
from queuectld import events as ev
from queuectld import planning as plan
from queuectld import rules
from queuectld.model import Job
from queuectld.queue import Queue
from queuectld.rules import CANCELLED, QueueError
from tests.unit.plans import plan_add, plan_end, plan_start, recount, tallies


def spec(job_id: str, **kw: object) -> JobSpec:
    return JobSpec(id=job_id, command="true", **kw)  # type: ignore[arg-type]


def add(q: Queue, at: float, *specs: JobSpec) -> None:
    q.apply(plan_add(q, list(specs), at))


def group(q: Queue, name: str, parallel: int = 0, create: bool = True) -> None:
    q.apply(plan.plan_group(q, name, parallel, create))


def pause(q: Queue, *names: str, paused: bool = True) -> None:
    q.apply(plan.plan_pause(q, list(names), paused))


def start(q: Queue, job: Job, at: float) -> None:
    q.apply(plan_start(job, at, 1, 0, 0))


def run(q: Queue, at: float) -> str | None:
    job = q.take(at)
    if job is None:
        return None
    start(q, job, at)
    return job.id


def end(q: Queue, job_id: str, at: float, code: int = 0) -> ev.Ended:
    e = plan_end(q, q.get(job_id), at, code, None if code == 0 else f"exited with status {code}")
    q.apply(e)
    return e


def cancel(q: Queue, *ids: str, at: float = 50.0) -> list[str]:
    event, stop = plan.plan_cancel(q, list(ids), None, at)
    q.apply(event)
    return stop


def edit(q: Queue, job_id: str, at: float, **kw: object) -> ev.Edited:
    event = plan.plan_edit(q, Edit(id=job_id, **kw), at)  # type: ignore[arg-type]
    q.apply(event)
    return event


def drain(q: Queue, at: float) -> list[str]:
    """Every job `take` gives at `at`, started as it comes."""
    out = []
    while (job_id := run(q, at)) is not None:
        out.append(job_id)
    return out


def failed_once(q: Queue, job_id: str, at: float) -> None:
    """Run the job (it must be the next one due) and let it fail."""
    assert run(q, at) == job_id
    assert end(q, job_id, at, 1).state == "failed"


# -- caps -------------------------------------------------------------------------------------------


def test_a_groups_parallel_caps_its_held_and_running_jobs() -> None:
    q = Queue()
    group(q, "g", parallel=2)
    add(q, 0.0, *(spec(f"g{i}", group="g") for i in range(5)))
    first, second = q.take(1.0), q.take(1.0)
    assert first is not None and second is not None and (first.id, second.id) == ("g0", "g1")
    assert q.take(1.0) is None  # two held: the group is full, whether they are started or not
    start(q, first, 1.0)
    assert q.take(1.0) is None and q.groups["g"].active == 2
    end(q, "g0", 2.0)
    assert run(q, 2.0) == "g2"  # one ended: one more may start
    assert q.take(2.0) is None
    group(q, "g", parallel=3, create=False)  # a higher cap lets one more in at once
    assert run(q, 3.0) == "g3" and q.take(3.0) is None
    group(q, "g", parallel=0, create=False)  # 0: no cap
    assert run(q, 3.0) == "g4"


def test_a_lower_cap_lets_running_jobs_finish_and_starts_nothing_until_under_it() -> None:
    q = Queue()
    group(q, "g", parallel=3)
    add(q, 0.0, *(spec(f"g{i}", group="g") for i in range(5)))
    assert drain(q, 1.0) == ["g0", "g1", "g2"]
    group(q, "g", parallel=1, create=False)
    assert q.by_state["processing"].keys() == {"g0", "g1", "g2"}  # nothing is stopped
    end(q, "g0", 2.0)
    end(q, "g1", 2.0)
    assert q.take(2.0) is None  # still one running: at the cap
    end(q, "g2", 2.0)
    assert drain(q, 3.0) == ["g3"]


def test_a_full_or_paused_group_never_holds_back_another_groups_jobs(heap_ops: Counter[str]) -> None:
    q = Queue()
    group(q, "full", parallel=1)
    group(q, "paused")
    pause(q, "paused")
    # Many waiting jobs in each, all due earlier and of a higher priority than the other group's.
    q.apply(plan_add(q, [spec(f"f{i}", group="full", priority=9) for i in range(20_000)], 0.0))
    q.apply(plan_add(q, [spec(f"p{i}", group="paused", priority=9) for i in range(20_000)], 0.0))
    assert run(q, 1.0) == "f0"  # the full group's one slot
    add(q, 5.0, spec("other"))
    heap_ops.clear()
    assert run(q, 6.0) == "other"
    # The claim looked at no job of the full or paused group: what it costs on an empty queue.
    assert sum(heap_ops.values()) <= 4 and heap_ops["heapify"] == 0
    assert q.take(6.0) is None
    assert q.next_due() is None  # neither closed group sets a timer


def test_order_across_groups_is_priority_then_due_then_fifo() -> None:
    q = Queue()
    group(q, "a")
    group(q, "b")
    add(q, 10.0, spec("a-low", group="a"), spec("b-low", group="b"), spec("a-high", group="a", priority=5))
    add(q, 11.0, spec("b-high", group="b", priority=5), spec("d-low"))
    add(q, 5.0, spec("b-early", group="b"))  # due earliest at its priority
    add(q, 12.0, spec("a-later", group="a", run_at=11.5))  # due at 11.5, after those due at 10 and 11
    assert drain(q, 20.0) == ["a-high", "b-high", "b-early", "a-low", "b-low", "d-low", "a-later"]


def test_pause_and_resume() -> None:
    q = Queue()
    group(q, "g")
    add(q, 0.0, spec("g0", group="g"), spec("g1", group="g", run_at=30.0), spec("d0"))
    assert run(q, 1.0) == "g0"
    pause(q, "g")
    assert q.groups["g"].paused
    assert drain(q, 40.0) == ["d0"]  # the running job runs on; nothing new starts
    end(q, "g0", 41.0)
    assert q.take(41.0) is None and q.next_due() is None
    pause(q, "g", paused=False)
    assert drain(q, 41.0) == ["g1"]
    # Pausing every group (no names): the default one too; a paused group may be paused again.
    add(q, 42.0, spec("d1"))
    assert plan.plan_pause(q, [], True).groups == ["default", "g"]
    pause(q)
    pause(q, "default")
    assert q.take(43.0) is None
    pause(q, paused=False)
    assert drain(q, 43.0) == ["d1"]
    with pytest.raises(QueueError) as e:
        plan.plan_pause(q, ["g", "nope"], True)
    assert e.value.code == "not_found"


def test_a_held_job_put_back_keeps_its_place_and_frees_its_slot() -> None:
    q = Queue()
    group(q, "g", parallel=1)
    add(q, 0.0, spec("g0", group="g"), spec("g1", group="g"), spec("d0"))
    held = q.take(1.0)
    assert held is not None and held.id == "g0" and held.id in q.held
    assert q.take(1.0).id == "d0"  # type: ignore[union-attr]  # g is full while g0 is held
    q.put_back(held)
    assert held.id not in q.held and q.groups["g"].active == 0
    q.put_back(held)  # a second put back changes nothing
    assert q.groups["g"].active == 0
    assert run(q, 1.0) == "g0" and q.take(1.0) is None


# -- cancel ---------------------------------------------------------------------------------------


def test_cancel_makes_pending_and_failed_jobs_dead_at_once() -> None:
    q = Queue()
    add(q, 0.0, spec("p"), spec("f"), spec("later", run_at=100.0))
    failed_once(q, "p", 1.0)  # p is the first due: it fails and waits for its retry
    assert q.get("p").state == "failed"
    assert cancel(q, "p", "later", at=2.0) == []  # nothing to stop
    for job_id in ("p", "later"):
        job = q.get(job_id)
        assert (job.state, job.error_message, job.next_retry_at, job.finished_at) == ("dead", CANCELLED, None, 2.0)
    assert q.get("p").attempts == 1  # its run still counts
    assert drain(q, 500.0) == ["f"]  # their entries are stale
    assert q.next_due() is None


def test_cancel_of_a_running_job_marks_it_and_its_run_ends_dead() -> None:
    q = Queue()
    add(q, 0.0, spec("r", max_retries=5))
    assert run(q, 1.0) == "r"
    assert cancel(q, "r") == ["r"]  # its process must be stopped
    job = q.get("r")
    assert job.state == "processing" and "r" in q.cancelled
    again, stop = plan.plan_cancel(q, ["r"], None, 51.0)  # a second cancel escalates: its processes are signalled
    assert again.ids == ["r"] and stop == ["r"]
    q.apply(again)
    assert job.state == "processing" and "r" in q.cancelled
    outcome = rules.plan_end(job, 52.0, 0, None, q.config, cancelled=True)
    assert (outcome.state, outcome.error, outcome.exit_code) == ("dead", CANCELLED, 0)  # even after a clean exit
    e2 = end(q, "r", 52.0, 1)  # a failure with retries left: still dead, never retried
    assert (e2.state, e2.error, e2.next_retry_at) == ("dead", CANCELLED, None)
    assert job.state == "dead" and "r" not in q.cancelled and q.running == {}
    with pytest.raises(QueueError) as e:
        plan.plan_cancel(q, ["r"], None, 53.0)
    assert e.value.code == "state"  # dead already


def test_cancel_of_a_held_job_is_dead_at_once_and_frees_its_slot_when_given_back() -> None:
    q = Queue()
    group(q, "g", parallel=1)
    add(q, 0.0, spec("h", group="g"), spec("next", group="g"))
    held = q.take(1.0)
    assert held is not None and held.id == "h"
    assert cancel(q, "h") == ["h"]  # its start, under way, must be stopped
    assert (held.state, held.error_message) == ("dead", CANCELLED)
    assert q.take(1.0) is None  # still held: it counts until the pool gives it back
    # Held, it counts as running: it cannot be retried, deleted or edited meanwhile.
    for attempt in (lambda: plan.plan_retry(q, ["h"], None, 2.0), lambda: plan.plan_delete(q, ["h"], None, 2.0),
                    lambda: plan.plan_edit(q, Edit(id="h", priority=1), 2.0)):
        with pytest.raises(QueueError) as e:
            attempt()
        assert e.value.code == "state"
    assert plan.plan_delete(q, [], Selector(state="dead"), 2.0).ids == []  # a selection leaves it out
    q.put_back(held)  # the store refused its start (Withdrawn): the pool gives it back
    assert held.state == "dead" and q.groups["g"].active == 0
    assert drain(q, 2.0) == ["next"]


def test_a_group_is_not_removed_while_a_job_cancelled_in_its_start_is_held() -> None:
    q = Queue()
    group(q, "g", parallel=1)
    add(q, 0.0, spec("h", group="g"))
    held = q.take(1.0)
    assert held is not None
    cancel(q, "h")
    assert q.tally("g")["dead"] == 1  # its only job is final, but still counts in the group
    with pytest.raises(QueueError) as e:
        plan.plan_group_removal(q, "g")
    assert e.value.code == "state"
    q.put_back(held)
    q.apply(plan.plan_group_removal(q, "g"))
    group(q, "g", parallel=1)
    add(q, 2.0, spec("a", group="g"), spec("b", group="g"))
    assert drain(q, 2.0) == ["a"]  # the cap holds in the group made again


def test_cancel_by_ids_is_all_or_nothing_and_by_selection_takes_what_can_be() -> None:
    q = Queue()
    add(q, 0.0, spec("a"), spec("b"), spec("c"))
    assert run(q, 1.0) == "a"
    end(q, "a", 2.0)
    for ids, code in ((["b", "zzz"], "not_found"), (["b", "a"], "state"), ([], "invalid")):
        with pytest.raises(QueueError) as e:
            plan.plan_cancel(q, ids, None, 3.0)
        assert e.value.code == code
    assert q.get("b").state == "pending"
    with pytest.raises(QueueError) as e:
        plan.plan_cancel(q, ["b"], Selector(state="pending"), 3.0)
    assert e.value.code == "invalid"
    with pytest.raises(QueueError) as e:
        plan.plan_cancel(q, [], Selector(state="completed"), 3.0)
    assert e.value.code == "invalid"
    event, stop = plan.plan_cancel(q, [], Selector(state="pending"), 3.0)
    assert event.ids == ["b", "c"] and stop == []


# -- retry ----------------------------------------------------------------------------------------


def test_retry_makes_a_failed_job_due_now_and_keeps_its_attempts() -> None:
    q = Queue()
    add(q, 0.0, spec("f", max_retries=3), spec("x", run_at=1000.0))
    failed_once(q, "f", 1.0)
    job = q.get("f")
    assert job.next_retry_at == 3.0  # 1 + 2**1
    q.apply(plan.plan_retry(q, ["f"], None, 1.5))
    assert (job.state, job.attempts, job.next_retry_at, job.due) == ("failed", 1, 1.5, 1.5)
    assert run(q, 1.5) == "f"  # no waiting out the backoff
    assert q.get("f").attempts == 2


def test_retry_revives_a_dead_job_with_its_attempts_reset() -> None:
    q = Queue()
    add(q, 0.0, spec("d", max_retries=0), spec("c"))
    assert run(q, 1.0) == "d"
    end(q, "d", 2.0, 7)
    cancel(q, "c", at=2.0)
    q.apply(plan.plan_retry(q, [], Selector(state="dead"), 3.0))
    for job_id in ("d", "c"):
        job = q.get(job_id)
        assert (job.state, job.attempts, job.error_message, job.exit_code, job.next_retry_at) == \
            ("pending", 0, None, None, None)
    assert drain(q, 3.0) == ["d", "c"]


def test_retry_by_ids_is_all_or_nothing() -> None:
    q = Queue()
    add(q, 0.0, spec("d", max_retries=0), spec("p"))
    assert run(q, 1.0) == "d"
    end(q, "d", 2.0, 1)
    for ids, code in ((["d", "p"], "state"), (["d", "zzz"], "not_found")):
        with pytest.raises(QueueError) as e:
            plan.plan_retry(q, ids, None, 3.0)
        assert e.value.code == code
    assert q.get("d").state == "dead"
    with pytest.raises(QueueError) as e:
        plan.plan_retry(q, [], Selector(state="pending"), 3.0)
    assert e.value.code == "invalid"


# -- edit -----------------------------------------------------------------------------------------


def test_an_edit_of_group_retries_or_timeout_keeps_the_jobs_place() -> None:
    q = Queue()
    group(q, "other")
    add(q, 0.0, spec("a"), spec("b"), spec("c"))
    ticket = q.get("b").ticket
    e = edit(q, "b", 1.0, max_retries=9, timeout=5.0)
    assert not e.reschedule
    e = edit(q, "a", 1.0, group="other")
    assert not e.reschedule and q.get("a").group == "other"
    assert q.get("b").ticket == ticket and (q.get("b").max_retries, q.get("b").timeout) == (9, 5.0)
    assert drain(q, 2.0) == ["a", "b", "c"]


def test_an_edit_of_priority_or_due_time_moves_the_job() -> None:
    q = Queue()
    add(q, 0.0, spec("a"), spec("b"), spec("c"), spec("d"))
    assert edit(q, "a", 1.0, priority=0).reschedule is False  # the same value: no change of place
    assert edit(q, "b", 1.0, priority=3).reschedule
    assert edit(q, "c", 1.0, delay=10.0).reschedule
    job = q.get("c")
    assert (job.run_at, job.due) == (11.0, 11.0)
    assert edit(q, "a", 2.0, priority=3).reschedule  # the same priority as b, scheduled after it
    assert drain(q, 5.0) == ["b", "a", "d"]
    assert q.next_due() == 11.0
    assert edit(q, "c", 6.0, run_at=None).reschedule  # due now
    assert drain(q, 6.0) == ["c"]


def test_an_edit_of_a_failed_job_moves_its_retry() -> None:
    q = Queue()
    add(q, 0.0, spec("f"))
    failed_once(q, "f", 1.0)
    e = edit(q, "f", 1.5, delay=100.0)
    job = q.get("f")
    assert e.reschedule and (job.state, job.due, job.next_retry_at) == ("failed", 101.5, 101.5)
    assert q.take(50.0) is None and q.next_due() == 101.5
    assert run(q, 101.5) == "f"


def test_edit_refuses_running_jobs_unknown_groups_and_both_times() -> None:
    q = Queue()
    add(q, 0.0, spec("r"), spec("w"))
    assert run(q, 1.0) == "r"
    for req, code in ((Edit(id="r", priority=1), "state"), (Edit(id="zzz", priority=1), "not_found"),
                      (Edit(id="w", group="nope"), "not_found"), (Edit(id="w", delay=1.0, run_at=5.0), "invalid")):
        with pytest.raises(QueueError) as e:
            plan.plan_edit(q, req, 2.0)
        assert e.value.code == code, req


def test_an_edit_of_a_final_job_changes_its_fields_and_tallies_only() -> None:
    q = Queue()
    group(q, "g")
    add(q, 0.0, spec("a"))
    assert run(q, 1.0) == "a"
    end(q, "a", 2.0)
    edit(q, "a", 3.0, group="g", priority=4)
    job = q.get("a")
    assert (job.state, job.group, job.priority) == ("completed", "g", 4)
    assert tallies(q) == recount(q) == {"g": {"completed": 1}}
    assert q.take(100.0) is None


def test_moving_groups_leaves_no_live_stale_entry() -> None:
    q = Queue()
    group(q, "a")
    group(q, "b")
    add(q, 0.0, spec("x", group="a"), spec("y", group="a"))
    edit(q, "x", 1.0, max_retries=1)  # the same group, the same place
    edit(q, "x", 1.0, group="b")
    edit(q, "x", 1.0, group="a")  # back again: its first entry there is its own again
    edit(q, "x", 1.0, timeout=9.0)
    pause(q, "b")
    # x is taken once, from its own group, whatever entries it left on the way.
    assert drain(q, 2.0) == ["x", "y"]
    end(q, "x", 3.0)
    end(q, "y", 3.0)
    pause(q, "b", paused=False)
    assert q.take(4.0) is None
    assert q.groups["a"].active == q.groups["b"].active == 0
    # Held, a moved job is never handed out a second time either.
    add(q, 5.0, spec("z", group="a"))
    edit(q, "z", 5.0, group="b")
    edit(q, "z", 5.0, group="a")
    held = q.take(6.0)
    assert held is not None and held.id == "z"
    assert q.take(6.0) is None and q.groups["a"].active == 1
    q.put_back(held)
    assert drain(q, 6.0) == ["z"] and q.groups["a"].active == 1


def test_a_moved_job_waits_on_its_new_groups_cap_and_pause() -> None:
    q = Queue()
    group(q, "open")
    group(q, "closed")
    pause(q, "closed")
    add(q, 0.0, spec("a", group="open"), spec("b", group="open"))
    edit(q, "a", 1.0, group="closed")
    assert drain(q, 2.0) == ["b"]
    assert tallies(q) == recount(q)
    pause(q, "closed", paused=False)
    assert drain(q, 3.0) == ["a"]


# -- groups -------------------------------------------------------------------------------------


def test_group_definition_errors() -> None:
    q = Queue()
    group(q, "g", parallel=2)
    with pytest.raises(QueueError) as e:
        plan.plan_group(q, "g", 1, True)
    assert e.value.code == "duplicate"
    with pytest.raises(QueueError) as e:
        plan.plan_group(q, "nope", 1, False)
    assert e.value.code == "not_found"
    pause(q, "g")
    group(q, "g", parallel=5, create=False)  # a change of cap keeps the pause
    assert (q.groups["g"].parallel, q.groups["g"].paused) == (5, True)
    with pytest.raises(QueueError) as e:
        plan_add(q, [spec("x", group="nope")], 0.0)
    assert e.value.code == "invalid"


def test_a_group_is_removed_only_without_jobs_that_are_not_final_and_default_never() -> None:
    q = Queue()
    group(q, "g")
    add(q, 0.0, spec("a", group="g"), spec("b", group="g"))
    with pytest.raises(QueueError) as e:
        plan.plan_group_removal(q, "default")
    assert e.value.code == "state"
    for step in ("pending", "running", "failed"):
        with pytest.raises(QueueError) as e:
            plan.plan_group_removal(q, "g")
        assert e.value.code == "state", step
        if step == "pending":
            assert run(q, 1.0) == "a"
        elif step == "running":
            end(q, "a", 2.0, 1)  # failed, to retry
    held = q.take(100.0)  # b is next
    assert held is not None and held.id == "b"
    cancel(q, "a", "b", at=101.0)
    q.put_back(held)
    q.apply(plan.plan_group_removal(q, "g"))  # only dead jobs are left in it
    assert "g" not in q.groups
    with pytest.raises(QueueError) as e:
        plan.plan_group_removal(q, "g")
    assert e.value.code == "not_found"
    # Its final jobs stay, still named in it; they cannot be retried until the group is back.
    assert q.tally("g")["dead"] == 2 and q.get("a").group == "g"
    with pytest.raises(QueueError) as e:
        plan.plan_retry(q, ["a"], None, 102.0)
    assert e.value.code == "state"
    assert plan.plan_revive(q, [], True, 102.0).ids == []
    assert plan.select(q, Selector(state="dead", group="g"), 102.0) == [q.get("a"), q.get("b")]
    group(q, "g")
    q.apply(plan.plan_retry(q, ["a"], None, 103.0))
    assert drain(q, 103.0) == ["a"]


def test_delete_many_by_ids_is_all_or_nothing_and_by_selection_leaves_running_jobs() -> None:
    q = Queue()
    group(q, "g")
    add(q, 0.0, spec("a"), spec("b", group="g"), spec("c", group="g"), spec("d", group="g"))
    assert run(q, 1.0) == "a"
    q.take(1.0)  # b: held
    for ids, code in ((["c", "a"], "state"), (["c", "b"], "state"), (["c", "zzz"], "not_found")):
        with pytest.raises(QueueError) as e:
            plan.plan_delete(q, ids, None, 2.0)
        assert e.value.code == code
    with pytest.raises(QueueError) as e:
        plan.plan_delete(q, [], Selector(state="processing"), 2.0)
    assert e.value.code == "invalid"
    with pytest.raises(QueueError) as e:
        plan.plan_delete(q, [], Selector(state="pending", group="nope"), 2.0)
    assert e.value.code == "not_found"
    event = plan.plan_delete(q, [], Selector(state="pending", group="g"), 2.0)
    assert event.ids == ["c", "d"]  # b is being started: left out
    q.apply(event)
    assert [j.id for j in q.iter_jobs()] == ["a", "b"]
    assert tallies(q) == recount(q)


def test_a_selection_by_age_takes_jobs_whose_state_changed_long_enough_ago() -> None:
    q = Queue()
    add(q, 0.0, spec("old"))
    add(q, 50.0, spec("new"))
    sel = Selector(state="pending", older_than=30.0)
    assert [j.id for j in plan.select(q, sel, 60.0)] == ["old"]
    assert [j.id for j in plan.select(q, sel, 80.0)] == ["old", "new"]


# -- retention ------------------------------------------------------------------------------------


def test_expired_takes_the_oldest_final_jobs_first_and_stops_at_the_first_young_one() -> None:
    q = Queue()
    q.apply(ev.ConfigChanged("max-retries", "0"))
    add(q, 0.0, *(spec(f"j{i}") for i in range(5)))
    for i, at in enumerate((10.0, 20.0, 30.0, 40.0)):
        assert run(q, at) == f"j{i}"
        end(q, f"j{i}", at, 0 if i % 2 == 0 else 1)  # completed: j0 at 10, j2 at 30; dead: j1 at 20, j3 at 40
    cancel(q, "j4", at=45.0)  # dead, finished when cancelled
    q.apply(plan.plan_retry(q, ["j1"], None, 46.0))
    assert run(q, 47.0) == "j1"
    end(q, "j1", 48.0, 1)  # dead again: it entered the state last
    assert [j.id for j in q.iter_jobs("dead")] == ["j3", "j4", "j1"]
    assert plan.expired(q, "completed", 31.0, None) == ["j0", "j2"]
    assert plan.expired(q, "completed", 30.0, None) == ["j0"]  # finished at 30 is not before 30
    assert plan.expired(q, "dead", 46.0, None) == ["j3", "j4"]
    assert plan.expired(q, "dead", 100.0, 2) == ["j3", "j4"]
    assert plan.expired(q, "dead", 100.0, None) == ["j3", "j4", "j1"]
    assert plan.expired(q, "dead", 40.0, None) == []
    q.apply(ev.DeletedMany(plan.expired(q, "dead", 46.0, None), 60.0))
    assert [j.id for j in q.iter_jobs("dead")] == ["j1"] and tallies(q) == recount(q)


# -- snapshots and replay ---------------------------------------------------------------------------


def _twin(q: Queue, chunk: int = 2) -> Queue:
    twin = Queue()
    for e in q.snapshot(chunk=chunk):
        twin.apply(ev.decoder.decode(ev.encoder.encode(e)))
    return twin


def _state(q: Queue) -> object:
    return (
        [j.view("n") for j in q.iter_jobs()],
        {s: list(jobs) for s, jobs in q.by_state.items()},
        {name: (g.parallel, g.paused, g.active) for name, g in q.groups.items()},
        tallies(q), q.running, q.cancelled,
    )


def test_a_snapshot_rebuilds_groups_pauses_a_cancelled_run_and_tallies() -> None:
    q = Queue()
    group(q, "capped", parallel=1)
    group(q, "stopped", parallel=4)
    group(q, "gone")
    pause(q, "stopped")
    add(q, 0.0, spec("c0", group="capped"), spec("c1", group="capped"), spec("s0", group="stopped"),
        spec("d0", priority=1), spec("d1", run_at=40.0), spec("g0", group="gone"))
    assert run(q, 1.0) == "d0"
    q.apply(plan_start(q.take(1.0), 1.0, 2, 4242, 77))  # type: ignore[arg-type]  # c0
    assert run(q, 1.0) == "g0"
    end(q, "g0", 2.0)
    q.apply(plan.plan_group_removal(q, "gone"))  # its completed job stays
    cancel(q, "c0", at=3.0)
    edit(q, "s0", 3.0, priority=2)
    assert q.cancelled == {"c0"} and q.running["c0"] == (4242, 77)
    twin = _twin(q)
    assert _state(twin) == _state(q)
    assert tallies(twin) == recount(twin) == recount(q)
    assert twin.groups.keys() == {"default", "capped", "stopped"}
    # The restored queue goes on as the live one would: c0's run ends dead, the cap holds, the pause holds.
    for qq in (q, twin):
        assert qq.take(50.0).id == "d1"  # type: ignore[union-attr]
        assert qq.take(50.0) is None  # c1 waits for capped's one slot
        e = end(qq, "c0", 51.0, 0)
        assert (e.state, e.error) == ("dead", CANCELLED)
        assert qq.take(51.0).id == "c1"  # type: ignore[union-attr]
        pause(qq, "stopped", paused=False)
        assert qq.take(51.0).id == "s0"  # type: ignore[union-attr]
    add(q, 60.0, spec("new"))
    add(twin, 60.0, spec("new"))
    assert q.get("new").ticket == twin.get("new").ticket


def test_replaying_the_control_records_rebuilds_the_same_state() -> None:
    q = Queue()
    log: list[ev.Event] = []

    def apply(e: ev.Event) -> None:
        log.append(e)
        q.apply(e)

    apply(plan.plan_group(q, "g", 2, True))
    apply(plan.plan_group(q, "h", 0, True))
    apply(plan_add(q, [spec(f"j{i}", group="gh"[i % 2], max_retries=1) for i in range(8)], 0.0))
    for at in (1.0, 1.0):
        job = q.take(at)
        assert job is not None
        apply(plan_start(job, at, 1, 10, 20))
    apply(plan.plan_cancel(q, ["j0", "j5"], None, 2.0)[0])  # one running, one waiting
    apply(plan_end(q, q.get("j1"), 3.0, 1, "x"))  # failed
    apply(plan.plan_retry(q, ["j1", "j5"], None, 4.0))
    apply(plan.plan_edit(q, Edit(id="j2", group="h", priority=3), 5.0))
    apply(plan.plan_edit(q, Edit(id="j3", max_retries=0), 5.0))
    apply(plan.plan_pause(q, ["h"], True))
    apply(plan.plan_delete(q, [], Selector(state="pending", group="g"), 6.0))
    apply(plan.plan_group(q, "g", 1, False))
    twin = Queue()
    for e in log:
        twin.apply(ev.decoder.decode(ev.encoder.encode(e)))
    assert _state(twin) == _state(q)
    assert tallies(q) == recount(q)
