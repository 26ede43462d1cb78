"""Fault injection for the crash tests, armed only by $QUEUECTL_FAULTS.

The variable holds comma-separated faults:

    crash-at=NAME        os._exit(70) when the daemon reaches the point NAME
                         (compact-1 ... compact-6, enqueue-committed, schedule-fired)
    fdatasync-eio=N      the N-th journal fdatasync and every later one fail with EIO
    clock-ahead=SECONDS  the daemon's clock (time.time) runs this far ahead of the real one, as on a
                         machine whose clock is set ahead: a test sees a schedule's slot come without
                         waiting for it, or the daemon come back after downtime
    stats-every=SECONDS  save the run stats this often instead of once a minute
    start-wait=SECONDS   a shared store writes a run's start this late instead of 20 ms (pg/starts.py)

The daemon reads the variable once at start-up and removes it from its
environment, so neither jobs nor later daemons inherit it.
"""

from __future__ import annotations

import errno
import os
import time

CRASH_EXIT = 70

_crash_at: set[str] = set()
stats_every: float | None = None
start_wait: float | None = None


def arm_from_env() -> None:
    spec = os.environ.pop("QUEUECTL_FAULTS", "")
    for item in filter(None, (s.strip() for s in spec.split(","))):
        name, _, value = item.partition("=")
        if name == "crash-at":
            _crash_at.add(value)
        elif name == "clock-ahead":
            _set_clock_ahead(float(value))
        elif name == "stats-every":
            global stats_every
            stats_every = float(value)
        elif name == "start-wait":
            global start_wait
            start_wait = float(value)
        elif name == "fdatasync-eio":
            _fail_fdatasync_from(int(value))
        else:
            raise ValueError(f"unknown fault {item!r} in QUEUECTL_FAULTS")


def point(name: str) -> None:
    """A named step; the daemon dies here, without cleanup, if a test armed it."""
    if name in _crash_at:
        os._exit(CRASH_EXIT)


def _set_clock_ahead(seconds: float) -> None:
    real = time.time

    def ahead() -> float:
        return real() + seconds

    time.time = ahead


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
