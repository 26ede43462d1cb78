"""Running jobs: spawning, output capture, timeouts, process groups and sessions.

Only this module touches job processes.  Each job runs as `/bin/sh -c
COMMAND` in a new session and process group.  `os.posix_spawn` (glibc:
clone with CLONE_VM|CLONE_VFORK) never copies the daemon's heap, so spawning
costs the same at any queue depth; it encodes the environment in C, and the
loop changes its own directory to the job's before spawning it (posix_spawn
has no chdir), which is safe because the loop is the only spawner and the
daemon uses absolute paths everywhere else.  Exits are seen through a pidfd
watched by the event loop, and output through non-blocking pipes: the first
half of the output limit goes straight to the file, the last half is kept in
a bounded buffer and written at the end, so neither a flood nor a silent job
can block the loop or grow the daemon.

A job's processes can leave its process group (GNU `timeout` and anything
that calls setpgid do) but not its session, short of `setsid`.  The daemon
is a child subreaper, so such a process is adopted by the daemon when its
parent dies, instead of by init; a sweep after each job's end kills every
adopted process whose session is not a running job's, and reaps them.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import time
from collections.abc import Callable

from .capture import Capture
from .procs import become_subreaper, boot_ticks, children, proc_stat, reap

log = logging.getLogger("queuectld.runner")

KILL_GRACE = 3.0  # seconds between SIGTERM and SIGKILL after a timeout
SWEEP_AGAIN = 0.05  # seconds between sweeps while adopted processes are seen
ENDED_WATCH = 1.0  # seconds an ended job's session is watched after the last of it was seen
# Python ignores SIGPIPE and SIGXFSZ, and a spawned program inherits what is ignored: a job gets
# every signal's default action, as under a shell or cron (`yes | head` must end by SIGPIPE).
DEFAULT_SIGNALS = (signal.SIGPIPE, signal.SIGXFSZ, signal.SIGINT, signal.SIGQUIT, signal.SIGHUP, signal.SIGTERM,
                   signal.SIGUSR1, signal.SIGUSR2, signal.SIGCHLD, signal.SIGTSTP, signal.SIGTTIN, signal.SIGTTOU)


class Result:
    __slots__ = ("exit_code", "error")

    def __init__(self, exit_code: int | None, error: str | None) -> None:
        self.exit_code = exit_code
        self.error = error


def describe_status(code: int) -> str | None:
    """The error message for an exit code from os.waitstatus_to_exitcode (negative: a signal)."""
    if code == 0:
        return None
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        return f"killed by {name}"
    if code == 127:
        return "exited with status 127 (command not found)"
    if code == 126:
        return "exited with status 126 (command not executable)"
    return f"exited with status {code}"


class Run:
    """One running job process and everything the loop watches for it."""

    __slots__ = (
        "job_id", "pid", "pgid", "pid_start", "pidfd", "captures", "timeout", "timer",
        "timed_out", "interrupted", "on_exit",
    )

    def __init__(self, job_id: str, pid: int, captures: list[Capture],
                 timeout: float | None, on_exit: Callable[[Run, Result], None]) -> None:
        self.job_id = job_id
        self.pid = pid
        self.pgid = pid
        self.pid_start = boot_ticks()
        self.pidfd = os.pidfd_open(pid)
        self.captures = captures
        self.timeout = timeout
        self.timer: asyncio.TimerHandle | None = None
        self.timed_out = False
        self.interrupted = False
        self.on_exit = on_exit


class Runner:
    """Starts job processes and reports each exit through the run's callback."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self._leaders: dict[int, Run] = {}  # pid (and session id) of each running job's shell
        self._devnull = os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)
        self._env = dict(os.environ)
        self._home = os.getcwd()  # where jobs without a directory run
        self._ended_sessions: dict[int, float] = {}  # ended jobs' sessions -> watched until
        self._sweep_timer: asyncio.TimerHandle | None = None
        self.subreaper = become_subreaper()

    def start(self, job_id: str, command: str, attempt: int, cwd: str | None, timeout: float | None,
              out_path: str, err_path: str, limit: int, on_exit: Callable[[Run, Result], None]) -> Run:
        """Spawn the job; raises (OSError, ValueError, ...) if it cannot be spawned, e.g. for a missing cwd."""
        # Every time, even for the same path: the directory may have been replaced since.
        os.chdir(cwd or self._home)
        r_out, w_out = os.pipe2(os.O_CLOEXEC)
        r_err, w_err = os.pipe2(os.O_CLOEXEC)
        try:
            env = self._env.copy()
            env["QUEUECTL_JOB_ID"] = job_id
            env["QUEUECTL_ATTEMPT"] = str(attempt)
            # dup2 clears close-on-exec on the targets; every other descriptor has it set.
            pid = os.posix_spawn("/bin/sh", ["sh", "-c", command], env, setsid=True, setsigmask=(),
                                 setsigdef=DEFAULT_SIGNALS, file_actions=[
                (os.POSIX_SPAWN_DUP2, self._devnull, 0),
                (os.POSIX_SPAWN_DUP2, w_out, 1),
                (os.POSIX_SPAWN_DUP2, w_err, 2),
            ])
        except BaseException:
            os.close(r_out)
            os.close(r_err)
            raise
        finally:
            os.close(w_out)
            os.close(w_err)
        os.set_blocking(r_out, False)
        os.set_blocking(r_err, False)
        captures = [Capture(r_out, out_path, limit), Capture(r_err, err_path, limit)]
        run = Run(job_id, pid, captures, timeout, on_exit)
        self._leaders[pid] = run
        loop = self.loop
        for cap in captures:
            loop.add_reader(cap.fd, self._on_output, run, cap)
        loop.add_reader(run.pidfd, self._on_exit, run)
        if timeout is not None:
            run.timer = loop.call_later(timeout, self._on_timeout, run)
        return run

    def _on_output(self, run: Run, cap: Capture) -> None:
        if not cap.read_available():
            self.loop.remove_reader(cap.fd)

    def _on_timeout(self, run: Run) -> None:
        run.timed_out = True
        log.info("job %s timed out after %s s; stopping its process group", run.job_id, _secs(run.timeout))
        self.terminate(run)

    def terminate(self, run: Run, interrupted: bool = False) -> None:
        """SIGTERM the run's process group, then SIGKILL it KILL_GRACE s later if it still runs."""
        run.interrupted = run.interrupted or interrupted
        if run.timer is not None:
            run.timer.cancel()
        self._signal(run, signal.SIGTERM)
        run.timer = self.loop.call_later(KILL_GRACE, self._signal, run, signal.SIGKILL)

    def _signal(self, run: Run, sig: int) -> None:
        try:
            os.killpg(run.pgid, sig)
        except ProcessLookupError:
            pass

    def _on_exit(self, run: Run) -> None:
        loop = self.loop
        loop.remove_reader(run.pidfd)
        # The leader is a zombie until reaped, so its pgid cannot be reused yet:
        # whatever the job left behind in its group goes with it.
        self._signal(run, signal.SIGKILL)
        _, status = os.waitpid(run.pid, 0)
        code = os.waitstatus_to_exitcode(status)
        os.close(run.pidfd)
        if run.timer is not None:
            run.timer.cancel()
        for cap in run.captures:
            loop.remove_reader(cap.fd)
            cap.read_available(max_chunks=64)
            cap.close()
        del self._leaders[run.pid]
        self._ended_sessions[run.pid] = time.monotonic() + ENDED_WATCH  # a job's session id is its shell's pid
        self._sweep()  # what left the job's group but not its session goes now
        if run.interrupted:
            result = Result(None, None)
        elif run.timed_out:
            result = Result(None if code < 0 else code, f"timed out after {_secs(run.timeout)} s")
        else:
            result = Result(code if code >= 0 else None, describe_status(code))
        run.on_exit(run, result)

    def kill(self, run: Run, interrupted: bool = False) -> None:
        """SIGKILL the run's whole process group; its exit is reported as usual."""
        run.interrupted = run.interrupted or interrupted
        self._signal(run, signal.SIGKILL)

    def _sweep(self) -> None:
        """Kill the adopted processes of jobs that have ended, and reap what the daemon adopted.

        Only a process still in an ended job's session is killed: one that
        started a session of its own (`setsid`) was meant to outlive its job.
        An ended job's session is watched for ENDED_WATCH s after the last of
        it was seen (its id cannot be reused while a process is in it), and
        the sweep runs every SWEEP_AGAIN s meanwhile: killing one process can
        orphan its children, which the kernel hands over a moment later.
        """
        if self._sweep_timer is not None:
            self._sweep_timer.cancel()
            self._sweep_timer = None
        if not self.subreaper:
            return
        now = time.monotonic()
        ended = self._ended_sessions
        for sid in [sid for sid, until in ended.items() if until < now]:
            del ended[sid]
        adopted = False
        for pid in children():
            if pid in self._leaders:
                continue
            adopted = True
            state, pgid, sid = proc_stat(pid)
            if state == "Z" or not state:
                reap(pid)
            elif sid in ended and sid not in self._leaders:
                ended[sid] = now + ENDED_WATCH
                for target, kill in ((pgid, os.killpg), (pid, os.kill)):
                    if target > 1:
                        try:
                            kill(target, signal.SIGKILL)
                        except (ProcessLookupError, PermissionError):
                            pass
        if adopted or ended:
            self._sweep_timer = self.loop.call_later(SWEEP_AGAIN, self._sweep)

    def close(self) -> None:
        if self._sweep_timer is not None:
            self._sweep_timer.cancel()
        os.close(self._devnull)


def _secs(x: float | None) -> str:
    if x is None:
        return "?"
    return str(int(x)) if float(x).is_integer() else f"{x:g}"
