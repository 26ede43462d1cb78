"""`queuectld --allow-commands FILE` against a real daemon: what it refuses, what it records, SIGHUP,
and a file it cannot use."""

from __future__ import annotations

import json
import os
import signal
import subprocess

import pytest

from queuectl_client import Client, RequestFailed
from tests.conftest import QUEUECTLD, Env, wait_for

REFUSED = "queuectl: command not allowed by this daemon's policy: "


def write(path: str, text: str) -> str:
    with open(path, "w") as f:
        f.write(text)
    return path


def test_a_command_no_pattern_matches_is_refused_with_its_whole_batch_and_recorded(env: Env) -> None:
    policy = write(os.path.join(env.home, "allow"), "# what this queue runs\necho *\nre:sleep [0-9]+\n")
    env.start_daemon("--allow-commands", policy, "--workers", "0")
    assert env.enqueue(id="ok", command="echo hi") == "ok"
    assert env.ok("enqueue", '{"command": "sleep 10"}').out.strip()
    r = env.q("enqueue", json.dumps({"command": "rm -rf ~/important"}))  # the quick path
    assert (r.code, r.out, r.err) == (1, "", REFUSED + "rm -rf ~/important\n")
    r = env.q("enqueue", "-", input='{"id": "a", "command": "echo a"}\n{"id": "b", "command": "sleep 1; reboot"}\n')
    assert (r.code, r.err) == (1, REFUSED + "sleep 1; reboot (in a batch of 2 jobs)\n"), r
    assert env.q("show", "a").code == 1  # nothing of the batch was enqueued
    assert r"re:sleep [0-9]+" not in r.err
    r = env.q("rerun", "ok")
    assert r.code == 0  # echo is allowed: a copy of it too
    r = env.q("schedule", "add", "wipe", "@daily", '{"command": "shred /dev/sda"}')
    assert (r.code, r.err) == (1, REFUSED + "shred /dev/sda\n")
    assert env.ok("schedule", "list", "--json").json() == []
    entries = env.ok("audit", "--json").json()
    refused = [(e["action"], e["detail"], e["via"], e["uid"]) for e in entries if e["action"] == "refused"]
    assert refused == [("refused", "enqueue: rm -rf ~/important", "cli", os.getuid()),
                       ("refused", "enqueue: sleep 1; reboot (in a batch of 2 jobs)", "cli", os.getuid()),
                       ("refused", "schedule add: schedule wipe: shred /dev/sda", "cli", os.getuid())]
    st = env.ok("status", "--json").json()
    assert st["policy"]["file"] == policy and st["policy"]["patterns"] == 2
    assert f"policy   only commands matching the 2 pattern(s) of {policy}" in env.ok("status").out


def test_a_batch_sent_in_many_frames_is_refused_whole_by_its_last_job(env: Env) -> None:
    policy = write(os.path.join(env.home, "allow"), "echo *\n")
    env.start_daemon("--allow-commands", policy, "--workers", "0")
    jobs = [{"command": f"echo {i}"} for i in range(25_000)] + [{"command": "reboot"}]
    with Client(env.home, autostart=False) as c:
        with pytest.raises(RequestFailed) as refused:
            c.enqueue_many(jobs, batch=10_000)  # three frames: the refusal comes at the last
        assert (refused.value.code, refused.value.exit_code) == ("refused", 1)
        assert refused.value.message == "command not allowed by this daemon's policy: reboot (in a batch of 25001 jobs)"
        assert c.enqueue("echo after") and c.status().jobs["pending"] == 1  # the connection goes on, nothing staged


def test_sighup_reads_the_file_again_and_a_broken_one_keeps_the_policy_in_force(env: Env) -> None:
    policy = write(os.path.join(env.home, "allow"), "true\n")
    daemon = env.start_daemon("--allow-commands", policy, "--workers", "0")
    assert env.q("enqueue", '{"command": "date"}').code == 1
    write(policy, "true\ndate\n")
    daemon.send_signal(signal.SIGHUP)
    wait_for(lambda: env.ok("status", "--json").json()["policy"]["patterns"] == 2, what="the policy read again")
    dated = env.enqueue(command="date")
    write(policy, "true\nre:date (\n")
    daemon.send_signal(signal.SIGHUP)
    wait_for(lambda: "bad regular expression" in env.log(), what="the reload's error in the log")
    assert f"SIGHUP: {policy}:2: bad regular expression 'date (': missing ); " \
           "the policy in force stays (2 patterns)" in env.log()
    assert env.q("enqueue", '{"command": "date"}').code == 0  # the old policy, not none and not the broken one
    assert env.q("enqueue", '{"command": "uptime"}').code == 1
    write(policy, "true\n")  # date no longer: a copy of a job that runs it is refused too
    daemon.send_signal(signal.SIGHUP)
    wait_for(lambda: env.ok("status", "--json").json()["policy"]["patterns"] == 1, what="the policy read again")
    r = env.q("rerun", dated)
    assert (r.code, r.err) == (1, REFUSED + "date\n"), r
    assert env.ok("audit", "--json", "--limit", "1").json()[0]["detail"] == f"rerun: of {dated}: date"
    assert daemon.poll() is None


def test_a_pattern_that_backtracks_without_end_refuses_its_command_and_the_daemon_answers(env: Env) -> None:
    policy = write(os.path.join(env.home, "allow"), "true\nre:(x|xx)+y\n")
    env.start_daemon("--allow-commands", policy, "--workers", "0")
    r = env.q("enqueue", json.dumps({"command": "x" * 5000 + "!"}), timeout=20)
    assert r.code == 1 and r.err.startswith(REFUSED) and f"{policy}:2 took over" in r.err, r
    assert len(r.err.splitlines()) == 1 and env.q("status", timeout=10).code == 0
    assert env.q("enqueue", json.dumps({"command": "xxxy"})).code == 0
    assert f"{policy}:2 took over" in env.log()


def test_a_file_it_cannot_use_at_start_keeps_the_daemon_from_starting(env: Env) -> None:
    bad = write(os.path.join(env.home, "allow"), "true\n\n# fine so far\nre:[unclosed\n")
    huge = write(os.path.join(env.home, "huge"), "true\nre:a{99999999999}\n")
    for path, line in ((bad, f"{bad}:4: bad regular expression '[unclosed'"),
                       (huge, f"{huge}:2: bad regular expression 'a{{99999999999}}'"),
                       (os.path.join(env.home, "missing"), "missing: cannot read the command policy")):
        proc = subprocess.run([QUEUECTLD, "--home", env.home, "--allow-commands", path], env=env.env,
                              capture_output=True, text=True, timeout=30)
        assert proc.returncode == 78, proc
        assert proc.stderr.count("\n") == 1 and line in proc.stderr and "cannot start" in proc.stderr, proc.stderr
    assert not os.path.exists(os.path.join(env.home, "queuectld.sock"))


def test_without_the_flag_everything_is_allowed_and_status_says_nothing_of_a_policy(env: Env) -> None:
    env.start_daemon()
    assert env.q("enqueue", '{"command": "rm -f /nonexistent-file"}').code == 0
    assert env.ok("status", "--json").json()["policy"] is None
    assert "policy" not in env.ok("status").out
