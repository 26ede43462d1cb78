"""Retry rules, the backoff cap and the hang timeout, against a real daemon running real `sh -c` jobs."""

from __future__ import annotations

import json
import os
from datetime import datetime

import pytest

from tests.conftest import Env, pid_alive, wait_for


@pytest.fixture
def d(env: Env) -> Env:
    env.start_daemon("--workers", "4")
    env.ok("config", "set", "backoff-base", "1")  # a retry a second later
    return env


def _t(iso: str) -> float:
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


def _runs(path: str) -> int:
    try:
        with open(path) as f:
            return len(f.read().split())
    except FileNotFoundError:
        return 0


# --- retry rules ------------------------------------------------------------------------------------


def test_no_retry_on_sends_a_listed_exit_to_dead_at_once_and_retries_the_rest(d: Env) -> None:
    never = d.enqueue(command="exit 2", no_retry_on=[2], max_retries=3)
    other = d.enqueue(command="exit 3", no_retry_on=[2], max_retries=1)
    job = d.wait_state(never, "dead")
    assert job["attempts"] == 1 and job["exit_code"] == 2, job
    assert job["error_message"] == "exited with status 2; exit 2 is not retried"
    assert job["no_retry_on"] == [2] and job["retry_on"] is None and job["next_retry_at"] is None
    job = d.wait_state(other, "dead")
    assert job["attempts"] == 2 and job["error_message"] == "exited with status 3", job  # retried, then out of retries
    shown = d.ok("show", never).out
    assert "\nno retry on: exit 2\n" in shown and "error:       exited with status 2; exit 2 is not retried" in shown


def test_retry_on_retries_only_what_it_lists(d: Env, tmp_path: os.PathLike[str]) -> None:
    runs = os.path.join(str(tmp_path), "runs")
    # Exits 75 (EX_TEMPFAIL) on its first two runs, then succeeds.
    flaky = d.enqueue(command=f"echo run >> {runs}; [ $(wc -l < {runs}) -ge 3 ] || exit 75", retry_on=[75],
                      max_retries=5)
    usage = d.enqueue(command="exit 1", retry_on=[75], max_retries=5)
    job = d.wait_state(flaky, "completed")
    assert job["attempts"] == 3 and _runs(runs) == 3, job
    job = d.wait_state(usage, "dead")
    assert job["attempts"] == 1 and job["error_message"] == "exited with status 1; exit 1 is not retried", job
    assert "\nretry on:    exit 75\n" in d.ok("show", usage).out


def test_timeout_in_a_rule_names_a_run_killed_for_its_timeout(d: Env) -> None:
    never = d.enqueue(command="sleep 5", timeout=0.5, no_retry_on=["timeout"], max_retries=3)
    again = d.enqueue(command="sleep 5", timeout=0.5, retry_on=["timeout"], max_retries=1)
    other = d.enqueue(command="sleep 5", timeout=0.5, retry_on=[1, "signal"], max_retries=3)
    job = d.wait_state(never, "dead")
    assert job["attempts"] == 1 and job["error_message"] == "timed out after 0.5 s; timeout is not retried", job
    job = d.wait_state(other, "dead")
    assert job["attempts"] == 1 and job["error_message"] == "timed out after 0.5 s; timeout is not retried", job
    job = d.wait_state(again, "dead")
    assert job["attempts"] == 2 and job["error_message"] == "timed out after 0.5 s", job


def test_signal_in_a_rule_names_a_job_killed_by_a_signal(d: Env) -> None:
    never = d.enqueue(command="kill -9 $$", no_retry_on=["signal"], max_retries=3)
    again = d.enqueue(command="kill -9 $$", retry_on=["signal"], max_retries=1)
    exited = d.enqueue(command="exit 137", no_retry_on=["signal"], max_retries=1)  # an exit code, not a signal
    job = d.wait_state(never, "dead")
    assert job["attempts"] == 1 and job["exit_code"] is None, job
    assert job["error_message"] == "killed by SIGKILL; signal is not retried"
    job = d.wait_state(again, "dead")
    assert job["attempts"] == 2 and job["error_message"] == "killed by SIGKILL", job
    job = d.wait_state(exited, "dead")
    assert job["attempts"] == 2 and job["error_message"] == "exited with status 137", job


def test_a_job_a_rule_killed_comes_back_with_dlq_retry(d: Env) -> None:
    job_id = d.enqueue(command="exit 2", no_retry_on=[2], max_retries=2)
    d.wait_state(job_id, "dead")
    d.ok("dlq", "retry", job_id)
    job = wait_for(lambda: (j := d.show(job_id))["state"] == "dead" and j["attempts"] == 1 and
                   j["finished_at"] and j, what="the retried job to die again by its rule")
    assert job["error_message"] == "exited with status 2; exit 2 is not retried"


