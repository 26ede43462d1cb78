"""`queuectl why` against a real daemon: each reason, built exactly, in its line and in --json."""

from __future__ import annotations

import re
import signal
import socket
from datetime import datetime
from typing import Any

import pytest

from queuectl_client import Client
from queuectl_client import protocol as p
from tests.conftest import Env, wait_for

CLOCK = r"\d\d:\d\d:\d\d"  # a local time today


@pytest.fixture
def d(env: Env) -> Env:
    env.start_daemon()  # a new home: the pool is 0
    return env


def why(env: Env, job_id: str) -> str:
    r = env.ok("why", job_id)
    assert r.err == "" and r.out.count("\n") == 1, r
    return r.out.rstrip("\n")


def why_json(env: Env, job_id: str) -> dict[str, Any]:
    data: dict[str, Any] = env.ok("why", job_id, "--json").json()
    assert data["id"] == job_id
    return data


def _local(iso: str) -> str:
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).astimezone().strftime("%H:%M:%S")


def test_completed_and_dead(d: Env) -> None:
    d.ok("worker", "start", "--count", "1", "--detach")
    ok = d.enqueue(command="true")
    bad = d.enqueue(command="exit 3", max_retries=0)
    done, dead = d.wait_state(ok, "completed"), d.wait_state(bad, "dead")
    assert re.fullmatch(rf"completed at {CLOCK} \(\d+s ago\)", why(d, ok))
    assert _local(done["finished_at"]) in why(d, ok)
    data = why_json(d, ok)
    assert (data["code"], data["at"]) == ("completed", done["finished_at"])
    assert re.fullmatch(rf"dead: exited with status 3 \(at {CLOCK}\)", why(d, bad))
    data = why_json(d, bad)
    assert (data["code"], data["error"], data["at"]) == ("dead", "exited with status 3", dead["finished_at"])
    assert data["text"].startswith("dead: exited with status 3 (at ") and data["text"].endswith("Z)")


def test_running_on_which_worker_since_when(d: Env) -> None:
    d.ok("worker", "start", "--count", "2", "--detach")
    job_id = d.enqueue(command="sleep 30")
    job = d.wait_state(job_id, "processing")
    line = why(d, job_id)
    assert line.startswith(f"running on worker {job['locked_by']} since {_local(job['started_at'])} ("), line
    assert job["locked_by"] == f"{socket.gethostname()}/{job['worker']}"
    data = why_json(d, job_id)
    assert (data["code"], data["worker"], data["at"]) == ("running", job["locked_by"], job["started_at"])
    d.ok("cancel", job_id, "--signal", "KILL")


def test_waiting_for_a_dependency_comes_before_no_workers(d: Env) -> None:
    dep = d.enqueue(command="true", id="extract")
    # `after` straight through the protocol: the job names its dependency.
    with Client(d.home, autostart=False) as c:
        reply = c.request(p.Enqueue([p.JobSpec(command="true", id="load", after=[dep]),
                                     p.JobSpec(command="true", id="report", after_any=[dep])]))
    assert isinstance(reply, p.Enqueued) and reply.ids == ["load", "report"]
    assert why(d, "load") == "waiting for dependency extract (pending)"
    assert why(d, "report") == "waiting for dependency extract (pending)"
    data = why_json(d, "load")
    assert (data["code"], data["job"], data["state"]) == ("dependency", "extract", "pending")
    assert why(d, dep) == "no workers (pool is 0)"


def test_group_paused_comes_before_scheduled(d: Env) -> None:
    d.ok("group", "add", "backups")
    d.ok("pause", "backups")
    d.ok("worker", "start", "--count", "1", "--detach")
    job_id = d.enqueue(command="true", group="backups", delay=3600)
    assert why(d, job_id) == "group backups paused"
    assert (why_json(d, job_id)["code"], why_json(d, job_id)["group"]) == ("paused", "backups")


def test_scheduled_for_a_time_in_the_future(d: Env) -> None:
    d.ok("worker", "start", "--count", "1", "--detach")
    job_id = d.enqueue(command="true", delay=3600)
    job = d.show(job_id)
    assert why(d, job_id) == f"scheduled for {_local(job['run_at'])} (in 1h)"
    data = why_json(d, job_id)
    assert (data["code"], data["at"]) == ("scheduled", job["run_at"])


