"""The client's own behaviour against a real daemon: times, homes, limits, terminals, messages."""

from __future__ import annotations

import os
import pty
import re
import select
import subprocess
from datetime import datetime

import pytest

from tests.conftest import QUEUECTL, Env

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


def _hold_lock(home: str, text: str) -> int:
    """Take the home's lock as a daemon does, with `text` in it; returns the descriptor holding it."""
    import fcntl

    fd = os.open(os.path.join(home, "queuectld.lock"), os.O_RDWR | os.O_CREAT, 0o600)
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    os.ftruncate(fd, 0)
    os.write(fd, text.encode())
    return fd
