"""The daemon's settings: names, defaults, parsing and display."""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Callable
from typing import Any

from queuectl_client.durations import parse_duration, show_duration
from queuectl_client.protocol import INT32, MAX_TIMEOUT

from .stats import GRID_HIGH, GRID_LOW

log = logging.getLogger("queuectld.config")

MAX_OUTPUT_LIMIT = 1024**3  # bytes per stream per run; half of it is held in memory while a job runs
MAX_BUCKETS = 40  # bucket edges of the run-time histograms in the Prometheus metrics
# Log-spaced from 10 ms to a day: shell jobs often run minutes or hours.
DEFAULT_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0,
                   1800.0, 3600.0, 7200.0, 21600.0, 86400.0)


class ConfigError(ValueError):
    """A config key or value the daemon does not accept."""


_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmg]?)(?:i?b)?\s*$", re.IGNORECASE)
_UNITS = {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3}


def _int(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        raise ConfigError(f"{text!r} is not a whole number") from None
    if n < 0:
        raise ConfigError(f"{n} is negative")
    if n > INT32:
        raise ConfigError(f"{text} is too large (at most {INT32})")
    return n


def _base(text: str) -> float:
    try:
        x = float(text)
    except ValueError:
        raise ConfigError(f"{text!r} is not a number") from None
    if not math.isfinite(x) or x < 1:
        raise ConfigError(f"{text} must be a number of at least 1 (1: retry every second)")
    if x > 3600:
        raise ConfigError(f"{text} is too large (at most 3600)")
    return x


def _backoff_max(text: str) -> float:
    """Seconds, or a duration (90s, 30m, 12h, 7d); at least 1, at most a century."""
    x = _duration(text)
    if x < 1:
        raise ConfigError(f"{text} is too short (at least 1 second)")
    return x


def _timeout(text: str) -> float | None:
    if text.strip().lower() in ("none", "null", "off", "0", ""):
        return None
    try:
        x = float(text)
    except ValueError:
        raise ConfigError(f"{text!r} is not a number of seconds or 'none'") from None
    if not math.isfinite(x) or x < 0:
        raise ConfigError(f"{text} must be a positive number of seconds or 'none'")
    if x > MAX_TIMEOUT:
        raise ConfigError(f"{text} is too large (at most {MAX_TIMEOUT:.0f} s, ten years)")
    return x


def _heartbeat(text: str) -> float:
    """Seconds between two heartbeats of a node (PostgreSQL store), from 0.2 to 60."""
    try:
        x = float(text)
    except ValueError:
        raise ConfigError(f"{text!r} is not a number of seconds") from None
    if not math.isfinite(x) or not 0.2 <= x <= 60:
        raise ConfigError(f"{text} is out of range (from 0.2 to 60 seconds)")
    return x


def parse_size(text: str, minimum: int = 1024, maximum: int = 1 << 62) -> int:
    """'1048576', '512K', '10M', '1GiB' -> bytes."""
    m = _SIZE.match(text)
    if not m:
        raise ConfigError(f"{text!r} is not a size (for example 1048576, 512K or 10M)")
    x = float(m.group(1)) * _UNITS[m.group(2).lower()]
    if x < minimum:
        raise ConfigError(f"{text} is too small (at least {minimum} bytes)")
    if x > maximum:
        raise ConfigError(f"{text} is too large (at most {_show_size(maximum)})")
    return int(x)


def _duration(text: str) -> float:
    try:
        return parse_duration(text)
    except ValueError as e:
        raise ConfigError(str(e)) from None


def _output_limit(text: str) -> int:
    return parse_size(text, maximum=MAX_OUTPUT_LIMIT)


def _buckets(text: str) -> tuple[float, ...]:
    """Comma-separated bucket edges in seconds: ascending, from GRID_LOW to GRID_HIGH, at most MAX_BUCKETS."""
    parts = [part.strip() for part in text.split(",")]
    edges: list[float] = []
    for part in parts:
        try:
            x = float(part)
        except ValueError:
            raise ConfigError(f"{part!r} is not a number of seconds (give edges such as 0.1,1,10,60)") from None
        if not math.isfinite(x) or not GRID_LOW <= x <= GRID_HIGH:
            raise ConfigError(f"{part} is out of range (each edge from {GRID_LOW:g} to {GRID_HIGH:.0f} seconds)")
        if edges and x <= edges[-1]:
            raise ConfigError(f"{part} does not follow {_show_number(edges[-1])}: the edges must ascend")
        edges.append(x)
    if len(edges) > MAX_BUCKETS:
        raise ConfigError(f"{len(edges)} edges is too many (at most {MAX_BUCKETS})")
    return tuple(edges)


def _show_buckets(edges: tuple[float, ...]) -> str:
    return ",".join(_show_number(x) for x in edges)


def _show_number(x: Any) -> str:
    if x is None:
        return "none"
    if isinstance(x, float) and x.is_integer():
        return str(int(x))
    return str(x)


def _show_size(n: int) -> str:
    for unit, mult in (("G", 1024**3), ("M", 1024**2), ("K", 1024)):
        if n % mult == 0:
            return f"{n // mult}{unit}"
    return str(n)


# name -> (parse, show, default, help)
KEYS: dict[str, tuple[Callable[[str], Any], Callable[[Any], str], Any, str]] = {
    "max-retries": (_int, _show_number, 3, "retries after the first run, for jobs enqueued afterwards"),
    "backoff-base": (_base, _show_number, 2.0, "a failed job waits backoff-base ^ attempts seconds"),
    "backoff-max": (_backoff_max, _show_number, 3600.0, "the longest a failed job waits to be retried, in seconds"),
    "job-timeout": (_timeout, _show_number, None, "default timeout in seconds for jobs enqueued afterwards, or none"),
    "output-limit": (_output_limit, _show_size, 1024**2, "bytes kept per stream per run: the head and the tail"),
    "keep-completed": (_duration, show_duration, 7 * 86_400.0,
                       "completed jobs are removed this long after they end (0: never)"),
    "keep-dead": (_duration, show_duration, 0.0, "dead jobs are removed this long after they end (0: never)"),
    "metrics-buckets": (_buckets, _show_buckets, DEFAULT_BUCKETS,
                        "the bucket edges, in seconds, of the run duration and wait histograms in `metrics`"),
    "heartbeat": (_heartbeat, _show_number, 2.0,
                  "seconds between a node's heartbeats (PostgreSQL store): silent 2 of them, a node kills its "
                  "jobs and stops claiming; silent 4, it is declared lost and its jobs are retried elsewhere"),
}


def canonical_key(key: str) -> str:
    name = key.strip().lower().replace("_", "-")
    if name not in KEYS:
        raise ConfigError(f"unknown config key {key!r} (known: {', '.join(KEYS)})")
    return name


class Config:
    """Typed current values; changed only through `set`, which the queue calls on replay too."""

    def __init__(self) -> None:
        self.values: dict[str, Any] = {k: v[2] for k, v in KEYS.items()}

    def parse(self, key: str, text: str) -> tuple[str, str]:
        """Validate a setting; returns the canonical key and value text to journal."""
        name = canonical_key(key)
        parse, show = KEYS[name][0], KEYS[name][1]
        try:
            value = parse(text)
        except ConfigError as e:
            raise ConfigError(f"bad value for {name}: {e}") from None
        return name, show(value)

    def restore(self, name: str, text: str) -> None:
        """Apply a journaled setting.  One that this version does not accept (an older daemon
        took it, or the key is gone) is skipped with a warning: a setting never stops a start."""
        try:
            self.values[name] = KEYS[name][0](text)
        except (KeyError, ConfigError) as e:
            log.warning("ignoring the stored setting %s = %r: %s; using %s", name, text, e,
                        self.show(name) if name in KEYS else "nothing")

    def show(self, name: str) -> str:
        return KEYS[name][1](self.values[name])

    @property
    def max_retries(self) -> int:
        n: int = self.values["max-retries"]
        return n

    @property
    def backoff_base(self) -> float:
        x: float = self.values["backoff-base"]
        return x

    @property
    def backoff_max(self) -> float:
        x: float = self.values["backoff-max"]
        return x

    @property
    def job_timeout(self) -> float | None:
        x: float | None = self.values["job-timeout"]
        return x

    @property
    def output_limit(self) -> int:
        n: int = self.values["output-limit"]
        return n

    @property
    def keep_completed(self) -> float:
        x: float = self.values["keep-completed"]
        return x

    @property
    def keep_dead(self) -> float:
        x: float = self.values["keep-dead"]
        return x

    @property
    def metrics_buckets(self) -> tuple[float, ...]:
        edges: tuple[float, ...] = self.values["metrics-buckets"]
        return edges

    @property
    def heartbeat(self) -> float:
        x: float = self.values["heartbeat"]
        return x
