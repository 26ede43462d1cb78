"""The enqueuer's environment against a real daemon: each job runs with the environment of the
`queuectl enqueue` that made it (never the daemon's), its `env` and `--env` over it, `--clean-env`
and the Python API with the minimal one; stored once per distinct environment."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from typing import Any

import pytest

from queuectl_client import protocol as p
from queuectld import events as ev
from queuectld.journal import Journal
from tests.conftest import QUEUECTL, Env, wait_for

MINIMAL = {"PATH", "HOME", "USER", "LANG", "SHELL"}
# sh and the daemon set these
SET_BY_JOB = {"PWD", "QUEUECTL_JOB_ID", "QUEUECTL_ATTEMPT", "QUEUECTL_HOME", "QUEUECTL_NODE"}


@pytest.fixture
def d(env: Env) -> Env:
    env.start_daemon("--workers", "1")
    return env


def _seen(env: Env, job_id: str) -> dict[str, str]:
    """The variables the job saw (its `env` output), without those sh and the daemon set."""
    env.wait_state(job_id, "completed")
    out = env.ok("logs", job_id, "--stdout").out
    lines = [ln.split("=", 1) for ln in out.splitlines() if "=" in ln]
    return {k: v for k, v in lines if k not in SET_BY_JOB}


def _caller(env: Env, **extra: str) -> dict[str, str]:
    """An enqueuer's environment: the test's, with `extra`, without FOO."""
    run = {k: v for k, v in env.env.items() if k != "FOO"}
    run.update(extra)
    return run


def _enqueue(env: Env, *args: str, caller: dict[str, str],
             input: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([QUEUECTL, "enqueue", *args], env=caller, input=input, capture_output=True, text=True,
                          timeout=30)


def test_a_job_runs_with_its_enqueuers_environment_not_the_autostarting_clients(env: Env) -> None:
    # The daemon is started by a client whose shell exported FOO=secret.
    r = env.q("worker", "start", "-n", "1", "--detach", QUEUECTL_NO_AUTOSTART="0", FOO="secret")
    assert r.code == 0, r
    caller = _caller(env, BAR="mine", TERM="xterm", DISPLAY=":0", WINDOWID="7", SHLVL="3", _="/usr/bin/queuectl",
                     QUEUECTL_DEBUG="1", QUEUECTL_OTHER="x")
    r = _enqueue(env, '{"command": "env", "id": "other-shell"}', caller=caller)  # the quick path
    assert r.returncode == 0, r
    r = _enqueue(env, "-", caller=caller, input='{"command": "env", "id": "full-path"}\n')
    assert r.returncode == 0, r
    for job_id in ("other-shell", "full-path"):
        seen = _seen(env, job_id)
        assert "FOO" not in seen
        assert seen["BAR"] == "mine" and seen["PATH"] == caller["PATH"]
        assert not {"TERM", "DISPLAY", "WINDOWID", "SHLVL", "_", "QUEUECTL_DEBUG", "QUEUECTL_OTHER"} & seen.keys()
        expected = {k: v for k, v in caller.items() if k not in ("TERM", "DISPLAY", "WINDOWID", "SHLVL", "_")
                    and not k.startswith("QUEUECTL_") and k not in SET_BY_JOB}
        assert seen == expected
        # `queuectl` in a job finds the same daemon, whatever its enqueuer's environment.
    r = _enqueue(env, '{"command": "echo $QUEUECTL_HOME $QUEUECTL_JOB_ID", "id": "home"}', caller=caller)
    assert r.returncode == 0, r
    env.wait_state("home", "completed")
    assert env.ok("logs", "home", "--stdout").out == f"{env.home} home\n"


def test_env_and_dash_dash_env_add_and_override_and_name_alone_copies(d: Env) -> None:
    caller = _caller(d, BAR="mine", COPIED="from-here", OVER="caller")
    job = {"command": "env", "id": "e", "env": {"OVER": "job", "JOBVAR": "j"}}
    r = _enqueue(d, "--env", "FLAG=a=b", "--env", "COPIED", "-e", "JOBVAR=flag", json.dumps(job), caller=caller)
    assert r.returncode == 0, r
    seen = _seen(d, "e")
    assert seen["BAR"] == "mine" and seen["OVER"] == "job" and seen["FLAG"] == "a=b"
    assert seen["COPIED"] == "from-here" and seen["JOBVAR"] == "flag"  # --env wins over the job's env
    shown = d.show("e")["env"]
    assert {k: v for k, v in shown.items() if k in seen} == seen and "PWD" not in seen
    human = d.ok("show", "e").out
    assert f"\nenv:         {len(shown)} variables, below\n" in human and "\n  FLAG=a=b\n" in human
    # `list` never gives the values.
    assert d.jobs()[0]["env"] is None
    assert "a=b" not in d.ok("list").out


def test_clean_env_and_inherit_env_false_keep_only_the_minimal_set_and_the_jobs_env(d: Env) -> None:
    caller = _caller(d, BAR="mine", LANG="C.UTF-8")
    r = _enqueue(d, "--clean-env", "--env", "X=1", '{"command": "env", "id": "clean"}', caller=caller)
    assert r.returncode == 0, r
    r = _enqueue(d, '{"command": "env", "id": "off", "inherit_env": false, "env": {"Y": "2"}}', caller=caller)
    assert r.returncode == 0, r
    minimal = {k: caller[k] for k in MINIMAL if k in caller}
    assert "PATH" in minimal and "LANG" in minimal
    assert _seen(d, "clean") == {**minimal, "X": "1"}
    assert _seen(d, "off") == {**minimal, "Y": "2"}


def test_a_python_api_job_gets_the_minimal_environment_unless_it_passes_one(d: Env) -> None:
    script = """
import os
from queuectl_client import Client
with Client() as c:
    c.enqueue("env", id="api")
    c.enqueue("env", id="api-env", env={"Z": "3"})
    c.enqueue("env", id="api-all", environ=os.environ)
"""
    caller = _caller(d, BAR="mine", TERM="xterm")
    r = subprocess.run([sys.executable, "-c", script], env=caller, capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r
    minimal = {k: caller[k] for k in MINIMAL if k in caller}
    assert _seen(d, "api") == minimal
    assert _seen(d, "api-env") == {**minimal, "Z": "3"}
    everything = _seen(d, "api-all")
    assert everything["BAR"] == "mine" and "TERM" not in everything


def test_rerun_copies_the_originals_environment(d: Env) -> None:
    r = _enqueue(d, "--env", "ONLY=here", '{"command": "env", "id": "orig"}', caller=_caller(d))
    assert r.returncode == 0, r
    d.wait_state("orig", "completed")
    copy = d.ok("rerun", "orig").out.strip()
    assert _seen(d, copy) == _seen(d, "orig")
    assert d.show(copy)["env"] == d.show("orig")["env"]


@pytest.mark.parametrize(("args", "named"), [
    (['{"command": "true", "env": {"A": 1}}'], "env.A must be a string, not int"),
    (['{"command": "true", "env": {"A": "ok", "B": null}}'], "env.B must be a string, not null"),
    (["-"], "line 2: invalid job: env.N must be a string, not bool"),
    (['{"command": "true", "env": {"1A": "v"}}'], "'1A' is not a variable name"),
    (["--env", "NOT_SET_HERE", '{"command": "true"}'], "--env NOT_SET_HERE: NOT_SET_HERE is not set here"),
    (["--env", "a-b=1", '{"command": "true"}'], "--env 'a-b=1': not a variable name"),
    (["--env", "=x", '{"command": "true"}'], "--env '=x': not a variable name"),
    (["--env", "QUEUECTL_HOME=/", '{"command": "true"}'], "--env QUEUECTL_HOME: QUEUECTL_* variables are set"),
    (['{"command": "true", "env": {"QUEUECTL_JOB_ID": "x"}}'], "env.QUEUECTL_JOB_ID: QUEUECTL_* variables are set"),
])
def test_a_bad_environment_exits_2_in_one_line_naming_it_and_adds_nothing(d: Env, args: list[str],
                                                                          named: str) -> None:
    lines = '{"command": "true"}\n{"command": "true", "env": {"N": true}}\n'
    r = _enqueue(d, *args, caller=_caller(d), input=lines)
    assert r.returncode == 2, r
    assert named in r.stderr and r.stderr.count("\n") == 1, r.stderr
    assert "Traceback" not in r.stderr and "internal error" not in r.stderr
    assert d.jobs() == []


def _journal_records(home: str) -> list[Any]:
    return list(Journal(os.path.join(home, "journal")).open())


def test_a_thousand_jobs_sharing_an_environment_store_it_once_and_it_survives_restart(env: Env) -> None:
    env.start_daemon("--workers", "0")
    caller = _caller(env, BAR="mine")
    lines = "".join(json.dumps({"command": "env", "id": f"j{i}"}) + "\n" for i in range(1000))
    r = _enqueue(env, "-", caller=caller, input=lines)
    assert r.returncode == 0, r
    # Another batch from the same environment, and one job with its own: one new environment.
    r = _enqueue(env, "-", caller=caller, input='{"command": "env", "id": "k0"}\n{"command": "env", "id": "k1"}\n')
    assert r.returncode == 0, r
    r = _enqueue(env, '{"command": "env", "id": "own", "env": {"MINE": "1"}}', caller=caller)
    assert r.returncode == 0, r
    first = env.show("j0")["env"]
    assert first["BAR"] == "mine"
    env.stop_daemon()
    records = _journal_records(env.home)
    defined = [e for e in records if isinstance(e, ev.EnvDefined)]
    assert len(defined) == 2 and defined[0].vars == first and defined[1].vars == {**first, "MINE": "1"}
    # Each is written before the first record that adds a job using it.
    assert isinstance(records[records.index(defined[0]) + 1], ev.AddedJobs)
    jobs = [j for e in records if isinstance(e, ev.AddedJobs) for j in e.jobs]
    assert {j.env for j in jobs if j.id != "own"} == {defined[0].key}
    # The journal holds the variables once: in a 0600 file in a 0700 directory.
    journal = os.path.join(env.home, "journal")
    assert stat.S_IMODE(os.stat(journal).st_mode) == 0o700
    for name in os.listdir(journal):
        assert stat.S_IMODE(os.stat(os.path.join(journal, name)).st_mode) == 0o600, name
    env.start_daemon("--workers", "0")
    assert env.show("j999")["env"] == first and env.show("own")["env"]["MINE"] == "1"
    env.ok("edit", "j999", "--priority", "9")  # first in line: it runs next
    env.ok("worker", "start", "-n", "1", "--detach")
    assert _seen(env, "j999")["BAR"] == "mine"


def test_a_journal_directory_made_wider_is_made_0700_again(env: Env) -> None:
    env.start_daemon("--workers", "0")
    env.stop_daemon()
    journal = os.path.join(env.home, "journal")
    os.chmod(journal, 0o755)
    env.start_daemon("--workers", "0")
    assert stat.S_IMODE(os.stat(journal).st_mode) == 0o700


def test_more_distinct_environments_than_a_spawner_keeps_each_reach_their_job(env: Env) -> None:
    from queuectl_client import Client
    from queuectld.runner import ENVS_KEPT

    env.start_daemon("--workers", "0")
    n = ENVS_KEPT + 6
    with Client(env.home, autostart=False) as c:
        # Twice through: the first environments are sent again after the spawners forgot them.
        c.enqueue_many([{"command": 'echo "$N"', "id": f"n{k}-{i}", "env": {"N": str(i)}}
                        for k in range(2) for i in range(n)])
        c.worker_start(1)
        wait_for(lambda: c.status().jobs["completed"] == 2 * n, 30, "the jobs to complete")
        for k in range(2):
            for i in range(n):
                reply = c.request(p.Logs(f"n{k}-{i}"))
                assert isinstance(reply, p.LogsReply)
                with open(reply.stdout) as f:
                    assert f.read() == f"{i}\n", (k, i)


def test_a_job_enqueued_from_the_shell_runs_with_the_shells_environment(d: Env) -> None:
    lines = """enqueue '{"command": "env", "id": "from-shell"}'\nenqueue --env X=1 '{"command": "env", "id": "x"}'\n"""
    r = d.q("shell", input=lines, FROM_THE_SHELL="yes", TERM="dumb")
    assert r.code == 0, r
    seen = _seen(d, "from-shell")
    assert seen["FROM_THE_SHELL"] == "yes" and "TERM" not in seen
    assert _seen(d, "x")["X"] == "1"


def test_show_quotes_a_value_with_a_newline_so_it_cannot_pass_for_another_variable(d: Env) -> None:
    job_id = _enqueue(d, "--env", "X=v\n  FAKE=1", '{"command": "true"}', caller=_caller(d)).stdout.strip()
    shown = subprocess.run([QUEUECTL, "show", job_id], capture_output=True, text=True, env=d.env).stdout
    assert '  X="v\\n  FAKE=1"\n' in shown and "\n  FAKE=1\n" not in shown, shown


def test_a_caller_environment_past_4096_variables_is_refused_not_cut(d: Env) -> None:
    caller = _caller(d, **{f"V_{i}": "v" for i in range(5000)})
    for args in (['{"command": "true"}'], ["-"]):
        r = _enqueue(d, *args, caller=caller, input='{"command": "true"}\n')
        assert r.returncode == 2 and r.stderr.count("\n") == 1, r
        assert "4,096" in r.stderr and "--clean-env" in r.stderr and "Traceback" not in r.stderr, r.stderr
    r = subprocess.run([QUEUECTL, "schedule", "add", "many", "@daily", '{"command": "true"}'], env=caller,
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 2 and "4,096" in r.stderr and "internal error" not in r.stderr, r.stderr
    assert d.jobs() == []
    # With a clean environment, what it needs named, it goes in.
    r = _enqueue(d, "--clean-env", "--env", "V_7", '{"command": "true"}', caller=caller)
    assert r.returncode == 0, r


def test_an_environment_too_big_for_one_exec_is_refused_at_enqueue(d: Env) -> None:
    env = {f"BIG{i}": "x" * 131_000 for i in range(20)}  # each value fits, together they do not
    r = _enqueue(d, "-", caller=_caller(d), input=json.dumps({"command": "true", "env": env}) + "\n")
    assert r.returncode == 2 and r.stderr.count("\n") == 1, r
    assert "environment" in r.stderr and "bytes" in r.stderr, r.stderr
    assert d.jobs() == []


def test_a_job_learns_the_name_of_the_node_that_runs_it_whatever_its_enqueuers_environment(d: Env) -> None:
    import socket

    caller = _caller(d, QUEUECTL_NODE="not-this-one")
    r = _enqueue(d, '{"command": "echo node=$QUEUECTL_NODE", "id": "named"}', caller=caller)
    assert r.returncode == 0, r
    d.wait_state("named", "completed")
    assert d.ok("logs", "named", "--stdout").out == f"node={socket.gethostname()}\n"
