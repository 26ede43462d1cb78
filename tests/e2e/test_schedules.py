"""Cron schedules against a real daemon running real `sh -c` jobs: a fire at its slot, its job's id, a
misfire after downtime, a crash right after a fire, --no-overlap, pause and resume, rm, bad input,
restarts, and a fire into a group that is gone.

No test waits for a real slot: the daemon's clock is set ahead (the `clock-ahead` fault, as on a machine
whose clock runs ahead), either to a few seconds before a minute boundary, so the timer fires the slot,
or by hours at a restart, so the daemon comes back after "downtime" and takes the misfire path.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import time
from datetime import UTC, datetime
from typing import Any

import pytest

from tests.conftest import BIN, QUEUECTLD, Env, bash_complete, wait_for

JOB = json.dumps({"command": "echo tick"})


def _iso(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z")


def _slot_id(name: str, t: float) -> str:
    return f"{name}-{datetime.fromtimestamp(t, UTC):%Y%m%dT%H%M}Z"


def start(env: Env, ahead: float = 0.0, *args: str, crash: str | None = None) -> None:
    """Start the daemon with its clock `ahead` seconds ahead of the real one."""
    faults = [f"clock-ahead={ahead}"] + ([f"crash-at={crash}"] if crash else [])
    env.env["QUEUECTL_FAULTS"] = ",".join(faults)
    try:
        env.start_daemon("--workers", "0", *args)
    finally:
        del env.env["QUEUECTL_FAULTS"]


def restart(env: Env, ahead: float, *args: str) -> None:
    env.stop_daemon()
    start(env, ahead, *args)


def schedules(env: Env) -> dict[str, dict[str, Any]]:
    return {s["name"]: s for s in env.ok("schedule", "list", "--json").json()}


def fired(env: Env, name: str) -> list[dict[str, Any]]:
    return [j for j in env.jobs() if j["schedule"] == name]


def later(hours: float, every: float = 300.0) -> float:
    """A clock offset of about `hours`, chosen so the daemon's time falls mid-way between two slots of
    a schedule every `every` s: the latest missed slot is then clearly late, whatever the start-up costs."""
    base = time.time() + hours * 3600
    return hours * 3600 + (every / 2 - base % every)


@pytest.fixture
def d(env: Env) -> Env:
    start(env)
    return env


def test_a_slot_fires_on_time_with_its_job_named_by_the_slot_and_the_job_runs(env: Env) -> None:
    # The daemon's clock is set so that a minute boundary comes a few seconds after the schedule is added.
    now = time.time()
    boundary = math.ceil((now + 5) / 60) * 60 + 60  # in the daemon's time, 5 s from now
    ahead = boundary - (now + 5)
    start(env, ahead)
    env.ok("worker", "start", "--count", "1", "--detach")
    r = env.ok("schedule", "add", "tick", "* * * * *", JOB, "--tz", "UTC")
    assert r.err.startswith("added schedule tick (* * * * *, UTC): next fire "), r
    job_id = _slot_id("tick", boundary)
    assert schedules(env)["tick"]["next_fire"] == _iso(boundary)
    wait_for(lambda: fired(env, "tick"), timeout=30, what="the fire")
    job = env.wait_state(job_id, "completed")
    assert (job["schedule"], job["slot"], job["late"], job["command"]) == ("tick", boundary, False, "echo tick")
    assert env.ok("logs", job_id, "--stdout").out == "tick\n"
    s = schedules(env)["tick"]
    assert (s["last_job"], s["fires"], s["last_slot"], s["next_fire"], s["paused"]) == \
        (job_id, 1, _iso(boundary), _iso(boundary + 60), False)
    assert f"schedule:    tick, slot {_iso(boundary)}\n" in env.ok("show", job_id).out
    table = env.ok("schedule", "list").out.splitlines()
    assert table[0].split() == ["NAME", "CRON", "ZONE", "NEXT", "LAST", "PAUSED", "SKIPPED", "LAST", "JOB"]
    assert table[1].split()[-1] == job_id


def test_after_downtime_the_latest_missed_slot_fires_once_and_late_never_a_burst(d: Env) -> None:
    d.ok("schedule", "add", "every5", "*/5 * * * *", JOB, "--tz", "Europe/Berlin")
    ahead = later(3)  # three hours of "downtime": 36 slots missed
    restart(d, ahead)
    (job,) = wait_for(lambda: fired(d, "every5"), what="the misfire")
    slot = math.floor((time.time() + ahead) / 300) * 300
    assert (job["id"], job["late"], job["slot"]) == (_slot_id("every5", slot), True, slot)
    assert "fired late" in d.ok("show", job["id"]).out
    s = schedules(d)["every5"]
    assert (s["fires"], s["last_late"], s["zone"]) == (1, True, "Europe/Berlin")
    restart(d, ahead + 1)  # back again at once: nothing was missed
    assert schedules(d)["every5"]["fires"] == 1 and len(fired(d, "every5")) == 1


def test_a_crash_right_after_a_fire_never_gives_the_slot_a_second_job(env: Env) -> None:
    start(env)
    env.ok("schedule", "add", "crashy", "*/5 * * * *", JOB)
    env.stop_daemon()
    ahead = later(1)
    # The daemon comes back an hour later, fires the missed slot, and dies once the fire is on disk.
    proc = subprocess.run([QUEUECTLD, "--home", env.home, "--workers", "0"], capture_output=True, timeout=30,
                          env=dict(env.env, QUEUECTL_FAULTS=f"clock-ahead={ahead},crash-at=schedule-fired"))
    assert proc.returncode == 70, proc.stderr[-2000:]
    start(env, ahead + 1)
    (job,) = fired(env, "crashy")
    s = schedules(env)["crashy"]
    assert (s["fires"], s["last_job"]) == (1, job["id"])
    restart(env, ahead + 2)
    assert [j["id"] for j in fired(env, "crashy")] == [job["id"]]


def test_no_overlap_skips_and_counts_while_the_previous_job_is_not_final(d: Env) -> None:
    d.ok("schedule", "add", "sync", "*/5 * * * *", JOB, "--no-overlap")
    ahead = later(1)
    restart(d, ahead)  # the first fire: its job waits (no workers)
    (first,) = wait_for(lambda: fired(d, "sync"), what="the first fire")
    restart(d, later(2))  # the next fire comes while the first job is pending: skipped
    s = wait_for(lambda: (s := schedules(d)["sync"])["skipped"] and s, what="the skip")
    assert (s["skipped"], s["fires"], s["last_skipped"], s["last_job"]) == (1, 1, True, first["id"])
    assert "skipped: the previous job was not finished" in d.ok("schedule", "list").out
    assert len(fired(d, "sync")) == 1
    d.ok("cancel", first["id"])  # final now
    restart(d, later(3))
    jobs = wait_for(lambda: len(j := fired(d, "sync")) == 2 and j, what="the third fire")
    assert schedules(d)["sync"]["skipped"] == 1 and len({j["id"] for j in jobs} - {first["id"]}) == 1


def test_pause_fires_nothing_and_resume_fires_from_the_next_slot_not_the_missed_ones(d: Env) -> None:
    d.ok("schedule", "add", "p", "*/5 * * * *", JOB)
    r = d.ok("schedule", "pause", "p")
    assert r.err.startswith("paused schedule p (*/5 * * * *, ") and r.err.endswith("): paused\n"), r
    restart(d, later(1))
    s = schedules(d)["p"]
    assert (s["paused"], s["next_fire"], s["fires"]) == (True, None, 0)
    assert "yes" in d.ok("schedule", "list").out.splitlines()[1].split()
    d.ok("schedule", "resume", "p")
    assert schedules(d)["p"]["next_fire"] is not None and fired(d, "p") == []
    restart(d, later(2))
    (job,) = wait_for(lambda: fired(d, "p"), what="a fire after resume")
    assert job["late"]


def test_rm_removes_the_schedule_and_keeps_its_jobs(d: Env) -> None:
    d.ok("schedule", "add", "gone", "*/5 * * * *", JOB)
    restart(d, later(1))
    (job,) = wait_for(lambda: fired(d, "gone"), what="a fire")
    assert d.ok("schedule", "rm", "gone").err == "removed schedule gone\n"
    assert schedules(d) == {} and d.ok("schedule", "list").out == "no schedules\n"
    restart(d, later(2))
    assert [j["id"] for j in fired(d, "gone")] == [job["id"]]
    for action in ("rm", "pause", "resume"):
        r = d.q("schedule", action, "gone")
        assert r.code == 1 and r.err == "queuectl: no schedule named 'gone'\n", r


BAD = [
    (["bad", "61 * * * *", JOB], "invalid cron expression '61 * * * *': Bad minute"),
    (["bad", "* * *", JOB], "invalid cron expression '* * *': expected 5 fields"),
    (["bad", "@fortnightly", JOB], "invalid cron expression '@fortnightly': unknown macro"),
    (["bad", "* * * * *", JOB, "--tz", "Mars/Olympus"], "unknown time zone Mars/Olympus"),
    (["bad", "* * * * *", JOB, "--tz", "../etc"], "unknown time zone ../etc"),
    (["bad", "* * * * *", JOB, "--tz", "Europe/\nBerlin"], "unknown time zone 'Europe/\\nBerlin'"),
    (["bad", "0 3 * * *\x1b", JOB], "invalid cron expression '0 3 * * *\\x1b': Bad day-of-week"),
    (["bad", "* * * * *", '{"command": "x", "id": "a"}'], "invalid job: a scheduled job has no `id`"),
    (["bad", "* * * * *", '{"command": "x", "delay": 5}'], "invalid job: a scheduled job has no `delay`"),
    (["bad", "* * * * *", '{"command": "x", "run_at": 5}'], "invalid job: a scheduled job has no `run_at`"),
    (["bad", "* * * * *", '{"command": "x", "grp": 5}'], "invalid job: Object contains unknown field `grp`"),
    (["bad", "* * * * *", '{"command": 5}'], "invalid job"),
    (["bad", "* * * * *", "{nope"], "invalid JSON"),
    (["bad", "* * * * *", '{"command": "x", "group": "nope"}'], "unknown group nope"),
    (["bad name", "* * * * *", JOB], "a schedule name is 1 to 47 letters"),
    (["x" * 48, "* * * * *", JOB], "a schedule name is 1 to 47 letters"),
]


def test_bad_input_is_refused_with_one_line_naming_the_problem(d: Env) -> None:
    for args, words in BAD:
        r = d.q("schedule", "add", *args)
        assert r.code == 2 and words in r.err and r.err.count("\n") == 1 and r.out == "", (args, r)
    assert schedules(d) == {}


def test_a_taken_name_is_refused_and_schedules_survive_a_restart(d: Env) -> None:
    d.ok("schedule", "add", "nightly", "0 3 * * *", '{"command": "backup.sh", "timeout": 60}', "--tz", "Asia/Tokyo")
    d.ok("schedule", "add", "weekly", "@weekly", JOB, "--no-overlap")
    r = d.q("schedule", "add", "nightly", "@daily", JOB)
    assert r.code == 1 and r.err == "queuectl: a schedule named 'nightly' already exists\n", r
    d.ok("schedule", "pause", "weekly")
    before = schedules(d)
    assert before["nightly"]["job"] == {"command": "backup.sh", "timeout": 60.0, "priority": 0}
    assert before["nightly"]["cwd"] == d.ok("schedule", "list", "--json").json()[0]["cwd"]
    restart(d, 0.0)
    assert schedules(d) == before
    assert d.ok("schedule", "list", "--quiet").out == "nightly\nweekly\n"


def test_the_default_zone_is_the_daemons_local_one_kept_across_a_restart_elsewhere(env: Env) -> None:
    env.env["TZ"] = "America/New_York"
    start(env)
    env.ok("schedule", "add", "local", "30 2 * * *", JOB)
    env.env["TZ"] = "Asia/Kolkata"
    restart(env, 0.0)
    assert schedules(env)["local"]["zone"] == "America/New_York"


def test_a_fire_into_a_removed_group_is_recorded_as_failed_and_the_daemon_goes_on(d: Env) -> None:
    d.ok("group", "add", "net")
    d.ok("schedule", "add", "sync", "*/5 * * * *", '{"command": "true", "group": "net"}')
    d.ok("group", "rm", "net")
    restart(d, later(1))
    s = wait_for(lambda: (s := schedules(d)["sync"])["failed"] and s, what="the failed fire")
    assert "unknown group net" in s["last_error"] and s["fires"] == 0 and fired(d, "sync") == []
    assert "failed: unknown group net" in d.ok("schedule", "list").out
    d.ok("group", "add", "net")
    restart(d, later(2))
    wait_for(lambda: fired(d, "sync"), what="a fire into the group made again")


def test_completion_knows_the_schedule_commands_and_completes_schedule_names(d: Env) -> None:
    d.ok("schedule", "add", "nightly", "@daily", JOB)
    d.ok("schedule", "add", "hourly", "@hourly", JOB)
    script = d.ok("completions", "bash").out

    def complete(*words: str) -> list[str]:
        return bash_complete(d, script, *words)

    assert complete("queuectl", "sch") == ["schedule"]
    assert complete("queuectl", "schedule", "") == ["--help", "-h", "add", "list", "pause", "resume", "rm"]
    for action in ("rm", "pause", "resume"):
        assert complete("queuectl", "schedule", action, "") == ["hourly", "nightly"], action
    assert complete("queuectl", "schedule", "add", "x", "@daily", "{}", "--n") == ["--no-overlap"]
    for shell in ("zsh", "fish"):
        assert "schedule list --quiet" in d.ok("completions", shell).out
    probe = """
