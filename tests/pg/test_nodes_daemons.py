"""Two real daemons on one database, each on its own socket, driven by the real CLI: the nodes they
list, QUEUECTL_NODE, a wait on one node for a job another runs, a cancel reaching the owning node, a
node killed with -9 whose job runs again on the other; and the start-up refusals of `--store`."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Iterator

import pytest

from queuectld.pg.connect import EXIT_UNREACHABLE
from tests import pgserver
from tests.conftest import QUEUECTLD, Env, wait_for


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as f:
        return f.read().split(") ")[-1][0] != "Z"


@pytest.fixture
def nodes(pg_database: str) -> Iterator[tuple[Env, Env]]:
    homes = [tempfile.mkdtemp(prefix="qc-", dir="/tmp") for _ in range(2)]
    envs = []
    for home in homes:
        e = Env(home)
        e.env["QUEUECTL_STORE"] = pg_database
        e.url = pg_database  # type: ignore[attr-defined]
        envs.append(e)
    yield envs[0], envs[1]
    _remove(envs, homes)


def _remove(envs: list[Env], homes: list[str]) -> None:
    """Kill the daemons still running and remove their homes."""
    for e in envs:
        if e.daemon is not None and e.daemon.poll() is None:
            e.daemon.kill()
            e.daemon.wait(10)
    for home in homes:
        shutil.rmtree(home, ignore_errors=True)


def _start(a: Env, b: Env, b_workers: str = "1", beat: str = "0.5") -> None:
    a.start_daemon("--node", "a", "--workers", "0")
    a.ok("config", "set", "heartbeat", beat)  # the whole cluster's: b reads it at its start
    b.start_daemon("--node", "b", "--workers", b_workers)


def test_each_node_lists_both_and_status_shows_them(nodes: tuple[Env, Env]) -> None:
    a, b = nodes
    _start(a, b, "2", beat="2")
    want = [("b", False, 2, "up"), ("a", True, 0, "up")]
    listed = wait_for(lambda: (got := a.ok("nodes", "--json").json()) and
                      [(n["name"], n["this"], n["pool"], n["state"]) for n in got] == want and got,
                      what="both nodes, b's pool as its next heartbeat says")
    assert all(n["version"] and n["heartbeat_age"] is not None for n in listed)
    assert [n["this"] for n in b.ok("nodes", "--json").json()] == [True, False]
    status = b.ok("status").out.splitlines()
    section = [ln for ln in status if ln.startswith("nodes") or ln.startswith("         b") or
               ln.startswith("         a")]
    assert section[0].split()[:3] == ["nodes", "b", "*"] and "pool 2" in section[0] and "heartbeat" in section[0]
    assert any(ln.split()[0] == "a" for ln in section[1:])
    assert [n["name"] for n in b.ok("status", "--json").json()["nodes"]] == ["b", "a"]
    a.stop_daemon()
    wait_for(lambda: {n["name"]: n["state"] for n in b.ok("nodes", "--json").json()}["a"] == "stopped",
             what="a shown stopped")


def test_a_wait_on_one_node_returns_when_the_other_runs_the_job_with_its_node_name(
        nodes: tuple[Env, Env], tmp_path: os.PathLike[str]) -> None:
    a, b = nodes
    _start(a, b)
    out = os.path.join(tmp_path, "node")
    job = a.enqueue(command=f"echo $QUEUECTL_NODE > {out}")  # a has no worker: b runs it
    r = a.q("wait", job, "--timeout", "30", "--json")
    assert r.code == 0, r
    assert r.json()[0]["state"] == "completed"
    with open(out) as f:
        assert f.read() == "b\n"


def test_a_cancel_on_one_node_is_carried_out_by_the_node_that_runs_the_job(nodes: tuple[Env, Env],
                                                                          tmp_path: os.PathLike[str]) -> None:
    a, b = nodes
    _start(a, b)
    pidfile = os.path.join(tmp_path, "pid")
    job = a.enqueue(command=f"echo $$ > {pidfile}; exec sleep 1000", max_retries=3)
    wait_for(lambda: os.path.exists(pidfile) and os.path.getsize(pidfile) > 0, what="the run on b")
    with open(pidfile) as f:
        pid = int(f.read())
    # Node a shows the node whose worker holds it, not itself.
    listed = {j["id"]: j for j in a.ok("list", "--state", "processing", "--json").json()}
    assert listed[job]["locked_by"] == "b/1", listed
    assert a.show(job)["locked_by"] == "b/1"
    a.ok("cancel", job)
    ended = a.q("wait", job, "--timeout", "30", "--json")
    assert ended.json()[0]["state"] == "dead", ended
    assert a.show(job)["state"] == "dead" and a.show(job)["error_message"] == "cancelled"
    wait_for(lambda: not _alive(pid), what="the run's process gone")


def test_a_node_killed_with_9_takes_its_runs_with_it_and_another_node_runs_them_again(
        nodes: tuple[Env, Env], tmp_path: os.PathLike[str]) -> None:
    a, b = nodes
    _start(a, b)
    pidfile, again = os.path.join(tmp_path, "pid"), os.path.join(tmp_path, "again")
    job = a.enqueue(command=f"if [ -e {pidfile} ]; then echo $QUEUECTL_NODE > {again}; "
                            f"else echo $$ > {pidfile}; exec sleep 1000; fi", max_retries=3)
    wait_for(lambda: os.path.exists(pidfile) and os.path.getsize(pidfile) > 0, what="the run on b")
    with open(pidfile) as f:
        pid = int(f.read())
    a.wait_state(job, "processing")  # its start is on record (a start not yet recorded is given back uncounted)
    wait_for(lambda: {n["name"]: n["busy"] for n in a.ok("nodes", "--json").json()}["b"] == 1,
             what="b's heartbeat reporting its run")
    assert b.daemon is not None
    b.daemon.send_signal(signal.SIGKILL)
    b.daemon.wait(10)
    b.daemon = None
    wait_for(lambda: not _alive(pid), timeout=5, what="the run killed with its daemon")
    rescued = a.wait_state(job, "failed", timeout=20)
    assert rescued["attempts"] == 1 and rescued["error_message"] == "interrupted: node b lost"
    a.ok("worker", "start", "-n", "1", "--detach")
    done = a.wait_state(job, "completed", timeout=30)
    assert done["attempts"] == 2
    with open(again) as f:
        assert f.read() == "a\n"
    lost = {n["name"]: n for n in a.ok("nodes", "--json").json()}["b"]
    assert lost["state"] == "lost" and lost["busy"] == 0  # its runs were rescued: none goes on there


def _daemon(home: str, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if k not in ("QUEUECTL_STORE", "QUEUECTL_STORE_PASSWORD_FILE")}
    return subprocess.run([QUEUECTLD, "--home", home, *args], capture_output=True, text=True, timeout=60,
                          env=dict(environ, **env))


def test_a_password_on_argv_is_refused_and_an_unreachable_database_is_one_line(home: str) -> None:
    r = _daemon(home, "--store", "postgresql://u:hunter2@127.0.0.1:1/q")
    assert r.returncode == 2 and "hunter2" not in r.stderr and len(r.stderr.splitlines()) == 1, r
    assert "--store-password-file" in r.stderr and "Traceback" not in r.stderr
    port = pgserver.free_port()
    r = _daemon(home, "--node", "x", QUEUECTL_STORE=f"postgresql://u:pw@127.0.0.1:{port}/q")
    assert r.returncode == EXIT_UNREACHABLE and len(r.stderr.splitlines()) == 1, r
    assert "cannot reach the database at postgresql://u@127.0.0.1" in r.stderr and ":pw@" not in r.stderr
    missing = os.path.join(home, "nope")
    r = _daemon(home, "--store", "postgresql://u@127.0.0.1/q", "--store-password-file", missing)
    assert r.returncode == 2 and "cannot read the password file" in r.stderr and len(r.stderr.splitlines()) == 1


@pytest.mark.parametrize(("args", "env", "says"), [
    (["--store", "postgresql://u@127.0.0.1:notaport/q"], {}, "a port is a number from 1 to 65535"),
    (["--store", "postgresql://u@127.0.0.1:99999/q"], {}, "a port is a number from 1 to 65535"),
    (["--store", "postgresql://u@[::1/q"], {}, "is not a URL: Invalid IPv6 URL"),
    ([], {"QUEUECTL_STORE": "postgresql://u:pw@[::1/q"}, "is not a URL: Invalid IPv6 URL"),
    ([], {"QUEUECTL_STORE": "postgresql://u:pw@127.0.0.1:5432/q?sslmode=bogus"}, "sslmode='bogus' is not one of"),
    (["--store", "postgresql://u@127.0.0.1:5432/q?connect_timeout=5"], {}, "connect_timeout= is not supported"),
    (["--store", "postgresql://u@127.0.0.1:5432/q\x01"], {}, "a control character"),
    (["--store", "postgresql://u@127.0.0.1/q", "--node", "bad node/name"], {}, "a node name is 1 to 64"),
    (["--store", "postgresql://u@127.0.0.1/q", "--node", ""], {}, "a node name is 1 to 64"),
])
def test_a_store_url_or_node_name_that_cannot_work_is_one_line_before_anything_starts(
        home: str, args: list[str], env: dict[str, str], says: str) -> None:
    r = _daemon(home, *args, **env)
    assert r.returncode == 2 and len(r.stderr.splitlines()) == 1 and says in r.stderr, r
    assert "Traceback" not in r.stderr and ":pw@" not in r.stderr


def test_the_heartbeat_setting_refuses_what_it_cannot_use(env: Env) -> None:
    env.start_daemon()
    for bad in ("0.1", "61", "nan", "soon"):
        r = env.q("config", "set", "heartbeat", bad)
        assert r.code == 2 and r.err.count("\n") == 1 and "heartbeat" in r.err, r
    env.ok("config", "set", "heartbeat", "0.5")
    assert env.ok("config", "get", "heartbeat").out == "0.5\n"


class ThreadProxy:
    """tests/pg/proxy.Proxy on a loop of its own thread, for a daemon the test runs as a process."""

    def __init__(self, url: str) -> None:
        import asyncio
        import threading
        from urllib.parse import urlsplit, urlunsplit

        from tests.pg.proxy import Proxy

        parts = urlsplit(url)
        self.loop = asyncio.new_event_loop()
        self.proxy = Proxy(parts.hostname or "127.0.0.1", parts.port or 5432)
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        port = asyncio.run_coroutine_threadsafe(self.proxy.start(), self.loop).result(10)
        netloc = (parts.username + "@" if parts.username else "") + f"127.0.0.1:{port}"
        self.url = urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))

    def pause(self) -> None:
        self.loop.call_soon_threadsafe(self.proxy.pause)

    def resume(self) -> None:
        self.loop.call_soon_threadsafe(self.proxy.resume)

    def close(self) -> None:
        import asyncio

        self.resume()
        asyncio.run_coroutine_threadsafe(self.proxy.close(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


def test_a_node_cut_off_kills_its_runs_before_the_rescue_and_rejoins(nodes: tuple[Env, Env],
                                                                      tmp_path: os.PathLike[str]) -> None:
    a, b = nodes
    link = ThreadProxy(a.env["QUEUECTL_STORE"])
    try:
        b.env["QUEUECTL_STORE"] = link.url
        _start(a, b)
        pidfile = os.path.join(tmp_path, "pid")
        job = a.enqueue(command=f"echo $$ > {pidfile}; exec sleep 1000", max_retries=3)
        a.wait_state(job, "processing")
        wait_for(lambda: os.path.exists(pidfile) and os.path.getsize(pidfile) > 0, what="the run on b")
        with open(pidfile) as f:
            pid = int(f.read())
        old = {n["name"]: n["id"] for n in a.ok("nodes", "--json").json()}["b"]
        link.pause()
        try:
            wait_for(lambda: not _alive(pid), timeout=10, what="b's run killed by its fence")
        except AssertionError:
            raise AssertionError(b.log()) from None
        assert a.show(job)["state"] == "processing"  # killed before a rescue could run it elsewhere
        rescued = a.wait_state(job, "failed", timeout=20)
        assert rescued["error_message"] == "interrupted: node b lost" and rescued["attempts"] == 1
        link.resume()
        wait_for(lambda: [n for n in a.ok("nodes", "--json").json() if n["name"] == "b" and n["id"] != old
                          and n["state"] == "up"], timeout=30, what="b rejoined under a new id")
        assert "fences itself" in b.log() and "rejoins as" in b.log()
        assert b.daemon is not None and b.daemon.poll() is None
    finally:
        link.close()
