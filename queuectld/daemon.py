"""queuectld: start-up (lock, store, recovery, socket), serving, and ordered shutdown.

Start-up installs the signal handlers, takes the home's lock, opens the
store (a replay, for the journal), ends every run the store shows as still
going (killing what survived of it), then binds the socket.

SIGTERM or SIGINT starts the shutdown, which is ordered and bounded: the
daemon says it is stopping and starts no new job, but keeps answering;
running jobs get the grace period, then SIGTERM, then SIGKILL 3 s later, as
a timeout does; then it stops listening, makes the store durable, removes
the socket and exits 0.  A second signal forces the exit: running jobs are
killed at once.  Every background task (the pool, the watchdog, the
journal's compaction) is cancelled and awaited by its owner on the way out.
"""

from __future__ import annotations

import asyncio
import fcntl
import logging
import os
import resource
import signal
import socket
import stat
import time

from queuectl_client import paths as _paths
from queuectl_client.wire import VERSION

from . import audit
from .bus import Bus
from .handlers import Handlers
from .metrics import Observer
from .policy import Policy, PolicyError
from .pool import Pool
from .procs import pid_alive
from .retention import Retention
from .runner import Runner
from .scheduler import Scheduler
from .server import Server
from .stats_keeper import Keeper
from .store import Store, StoreError
from .systemd import Systemd

log = logging.getLogger("queuectld")

EXIT_LOCKED = 75  # another daemon owns this home (EX_TEMPFAIL); clients keep waiting for it
EXIT_FATAL = 1
LOCK_WAIT = 10.0  # seconds to wait for the spawners of a daemon that died to release its lock


class StartupError(Exception):
    """The daemon cannot start; the message says why."""

    exit_code = EXIT_FATAL


class Locked(StartupError):
    """Another daemon holds this home's lock."""

    exit_code = EXIT_LOCKED


