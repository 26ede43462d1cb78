"""The audit trail the queue keeps: an entry per record with `by`, its retention (keep-dead, and
a cap), its snapshot, and records written before `by` existed."""

from __future__ import annotations

import msgspec

from queuectl_client.protocol import JobSpec
from queuectld import events as ev
from queuectld import trail
from queuectld.audit import Actor, actor
from queuectld.queue import Queue
from tests.unit.plans import plan_add, plan_start


def who(at: float, request: str = "Enqueue", uid: int = 1000, via: str = "cli") -> Actor:
    return Actor(at, uid, via, request)


def add(q: Queue, at: float, n: int = 1, by: Actor | None = None, prefix: str = "j") -> ev.Added:
    e = plan_add(q, [JobSpec(id=f"{prefix}{at:g}-{i}", command="echo hi") for i in range(n)], at)
    e = msgspec.structs.replace(e, by=by)
    q.apply(e)
    return e


def shown(q: Queue) -> list[tuple[float, int, str, str, str]]:
    return [(e.at, e.uid, e.via, e.action, e.detail) for e in q.trail.entries]


def test_only_records_with_by_are_noted_and_the_daemons_own_are_not() -> None:
    q = Queue()
    add(q, 10.0)  # the daemon's (a schedule's fire, a snapshot): no entry
    e = add(q, 11.0, by=who(11.0))
    q.apply(plan_start(q.get(e.jobs[0].id), 12.0, 1, 0, 0))
    q.apply(ev.ConfigChanged("max-retries", "4"))
    q.apply(ev.ConfigChanged("max-retries", "5", who(13.0, "ConfigSet", via="shell")))
    assert shown(q) == [(11.0, 1000, "cli", "enqueue", "j11-0: echo hi"),
                        (13.0, 1000, "shell", "config set", "max-retries 5")]


def test_each_record_is_named_by_its_action_with_a_bounded_summary() -> None:
    q = Queue()
    big = add(q, 1.0, n=25, by=who(1.0))
    add(q, 2.0, by=who(2.0, "Rerun"), prefix="r")
    ids = [j.id for j in big.jobs]
    q.apply(ev.Cancelled(ids[:2], 3.0, who(3.0, "Cancel")))
    q.apply(ev.Revived(ids[:1], 4.0, who(4.0, "Retry")))
    q.apply(ev.DeletedMany(ids[20:], 5.0, who(5.0, "Delete")))
    q.apply(ev.DeletedMany(ids[1:2], 6.0, who(6.0, "Prune")))
    q.apply(ev.GroupDefined("g", 2, False, who(7.0, "GroupAdd")))
    q.apply(ev.GroupDefined("g", 3, False, who(8.0, "GroupSet")))
    q.apply(ev.Paused(["g"], True, who(9.0, "Pause")))
    q.apply(ev.Paused(["g"], False, who(10.0, "Pause")))
    q.apply(ev.PoolSized(4, who(11.0, "WorkerStart")))
    q.apply(ev.Refused("enqueue", "rm -rf /", who(12.0, "Enqueue")))
    actions = [(e.action, e.detail) for e in q.trail.entries]
    assert actions[0] == ("enqueue", "25 jobs: " + ", ".join(ids[:10]) + " +15 more")
    assert actions[1:] == [
        ("rerun", "r2-0: echo hi"), ("cancel", f"{ids[0]}, {ids[1]}"), ("retry", ids[0]),
        ("delete", ", ".join(ids[20:])), ("prune", ids[1]), ("group add", "g parallel 2"),
        ("group set", "g parallel 3"), ("pause", "g"), ("resume", "g"), ("pool", "4 workers"),
        ("refused", "enqueue: rm -rf /"),
    ]
    long = ev.ConfigChanged("keep-dead", "x" * 1000, who(13.0, "ConfigSet"))
    assert len(trail.describe(long)[1]) < 100


def test_entries_older_than_keep_dead_go_as_new_ones_come_and_on_the_retention_pass() -> None:
    q = Queue()
    q.apply(ev.ConfigChanged("keep-dead", "100"))
    for t in (0.0, 50.0, 120.0):
        add(q, t, by=who(t))
    assert [e.at for e in q.trail.entries] == [50.0, 120.0]  # 0 is older than 120 - 100
    assert q.trail.trim(155.0) == 1
    assert [e.at for e in q.trail.entries] == [120.0]
    assert q.trail.trim(1000.0) == 1 and len(q.trail) == 0


