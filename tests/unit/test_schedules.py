"""Cron schedules in the pure queue: slot math (DST both ways, names, steps, macros), misfires, no-overlap,
pause and resume, failed fires, and the records' replay and snapshot."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

import msgspec
import pytest

from queuectl_client.protocol import JobSpec, ScheduleAdd
from queuectld import cron, firing, rules
from queuectld import events as ev
from queuectld import planning as plan
from queuectld.queue import Queue
from queuectld.rules import QueueError
from queuectld.schedules import LATE_AFTER

NY = ZoneInfo("America/New_York")


def t(iso: str) -> float:
    """UNIX seconds of an ISO time with its offset."""
    return datetime.fromisoformat(iso).timestamp()


def local(ts: float | None, tz: ZoneInfo = NY) -> str | None:
    return None if ts is None else datetime.fromtimestamp(ts, tz).isoformat()


def slots(expr: str, start: str, n: int, tz: ZoneInfo = NY) -> list[str | None]:
    fields, at, out = cron.expression(expr), t(start), []
    for _ in range(n):
        nxt = cron.next_slot(fields, tz, at)
        out.append(local(nxt, tz))
        assert nxt is not None
        at = nxt
    return out


# --- slot math ----------------------------------------------------------------------------------------


def test_a_local_time_skipped_by_spring_forward_is_no_slot() -> None:
    # 2026-03-08 in New York: 02:00 EST jumps to 03:00 EDT; 02:30 does not exist that day.
    assert slots("30 2 * * *", "2026-03-07T00:00:00-05:00", 3) == [
        "2026-03-07T02:30:00-05:00", "2026-03-09T02:30:00-04:00", "2026-03-10T02:30:00-04:00"]
    # 01:30 exists once, before the jump.
    assert slots("30 1 * * *", "2026-03-07T12:00:00-05:00", 2) == [
        "2026-03-08T01:30:00-05:00", "2026-03-09T01:30:00-04:00"]


def test_a_local_time_repeated_by_fall_back_fires_once_at_its_first_occurrence() -> None:
    # 2026-11-01 in New York: 02:00 EDT falls back to 01:00 EST; 01:30 happens twice.
    assert slots("30 1 * * *", "2026-10-31T00:00:00-04:00", 3) == [
        "2026-10-31T01:30:00-04:00", "2026-11-01T01:30:00-04:00", "2026-11-02T01:30:00-05:00"]
    # 02:30 happens once (after the fall back), an hour and a half after the repeated 01:00.
    assert slots("30 2 * * *", "2026-10-31T12:00:00-04:00", 2) == [
        "2026-11-01T02:30:00-05:00", "2026-11-02T02:30:00-05:00"]


def test_every_30_minutes_across_both_transitions() -> None:
    assert slots("*/30 * * * *", "2026-03-08T00:45:00-05:00", 4) == [
        "2026-03-08T01:00:00-05:00", "2026-03-08T01:30:00-05:00",
        "2026-03-08T03:00:00-04:00", "2026-03-08T03:30:00-04:00"]  # 02:00 and 02:30 do not exist
    assert slots("*/30 * * * *", "2026-11-01T00:45:00-04:00", 5) == [
        "2026-11-01T01:00:00-04:00", "2026-11-01T01:30:00-04:00",  # the repeated 01:00 and 01:30: once each
        "2026-11-01T02:00:00-05:00", "2026-11-01T02:30:00-05:00", "2026-11-01T03:00:00-05:00"]


def test_the_next_slot_from_inside_the_repeated_hour_and_the_last_slot_before_it() -> None:
    fields = cron.expression("*/15 * * * *")
    second_pass = t("2026-11-01T01:20:00-05:00")  # 01:20 EST, the second time 01:20 is on the clock
    assert local(cron.next_slot(fields, NY, second_pass)) == "2026-11-01T02:00:00-05:00"
    # The latest slot at or before it: the first pass's 01:45, not the wall clock's 01:15.
    assert local(cron.prev_slot(fields, NY, second_pass)) == "2026-11-01T01:45:00-04:00"
    assert local(cron.prev_slot(fields, NY, t("2026-11-01T01:15:00-04:00"))) == "2026-11-01T01:15:00-04:00"
    assert local(cron.prev_slot(cron.expression("30 2 * * *"), NY, t("2026-03-08T12:00:00-04:00"))) == \
        "2026-03-07T02:30:00-05:00"  # that day's 02:30 did not exist


def test_names_ranges_steps_lists_and_macros() -> None:
    utc = ZoneInfo("UTC")
    assert slots("0 9 * * MON-FRI", "2026-11-27T10:00:00+00:00", 3, utc) == [  # a Friday
        "2026-11-30T09:00:00+00:00", "2026-12-01T09:00:00+00:00", "2026-12-02T09:00:00+00:00"]
    assert slots("15 10-14/2 1 JAN,jul *", "2026-06-15T00:00:00+00:00", 4, utc) == [
        "2026-07-01T10:15:00+00:00", "2026-07-01T12:15:00+00:00", "2026-07-01T14:15:00+00:00",
        "2027-01-01T10:15:00+00:00"]
    # Day of month and day of week both restricted: either matches, as in cron.
    assert slots("0 0 13 * FRI", "2026-11-01T00:00:00+00:00", 3, utc) == [
        "2026-11-06T00:00:00+00:00", "2026-11-13T00:00:00+00:00", "2026-11-20T00:00:00+00:00"]
    start = "2026-11-29T16:07:00+00:00"  # a Sunday
    assert slots("@hourly", start, 1, utc) == ["2026-11-29T17:00:00+00:00"]
    assert slots("@daily", start, 1, utc) == ["2026-11-30T00:00:00+00:00"]
    assert slots("@weekly", start, 1, utc) == ["2026-12-06T00:00:00+00:00"]
    assert slots("@monthly", start, 1, utc) == ["2026-12-01T00:00:00+00:00"]
    assert slots("@yearly", start, 1, utc) == ["2027-01-01T00:00:00+00:00"]
    assert cron.expression("  @Daily ") == "0 0 * * *"


@pytest.mark.parametrize("expr, reason", [
    ("61 * * * *", "Bad minute"), ("* 24 * * *", "Bad hour"), ("*/0 * * * *", "Bad minute"),
    ("0 0 31 2 *", "Bad day-of-month"), ("* * * FOO *", "Bad month"), ("* * * * 8", "Bad day-of-week"),
    ("* * * *", "expected 5 fields"), ("0 * * * * *", "found 6"), ("@fortnightly", "unknown macro"),
])
def test_a_bad_expression_is_refused_with_its_reason(expr: str, reason: str) -> None:
    with pytest.raises(QueueError) as e:
        cron.expression(expr)
    assert e.value.code == "invalid" and str(e.value).startswith(f"invalid cron expression {expr!r}: ")
    assert reason in str(e.value) and "\n" not in str(e.value)


@pytest.mark.parametrize("name", ["Mars/Olympus", "", "/etc/localtime", "../../etc/passwd", "Europe/"])
def test_an_unknown_zone_is_refused(name: str) -> None:
    with pytest.raises(QueueError, match=f"^unknown time zone {name}$"):
        cron.zone(name)


def test_job_ids_name_the_slot_in_utc_with_seconds_only_when_it_has_them() -> None:
    assert cron.job_id("nightly", t("2026-12-01T03:00:00+00:00")) == "nightly-20261201T0300Z"
    assert cron.job_id("n", t("2026-12-01T04:00:00+01:00")) == "n-20261201T0300Z"
    assert cron.job_id("odd", t("1900-01-01T00:00:00+00:00") + 17) == "odd-19000101T000017Z"


# --- the schedule in the queue ------------------------------------------------------------------------


def define(q: Queue, name: str, expr: str, at: float, zone: str = "UTC", **job: object) -> None:
    spec = msgspec.convert({"command": "true", **job}, JobSpec)
    q.apply(firing.plan_define(q, ScheduleAdd(name, expr, spec, zone), at, "UTC"))


def fire(q: Queue, now: float) -> list[ev.Fired]:
    fired = firing.plan_fires(q, now)
    for e in fired:
        q.apply(e)
    return fired


def test_a_fire_enqueues_its_job_and_moves_the_last_slot_in_one_record() -> None:
    q = Queue()
    define(q, "nightly", "0 3 * * *", t("2026-11-30T12:00:00+00:00"), max_retries=1)
    assert q.schedules.next_fire() == t("2026-12-01T03:00:00+00:00")
    assert fire(q, t("2026-12-01T02:59:59+00:00")) == []
    (e,) = fire(q, t("2026-12-01T03:00:00.2+00:00"))
    assert e.job is not None and (e.job.id, e.job.schedule, e.job.slot, e.job.late, e.job.max_retries) == \
        ("nightly-20261201T0300Z", "nightly", t("2026-12-01T03:00:00+00:00"), False, 1)
    assert q.get("nightly-20261201T0300Z").state == "pending"
    assert fire(q, t("2026-12-01T03:00:01+00:00")) == []  # the slot is fired: never twice
    info = q.schedules.by_name["nightly"].info()
    assert (info.last_job, info.fires, info.next_fire) == ("nightly-20261201T0300Z", 1, t("2026-12-02T03:00:00+00:00"))


def test_after_downtime_only_the_latest_missed_slot_fires_once_and_late() -> None:
    q = Queue()
    define(q, "tick", "*/5 * * * *", t("2026-12-01T00:00:30+00:00"))
    (e,) = fire(q, t("2026-12-01T03:02:00+00:00"))  # down for three hours: 36 slots missed
    assert e.job is not None and e.job.id == "tick-20261201T0300Z" and e.late and e.job.late
    assert fire(q, t("2026-12-01T03:04:00+00:00")) == []
    (e,) = fire(q, t("2026-12-01T03:05:00+00:00") + LATE_AFTER - 1)  # a few seconds behind: not late
    assert not e.late


def test_no_overlap_skips_while_the_previous_job_is_not_final_and_counts_it() -> None:
    q = Queue()
    define(q, "sync", "* * * * *", t("2026-12-01T00:00:00+00:00"), zone="UTC")
    q.schedules.by_name["sync"].no_overlap = True
    (first,) = fire(q, t("2026-12-01T00:01:00+00:00"))
    (second,) = fire(q, t("2026-12-01T00:02:00+00:00"))
    assert second.skipped and second.job is None
    info = q.schedules.by_name["sync"].info()
    assert (info.skipped, info.last_skipped, info.last_job) == (1, True, first.job.id if first.job else None)
    q.apply(plan.plan_cancel(q, [info.last_job or ""], None, t("2026-12-01T00:02:30+00:00"))[0])  # final now
    (third,) = fire(q, t("2026-12-01T00:03:00+00:00"))
    assert third.job is not None and not third.skipped


def test_a_fire_whose_group_is_gone_or_whose_id_is_taken_is_recorded_as_failed() -> None:
    q = Queue()
    q.apply(plan.plan_group(q, "net", 0, True))
    define(q, "sync", "* * * * *", t("2026-12-01T00:00:00+00:00"), group="net")
    q.apply(plan.plan_group_removal(q, "net"))
    (e,) = fire(q, t("2026-12-01T00:01:00+00:00"))
    assert e.job is None and e.error is not None and "unknown group net" in e.error
    q.apply(plan.plan_group(q, "net", 0, True))
    q.apply(ev.Added(0, rules.new_jobs([JobSpec(command="x")], 0, q.config, "sync-20261201T0002Z")))
    (e,) = fire(q, t("2026-12-01T00:02:00+00:00"))
    assert e.job is None and e.error is not None and "already exists" in e.error
    info = q.schedules.by_name["sync"].info()
    assert (info.failed, info.fires, info.last_slot) == (2, 0, t("2026-12-01T00:02:00+00:00"))
    (e,) = fire(q, t("2026-12-01T00:03:00+00:00"))
    assert e.job is not None


def test_a_paused_schedule_fires_nothing_and_once_resumed_not_the_slots_it_missed() -> None:
    q = Queue()
    define(q, "tick", "* * * * *", t("2026-12-01T00:00:00+00:00"))
    q.apply(firing.plan_pause(q, "tick", True, t("2026-12-01T00:00:10+00:00")))
    assert q.schedules.next_fire() is None and fire(q, t("2026-12-01T00:05:00+00:00")) == []
    q.apply(firing.plan_pause(q, "tick", False, t("2026-12-01T00:05:30+00:00")))
    assert fire(q, t("2026-12-01T00:05:40+00:00")) == []
    (e,) = fire(q, t("2026-12-01T00:06:00+00:00"))
    assert e.job is not None and not e.late


def test_define_refuses_bad_input_and_a_taken_name() -> None:
    q = Queue()
    at = t("2026-12-01T00:00:00+00:00")
    define(q, "a", "@daily", at)
    for name, expr, zone, job, words in [
        ("a", "@daily", "UTC", {}, "a schedule named 'a' already exists"),
        ("b", "* * *", "UTC", {}, "invalid cron expression"),
        ("b", "@daily", "Nowhere/City", {}, "unknown time zone Nowhere/City"),
        ("b", "@daily", "UTC", {"id": "x"}, "no `id`"),
        ("b", "@daily", "UTC", {"delay": 5}, "no `delay`"),
        ("b", "@daily", "UTC", {"run_at": 5.0}, "no `run_at`"),
        ("b", "@daily", "UTC", {"group": "nope"}, "unknown group nope"),
    ]:
        with pytest.raises(QueueError, match=words):
            define(q, name, expr, at, zone, **job)
    with pytest.raises(QueueError, match="no schedule named"):
        firing.plan_removal(q, "zzz")


def test_schedules_replay_and_survive_a_snapshot_with_their_state() -> None:
    q = Queue()
    define(q, "tick", "*/5 * * * *", t("2026-12-01T00:00:00+00:00"), zone="America/New_York")
    define(q, "gone", "@daily", t("2026-12-01T00:00:00+00:00"))
    q.schedules.by_name["tick"].no_overlap = True
    fire(q, t("2026-12-01T00:05:00+00:00"))
    fire(q, t("2026-12-01T00:10:00+00:00"))  # skipped
    q.apply(firing.plan_pause(q, "tick", True, t("2026-12-01T00:11:00+00:00")))
    q.apply(firing.plan_removal(q, "gone"))
    records = [ev.decoder.decode(ev.encoder.encode(e)) for e in q.snapshot()]
    again = Queue()
    for e in records:
        again.apply(e)
    assert [s.info() for s in again.schedules.by_name.values()] == [q.schedules.by_name["tick"].info()]
    assert again.get("tick-20261201T0005Z").schedule == "tick"


def test_a_schedule_whose_zone_left_the_database_is_kept_and_never_fires() -> None:
    q = Queue()
    spec = JobSpec(command="true")
    q.apply(ev.ScheduleDefined("old", "* * * * *", "Gone/Zone", spec, None, False, 0.0))
    assert q.schedules.next_fire() is None and fire(q, t("2026-12-01T00:00:00+00:00")) == []
    assert q.schedules.by_name["old"].info().last_error == "unknown time zone Gone/Zone"


def test_the_local_zone_is_a_name_the_zone_database_knows(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TZ", "Asia/Kathmandu")
    assert cron.local_zone_name() == "Asia/Kathmandu"
    monkeypatch.setenv("TZ", ":Europe/Berlin")
    assert cron.local_zone_name() == "Europe/Berlin"
    monkeypatch.setenv("TZ", "nonsense")
    assert cron.zone(cron.local_zone_name()) is not None
