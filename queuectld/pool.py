"""The worker pool: turns due jobs into runs, and runs' exits into events.

Dispatch is driven by events (an enqueue, an exit, a resize, or the timer
for the next job that becomes due); there is no polling loop.  A worker is a
numbered slot; a job holds one slot from its start to its end, so it can
never be held by two.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time

from queuectl_client import protocol as p
from queuectl_client.paths import Paths

from . import events as ev
from .events import Job
from .journal import DiskFull, JournalError
from .queue import INTERRUPTED
from .runner import Result, Run, Runner
from .store import Store

log = logging.getLogger("queuectld.pool")

RETRY_WRITE_AFTER = 1.0  # seconds before a refused journal write is tried again


class Pool:
    def __init__(self, store: Store, runner: Runner, paths: Paths) -> None:
        self.store = store
        self.queue = store.queue
        self.runner = runner
        self.paths = paths
        self.loop = runner.loop
        self.slots: dict[int, Run] = {}
        self.draining = False  # the daemon is stopping: start nothing new
        self.idle = asyncio.Event()  # set whenever no job runs
        self.idle.set()
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at: float | None = None
        self._unwritten: list[ev.Event] = []  # endings refused by a full disk, retried
        self._retry: asyncio.TimerHandle | None = None

    @property
    def busy(self) -> int:
        return len(self.slots)

    def resize(self, count: int) -> list[ev.Event]:
        return [ev.PoolSized(count)] if count != self.queue.pool_size else []

    def stopped(self) -> bool:
        """The pool is set to 0 and its last job has ended."""
        return self.queue.pool_size == 0 and not self.slots

    # -- dispatch -------------------------------------------------------------

    def dispatch(self) -> None:
        if self.draining or self._unwritten:
            return
        queue = self.queue
        size = queue.pool_size
        if len(self.slots) < size:
            now = time.time()
            while len(self.slots) < size:
                job = queue.take(now)
                if job is None:
                    break
                if not self._start(job, now):
                    break
        self._arm_timer()

    def _arm_timer(self) -> None:
        due = self.queue.next_due() if self.queue.pool_size else None
        if due == self._timer_at:
            return
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._timer_at = due
        if due is not None:
            # A millisecond late rather than early: the loop's clock is not the wall clock.
            delay = max(0.0, due - time.time()) + 0.001
            self._timer = self.loop.call_later(delay, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = self._timer_at = None
        self.dispatch()

    def _free_slot(self) -> int:
        n = 1
        while n in self.slots:
            n += 1
        return n

    def _start(self, job: Job, now: float) -> bool:
        slot = self._free_slot()
        attempt = job.attempts + 1
        out = self.paths.output_file(job.id, "out")
        err = self.paths.output_file(job.id, "err")
        if job.started_at is not None:
            _remove(out, err)  # the files hold the latest run only
        try:
            run = self.runner.start(
                job.id, job.command, attempt, job.cwd, job.timeout, out, err,
                self.queue.config.output_limit, self._on_exit,
            )
        except OSError as e:
            self._cannot_start(job, now, slot, e)
            return True
        try:
            self.store.record([self.queue.plan_start(job, now, slot, run.pgid, run.pid_start)])
        except JournalError as e:
            # Not on record, so it must not run: undo the start and wait for space.
            log.error("cannot record the start of job %s: %s", job.id, e)
            run.on_exit = self._discard
            self.runner.kill(run)
            self.queue.put_back(job)
            self._hold(e)
            return False
        self.slots[slot] = run
        self.idle.clear()
        self._announce(job, slot)
        return True

    def _cannot_start(self, job: Job, now: float, slot: int, e: OSError) -> None:
        what = f"cannot start: {e.strerror or e}" + (f" ({e.filename})" if e.filename else "")
        try:
            self.store.record([self.queue.plan_start(job, now, slot, 0, 0)])
            self._end(job, slot, now, None, what)
        except JournalError as err:
            self.queue.put_back(job)
            self._hold(err)

    def _discard(self, run: Run, result: Result) -> None:
        pass

    # -- exits ----------------------------------------------------------------

    def _on_exit(self, run: Run, result: Result) -> None:
        job = self.queue.by_state["processing"][run.job_id]
        slot = job.worker or 0
        self.slots.pop(slot, None)
        error = INTERRUPTED if run.interrupted else result.error
        self._end(job, slot, time.time(), result.exit_code, error)
        if not self.slots:
            self.idle.set()
            if self.queue.pool_size == 0:
                self.store.broadcast(p.PoolStopped())
        self.dispatch()

    def _end(self, job: Job, slot: int, now: float, exit_code: int | None, error: str | None) -> None:
        event = self.queue.plan_end(job, now, exit_code, error)
        try:
            self.store.record([event])
        except JournalError as e:
            log.error("cannot record the end of job %s: %s", job.id, e)
            self._unwritten.append(event)
            self._hold(e)
            return
        self._announce(job, slot)

    def _hold(self, e: JournalError) -> None:
        """Stop dispatching until the journal takes writes again (only a full disk recovers)."""
        if isinstance(e, DiskFull) and self._retry is None:
            self._retry = self.loop.call_later(RETRY_WRITE_AFTER, self._retry_writes)

    def _retry_writes(self) -> None:
        self._retry = None
        pending, self._unwritten = self._unwritten, []
        for i, event in enumerate(pending):
            try:
                self.store.record([event])
            except JournalError as e:
                self._unwritten = pending[i:]
                self._hold(e)
                return
            assert isinstance(event, ev.Ended)
            self._announce(self.queue.get(event.id), None)
        self.dispatch()

    def _announce(self, job: Job, slot: int | None) -> None:
        if self.store.listeners:
            self.store.broadcast(p.Event(
                job.updated_at, job.id, job.state, job.attempts, slot,  # type: ignore[arg-type]
                job.exit_code, job.error_message, job.command, job.next_retry_at, job.max_retries,
            ))

    # -- shutdown -------------------------------------------------------------

    async def drain(self, grace: float) -> None:
        """Start nothing new; let running jobs finish for `grace` s, then kill them as interrupted."""
        self.draining = True
        if self._timer is not None:
            self._timer.cancel()
        if self.slots:
            log.info("waiting up to %g s for %d running job(s)", grace, len(self.slots))
            try:
                await asyncio.wait_for(self.idle.wait(), grace)
            except TimeoutError:
                log.warning("killing %d job(s) still running after %g s", len(self.slots), grace)
                for run in list(self.slots.values()):
                    self.runner.kill(run, interrupted=True)
                await self.idle.wait()


def _remove(*paths: str) -> None:
    for path in paths:
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass
