"""What the runs did: per group, their endings and times, per minute for a day and in totals.

Each group keeps a ring of 1,440 minutes.  A minute holds its run endings by
outcome (completed; failed, to be retried; dead) and one sparse histogram of
run durations (end - start) and waits (start - due) on a fixed log grid.
Recording a run costs one index into the ring, two `bisect`s into the grid
and a few increments; a minute without a run costs one empty ring slot.

Totals since the stats began (endings, and both histograms over the grid)
feed the Prometheus counters; they are summed into the configured bucket
edges only when someone reads them.  The journal's fdatasync times go into
one more total histogram.

`encode` and `decode` are the stats file's format (see `stats_keeper`).
"""

from __future__ import annotations

import math
import time
import zlib
from bisect import bisect_left
from collections.abc import Iterable, Iterator

import msgspec

# The grid: PER_DECADE buckets per factor of ten from GRID_LOW to GRID_HIGH seconds (100 µs to 11.6
# days), plus one below (<= GRID_LOW, zero included) and one above.  Neighbouring edges are 12% apart.
GRID_LOW, GRID_HIGH, PER_DECADE = 1e-4, 1e6, 20
_STEPS = round(math.log10(GRID_HIGH / GRID_LOW) * PER_DECADE)
EDGES = tuple(GRID_LOW * 10 ** (i / PER_DECADE) for i in range(_STEPS + 1))
BUCKETS = len(EDGES) + 1  # bucket i: EDGES[i-1] < x <= EDGES[i]; the last one: above GRID_HIGH

MINUTES = 1440  # the ring: a day of minutes
OUTCOMES = ("completed", "failed", "dead")
_OUTCOME = {name: i for i, name in enumerate(OUTCOMES)}


def bucket(x: float) -> int:
    """The grid bucket of a value in seconds."""
    return bisect_left(EDGES, x)


def nearest_edge(bound: float) -> int:
    """The index of the grid edge nearest to `bound` (on a log scale)."""
    if bound <= GRID_LOW:
        return 0
    return min(len(EDGES) - 1, round(math.log10(bound / GRID_LOW) * PER_DECADE))


def percentile(counts: Iterable[tuple[int, int]], q: float) -> float | None:
    """The q-quantile (0 < q <= 1) of (bucket, count) pairs in bucket order, interpolated linearly
    inside its bucket; None without observations.  Above the grid it is GRID_HIGH."""
    pairs = [(i, n) for i, n in counts if n > 0]
    total = sum(n for _, n in pairs)
    if not total:
        return None
    rank = q * total
    seen = 0
    for i, n in pairs:
        if seen + n >= rank:
            if i >= len(EDGES):
                return GRID_HIGH
            low = 0.0 if i == 0 else EDGES[i - 1]
            return low + (EDGES[i] - low) * max(0.0, rank - seen) / n
        seen += n
    return GRID_HIGH  # unreachable: the ranks add up to `total`


class Totals:
    """A histogram over the grid since the stats began: counts per bucket and the sum."""

    __slots__ = ("counts", "sum")

    def __init__(self) -> None:
        self.counts = [0] * BUCKETS
        self.sum = 0.0

    def observe(self, x: float) -> None:
        self.counts[bisect_left(EDGES, x)] += 1
        self.sum += x

    @property
    def count(self) -> int:
        return sum(self.counts)

    def cumulative(self, bounds: Iterable[float]) -> list[int]:
        """Observations at most each bound, the bound rounded to its nearest grid edge."""
        below, running = [], 0
        for n in self.counts:
            running += n
            below.append(running)
        return [below[nearest_edge(b)] for b in bounds]


class Minute:
    """One minute's run endings by outcome, and its durations and waits: grid bucket -> runs, waits
    at bucket + BUCKETS."""

    __slots__ = ("ends", "minute", "times")

    def __init__(self, minute: int) -> None:
        self.minute = minute  # Unix time // 60
        self.ends = [0, 0, 0]
        self.times: dict[int, int] = {}


class GroupStats:
    __slots__ = ("duration", "ends", "ring", "wait")

    def __init__(self) -> None:
        self.ring: list[Minute | None] = [None] * MINUTES
        self.ends = [0, 0, 0]  # since the stats began
        self.duration = Totals()
        self.wait = Totals()

    def minutes(self, first: int, last: int) -> Iterator[Minute]:
        """The minutes from `first` to `last` (Unix minutes) that had a run ending."""
        ring = self.ring
        for m in range(max(first, last - MINUTES + 1), last + 1):
            slot = ring[m % MINUTES]
            if slot is not None and slot.minute == m:
                yield slot


