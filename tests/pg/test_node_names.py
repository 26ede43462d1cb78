"""A node name on one database: a second daemon under the name of a live node elsewhere is refused; a
restart of the same daemon (same host, same home) takes its earlier run's jobs back; a name whose owner
stopped, or went silent, may be taken from another home, and that node takes nothing of the old one's.
Real daemons on real sockets, real `sh -c` jobs, real PostgreSQL."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import tempfile
from collections.abc import Iterator

import asyncpg
import pytest

from tests.conftest import Env, wait_for
from tests.pg.test_nodes_daemons import ThreadProxy, _alive, _remove


@pytest.fixture
def two(pg_database: str) -> Iterator[tuple[Env, Env]]:
    """Two homes on one database, both daemons named "same"."""
    homes = [tempfile.mkdtemp(prefix="qc-", dir="/tmp") for _ in range(2)]
    envs = [Env(home, store=pg_database, node="same") for home in homes]
    yield envs[0], envs[1]
    _remove(envs, homes)


def _run_once(e: Env, *args: str) -> subprocess.CompletedProcess[str]:
    """A daemon that is expected to exit at its start."""
    return subprocess.run(e.daemon_argv(*args), capture_output=True, text=True, timeout=20, env=e.env)


def _running(e: Env, tmp: str, gate: str) -> tuple[str, int]:
    """A job that runs until `gate` exists, started on `e`'s daemon; its id and its shell's pid."""
    pidfile = os.path.join(tmp, "pid")
    job = e.enqueue(command=f"echo $$ > {pidfile}; while [ ! -e {gate} ]; do sleep 0.05; done", max_retries=3)
    wait_for(lambda: os.path.exists(pidfile) and os.path.getsize(pidfile) > 0, what="the run")
    e.wait_state(job, "processing")
    with open(pidfile) as f:
        return job, int(f.read())


def _silent_for(url: str, seconds: float) -> bool:
    """The database's clock says every node named "same" last heartbeated more than `seconds` ago."""
    async def look() -> bool:
        conn = await asyncpg.connect(url)
        try:
            return bool(await conn.fetchval(
                "SELECT bool_and(heartbeat_at < now() - make_interval(secs => $1)) FROM queuectl_nodes "
                "WHERE name = 'same'", seconds))
        finally:
            await conn.close()

    return asyncio.run(look())


def test_a_name_a_live_node_holds_elsewhere_is_refused_and_that_node_runs_on(two: tuple[Env, Env],
                                                                            tmp_path: os.PathLike[str]) -> None:
    a, b = two
    a.start_daemon("--workers", "1")
    gate = os.path.join(tmp_path, "gate")
    job, pid = _running(a, str(tmp_path), gate)
    before = a.show(job)
    r = _run_once(b, "--workers", "1")
    assert r.returncode == 1, (r, b.log())
    assert len(r.stderr.splitlines()) == 1 and "Traceback" not in r.stderr, r
    assert (f"cannot start: node name same is in use by a live node on {socket.gethostname()} ({a.home}); "
            "give this node another --node") in r.stderr, r
    after = a.show(job)
    assert _alive(pid) and (after["state"], after["attempts"], after["locked_by"]) == (
        "processing", before["attempts"], before["locked_by"])
    assert [n["name"] for n in a.ok("nodes", "--json").json()] == ["same"]  # the refused start left no row
    open(gate, "w").close()
    done = a.wait_state(job, "completed", timeout=30)
    assert done["attempts"] == 1


def test_the_same_name_and_home_after_kill_9_starts_and_takes_its_earlier_runs_back(
        two: tuple[Env, Env], tmp_path: os.PathLike[str]) -> None:
    a, _ = two
    a.start_daemon("--workers", "1")
    a.ok("config", "set", "heartbeat", "60")  # the old node is not declared lost before the restart
    job, pid = _running(a, str(tmp_path), os.path.join(tmp_path, "gate"))
    assert a.daemon is not None
    a.daemon.send_signal(signal.SIGKILL)
    a.daemon.wait(10)
    a.daemon = None
    wait_for(lambda: not _alive(pid), what="the run killed with its daemon")
    a.start_daemon("--workers", "0")
    ended = a.wait_state(job, "failed", "dead")
    assert (ended["attempts"], ended["error_message"]) == (1, "interrupted: daemon stopped while the job ran")
    states = sorted(n["state"] for n in a.ok("nodes", "--json").json())
    assert states == ["up", "up"]  # the old row is not lost yet: it was taken back by its own home


