"""Durations as people write them: `90s`, `30m`, `12h`, `7d`, `2w`, or plain seconds.

Shared by the CLI (`--older-than`) and the daemon (`keep-completed`, `keep-dead`).
"""

from __future__ import annotations

import math
import re

UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86_400, "w": 7 * 86_400}
MAX_DURATION = 100 * 365.25 * 86_400  # a century
_DURATION = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)\s*([smhdw]?)\s*$", re.IGNORECASE | re.ASCII)


def parse_duration(text: str) -> float:
    """Seconds; ValueError with a one-line reason for anything else."""
    m = _DURATION.match(text)
    if not m:
        raise ValueError(f"{text!r} is not a duration (for example 90s, 30m, 12h or 7d)")
    seconds = float(m.group(1)) * UNITS[(m.group(2) or "s").lower()]
    if not math.isfinite(seconds) or seconds > MAX_DURATION:
        raise ValueError(f"{text!r} is too long (at most a century)")
    return seconds


def show_duration(seconds: float) -> str:
    """The largest whole unit: 604800 -> '7d', 90 -> '90s', 0 -> '0'."""
    if seconds == 0:
        return "0"
    for unit in ("d", "h", "m"):
        if seconds % UNITS[unit] == 0:
            return f"{int(seconds // UNITS[unit])}{unit}"
    return f"{seconds:g}s"


def plain_number(text: str) -> bool:
    """Written the way people write numbers here: ASCII, without `_` (which int() and float() accept)."""
    return text.isascii() and "_" not in text
