"""Queue control against a real daemon with real `sh -c` jobs: groups, pause and resume, cancel, retry, rerun,
edit, selectors, prune and retention, and what `list`, `show`, `status` and completion make of them."""

from __future__ import annotations

import json
import os
import subprocess
import time
from datetime import datetime
from typing import Any

import pytest

from tests.conftest import BIN, Env, bash_complete, wait_for


@pytest.fixture
def d(env: Env) -> Env:
    env.start_daemon()
    return env


def _t(iso: str) -> float:
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


def _groups(env: Env) -> dict[str, dict[str, Any]]:
    return {g["name"]: g for g in env.ok("group", "list", "--json").json()}


def _ran_then_wait_for(env: Env, job_id: str, *states: str) -> dict[str, Any]:
    """A marker job in `default` runs to completion, so the pool has dispatched since; then `job_id`'s state."""
    marker = env.enqueue(command="true", priority=-1000)
    env.wait_state(marker, "completed")
    job = env.show(job_id)
    assert job["state"] in states, job
    return job


# --- groups ---------------------------------------------------------------------------------------


def test_groups_are_added_set_listed_and_removed_once_they_hold_no_waiting_job(d: Env) -> None:
    assert list(_groups(d)) == ["default"]
    r = d.ok("group", "add", "backups", "--parallel", "2")
    assert r.out == "" and r.err == "added group backups: at most 2 running\n"
    d.ok("group", "add", "bulk")
    g = _groups(d)
    assert g["backups"] == {"name": "backups", "parallel": 2, "paused": False, "running": 0,
                            "jobs": {"pending": 0, "processing": 0, "completed": 0, "failed": 0, "dead": 0}}
    assert g["bulk"]["parallel"] == 0 and g["default"]["parallel"] == 0
    d.ok("group", "set", "backups", "--parallel", "1")
    assert _groups(d)["backups"]["parallel"] == 1
    assert sorted(d.ok("group", "list", "--quiet").out.split()) == ["backups", "bulk", "default"]
    table = [ln.split() for ln in d.ok("group", "list").out.splitlines()]
    assert table[0] == ["NAME", "PARALLEL", "PAUSED", "PENDING", "PROCESSING", "COMPLETED", "FAILED", "DEAD", "RUNNING"]
    assert ["backups", "1", "no", "0", "0", "0", "0", "0", "0"] in table and ["bulk", "-", "no"] == next(
        row for row in table if row[0] == "bulk")[:3]

    r = d.q("group", "add", "backups")
    assert r.code == 1 and "backups" in r.err and r.err.count("\n") == 1, r
    job_id = d.enqueue(command="true", group="backups", delay=3600)
    assert _groups(d)["backups"]["jobs"]["pending"] == 1
    r = d.q("group", "rm", "backups")
    assert r.code == 1 and "backups" in r.err and r.err.count("\n") == 1, r
    r = d.q("group", "rm", "default")
    assert r.code == 1 and "default" in r.err, r
    d.ok("delete", job_id)
    assert d.ok("group", "rm", "backups").err == "removed group backups\n"
    assert sorted(_groups(d)) == ["bulk", "default"]
    for args in (["group", "rm", "backups"], ["group", "set", "nope", "--parallel", "1"]):
        r = d.q(*args)
        assert r.code == 1 and r.err.count("\n") == 1, (args, r)
    # Groups and their limits survive a restart.
    d.ok("group", "add", "kept", "--parallel", "3")
    d.stop_daemon()
    d.start_daemon()
    assert _groups(d)["kept"]["parallel"] == 3


def test_a_job_for_an_unknown_group_is_refused_naming_the_command_that_creates_it(d: Env) -> None:
    words = "queuectl: unknown group nightly; create it with `queuectl group add nightly`"
    job = json.dumps({"command": "true", "group": "nightly"})
    for r in (d.q("enqueue", job), d.q("enqueue", "-", input=job + "\n")):
        assert r.code == 2 and words in r.err and r.err.count("\n") == 1, r
    assert d.jobs() == []
    d.ok("group", "add", "nightly")
    assert d.show(d.enqueue(command="true", group="nightly"))["group"] == "nightly"