# --- hang timeout -----------------------------------------------------------------------------------


def test_a_silent_run_is_killed_with_its_whole_process_group(d: Env, tmp_path: os.PathLike[str]) -> None:
    pids = os.path.join(str(tmp_path), "pids")
    cmd = f"sleep 30 & echo $! > {pids}; sh -c 'sleep 30' & echo $! >> {pids}; wait"
    job_id = d.enqueue(command=cmd, idle_timeout=1, max_retries=0)
    job = d.wait_state(job_id, "dead")
    assert job["error_message"] == "no output for 1 s" and job["idle_timeout"] == 1, job
    assert _t(job["finished_at"]) - _t(job["started_at"]) >= 1
    with open(pids) as f:
        children = [int(x) for x in f.read().split()]
    assert len(children) == 2
    wait_for(lambda: not any(pid_alive(p) for p in children), 5, "the grandchildren to die")
    assert "\nidle timeout: 1 s without output\n" in d.ok("show", job_id).out


def test_a_run_that_keeps_writing_outlives_its_idle_timeout(d: Env) -> None:
    # 2 s of output, a line every 0.2 s, alternately on stdout and stderr.
    cmd = "for i in 1 2 3 4 5; do echo out $i; sleep 0.2; echo err $i >&2; sleep 0.2; done"
    job_id = d.enqueue(command=cmd, idle_timeout=1, max_retries=0)
    job = d.wait_state(job_id, "completed")
    assert job["attempts"] == 1 and _t(job["finished_at"]) - _t(job["started_at"]) >= 2, job
    assert d.ok("logs", job_id, "--stdout").out.count("out") == 5


def test_a_silent_run_is_a_timeout_to_its_retry_rule(d: Env) -> None:
    job_id = d.enqueue(command="sleep 30", idle_timeout=0.5, no_retry_on=["timeout"], max_retries=3)
    job = d.wait_state(job_id, "dead")
    assert job["attempts"] == 1 and job["error_message"] == "no output for 0.5 s; timeout is not retried", job


# --- backoff cap ------------------------------------------------------------------------------------


def test_backoff_max_caps_the_wait_recorded_when_the_run_ends(d: Env) -> None:
    d.ok("config", "set", "backoff-base", "60")
    d.ok("config", "set", "backoff-max", "2")
    assert d.ok("config", "get", "backoff-max").out == "2\n"
    job_id = d.enqueue(command="exit 1", max_retries=5)
    job = d.wait_state(job_id, "failed")
    assert abs(_t(job["next_retry_at"]) - _t(job["finished_at"]) - 2) < 0.01, job  # not 60 s
    d.ok("config", "set", "backoff-max", "1h")  # the recorded wait stays as it was
    assert d.show(job_id)["next_retry_at"] == job["next_retry_at"]
    job = wait_for(lambda: (j := d.show(job_id))["attempts"] == 2 and j["state"] == "failed" and j,
                   what="the second run, 2 s later")
    assert abs(_t(job["next_retry_at"]) - _t(job["finished_at"]) - 3600) < 0.01, job  # 60 ^ 2 = the new cap
    d.stop_daemon()
    d.start_daemon()
    assert d.ok("config", "get", "backoff-max").out == "3600\n"


# --- bad input --------------------------------------------------------------------------------------


BAD = [
    ({"retry_on": [75], "no_retry_on": [2]}, "retry_on or no_retry_on"),
    ({"retry_on": ["x"]}, "retry_on"),
    ({"no_retry_on": [300]}, "no_retry_on"),
    ({"retry_on": [-1]}, "retry_on"),
    ({"retry_on": "timeout"}, "retry_on"),
    ({"idle_timeout": -1}, "idle_timeout"),
    ({"idle_timeout": 0}, "idle_timeout"),
]


def test_a_bad_rule_or_idle_timeout_is_refused_with_one_line_naming_the_field(d: Env) -> None:
    for job, field in BAD:
        r = d.q("enqueue", json.dumps({"command": "true", **job}))
        assert r.code == 2 and r.out == "" and r.err.count("\n") == 1 and field in r.err, (job, r)
        r = d.q("enqueue", "-", input=json.dumps({"command": "true"}) + "\n" + json.dumps({"command": "true", **job}))
        assert r.code == 2 and r.err.count("\n") == 1 and field in r.err, (job, r)  # in a batch: nothing half-done
    assert d.jobs() == []


def test_a_bad_backoff_max_is_refused_with_one_line(d: Env) -> None:
    for value in ("0", "0.5", "x", "1y"):
        r = d.q("config", "set", "backoff-max", value)
        assert r.code == 2 and r.err.count("\n") == 1 and "backoff-max" in r.err, (value, r)
    assert d.ok("config", "get", "backoff-max").out == "3600\n"
