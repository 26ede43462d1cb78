"""Several queuectld nodes on one PostgreSQL database, and the record of every run their jobs made.

A `Nodes` harness starts N daemons, each with its own QUEUECTL_HOME, `--store URL --node nX`, and
the CLI against each.  Jobs run `job.sh`, which appends one line per event to a shared log
(O_APPEND lines far below PIPE_BUF, so lines never interleave):

    start <node> <id> <attempt> <epoch>     when the run begins
    tick  <node> <id> <attempt> <epoch>     every 0.1 s while it runs (a lower bound of its life)
    end   <node> <id> <attempt> <epoch>     when it ends by itself
    killed <node> <id> <attempt> <epoch>    when SIGTERM reached it

`Runs` reads that log back: each run's node, attempt, start and last sign of life, so a test can
check that a job ran once, or that two runs of one job never overlapped in time.
"""

from __future__ import annotations

import dataclasses
import json
import os
import random
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests import pgserver
from tests.conftest import Env, wait_for

JOB_SH = r"""log=$1; ticks=${2:-0}
me="${QUEUECTL_NODE:-?} ${QUEUECTL_JOB_ID:-?} ${QUEUECTL_ATTEMPT:-?}"
trap 'echo "killed $me $EPOCHREALTIME" >> "$log"; exit 143' TERM
echo "start $me $EPOCHREALTIME" >> "$log"
i=0
while [ "$i" -lt "$ticks" ]; do
  sleep 0.1 & wait $!
  echo "tick $me $EPOCHREALTIME" >> "$log"
  i=$((i + 1))
done
echo "end $me $EPOCHREALTIME" >> "$log"
"""


def require(what: str, ok: bool) -> None:
    """Skip with one line when this machine cannot run a proof; under CI=true that is a failure."""
    if ok:
        return
    if os.environ.get("CI") == "true":
        pytest.fail(f"cannot run this proof under CI=true: {what}")
    pytest.skip(what)


class Node(Env):
    """One queuectld of the cluster: its own home, the shared store, a node name, maybe a netns."""

    def __init__(self, home: str, store: str, name: str, netns: str | None = None) -> None:
        super().__init__(home, store=store, node=name)
        self.name = name
        self.netns = netns

    def daemon_argv(self, *args: str) -> list[str]:
        argv = super().daemon_argv(*args)
        return argv if self.netns is None else ["ip", "netns", "exec", self.netns, *argv]

    def kill9(self) -> float:
        """SIGKILL the daemon; the moment it was sent (epoch seconds)."""
        assert self.daemon is not None
        at = time.time()
        self.daemon.kill()
        self.daemon.wait(10)
        self.daemon = None
        return at


class Nodes:
    """The nodes of one test, on one database; a log file and job script for their jobs."""

    def __init__(self, store: str) -> None:
        self.store = store
        self.dir = tempfile.mkdtemp(prefix="qc-cl-", dir="/tmp")
        self.nodes: list[Node] = []
        self.script = os.path.join(self.dir, "job.sh")
        self.runlog = os.path.join(self.dir, "runs.log")
        with open(self.script, "w") as f:
            f.write(JOB_SH)

    def add(self, name: str, netns: str | None = None, store: str | None = None) -> Node:
        home = os.path.join(self.dir, name)
        os.mkdir(home)
        node = Node(home, store or self.store, name, netns)
        self.nodes.append(node)
        return node

    def command(self, ticks: int = 0) -> str:
        """A job that logs its run; `ticks`: it runs ticks * 0.1 s, logging each."""
        return f"bash {self.script} {self.runlog} {ticks}"

    def runs(self) -> Runs:
        return Runs.read(self.runlog)

    def close(self) -> None:
        for node in self.nodes:
            if node.daemon is not None and node.daemon.poll() is None:
                node.daemon.kill()
                node.daemon.wait()
        kill_jobs_of(self.dir)
        shutil.rmtree(self.dir, ignore_errors=True)

    def logs(self) -> str:
        return "\n".join(f"--- {n.name}'s log ends:\n{n.log()[-3000:]}" for n in self.nodes)


def _processes() -> Iterator[tuple[int, bytes]]:
    """Every process there is now, with its command line (one that has gone meanwhile is left out)."""
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                yield int(pid), f.read()
        except OSError:
            continue


def kill_jobs_of(marker: str) -> int:
    """SIGKILL every process whose command line names `marker` (jobs a test left running); how many."""
    killed = 0
    for pid, cmd in _processes():
        if marker.encode() in cmd and b"queuectld" not in cmd and pid != os.getpid():
            try:
                os.kill(pid, signal.SIGKILL)
                killed += 1
            except ProcessLookupError:
                pass
    return killed