def test_keep_dead_0_keeps_entries_but_only_the_newest_max_entries() -> None:
    q = Queue()
    q.apply(ev.ConfigChanged("keep-dead", "0"))
    by = who(1.0, "ConfigSet")
    for i in range(trail.MAX_ENTRIES + 5):
        q.trail.note(ev.ConfigChanged("max-retries", str(i), by))
    assert len(q.trail) == trail.MAX_ENTRIES
    assert q.trail.entries[0].detail == "max-retries 5"
    assert q.trail.trim(1e12) == 0  # age never drops them


def test_since_and_limit_select_the_newest() -> None:
    q = Queue()
    for t in range(1, 11):
        add(q, float(t), by=who(float(t)))
    assert [e.at for e in q.trail.since(8.0)] == [8.0, 9.0, 10.0]
    assert [e.at for e in q.trail.since(0.0, 2)] == [9.0, 10.0]
    assert q.trail.since(0.0, 0) == []


def test_a_snapshot_keeps_the_trail_and_replaying_it_adds_no_entry() -> None:
    q = Queue()
    for t in range(1, 6):
        add(q, float(t), by=who(float(t)))
    q.apply(ev.GroupDefined("g", 1, False, who(6.0, "GroupAdd")))
    records = [ev.decoder.decode(ev.encoder.encode(e)) for e in q.snapshot(chunk=2)]
    assert sum(isinstance(e, ev.AuditKept) for e in records) == 1
    twin = Queue()
    for e in records:
        twin.apply(e)
    assert shown(twin) == shown(q) and len(twin.trail) == 6


def test_records_written_before_by_existed_replay_with_none() -> None:
    old = [["c", "max-retries", "3"], ["p", 2], ["g", "g", 1, True], ["x", "g"], ["P", ["default"], True],
           ["a", 5.0, [["j1", "true", 0, 0, None, None, None, "default"]]], ["d", "j1", 6.0]]
    q = Queue()
    for array in old:
        record = ev.decoder.decode(msgspec.msgpack.encode(array))
        assert record.by is None  # type: ignore[union-attr]
        q.apply(record)
    assert len(q.trail) == 0 and q.pool_size == 2


def test_the_hot_paths_carry_no_actor_and_a_batch_carries_one() -> None:
    assert "by" not in ev.Started.__struct_fields__ and "by" not in ev.Ended.__struct_fields__
    q = Queue()
    one, many = add(q, 1.0, n=1), add(q, 2.0, n=1000)
    by = who(3.0)
    cost = [len(ev.encoder.encode(msgspec.structs.replace(e, by=by))) - len(ev.encoder.encode(e)) for e in (one, many)]
    assert cost[0] == cost[1] < 40  # the same few bytes, whatever the batch's size


def test_the_context_says_who_only_inside_a_request() -> None:
    from queuectld.audit import acting

    assert actor.get() is None
    with acting(1000, "cli", "Enqueue") as by:
        assert actor.get() is by and by.via == "cli"
    assert actor.get() is None


def test_an_edit_says_what_it_changed_live_and_on_replay() -> None:
    q = Queue()
    job = add(q, 1.0).jobs[0]
    edit = ev.Edited(job.id, 2.0, 5, 1_800_000_000.0, 1_800_000_000.0, "default", job.max_retries, 60.0, True,
                     who(2.0, "Edit"))
    q.apply(edit)
    q.apply(msgspec.structs.replace(edit, at=3.0, by=who(3.0, "Edit")))  # the same values again
    want = [(2.0, 1000, "cli", "edit", f"{job.id}: priority 0 -> 5, run_at none -> 2027-01-15T08:00:00Z, "
                                       "timeout none -> 60.0"),
            (3.0, 1000, "cli", "edit", f"{job.id}: nothing changed")]
    assert shown(q) == want
    twin = Queue()
    for e in (msgspec.structs.replace(add(Queue(), 1.0), by=None), edit, msgspec.structs.replace(edit, at=3.0,
                                                                                                  by=who(3.0, "Edit"))):
        twin.apply(e)
    assert shown(twin) == want
