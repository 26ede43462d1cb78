"""Everyday commands: logs --follow/--tail, wait, completions, colours, --json, help."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import threading
from collections.abc import Iterator

import pytest

from queuectl_client.parser import SUBCOMMANDS
from tests.conftest import BIN, QUEUECTL, Env, Terminal, bash_complete, wait_for

needs_tmux = pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed")


@pytest.fixture
def d(env: Env) -> Env:
    env.start_daemon()
    return env


class Reader:
    """Collects a stream's output in a thread, so a test can wait for what has arrived so far."""

    def __init__(self, stream: object) -> None:
        self.data = ""
        self.thread = threading.Thread(target=self._run, args=(stream,), daemon=True)
        self.thread.start()

    def _run(self, stream: object) -> None:
        for line in stream:  # type: ignore[attr-defined]
            self.data += line


@pytest.fixture
def follow(d: Env) -> Iterator[list[subprocess.Popen[str]]]:
    procs: list[subprocess.Popen[str]] = []
    yield procs
    for p in procs:
        if p.poll() is None:
            p.kill()
            p.wait()


def test_logs_follow_streams_a_running_job_live_until_it_ends(
    d: Env, tmp_path: os.PathLike[str], follow: list[subprocess.Popen[str]]
) -> None:
    go = os.path.join(str(tmp_path), "go")
    job_id = d.enqueue(command=f"echo one; while [ ! -e {go} ]; do sleep 0.02; done; echo two >&2; echo three")
    # Started before any worker: it waits for the job to start, then follows it.
    p = subprocess.Popen([QUEUECTL, "logs", job_id, "--follow"], env=d.env, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
    follow.append(p)
    out, err = Reader(p.stdout), Reader(p.stderr)
    d.ok("worker", "start", "--count", "1", "--detach")
    wait_for(lambda: out.data == "one\n", what="the first line while the job still runs")
    assert p.poll() is None and d.show(job_id)["state"] == "processing"
    open(go, "w").close()
    assert p.wait(15) == 0
    out.thread.join(5)
    err.thread.join(5)
    assert out.data == "one\nthree\n" and err.data == "two\n"


def test_logs_follow_one_stream_as_json_and_tail(d: Env, tmp_path: os.PathLike[str]) -> None:
    d.ok("worker", "start", "--count", "1", "--detach")
    job_id = d.enqueue(command="for i in 1 2 3 4 5 6; do echo line $i; done; echo oops >&2")
    d.wait_state(job_id, "completed")
    assert d.ok("logs", job_id, "--stdout", "--tail", "2").out == "line 5\nline 6\n"
    assert d.ok("logs", job_id, "--tail", "1").out == "==> stdout <==\nline 6\n==> stderr <==\noops\n"
    assert d.ok("logs", job_id, "--stdout", "--tail", "0").out == ""
    # A finished job: --follow prints what there is and returns.
    assert d.ok("logs", job_id, "--follow", "--stderr").out == "oops\n"
    assert d.ok("logs", job_id, "--follow", "--tail", "1", "--stdout").out == "line 6\n"
    chunks = [json.loads(ln) for ln in d.ok("logs", job_id, "--follow", "--json").out.splitlines()]
    assert {c["stream"] for c in chunks} == {"stdout", "stderr"}
    assert "".join(c["text"] for c in chunks if c["stream"] == "stdout").endswith("line 6\n")
    whole = d.ok("logs", job_id, "--json").json()
    assert whole["id"] == job_id and whole["stderr"] == "oops\n" and whole["stdout"].count("\n") == 6
    r = d.q("logs", job_id, "--tail", "-1")
    assert r.code == 2 and r.err.count("\n") == 1


def test_a_retry_does_not_show_the_previous_runs_output(d: Env, tmp_path: os.PathLike[str]) -> None:
    marker = os.path.join(str(tmp_path), "ran")
    d.ok("config", "set", "backoff-base", "1.05")
    d.ok("worker", "start", "--count", "1", "--detach")
    job_id = d.enqueue(command=f"if [ -e {marker} ]; then exit 0; fi; touch {marker}; echo first run; exit 1")
    d.wait_state(job_id, "completed")
    assert d.ok("logs", job_id, "--stdout").out == ""


def test_wait_exit_codes_json_and_quiet_when_piped(d: Env) -> None:
    d.ok("config", "set", "backoff-base", "1.05")
    ok = d.enqueue(command="true")
    bad = d.enqueue(command="exit 3", max_retries=1)
    later = d.enqueue(command="true", delay=3600)
    d.ok("worker", "start", "--count", "2", "--detach")
    r = d.q("wait", ok)
    assert r.code == 0 and r.out == "" and r.err == ""  # piped: nothing extra
    r = d.q("wait", ok, bad, "--json")
    assert r.code == 1, r
    assert {j["id"]: j["state"] for j in r.json()} == {ok: "completed", bad: "dead"}
    r = d.q("wait", later, "--timeout", "0.3")
    assert r.code == 124 and "timed out" in r.err
    r = d.q("wait", "--state", "pending", "--timeout", "0.3", "--json")
    assert r.code == 124 and r.json() == [{"id": later, "state": "pending"}]
    r = d.q("wait", "nope")
    assert r.code == 1 and "nope" in r.err
    d.ok("delete", later)
    assert d.q("wait").code == 0  # nothing left that is not final


def test_wait_for_many_jobs_follows_them_all(d: Env, tmp_path: os.PathLike[str]) -> None:
    go = os.path.join(str(tmp_path), "go")
    job = json.dumps({"command": f"while [ ! -e {go} ]; do sleep 0.02; done"}) + "\n"
    ids = d.ok("enqueue", "-", input=job * 60).out.split()
    d.ok("worker", "start", "--count", "4", "--detach")
    # Without ids: every job not final now.  The jobs wait for the gate, so it times out with all 60.
    r = d.q("wait", "--json", "--timeout", "0.5")
    assert r.code == 124, r
    states = {j["id"]: j["state"] for j in r.json()}
    assert sorted(states) == sorted(ids) and set(states.values()) == {"pending", "processing"}
    open(go, "w").close()
    r = d.q("wait", *ids, "--json", timeout=60)
    assert r.code == 0, r
    assert {j["id"]: j["state"] for j in r.json()} == {i: "completed" for i in ids}


@needs_tmux
def test_wait_draws_a_progress_bar_on_a_terminal(d: Env, tmp_path: os.PathLike[str]) -> None:
    go = os.path.join(str(tmp_path), "go")
    for _ in range(3):
        d.enqueue(command=f"while [ ! -e {go} ]; do sleep 0.02; done")
    d.enqueue(command="true")
    d.ok("worker", "start", "--count", "1", "--detach")
    term = Terminal(os.path.join(str(tmp_path), "tmux.sock"), d.env, "queuectl wait; echo exit=$?; sleep 60")
    try:
        term.wait("/4")
        assert "[" in term.screen() and "processing 1" in term.screen()
        open(go, "w").close()
        term.wait("4/4")
        term.wait("exit=0")
        assert "completed 4" in term.screen()
    finally:
        term.close()


@needs_tmux
def test_colours_only_on_a_terminal_and_never_with_no_color(d: Env, tmp_path: os.PathLike[str]) -> None:
    d.ok("worker", "start", "--count", "1", "--detach")
    d.wait_state(d.enqueue(command="true"), "completed")
    assert "\x1b[" not in d.ok("list").out and "\x1b[" not in d.ok("status").out  # piped
    term = Terminal(os.path.join(str(tmp_path), "a.sock"), d.env, "sh -c 'queuectl list; queuectl status; sleep 60'")
    try:
        term.wait("completed")
        assert "\x1b[32mcompleted" in term.screen(escapes=True)
    finally:
        term.close()
    env = dict(d.env, NO_COLOR="1")
    term = Terminal(os.path.join(str(tmp_path), "b.sock"), env, "sh -c 'queuectl list; queuectl status; sleep 60'")
    try:
        term.wait("workers")
        assert "\x1b[32m" not in term.screen(escapes=True)
    finally:
        term.close()


def test_completions_for_bash_complete_commands_flags_states_and_ids(d: Env) -> None:
    d.enqueue(command="true", id="job-one")
    d.enqueue(command="exit 1", id="job-two", max_retries=0)
    d.ok("worker", "start", "--count", "1", "--detach")
    d.wait_state("job-two", "dead")
    script = d.ok("completions", "bash").out

    def complete(*words: str) -> list[str]:
        return bash_complete(d, script, *words)

    assert complete("queuectl", "st") == ["stats", "status"]
    assert complete("queuectl", "stats", "--group", "") == ["default"]
    assert complete("queuectl", "dlq", "r") == ["retry"]
    assert complete("queuectl", "show", "job-") == ["job-one", "job-two"]
    assert complete("queuectl", "dlq", "retry", "") == ["job-two"]
    assert complete("queuectl", "list", "--state", "d") == ["dead"]
    assert complete("queuectl", "logs", "x", "--f") == ["--follow"]
    assert "max-retries" in complete("queuectl", "config", "set", "")
    assert complete("queuectl", "completions", "z") == ["zsh"]


@pytest.mark.parametrize("shell", ["zsh", "fish"])
def test_completion_scripts_for_zsh_and_fish_parse(env: Env, shell: str) -> None:
    script = env.ok("completions", shell).out
    for name in SUBCOMMANDS:
        assert name in script
    if shutil.which(shell) is None:
        pytest.skip(f"{shell} is not installed to parse the script")
    check = [shell, "-n"] if shell == "zsh" else [shell, "--no-execute"]
    proc = subprocess.run([*check], input=script, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


@pytest.mark.skipif(shutil.which("fish") is None, reason="fish is not installed")
def test_completions_for_fish_complete_actions_ids_and_keys(d: Env, tmp_path: os.PathLike[str]) -> None:
    d.enqueue(command="true", id="job-one")
    path = os.path.join(str(tmp_path), "queuectl.fish")
    with open(path, "w") as f:
        f.write(d.ok("completions", "fish").out)

    def complete(line: str) -> list[str]:
        proc = subprocess.run(["fish", "--no-config", "-c", f"source {path}; complete -C {json.dumps(line)}"],
                              env=dict(d.env, PATH=BIN + ":" + os.environ["PATH"]), capture_output=True, text=True)
        assert proc.stderr == "", proc.stderr
        return sorted(ln.split("\t")[0] for ln in proc.stdout.splitlines())

    assert complete("queuectl dlq r") == ["retry"]
    assert complete("queuectl show job-") == ["job-one"]
    assert "max-retries" in complete("queuectl config get ")
    assert complete("queuectl list --state d") == ["dead"]


def test_every_subcommand_has_help_with_examples_and_json_where_it_prints(env: Env) -> None:
    r = env.ok("--version")
    assert r.out.startswith("queuectl ")
    for name in SUBCOMMANDS:
        r = env.ok(name, "--help")
        assert "examples:" in r.out and "queuectl " + name in r.out, name
    for args in (["worker", "start"], ["dlq", "list"], ["dlq", "retry"], ["config", "get"], ["config", "list"]):
        assert "--json" in env.ok(*args, "--help").out, args


def test_json_output_of_enqueue_retry_and_config_get(d: Env) -> None:
    ids = [j["id"] for j in d.ok("enqueue", '{"command": "true", "delay": 3600}', "--json").json()]
    assert len(ids) == 1 and d.show(ids[0])["state"] == "pending"
    d.ok("config", "set", "max-retries", "0")
    assert d.ok("config", "get", "max-retries", "--json").json() == {"max-retries": "0"}
    job_id = d.enqueue(command="exit 1")
    d.ok("worker", "start", "--count", "1", "--detach")
    d.wait_state(job_id, "dead")
    d.ok("worker", "stop")
    assert d.ok("dlq", "retry", job_id, "--json").json() == [job_id]
    assert d.ok("list", "--quiet", "--state", "pending").out.split() == [ids[0], job_id]
