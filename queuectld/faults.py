"""Fault injection for the crash tests, armed only by $QUEUECTL_FAULTS.

The variable holds comma-separated faults:

    crash-at=NAME        os._exit(70) when the daemon reaches the point NAME
                         (compact-1 ... compact-6, enqueue-committed, schedule-fired)
    fdatasync-eio=N      the N-th journal fdatasync and every later one fail with EIO
    clock-ahead=SECONDS  the schedules' clock runs this far ahead of the real one: a test sees a
                         slot come without waiting for it, or a daemon "come back" after downtime

The daemon reads the variable once at start-up and removes it from its
environment, so neither jobs nor later daemons inherit it.
"""

from __future__ import annotations

import errno
import os
import time

CRASH_EXIT = 70

_crash_at: set[str] = set()
_ahead = 0.0


def arm_from_env() -> None:
    spec = os.environ.pop("QUEUECTL_FAULTS", "")
    for item in filter(None, (s.strip() for s in spec.split(","))):
        name, _, value = item.partition("=")
        if name == "crash-at":
            _crash_at.add(value)
        elif name == "clock-ahead":
            global _ahead
            _ahead = float(value)
        elif name == "fdatasync-eio":
            _fail_fdatasync_from(int(value))
        else:
            raise ValueError(f"unknown fault {item!r} in QUEUECTL_FAULTS")


def point(name: str) -> None:
    """A named step; the daemon dies here, without cleanup, if a test armed it."""
    if name in _crash_at:
        os._exit(CRASH_EXIT)


def clock() -> float:
    """The schedules' clock: the time, or with clock-ahead, a time that far ahead."""
    return time.time() + _ahead


def _fail_fdatasync_from(n: int) -> None:
    real = os.fdatasync
    calls = 0

    def fdatasync(fd: int) -> None:
        nonlocal calls
        calls += 1
        if calls >= n:
            raise OSError(errno.EIO, os.strerror(errno.EIO))
        real(fd)

    os.fdatasync = fdatasync  # type: ignore[assignment]
