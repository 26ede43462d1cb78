"""`queuectl why`: the request, the reason the daemon gives, and the sentence that says it.

The daemon decides the reason (queuectld/diagnose.py) and sends it as data:
a code and the facts it rests on.  `sentence` words it, with the times
written by the caller: the daemon fills `WhyReply.text` in UTC, the CLI
prints its own line in the user's local time.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import msgspec

from .durations import show_duration
from .schema import Message

# In the order they are looked for: the first that holds is the reason.  A code is a string on the
# wire, so that a client reads a reason a newer daemon adds (and prints its `text`).
CODES = ("completed", "dead", "running", "dependency", "paused", "scheduled", "backoff", "no_workers", "busy",
         "group_full", "next")


class Reason(msgspec.Struct, frozen=True, kw_only=True):
    """Why a job is not running now: `code`, and the facts that say it (the others are null).

    completed: at (when it finished).  dead: at, error.  running: worker ("node/slot"; null while it is
    being started), at (since when).  dependency: job (the dependency), state (its state).  paused: group.
    scheduled: at (when it is due).  backoff: at (when its retry is due), count (the retry it waits for),
    limit (its max_retries).  no_workers: limit (0).  busy: count (running), limit (the pool's size), ahead.
    group_full: group, count (its jobs running), limit (its parallel).  next: ahead (the due jobs that
    would start before it).
    """

    code: str  # one of CODES
    at: float | None = None
    job: str | None = None
    state: str | None = None
    group: str | None = None
    worker: str | None = None
    error: str | None = None
    count: int | None = None
    limit: int | None = None
    ahead: int | None = None


class Why(Message, frozen=True):
    """Why the job is not running now; replied to with `WhyReply` (an unknown id: not_found)."""

    id: str


class WhyReply(Message, frozen=True):
    id: str
    reason: Reason
    text: str  # the reason in words, times in UTC
    now: float = 0.0  # the daemon's time when it looked


def span(seconds: float) -> str:
    """A duration as people read it at a glance, in its largest unit: 45s, 12m, 3h, 4d."""
    seconds = abs(seconds)
    if seconds < 0.5:
        return "0s"
    for unit, below in ((1, 90), (60, 90 * 60), (3600, 48 * 3600)):
        if seconds < below:
            return show_duration(round(seconds / unit) * unit)
    return show_duration(round(seconds / 86400) * 86400)


def utc(t: float) -> str:
    """ISO 8601 UTC, to the second; the number for a time the platform cannot write."""
    try:
        return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))
    except (OverflowError, ValueError, OSError):
        return repr(t)


def local_time(t: float) -> str:
    """A time in the local zone: HH:MM:SS today, else with its date."""
    try:
        day = time.strftime("%Y-%m-%d", time.localtime(t))
        clock = time.strftime("%H:%M:%S", time.localtime(t))
    except (OverflowError, ValueError, OSError):
        return repr(t)
    return clock if day == time.strftime("%Y-%m-%d") else f"{day} {clock}"


def _jobs(n: int) -> str:
    return "1 job" if n == 1 else f"{n:d} jobs"


def sentence(r: Reason, now: float, when: Callable[[float], str] = utc) -> str:
    """The reason in one line; `when` writes a time."""
    at = r.at

    def t() -> str:
        return "?" if at is None else when(at)

    def since() -> str:
        return "" if at is None else f" ({span(now - at)} ago)"

    def until() -> str:
        return "" if at is None else f"in {span(at - now)}"

    code = r.code
    if code == "completed":
        return f"completed at {t()}{since()}"
    if code == "dead":
        return f"dead: {r.error or 'no error recorded'}" + ("" if at is None else f" (at {t()})")
    if code == "running":
        if r.worker is None:
            return "starting on a worker now"
        return f"running on worker {r.worker} since {t()}{since()}"
    if code == "dependency":
        return f"waiting for dependency {r.job} ({r.state})"
    if code == "paused":
        return f"group {r.group} paused"
    if code == "scheduled":
        return f"scheduled for {t()} ({until()})"
    if code == "backoff":
        return f"backoff until {t()} ({until()}; retry {r.count} of {r.limit})"
    if code == "no_workers":
        return "no workers (pool is 0)"
    ahead = r.ahead or 0
    if code == "busy":
        busy = f"all {r.limit} workers busy" if r.limit != 1 else "the only worker is busy"
        return f"{busy}; {_jobs(ahead)} ahead of it" if ahead else busy
    if code == "group_full":
        return f"group {r.group} full ({r.count} of {r.limit} running)"
    if code == "next":
        return f"next in line, {_jobs(ahead)} ahead of it" if ahead else "next in line, nothing ahead of it"
    return code
