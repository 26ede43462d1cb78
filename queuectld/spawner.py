"""A spawner: a small process that starts, watches and reaps the daemon's jobs.

The daemon starts a few of these (`python -m queuectld.spawner SOCK LOCK`)
before it serves, and hands each job to one of them, so that `posix_spawn`,
which holds its caller until the child has exec'd, never holds the event
loop.  Each spawner talks to the daemon over a socket pair, in frames of
many messages each way (see `spawner_wire`): a batch of spawns in one write,
a batch of starts and exits in one read.

Each job runs as `/bin/sh -c COMMAND` in a new session, with its output read
through pipes into its files (head and tail within the output limit, by
`Capture`), its timeout kept here (SIGTERM, then SIGKILL `KILL_GRACE` s
later), and everything it leaves behind killed at its end: its process
group, and what left the group but not the session (the spawner is a child
subreaper, so such a process is adopted by it when its parent dies).

A spawner's jobs never outlive the daemon: when the daemon's end of the
socket closes (it exited, or was killed), the spawner kills every job's
session and exits.  It holds the daemon's lock file open (the same open file
description, so the same lock) until then, so no new daemon can start on this
home while a job of the old one may still run.

Nor do they outlive the daemon's lease, when it sends one (a node of a shared
store does, after each heartbeat that succeeded): once that time has passed,
the spawner kills every job's session as well, and refuses to spawn until a
new lease comes.  A daemon frozen that long (a SIGSTOP, a paused VM) cannot
fence itself, and other nodes may soon run its jobs again.
"""

from __future__ import annotations

import errno
import os
import select
import signal
import sys
import time

from .capture import Capture
from .exits import cannot_start, run_end
from .procs import become_subreaper, boot_ticks, children, kill_with_group, proc_stat, reap, signal_group
from .spawner_wire import CANCEL, ENV, EXITED, FAILED, FORGET, LEASE, SIGNAL, SPAWN, STARTED, TERMINATE, frame, unframe

KILL_GRACE = 3.0  # seconds between SIGTERM and SIGKILL after a timeout
SWEEP_AGAIN = 0.05  # seconds between sweeps while adopted processes are seen
ENDED_WATCH = 1.0  # seconds an ended job's session is watched after the last of it was seen
# Python ignores SIGPIPE and SIGXFSZ (and a spawner ignores SIGINT and SIGHUP), and a spawned program
# inherits what is ignored: a job gets every signal's default action, as under a shell or cron.
DEFAULT_SIGNALS = (signal.SIGPIPE, signal.SIGXFSZ, signal.SIGINT, signal.SIGQUIT, signal.SIGHUP, signal.SIGTERM,
                   signal.SIGUSR1, signal.SIGUSR2, signal.SIGCHLD, signal.SIGTSTP, signal.SIGTTIN, signal.SIGTTOU)

class Job:
    __slots__ = ("captures", "deadline", "idle_at", "idle_timeout", "killed_for", "killing", "pid", "pidfd",
                 "timeout", "token")

    def __init__(self, token: int, pid: int, pidfd: int, captures: list[Capture], timeout: float | None,
                 idle_timeout: float | None, now: float) -> None:
        self.token = token
        self.pid = pid
        self.pidfd = pidfd
        self.captures = captures
        self.timeout = timeout
        self.idle_timeout = idle_timeout
        # Its timeout, or once it was sent SIGTERM (`killing`), when it gets SIGKILL.
        self.deadline = now + timeout if timeout is not None else None
        # When it will have been silent for its idle timeout: moved on by each read of its output.
        self.idle_at = now + idle_timeout if idle_timeout is not None else None
        self.killing = False
        self.killed_for: str | None = None  # "timeout", "idle" or "lease": the spawner stopped it for that


