"""`queuectl audit` against a real daemon: every change a person makes is listed with the uid the
kernel gave and where it came from, and the trail is as durable as the changes."""

from __future__ import annotations

import os
import signal
from typing import Any

from queuectl_client import Client
from tests.conftest import Env, wait_for


def trail(env: Env, *args: str) -> list[dict[str, Any]]:
    return env.ok("audit", "--json", *args).json()  # type: ignore[no-any-return]


def actions(entries: list[dict[str, Any]]) -> list[tuple[str, str]]:
    return [(e["action"], e["detail"]) for e in entries]


def test_every_change_a_person_makes_is_listed_with_the_uid_and_via(env: Env) -> None:
    env.start_daemon("--workers", "0")
    first = env.enqueue(id="first", command="echo hi")  # the CLI's quick path
    env.ok("enqueue", "--file", "-", input='{"id": "later", "command": "true", "delay": 3600}\n'
                                           '{"id": "doomed", "command": "exit 3", "max_retries": 0}\n')
    env.ok("cancel", "later")
    env.ok("edit", "first", "--priority", "5", "--group", "default")
    env.ok("config", "set", "max-retries", "4")
    env.ok("group", "add", "nightly", "--parallel", "1")
    env.ok("pause", "nightly")
    env.ok("schedule", "add", "hourly", "@hourly", '{"command": "date", "group": "nightly"}')
    env.ok("worker", "start", "-n", "1", "--detach")
    env.wait_state("doomed", "dead")
    env.ok("retry", "doomed")
    env.wait_state(first, "completed")
    env.ok("rerun", first, "--json")
    env.wait_state("doomed", "dead")
    env.ok("delete", "doomed")
    env.ok("prune", "--state", "dead", "--older-than", "0")
    entries = trail(env)
    assert {(e["uid"], e["via"]) for e in entries} == {(os.getuid(), "cli")}
    got = actions(entries)
    assert got[:9] == [
        ("enqueue", "first: echo hi"), ("enqueue", "2 jobs: later, doomed"), ("cancel", "later"),
        ("edit", "first: priority 0 -> 5"), ("config set", "max-retries 4"), ("group add", "nightly parallel 1"),
        ("pause", "nightly"), ("schedule add", "hourly '@hourly': date"), ("pool", "1 worker"),
    ]
    assert got[9] == ("retry", "doomed")
    assert got[10][0] == "rerun" and got[10][1].endswith(": echo hi")
    assert got[11] == ("delete", "doomed")
    assert got[12] == ("prune", "later")  # the cancelled job: dead, and older than 0
    assert len(got) == 13  # the runs, their retries and the daemon's own passes are not a person's changes
    assert all(e["at"].endswith("Z") for e in entries)


def test_the_shell_and_the_python_client_say_what_they_are(env: Env) -> None:
    env.start_daemon()
    env.ok("shell", input="config set max-retries 2\ngroup add reports\n")
    with Client(env.home, autostart=False) as c:
        c.config_set("keep-completed", "1d")
    entries = trail(env)
    assert [(e["via"], e["action"]) for e in entries] == [("shell", "config set"), ("shell", "group add"),
                                                          ("python", "config set")]


def test_the_trail_survives_kill_9_and_compaction(env: Env) -> None:
    daemon = env.start_daemon("--compact-min", "4096", "--workers", "0")
    journal = os.path.join(env.home, "journal")
    env.ok("config", "set", "backoff-base", "3")
    with Client(env.home, autostart=False) as c:
        for _ in range(40):
            c.enqueue_many([{"command": "echo " + "x" * 200, "delay": 3600}] * 5)
    wait_for(lambda: any(n.startswith("snap-") for n in os.listdir(journal)), what="a compaction")
    assert "log-1" not in os.listdir(journal)  # the first entries are only in the snapshot now
    env.ok("config", "set", "backoff-base", "4")
    before = trail(env)
    assert len(before) == 42 and before[0]["detail"] == "backoff-base 3"
    daemon.send_signal(signal.SIGKILL)
    daemon.wait()
    env.daemon = None
    env.start_daemon("--workers", "0")
    assert trail(env) == before


def test_since_limit_and_the_table(env: Env) -> None:
    env.start_daemon()
    for n in ("1", "2", "3"):
        env.ok("config", "set", "max-retries", n)
    assert [e["detail"] for e in trail(env, "--limit", "2")] == ["max-retries 2", "max-retries 3"]
    assert len(trail(env, "--since", "1h")) == 3
    assert trail(env, "--limit", "0") == []
    text = env.ok("audit").out.splitlines()
    assert text[0].split() == ["WHEN", "UTC", "UID", "VIA", "ACTION", "WHAT"]
    assert len(text) == 4 and "config set  max-retries 3" in text[3] and f"{os.getuid()}" in text[3]
    for bad in (["--since", "soon"], ["--since", "-1h"], ["--limit", "-1"], ["--limit", "x"]):
        r = env.q("audit", *bad)
        assert r.code == 2 and r.err.count("\n") == 1 and r.out == "", r
    r = env.q("audit", "--since", "1s")
    assert r.code == 0


def test_a_long_command_is_shortened_and_kept_as_it_is_in_json(env: Env) -> None:
    env.start_daemon("--workers", "0")
    env.enqueue(id="loud", command="printf '\x1b[2J'\n echo " + "y" * 300)
    (entry,) = trail(env)
    assert entry["detail"].startswith("loud: printf '\x1b[2J' echo yyy")  # one line; JSON escapes the rest
    assert len(entry["detail"]) < 100 and entry["detail"].endswith("…")
