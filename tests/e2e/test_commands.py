"""Every CLI command and exit code, against a real daemon process."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import pytest

from tests.conftest import QUEUECTLD, Env, wait_for

ISO = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
JOB_FIELDS = {
    "id", "command", "state", "attempts", "max_retries", "priority", "timeout", "run_at", "created_at",
    "updated_at", "started_at", "finished_at", "next_retry_at", "exit_code", "error_message", "worker",
}


@pytest.fixture
def d(env: Env) -> Env:
    env.start_daemon()
    return env


def test_enqueue_show_list_and_the_job_model(d: Env) -> None:
    job_id = d.enqueue(command="echo hi", id="job-1", priority=5, timeout=30, max_retries=2)
    assert job_id == "job-1"
    job = d.show("job-1")
    assert JOB_FIELDS <= job.keys()
    assert job["state"] == "pending" and job["attempts"] == 0 and job["max_retries"] == 2
    assert job["priority"] == 5 and job["timeout"] == 30
    assert ISO.match(job["created_at"]) and ISO.match(job["updated_at"])
    for f in ("run_at", "started_at", "finished_at", "next_retry_at", "exit_code", "error_message", "worker"):
        assert job[f] is None, f
    listed = d.jobs()
    # `list` never gives the environment
    assert [j["id"] for j in listed] == ["job-1"] and listed[0] == {**job, "env": None}
    human = d.ok("show", "job-1").out
    assert "job-1" in human and "pending" in human
    table = d.ok("list").out.splitlines()
    assert table[0].split() == ["ID", "STATE", "TRIES", "PRIO", "WHEN", "COMMAND"]
    assert table[1].split()[:2] == ["job-1", "pending"]


def test_generated_ids_are_unique_and_defaults_come_from_config(d: Env) -> None:
    ids = {d.enqueue(command="true") for _ in range(5)}
    assert len(ids) == 5
    d.ok("config", "set", "max-retries", "7")
    d.ok("config", "set", "job-timeout", "12.5")
    job = d.show(d.enqueue(command="true"))
    assert job["max_retries"] == 7 and job["timeout"] == 12.5


@pytest.mark.parametrize("text, message", [
    ("{not json", "invalid JSON"),
    ('{"max_retries": 1}', "missing required field `command`"),
    ('{"command": ""}', "$.command"),
    ('{"command": "   "}', "$.command"),
    ('{"command": "x", "colour": "red"}', "unknown field `colour`"),
    ('{"command": "x", "priority": "high"}', "$.priority"),
    ('{"command": "x", "max_retries": -1}', "$.max_retries"),
    ('{"command": "x", "delay": -5}', "$.delay"),
    ('{"command": "x", "timeout": 0}', "$.timeout"),
    ('{"command": "x", "run_at": "tomorrow"}', "$.run_at"),
    ('{"command": "x", "id": "../etc"}', "$.id"),
    ('["echo"]', "Expected `object`, got `array`"),
    ('{"command": "x", "cwd": "relative/dir"}', "$.cwd"),
    ('{"command": "x", "delay": 1, "run_at": "2030-01-01T00:00:00Z"}', "not both"),
])
def test_invalid_jobs_exit_2_with_one_line(d: Env, text: str, message: str) -> None:
    # As an argument the job takes the CLI's quick path; on stdin, the full one.  Same message.
    for r in (d.q("enqueue", text), d.q("enqueue", "-", input=text + "\n")):
        assert r.code == 2, r
        assert message in r.err and r.err.count("\n") == 1, r.err
        assert r.err.replace("line 1: ", "") == d.q("enqueue", text).err
    assert d.jobs() == []


def test_refusals_exit_1(d: Env) -> None:
    d.enqueue(command="true", id="dup")
    r = d.q("enqueue", json.dumps({"command": "true", "id": "dup"}))
    assert r.code == 1 and "already exists" in r.err
    for args in (["show", "nope"], ["logs", "nope"], ["delete", "nope"], ["dlq", "retry", "nope"]):
        r = d.q(*args)
        assert r.code == 1 and "nope" in r.err, (args, r)
    r = d.q("dlq", "retry", "dup")
    assert r.code == 1 and "not dead" in r.err


@pytest.mark.parametrize("args", [
    ["frobnicate"], ["worker"], ["worker", "pause"], ["list", "--state", "sleeping"], ["list", "--limit", "x"],
    ["config", "get", "colour"], ["config", "set", "backoff-base", "0.5"], ["config", "set", "max-retries", "-1"],
    ["config", "set", "output-limit", "lots"], ["config", "set", "job-timeout", "soon"], ["enqueue"],
    ["dlq", "retry"], ["list", "--limit", "-1"],
])
def test_usage_errors_exit_2(d: Env, args: list[str]) -> None:
    r = d.q(*args)
    assert r.code == 2, r
    assert r.err.count("\n") == 1 and r.err.startswith("queuectl:"), r.err


def test_unreachable_daemon_exits_3(env: Env) -> None:
    r = env.q("status")
    assert r.code == 3 and "cannot connect" in r.err, r


def test_batch_enqueue_is_all_or_nothing(d: Env, tmp_path: os.PathLike[str]) -> None:
    good = "\n".join(json.dumps({"command": f"echo {i}"}) for i in range(100)) + "\n\n"
    r = d.ok("enqueue", "-", input=good)
    ids = r.out.split()
    assert len(ids) == 100 and len(set(ids)) == 100
    bad = good + '{"command": "x", "oops": 1}\n'
    r = d.q("enqueue", "-", input=bad)
    assert r.code == 2 and "line 102" in r.err, r
    dup = json.dumps({"command": "a", "id": "x1"}) + "\n" + json.dumps({"command": "b", "id": ids[5]}) + "\n"
    path = os.path.join(str(tmp_path), "jobs.jsonl")
    with open(path, "w") as f:
        f.write(dup)
    r = d.q("enqueue", "--file", path)
    assert r.code == 1 and ids[5] in r.err
    assert len(d.jobs()) == 100
    assert d.q("show", "x1").code == 1
    assert d.q("enqueue", "--file", "/nonexistent/jobs").code == 2


QUICK = """
import sys
from queuectl_client.quick import quick
code = quick(sys.argv[1:])
assert "msgspec" not in sys.modules and "typing" not in sys.modules and "argparse" not in sys.modules
sys.exit(99 if code is None else code)
"""
FULL = "import sys; from queuectl_client.cli import main; sys.exit(main(sys.argv[1:]))"


def test_status_and_one_job_enqueue_take_the_quick_path_and_print_what_the_full_path_prints(d: Env) -> None:
    def run(script: str, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-c", script, *args], env=d.env, capture_output=True, text=True)

    job = run(QUICK, "enqueue", json.dumps({"command": "echo hi", "priority": 3, "delay": 60}))
    assert job.returncode == 0 and job.stderr == "", job
    shown = d.show(job.stdout.strip())
    assert shown["command"] == "echo hi" and shown["priority"] == 3 and shown["cwd"] == os.getcwd()
    assert shown["run_at"] is not None
    quick, full = run(QUICK, "status", "--json"), run(FULL, "status", "--json")
    assert quick.returncode == full.returncode == 0 and quick.stdout == full.stdout, (quick, full)
    quick, full = run(QUICK, "status"), run(FULL, "status")
    assert quick.stdout.splitlines()[:2] == full.stdout.splitlines()[:2] and "pending 1" in quick.stdout
    # Anything else is the full CLI's: the quick path declines without touching the daemon.
    for args in (["list"], ["status", "--jsn"], ["enqueue", "-"], ["enqueue", '["x"]']):
        assert run(QUICK, *args).returncode == 99, args
    assert len(d.jobs()) == 1


def test_status_json_shape(d: Env) -> None:
    d.enqueue(command="true")
    st = d.ok("status", "--json").json()
    assert st["jobs"] == {"pending": 1, "processing": 0, "completed": 0, "failed": 0, "dead": 0}
    assert st["workers"] == {"configured": 0, "busy": 0}
    assert st["daemon"]["pid"] == d.daemon.pid and st["daemon"]["version"]  # type: ignore[union-attr]
    assert "pending 1" in d.ok("status").out
    assert "nodes" not in st and "nodes" not in d.ok("status").out  # the journal store's status has no nodes


def test_nodes_with_the_journal_store_shows_this_daemon_alone(d: Env) -> None:
    import socket

    d.ok("worker", "start", "-n", "2", "--detach")
    nodes = d.ok("nodes", "--json").json()
    assert len(nodes) == 1 and nodes[0]["name"] == socket.gethostname() and nodes[0]["this"]
    assert nodes[0]["state"] == "up" and nodes[0]["pool"] == 2 and nodes[0]["busy"] == 0 and nodes[0]["version"]
    text = d.ok("nodes").out.splitlines()
    assert text[0].split() == ["NAME", "STATE", "POOL", "BUSY", "HEARTBEAT", "VERSION", "STARTED", "ID"]
    assert text[1].startswith(socket.gethostname() + " *") and " up " in text[1] and len(text) == 2
    r = d.q("nodes", "extra")
    assert r.code == 2 and "unrecognized arguments" in r.err


def test_list_filters_limits_and_streams_pages(d: Env) -> None:
    lines = "".join(json.dumps({"command": "true", "id": f"j{i:04d}"}) + "\n" for i in range(2500))
    d.ok("enqueue", "-", input=lines)
    d.ok("delete", "j0001")
    all_jobs = d.jobs()
    assert len(all_jobs) == 2499 and all_jobs[0]["id"] == "j0000" and all_jobs[1]["id"] == "j0002"
    assert [j["id"] for j in d.ok("list", "--limit", "3", "--json").json()] == ["j0000", "j0002", "j0003"]
    assert d.ok("list", "--state", "dead", "--json").json() == []
    assert d.ok("list", "--state", "dead").out.strip() == "no jobs"
    assert len(d.ok("list").out.splitlines()) == 2500


def test_config_get_set_list_and_persistence(env: Env) -> None:
    env.start_daemon()
    assert env.ok("config", "get", "max-retries").out.strip() == "3"
    assert env.ok("config", "get", "backoff_base").out.strip() == "2"
    assert env.ok("config", "get", "job-timeout").out.strip() == "none"
    env.ok("config", "set", "backoff_base", "1.5")
    env.ok("config", "set", "output-limit", "64K")
    env.ok("config", "set", "max_retries", "0")
    env.ok("config", "set", "backoff_max", "10m")
    listed = env.ok("config", "list", "--json").json()
    assert listed == {"max-retries": "0", "backoff-base": "1.5", "backoff-max": "600", "job-timeout": "none",
                      "output-limit": "64K", "keep-completed": "7d", "keep-dead": "0",
                      "metrics-buckets": "0.01,0.025,0.05,0.1,0.25,0.5,1,2.5,5,10,30,60,120,300,600,1800,3600,"
                                         "7200,21600,86400", "heartbeat": "2"}
    assert "backoff-base" in env.ok("config", "list").out
    env.stop_daemon()
    env.start_daemon()
    assert env.ok("config", "list", "--json").json() == listed


def test_delete(d: Env) -> None:
    job_id = d.enqueue(command="true")
    d.ok("delete", job_id)
    assert d.q("show", job_id).code == 1
    assert d.jobs() == []


def test_dlq_list_and_retry(d: Env) -> None:
    d.ok("config", "set", "max-retries", "0")
    a = d.enqueue(command="exit 4")
    b = d.enqueue(command="exit 5")
    d.ok("worker", "start", "--count", "2", "--detach")
    d.wait_state(a, "dead")
    d.wait_state(b, "dead")
    d.ok("worker", "stop")
    dead = d.ok("dlq", "list", "--json").json()
    assert {j["id"] for j in dead} == {a, b}
    job = d.show(a)
    assert job["exit_code"] == 4 and job["error_message"] == "exited with status 4" and job["attempts"] == 1
    assert a in d.ok("dlq", "list").out
    assert d.ok("dlq", "retry", a).out.split() == [a]
    job = d.show(a)
    assert job["state"] == "pending" and job["attempts"] == 0
    assert job["error_message"] is None and job["next_retry_at"] is None
    assert d.ok("dlq", "retry", "--all").out.split() == [b]
    assert d.ok("dlq", "list", "--json").json() == []


def test_autostart_and_enqueue_before_workers(env: Env) -> None:
    r = env.q("enqueue", json.dumps({"command": "echo started"}), QUEUECTL_NO_AUTOSTART="0")
    assert r.code == 0, r
    job_id = r.out.strip()
    assert env.show(job_id)["state"] == "pending"
    env.ok("worker", "start", "--count", "1", "--detach")
    env.wait_state(job_id, "completed")
    assert env.ok("logs", job_id, "--stdout").out == "started\n"


def test_a_daemon_that_cannot_start_exits_3_with_its_reason(env: Env) -> None:
    os.makedirs(os.path.join(env.home, "journal"))
    with open(os.path.join(env.home, "journal", "MANIFEST"), "wb") as f:
        f.write(b"this is not a manifest")
    r = env.q("status", QUEUECTL_NO_AUTOSTART="0")
    assert r.code == 3, r
    assert r.err.startswith("queuectl: could not start queuectld: cannot start: ") and "damaged manifest" in r.err, r


def test_second_daemon_refuses_and_stale_socket_is_replaced(env: Env) -> None:
    first = env.start_daemon()
    r = subprocess.run([QUEUECTLD, "--home", env.home], capture_output=True, text=True, timeout=10)
    assert r.returncode == 75 and f"another queuectld (pid {first.pid})" in r.stderr, r
    env.stop_daemon(9)  # leaves its socket behind
    assert os.path.exists(os.path.join(env.home, "queuectld.sock"))
    assert env.q("status").code == 3
    env.start_daemon()
    assert env.q("status").code == 0
    assert "stale socket" in env.log()


def test_version_and_help(env: Env) -> None:
    assert env.ok("--version").out.startswith("queuectl ")
    assert "enqueue" in env.ok("--help").out
    assert "--count" in env.ok("worker", "start", "--help").out


def test_socket_and_dirs_are_private(d: Env) -> None:
    sock = os.path.join(d.home, "queuectld.sock")
    assert os.stat(sock).st_mode & 0o777 == 0o600
    assert os.stat(d.home).st_mode & 0o777 == 0o700


def test_garbage_on_the_socket_does_not_hurt_the_daemon(d: Env) -> None:
    import socket
    import struct

    sock_path = os.path.join(d.home, "queuectld.sock")
    payloads = [b"\xff" * 64, struct.pack(">I", 1 << 31), struct.pack(">I", 5) + b"\xc1\xc1\xc1\xc1\xc1",
                struct.pack(">I", 3) + b"\x91\x01", b"GET / HTTP/1.1\r\n\r\n"]
    for payload in payloads:
        with socket.socket(socket.AF_UNIX) as s:
            s.settimeout(5)
            s.connect(sock_path)
            s.sendall(payload)
            s.shutdown(socket.SHUT_WR)
            while s.recv(4096):
                pass
    wait_for(lambda: d.q("status").code == 0, what="the daemon to keep answering")
    assert d.daemon is not None and d.daemon.poll() is None
