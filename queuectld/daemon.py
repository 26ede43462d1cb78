"""queuectld: start-up (lock, replay, recovery, socket), serving, and ordered shutdown.

Start-up takes the home's lock, replays the journal, ends every run the
journal shows as still going (killing its process group if it survived),
then binds the socket.  SIGTERM or SIGINT starts the shutdown: stop
listening, start no new job, let running jobs finish within the grace
period, kill what is left as interrupted, make the journal durable, remove
the socket, exit 0.
"""

from __future__ import annotations

import argparse
import asyncio
import errno
import fcntl
import logging
import os
import resource
import signal
import socket
import stat
import sys
import time

from queuectl_client import paths as _paths
from queuectl_client.connection import __version__

from . import faults
from .config import ConfigError, parse_size
from .handlers import Handlers
from .journal import Journal, JournalError
from .pool import Pool
from .queue import Queue
from .runner import Runner, kill_orphan_group
from .server import Server
from .store import Store
from .systemd import Systemd

log = logging.getLogger("queuectld")

EXIT_LOCKED = 75  # another daemon owns this home (EX_TEMPFAIL); clients keep waiting for it
EXIT_FATAL = 1


class StartupError(Exception):
    """The daemon cannot start; the message says why."""

    exit_code = EXIT_FATAL


class Locked(StartupError):
    """Another daemon holds this home's lock."""

    exit_code = EXIT_LOCKED


