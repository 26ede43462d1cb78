"""PostgreSQL for the tests: a server to use, throwaway clusters, and a fresh database per test.

Where the server comes from, in this order:

1. `QUEUECTL_TEST_PG`, a URL whose user may create databases (`postgresql://postgres@host:5432/postgres`);
2. the local server, if one answers on 127.0.0.1:5432 as `postgres` without a password;
3. a throwaway cluster started from the installed binaries (`initdb`, `pg_ctl`), removed at the end;
4. otherwise the tests that need one skip, with one line saying how to enable them; with `CI=true`
   they fail instead.

Each test gets a database of its own (`CREATE DATABASE`), dropped when the test ends.
"""

from __future__ import annotations

import asyncio
import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import uuid
from urllib.parse import urlsplit, urlunsplit

ENABLE = ("PostgreSQL tests skipped: set QUEUECTL_TEST_PG=postgresql://USER@HOST:PORT/postgres "
          "(a user that may create databases), run PostgreSQL on 127.0.0.1:5432, or install its server binaries")
LOCAL = "postgresql://postgres@127.0.0.1:5432/postgres"


def with_database(url: str, name: str) -> str:
    """The URL `url` with its database replaced by `name`."""
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, "/" + name, parts.query, parts.fragment))


def run(coro_fn, *args):  # type: ignore[no-untyped-def]
    """Run an asyncpg coroutine function to its end on a loop of its own (callable from any test)."""
    result: list[object] = []
    error: list[BaseException] = []

    def target() -> None:
        try:
            result.append(asyncio.run(coro_fn(*args)))
        except BaseException as e:  # handed back to the caller
            error.append(e)

    import threading

    t = threading.Thread(target=target)
    t.start()
    t.join()
    if error:
        raise error[0]
    return result[0]


async def _execute(url: str, timeout: float, *sql: str) -> list[object]:
    import asyncpg

    conn = await asyncpg.connect(url, timeout=timeout)
    try:
        return [await conn.fetch(s) for s in sql]
    finally:
        await conn.close()


def execute(url: str, *sql: str, timeout: float = 5.0) -> list[object]:
    """Run each statement on a connection of its own to `url`; the rows of each."""
    return run(_execute, url, timeout, *sql)  # type: ignore[no-any-return]


def answers(url: str, timeout: float = 2.0) -> bool:
    try:
        execute(url, "SELECT 1", timeout=timeout)
        return True
    except Exception:
        return False


def binaries() -> str | None:
    """The directory of the installed PostgreSQL server binaries, newest version first."""
    found = shutil.which("pg_ctl")
    if found and os.path.exists(os.path.join(os.path.dirname(found), "initdb")):
        return os.path.dirname(found)
    dirs = sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=lambda d: int(d.split("/")[-2]) if
                  d.split("/")[-2].isdigit() else 0, reverse=True)
    for d in dirs:
        if os.path.exists(os.path.join(d, "initdb")) and os.path.exists(os.path.join(d, "pg_ctl")):
            return d
    return None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Cluster:
    """A throwaway PostgreSQL cluster of the test run's own: trust auth, listening on `host`:`port`.

    As root, the server runs as the `postgres` user (initdb refuses root).  `stop`, `start` and
    `restart` are for tests that take the server away under a running queue.
    """

    def __init__(self, bindir: str, host: str = "127.0.0.1", port: int | None = None) -> None:
        self.bindir = bindir
        self.host = host
        self.port = port or free_port()
        self.dir = tempfile.mkdtemp(prefix="qc-pg-", dir="/tmp")
        self.data = os.path.join(self.dir, "data")
        self.log = os.path.join(self.dir, "log")
        self.user: str | None = None
        if os.geteuid() == 0:
            self.user = "postgres"
            pw = pwd.getpwnam(self.user)
            os.chown(self.dir, pw.pw_uid, pw.pw_gid)

    @property
    def url(self) -> str:
        return f"postgresql://postgres@{self.host}:{self.port}/postgres"

    def _run(self, *argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        cmd = [os.path.join(self.bindir, argv[0]), *argv[1:]]
        if self.user is not None:
            cmd = ["runuser", "-u", self.user, "--", *cmd]
        return subprocess.run(cmd, capture_output=True, text=True, check=check, timeout=120)

    def init(self) -> Cluster:
        self._run("initdb", "-D", self.data, "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync")
        with open(os.path.join(self.data, "postgresql.auto.conf"), "a") as f:
            f.write(f"listen_addresses = '{self.host}'\nport = {self.port}\nunix_socket_directories = '{self.dir}'\n"
                    "max_connections = 200\nfsync = on\n")
        with open(os.path.join(self.data, "pg_hba.conf"), "a") as f:
            f.write("host all all 0.0.0.0/0 trust\n")
        return self.start()

    def start(self) -> Cluster:
        self._run("pg_ctl", "-D", self.data, "-l", self.log, "-w", "-t", "60", "start")
        return self

    def stop(self, mode: str = "fast") -> None:
        self._run("pg_ctl", "-D", self.data, "-m", mode, "-w", "-t", "60", "stop", check=False)

    def restart(self, mode: str = "fast") -> None:
        self.stop(mode)
        self.start()

    def remove(self) -> None:
        self.stop("immediate")
        shutil.rmtree(self.dir, ignore_errors=True)


class Server:
    """The server the tests use: an admin URL, and databases made on it per test."""

    def __init__(self, admin_url: str, origin: str, cluster: Cluster | None = None) -> None:
        self.admin_url = admin_url
        self.origin = origin  # where it came from, for the run's header
        self.cluster = cluster

    def create_database(self) -> str:
        name = "qc_" + uuid.uuid4().hex[:12]
        execute(self.admin_url, f'CREATE DATABASE "{name}"')
        return with_database(self.admin_url, name)

    def drop_database(self, url: str) -> None:
        name = urlsplit(url).path.lstrip("/")
        try:
            execute(self.admin_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        except Exception:
            pass

    def close(self) -> None:
        if self.cluster is not None:
            self.cluster.remove()


def find_server() -> Server | None:
    """A server for the tests, or None (then they skip, or fail under CI)."""
    url = os.environ.get("QUEUECTL_TEST_PG")
    if url:
        return Server(url, "QUEUECTL_TEST_PG")  # given explicitly: a failure to connect is the test's failure
    if answers(LOCAL):
        return Server(LOCAL, "the local server on 127.0.0.1:5432")
    bindir = binaries()
    if bindir is not None:
        try:
            cluster = Cluster(bindir).init()
        except (OSError, subprocess.SubprocessError, KeyError):
            return None
        return Server(cluster.url, f"a throwaway cluster from {bindir}", cluster)
    return None