def test_backoff_until_the_retry_with_its_number(d: Env) -> None:
    d.ok("config", "set", "backoff-base", "600")
    d.ok("worker", "start", "--count", "1", "--detach")
    job_id = d.enqueue(command="exit 1", max_retries=2)
    job = d.wait_state(job_id, "failed")
    assert why(d, job_id) == f"backoff until {_local(job['next_retry_at'])} (in 10m; retry 1 of 2)"
    data = why_json(d, job_id)
    assert (data["code"], data["at"], data["count"], data["limit"]) == ("backoff", job["next_retry_at"], 1, 2)


def test_no_workers(d: Env) -> None:
    job_id = d.enqueue(command="true")
    assert why(d, job_id) == "no workers (pool is 0)"
    d.ok("worker", "start", "--count", "1", "--detach")
    d.wait_state(job_id, "completed")
    d.ok("worker", "stop")
    job_id = d.enqueue(command="true")
    assert why(d, job_id) == "no workers (pool is 0)"
    assert why_json(d, job_id)["code"] == "no_workers"


def test_all_workers_busy_with_the_jobs_ahead(d: Env) -> None:
    d.ok("worker", "start", "--count", "1", "--detach")
    d.wait_state(d.enqueue(command="sleep 30", id="long"), "processing")
    first = d.enqueue(command="true", id="first")
    assert why(d, first) == "the only worker is busy"
    d.ok("worker", "start", "--count", "2", "--detach")
    d.wait_state(d.enqueue(command="sleep 30", id="long2"), "processing")
    d.wait_state(first, "completed")  # it took the second worker at once
    d.enqueue(command="true", id="a")
    d.enqueue(command="true", id="b", priority=5)
    last = d.enqueue(command="true", id="c")
    assert why(d, last) == "all 2 workers busy; 2 jobs ahead of it"
    assert why(d, "a") == "all 2 workers busy; 1 job ahead of it"
    data = why_json(d, last)
    assert (data["code"], data["count"], data["limit"], data["ahead"]) == ("busy", 2, 2, 2)
    d.ok("cancel", "--state", "processing", "--signal", "KILL")


def test_group_full(d: Env) -> None:
    d.ok("group", "add", "one", "--parallel", "1")
    d.ok("worker", "start", "--count", "2", "--detach")
    d.wait_state(d.enqueue(command="sleep 30", group="one"), "processing")
    job_id = d.enqueue(command="true", group="one")
    assert why(d, job_id) == "group one full (1 of 1 running)"
    data = why_json(d, job_id)
    assert (data["code"], data["group"], data["count"], data["limit"]) == ("group_full", "one", 1, 1)
    d.ok("cancel", "--state", "processing", "--signal", "KILL")


def test_next_in_line_with_the_jobs_ahead_while_the_daemon_starts_nothing(env: Env) -> None:
    # A daemon stopping gracefully starts no new job and keeps answering: the line holds still.
    env.start_daemon("--workers", "2", "--grace", "60")
    env.wait_state(env.enqueue(command="sleep 60", id="long"), "processing")
    assert env.daemon is not None
    env.daemon.send_signal(signal.SIGTERM)
    wait_for(lambda: env.ok("status", "--json").json()["daemon"]["stopping"], what="the daemon to be stopping")
    for job_id in ("a", "b", "c"):
        env.enqueue(command="true", id=job_id)
    assert why(env, "c") == "next in line, 2 jobs ahead of it"
    assert why(env, "a") == "next in line, nothing ahead of it"
    data = why_json(env, "c")
    assert (data["code"], data["ahead"]) == ("next", 2)
    env.daemon.send_signal(signal.SIGTERM)  # a second signal: the running job is killed at once
    env.daemon.wait(30)
    env.daemon = None


def test_an_unknown_id_exits_1_as_show_does(d: Env) -> None:
    for cmd in ("why", "show"):
        r = d.q(cmd, "nope")
        assert (r.code, r.out, r.err) == (1, "", "queuectl: no job with id 'nope'\n"), r
    assert d.q("why").code == 2
    for shell in ("bash", "zsh", "fish"):
        assert re.search(r"\bwhy\b", d.ok("completions", shell).out), shell