from queuectl_client.connection import Client
from queuectl_client.shell import ShellCompleter
c = ShellCompleter(Client())
print(sorted(v for v, _ in c._candidates(["schedule", "pause"], "")))
print(sorted(v for v, _ in c._candidates(["schedule"], "")))
"""
    proc = subprocess.run([os.path.join(BIN, "python"), "-c", probe], env=d.env, capture_output=True, text=True,
                          check=True)
    assert proc.stdout.splitlines() == ["['hourly', 'nightly']", "['add', 'list', 'pause', 'resume', 'rm']"]
    help_text = d.ok("schedule", "add", "--help").out
    assert "queuectl schedule add nightly '0 3 * * *'" in help_text and "--no-overlap" in help_text


def test_a_fired_job_runs_with_the_environment_of_schedule_add_not_the_daemons(d: Env) -> None:
    job = json.dumps({"command": "echo \"$GREETING $FROM_JOB\"", "env": {"FROM_JOB": "world"}})
    d.q("schedule", "add", "greet", "*/5 * * * *", job, "--tz", "UTC", GREETING="hello")
    assert "GREETING" not in os.environ
    restart(d, later(1))
    (fire,) = wait_for(lambda: fired(d, "greet"), what="the misfire")
    shown = d.ok("show", fire["id"], "--json").json()
    assert (shown["env"]["GREETING"], shown["env"]["FROM_JOB"]) == ("hello", "world")
    d.ok("worker", "start", "--count", "1", "--detach")
    d.wait_state(fire["id"], "completed")
    assert "\nhello world\n" in d.ok("logs", fire["id"]).out


def test_a_fire_whose_unique_key_a_live_job_holds_is_skipped_and_says_which_job(d: Env) -> None:
    d.enqueue(command="true", id="manual-sync", unique_key="sync")
    d.ok("schedule", "add", "sync", "*/5 * * * *", json.dumps({"command": "true", "unique_key": "sync"}))
    restart(d, later(1))
    s = wait_for(lambda: (s := schedules(d)["sync"])["last_slot"] is not None and s, what="the misfire")
    assert (s["fires"], s["skipped"], s["last_job"]) == (0, 1, None)
    assert "manual-sync" in (s["last_error"] or "") and fired(d, "sync") == []
    assert "job manual-sync holds the unique key 'sync'" in d.ok("schedule", "list").out


def test_schedule_add_refuses_an_unknown_dependency_and_an_empty_expression_in_one_line(d: Env) -> None:
    for args, named in [
        (["deps", "@daily", json.dumps({"command": "true", "after": ["nope"]})], "unknown dependency nope"),
        (["empty", "", JOB], "invalid cron expression ''"),
        (["blank", "   ", JOB], "invalid cron expression ''"),
    ]:
        r = d.q("schedule", "add", *args)
        assert r.code == 2 and named in r.err and r.err.count("\n") == 1, r
    assert schedules(d) == {}


def test_schedule_add_takes_env_and_clean_env_for_its_jobs(d: Env) -> None:
    d.q("schedule", "add", "clean", "*/5 * * * *", JOB, "--clean-env", "--env", "ONLY=this", "--tz", "UTC",
        GREETING="hello")
    restart(d, later(1))
    (fire,) = wait_for(lambda: fired(d, "clean"), what="the misfire")
    env = d.ok("show", fire["id"], "--json").json()["env"]
    assert env["ONLY"] == "this" and "GREETING" not in env and set(env) <= {"ONLY", "PATH", "HOME", "USER", "LANG",
                                                                              "SHELL"}, env
