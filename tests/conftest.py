"""Shared helpers: temp homes, a real daemon process, the real CLI, bounded waits."""

from __future__ import annotations

import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

BIN = os.path.dirname(sys.executable)
QUEUECTL = os.path.join(BIN, "queuectl")
QUEUECTLD = os.path.join(BIN, "queuectld")


def bash_complete(env: Env, script: str, *words: str) -> list[str]:
    """What the bash completion `script` offers for the command line `words` (the last one being
    completed), sorted; the script calls `queuectl` as a user's PATH finds it."""
    probe = (f'{script}\nCOMP_WORDS=({" ".join(repr(w) for w in words)}); COMP_CWORD={len(words) - 1}; '
             '_queuectl; printf "%s\\n" "${COMPREPLY[@]}"')
    proc = subprocess.run(["bash", "-c", probe], env=dict(env.env, PATH=BIN + ":" + os.environ["PATH"]),
                          capture_output=True, text=True, check=True)
    return sorted(proc.stdout.split())


def wait_for(predicate: Callable[[], Any], timeout: float = 10.0, what: str = "condition") -> Any:
    """Poll `predicate` until it returns something truthy; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    delay = 0.005
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(delay)
        delay = min(delay * 2, 0.1)


@pytest.fixture
def home() -> Iterator[str]:
    # Short paths: a Unix socket path is limited to 107 bytes.
    path = tempfile.mkdtemp(prefix="qc-", dir="/tmp")
    yield path
    shutil.rmtree(path, ignore_errors=True)


class Result:
    def __init__(self, proc: subprocess.CompletedProcess[str]) -> None:
        self.code = proc.returncode
        self.out = proc.stdout
        self.err = proc.stderr

    def json(self) -> Any:
        return json.loads(self.out)

    def __repr__(self) -> str:
        return f"Result(code={self.code}, out={self.out!r}, err={self.err!r})"


class Env:
    """The CLI and the daemon of one temp home, as subprocesses."""

    def __init__(self, home: str, store: str | None = None, node: str | None = None) -> None:
        self.home = home
        self.store = store  # a PostgreSQL URL: the daemon runs on that store (`--store`, `--node`)
        self.node = node
        self.env = dict(os.environ, QUEUECTL_HOME=home, QUEUECTL_NO_AUTOSTART="1", PYTHONUNBUFFERED="1")
        self.env.pop("NO_COLOR", None)
        self.daemon: subprocess.Popen[bytes] | None = None
        self.log_path = os.path.join(home, "queuectld.log")

    def q(self, *args: str, input: str | None = None, timeout: float = 30, **env: str) -> Result:
        proc = subprocess.run(
            [QUEUECTL, *args], input=input, capture_output=True, text=True, timeout=timeout,
            env=dict(self.env, **env),
        )
        assert "Traceback" not in proc.stderr, proc.stderr
        return Result(proc)

    def ok(self, *args: str, input: str | None = None) -> Result:
        r = self.q(*args, input=input)
        assert r.code == 0, r
        return r

    def enqueue(self, **job: Any) -> str:
        return self.ok("enqueue", json.dumps(job)).out.strip()

    def show(self, job_id: str) -> dict[str, Any]:
        return self.ok("show", job_id, "--json").json()  # type: ignore[no-any-return]

    def jobs(self, state: str | None = None) -> list[dict[str, Any]]:
        args = ["list", "--json"] + (["--state", state] if state else [])
        return self.ok(*args).json()  # type: ignore[no-any-return]

    def wait_state(self, job_id: str, *states: str, timeout: float = 15) -> dict[str, Any]:
        return wait_for(lambda: (j := self.show(job_id))["state"] in states and j, timeout,  # type: ignore[no-any-return]
                        f"job {job_id} to be {'/'.join(states)}")

    def daemon_argv(self, *args: str) -> list[str]:
        store = [] if self.store is None else ["--store", self.store]
        store += [] if self.node is None else ["--node", self.node]
        return [QUEUECTLD, "--home", self.home, *store, *args]

    def start_daemon(self, *args: str) -> subprocess.Popen[bytes]:
        log = open(self.log_path, "ab")
        self.daemon = subprocess.Popen(self.daemon_argv(*args), stdout=log, stderr=log, env=self.env)
        log.close()
        sock = os.path.join(self.home, "queuectld.sock")
        daemon = self.daemon
        wait_for(lambda: (os.path.exists(sock) and self.q("status").code == 0) or daemon.poll() is not None,
                 what="the daemon to answer")
        assert daemon.poll() is None, self.log()
        return daemon

    def stop_daemon(self, sig: int = signal.SIGTERM, timeout: float = 30) -> int:
        assert self.daemon is not None
        self.daemon.send_signal(sig)
        code = self.daemon.wait(timeout)
        self.daemon = None
        return code

    def log(self) -> str:
        try:
            with open(self.log_path) as f:
                return f.read()
        except FileNotFoundError:
            return ""


@pytest.fixture
def env(home: str) -> Iterator[Env]:
    e = Env(home)
    yield e
    if e.daemon is not None and e.daemon.poll() is None:
        e.daemon.kill()
        e.daemon.wait()
    _kill_daemon_of(home)


def _kill_daemon_of(home: str) -> None:
    """Kill a daemon the test left behind (for example one started by autostart)."""
    try:
        with open(os.path.join(home, "queuectld.lock")) as f:
            pid = int((f.read().split() or ["0"])[0])  # "PID" or "PID stopping"
    except (OSError, ValueError):
        return
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            if b"queuectld" not in f.read():
                return
    except OSError:
        return
    if pid > 0:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie still answers kill(0); count it as dead.
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ")[-1][0] != "Z"
    except OSError:
        return False


# --- figures reported by the fault-injection tests --------------------------------

FIGURES: dict[str, object] = {}


@pytest.fixture
def report() -> Callable[[str, object], None]:
    """Record a figure (kills survived, frames sent, ...) for the end-of-run summary."""

    def put(name: str, value: object) -> None:
        FIGURES[name] = value

    return put


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if FIGURES:
        terminalreporter.section("fault-injection figures")
        for name, value in FIGURES.items():
            terminalreporter.write_line(f"{name}: {value}")


def daemon_pid(home: str) -> int:
    with open(os.path.join(home, "queuectld.lock")) as f:
        return int(f.read().split()[0])  # "PID" or "PID stopping"


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError(f"no VmRSS for pid {pid}")


class Terminal:
    """A 120x30 tmux pane running one command, on a private tmux server."""

    def __init__(self, sock: str, env: dict[str, str], command: str) -> None:
        self.sock = sock
        keep = {k: env[k] for k in ("QUEUECTL_HOME", "QUEUECTL_NO_AUTOSTART", "HOME", "NO_COLOR") if k in env}
        line = "env " + " ".join(f"{k}={shlex.quote(v)}" for k, v in keep.items())
        line += f" PATH={shlex.quote(BIN + ':' + os.environ['PATH'])} TERM=xterm-256color {command}"
        self._tmux("-f", "/dev/null", "new-session", "-d", "-x", "120", "-y", "30", line)
        self._tmux("set-option", "-g", "remain-on-exit", "on")

    def _tmux(self, *args: str) -> str:
        return subprocess.run(["tmux", "-S", self.sock, *args], capture_output=True, text=True, check=True).stdout

    def type(self, text: str) -> None:
        """Type text, then let the application take it in before the next key (as a person would)."""
        self._tmux("send-keys", "-l", text)
        time.sleep(0.3)

    def key(self, *keys: str) -> None:
        self._tmux("send-keys", *keys)
        time.sleep(0.1)

    def screen(self, escapes: bool = False) -> str:
        return self._tmux("capture-pane", "-p", *(["-e"] if escapes else []))

    def prompt_line(self, prompt: str = "queuectl> ") -> str:
        lines = [ln for ln in self.screen().splitlines() if ln.startswith(prompt.rstrip())]
        return lines[-1] if lines else ""

    def wait(self, text: str, timeout: float = 10.0) -> str:
        try:
            return wait_for(lambda: text in (screen := self.screen()) and screen, timeout,  # type: ignore[no-any-return]
                            f"{text!r} on the screen")
        except AssertionError as e:
            raise AssertionError(f"{e}; the screen:\n{self.screen()}") from None

    def dead(self) -> bool:
        return self._tmux("display-message", "-p", "#{pane_dead}").strip() == "1"

    def close(self) -> None:
        subprocess.run(["tmux", "-S", self.sock, "kill-server"], capture_output=True)


# --- PostgreSQL ---------------------------------------------------------------------

_PG: list[Any] = []  # the session's server, found once: [Server | None]


@pytest.fixture(scope="session")
def pg_server() -> Iterator[Any]:
    """The PostgreSQL server the tests use (tests/pgserver.py says where it comes from)."""
    from tests import pgserver

    if not _PG:
        _PG.append(pgserver.find_server())
    server = _PG[0]
    if server is None:
        if os.environ.get("CI") == "true":
            pytest.fail("no PostgreSQL server for the tests, and CI=true: " + pgserver.ENABLE)
        pytest.skip(pgserver.ENABLE)
    yield server


def pytest_sessionfinish(session: Any) -> None:
    if _PG and _PG[0] is not None:
        _PG[0].close()


@pytest.fixture
def pg_database(pg_server: Any) -> Iterator[str]:
    """The URL of a fresh database of this test's own, dropped when it ends."""
    url = pg_server.create_database()
    yield url
    pg_server.drop_database(url)