def test_a_group_capped_at_1_runs_one_job_at_a_time_without_holding_up_other_groups(d: Env) -> None:
    d.ok("group", "add", "one", "--parallel", "1")
    # The capped group's jobs come first (highest priority): the others must not wait behind them.
    capped = [d.enqueue(command="sleep 0.6", group="one", priority=10) for _ in range(3)]
    others = [d.enqueue(command="sleep 0.2") for _ in range(4)]
    d.ok("worker", "start", "--count", "3", "--detach")
    running = wait_for(lambda: [g["running"] for g in [_groups(d)["one"]] if g["running"]], what="a capped job")
    assert running == [1]
    for job_id in capped + others:
        d.wait_state(job_id, "completed", timeout=20)
    spans = sorted((_t(j["started_at"]), _t(j["finished_at"])) for j in map(d.show, capped))
    assert all(end <= start for (_, end), (start, _) in zip(spans, spans[1:])), spans  # never two at once
    # The other group's jobs all ran while the capped group still had jobs waiting.
    last_capped_start = spans[-1][0]
    assert all(_t(d.show(j)["started_at"]) < last_capped_start for j in others)
    assert "GROUP" in d.ok("list").out.splitlines()[0]


def test_list_group_filters_and_list_and_show_name_a_group_outside_default(d: Env) -> None:
    d.ok("group", "add", "bulk")
    a = d.enqueue(command="true", delay=3600, id="a")
    b = d.enqueue(command="true", delay=3600, id="b", group="bulk")
    assert [j["id"] for j in d.ok("list", "--group", "bulk", "--json").json()] == [b]
    assert [j["id"] for j in d.ok("list", "--group", "default", "--json").json()] == [a]
    assert d.ok("list", "--group", "bulk", "--quiet").out == "b\n"
    assert d.show(a)["group"] == "default" and d.show(b)["group"] == "bulk"
    assert "group:" not in d.ok("show", a).out and "\ngroup:      bulk\n" in d.ok("show", b).out
    table = [ln.split() for ln in d.ok("list").out.splitlines()]
    assert table[0][4] == "GROUP" and {row[0]: row[4] for row in table[1:]} == {"a": "default", "b": "bulk"}
    assert d.ok("list", "--group", "default").out.splitlines()[0].split()[4] == "WHEN"
    assert d.ok("list", "--group", "nope", "--json").json() == []


# --- pause and resume -----------------------------------------------------------------------------


def test_pause_stops_new_starts_lets_running_jobs_finish_and_survives_a_restart(d: Env) -> None:
    d.ok("group", "add", "slow")
    first = d.enqueue(command="sleep 0.5", group="slow")
    d.ok("worker", "start", "--count", "2", "--detach")
    d.wait_state(first, "processing")
    assert d.ok("pause", "slow").out == "paused: slow\n"
    second = d.enqueue(command="true", group="slow")
    d.wait_state(first, "completed")  # the running one finished
    _ran_then_wait_for(d, second, "pending")  # the other group ran; the paused one started nothing
    assert _groups(d)["slow"]["paused"] is True
    status = d.ok("status").out
    assert "paused" in status and "slow" in status

    d.stop_daemon()
    d.start_daemon()
    assert _groups(d)["slow"]["paused"] is True
    _ran_then_wait_for(d, second, "pending")
    assert d.ok("resume", "slow").out == "resumed: slow\n"
    d.wait_state(second, "completed")