class Window:
    """A group's runs over some minutes: endings by outcome, and percentiles."""

    __slots__ = ("ends", "minutes", "times")

    def __init__(self, group: GroupStats, first: int, last: int) -> None:
        self.ends = [0, 0, 0]
        self.times: dict[int, int] = {}
        self.minutes: list[Minute] = []
        times = self.times
        for m in group.minutes(first, last):
            self.minutes.append(m)
            for k in range(3):
                self.ends[k] += m.ends[k]
            for i, n in m.times.items():
                times[i] = times.get(i, 0) + n

    def duration(self, q: float) -> float | None:
        return percentile(sorted((i, n) for i, n in self.times.items() if i < BUCKETS), q)

    def wait(self, q: float) -> float | None:
        return percentile(sorted((i - BUCKETS, n) for i, n in self.times.items() if i >= BUCKETS), q)


class Stats:
    """Every group's stats, and the journal's fdatasync times."""

    def __init__(self, began: float | None = None) -> None:
        self.groups: dict[str, GroupStats] = {}
        self.fsync = Totals()
        self.began = time.time() if began is None else began
        self.changed = False  # since the last save

    def group(self, name: str) -> GroupStats:
        g = self.groups.get(name)
        if g is None:
            g = self.groups[name] = GroupStats()
        return g

    def ended(self, group: str, outcome: str, started: float | None, due: float, at: float,
              timed: bool = True) -> None:
        """A run ended at `at` with `outcome` (a final state: completed, failed or dead).  `timed`:
        its start is known to this daemon (a run a crash interrupted has no known end)."""
        k = _OUTCOME.get(outcome)
        if k is None:
            return
        g = self.groups.get(group) or self.group(group)
        g.ends[k] += 1
        minute = int(at // 60)
        slot = g.ring[minute % MINUTES]
        if slot is None or slot.minute < minute:
            slot = g.ring[minute % MINUTES] = Minute(minute)
        elif slot.minute > minute:  # the clock went back more than a day: only the totals count it
            slot = None
        if slot is not None:
            slot.ends[k] += 1
        if timed and started is not None:
            duration = at - started if at > started else 0.0
            wait = started - due if started > due else 0.0
            g.duration.observe(duration)
            g.wait.observe(wait)
            if slot is not None:
                times = slot.times
                i = bisect_left(EDGES, duration)
                times[i] = times.get(i, 0) + 1
                i = bisect_left(EDGES, wait) + BUCKETS
                times[i] = times.get(i, 0) + 1
        self.changed = True

    def synced(self, seconds: float) -> None:
        """The journal made its writes durable in `seconds`."""
        self.fsync.observe(seconds)
        self.changed = True

    def window(self, group: str, now: float, since: float) -> Window:
        """The group's runs that ended in the last `since` seconds, by whole minutes: the minute
        of `now` and the ones before it, ceil(since / 60) in all."""
        last = int(now // 60)
        g = self.groups.get(group) or GroupStats()
        return Window(g, last - math.ceil(since / 60) + 1, last)

    def forget(self, keep: set[str]) -> None:
        """Drop the stats of groups that are gone."""
        for name in [name for name in self.groups if name not in keep]:
            del self.groups[name]
            self.changed = True


def combined(parts: list[Stats]) -> Stats:
    """Several nodes' stats as one (a cluster's): endings, minutes and histograms summed."""
    out = Stats(began=min(s.began for s in parts))
    for s in parts:
        _add(out.fsync, s.fsync)
        for name, g in s.groups.items():
            o = out.group(name)
            o.ends = [a + b for a, b in zip(o.ends, g.ends, strict=True)]
            _add(o.duration, g.duration)
            _add(o.wait, g.wait)
            for m in g.ring:
                if m is None:
                    continue
                slot = o.ring[m.minute % MINUTES]
                if slot is None or slot.minute < m.minute:
                    slot = o.ring[m.minute % MINUTES] = Minute(m.minute)
                elif slot.minute > m.minute:
                    continue
                slot.ends = [a + b for a, b in zip(slot.ends, m.ends, strict=True)]
                for i, n in m.times.items():
                    slot.times[i] = slot.times.get(i, 0) + n
    return out


def _add(into: Totals, more: Totals) -> None:
    into.counts = [a + b for a, b in zip(into.counts, more.counts, strict=True)]
    into.sum += more.sum


# -- the stats file -----------------------------------------------------------------

MAGIC = b"QCTLSTAT"
FORMAT = 1  # the file's version; a file of a later version is not read


class StatsFileError(ValueError):
    """The stats file cannot be read; the message says why."""


class _MinuteRecord(msgspec.Struct, array_like=True, gc=False):
    minute: int
    ends: list[int]
    times: dict[int, int]


class _GroupRecord(msgspec.Struct, array_like=True):
    name: str
    ends: list[int]
    duration: list[tuple[int, int]]  # sparse: (bucket, count)
    duration_sum: float
    wait: list[tuple[int, int]]
    wait_sum: float
    minutes: list[_MinuteRecord]


class _FileRecord(msgspec.Struct, array_like=True):
    grid: tuple[float, float, int]  # GRID_LOW, GRID_HIGH, PER_DECADE
    began: float
    fsync: list[tuple[int, int]]
    fsync_sum: float
    groups: list[_GroupRecord]


_decoder = msgspec.msgpack.Decoder(_FileRecord)


def _sparse(counts: list[int]) -> list[tuple[int, int]]:
    return [(i, n) for i, n in enumerate(counts) if n]


def encode(stats: Stats) -> bytes:
    groups = []
    for name, g in stats.groups.items():
        minutes = [_MinuteRecord(m.minute, m.ends, m.times) for m in g.ring if m is not None]
        groups.append(_GroupRecord(name, g.ends, _sparse(g.duration.counts), g.duration.sum,
                                   _sparse(g.wait.counts), g.wait.sum, minutes))
    body = msgspec.msgpack.encode(_FileRecord((GRID_LOW, GRID_HIGH, PER_DECADE), stats.began,
                                              _sparse(stats.fsync.counts), stats.fsync.sum, groups))
    return MAGIC + FORMAT.to_bytes(2, "big") + zlib.crc32(body).to_bytes(4, "big") + body


def decode(data: bytes, now: float) -> Stats:
    """The stats a file holds, minutes older than a day before `now` dropped; StatsFileError if
    it is truncated, damaged, of a later version or of another grid."""
    if len(data) < len(MAGIC) + 6:
        raise StatsFileError(f"truncated ({len(data)} bytes)")
    if data[: len(MAGIC)] != MAGIC:
        raise StatsFileError("not a stats file (bad magic)")
    version = int.from_bytes(data[8:10], "big")
    if version > FORMAT:
        raise StatsFileError(f"written by a later queuectld (format {version}; this one reads {FORMAT})")
    body = data[14:]
    if zlib.crc32(body) != int.from_bytes(data[10:14], "big"):
        raise StatsFileError("damaged or truncated (bad checksum)")
    try:
        record = _decoder.decode(body)
    except msgspec.DecodeError as e:
        raise StatsFileError(f"damaged ({e})") from None
    if tuple(record.grid) != (GRID_LOW, GRID_HIGH, PER_DECADE):
        raise StatsFileError(f"kept on another grid {tuple(record.grid)}")
    stats = Stats(began=record.began)
    _fill(stats.fsync, record.fsync, record.fsync_sum)
    oldest = int(now // 60) - MINUTES + 1
    for gr in record.groups:
        g = stats.group(gr.name)
        g.ends = _three(gr.ends)
        _fill(g.duration, gr.duration, gr.duration_sum)
        _fill(g.wait, gr.wait, gr.wait_sum)
        for mr in gr.minutes:
            if mr.minute < oldest:
                continue
            m = Minute(mr.minute)
            m.ends = _three(mr.ends)
            m.times = {i: n for i, n in mr.times.items() if 0 <= i < 2 * BUCKETS and n > 0}
            slot = g.ring[m.minute % MINUTES]
            if slot is None or slot.minute < m.minute:
                g.ring[m.minute % MINUTES] = m
    return stats


def _fill(totals: Totals, pairs: list[tuple[int, int]], total: float) -> None:
    for i, n in pairs:
        if not 0 <= i < BUCKETS or n < 0:
            raise StatsFileError(f"damaged (bucket {i} of {BUCKETS}, count {n})")
        totals.counts[i] = n
    totals.sum = total


def _three(ends: list[int]) -> list[int]:
    if len(ends) != 3 or min(ends) < 0:
        raise StatsFileError(f"damaged (run endings {ends})")
    return list(ends)
