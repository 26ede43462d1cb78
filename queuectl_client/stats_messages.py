"""The protocol's messages for what the queue did: `stats` (per group, from per-minute buckets) and
`metrics` (the numbers behind the Prometheus exposition, which `prometheus` renders as text).

`protocol` re-exports them and lists them among its requests and replies.
"""

from __future__ import annotations

from typing import Annotated

import msgspec

from .schema import GroupName, Message

STATS_WINDOW = 86_400.0  # seconds of per-minute buckets the daemon keeps

Since = Annotated[float, msgspec.Meta(ge=60, le=STATS_WINDOW)]


class Stats(Message, frozen=True):
    """What ended in the last `since` seconds, per group (or of one group); `minutes`: with the
    per-minute counts, oldest first."""

    since: Since = STATS_WINDOW
    group: GroupName | None = None
    minutes: bool = False


class Minute(msgspec.Struct, frozen=True, array_like=True):
    """One minute's run endings; `t` is the minute's start (Unix time)."""

    t: float
    completed: int
    failed: int
    dead: int


class GroupStats(msgspec.Struct, frozen=True):
    """One group over the window: run endings by outcome, and percentiles from the fixed
    histogram buckets (None: no run in the window).  `failed` counts runs that failed and will
    be retried; `dead` counts runs after which the job died."""

    group: str
    completed: int
    failed: int
    dead: int
    success_ratio: float | None  # completed / (completed + failed + dead)
    duration_p50: float | None
    duration_p95: float | None
    duration_p99: float | None
    wait_p50: float | None  # from due to start
    wait_p95: float | None
    minutes: list[Minute] = []


class StatsReply(Message, frozen=True):
    since: float
    now: float
    groups: list[GroupStats]
    began: float | None = None  # when the stats began (the first start, or the stats file was lost)


class Metrics(Message, frozen=True):
    pass


class Histogram(msgspec.Struct, frozen=True):
    """A Prometheus histogram: `counts[i]` observations at most `bounds[i]` (cumulative), and the
    total `count` (the +Inf bucket) and `sum`."""

    bounds: list[float]
    counts: list[int]
    count: int
    sum: float


class GroupMetrics(msgspec.Struct, frozen=True):
    group: str
    jobs: dict[str, int]  # per state, now
    finished: dict[str, int]  # run endings per outcome (completed, failed, dead), since the stats began
    duration: Histogram
    wait: Histogram
    oldest_pending_age: float | None  # seconds since the longest-waiting due job became due


class MetricsReply(Message, frozen=True):
    version: str
    started_at: float  # the daemon process's start
    workers: int
    busy: int
    journal_bytes: int
    fsync: Histogram
    groups: list[GroupMetrics]
    python: str = ""  # the daemon's Python version
    now: float = 0.0  # the daemon's clock when it answered
