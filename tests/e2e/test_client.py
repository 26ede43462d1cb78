"""The client's own behaviour against a real daemon: times, homes, limits, terminals, messages."""

from __future__ import annotations

import inspect
import json
import os
import pty
import re
import select
import subprocess
import time
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from queuectl_client import Client, RequestFailed
from queuectl_client import protocol as p
from tests.conftest import QUEUECTL, Env, wait_for

ISO = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


@pytest.fixture
def d(env: Env) -> Env:
    env.start_daemon()
    return env


def _ts(iso: str) -> float:
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


def _sh(env: Env, script: str, **extra: str) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(["sh", "-c", script], env=dict(env.env, PATH=os.path.dirname(QUEUECTL) + ":"
                                                        + os.environ["PATH"], **extra),
                          capture_output=True, text=True, timeout=30)
    assert "Traceback" not in proc.stderr, proc.stderr
    return proc


# --- run_at -----------------------------------------------------------------------


def test_a_run_at_without_a_zone_is_the_callers_local_time(env: Env) -> None:
    env.env["TZ"] = "UTC"  # the daemon's zone
    env.start_daemon()
    soon = datetime.now(ZoneInfo("Asia/Tokyo")) + timedelta(seconds=60)
    local = soon.strftime("%Y-%m-%dT%H:%M:%S")
    job = json.dumps({"command": "true", "run_at": local})
    quick = env.q("enqueue", job, TZ="Asia/Tokyo")  # an argument: the quick path hands it to the full one
    full = env.q("enqueue", "-", input=job + "\n", TZ="Asia/Tokyo")
    for r in (quick, full):
        assert r.code == 0, r
        run_at = _ts(env.show(r.out.strip())["run_at"])
        assert abs(run_at - soon.replace(microsecond=0).timestamp()) < 1, (local, env.show(r.out.strip()))
    table = env.ok("list").out
    # A minute from the enqueue, less however long a loaded machine took to get here.
    assert re.search(r"runs in (1m|60s|[1-5]\ds)\b", table), table


