"""A wait's Watch: the states of a set of jobs, kept from bus notices; no sockets, no loop."""

from __future__ import annotations

from queuectl_client import protocol as p
from queuectld.bus import Bus, Deleted, Watch


def event(job_id: str, state: str) -> p.Event:
    return p.Event(0.0, job_id, state, 1)  # type: ignore[arg-type]


def test_a_watch_follows_its_jobs_to_final_and_calls_once() -> None:
    finals: list[int] = []
    w = Watch()
    for job_id, state in (("a", "pending"), ("b", "failed"), ("c", "completed")):
        w.add(job_id, state)
    w.on_final = lambda: finals.append(w.open)
    assert w.open == 2 and list(w.states) == ["a", "b", "c"]
    w(event("a", "processing"))
    w(event("b", "processing"))
    w(event("a", "completed"))
    assert (w.open, finals) == (1, [])
    w(event("b", "dead"))
    assert finals == [0]
    assert w.states == {"a": "completed", "b": "dead", "c": "completed"}
    assert w.take_changes() == {"a": "completed", "b": "dead"} and w.take_changes() == {}


def test_a_watch_ignores_other_jobs_repeats_and_changes_after_final() -> None:
    w = Watch()
    w.add("a", "dead")
    w.add("b", "pending")
    w.add("b", "completed")  # a job named twice keeps its first place and state
    w(event("zzz", "completed"))  # not in the set: one lookup, nothing kept
    w(event("b", "pending"))
    w(event("a", "pending"))  # a dead job retried stays dead to the wait, as it was when seen final
    w(p.PoolStopped())
    assert w.states == {"a": "dead", "b": "pending"} and w.changed == {} and w.open == 1


def test_a_deleted_job_is_final_as_deleted_unless_it_was_final_already() -> None:
    finals: list[bool] = []
    w = Watch()
    w.add("a", "pending")
    w.add("b", "completed")
    w.on_final = lambda: finals.append(True)
    w(Deleted("b"))
    assert w.states["b"] == "completed" and finals == []
    w(Deleted("a"))
    assert w.states == {"a": "deleted", "b": "completed"} and finals == [True] and w.open == 0


def test_the_bus_hands_each_notice_to_every_listener() -> None:
    bus = Bus()
    w1, w2 = Watch(), Watch()
    w1.add("a", "pending")
    w2.add("a", "processing")
    bus.listeners.update((w1, w2))
    bus.publish(event("a", "completed"))
    assert w1.states["a"] == w2.states["a"] == "completed"