def job_pids(marker: str, node: str) -> list[int]:
    """The processes of this test's jobs (their command line names `marker`) that `node` started."""
    found = []
    for pid, cmd in _processes():
        if marker.encode() not in cmd:
            continue
        try:
            with open(f"/proc/{pid}/environ", "rb") as f:
                environ = f.read().split(b"\0")
        except OSError:
            continue
        if f"QUEUECTL_NODE={node}".encode() in environ:
            found.append(pid)
    return found


def completed_once(final: dict[str, str], nodes: Nodes) -> Runs:
    """Assert every job of `final` (id -> state) completed and no two runs of one job overlapped; the runs."""
    lost = [i for i, s in final.items() if s != "completed"]
    assert not lost, f"{len(lost)} acknowledged jobs did not complete: {lost[:5]}"
    runs = nodes.runs()
    assert not runs.overlaps(), runs.overlaps()[:3]
    return runs


@dataclasses.dataclass
class Run:
    node: str
    job: str
    attempt: str
    start: float
    last: float  # the latest sign of life: its start, a tick, its end, or its kill
    ended: bool = False
    killed: bool = False


class Runs:
    def __init__(self, runs: list[Run]) -> None:
        self.all = runs
        self.by_job: dict[str, list[Run]] = {}
        for r in runs:
            self.by_job.setdefault(r.job, []).append(r)

    @classmethod
    def read(cls, path: str) -> Runs:
        runs: list[Run] = []
        open_: dict[tuple[str, str, str], Run] = {}
        try:
            with open(path) as f:
                lines = f.read().splitlines()
        except FileNotFoundError:
            lines = []
        for line in lines:
            parts = line.split()
            if len(parts) != 5:
                raise AssertionError(f"a torn line in the run log: {line!r}")
            kind, node, job, attempt, at = parts[0], parts[1], parts[2], parts[3], float(parts[4])
            key = (node, job, attempt)
            if kind == "start":
                open_[key] = Run(node, job, attempt, at, at)
                runs.append(open_[key])
                continue
            run = open_.get(key)
            assert run is not None, f"{kind} without a start: {line!r}"
            run.last = max(run.last, at)
            run.ended = run.ended or kind == "end"
            run.killed = run.killed or kind == "killed"
        return cls(runs)

    def overlaps(self) -> list[tuple[Run, Run]]:
        """Pairs of runs of one job where the later one started before the earlier one's last sign of life."""
        found = []
        for runs in self.by_job.values():
            ordered = sorted(runs, key=lambda r: r.start)
            for a, b in zip(ordered, ordered[1:]):
                if b.start <= a.last:
                    found.append((a, b))
        return found


@pytest.fixture
def nodes(pg_database: str) -> Iterator[Nodes]:
    c = Nodes(pg_database)
    yield c
    c.close()


def configure(node: Node, **settings: str) -> None:
    """Start `node` alone, set cluster-wide settings, and start it again: every node then starts on
    them (a node that sees the heartbeat interval change judges others by the old one for a while)."""
    node.start_daemon("--workers", "0")
    for key, value in settings.items():
        node.ok("config", "set", key.replace("_", "-"), value)
    node.stop_daemon()
    node.start_daemon("--workers", "0")


def enqueue_batch(node: Node, jobs: list[dict[str, Any]]) -> list[str]:
    r = node.ok("enqueue", "-", input="".join(json.dumps(j) + "\n" for j in jobs))
    ids = r.out.split()
    assert len(ids) == len(jobs), r
    return ids


def states(node: Node, ids: list[str] | None = None) -> dict[str, str]:
    """Each job's state as `node` sees it (all jobs, or those of `ids`)."""
    jobs = {j["id"]: j["state"] for j in node.jobs()}
    return jobs if ids is None else {i: jobs.get(i, "missing") for i in ids}


def all_final(node: Node, ids: list[str], timeout: float, what: str = "every job to complete") -> dict[str, str]:
    last: list[dict[str, str]] = [{}]

    def final() -> dict[str, str] | None:
        last[0] = s = states(node, ids)
        return s if all(v in ("completed", "dead") for v in s.values()) else None

    try:
        return wait_for(final, timeout, what)  # type: ignore[no-any-return]
    except AssertionError as e:
        waiting = {i: v for i, v in last[0].items() if v not in ("completed", "dead")}
        shown = {i: node.show(i) for i in list(waiting)[:3] if waiting[i] != "missing"}
        detail = "; ".join(f"{j['id']}: {j['state']} attempts {j['attempts']} worker {j['worker']} "
                           f"locked_by {j['locked_by']} error {j['error_message']}" for j in shown.values())
        some = dict(list(waiting.items())[:8])
        raise AssertionError(f"{e}; not final: {len(waiting)} {some}; e.g. {detail}") from None


def drained(node: Node, total: int, timeout: float) -> dict[str, int]:
    """Wait until `node`'s status counts `total` final jobs and none waiting or running; the counts."""
    last: list[dict[str, int]] = [{}]

    def done() -> bool:
        last[0] = counts = node.ok("status", "--json").json()["jobs"]
        return counts["completed"] + counts["dead"] == total and sum(counts.values()) == total

    try:
        wait_for(done, timeout, f"{total} jobs to be final")
    except AssertionError as e:
        raise AssertionError(f"{e}; the counts: {last[0]}") from None
    return last[0]


