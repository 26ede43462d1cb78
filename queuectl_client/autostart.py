"""Starting queuectld for a client that found none answering.

One daemon is spawned.  If it exits 75, another daemon holds the home's
lock, and the lock file says which and how it is (`"PID\\n"` while it runs,
`"PID stopping\\n"` once its shutdown began).  A stopping daemon is reported
(the caller exits 3) rather than raced; a starting one is waited for, and a
daemon is spawned again only once that pid is gone.  So a client never
forks daemons in a loop.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from typing import IO

from .paths import SOCKET_NAME, Paths
from .text import shown_bytes, utf8

AUTOSTART_TIMEOUT = 10.0
EXIT_LOCKED = 75  # queuectld: another daemon owns this home


class StartFailed(Exception):
    """queuectld could not be started, or is stopping; the message says why."""


class Stopping(StartFailed):
    """The daemon that holds the home is shutting down."""


def start(paths: Paths, connect: Callable[[], bool], home_given: bool) -> None:
    """Spawn queuectld and wait until `connect()` returns True (it returns False while nothing answers).

    `home_given`: the home was named (QUEUECTL_HOME or the API's `home`), so it is passed to the daemon as
    an absolute --home and set in its environment, where its jobs see the same path.
    """
    for where in (paths.state, paths.socket):
        if not utf8(where):
            raise StartFailed(f"cannot start queuectld: the path {shown_bytes(where, 4096)} is not UTF-8, "
                              "and its home and socket need paths that are")
    try:
        os.makedirs(paths.state, mode=0o700, exist_ok=True)
        log = open(paths.daemon_log, "ab")
    except OSError as e:
        where = e.filename or paths.state
        raise StartFailed(f"cannot start queuectld: cannot write {where}: {e.strerror}") from None
    try:
        proc: subprocess.Popen[bytes] | None = _spawn(paths, log, home_given)
    finally:
        log.close()
    holder: int | None = None  # the pid that holds the lock, once our daemon found it taken
    blind = 0  # spawns made again without knowing who held the lock (an empty lock file)
    deadline = time.monotonic() + AUTOSTART_TIMEOUT
    delay = 0.002
    while True:
        if connect():
            return
        if proc is not None:
            code = proc.poll()
            if code == EXIT_LOCKED:
                proc = None
                holder, stopping = read_lock(paths.lock)
                if stopping:
                    raise Stopping(f"queuectld (pid {holder}) is stopping")
            elif code is not None:
                raise StartFailed(f"could not start queuectld: {_last_line(paths.daemon_log)}")
        else:
            if holder is None:
                holder, _ = read_lock(paths.lock)  # a daemon empties the file before it writes its pid
            gone = not alive(holder) if holder is not None else time.monotonic() > deadline - 5 and blind == 0
            if gone:  # the daemon that held the lock is gone: spawn one more
                blind += holder is None
                holder = None
                with open(paths.daemon_log, "ab") as log:
                    proc = _spawn(paths, log, home_given)
        if time.monotonic() > deadline:
            raise StartFailed(f"queuectld did not answer on {paths.socket} within {AUTOSTART_TIMEOUT:.0f} s")
        time.sleep(delay)
        delay = min(delay * 2, 0.05)


def _spawn(paths: Paths, log: IO[bytes], home_given: bool) -> subprocess.Popen[bytes]:
    argv = [sys.executable, "-m", "queuectld"]
    env = None
    if home_given and paths.socket == os.path.join(paths.state, SOCKET_NAME):
        argv += ["--home", paths.state]
        env = dict(os.environ, QUEUECTL_HOME=paths.state)
    return subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log, env=env,
                            start_new_session=True, close_fds=True)


def read_lock(path: str) -> tuple[int | None, bool]:
    """The pid in a home's lock file, and whether it says the daemon is stopping."""
    try:
        with open(path, "rb") as f:
            words = f.read(64).decode(errors="replace").split()
    except OSError:
        return None, False
    pid = int(words[0]) if words and words[0].isdigit() else None
    return pid, "stopping" in words[1:]


def alive(pid: int) -> bool:
    """Whether a process of that pid runs (a zombie does not)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return f.read().rsplit(b") ", 1)[-1][:1] != b"Z"  # a zombie is gone
    except OSError:
        return True


def _last_line(path: str) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - 4096))
            lines = [ln for ln in f.read().decode(errors="replace").splitlines() if ln.strip()]
        if not lines:
            return f"it exited without a message (log: {path})"
        import re

        # Drop the log line's time, name and level.
        return re.sub(r"^\S+ \S+ queuectld\[\d+\] [A-Z]+ ", "", lines[-1])
    except OSError:
        return f"it exited without a message (log: {path})"
