"""The queue-control commands' values as the CLI reads them, and groups and retention as it shows them."""

from __future__ import annotations

import argparse
import io
import os
import signal
import time
from collections.abc import Iterator

import msgspec
import pytest

from queuectl_client import protocol as p
from queuectl_client import render, values
from queuectl_client.parser import UsageError, build_parser


@pytest.mark.parametrize(("text", "number"), [
    ("TERM", 15), ("SIGTERM", 15), ("term", 15), ("sigint", 2), ("KILL", 9), ("HUP", 1), ("usr1", 10),
    ("1", 1), ("15", 15), ("64", 64),
])
def test_a_signal_is_a_name_in_any_case_with_or_without_sig_or_a_number(text: str, number: int) -> None:
    assert values.signal_number(text) == number
    if not text.isdigit():
        assert signal.Signals(number).name in (text.upper(), "SIG" + text.upper())


@pytest.mark.parametrize("text", ["0", "65", "-9", "FOO", "SIG", "", "15.0", "TERM2", "SIGSIGTERM"])
def test_anything_else_is_not_a_signal(text: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError, match="signal name"):
        values.signal_number(text)


@pytest.fixture
def berlin() -> Iterator[None]:
    old = os.environ.get("TZ")
    os.environ["TZ"] = "Europe/Berlin"
    time.tzset()
    yield
    if old is None:
        del os.environ["TZ"]
    else:
        os.environ["TZ"] = old
    time.tzset()


def test_run_at_without_a_zone_is_local_time_and_with_one_is_that_time(berlin: None) -> None:
    assert values.when("2026-12-01T09:00:00") == 1_796_112_000.0  # 08:00 UTC: Berlin is UTC+1 in December
    assert values.when("2026-12-01T09:00:00Z") == 1_796_115_600.0
    assert values.when("2026-12-01T09:00:00+02:00") == 1_796_108_400.0
    assert values.when("1796112000") == 1_796_112_000.0
    assert values.when("now") is None and values.when(" NOW ") is None


@pytest.mark.parametrize("text", ["tomorrow", "2026-12-01", "-1", "1e20", "nan", "inf", "", "9999-12-31T23:59:60"])
def test_a_run_at_that_is_no_time_or_out_of_range_is_refused(text: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError):
        values.when(text)


def test_timeouts_durations_group_names_and_states() -> None:
    assert values.timeout("none") is None and values.timeout("0") is None and values.timeout("2.5") == 2.5
    for bad in ("-1", "nan", "inf", "1e10", "soon"):
        with pytest.raises(argparse.ArgumentTypeError):
            values.timeout(bad)
    assert values.duration("7d") == 7 * 86_400 and values.duration("90") == 90
    with pytest.raises(argparse.ArgumentTypeError, match="not a duration"):
        values.duration("3y")
    assert values.group_name("backups.2") == "backups.2"
    for bad in ("", "-x", "a b", "x" * 65, "../x"):
        with pytest.raises(argparse.ArgumentTypeError, match="a group name is"):
            values.group_name(bad)
    with pytest.raises(argparse.ArgumentTypeError, match="never; expected a or b, not 'c'"):
        values.state_in("a", "b", why="never")("c")


def _parse(*argv: str) -> argparse.Namespace:
    return build_parser(list(argv)).parse_args(list(argv))


def test_edit_sends_only_the_fields_given_and_none_for_now_and_no_timeout() -> None:
    args = _parse("edit", "x", "--priority", "-3", "--timeout", "none", "--run-at", "now")
    sent = {f: getattr(args, f) for f in ("priority", "run_at", "delay", "group", "max_retries", "timeout")}
    assert sent == {"priority": -3, "run_at": None, "delay": msgspec.UNSET, "group": msgspec.UNSET,
                    "max_retries": msgspec.UNSET, "timeout": None}
    edit = p.Edit("x", **{k: v for k, v in sent.items() if v is not msgspec.UNSET})
    assert msgspec.json.decode(msgspec.json.encode(edit)) == {
        "type": "Edit", "id": "x", "priority": -3, "run_at": None, "timeout": None}


def test_cancel_defaults_to_term_and_a_3_second_grace() -> None:
    args = _parse("cancel", "a", "b")
    assert (args.ids, args.signal, args.grace, args.state) == (["a", "b"], 15, 3.0, None)
    args = _parse("cancel", "--state", "processing", "--group", "g", "--older-than", "2h", "-s", "INT")
    assert (args.state, args.group, args.older_than, args.signal) == ("processing", "g", 7200.0, 2)
    with pytest.raises(UsageError, match="delete never touches running jobs"):
        _parse("delete", "--state", "processing")


def _group(name: str, parallel: int = 0, paused: bool = False, pending: int = 0, running: int = 0) -> dict[str, object]:
    return {"name": name, "parallel": parallel, "paused": paused, "running": running,
            "jobs": {"pending": pending, "processing": running, "completed": 0, "failed": 0, "dead": 0}}


STATUS = {"jobs": {}, "workers": {"configured": 2, "busy": 1}, "pid": 7, "version": "0", "started_at": 0.0}


def test_status_shows_groups_only_beyond_a_lone_unpaused_default() -> None:
    assert not any(ln.startswith("groups") for ln in render.status_lines({**STATUS, "groups": [_group("default")]}))
    paused = render.status_lines({**STATUS, "groups": [_group("default", paused=True)]})
    assert "groups   default  running 0  pending 0  paused" in paused
    lines = render.status_lines({**STATUS, "groups": [_group("default", pending=3, running=1),
                                                      _group("backups", 2, True, 5)]})
    assert "groups   default  running 1       pending 3" in lines
    assert "         backups  running 0 of 2  pending 5  paused" in lines
    st = render.status_json({**STATUS, "groups": [_group("backups", 2, True, 5)]})
    assert st["groups"] == [_group("backups", 2, True, 5)] and st["retention"] is None


def test_status_shows_when_retention_ran_and_what_it_removed() -> None:
    assert render.status_lines({**STATUS, "retention": {"last_at": None}})[-2] == "pruning  not run yet"
    at = time.time() - 5
    retention = {"last_at": at, "last_removed": {"completed": 120, "dead": 3},
                 "total_removed": {"completed": 4900, "dead": 100}}
    line = render.status_lines({**STATUS, "retention": retention})[-2]
    assert line == f"pruning  last ran {render.clock(at)} (5s ago), removed 120 completed, 3 dead (since start: 5000)"
    assert render.status_json({**STATUS, "retention": retention})["retention"] == {
        "last_at": render.iso(at), "last_removed": {"completed": 120, "dead": 3},
        "total_removed": {"completed": 4900, "dead": 100}}
    nothing = {**retention, "last_removed": {"completed": 0}}
    assert "removed nothing" in render.status_lines({**STATUS, "retention": nothing})[-2]


def _job(job_id: str, group: str = "default") -> p.Job:
    return p.Job(job_id, "true", "pending", 0, 3, 0, None, None, 1.0, 1.0, None, None, None, None, None, None,
                 "/", group=group)


def test_the_table_has_a_group_column_only_when_a_job_is_outside_default() -> None:
    out = io.StringIO()
    render.print_table([_job("a"), _job("b")], out)
    assert out.getvalue().splitlines()[0].split() == ["ID", "STATE", "TRIES", "PRIO", "WHEN", "COMMAND"]
    out = io.StringIO()
    render.print_table([_job("a"), _job("b", "backups")], out)
    lines = [ln.split() for ln in out.getvalue().splitlines()]
    assert lines[0] == ["ID", "STATE", "TRIES", "PRIO", "GROUP", "WHEN", "COMMAND"]
    assert [ln[4] for ln in lines[1:]] == ["default", "backups"]
    assert "group:" not in render.human_job(_job("a"))
    assert "\ngroup:      backups\n" in render.human_job(_job("b", "backups"))


def test_the_group_table_has_a_column_per_state() -> None:
    text = render.group_table([_group("default", pending=2, running=1), _group("backups", 3, True)])
    assert [ln.split() for ln in text.splitlines()] == [
        ["NAME", "PARALLEL", "PAUSED", "PENDING", "PROCESSING", "COMPLETED", "FAILED", "DEAD", "RUNNING"],
        ["default", "-", "no", "2", "1", "0", "0", "0", "1"],
        ["backups", "3", "yes", "0", "0", "0", "0", "0", "0"],
    ]