@pytest.fixture
def tokyo(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """This process in Asia/Tokyo (UTC+9), as the CLI is with TZ set."""
    monkeypatch.setenv("TZ", "Asia/Tokyo")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


def test_a_run_at_without_a_zone_in_the_last_hours_of_9999_is_taken(d: Env, tokyo: None) -> None:
    last = "9999-12-31T23:59:59"  # 9999-12-31T14:59:59Z: east of UTC, a naive time's timestamp() overflows
    for r in (d.q("enqueue", json.dumps({"command": "x", "run_at": last, "id": "arg"}), TZ="Asia/Tokyo"),
              d.q("enqueue", "-", input=json.dumps({"command": "x", "run_at": last, "id": "line"}) + "\n",
                  TZ="Asia/Tokyo")):
        assert r.code == 0, r
    with Client(d.home, autostart=False) as c:
        c.enqueue("x", id="api", run_at=datetime(9999, 12, 31, 23, 59, 59, 500_000))
        c.enqueue_many([{"command": "x", "id": "api-dict", "run_at": datetime(9999, 12, 31, 23, 59, 59)}])
    for job_id in ("arg", "line", "api", "api-dict"):
        assert d.show(job_id)["run_at"].startswith("9999-12-31T14:59:59."), d.show(job_id)
    # Past the year 9999 in UTC is still refused, in words.
    r = d.q("enqueue", json.dumps({"command": "x", "run_at": last}), TZ="America/New_York")
    assert r.code == 2 and "run_at must be a time from 1970 to 9999" in r.err, r


def test_wait_for_waits_without_a_limit_by_default() -> None:
    assert inspect.signature(Client.wait_for).parameters["timeout"].default is None


# --- worker -----------------------------------------------------------------------


@pytest.mark.parametrize("extra", [[], ["--detach"]])
def test_worker_start_with_no_workers_points_to_worker_stop(d: Env, extra: list[str]) -> None:
    r = d.q("worker", "start", "--count", "0", *extra)
    assert r.code == 2 and "queuectl worker stop" in r.err and r.err.count("\n") == 1, r


# --- config -----------------------------------------------------------------------


def test_config_get_without_a_key_prints_every_setting(d: Env) -> None:
    assert d.ok("config", "get").out == d.ok("config", "list").out
    assert d.ok("config", "get", "--json").json() == d.ok("config", "list", "--json").json()
    assert set(d.ok("config", "get", "--json").json()) == {"max-retries", "backoff-base", "backoff-max",
                                                             "job-timeout", "output-limit", "keep-completed",
                                                             "keep-dead", "metrics-buckets", "heartbeat"}


# --- enqueue ----------------------------------------------------------------------


def test_enqueue_json_prints_the_created_jobs_as_show_does(d: Env) -> None:
    one = d.ok("enqueue", '{"command": "true", "id": "one", "delay": 3600}', "--json").json()
    assert one[0].pop("created") is True and one == [{**d.show("one"), "env": None}]  # only show gives env
    lines = '{"command": "echo a"}\n{"command": "echo b", "priority": 4}\n'
    batch = d.ok("enqueue", "-", "--json", input=lines).json()
    assert [j["command"] for j in batch] == ["echo a", "echo b"] and batch[1]["priority"] == 4
    for job in batch:
        assert job.pop("created") is True
        assert job == {**d.show(job["id"]), "env": None}
        assert ISO.match(job["created_at"]) and job["state"] == "pending"


def test_the_daemon_replies_with_the_created_jobs_when_asked(d: Env) -> None:
    with Client(d.home, autostart=False) as c:
        reply = c.request(p.Enqueue([p.JobSpec(command="true", id="w1")], want_jobs=True))
    assert isinstance(reply, p.Enqueued) and [j.id for j in reply.jobs] == ["w1"]


def test_a_job_that_is_not_utf8_is_refused_with_one_line(d: Env) -> None:
    bad = b'{"command": "echo \xff"}'
    for args, stdin in ((["enqueue", bad.decode(errors="surrogateescape")], None), (["enqueue", "-"], bad + b"\n")):
        proc = subprocess.run([QUEUECTL, *args], input=stdin, env=d.env, capture_output=True)
        err = proc.stderr.decode()
        assert proc.returncode == 2 and err.count("\n") == 1 and "UTF-8" in err, (args, err)
    assert d.jobs() == []


FIELD_ERRORS = [
    ({"command": "a\u0000b"}, "command must not be blank or contain a NUL byte (at $.command)"),
    ({"command": "   "}, "command must not be blank or contain a NUL byte (at $.command)"),
    ({"command": "x", "cwd": "/tmp/a\u0000"}, "cwd must be an absolute path"),
    ({"command": "x" * (128 * 1024 + 1)}, "command must be at most 131,071 characters"),
    ({"command": "x", "id": "-x"}, "id must be 1 to 64 letters, digits"),
    ({"command": "x", "priority": 2**40}, "priority must be at most 2,147,483,647 (at $.priority)"),
    ({"command": "x", "priority": -(2**40)}, "priority must be at least -2,147,483,647 (at $.priority)"),
    ({"command": "x", "delay": 1e18}, "delay must be at most 3,155,760,000 (at $.delay)"),
    ({"command": "x", "timeout": 0}, "timeout must be greater than 0 (at $.timeout)"),
    ({"command": "x", "max_retries": 1e30}, "$.max_retries"),
    ({"command": "x", "state": "completed"}, 'state must be "pending"'),
    ({"command": "x", "attempts": 1}, "attempts must be 0"),
    ({"command": "x", "worker": 2}, "worker must be null (a new job's value) or left out (at $.worker)"),
]


@pytest.mark.parametrize(("job", "words"), FIELD_ERRORS)
def test_invalid_fields_are_named_in_plain_words(d: Env, job: dict[str, object], words: str) -> None:
    text = json.dumps(job)
    # As an argument (the quick path, which leaves the message to the full one) when it fits in one.
    tries = [["enqueue", "-"]] + ([["enqueue", text]] if len(text) < 100_000 else [])
    for r in (d.q(*args, input=text + "\n") for args in tries):
        assert r.code == 2 and words in r.err and r.err.count("\n") == 1, r
        assert "regex" not in r.err and "(?=" not in r.err
        field = re.search(r"\$\.(\w+)", words)
        assert field is None or f"$.{field.group(1)}" in r.err
    assert d.jobs() == []


@pytest.mark.parametrize(("job", "words"), FIELD_ERRORS)
def test_the_python_api_names_invalid_fields_in_the_same_words(d: Env, job: dict[str, Any], words: str) -> None:
    import msgspec

    at = words.replace("$.", "$[1].")  # the API names the job by its place in the batch
    with Client(d.home, autostart=False) as c:
        for call in (lambda: c.enqueue_many([{"command": "true"}, job]),
                     lambda: c.enqueue_many([p.JobSpec(command="true"), p.JobSpec(**job)])):
            with pytest.raises(msgspec.ValidationError) as e:
                call()
            assert isinstance(e.value, ValueError)
            assert at in str(e.value) and "regex" not in str(e.value) and "(?=" not in str(e.value), e.value
        fields = {k: v for k, v in job.items() if k != "command"}
        with pytest.raises(msgspec.ValidationError) as e:
            c.enqueue(job["command"], **fields)
        assert words.replace("$.", "$[0].") in str(e.value), e.value
    assert d.jobs() == []


def test_a_null_field_in_the_python_api_is_not_given(d: Env) -> None:
    d.ok("config", "set", "job-timeout", "90")
    with Client(d.home, autostart=False) as c:
        job_id = c.enqueue("true", timeout=None, max_retries=None, run_at=None, delay=None, cwd=None)
    job = d.show(job_id)
    assert job["timeout"] == 90 and job["max_retries"] == 3


def test_a_job_object_of_the_job_model_enqueues_as_it_is(d: Env) -> None:
    seed = {"id": "job1", "command": "echo hi", "state": "pending", "attempts": 0, "max_retries": 3,
            "created_at": "2025-11-04T10:30:00Z", "updated_at": "2025-11-04T10:30:00Z"}
    assert d.ok("enqueue", json.dumps(seed)).out == "job1\n"
    seed["id"] = "job2"
    assert d.ok("enqueue", "-", input=json.dumps(seed) + "\n").out == "job2\n"
    job = d.show("job1")
    assert job["state"] == "pending" and job["max_retries"] == 3 and job["created_at"].startswith("20")


def test_a_job_too_big_for_a_frame_is_refused_before_anything_is_sent(d: Env, tmp_path: os.PathLike[str]) -> None:
    path = os.path.join(str(tmp_path), "big.jsonl")
    with open(path, "w") as f:
        f.write(json.dumps({"command": "true", "created_at": "x" * (17 << 20)}) + "\n")
    r = d.q("enqueue", "--file", path)
    assert r.code == 2 and r.err.count("\n") == 1 and f"{p.MAX_FRAME:,}" in r.err and "frame" in r.err, r
    assert "Broken pipe" not in r.err
    # Through the API, on one connection: a batch with one such job sends nothing, and the connection goes on.
    with Client(d.home, autostart=False) as c:
        jobs = [{"command": "true", "id": "small"}, {"command": "true", "created_at": "x" * (17 << 20)}]
        with pytest.raises(RequestFailed) as e:
            c.enqueue_many(jobs, batch=1)
        assert e.value.exit_code == 2 and "job 2" in e.value.message
        assert c.enqueue("true", id="after") == "after"
    assert [j["id"] for j in d.jobs()] == ["after"]


def test_a_deleted_current_directory_is_refused_unless_the_job_names_one(d: Env, tmp_path: os.PathLike[str]) -> None:
    gone = os.path.join(str(tmp_path), "gone")
    os.mkdir(gone)
    job = json.dumps({"command": "pwd"})
    for how in (f"queuectl enqueue '{job}'", f"echo '{job}' | queuectl enqueue -"):
        r = _sh(d, f"mkdir -p {gone} && cd {gone} && rmdir {gone} && {how}")
        assert r.returncode == 2 and "current directory no longer exists" in r.stderr, (how, r)
        assert r.stderr.count("\n") == 1
    named = json.dumps({"command": "pwd", "cwd": "/"})
    r = _sh(d, f"mkdir -p {gone} && cd {gone} && rmdir {gone} && queuectl enqueue '{named}'")
    assert r.returncode == 0, r
    assert [j["cwd"] for j in d.jobs()] == ["/"]


# --- homes ------------------------------------------------------------------------


def test_a_relative_home_is_made_absolute_for_the_daemon_and_its_jobs(env: Env, tmp_path: os.PathLike[str]) -> None:
    base = str(tmp_path)
    rel = os.path.relpath(env.home, base)
    run = dict(env.env, QUEUECTL_HOME=rel)
    del run["QUEUECTL_NO_AUTOSTART"]
    r = subprocess.run([QUEUECTL, "enqueue", '{"command": "echo $QUEUECTL_HOME", "id": "where"}'], cwd=base,
                       env=run, capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r
    r = subprocess.run([QUEUECTL, "worker", "start", "--count", "1", "--detach"], cwd=base, env=run,
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r
    env.wait_state("where", "completed")
    assert env.ok("logs", "where", "--stdout").out == env.home + "\n"
    with open(os.path.join(env.home, "queuectld.lock")) as f:
        pid = int(f.read().split()[0])
    with open(f"/proc/{pid}/cmdline", "rb") as f:
        assert f.read().split(b"\0")[-3:-1] == [b"--home", env.home.encode()]


@pytest.mark.parametrize("where", ["under-a-file", "log-is-a-directory", "proc"])
def test_a_home_that_cannot_be_written_exits_3_naming_the_path(env: Env, where: str) -> None:
    if where == "under-a-file":
        blocker = os.path.join(env.home, "file")
        open(blocker, "w").close()
        home, named = os.path.join(blocker, "home"), blocker
    elif where == "log-is-a-directory":
        home = env.home
        os.mkdir(os.path.join(home, "queuectld.log"))
        named = os.path.join(home, "queuectld.log")
    else:
        home = named = "/proc/queuectl-home"
    r = env.q("status", QUEUECTL_HOME=home, QUEUECTL_NO_AUTOSTART="0")
    assert r.code == 3 and named in r.err and r.err.count("\n") == 1, r
    assert "internal error" not in r.err


# --- the terminal -----------------------------------------------------------------


def _on_a_terminal(env: Env, *args: str) -> bytes:
    """The command's output as a terminal shows it: stdout and stderr on a pty."""
    master, slave = pty.openpty()
    proc = subprocess.Popen([QUEUECTL, *args], stdin=subprocess.DEVNULL, stdout=slave, stderr=slave, env=env.env)
    os.close(slave)
    out = b""
    try:
        while True:
            ready, _, _ = select.select([master], [], [], 10)
            if not ready:
                break
            try:
                chunk = os.read(master, 65536)
            except OSError:  # EIO: the process closed the terminal
                break
            if not chunk:
                break
            out += chunk
    finally:
        os.close(master)
        proc.wait(10)
    return out


def test_control_characters_in_a_command_reach_a_terminal_escaped(d: Env) -> None:
    command = "echo \x1b[41mRED\x1b]0;title\x07 \x9b2J"
    d.enqueue(command=command, id="esc")
    for args in (["list"], ["show", "esc"]):
        screen = _on_a_terminal(d, *args)
        assert b"\x1b[41m" not in screen and b"\x07" not in screen and "\x9b".encode() not in screen, screen
        assert b"\\x1b[41mRED\\x1b]0;title\\x07" in screen and b"\\x9b2J" in screen, screen
    # Piped and as JSON, the command is as given.
    assert command in d.ok("list").out and command in d.ok("show", "esc").out
    assert d.show("esc")["command"] == command


def test_bidi_controls_in_a_command_reach_a_terminal_escaped(d: Env) -> None:
    command = "echo safe #\u202e\u2066 ;hs.kcatta\u2069\u202c"
    d.enqueue(command=command, id="bidi", delay=3600)
    d.enqueue(command="true", id="other", delay=3600, cwd="/tmp/\u202edir")
    for args in (["list"], ["show", "bidi"], ["show", "other"]):
        screen = _on_a_terminal(d, *args).decode()
        assert not any(c in screen for c in "\u202e\u2066\u2069\u202c"), (args, screen)
    assert "#\\u202e\\u2066 ;hs.kcatta\\u2069\\u202c" in _on_a_terminal(d, "list").decode()
    assert "/tmp/\\u202edir" in _on_a_terminal(d, "show", "other").decode()
    assert command in d.ok("list").out and d.show("bidi")["command"] == command


# --- top --json ---------------------------------------------------------------------


def test_top_json_holds_status_json_and_the_running_jobs(d: Env, tmp_path: os.PathLike[str]) -> None:
    go = os.path.join(str(tmp_path), "go")
    job_id = d.enqueue(command=f"while [ ! -e {go} ]; do sleep 0.02; done")
    d.ok("worker", "start", "--count", "1", "--detach")
    d.wait_state(job_id, "processing")
    top = d.ok("top", "--json").json()
    status = d.ok("status", "--json").json()
    open(go, "w").close()
    assert set(top) == {"status", "running"}
    assert top["status"].keys() == status.keys() and top["status"]["jobs"] == status["jobs"]
    assert top["status"]["daemon"] == status["daemon"] and top["status"]["workers"] == status["workers"]
    assert "type" not in json.dumps(top)
    [running] = top["running"]
    assert running["id"] == job_id and ISO.match(running["started_at"]) and running["attempts"] == 1


# --- a daemon that is starting or stopping ------------------------------------------


def _hold_lock(home: str, text: str) -> int:
    """Take the home's lock as a daemon does, with `text` in it; returns the descriptor holding it."""
    import fcntl

    fd = os.open(os.path.join(home, "queuectld.lock"), os.O_RDWR | os.O_CREAT, 0o600)
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    os.ftruncate(fd, 0)
    os.write(fd, text.encode())
    return fd


def test_autostart_says_so_when_the_daemon_holding_the_home_is_stopping(env: Env) -> None:
    holder = subprocess.Popen(["sleep", "60"])
    fd = _hold_lock(env.home, f"{holder.pid} stopping\n")
    try:
        t0 = time.monotonic()
        r = env.q("status", QUEUECTL_NO_AUTOSTART="0")
        assert r.code == 3 and r.err == f"queuectl: queuectld (pid {holder.pid}) is stopping\n", r
        assert time.monotonic() - t0 < 5
        assert env.log().count("another queuectld") == 1  # one daemon spawned, not a loop of them
    finally:
        os.close(fd)
        holder.kill()
        holder.wait()


def test_autostart_waits_for_a_starting_daemon_and_spawns_again_only_once_it_is_gone(env: Env) -> None:
    holder = subprocess.Popen(["sleep", "60"])
    fd = _hold_lock(env.home, f"{holder.pid}\n")
    client = subprocess.Popen([QUEUECTL, "status"], env=dict(env.env, QUEUECTL_NO_AUTOSTART="0"),
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_for(lambda: "another queuectld" in env.log(), what="the first spawn to find the lock held")
        time.sleep(1)  # the client waits for the holder, spawning nothing more meanwhile
        assert env.log().count("another queuectld") == 1 and client.poll() is None
        os.close(fd)
        holder.kill()
        holder.wait()
        out, err = client.communicate(timeout=20)
        assert client.returncode == 0 and "daemon   pid" in out, err
        assert env.log().count("another queuectld") == 1
    finally:
        if client.poll() is None:
            client.kill()
        if holder.poll() is None:
            holder.kill()
            holder.wait()


def test_status_shows_a_daemon_that_is_stopping(env: Env, tmp_path: os.PathLike[str]) -> None:
    import signal

    go = os.path.join(str(tmp_path), "go")
    env.start_daemon("--grace", "30")
    job_id = env.enqueue(command=f"while [ ! -e {go} ]; do sleep 0.02; done")
    env.ok("worker", "start", "--count", "1", "--detach")
    env.wait_state(job_id, "processing")
    assert env.daemon is not None
    env.daemon.send_signal(signal.SIGTERM)
    try:
        st = wait_for(lambda: (r := env.q("status", "--json")).code == 0 and r.json()["daemon"]["stopping"]
                      and r.json(), 5, "status to show the daemon stopping")
        assert st["daemon"]["pid"] == env.daemon.pid
        assert "stopping" in env.ok("status").out.splitlines()[-1]
        with open(os.path.join(env.home, "queuectld.lock")) as f:
            assert f.read() == f"{env.daemon.pid} stopping\n"
        r = env.q("status", QUEUECTL_NO_AUTOSTART="0")
        assert r.code == 0 or r.err == f"queuectl: queuectld (pid {env.daemon.pid}) is stopping\n", r
    finally:
        open(go, "w").close()