def test_pause_and_resume_without_names_act_on_every_group_and_an_unknown_group_is_refused(d: Env) -> None:
    d.ok("group", "add", "b")
    assert d.ok("pause").out == "paused: default, b\n"
    assert all(g["paused"] for g in _groups(d).values())
    job_id = d.enqueue(command="true")
    d.ok("worker", "start", "--count", "1", "--detach")
    d.ok("resume", "b")
    assert not _groups(d)["b"]["paused"] and _groups(d)["default"]["paused"]
    assert d.show(job_id)["state"] == "pending"
    assert "default" in d.ok("resume").out
    d.wait_state(job_id, "completed")
    for args in (["pause", "nope"], ["resume", "b", "nope"]):
        r = d.q(*args)
        assert r.code == 1 and "nope" in r.err and r.err.count("\n") == 1, (args, r)
    assert not any(g["paused"] for g in _groups(d).values())  # all or nothing


# --- cancel ---------------------------------------------------------------------------------------


def test_cancel_a_waiting_job_ends_it_dead_and_dlq_retry_brings_it_back(d: Env) -> None:
    job_id = d.enqueue(command="true", delay=3600)
    r = d.ok("cancel", job_id)
    assert r.out == "cancelled 1 job\n"
    job = d.show(job_id)
    assert job["state"] == "dead" and "cancelled" in job["error_message"], job
    r = d.q("cancel", job_id)
    assert r.code == 1 and "already dead" in r.err, r
    assert d.ok("dlq", "retry", job_id).out.split() == [job_id]
    assert d.show(job_id)["state"] == "pending"


def test_cancel_a_running_job_ends_it_dead_within_the_grace_and_it_is_never_retried(d: Env) -> None:
    job_id = d.enqueue(command="sleep 300", max_retries=3)
    d.ok("worker", "start", "--count", "1", "--detach")
    d.wait_state(job_id, "processing")
    began = time.monotonic()
    assert d.ok("cancel", job_id, "--json").json() == [job_id]
    job = d.wait_state(job_id, "dead", timeout=10)
    assert time.monotonic() - began < 3 + 2  # SIGTERM ended it; no SIGKILL needed
    assert job["attempts"] == 1 and job["next_retry_at"] is None and "cancel" in job["error_message"], job
    assert _ran_then_wait_for(d, job_id, "dead")["attempts"] == 1  # not retried


def test_a_job_that_ignores_the_signal_is_killed_after_the_grace(d: Env, tmp_path: os.PathLike[str]) -> None:
    termed = os.path.join(str(tmp_path), "termed")
    job_id = d.enqueue(command=f"trap 'echo TERM > {termed}' TERM; while :; do sleep 0.1; done")
    d.ok("worker", "start", "--count", "1", "--detach")
    d.wait_state(job_id, "processing")
    began = time.monotonic()
    assert d.ok("cancel", job_id, "--grace", "1.5").out == "cancelled 1 job\n"
    wait_for(lambda: os.path.exists(termed), what="the job to get SIGTERM")
    job = d.wait_state(job_id, "dead", timeout=15)
    took = time.monotonic() - began
    assert 1.5 <= took < 10, took
    assert d.show(job_id)["exit_code"] is None, job  # killed by a signal


def test_a_second_cancel_escalates_and_a_selection_still_takes_the_job(d: Env) -> None:
    stubborn = d.enqueue(command="trap '' TERM; while :; do sleep 0.1; done")
    other = d.enqueue(command="sleep 300")
    d.ok("worker", "start", "--count", "2", "--detach")
    d.wait_state(stubborn, "processing")
    d.wait_state(other, "processing")
    d.ok("cancel", stubborn, "--grace", "3600")  # it ignores TERM: a SIGKILL only an hour later
    assert d.show(stubborn)["state"] == "processing"
    # Cancelling again is no error: a selection takes both jobs, and KILL ends the stubborn one now.
    assert sorted(d.ok("cancel", "--state", "processing", "--signal", "KILL", "--json").json()) == \
        sorted([stubborn, other])
    for job_id in (stubborn, other):
        job = d.wait_state(job_id, "dead", timeout=15)
        assert job["error_message"] == "cancelled", job


