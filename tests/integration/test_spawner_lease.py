"""A spawner's lease, with a real spawner process on a socket pair: once its lease has passed, it kills its
jobs and refuses new spawns until a new lease comes; with no lease at all it has no deadline."""

from __future__ import annotations

import os
import select
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from typing import Any

import pytest

from queuectld import spawner_wire as sp
from tests.conftest import pid_alive, wait_for

REASON = "node n1 lost contact with the database"


class Spawner:
    """A spawner process, as the daemon starts it, and our end of its socket."""

    def __init__(self, home: str) -> None:
        self.home = home
        self.sock, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        lock = os.open(os.path.join(home, "lock"), os.O_RDWR | os.O_CREAT, 0o600)
        self.proc = subprocess.Popen([sys.executable, "-m", "queuectld.spawner", str(theirs.fileno()), str(lock)],
                                     pass_fds=(theirs.fileno(), lock), cwd=home)
        theirs.close()
        os.close(lock)
        self.inbuf = bytearray()
        self.got: list[list[Any]] = []
        self.token = 0

    def send(self, *messages: list[Any]) -> None:
        self.sock.sendall(sp.frame(list(messages)))

    def spawn(self, command: str) -> int:
        self.token += 1
        out, err = (os.path.join(self.home, f"{self.token}.{k}") for k in ("out", "err"))
        self.send([sp.SPAWN, self.token, f"j{self.token}", command, 1, None, out, err, 1 << 20, None, None, None])
        return self.token

    def reply(self, kind: str, token: int, timeout: float = 10) -> list[Any]:
        """The spawner's message `kind` about `token` (waiting for it, bounded)."""
        def found() -> list[Any] | None:
            if select.select([self.sock], [], [], 0.05)[0]:
                data = self.sock.recv(1 << 16)
                assert data, "the spawner closed its socket"
                self.inbuf += data
                self.got += sp.unframe(self.inbuf)
            return next((m for m in self.got if m[0] == kind and m[1] == token), None)
        return wait_for(found, timeout, f"{kind} for token {token}; got {self.got}")  # type: ignore[no-any-return]

    def close(self) -> None:
        self.sock.close()
        self.proc.wait(10)


@pytest.fixture
def spawner() -> Iterator[Spawner]:
    with tempfile.TemporaryDirectory(prefix="qc-lease-", dir="/tmp") as home:
        s = Spawner(home)
        try:
            yield s
        finally:
            s.close()


def test_a_passed_lease_kills_the_jobs_and_refuses_spawns_until_a_new_lease(spawner: Spawner) -> None:
    running = spawner.spawn("sleep 60")
    pid = spawner.reply(sp.STARTED, running)[2]
    spawner.send([sp.LEASE, time.monotonic() - 1.0, REASON])
    exited = spawner.reply(sp.EXITED, running)
    assert exited[3] == f"interrupted: {REASON}", exited
    assert exited[5] is None, "no retry rule judges an interrupted run"
    assert not pid_alive(pid)
    refused = spawner.spawn("true")
    assert spawner.reply(sp.FAILED, refused)[2] == f"cannot start: {REASON}"
    spawner.send([sp.LEASE, time.monotonic() + 3600.0, REASON])
    again = spawner.spawn("exit 3")
    spawner.reply(sp.STARTED, again)
    assert spawner.reply(sp.EXITED, again)[2] == 3


def test_a_spawner_wakes_up_for_its_lease_without_a_word_from_the_daemon(spawner: Spawner) -> None:
    running = spawner.spawn("sleep 60")
    pid = spawner.reply(sp.STARTED, running)[2]
    spawner.send([sp.LEASE, time.monotonic() + 0.3, REASON])  # then nothing more: the daemon is frozen
    assert spawner.reply(sp.EXITED, running)[3] == f"interrupted: {REASON}"
    assert not pid_alive(pid)


def test_without_a_lease_a_spawner_has_no_deadline(spawner: Spawner) -> None:
    done = spawner.spawn("sleep 0.5")
    spawner.reply(sp.STARTED, done)
    assert spawner.reply(sp.EXITED, done)[2:4] == [0, None]