class Daemon:
    def __init__(self, paths: _paths.Paths, store: Store, workers: int | None = None, grace: float = 10.0,
                 systemd: Systemd | None = None, policy: Policy | None = None) -> None:
        self.paths = paths
        self.policy = policy  # the command policy (--allow-commands), read again on SIGHUP
        self.store = store
        self.systemd = systemd or Systemd(None, None, 0)
        self._inherited_socket = False
        self._watchdog: asyncio.Task[None] | None = None
        self.workers = workers
        self.grace = grace
        self.exit_code = 0
        self.started_at = time.time()
        self._stop: asyncio.Event | None = None
        self._force: asyncio.Event | None = None
        self._signals = 0
        self._lock_fd = -1
        self.bus = Bus()
        self.runner: Runner | None = None
        self.pool: Pool | None = None
        self.handlers: Handlers | None = None
        self.retention: Retention | None = None
        self.scheduler: Scheduler | None = None
        self.keeper: Keeper | None = None
        self.server: Server | None = None

    # -- start-up -------------------------------------------------------------

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._stop = self._stop or asyncio.Event()
        self._force = self._force or asyncio.Event()
        _raise_fd_limit()
        self._prepare_dirs()
        self._lock()
        replayed = await self.store.open()
        self.store.on_fatal = self._fatal
        os.environ["QUEUECTL_NODE"] = self.store.node  # every job's, beside QUEUECTL_JOB_ID (the spawners copy it)
        self.runner = Runner(loop, self._lock_fd)
        if not self.runner.subreaper:
            log.warning("cannot become a child subreaper: processes that leave a job's group may outlive it")
        self.keeper = Keeper(self.store)
        self.store.on_sync = self.keeper.stats.synced
        self.pool = Pool(self.store, self.runner, self.paths, self.bus, self.keeper.stats)
        await self.pool.recover()
        if self.workers is not None:
            with audit.acting(os.getuid(), "queuectld", "--workers"):  # the admin's change, on the command line
                await self.store.resize(self.workers)
        await self.store.sync()
        sock = self._inherit() or self._bind()
        self.retention = Retention(self.store, self.pool, self.bus)
        self.scheduler = Scheduler(self.store, self.pool)
        observer = Observer(self.store, self.pool, self.keeper.stats, self.started_at)
        self.scheduler.refuse = self.policy.check if self.policy is not None else None
        self.handlers = Handlers(self.store, self.pool, self.bus, self.retention, self.scheduler, observer,
                                 self.policy)
        await self.scheduler.catch_up()  # a slot missed while the daemon was down fires now, once
        self.server = Server(self.handlers)
        await self.server.start(sock)
        counts = await self.store.counts()
        total = sum(counts.values())
        summary = ", ".join(f"{n} {s}" for s, n in counts.items() if n) or "empty"
        log.info(
            "queuectld %s ready on %s%s: %d records replayed, %d jobs (%s), %d worker(s)",
            VERSION, self.paths.socket, " (from systemd)" if self._inherited_socket else "", replayed,
            total, summary, self.store.pool_size,
        )
        self.systemd.notify(f"READY=1\nMAINPID={os.getpid()}\nSTATUS=ready: {total} jobs ({summary})")
        if self.systemd.watchdog_interval:
            self._watchdog = asyncio.create_task(self._ping(self.systemd.watchdog_interval), name="watchdog")
        self.pool.start()
        self.retention.start()
        self.scheduler.start()
        self.keeper.start()

    async def _ping(self, interval: float) -> None:
        """Tell systemd the loop is alive; a loop that stops turning stops the pings."""
        while self.systemd.notify("WATCHDOG=1"):
            await asyncio.sleep(interval)

    def _prepare_dirs(self) -> None:
        for d in (self.paths.state, self.paths.socket_dir, self.paths.output):
            os.makedirs(d, mode=0o700, exist_ok=True)
        for d in {self.paths.state, self.paths.socket_dir}:
            st = os.lstat(d)
            if stat.S_ISLNK(st.st_mode) or not stat.S_ISDIR(st.st_mode):
                raise StartupError(f"refusing {d}: not a directory (a symlink?)")
            if st.st_uid != os.getuid():
                raise StartupError(f"refusing {d}: owned by uid {st.st_uid}, not {os.getuid()}")
        os.chmod(self.paths.socket_dir, 0o700)

    def _lock(self) -> None:
        """Take the home's lock; the lock file says who holds it, and whether it is stopping.

        A daemon's spawners hold its lock until they have killed its jobs: if the daemon named
        in the file is gone, they are finishing that, and the lock comes free in a moment.
        """
        fd = os.open(self.paths.lock, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        deadline = time.monotonic() + LOCK_WAIT
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                holder = os.pread(fd, 64, 0).decode(errors="replace").split()
                pid = holder[0] if holder else "?"
                if (pid.isdigit() and pid_alive(int(pid))) or time.monotonic() > deadline:
                    os.close(fd)
                    raise Locked(f"another queuectld (pid {pid}) is running on {self.paths.state}") from None
                time.sleep(0.01)
        self._lock_fd = fd
        self._say_in_lock("")

    def _say_in_lock(self, phase: str) -> None:
        text = f"{os.getpid()} {phase}".rstrip() + "\n"
        os.ftruncate(self._lock_fd, 0)
        os.pwrite(self._lock_fd, text.encode(), 0)

    def _inherit(self) -> socket.socket | None:
        """The socket systemd listens on for us (socket activation), if it passed one."""
        try:
            sock = self.systemd.inherited_socket()
        except (OSError, ValueError) as e:
            raise StartupError(f"cannot use the socket from systemd: {e}") from None
        if sock is None:
            return None
        name = sock.getsockname()
        if name != self.paths.socket:
            log.warning("systemd's socket is %s, but clients of this home look for %s", name, self.paths.socket)
        self._inherited_socket = True
        return sock

    def _bind(self) -> socket.socket:
        path = self.paths.socket
        if len(path.encode()) > 107:
            raise StartupError(f"socket path too long for a Unix socket ({len(path)} bytes): {path}")
        # We hold the lock, so a socket file here belongs to a daemon that died.
        try:
            os.unlink(path)
            log.info("removed a stale socket %s", path)
        except FileNotFoundError:
            pass
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        old = os.umask(0o177)
        try:
            sock.bind(path)
        except OSError as e:
            sock.close()
            raise StartupError(f"cannot bind {path}: {e.strerror}") from None
        finally:
            os.umask(old)
        os.chmod(path, 0o600)
        sock.listen(1024)
        sock.setblocking(False)
        return sock

    # -- running and stopping ---------------------------------------------------

    def request_stop(self) -> None:
        if self._stop is not None:
            self._stop.set()

    def _on_signal(self) -> None:
        self._signals += 1
        if self._signals == 1:
            self.request_stop()
        elif self._force is not None and not self._force.is_set():
            log.warning("second signal: killing running jobs and exiting now")
            self._force.set()

    def _reload_policy(self) -> None:
        assert self.policy is not None
        try:
            self.policy.reload()
        except PolicyError as e:
            log.error("SIGHUP: %s; the policy in force stays (%d patterns)", e, len(self.policy.patterns))
            return
        log.info("SIGHUP: read the command policy %s again: %d patterns", self.policy.path, len(self.policy.patterns))

    def _fatal(self, err: StoreError) -> None:
        self.exit_code = EXIT_FATAL
        self.request_stop()

    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        self._force = asyncio.Event()
        # Before the store opens: a signal during a long replay is kept, and acted on after it.
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._on_signal)
        if self.policy is not None:
            loop.add_signal_handler(signal.SIGHUP, self._reload_policy)
        await self.start()
        await self._stop.wait()
        await self.shutdown()
        return self.exit_code

    async def shutdown(self) -> None:
        log.info("stopping")
        self.systemd.notify("STOPPING=1\nSTATUS=stopping: waiting for running jobs")
        if self.handlers is not None:
            self.handlers.stop()
        if self.retention is not None:
            await self.retention.close()
        if self.scheduler is not None:
            await self.scheduler.close()
        if self._lock_fd >= 0:
            self._say_in_lock("stopping")
        if self.pool is not None:
            assert self._force is not None
            await self.pool.drain(self.grace if self.exit_code == 0 else 0.0, self._force)
        if self.server is not None:
            await self.server.close()
        if self.pool is not None:
            await self.pool.close()
        if self.keeper is not None:
            await self.keeper.close()
        try:
            await self.store.sync()
        except StoreError as e:
            log.error("the last changes may not be on disk: %s", e)
            self.exit_code = EXIT_FATAL
        await self.store.close()
        if self.runner is not None:
            await self.runner.close()
        if self._watchdog is not None:
            self._watchdog.cancel()
            await asyncio.wait([self._watchdog])
        if not self._inherited_socket:  # systemd's socket stays, to start the next daemon
            try:
                os.unlink(self.paths.socket)
            except FileNotFoundError:
                pass
        if self._lock_fd >= 0:
            os.close(self._lock_fd)
        log.info("stopped")


def _raise_fd_limit() -> None:
    """Each connection and each running job costs descriptors: take all the kernel allows."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