def test_a_cancelled_scheduled_job_brought_back_runs_now_and_says_so(d: Env) -> None:
    job_id = d.enqueue(command="true", delay=3600)
    d.ok("cancel", job_id)
    d.ok("retry", job_id)
    job = d.show(job_id)
    assert job["state"] == "pending" and job["run_at"] is None, job
    d.ok("worker", "start", "--count", "1", "--detach")
    d.wait_state(job_id, "completed", timeout=15)


def test_cancel_sends_the_signal_named(d: Env, tmp_path: os.PathLike[str]) -> None:
    got = os.path.join(str(tmp_path), "got")
    job_id = d.enqueue(command=f"trap 'echo INT > {got}; exit 0' INT; trap '' TERM; while :; do sleep 0.1; done")
    d.ok("worker", "start", "--count", "1", "--detach")
    d.wait_state(job_id, "processing")
    d.ok("cancel", job_id, "--signal", "SIGINT", "--grace", "30")
    d.wait_state(job_id, "dead", timeout=10)
    with open(got) as f:
        assert f.read() == "INT\n"


def test_cancel_refuses_a_completed_job_and_unknown_ids_all_or_nothing(d: Env) -> None:
    done = d.enqueue(command="true")
    waiting = d.enqueue(command="true", delay=3600)
    d.ok("worker", "start", "--count", "1", "--detach")
    d.wait_state(done, "completed")
    r = d.q("cancel", done)
    assert r.code == 1 and "already completed" in r.err and r.err.count("\n") == 1, r
    r = d.q("cancel", waiting, "nope")
    assert r.code == 1 and "nope" in r.err, r
    assert d.show(waiting)["state"] == "pending"


# --- retry, rerun, edit ---------------------------------------------------------------------------


def test_retry_makes_a_failed_job_waiting_a_long_backoff_run_now(d: Env, tmp_path: os.PathLike[str]) -> None:
    d.ok("config", "set", "backoff-base", "3600")
    marker = os.path.join(str(tmp_path), "ran-once")
    job_id = d.enqueue(command=f"test -e {marker} || {{ touch {marker}; exit 1; }}", max_retries=2)
    d.ok("worker", "start", "--count", "1", "--detach")
    job = d.wait_state(job_id, "failed")
    assert _t(job["next_retry_at"]) > time.time() + 3000
    assert d.ok("retry", job_id).out == "retried 1 job\n"
    job = d.wait_state(job_id, "completed", timeout=10)
    assert job["attempts"] == 2
    r = d.q("retry", job_id)
    assert r.code == 1 and r.err.count("\n") == 1, r


def test_retry_refuses_a_pending_job_and_sends_a_dead_one_back_to_pending(d: Env) -> None:
    pending = d.enqueue(command="true", delay=3600)
    r = d.q("retry", pending)
    assert r.code == 1 and pending in r.err and r.err.count("\n") == 1, r
    dead = d.enqueue(command="exit 3", max_retries=0)
    d.ok("worker", "start", "--count", "1", "--detach")
    d.wait_state(dead, "dead")
    d.ok("worker", "stop")
    assert d.ok("retry", dead, "--json").json() == [dead]
    job = d.show(dead)
    assert job["state"] == "pending" and job["attempts"] == 0


def test_rerun_enqueues_a_copy_of_a_completed_job_under_a_new_id(d: Env) -> None:
    d.ok("group", "add", "g")
    old = d.enqueue(command="echo again", priority=4, timeout=60, group="g", max_retries=1)
    d.ok("worker", "start", "--count", "1", "--detach")
    d.wait_state(old, "completed")
    new = d.ok("rerun", old).out.strip()
    assert new and new != old
    job = d.wait_state(new, "completed")
    assert (job["command"], job["priority"], job["timeout"], job["group"], job["max_retries"]) == (
        "echo again", 4, 60, "g", 1)
    assert d.ok("logs", new, "--stdout").out == "again\n"
    assert d.show(old)["state"] == "completed"
    shown = d.ok("rerun", old, "--json").json()
    assert shown["id"] not in (old, new) and shown["command"] == "echo again" and shown["state"] in (
        "pending", "processing", "completed")
    r = d.q("rerun", "nope")
    assert r.code == 1 and "nope" in r.err, r