class Spawner:
    def __init__(self, sock: int) -> None:
        self.sock = sock
        self.inbuf = bytearray()
        self.outbox: list[list] = []  # type: ignore[type-arg]
        self.jobs: dict[int, Job] = {}  # token -> job
        self.by_fd: dict[int, tuple[Job, Capture | None]] = {}  # pidfd or pipe -> its job (and capture)
        self.poll = select.poll()
        self.poll.register(sock, select.POLLIN)
        self.env = dict(os.environ)  # the daemon's: for jobs of older journals, which have no environment
        self.envs: dict[str, dict[str, str]] = {}  # the environments the daemon sent, by key
        # What the daemon sets for every job, whatever its environment: the same home for `queuectl` in a job,
        # and the name of the node that runs it.
        self.own = {k: v for k, v in self.env.items() if k in ("QUEUECTL_HOME", "QUEUECTL_NODE")}
        self.home = os.getcwd()
        self.devnull = os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)
        self.sweep_at: float | None = None
        self.ended_sessions: dict[int, float] = {}  # ended jobs' sessions -> watched until
        self.subreaper = become_subreaper()
        self.lease: float | None = None  # no lease: no deadline
        self.reason = ""  # what a job killed or refused for a passed lease is told

    # -- the loop ---------------------------------------------------------------

    def run(self) -> None:
        while True:
            events = self.poll.poll(self._wait_ms())
            now = time.monotonic()  # once per wake-up: output read now counts as output at this time
            for fd, what in events:
                if fd == self.sock:
                    if not self._read():
                        return
                else:
                    entry = self.by_fd.get(fd)
                    if entry is None:  # its job ended earlier in this batch
                        continue
                    job, cap = entry
                    if cap is None:
                        self._exited(job)
                        continue
                    if what & select.POLLIN and job.idle_at is not None:
                        job.idle_at = now + job.idle_timeout  # type: ignore[operator]
                    if not cap.read_available():
                        self._unwatch(cap.fd)
            self._deadlines()
            self._flush()

    def _wait_ms(self) -> int:
        times = [j.deadline for j in self.jobs.values() if j.deadline is not None]
        times += [j.idle_at for j in self.jobs.values() if j.idle_at is not None and not j.killing]
        if self.sweep_at is not None:
            times.append(self.sweep_at)
        now = time.monotonic()
        if self.jobs and self.lease is not None and self.lease > now:
            times.append(self.lease)
        if not times:
            return -1
        return max(0, int((min(times) - now) * 1000) + 1)

    def _read(self) -> bool:
        try:
            data = os.read(self.sock, 1 << 20)
        except InterruptedError:
            return True
        except OSError:
            data = b""
        if not data:
            return False  # the daemon is gone
        self.inbuf += data
        for msg in unframe(self.inbuf):
            if msg[0] == SPAWN:
                self._spawn(*msg[1:])
            elif msg[0] == ENV:
                self.envs[msg[1]] = msg[2]
            elif msg[0] == FORGET:
                self.envs.pop(msg[1], None)
            elif msg[0] == SIGNAL:
                job = self.jobs.get(msg[1])
                if job is not None:
                    self._stop(job, *msg[2:])
            elif msg[0] == LEASE:
                self.lease, self.reason = msg[1], msg[2]
        return True

    def _flush(self) -> None:
        if self.outbox:
            data = memoryview(frame(self.outbox))
            self.outbox = []
            while data:
                try:
                    data = data[os.write(self.sock, data) :]
                except InterruptedError:
                    continue
                except BlockingIOError:
                    select.select([], [self.sock], [])
                except OSError:
                    return  # the daemon is gone; the next read says so

    # -- jobs -------------------------------------------------------------------

    def _spawn(self, token: int, job_id: str, command: str, attempt: int, cwd: str | None, out_path: str,
               err_path: str, limit: int, timeout: float | None, idle_timeout: float | None,
               env_key: str | None = None) -> None:
        pipes: list[int] = []
        if self.lease is not None and self.lease <= time.monotonic():
            self.outbox.append([FAILED, token, f"cannot start: {self.reason}"])
            return
        try:
            if env_key is None:
                env = self.env.copy()
            else:
                env = self.envs[env_key].copy()
                env.update(self.own)
            # Every time, even for the same path: the directory may have been replaced since.
            os.chdir(cwd or self.home)
            r_out, w_out = os.pipe2(os.O_CLOEXEC)
            pipes += (r_out, w_out)
            r_err, w_err = os.pipe2(os.O_CLOEXEC)
            pipes += (r_err, w_err)
            env["QUEUECTL_JOB_ID"] = job_id
            env["QUEUECTL_ATTEMPT"] = str(attempt)
            # dup2 clears close-on-exec on the targets; every other descriptor has it set.
            pid = os.posix_spawn("/bin/sh", ["sh", "-c", command], env, setsid=True, setsigmask=(),
                                 setsigdef=DEFAULT_SIGNALS, file_actions=[
                (os.POSIX_SPAWN_DUP2, self.devnull, 0),
                (os.POSIX_SPAWN_DUP2, w_out, 1),
                (os.POSIX_SPAWN_DUP2, w_err, 2),
            ])
        except Exception as e:  # whatever stops a job from starting is that job's failure
            for fd in pipes:
                os.close(fd)
            self.outbox.append([FAILED, token, cannot_start(e)])
            return
        pid_start = boot_ticks()
        os.close(w_out)
        os.close(w_err)
        os.set_blocking(r_out, False)
        os.set_blocking(r_err, False)
        pidfd = os.pidfd_open(pid)
        job = Job(token, pid, pidfd, [Capture(r_out, out_path, limit), Capture(r_err, err_path, limit)], timeout,
                  idle_timeout, time.monotonic())
        self.jobs[token] = job
        self.by_fd[pidfd] = (job, None)
        self.poll.register(pidfd, select.POLLIN)
        for cap in job.captures:
            self.by_fd[cap.fd] = (job, cap)
            self.poll.register(cap.fd, select.POLLIN)
        self.outbox.append([STARTED, token, pid, pid_start])

    def _stop(self, job: Job, how: int, signum: int = signal.SIGTERM, grace: float = KILL_GRACE) -> None:
        if how == CANCEL:  # the signal asked for, then SIGKILL `grace` s later unless a kill is due sooner
            signal_group(job.pid, signum)
            deadline = time.monotonic() + grace
            if job.deadline is None or deadline < job.deadline:
                job.deadline = deadline
            job.killing = True
        elif how == TERMINATE:
            if not job.killing:
                signal_group(job.pid, signal.SIGTERM)
                job.killing = True
                job.deadline = time.monotonic() + KILL_GRACE
        else:
            signal_group(job.pid, signal.SIGKILL)

    def _deadlines(self) -> None:
        now = time.monotonic()
        lapsed = self.lease is not None and self.lease <= now
        for job in self.jobs.values():
            if lapsed and job.killed_for != "lease":  # as if the daemon were gone: the session goes at its exit
                job.killed_for, job.killing, job.deadline = "lease", True, None
                signal_group(job.pid, signal.SIGKILL)
            elif job.deadline is not None and job.deadline <= now:
                if job.killing:
                    job.deadline = None
                    signal_group(job.pid, signal.SIGKILL)
                else:  # its own timeout: SIGTERM first
                    job.killed_for = "timeout"
                    self._stop(job, TERMINATE)
            elif job.idle_at is not None and job.idle_at <= now and not job.killing:
                job.killed_for = "idle"  # silent too long: stopped as a timeout is
                self._stop(job, TERMINATE)
        if self.sweep_at is not None and self.sweep_at <= now:
            self._sweep()

    def _exited(self, job: Job) -> None:
        # The leader is a zombie until reaped, so its group id cannot be reused yet:
        # whatever the job left behind in its group goes with it.
        signal_group(job.pid, signal.SIGKILL)
        _, status = os.waitpid(job.pid, 0)
        code = os.waitstatus_to_exitcode(status)
        self._unwatch(job.pidfd)
        os.close(job.pidfd)
        for cap in job.captures:
            if cap.fd in self.by_fd:
                self._unwatch(cap.fd)
            cap.read_available(max_chunks=64)
            cap.close()
        del self.jobs[job.token]
        # What left the job's group but not its session goes at the next sweep: now, or within
        # SWEEP_AGAIN s when sweeps are already running (a busy spawner sweeps 20 times a second,
        # not once per job).  A job's session id is its shell's pid.
        self.ended_sessions[job.pid] = time.monotonic() + ENDED_WATCH
        if self.sweep_at is None:
            self._sweep()
        exit_code, error, kind = run_end(code, job.timeout if job.killed_for == "timeout" else None,
                                         job.idle_timeout if job.killed_for == "idle" else None)
        if job.killed_for == "lease":  # the daemon's doing, not the job's: no retry rule judges it
            error, kind = f"interrupted: {self.reason}", None
        self.outbox.append([EXITED, job.token, exit_code, error, any(cap.wrote for cap in job.captures), kind])

    def _unwatch(self, fd: int) -> None:
        self.poll.unregister(fd)
        del self.by_fd[fd]

    def _sweep(self) -> bool:
        """Kill the adopted processes of jobs that have ended, and reap every dead child; True if any was seen.

        Only a process still in an ended job's session is killed: one that
        started a session of its own (`setsid`) was meant to outlive its job.
        An ended job's session is watched for ENDED_WATCH s after the last of
        it was seen (its id cannot be reused while a process is in it), with a
        sweep every SWEEP_AGAIN s meanwhile: killing one process can orphan its
        children, which the kernel hands over a moment later.
        """
        self.sweep_at = None
        if not self.subreaper:
            return False
        now = time.monotonic()
        ended = self.ended_sessions
        while ended:  # oldest first: O(expired), stopping at the first still watched
            sid, until = next(iter(ended.items()))
            if until >= now:
                break
            del ended[sid]
        leaders = {job.pid for job in self.jobs.values()}
        adopted = False
        for pid in children(single_thread=True):
            if pid in leaders:
                continue
            adopted = True
            state, pgid, sid = proc_stat(pid)
            if state == "Z" or not state:
                reap(pid)
            elif sid in ended and sid not in leaders:
                del ended[sid]
                ended[sid] = now + ENDED_WATCH  # watched longer, and moved to the end: the dict stays in expiry order
                kill_with_group(pid, pgid)
        if adopted or ended:
            self.sweep_at = now + SWEEP_AGAIN
        return adopted

    def shutdown(self) -> None:
        """The daemon is gone: kill every job's session, reap them all, then exit."""
        for job in self.jobs.values():
            signal_group(job.pid, signal.SIGKILL)
        for job in list(self.jobs.values()):
            os.waitpid(job.pid, 0)
            del self.jobs[job.token]
            self.ended_sessions[job.pid] = time.monotonic() + ENDED_WATCH
        # Until a sweep finds nothing adopted: what a killed process leaves is handed over a moment later.
        deadline = time.monotonic() + 2.0
        while self._sweep() and time.monotonic() < deadline:
            time.sleep(0.01)


def main(argv: list[str]) -> int:
    sock, lock = int(argv[0]), int(argv[1])
    # Neither descriptor may reach a job: a job holding the lock would keep the next daemon out.
    os.set_inheritable(sock, False)
    os.set_inheritable(lock, False)
    # The daemon decides when jobs stop; a signal meant for it (Ctrl-C in its terminal) is not ours.
    for sig in (signal.SIGINT, signal.SIGHUP, signal.SIGPIPE):
        signal.signal(sig, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, _terminated)
    spawner = Spawner(sock)
    try:
        spawner.run()
    except (KeyboardInterrupt, SystemExit):
        pass
    finally:
        spawner.shutdown()
    return 0


def _terminated(signum: int, frame: object) -> None:
    raise SystemExit(0)


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv[1:]))
    except OSError as e:
        if e.errno != errno.EBADF:
            raise
        sys.exit(1)