def test_a_name_whose_node_stopped_may_be_taken_from_another_home(two: tuple[Env, Env]) -> None:
    a, b = two
    a.start_daemon("--workers", "0")
    assert a.stop_daemon() == 0
    b.start_daemon("--workers", "0")
    states = {n["id"]: n["state"] for n in b.ok("nodes", "--json").json()}
    assert sorted(states.values()) == ["stopped", "up"]


def test_a_name_whose_node_went_silent_is_taken_from_another_home_without_its_runs(
        two: tuple[Env, Env], tmp_path: os.PathLike[str]) -> None:
    a, b = two
    a.start_daemon("--workers", "1")
    a.ok("config", "set", "heartbeat", "0.5")
    job, pid = _running(a, str(tmp_path), os.path.join(tmp_path, "gate"))
    assert a.daemon is not None and a.store is not None
    a.daemon.send_signal(signal.SIGKILL)
    a.daemon.wait(10)
    a.daemon = None
    wait_for(lambda: not _alive(pid), what="the run killed with its daemon")
    url = a.store
    wait_for(lambda: _silent_for(url, 4 * 0.5), timeout=20, what="the old node silent for 4 heartbeats")
    b.start_daemon("--workers", "0")
    # Not taken back as b's own earlier run: the rescue ends it as the run of a lost node.
    ended = b.wait_state(job, "failed", "dead", timeout=20)
    assert (ended["attempts"], ended["error_message"]) == (1, "interrupted: node same lost")


def _beats(url: str, home: str) -> list[float]:
    """The heartbeat times of the live rows of home `home`, by the database."""
    async def look() -> list[float]:
        conn = await asyncpg.connect(url)
        try:
            return [r[0] for r in await conn.fetch(
                "SELECT extract(epoch FROM heartbeat_at)::float8 FROM queuectl_nodes "
                "WHERE home = $1 AND lost_at IS NULL AND stopped_at IS NULL", home)]
        finally:
            await conn.close()

    return asyncio.run(look())


def test_a_node_that_rejoins_under_a_name_taken_meanwhile_warns_once_and_so_does_the_other(
        two: tuple[Env, Env]) -> None:
    a, b = two
    assert a.store is not None
    url = a.store
    link = ThreadProxy(url)
    try:
        a.store = link.url
        a.start_daemon("--workers", "0")
        a.ok("config", "set", "heartbeat", "0.5")
        wait_for(lambda: len(_beats(url, a.home)) == 1, what="a up")
        link.pause()  # a is cut off: silent, then declared lost by b, which takes the name meanwhile
        wait_for(lambda: _silent_for(url, 4 * 0.5), timeout=20, what="a silent for 4 heartbeats")
        b.start_daemon("--workers", "0")
        wait_for(lambda: not _beats(url, a.home), timeout=20, what="a declared lost by b")
        link.resume()
        wait_for(lambda: "rejoins as" in a.log(), timeout=20, what="a rejoined")
        said = "node name same is also in use by a live node on"
        wait_for(lambda: said in a.log() and said in b.log(), timeout=20, what="both warned")
        assert f"{socket.gethostname()} ({b.home})" in a.log() and f"{socket.gethostname()} ({a.home})" in b.log()
        seen = _beats(url, a.home)
        wait_for(lambda: (now := _beats(url, a.home)) and now[0] > seen[0] + 1, timeout=20,
                 what="a few more heartbeats of a")
        assert a.log().count(said) == 1 and b.log().count(said) == 1
    finally:
        link.close()