def test_edit_changes_a_waiting_job_and_is_refused_while_it_runs(d: Env) -> None:
    d.ok("group", "add", "later")
    job_id = d.enqueue(command="sleep 30", delay=3600, timeout=100)
    job = d.ok("edit", job_id, "--priority", "7", "--group", "later", "--timeout", "none", "--max-retries", "0",
               "--json").json()
    assert (job["priority"], job["group"], job["timeout"], job["max_retries"]) == (7, "later", None, 0)
    assert {**d.show(job_id), "env": None} == job  # only `show` gives the environment
    text = d.ok("edit", job_id, "--timeout", "5").out
    assert "timeout:    5 s" in text and "group:      later" in text and text.startswith(f"id:         {job_id}\n")
    at = d.ok("edit", job_id, "--run-at", "2030-01-02T03:04:05Z", "--json").json()["run_at"]
    assert at == "2030-01-02T03:04:05.000Z"
    r = d.q("edit", job_id, "--group", "nope")
    assert r.code == 1 and r.err == "queuectl: no group named 'nope'\n", r
    d.ok("edit", job_id, "--delay", "0")
    d.ok("worker", "start", "--count", "1", "--detach")
    d.wait_state(job_id, "processing")
    r = d.q("edit", job_id, "--priority", "1")
    assert r.code == 1 and r.err.count("\n") == 1, r
    d.ok("cancel", job_id, "--grace", "0")
    r = d.q("edit", "nope", "--priority", "1")
    assert r.code == 1 and "nope" in r.err, r


# --- selectors ------------------------------------------------------------------------------------


def test_selectors_cancel_retry_and_delete_many_jobs_printing_counts_and_ids(d: Env) -> None:
    d.ok("group", "add", "g")
    mine = [d.enqueue(command="true", delay=3600, group="g", id=f"g{i}") for i in range(3)]
    other = d.enqueue(command="true", delay=3600, id="other")
    assert d.ok("cancel", "--state", "pending", "--group", "g").out == "cancelled 3 jobs\n"
    assert {j["id"] for j in d.jobs("dead")} == set(mine) and d.show(other)["state"] == "pending"
    assert d.ok("retry", "--state", "dead", "--older-than", "1h").out == "retried 0 jobs\n"
    assert sorted(d.ok("retry", "--state", "dead", "--json").json()) == mine
    assert d.ok("cancel", "--state", "failed", "--json").json() == []
    assert d.ok("delete", "--state", "pending", "--group", "g", "--older-than", "0").out == "deleted 3 jobs\n"
    assert [j["id"] for j in d.jobs()] == [other]
    a, b = d.enqueue(command="true", delay=3600, id="a"), d.enqueue(command="true", delay=3600, id="b")
    assert sorted(d.ok("delete", a, b, "--json").json()) == ["a", "b"]
    r = d.q("delete", other, "nope")
    assert r.code == 1 and "nope" in r.err and d.show(other)["state"] == "pending", r
    assert d.ok("delete", other).err == f"deleted {other}\n"


def test_older_than_selects_only_jobs_whose_state_changed_longer_ago(d: Env) -> None:
    old = d.enqueue(command="true", delay=3600, id="old")
    since = _t(d.show(old)["updated_at"])
    wait_for(lambda: time.time() > since + 2.5, what="the first job to be over 2 seconds old", timeout=15)
    d.enqueue(command="true", delay=3600, id="new")
    assert d.ok("cancel", "--state", "pending", "--older-than", "2s", "--json").json() == ["old"]
    assert d.show("new")["state"] == "pending"


def test_delete_by_state_never_touches_a_running_job(d: Env) -> None:
    running = d.enqueue(command="sleep 30")
    d.ok("worker", "start", "--count", "1", "--detach")
    d.wait_state(running, "processing")
    waiting = d.enqueue(command="true", delay=3600)
    r = d.q("delete", "--state", "processing")
    assert r.code == 2 and r.err.count("\n") == 1, r
    assert d.ok("delete", "--state", "pending").out == "deleted 1 job\n"
    assert d.q("show", waiting).code == 1 and d.show(running)["state"] == "processing"
    r = d.q("delete", running)
    assert r.code == 1 and r.err.count("\n") == 1, r
    r = d.q("delete", running, running + "x")
    assert r.code == 1 and d.show(running)["state"] == "processing", r
    d.ok("cancel", running, "--grace", "0")


# --- prune and retention --------------------------------------------------------------------------


def test_prune_dry_run_counts_and_prune_removes_and_status_shows_retention(d: Env) -> None:
    ids = [d.enqueue(command="true") for _ in range(3)]
    dead = d.enqueue(command="exit 1", max_retries=0)
    d.ok("worker", "start", "--count", "2", "--detach")
    for job_id in ids:
        d.wait_state(job_id, "completed")
    d.wait_state(dead, "dead")
    assert d.ok("prune", "--dry-run").out == "would prune 0 jobs\n"  # keep-completed 7d, keep-dead forever
    assert d.ok("prune", "--dry-run", "--older-than", "0").out == "would prune 4 jobs\n"
    assert sorted(d.ok("prune", "--dry-run", "--older-than", "0", "--state", "completed", "--json").json()) == \
        sorted(ids)
    assert len(d.jobs()) == 4
    assert sorted(d.ok("prune", "--older-than", "0", "--state", "completed", "--json").json()) == sorted(ids)
    assert [j["id"] for j in d.jobs()] == [dead]
    st = d.ok("status", "--json").json()
    assert st["retention"]["last_removed"] == {"completed": 3} and st["retention"]["total_removed"]["completed"] >= 3
    assert st["retention"]["last_at"].endswith("Z")
    line = d.ok("status").out.splitlines()[-2]
    assert line.startswith("pruning  last ran ") and "removed 3 completed" in line, line
    d.ok("config", "set", "keep-dead", "1s")
    finished = _t(d.show(dead)["finished_at"])
    wait_for(lambda: time.time() > finished + 1.2, what="the dead job to be over a second past its end")
    # The background pass runs at start and then once a minute: this prune is the one that removes it.
    assert d.ok("prune", "--dry-run").out == "would prune 1 job\n"
    assert d.ok("prune").out == "pruned 1 job\n"
    assert d.jobs() == [] and d.q("show", dead).code == 1


def test_status_shows_groups_when_there_is_more_than_default_or_one_is_paused(d: Env) -> None:
    assert "groups" not in d.ok("status").out
    st = d.ok("status", "--json").json()
    assert [g["name"] for g in st["groups"]] == ["default"] and "retention" in st
    d.ok("pause")
    assert "groups   default  running 0  pending 0  paused" in d.ok("status").out
    d.ok("resume")
    d.ok("group", "add", "backups", "--parallel", "2")
    d.enqueue(command="true", group="backups", delay=3600)
    lines = d.ok("status").out.splitlines()
    assert any(ln.split() == ["backups", "running", "0", "of", "2", "pending", "1"] for ln in lines), lines
    st = d.ok("status", "--json").json()
    backups = next(g for g in st["groups"] if g["name"] == "backups")
    assert backups["parallel"] == 2 and backups["jobs"]["pending"] == 1 and backups["paused"] is False


# --- exit codes -----------------------------------------------------------------------------------


@pytest.mark.parametrize("args", [
    ["cancel", "nope"], ["retry", "nope"], ["edit", "nope", "--priority", "1"], ["rerun", "nope"],
    ["pause", "nope"], ["resume", "nope"], ["group", "set", "nope", "--parallel", "1"], ["group", "rm", "nope"],
    ["delete", "nope", "nope2"],
])
def test_an_unknown_job_or_group_exits_1_in_one_line(d: Env, args: list[str]) -> None:
    r = d.q(*args)
    assert r.code == 1 and "nope" in r.err and r.err.count("\n") == 1 and r.out == "", r


