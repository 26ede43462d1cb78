"""Cron slots: when a schedule fires, as UTC seconds, from its expression and its time zone.

The grammar is cronsim's (the five standard fields: ranges, steps, lists,
month and weekday names; day-of-month and day-of-week are OR'ed when both
are restricted, as in Vixie and Debian cron), plus the macros @hourly,
@daily (@midnight), @weekly, @monthly and @yearly (@annually).  A sixth
field (seconds) is refused.

cronsim walks wall-clock times; the mapping to UTC is made here, so the
rule at a DST transition is ours and the same in every store:

- a wall-clock time that does not exist (spring forward) is no slot;
- a wall-clock time that happens twice (fall back) is one slot, at its
  first occurrence.

With those two rules, wall-clock order and UTC order agree, so the next
slot after an instant is the first matching wall-clock time whose first
occurrence comes after it.  Pure functions; no clock is read here.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta, tzinfo
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from cronsim import CronSim, CronSimError

from .rules import QueueError

MACROS = {
    "@hourly": "0 * * * *",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@weekly": "0 0 * * 0",
    "@monthly": "0 0 1 * *",
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
}
MAX_LOOK = 10_000  # wall-clock matches looked at for one slot, at most (a skipped or repeated hour holds 60)
_EPOCH = datetime(1970, 1, 1)
UTC_ZONE: tzinfo = UTC


def expression(text: str) -> str:
    """The five fields an expression stands for; QueueError "invalid cron expression ...: reason"."""
    expr = " ".join(text.split())
    fields = MACROS.get(expr.lower(), expr)
    reason = None
    if fields.startswith("@"):
        reason = f"unknown macro (use {', '.join(m for m in MACROS if m not in ('@midnight', '@annually'))})"
    elif len(fields.split()) != 5:
        reason = f"expected 5 fields (minute hour day-of-month month day-of-week), found {len(fields.split())}"
    else:
        try:
            CronSim(fields, _EPOCH)
        except CronSimError as e:
            reason = str(e).rstrip(".")
        except (ValueError, IndexError, KeyError) as e:  # what cronsim did not foresee
            reason = str(e) or type(e).__name__
    if reason is not None:
        raise QueueError("invalid", f"invalid cron expression {text!r}: {reason}")
    return fields


def zone(name: str) -> ZoneInfo:
    """The IANA zone `name`; QueueError "unknown time zone X"."""
    try:
        if not name or name.startswith(("/", ".")) or ".." in name:
            raise ValueError(name)
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise QueueError("invalid", f"unknown time zone {name}") from None


def local_zone_name() -> str:
    """The name of this process's local zone: $TZ if it names an IANA zone, else the one /etc/localtime
    links to (or /etc/timezone names), else UTC.  A schedule keeps the name it was given at `add`."""
    candidates = []
    tz = os.environ.get("TZ")
    if tz:
        candidates.append(tz.removeprefix(":"))
    try:
        target = os.path.realpath("/etc/localtime")
        if "/zoneinfo/" in target:
            candidates.append(target.split("/zoneinfo/", 1)[1])
    except OSError:
        pass
    try:
        with open("/etc/timezone") as f:
            candidates.append(f.read().strip())
    except OSError:
        pass
    for name in candidates:
        try:
            zone(name)
            return name
        except QueueError:
            continue
    return "UTC"


def _utc(wall: datetime, tz: tzinfo) -> float | None:
    """The first occurrence of a wall-clock time in `tz`, as UTC seconds; None if it does not exist."""
    aware = wall.replace(tzinfo=tz, fold=0)
    back = aware.astimezone(UTC).astimezone(tz).replace(tzinfo=None)
    if back != wall:
        return None  # skipped by a spring-forward transition
    return aware.timestamp()


def _wall(t: float, tz: tzinfo) -> datetime:
    return datetime.fromtimestamp(t, tz).replace(tzinfo=None, fold=0)


def next_slot(fields: str, tz: tzinfo, after: float) -> float | None:
    """The first slot strictly after `after` (UTC seconds); None if there is none before year 9999."""
    try:
        walk = CronSim(fields, _wall(after, tz))
        for _ in range(MAX_LOOK):
            t = _utc(next(walk), tz)
            if t is not None and t > after:
                return t
    except (StopIteration, OverflowError, ValueError, OSError):
        return None
    return None


def prev_slot(fields: str, tz: tzinfo, upto: float) -> float | None:
    """The last slot at or before `upto` (UTC seconds); None if there is none since 1970."""
    try:
        local = datetime.fromtimestamp(upto, tz)
        start = local.replace(tzinfo=None, fold=0, microsecond=0)
        if local.fold:
            # In the second pass of a repeated hour: the first pass's times are behind us, all of them.
            start += (local.replace(fold=0).utcoffset() or timedelta()) - (local.utcoffset() or timedelta())
        walk = CronSim(fields, start + timedelta(seconds=1), reverse=True)
        for _ in range(MAX_LOOK):
            wall = next(walk)
            if wall < _EPOCH:
                return None
            t = _utc(wall, tz)
            if t is not None and t <= upto:
                return t
    except (StopIteration, OverflowError, ValueError, OSError):
        return None
    return None


def job_id(name: str, slot: float) -> str:
    """The id of a fire's job: `NAME-20261201T0300Z`, with seconds only when the slot has them."""
    when = datetime.fromtimestamp(slot, UTC)
    return f"{name}-{when:%Y%m%dT%H%M}{when:%S}Z" if when.second else f"{name}-{when:%Y%m%dT%H%M}Z"