class Daemon:
    def __init__(self, paths: _paths.Paths, workers: int | None = None, grace: float = 10.0,
                 salvage: bool = False, compact_min: int = 4 << 20, systemd: Systemd | None = None) -> None:
        self.paths = paths
        self.systemd = systemd or Systemd(None, None, 0)
        self._inherited_socket = False
        self._watchdog: asyncio.Task[None] | None = None
        self.workers = workers
        self.grace = grace
        self.salvage = salvage
        self.exit_code = 0
        self._stop: asyncio.Event | None = None
        self._lock_fd = -1
        self.queue = Queue()
        self.journal = Journal(paths.journal, salvage=salvage, compact_min=compact_min)
        self.store = Store(self.queue, self.journal)
        self.runner: Runner | None = None
        self.pool: Pool | None = None
        self.server: Server | None = None

    # -- start-up -------------------------------------------------------------

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        _raise_fd_limit()
        self._prepare_dirs()
        self._lock()
        replayed = 0
        for event in self.journal.open():
            self.queue.apply(event)
            replayed += 1
        self.journal.on_fatal.append(self._fatal)
        self.journal.snapshot_source = self.queue.snapshot
        if self.salvage:
            # Start the repaired state on fresh files; the damaged ones are kept aside.
            await self.journal.compact(keep_old=True)
            log.warning("salvage complete: %d jobs kept; the damaged files are in %s/salvaged-*",
                        len(self.queue), self.paths.journal)
        self.runner = Runner(loop)
        self.pool = Pool(self.store, self.runner, self.paths)
        self._recover()
        if self.workers is not None:
            self.store.record(self.pool.resize(self.workers))
        await self.journal.commit()
        sock = self._inherit() or self._bind()
        self.server = Server(Handlers(self.store, self.pool, self.paths))
        await self.server.start(sock)
        counts = self.queue.counts()
        summary = ", ".join(f"{n} {s}" for s, n in counts.items() if n) or "empty"
        log.info(
            "queuectld %s ready on %s%s: %d records replayed, %d jobs (%s), %d worker(s)",
            __version__, self.paths.socket, " (from systemd)" if self._inherited_socket else "", replayed,
            len(self.queue), summary, self.queue.pool_size,
        )
        self.systemd.notify(f"READY=1\nMAINPID={os.getpid()}\nSTATUS=ready: {len(self.queue)} jobs ({summary})")
        if self.systemd.watchdog_interval:
            self._watchdog = asyncio.create_task(self._ping(self.systemd.watchdog_interval))
        self.pool.dispatch()

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
        fd = os.open(self.paths.lock, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            pid = os.read(fd, 32).decode(errors="replace").strip() or "?"
            os.close(fd)
            raise Locked(f"another queuectld (pid {pid}) is running on {self.paths.state}") from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._lock_fd = fd

    def _recover(self) -> None:
        """Runs the journal shows as going were interrupted: kill their groups, count the attempt."""
        running = list(self.queue.by_state["processing"].values())
        for job in running:
            pgid, pid_start = self.queue.running.get(job.id, (0, 0))
            if kill_orphan_group(pgid, pid_start):
                log.warning("killed the surviving process group %d of interrupted job %s", pgid, job.id)
        if running:
            log.warning("%d job(s) were interrupted by the last stop; each counts as a failed attempt", len(running))
            self.store.record(list(self.queue.interrupted(time.time())))

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

    def _fatal(self, err: JournalError) -> None:
        self.exit_code = EXIT_FATAL
        self.request_stop()

    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        await self.start()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.request_stop)
        assert self._stop is not None
        await self._stop.wait()
        await self.shutdown()
        return self.exit_code

    async def shutdown(self) -> None:
        log.info("stopping")
        self.systemd.notify("STOPPING=1\nSTATUS=stopping: waiting for running jobs")
        if self.server is not None:
            await self.server.close()
        if self.pool is not None:
            await self.pool.drain(self.grace if self.exit_code == 0 else 0.0)
        try:
            await self.journal.commit()
        except JournalError as e:
            log.error("the journal's last records may not be on disk: %s", e)
            self.exit_code = EXIT_FATAL
        self.journal.close()
        if self.runner is not None:
            self.runner.close()
        if self._watchdog is not None:
            self._watchdog.cancel()
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


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="queuectld", description="The queuectl daemon.")
    ap.add_argument("--home", help="state directory (default: $QUEUECTL_HOME, else $XDG_STATE_HOME/queuectl)")
    ap.add_argument("--workers", type=int, metavar="N", help="set the worker pool to N (stored, like `worker start`)")
    ap.add_argument("--grace", type=float, default=10.0, metavar="S",
                    help="seconds running jobs get to finish at shutdown (default 10)")
    ap.add_argument("--salvage", action="store_true",
                    help="start from a damaged journal: keep every readable record, report what was dropped")
    ap.add_argument("--compact-min", default="4M", metavar="SIZE",
                    help="compact the journal once its logs pass SIZE and twice the snapshot (default 4M)")
    ap.add_argument("--version", action="version", version=f"queuectld {__version__}")
    args = ap.parse_args(argv)
    try:
        args.compact_min = parse_size(args.compact_min, minimum=4096)
    except ConfigError as e:
        ap.error(f"--compact-min: {e}")
    if args.workers is not None and not 0 <= args.workers <= 1024:
        ap.error("--workers must be between 0 and 1024")
    if args.grace < 0:
        ap.error("--grace must not be negative")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, stream=sys.stderr,
        format="%(asctime)s queuectld[%(process)d] %(levelname)s %(message)s",
    )
    try:
        faults.arm_from_env()
    except ValueError as e:
        log.error("%s", e)
        return EXIT_FATAL
    systemd = Systemd.from_environ()  # before anything copies the environment for jobs
    paths = _paths.resolve(args.home)
    # Jobs enqueued without a directory run in the user's home, as under cron.
    os.chdir(os.path.expanduser("~"))
    daemon = Daemon(paths, args.workers, args.grace, args.salvage, args.compact_min, systemd)
    import uvloop

    try:
        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            return runner.run(daemon.run())
    except StartupError as e:
        log.error("%s", e)
        return e.exit_code
    except JournalError as e:
        log.error("cannot start: %s", e)
        return EXIT_FATAL
    except OSError as e:
        if e.errno == errno.ENOSPC:
            log.error("cannot start: disk full (%s)", e.filename or e)
        else:
            log.error("cannot start: %s", e)
        return EXIT_FATAL


def entry() -> None:
    sys.exit(main())
