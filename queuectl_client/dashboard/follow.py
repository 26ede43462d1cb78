"""A job's output files, read from an offset at most CHUNK bytes at a time, and the watchers that follow
a job for its pages: one per job id, however many pages show it.

The paths come from the daemon (the Logs request), as for `queuectl logs`.  A
watcher asks the daemon for the job once a second and looks at the files' sizes
every TICK seconds; a page's stream reads from its own offsets when told.
"""

from __future__ import annotations

import asyncio
import logging
import os
from typing import Any

import aiofiles  # type: ignore[import-untyped]
import msgspec

from .. import protocol as p
from ..errors import RequestFailed
from .link import Link, Unreachable

log = logging.getLogger("queuectl.dashboard")

CHUNK = 64 * 1024
TICK = 0.25
JOB_EVERY = 1.0
FINAL = ("completed", "dead")
STREAMS = ("stdout", "stderr")


def whole_utf8(data: bytes) -> bytes:
    """`data` without a multi-byte character cut at its end (its next read has it whole)."""
    for back in range(1, min(4, len(data)) + 1):
        b = data[-back]
        if b & 0xC0 != 0x80:  # the first byte of the last character
            need = 1 if b < 0x80 else 2 if b >> 5 == 6 else 3 if b >> 4 == 14 else 4 if b >> 3 == 30 else 1
            return data[:-back] if need > back else data
    return data


def size_of(path: str) -> int:
    try:
        return os.stat(path).st_size
    except OSError:
        return 0


async def read_from(path: str, offset: int, whole: bool) -> tuple[bytes, int]:
    """Up to CHUNK bytes of `path` from `offset`, and the file's size; `whole`: no character cut short
    at the end unless it is the end of the file."""
    try:
        async with aiofiles.open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            if offset > size:
                offset = size
            await f.seek(offset)
            data = await f.read(CHUNK)
    except FileNotFoundError:
        return b"", 0
    if whole and offset + len(data) < size:
        data = whole_utf8(data) or data
    return data, size


def job_json(job: p.Job) -> dict[str, Any]:
    d: dict[str, Any] = msgspec.to_builtins(job)
    return d


class Watcher:
    """One job, followed for every page that shows it."""

    def __init__(self, link: Link, job_id: str) -> None:
        self.link = link
        self.id = job_id
        self.job: dict[str, Any] | None = None
        self.gone = False  # deleted, or never was
        self.paths: dict[str, str] = {}
        self.sizes = {name: 0 for name in STREAMS}
        self.changed = asyncio.Condition()
        self.users = 0
        self.task: asyncio.Task[None] | None = None

    @property
    def final(self) -> bool:
        return self.gone or (self.job is not None and self.job["state"] in FINAL)

    async def run(self) -> None:
        ticks = 0
        while True:
            moved = False
            if ticks % round(JOB_EVERY / TICK) == 0:
                try:
                    moved = await self._ask()
                except Exception:  # a reply it cannot read, say: asked again at the next turn
                    log.exception("watching job %s", self.id)
            sizes = {name: size_of(path) for name, path in self.paths.items()}
            if sizes != {k: self.sizes[k] for k in sizes}:
                self.sizes.update(sizes)
                moved = True
            if moved:
                async with self.changed:
                    self.changed.notify_all()
            ticks += 1
            await asyncio.sleep(TICK)

    async def _ask(self) -> bool:
        try:
            reply = await self.link.request(p.Logs(self.id))
        except RequestFailed as e:
            if e.code == "not_found" and not self.gone:
                self.gone = True
                return True
            return False
        except Unreachable:
            return False
        job = job_json(reply.job)
        self.paths = {"stdout": reply.stdout, "stderr": reply.stderr}
        if job != self.job:
            self.job = job
            return True
        return False


class Watchers:
    def __init__(self, link: Link) -> None:
        self.link = link
        self.by_id: dict[str, Watcher] = {}

    def join(self, job_id: str) -> Watcher:
        w = self.by_id.get(job_id)
        if w is None:
            w = self.by_id[job_id] = Watcher(self.link, job_id)
            w.task = asyncio.create_task(w.run())
        w.users += 1
        return w

    def leave(self, w: Watcher) -> None:
        w.users -= 1
        if w.users == 0:
            self.by_id.pop(w.id, None)
            if w.task is not None:
                w.task.cancel()

    def close(self) -> None:
        for w in list(self.by_id.values()):
            if w.task is not None:
                w.task.cancel()
        self.by_id.clear()