@pytest.mark.parametrize("args", [
    ["cancel", "nope", "--signal", "FOO"], ["cancel", "nope", "--grace", "-1"], ["edit", "nope"],
    ["edit", "nope", "--run-at", "soon"], ["retry", "nope", "--state", "dead"], ["pause", "--all"],
])
def test_bad_arguments_exit_2_before_the_job_is_looked_up(d: Env, args: list[str]) -> None:
    r = d.q(*args)
    assert r.code == 2 and r.err.count("\n") == 1 and r.out == "", r
    assert "no job" not in r.err and ("argument" in r.err or "give" in r.err), r


# --- completion -----------------------------------------------------------------------------------


def test_bash_completes_group_names_states_signals_and_job_ids_for_the_new_commands(d: Env) -> None:
    d.ok("group", "add", "backups")
    d.enqueue(command="true", id="job-one", delay=3600)
    script = d.ok("completions", "bash").out

    def complete(*words: str) -> list[str]:
        return bash_complete(d, script, *words)

    assert complete("queuectl", "pa") == ["pause"]
    assert complete("queuectl", "pause", "") == ["backups", "default"]
    assert complete("queuectl", "group", "set", "b") == ["backups"]
    assert complete("queuectl", "group", "") == ["--help", "-h", "add", "list", "rm", "set"]
    assert complete("queuectl", "list", "--group", "b") == ["backups"]
    assert complete("queuectl", "cancel", "--state", "") == ["failed", "pending", "processing"]
    assert complete("queuectl", "delete", "--state", "p") == ["pending"]
    assert complete("queuectl", "cancel", "--signal", "K") == ["KILL"]
    assert complete("queuectl", "cancel", "--gr") == ["--grace", "--group"]
    for command in ("cancel", "retry", "rerun", "edit"):
        assert complete("queuectl", command, "job-") == ["job-one"], command


def test_the_shell_completes_group_names_and_a_commands_own_states(d: Env) -> None:
    d.ok("group", "add", "backups")
    probe = """
import sys
from queuectl_client.connection import Client
from queuectl_client.shell import ShellCompleter
c = ShellCompleter(Client())
print(sorted(v for v, _ in c._candidates(["pause"], "")))
print(sorted(v for v, _ in c._candidates(["edit", "x", "--group"], "")))
print(sorted(v for v, _ in c._candidates(["retry", "--state"], "")))
print(sorted(v for v, _ in c._candidates(["cancel", "--signal"], "")))
"""
    proc = subprocess.run([os.path.join(BIN, "python"), "-c", probe], env=d.env, capture_output=True, text=True,
                          check=True)
    assert proc.stdout.splitlines() == [
        "['backups', 'default']", "['backups', 'default']", "['dead', 'failed']",
        "['HUP', 'INT', 'KILL', 'QUIT', 'TERM', 'USR1', 'USR2']"]


def test_a_change_to_more_jobs_than_one_reply_frame_holds_is_read_to_its_last_frame(d: Env) -> None:
    jobs = "".join(json.dumps({"command": "true", "delay": 3600, "id": f"j{i}"}) + "\n" for i in range(25_000))
    d.ok("enqueue", "-", input=jobs)
    # The ids come in pages of 10,000: every page is read, and the connection serves the next command.
    r = d.ok("shell", input="cancel --state pending --json\nlist --state dead --limit 1 --quiet\n")
    assert r.out.endswith("]\nj0\n") and len(set(json.loads(r.out[: -len("j0\n")]))) == 25_000, r.out[-200:]
    ids = d.ok("delete", "--state", "dead", "--json").json()
    assert len(ids) == len(set(ids)) == 25_000 and d.jobs() == []
