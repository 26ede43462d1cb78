"""Cron schedules in the daemon: the requests that change them, and the timer that fires them.

The timer sleeps on the loop's clock until the earliest next fire of any
schedule (`Store.next_fire`), and is woken early by every add, remove,
pause and resume; no loop polls.  At a fire it asks the store to fire what
is due (`Store.fire`: the plan is `firing`'s, one record per fire), wakes
the pool for the jobs made, and sleeps again.  The loop's clock stops while
the machine sleeps (suspend), so one sleep lasts at most MAX_SLEEP: a fire
that a suspend delays comes at most that long after the machine is back.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

from queuectl_client import protocol as p

from . import cron, faults
from .store import Store, StoreError

log = logging.getLogger("queuectld.scheduler")

MAX_SLEEP = 300.0  # seconds the timer sleeps at most before it looks at the clock again
RETRY_AFTER = 1.0  # seconds before a fire the store could not record is tried again


class Scheduler:
    def __init__(self, store: Store, pool: Any) -> None:
        self.store = store
        self.pool = pool  # handlers.PoolControl: woken for the jobs a fire makes
        self.local_zone = cron.local_zone_name()  # a schedule added without a zone keeps this one
        self._changed = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.refuse: Callable[[str], str | None] | None = None  # the command policy's check, at each fire
        self.table: dict[type, Any] = {
            p.ScheduleAdd: self.add,
            p.ScheduleList: self.list,
            p.ScheduleRemove: self.remove,
            p.SchedulePause: self.pause,
        }

    # -- requests ---------------------------------------------------------------

    async def add(self, req: p.ScheduleAdd, conn: Any) -> p.Message:
        info = await self.store.define_schedule(req, time.time(), self.local_zone)
        self._changed.set()
        return p.SchedulesReply([info])

    async def list(self, req: p.ScheduleList, conn: Any) -> p.Message:
        return p.SchedulesReply(await self.store.schedules())

    async def remove(self, req: p.ScheduleRemove, conn: Any) -> p.Message:
        await self.store.remove_schedule(req.name)
        self._changed.set()
        return p.Ok()

    async def pause(self, req: p.SchedulePause, conn: Any) -> p.Message:
        info = await self.store.pause_schedule(req.name, not req.resume, time.time())
        self._changed.set()
        return p.SchedulesReply([info])

    # -- the timer --------------------------------------------------------------------

    async def catch_up(self) -> None:
        """Fire what came due while the daemon was down (each schedule once, late), before it serves."""
        try:
            when = await self.store.next_fire()
            if when is not None and when <= time.time():
                await self._fire(time.time())
        except StoreError as e:
            log.error("cannot record a schedule's fire (tried again once the daemon runs): %s", e)

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="scheduler")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.wait([self._task])

    async def _run(self) -> None:
        while True:
            self._changed.clear()
            try:
                when = await self.store.next_fire()
                now = time.time()
                if when is not None and when <= now:
                    await self._fire(now)
                    continue
                sleep = None if when is None else min(when - now, MAX_SLEEP)
            except asyncio.CancelledError:
                raise
            except StoreError as e:
                log.error("cannot record a schedule's fire (tried again in %g s): %s", RETRY_AFTER, e)
                sleep = RETRY_AFTER
            except Exception:
                log.exception("the scheduler failed; it tries again in %g s", RETRY_AFTER)
                sleep = RETRY_AFTER
            try:
                await asyncio.wait_for(self._changed.wait(), sleep)
            except TimeoutError:
                pass

    async def _fire(self, now: float) -> None:
        jobs = await self.store.fire(now, self.refuse)
        faults.point("schedule-fired")
        for job in jobs:
            log.info("schedule %s fired %s%s", job.schedule, job.id, " (late)" if job.late else "")
        if jobs:
            self.pool.wake()
