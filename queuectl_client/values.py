"""Argument types for the queue-control commands: signals, durations, times, timeouts, group names, states.

Each is an argparse type: it returns the value to send, or raises
ArgumentTypeError with a one-line reason, so a value that is wrong in itself
is refused (exit 2) before any connection is made.
"""

from __future__ import annotations

import argparse
import math
import signal as _signal
from datetime import datetime
from typing import Any

import msgspec

from . import protocol as p
from .batches import unix_seconds
from .durations import parse_duration, plain_number
from .schema import ScheduleName
from .stats_messages import STATS_WINDOW

MAX_SIGNAL = 64
MAX_GRACE = 86_400.0
_GROUP_WORDS = "a group name is 1 to 64 letters, digits, '.', '_' or '-', starting with a letter or digit"
_decode_time = msgspec.json.Decoder(datetime).decode


def _quoted(text: str) -> str:
    return repr(text if len(text) <= 40 else text[:39] + "…")


def signal_number(text: str) -> int:
    """`TERM`, `SIGTERM`, `term`, or a number from 1 to 64."""
    if text.isdigit():
        if plain_number(text) and 1 <= int(text) <= MAX_SIGNAL:
            return int(text)
    else:
        name = text.upper()
        try:
            return int(_signal.Signals[name if name.startswith("SIG") else "SIG" + name])
        except KeyError:
            pass
    raise argparse.ArgumentTypeError(f"expected a signal name (TERM, INT, KILL, ...) or a number from 1 to "
                                     f"{MAX_SIGNAL}, not {_quoted(text)}")


def duration(text: str) -> float:
    """A duration such as 90s, 30m, 12h, 7d or 2w, or plain seconds."""
    try:
        return parse_duration(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def since(text: str) -> float:
    """`stats --since`: a duration from a minute to the day of stats the daemon keeps."""
    seconds = duration(text)
    if not 60 <= seconds <= STATS_WINDOW:
        raise argparse.ArgumentTypeError(f"{_quoted(text)} is out of range: from 1m to 24h "
                                         "(the daemon keeps a day of stats)")
    return seconds


def when(text: str) -> float | None:
    """An ISO 8601 time (without a zone: local time here), UNIX seconds, or `now` (None: due now)."""
    if text.strip().lower() == "now":
        return None
    try:
        if not plain_number(text):
            raise ValueError(text)
        t = float(text)
    except ValueError:
        try:
            t = unix_seconds(_decode_time(msgspec.json.encode(text.strip())))
        except msgspec.ValidationError:
            raise argparse.ArgumentTypeError(f"expected an ISO 8601 time (2026-12-01T09:00:00), UNIX seconds "
                                             f"or now, not {_quoted(text)}") from None
    if not 0 <= t <= p.MAX_TIME:  # NaN fails this too
        raise argparse.ArgumentTypeError(f"expected a time from 1970 to 9999, not {_quoted(text)}")
    return t


def timeout(text: str) -> float | None:
    """Seconds, more than 0 and at most ten years; `none` (or 0) for no timeout."""
    if text.strip().lower() == "none":
        return None
    try:
        x = float(text) if plain_number(text) else math.nan
    except ValueError:
        x = math.nan
    if x == 0:
        return None
    if not 0 < x <= p.MAX_TIMEOUT:
        raise argparse.ArgumentTypeError(f"expected seconds, more than 0 and at most {p.MAX_TIMEOUT:.0f} "
                                         f"(ten years), or none (or 0), not {_quoted(text)}")
    return x


def job_id(text: str) -> str:
    try:
        return msgspec.convert(text, p.JobId)
    except msgspec.ValidationError:
        raise argparse.ArgumentTypeError(f"a job id is 1 to 64 letters, digits, '.', '_' or '-', starting with a "
                                         f"letter or digit, not {_quoted(text)}") from None


def group_name(text: str) -> str:
    try:
        return msgspec.convert(text, p.GroupName)
    except msgspec.ValidationError:
        raise argparse.ArgumentTypeError(f"{_GROUP_WORDS}, not {_quoted(text)}") from None


def schedule_name(text: str) -> str:
    try:
        return msgspec.convert(text, ScheduleName)
    except msgspec.ValidationError:
        raise argparse.ArgumentTypeError("a schedule name is 1 to 47 letters, digits, '.', '_' or '-', starting "
                                         f"with a letter or digit, not {_quoted(text)}") from None


def cron_text(text: str) -> str:
    """A cron expression as far as the client can tell (the daemon parses it)."""
    if not text.strip():
        raise argparse.ArgumentTypeError("invalid cron expression '': give five fields or @hourly, @daily, "
                                         "@weekly, @monthly or @yearly")
    return text


def time_zone(text: str) -> str:
    """An IANA zone name as far as the client can tell (the daemon knows the zones)."""
    if not text or len(text) > 255 or any(ord(c) < 0x20 or ord(c) == 0x7F for c in text):
        raise argparse.ArgumentTypeError(f"unknown time zone {_quoted(text)}")
    return text


def state_in(*allowed: str, why: str = "") -> Any:
    """An argparse type: one of the `allowed` states (`why` says why the others are not)."""

    def parse(text: str) -> str:
        if text not in allowed:
            reason = f"{why}; " if why else ""
            raise argparse.ArgumentTypeError(f"{reason}expected {', '.join(allowed[:-1])} or {allowed[-1]}, "
                                             f"not {_quoted(text)}")
        return text

    return parse


def whole(lo: int, hi: int) -> Any:
    """An argparse type: a whole number from `lo` to `hi`."""

    def parse(text: str) -> int:
        try:
            n = int(text) if plain_number(text) else None
        except ValueError:
            n = None
        if n is None or not lo <= n <= hi:
            raise argparse.ArgumentTypeError(f"expected a whole number from {lo} to {hi}, not {quoted(text)}")
        return n

    return parse


def quoted(text: str) -> str:
    return repr(text if len(text) <= 40 else text[:39] + "…")
