"""Running jobs: the daemon's side of its spawner processes.

Only this module and `spawner` touch job processes.  `posix_spawn` holds its
caller until the child has exec'd (about 0.6 ms here), so the event loop
does not spawn: it hands each job to one of a few spawner processes
(`queuectld.spawner`, one per core), least loaded first, and hears back
when the job started and when it ended.  Messages are batched both ways: the
spawns asked for in one loop turn go out in one write, and one read brings
every start and exit a spawner had to report.

A spawner that dies is noticed at once (its socket closes): its jobs end as
interrupted, their processes (adopted by the daemon, a child subreaper, since
their parent died) are killed and reaped, and a new spawner takes its place.
See docs/DECISIONS.md, "Spawner processes", for why a job still never runs
twice at once.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
import sys
from collections.abc import Callable

from . import spawner
from . import spawner_wire as sp
from .exits import Failure
from .procs import become_subreaper, children, kill_with_group, proc_stat, reap

log = logging.getLogger("queuectld.runner")

KILL_GRACE = spawner.KILL_GRACE
SWEEP_AGAIN = spawner.SWEEP_AGAIN
ENVS_KEPT = 64  # environments a spawner keeps, the most recently sent
SPAWNER_EXIT_WAIT = 5.0  # seconds a spawner gets to kill its jobs and exit at shutdown
SPAWNER_DIED = "interrupted: the job's spawner process died"


class Result:
    __slots__ = ("error", "exit_code", "failure", "output")

    def __init__(self, exit_code: int | None, error: str | None, output: bool = True, failure: Failure = None) -> None:
        self.exit_code = exit_code
        self.error = error
        self.output = output  # the run may have left output files (False: it created none)
        self.failure = failure  # what a retry rule judges: an exit code, "timeout", "signal" (see exits)


class Run:
    """One job handed to a spawner: its process once the spawner reports it started."""

    __slots__ = ("discard", "interrupted", "job_id", "link", "pgid", "pid_start", "started", "token")

    def __init__(self, token: int, job_id: str, link: Link) -> None:
        self.token = token
        self.job_id = job_id
        self.link = link
        self.pgid = 0  # the job's process group (and session), once started
        self.pid_start = 0
        self.started = False  # the spawner reported the start
        self.interrupted = False  # the daemon stopped it
        self.discard = False  # it must not count: its start could not be recorded


class Link:
    """One spawner process and the socket to it."""

    def __init__(self, runner: Runner, pid: int, sock: socket.socket) -> None:
        self.runner = runner
        self.pid = pid
        self.sock = sock
        self.runs: dict[int, Run] = {}  # token -> run
        self.outbox: list[list] = []  # type: ignore[type-arg]
        self.inbuf = bytearray()
        self.pending = bytearray()  # bytes a full socket buffer did not take yet
        self.alive = True
        self.envs: dict[str, None] = {}  # the environments this spawner keeps, oldest sent first


class Runner:
    """Hands jobs to spawner processes and reports their starts and exits."""

    def __init__(self, loop: asyncio.AbstractEventLoop, lock_fd: int, spawners: int | None = None,
                 on_started: Callable[[Run], None] | None = None,
                 on_exit: Callable[[Run, Result], None] | None = None) -> None:
        self.loop = loop
        self._lock_fd = lock_fd
        self.on_started = on_started or _ignore_start
        self.on_exit = on_exit or _ignore_exit
        self._token = 0
        self._flush_scheduled = False
        self._closing = False
        self._sweep_timer: asyncio.TimerHandle | None = None
        self._lease: list[object] | None = None  # the last lease sent, for a spawner that takes over
        self.subreaper = become_subreaper()  # to adopt, kill and reap what a dead spawner leaves
        self.links = [self._spawn_spawner() for _ in range(spawners or os.cpu_count() or 1)]

    # -- spawners ---------------------------------------------------------------

    def _spawn_spawner(self) -> Link:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        lock = os.dup(self._lock_fd)
        try:
            os.set_inheritable(theirs.fileno(), True)
            os.set_inheritable(lock, True)
            # Its own process group: a Ctrl-C meant for the daemon's terminal is not for it.
            pid = os.posix_spawn(sys.executable, [sys.executable, "-m", "queuectld.spawner", str(theirs.fileno()),
                                                  str(lock)], dict(os.environ), setpgroup=0)
        finally:
            theirs.close()
            os.close(lock)
        ours.setblocking(False)
        link = Link(self, pid, ours)
        self.loop.add_reader(ours.fileno(), self._readable, link)
        if self._lease is not None:
            self._send(link, self._lease)
        return link

    def _readable(self, link: Link) -> None:
        try:
            data = link.sock.recv(1 << 20)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            self._lost(link)
            return
        link.inbuf += data
        for msg in sp.unframe(link.inbuf):
            kind, token = msg[0], msg[1]
            run = link.runs.get(token)
            if run is None:
                continue
            if kind == sp.STARTED:
                run.pgid, run.pid_start, run.started = msg[2], msg[3], True
                self.on_started(run)
            elif kind == sp.EXITED:
                del link.runs[token]
                self.on_exit(run, Result(msg[2], msg[3], msg[4], msg[5]))
            elif kind == sp.FAILED:
                del link.runs[token]
                self.on_exit(run, Result(None, msg[2], False))

    def _lost(self, link: Link) -> None:
        """A spawner died: its jobs end as interrupted, what is left of them is killed, another takes over."""
        if not link.alive:
            return
        link.alive = False
        self.loop.remove_reader(link.sock.fileno())
        self.loop.remove_writer(link.sock.fileno())
        link.sock.close()
        if self._closing:
            return
        log.error("spawner process %d died; its %d job(s) end as interrupted, and a new one takes over",
                  link.pid, len(link.runs))
        self._sweep()
        runs, link.runs = link.runs, {}
        self.links[self.links.index(link)] = self._spawn_spawner()
        for run in runs.values():
            self.on_exit(run, Result(None, SPAWNER_DIED))

    def _sweep(self) -> None:
        """Kill and reap what the daemon adopted: the jobs of a spawner that died, and their children."""
        if self._sweep_timer is not None:
            self._sweep_timer.cancel()
            self._sweep_timer = None
        spawners = {link.pid for link in self.links if link.alive}
        adopted = False
        for pid in children():
            if pid in spawners:
                continue
            adopted = True
            state, pgid, _ = proc_stat(pid)
            if state == "Z" or not state:
                reap(pid)
                continue
            kill_with_group(pid, pgid)
        if adopted:
            self._sweep_timer = self.loop.call_later(SWEEP_AGAIN, self._sweep)

    # -- jobs ------------------------------------------------------------------------

    def start(self, job_id: str, command: str, attempt: int, cwd: str | None, timeout: float | None,
              out_path: str, err_path: str, limit: int, idle_timeout: float | None = None,
              env_key: str | None = None, env: dict[str, str] | None = None) -> Run:
        """Ask the least busy spawner to start the job; its start or failure is reported later.
        `timeout` and `idle_timeout` (seconds without output) are kept by the spawner.

        The job's environment goes to a spawner once, by key (`env`, with `env_key`), and the
        spawner keeps the last ENVS_KEPT of them; `env_key` None: the daemon's environment."""
        link = min(self.links, key=lambda lk: len(lk.runs))
        self._token += 1
        run = Run(self._token, job_id, link)
        link.runs[run.token] = run
        if env_key is not None and env_key not in link.envs:
            if len(link.envs) >= ENVS_KEPT:
                oldest = next(iter(link.envs))
                del link.envs[oldest]
                self._send(link, [sp.FORGET, oldest])
            link.envs[env_key] = None
            self._send(link, [sp.ENV, env_key, env])
        self._send(link, [sp.SPAWN, run.token, job_id, command, attempt, cwd, out_path, err_path, limit, timeout,
                          idle_timeout, env_key])
        return run

    def lease(self, until: float, reason: str) -> None:
        """Runs may live until `until` (time.monotonic()): past it, the spawners kill them, each ending
        "interrupted: REASON", and refuse to start jobs until the next lease (see `spawner`)."""
        self._lease = [sp.LEASE, until, reason]
        for link in self.links:
            self._send(link, self._lease)

    def terminate(self, run: Run, interrupted: bool = False) -> None:
        """SIGTERM the run's process group, then SIGKILL it KILL_GRACE s later if it still runs."""
        run.interrupted = run.interrupted or interrupted
        self._send(run.link, [sp.SIGNAL, run.token, sp.TERMINATE])

    def cancel(self, run: Run, signum: int, grace: float) -> None:
        """Send `signum` to the run's process group, then SIGKILL `grace` s later if it still runs.
        A run not started yet gets it as soon as it starts (its spawner reads in order)."""
        self._send(run.link, [sp.SIGNAL, run.token, sp.CANCEL, signum, grace])

    def kill(self, run: Run, interrupted: bool = False) -> None:
        """SIGKILL the run's whole process group; its exit is reported as usual."""
        run.interrupted = run.interrupted or interrupted
        self._send(run.link, [sp.SIGNAL, run.token, sp.KILL])

    def _send(self, link: Link, msg: list) -> None:  # type: ignore[type-arg]
        link.outbox.append(msg)
        if not self._flush_scheduled:
            self._flush_scheduled = True
            self.loop.call_soon(self._flush)

    def _flush(self) -> None:
        """Everything asked of the spawners this loop turn: one write per spawner."""
        self._flush_scheduled = False
        for link in self.links:
            if link.outbox and link.alive:
                link.pending += sp.frame(link.outbox)
                link.outbox = []
                self._write(link)

    def _write(self, link: Link) -> None:
        try:
            sent = link.sock.send(link.pending)
        except BlockingIOError:
            sent = 0
        except OSError:
            self._lost(link)
            return
        del link.pending[:sent]
        fd = link.sock.fileno()
        if link.pending:
            self.loop.add_writer(fd, self._write, link)
        else:
            self.loop.remove_writer(fd)

    async def close(self) -> None:
        """Let the spawners go: each kills what still runs and exits; wait for them (bounded)."""
        self._closing = True
        if self._sweep_timer is not None:
            self._sweep_timer.cancel()
        for link in self.links:
            if link.alive:
                self._lost(link)
        loop = self.loop
        deadline = loop.time() + SPAWNER_EXIT_WAIT
        waiting = [link.pid for link in self.links]
        while waiting and loop.time() < deadline:
            waiting = [pid for pid in waiting if not _reaped(pid)]
            if waiting:
                await asyncio.sleep(0.01)
        if waiting:
            log.error("spawner process(es) %s did not exit; killing them", waiting)
            for pid in waiting:
                try:
                    os.kill(pid, signal.SIGKILL)
                    os.waitpid(pid, 0)
                except (ProcessLookupError, ChildProcessError):
                    pass


def _reaped(pid: int) -> bool:
    try:
        done, _ = os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        return True
    return done != 0


def _ignore_start(run: Run) -> None:
    pass


def _ignore_exit(run: Run, result: Result) -> None:
    pass