def node_rows(node: Node) -> list[dict[str, Any]]:
    """`queuectl nodes --json` on `node`."""
    return node.ok("nodes", "--json").json()  # type: ignore[no-any-return]


# --- a network namespace reaching a throwaway PostgreSQL over a veth pair ----------------------


class Netns:
    """`ip netns` NAME with one end of a veth pair (ADDR_IN); the host keeps the other end (ADDR_HOST)."""

    def __init__(self) -> None:
        tag = f"{os.getpid() % 10000}{random.randrange(100)}"
        self.name = f"qc-ns-{tag}"
        self.host_if = f"qch{tag}"[:15]
        self.ns_if = f"qcn{tag}"[:15]
        octet = random.randrange(1, 250)
        self.host_addr = f"10.213.{octet}.1"
        self.ns_addr = f"10.213.{octet}.2"
        self.made = False

    def _ip(self, *args: str, ns: bool = False) -> None:
        argv = ["ip", *(["netns", "exec", self.name, "ip"] if ns else []), *args]
        subprocess.run(argv, check=True, capture_output=True, text=True, timeout=10)

    def create(self) -> Netns:
        self._ip("netns", "add", self.name)
        self.made = True
        self._ip("link", "add", self.host_if, "type", "veth", "peer", "name", self.ns_if)
        self._ip("link", "set", self.ns_if, "netns", self.name)
        self._ip("addr", "add", self.host_addr + "/30", "dev", self.host_if)
        self._ip("link", "set", self.host_if, "up")
        self._ip("addr", "add", self.ns_addr + "/30", "dev", self.ns_if, ns=True)
        self._ip("link", "set", self.ns_if, "up", ns=True)
        self._ip("link", "set", "lo", "up", ns=True)
        return self

    def cut(self) -> float:
        at = time.time()
        self._ip("link", "set", self.host_if, "down")
        return at

    def mend(self) -> float:
        self._ip("link", "set", self.host_if, "up")
        return time.time()

    def remove(self) -> None:
        if not self.made:
            return
        subprocess.run(["ip", "link", "del", self.host_if], capture_output=True)
        subprocess.run(["ip", "netns", "del", self.name], capture_output=True)


@pytest.fixture
def throwaway_pg() -> Iterator[pgserver.Cluster]:
    """A PostgreSQL cluster of this test's own on 127.0.0.1 (to restart under load)."""
    bindir = pgserver.binaries()
    require("no PostgreSQL server binaries (initdb, pg_ctl) to start a throwaway cluster", bindir is not None)
    assert bindir is not None
    cluster = pgserver.Cluster(bindir).init()
    yield cluster
    cluster.remove()


@pytest.fixture
def netns_pg() -> Iterator[tuple[Netns, pgserver.Cluster]]:
    """A network namespace, and a throwaway PostgreSQL bound to the host side of its veth pair."""
    require("the partition proof needs root (ip netns)", os.geteuid() == 0)
    require("the partition proof needs iproute2's `ip`", shutil.which("ip") is not None)
    bindir = pgserver.binaries()
    require("no PostgreSQL server binaries (initdb, pg_ctl) to start a throwaway cluster", bindir is not None)
    assert bindir is not None
    ns = Netns()
    try:
        ns.create()
        cluster = pgserver.Cluster(bindir, host=ns.host_addr).init()
    except BaseException:
        ns.remove()
        raise
    yield ns, cluster
    cluster.remove()
    ns.remove()


@pytest.fixture
def nodes_on() -> Iterator[Any]:
    """Nodes on a database the test chose (a throwaway cluster's); closed before that cluster goes."""
    made: list[Nodes] = []

    def make(url: str) -> Nodes:
        made.append(Nodes(url))
        return made[-1]

    yield make
    for n in made:
        n.close()


class Enqueuer(threading.Thread):
    """Enqueues one job after another through `node`'s CLI; keeps the ids of those acknowledged (exit 0)."""

    def __init__(self, node: Node, command: str, prefix: str) -> None:
        super().__init__(daemon=True)
        self.node, self.command, self.prefix = node, command, prefix
        self.acked: list[str] = []
        self.refused = 0
        self.stop = threading.Event()

    def run(self) -> None:
        i = 0
        while not self.stop.is_set():
            job_id = f"{self.prefix}{i}"
            i += 1
            try:
                r = self.node.q("enqueue", json.dumps({"id": job_id, "command": self.command, "max_retries": 5}))
            except subprocess.TimeoutExpired:  # not acknowledged
                self.refused += 1
                continue
            if r.code == 0:
                self.acked.append(r.out.strip())
            else:
                self.refused += 1
                time.sleep(0.05)
