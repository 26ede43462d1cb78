"""An enqueue batch on the wire: times resolved here, frames within MAX_FRAME, the ids a resent batch got."""

from __future__ import annotations

import time
from datetime import datetime

import msgspec

from . import protocol as p
from .errors import TooLarge

_encoder = msgspec.msgpack.Encoder()


def local_seconds(spec: p.JobSpec) -> p.JobSpec:
    """The spec with a datetime `run_at` as UNIX seconds: a time without a zone is local time here.

    The daemon may run in another zone (a service, another TZ), so the client,
    which knows the zone its user meant, resolves the time.
    """
    if not isinstance(spec.run_at, datetime):
        return spec
    t = unix_seconds(spec.run_at)
    if not 0 <= t <= p.MAX_TIME:
        raise msgspec.ValidationError("run_at must be a time from 1970 to 9999 (at $.run_at)")
    return msgspec.structs.replace(spec, run_at=t)


def unix_seconds(when: datetime) -> float:
    """`when` as UNIX seconds, a time without a zone taken as local time here; -1.0 if it has none.

    `datetime.timestamp()` of a naive time near the year 9999 overflows (it
    looks at the times a day around it); the C library's mktime does not.
    """
    try:
        return when.timestamp()
    except (OverflowError, OSError, ValueError):
        if when.tzinfo is not None and when.utcoffset() is not None:
            return -1.0
    try:
        return time.mktime(when.timetuple()) + when.microsecond / 1e6
    except (OverflowError, OSError, ValueError):
        return -1.0


def enqueue_frames(specs: list[p.JobSpec], prefix: str, cwd: str | None, batch: int,
                    want_jobs: bool, env: dict[str, str] | None = None) -> list[bytes]:
    """The batch as encoded Enqueue frames, each within MAX_FRAME, all checked before any is sent;
    the last carries the caller's environment `env`, for the whole batch."""
    frames: list[bytes] = []

    def add(start: int, chunk: list[p.JobSpec], more: bool) -> None:
        body = _encoder.encode(p.Enqueue(chunk, more, prefix, cwd, want_jobs, None if more else env))
        if len(body) <= p.MAX_FRAME:
            frames.append(body)
        elif len(chunk) == 1:
            raise TooLarge(f"job {start + 1} is {len(body):,} bytes encoded, over the frame limit "
                           f"of {p.MAX_FRAME:,} bytes")
        else:
            half = len(chunk) // 2
            add(start, chunk[:half], True)
            add(start + half, chunk[half:], more)

    if not specs:
        add(0, [], False)
    for i in range(0, len(specs), batch):
        add(i, specs[i : i + batch], i + batch < len(specs))
    return frames


def batch_ids(specs: list[p.JobSpec], prefix: str) -> list[str]:
    """The ids the daemon gives a batch (see protocol.Enqueue.id_prefix)."""
    if len(specs) == 1:
        return [specs[0].id or prefix]
    return [s.id or f"{prefix}-{i}" for i, s in enumerate(specs, 1)]
