"""One poll of the daemon for every open page, and the pushes that carry what it saw.

A loop asks Status every second (every SLOW seconds while every open stream
asked for `slow`; not at all while no stream is open), and the per-minute
counts for the chart at most every MINUTES_EVERY seconds.  It pushes
`overview` to every stream when the overview changed, `jobs` when the counts
per state did, and `unreachable` while the daemon does not answer.  Nothing is
kept but the latest overview; a stream that reads too slowly loses its queued
pushes and gets the latest state instead.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from typing import Any

import msgspec

from .. import protocol as p
from ..errors import RequestFailed
from .link import Link, Unreachable

log = logging.getLogger("queuectl.dashboard")

FAST = 1.0
SLOW = 5.0
MINUTES_EVERY = 10.0
HOUR = 60


def sse(event: str, data: Any) -> bytes:
    """One Server-Sent Event; JSON keeps the data on one line."""
    return f"event: {event}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n".encode()


CLOSE = b""  # queued to a stream: the dashboard is stopping


class Stream:
    """What one browser's event stream has not been sent yet."""

    def __init__(self, slow: bool) -> None:
        self.slow = slow
        self.queue: asyncio.Queue[bytes] = asyncio.Queue(maxsize=16)

    def put(self, item: bytes, latest: list[bytes]) -> None:
        try:
            self.queue.put_nowait(item)
        except asyncio.QueueFull:  # a slow reader: what it missed is replaced by the state now
            while not self.queue.empty():
                self.queue.get_nowait()
            for item in latest:
                self.queue.put_nowait(item)


def empty_minutes(now: float) -> list[dict[str, float]]:
    last = now // 60 * 60
    return [{"t": last - 60 * (HOUR - 1 - i), "completed": 0, "failed": 0, "dead": 0} for i in range(HOUR)]


def minutes_of(reply: p.StatsReply | None, now: float) -> list[dict[str, float]]:
    """The last hour's minutes, oldest first, every minute present, summed over the groups."""
    out = empty_minutes(now)
    if reply is None:
        return out
    at = {int(m["t"]): m for m in out}
    for group in reply.groups:
        for m in group.minutes:
            slot = at.get(int(m.t // 60 * 60))
            if slot is not None:
                slot["completed"] += m.completed
                slot["failed"] += m.failed
                slot["dead"] += m.dead
    return out


def overview(status: p.StatusReply, minutes: list[dict[str, float]]) -> dict[str, Any]:
    groups = msgspec.to_builtins(status.groups)
    return {
        "version": status.version, "pid": status.pid, "started_at": status.started_at, "now": time.time(),
        "jobs": status.jobs, "workers": {"configured": status.workers.configured, "busy": status.workers.busy},
        "groups": groups, "paused": [g["name"] for g in groups if g["paused"]],
        "policy": msgspec.to_builtins(status.policy),  # as `status --json` gives it: file, patterns, loaded_at
        "minutes": minutes,
    }


class Hub:
    def __init__(self, link: Link) -> None:
        self.link = link
        self.streams: set[Stream] = set()
        self.joined = asyncio.Event()
        self.latest: dict[str, Any] | None = None
        self.unreachable: str | None = None
        self.version = 0
        self._counts: dict[str, int] | None = None
        self._minutes: p.StatsReply | None = None
        self._minutes_at = -MINUTES_EVERY
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def close(self) -> None:
        for stream in self.streams:
            stream.put(CLOSE, [CLOSE])
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass

    def join(self, slow: bool) -> Stream:
        stream = Stream(slow)
        self.streams.add(stream)
        for item in self._now():
            stream.put(item, [])
        self.joined.set()
        return stream

    def leave(self, stream: Stream) -> None:
        self.streams.discard(stream)

    def _now(self) -> list[bytes]:
        if self.unreachable is not None:
            return [sse("unreachable", {"error": self.unreachable})]
        if self.latest is None:
            return []
        return [sse("overview", self.latest), sse("jobs", {"version": self.version})]

    async def _run(self) -> None:
        while True:
            if not self.streams:
                self.joined.clear()
                await self.joined.wait()
            try:
                await self.poll()
            except Exception:  # a reply it cannot read, say: the next poll tries again
                log.exception("the poll failed")
            # A stream that joins meanwhile gets the latest overview at once (`join`).
            await asyncio.sleep(SLOW if all(s.slow for s in self.streams) else FAST)

    async def fresh(self) -> dict[str, Any] | None:
        """The overview at most FAST seconds old: the latest, or a new poll."""
        if self.latest is not None and time.time() - self.latest["now"] < FAST:
            return self.latest
        return await self.poll()

    async def poll(self) -> dict[str, Any] | None:
        """Ask the daemon once; push what changed.  Returns the overview (None: unreachable)."""
        try:
            status = await self.link.request(p.Status())
            now = time.time()
            if now - self._minutes_at >= MINUTES_EVERY:
                self._minutes_at = now
                try:
                    self._minutes = await self.link.request(p.Stats(since=3600.0, minutes=True))
                except RequestFailed:
                    self._minutes = None  # an older daemon, without stats: an empty chart
        except (Unreachable, RequestFailed) as e:
            if self.unreachable is None:
                self.unreachable = f"daemon unreachable: {e}"
                self._push([sse("unreachable", {"error": self.unreachable})])
            self.latest = None
            return None
        self.unreachable = None
        view = overview(status, minutes_of(self._minutes, now))
        pushes = []
        if self.latest is None or {**self.latest, "now": 0} != {**view, "now": 0}:
            pushes.append(sse("overview", view))
        self.latest = view
        if status.jobs != self._counts:
            self._counts = dict(status.jobs)
            self.version += 1
            pushes.append(sse("jobs", {"version": self.version}))
        self._push(pushes)
        return view

    def _push(self, items: list[bytes]) -> None:
        if not items:
            return
        latest = self._now()
        for stream in self.streams:
            for item in items:
                stream.put(item, latest)
