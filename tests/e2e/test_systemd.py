"""systemd integration against the real protocols: a notify datagram socket, an inherited listening socket."""

from __future__ import annotations

import os
import select
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest

from queuectl_client import Client
from queuectl_client import protocol as p
from tests.conftest import BIN, QUEUECTLD, Env, wait_for

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
UNITS = ("queuectld.service", "queuectld.socket", "queuectld@.service", "queuectld-node@.service")


class Notifications:
    """A datagram socket standing in for systemd's $NOTIFY_SOCKET."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(path)
        self.sock.setblocking(False)
        self.messages: list[str] = []

    def drain(self) -> list[str]:
        while True:
            try:
                self.messages.append(self.sock.recv(4096).decode())
            except BlockingIOError:
                return self.messages

    def seen(self, line: str) -> bool:
        return any(line in m.splitlines() for m in self.drain())

    def count(self, line: str) -> int:
        return sum(line in m.splitlines() for m in self.drain())


# What systemd does before it starts a socket-activated service: the sockets from fd 3 on,
# LISTEN_FDS, and LISTEN_PID naming the process that execs the daemon.
ACTIVATE = """
import os, sys
fd = int(sys.argv[1])
os.dup2(fd, 3)
os.close(fd)
os.environ.update(LISTEN_PID=str(os.getpid()), LISTEN_FDS="1")
os.execv(sys.argv[2], sys.argv[2:])
"""


def activate(env: Env, fd: int, *args: str, **kwargs: object) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-c", ACTIVATE, str(fd), QUEUECTLD, "--home", env.home, *args],
                            env=env.env, pass_fds=(fd,), **kwargs)  # type: ignore[call-overload]


@pytest.fixture
def notify(home: str) -> Iterator[Notifications]:
    n = Notifications(os.path.join(home, "notify.sock"))
    yield n
    n.sock.close()


def test_ready_watchdog_and_stopping_reach_notify_socket(env: Env, notify: Notifications) -> None:
    env.env.update(NOTIFY_SOCKET=notify.path, WATCHDOG_USEC="200000")  # pings every 0.1 s
    job_env = os.path.join(env.home, "job-env")
    env.start_daemon("--workers", "1")
    assert notify.seen("READY=1")
    ready = next(m for m in notify.messages if "READY=1" in m.splitlines())
    assert f"MAINPID={env.daemon.pid}" in ready  # type: ignore[union-attr]
    # READY comes after the socket listens: the client answered before start_daemon returned.
    wait_for(lambda: notify.count("WATCHDOG=1") >= 5, 5, "five watchdog pings")
    # Jobs do not inherit systemd's variables: they must never speak for the daemon, nor for a
    # service that enqueues them (its client's own are left out too).
    job_id = env.enqueue(command=f"env > {job_env}")
    env.wait_state(job_id, "completed")
    with open(job_env) as f:
        inherited = f.read()
    for name in ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID", "LISTEN_FDS", "LISTEN_PID"):
        assert name not in inherited, name
    assert env.stop_daemon() == 0
    assert notify.seen("STOPPING=1")
    stopping = next(i for i, m in enumerate(notify.messages) if "STOPPING=1" in m.splitlines())
    assert stopping > next(i for i, m in enumerate(notify.messages) if "READY=1" in m.splitlines())


def test_a_watchdog_meant_for_another_pid_is_not_answered(env: Env, notify: Notifications) -> None:
    env.env.update(NOTIFY_SOCKET=notify.path, WATCHDOG_USEC="100000", WATCHDOG_PID="1")
    env.start_daemon()
    assert notify.seen("READY=1")
    time.sleep(0.3)  # six ping periods: a daemon that pinged would have by now
    assert env.stop_daemon() == 0
    assert notify.seen("STOPPING=1") and notify.count("WATCHDOG=1") == 0


def test_a_notify_socket_nobody_listens_on_is_harmless(env: Env, home: str) -> None:
    env.env["NOTIFY_SOCKET"] = os.path.join(home, "nobody-listens")
    env.start_daemon()
    assert env.q("status").code == 0
    assert env.stop_daemon() == 0
    assert env.log().count("cannot notify systemd") == 1


def _unit_socket(home: str) -> socket.socket:
    """The listening socket systemd makes from queuectld.socket (mode 0600), before it starts the daemon."""
    path = os.path.join(home, "queuectld.sock")
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    os.chmod(path, 0o600)
    listener.listen(16)
    return listener


def test_the_daemon_serves_a_socket_inherited_from_systemd(env: Env, home: str) -> None:
    listener = _unit_socket(home)
    # A client may connect before the daemon runs: systemd queues it on the socket.
    early = subprocess.Popen([os.path.join(BIN, "queuectl"), "enqueue", '{"command": "true", "id": "early"}'],
                             env=env.env, stdout=subprocess.PIPE, text=True)
    # The listening socket turns readable once the client's connection waits in its queue.
    assert select.select([listener], [], [], 10)[0], "the early client did not connect"
    with open(env.log_path, "ab") as log:
        env.daemon = activate(env, listener.fileno(), stdout=log, stderr=subprocess.STDOUT)
    listener.close()  # the daemon holds its own copy now, like systemd's
    out, _ = early.communicate(timeout=15)
    assert early.returncode == 0 and out.strip() == "early", env.log()
    assert "(from systemd)" in env.log()
    with Client(home, autostart=False) as c:
        assert c.show("early").state == "pending"
    assert env.stop_daemon() == 0
    # The socket is systemd's to keep: the daemon leaves the file in place.
    assert os.path.exists(os.path.join(home, "queuectld.sock"))


def test_a_passed_descriptor_that_is_not_a_socket_refuses_the_start(env: Env, home: str) -> None:
    r, w = os.pipe()
    proc = activate(env, r, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    out, _ = proc.communicate(timeout=20)
    assert proc.returncode == 1 and b"cannot use the socket from systemd" in out, out
    os.close(r)
    os.close(w)


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed")
def test_the_units_pass_systemd_analyze_verify(tmp_path: os.PathLike[str]) -> None:
    # The units name where a user or root install puts queuectld; point them at this one, as the
    # README's install step does.
    exe = os.path.join(BIN, "queuectld")
    for unit in UNITS:
        with open(os.path.join(ROOT, "systemd", unit)) as f:
            text = f.read()
        text = text.replace("%h/.local/bin/queuectld", exe).replace("/usr/local/bin/queuectld", exe)
        with open(os.path.join(str(tmp_path), unit), "w") as f:
            f.write(text)
    for unit in ("queuectld.service", "queuectld.socket", "queuectld@alice.service", "queuectld-node@alice.service"):
        target = os.path.join(str(tmp_path), unit.replace("@alice", "@"))
        if "@" in unit:
            alias = os.path.join(str(tmp_path), unit)
            shutil.copy(target, alias)
            target = alias
        proc = subprocess.run(["systemd-analyze", "verify", "--man=no", target], capture_output=True, text=True,
                              env=dict(os.environ, SYSTEMD_LOG_LEVEL="warning"))
        problems = [ln for ln in proc.stderr.splitlines() if "queuectld" in ln]
        assert proc.returncode == 0 and not problems, (unit, proc.stderr)


def test_the_units_say_what_the_issue_requires() -> None:
    with open(os.path.join(ROOT, "systemd", "queuectld.service")) as f:
        user = f.read()
    with open(os.path.join(ROOT, "systemd", "queuectld@.service")) as f:
        system = f.read()
    with open(os.path.join(ROOT, "systemd", "queuectld.socket")) as f:
        sock = f.read()
    for unit in (user, system):
        for line in ("Type=notify", "KillMode=mixed", "NoNewPrivileges=yes", "WatchdogSec=30"):
            assert line in unit.splitlines(), line
        # systemd must wait longer than the daemon's own grace period before it kills.
        grace = int(unit.split("--grace ")[1].split()[0])
        stop = int(next(ln for ln in unit.splitlines() if ln.startswith("TimeoutStopSec=")).split("=")[1])
        assert stop > grace
    assert "ProtectSystem=full" in system and "StateDirectory=queuectl/%i" in system
    assert "RuntimeDirectory=queuectl" in user
    assert "SocketMode=0600" in sock and "ListenStream=%t/queuectl/queuectld.sock" in sock


def test_a_daemon_started_by_systemd_runs_each_job_with_its_enqueuers_environment(env: Env, home: str) -> None:
    listener = _unit_socket(home)
    # systemd gives a service a small environment of its own, not the user's session's.
    caller = dict(env.env, FROM_THE_SHELL="yes", PATH=f"{BIN}:/usr/bin:/bin")
    env.env = {"PATH": "/usr/bin:/bin", "QUEUECTL_HOME": home, "FROM_THE_UNIT": "1", "LANG": "C"}
    with open(env.log_path, "ab") as log:
        env.daemon = activate(env, listener.fileno(), "--workers", "1", stdout=log, stderr=subprocess.STDOUT)
    listener.close()
    r = subprocess.run([os.path.join(BIN, "queuectl"), "enqueue", '{"command": "env", "id": "e"}'], env=caller,
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r
    with Client(home, autostart=False) as c:
        wait_for(lambda: c.show("e").state == "completed", what="the job to complete")
        reply = c.request(p.Logs("e"))
        assert isinstance(reply, p.LogsReply)
        out = reply.stdout
    with open(out) as f:
        seen = dict(line.split("=", 1) for line in f.read().splitlines() if "=" in line)
    assert seen["FROM_THE_SHELL"] == "yes" and seen["PATH"] == caller["PATH"] and "FROM_THE_UNIT" not in seen
    assert seen["QUEUECTL_HOME"] == home
    assert env.stop_daemon() == 0
