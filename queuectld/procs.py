"""What the kernel says about processes: start times, sessions, children; and adopting orphans."""

from __future__ import annotations

import os
import signal
import time

_TICKS = os.sysconf("SC_CLK_TCK")
START_SLACK = 3  # ticks between our clock reading and the kernel's record of a process start


def boot_ticks() -> int:
    """Now, in the units /proc/PID/stat gives a process's start time (clock ticks since boot).

    Read right after a spawn it matches the child's start time within a tick or
    two, without reading /proc while the child is still in exec (which blocks).
    """
    return int(time.clock_gettime(time.CLOCK_BOOTTIME) * _TICKS)


def _stat_fields(pid: int) -> list[bytes]:
    """The fields of /proc/PID/stat after the command name (state first); [] if it is gone."""
    try:
        fd = os.open(f"/proc/{pid}/stat", os.O_RDONLY | os.O_CLOEXEC)
        try:
            stat = os.read(fd, 4096)
        finally:
            os.close(fd)
        return stat[stat.rindex(b")") + 2 :].split()
    except (OSError, ValueError):
        return []


def process_start_time(pid: int) -> int:
    """The process's start time in clock ticks since boot (0 if unknown); tells a pid's reuse apart."""
    fields = _stat_fields(pid)
    return int(fields[19]) if len(fields) > 19 else 0


def pid_alive(pid: int) -> bool:
    """Whether a process of that pid exists (one of another user's too)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def signal_group(pgid: int, sig: int) -> bool:
    """Signal a process group; False if it is gone (or not ours)."""
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        return False
    return True


def kill_with_group(pid: int, pgid: int) -> None:
    """SIGKILL a process and the group it is in (never the caller's own group)."""
    if pgid > 1 and pgid != os.getpgid(0):
        signal_group(pgid, signal.SIGKILL)
    try:
        os.kill(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def kill_orphan_group(pgid: int, pid_start: int) -> bool:
    """After a crash: kill the session of a run that may still be going (its group, and what left it).

    The session is ours if its leader is still the process we started (same
    start time), or if the leader is gone but the session lives on (a pid
    stays reserved while it names a live group or session, so it cannot have
    been reused).
    """
    if pgid <= 1:
        return False
    start = process_start_time(pgid)
    if start and pid_start and abs(start - pid_start) > START_SLACK:
        return False
    killed = signal_group(pgid, signal.SIGKILL)
    for name in os.listdir("/proc"):
        if name.isdigit() and int(name) != pgid:
            state, group, sid = proc_stat(int(name))
            if sid == pgid and state not in ("", "Z"):
                kill_with_group(int(name), group)
                killed = True
    return killed


PR_SET_CHILD_SUBREAPER = 36


def become_subreaper() -> bool:
    """Adopt the daemon's orphaned descendants (Linux 3.4+); False where the kernel refuses."""
    import ctypes

    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return bool(libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0)
    except (OSError, AttributeError):
        return False


def children(single_thread: bool = False) -> list[int]:
    """This process's children, from every thread's /proc children list (one file when single-threaded)."""
    pids: list[int] = []
    try:
        tasks = [str(os.getpid())] if single_thread else os.listdir("/proc/self/task")
    except OSError:
        return pids
    for tid in tasks:
        try:
            fd = os.open(f"/proc/self/task/{tid}/children", os.O_RDONLY | os.O_CLOEXEC)
        except OSError:
            continue
        try:
            pids += map(int, os.read(fd, 65536).split())
        except OSError:
            pass
        finally:
            os.close(fd)
    return pids


def proc_stat(pid: int) -> tuple[str, int, int]:
    """(state, process group, session) of a process; ("", 0, 0) if it is gone."""
    fields = _stat_fields(pid)
    if len(fields) < 4:
        return "", 0, 0
    return fields[0].decode(), int(fields[2]), int(fields[3])


def reap(pid: int) -> None:
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass
