"""The worker pool: turns due jobs into runs, and runs' exits into recorded outcomes.

The pool is one task.  Anything that may let a job start (an enqueue, an
exit, a resize, a retry, the timer for the next job that becomes due) wakes
it, and it settles the runs that ended, then claims and starts jobs for its
free workers: one pass per loop turn however many wake-ups came, and no
polling loop.  A worker is a numbered slot; a job holds one slot from its
start to its end, so it can never be held by two.

The pool owns what belongs to runs: their output files (kept by
`pool_outputs.Outputs`), the process groups of runs that were going when the
daemon last stopped, and telling followers that the pool has stopped.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import time
from collections.abc import Coroutine, Sequence
from typing import Any

from queuectl_client import protocol as p
from queuectl_client.paths import Paths

from .bus import Bus
from .exits import Failure
from .pool_outputs import Outputs
from .procs import kill_orphan_group
from .rules import INTERRUPTED, plan_end
from .runner import KILL_GRACE, Result, Run, Runner
from .stats import Stats
from .store import Full, Job, Store, StoreError, Withdrawn

log = logging.getLogger("queuectld.pool")

RETRY_AFTER_FULL = 1.0  # seconds before a start refused by a full store is tried again
EXIT_WAIT = 2.0  # seconds to wait for killed jobs to exit at shutdown, beyond KILL_GRACE


class Pool:
    def __init__(self, store: Store, runner: Runner, paths: Paths, bus: Bus, stats: Stats | None = None) -> None:
        self.store = store
        self.stats = stats or Stats()  # told of every run's end
        self.runner = runner
        self.paths = paths
        self.bus = bus
        self.loop = runner.loop
        self.slots: dict[int, Run] = {}
        self._jobs: dict[Run, tuple[int, Job, float]] = {}  # run -> its slot, its job, when it was handed out
        self._started: list[Run] = []
        self._ended: list[tuple[Run, Result]] = []
        self.draining = False  # the daemon is stopping: start nothing new
        self.idle = asyncio.Event()  # set whenever no job runs
        self.idle.set()
        self._wakeup = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at: float | None = None
        self._retry: asyncio.TimerHandle | None = None
        self._stopped_told = False
        self.outputs = Outputs(store, paths, self.loop)
        store.on_change = self._landed
        self._why: dict[Run, str] = {}  # runs killed by a fence: why they end
        self._cancelling: set[str] = set()  # jobs whose runs were sent a cancel's signal
        store.on_fence, store.on_stop, store.on_wake = self._fence, self._stop_runs, self.wake  # a shared store's
        store.on_withdraw = self._withdraw
        store.count_busy = lambda: len(self.slots)
        store.on_lease = runner.lease
        if store.lease is not None:  # given before the pool was there to hear it
            runner.lease(*store.lease)
        runner.on_started = self._on_started
        runner.on_exit = self._on_exit

    @property
    def busy(self) -> int:
        return len(self.slots)

    def stopped(self) -> bool:
        """The pool is set to 0 and its last job has ended."""
        return self.store.pool_size == 0 and not self.slots

    def wake(self) -> None:
        """Something may let a job start or end: run the pool's pass soon (once per loop turn)."""
        self._wakeup.set()

    def resized(self) -> None:
        """The pool's size was set: followers hear that it stopped even if it was stopped before."""
        self._stopped_told = False
        self.wake()

    def output_paths(self, job_id: str) -> tuple[str, str]:
        """Where the job's latest run's stdout and stderr are (a missing file: no output)."""
        return self.outputs.files(job_id)

    def forget(self, job_ids: list[str]) -> None:
        """Jobs were deleted: their output files go too (see Outputs.forget)."""
        self.outputs.forget(job_ids)

    def cancel(self, job_ids: list[str], signum: int, grace: float) -> None:
        """Stop the runs of these jobs: `signum` to each process group, SIGKILL `grace` s later."""
        wanted = set(job_ids)
        self._cancelling |= wanted
        for run, (_, job, _) in self._jobs.items():
            if job.id in wanted:
                self.runner.cancel(run, signum, grace)

    def _stop_runs(self, job_ids: list[str]) -> None:
        """Another node cancelled these jobs: the default signal of a cancel, unless one was sent here."""
        self.cancel([i for i in job_ids if i not in self._cancelling], signal.SIGTERM, KILL_GRACE)

    def _withdraw(self, job_ids: list[str]) -> None:
        """These runs' starts could not be recorded: they must not run; each job is given back at its exit."""
        for run, (_, job, _) in list(self._jobs.items()):
            if job.id in job_ids and not run.discard:
                run.discard = True
                self.runner.kill(run)

    def _fence(self, why: str) -> None:
        """This node lost the database: kill every run now; each ends as a failure saying `why`."""
        for run in list(self.slots.values()):
            self._why[run] = why
            self.runner.kill(run, interrupted=True)

    # -- the pool's task -----------------------------------------------------------

    def start(self) -> None:
        self._task = self.loop.create_task(self._run(), name="pool")
        self.wake()

    async def close(self) -> None:
        for handle in (self._timer, self._retry):
            if handle is not None:
                handle.cancel()
        if self._task is not None:
            self._task.cancel()
            await asyncio.wait([self._task])

    async def _run(self) -> None:
        while True:
            await self._wakeup.wait()
            self._wakeup.clear()
            try:
                await self._settle()
                if not self.draining:
                    await self._dispatch()
                    await self._arm_timer()
            except StoreError as e:
                log.error("the pool cannot reach the store: %s", e)
                self._retry_later()
            except self.store.unavailable as e:  # the database is away for now: try again shortly
                log.error("the pool cannot reach the store: %s", (str(e) or type(e).__name__).splitlines()[0])
                self._retry_later()
            except Exception:
                log.exception("the pool's pass failed; it goes on")
            self._tell_stopped()

    def _tell_stopped(self) -> None:
        if not self.stopped():
            self._stopped_told = False
        elif not self._stopped_told:
            self._stopped_told = True
            self.bus.publish(p.PoolStopped())

    # -- starting ------------------------------------------------------------------

    async def _dispatch(self) -> None:
        store = self.store
        while (free := store.pool_size - len(self.slots)) > 0:
            now = time.time()
            jobs = await store.claim(now, free)
            if not jobs:
                return
            for i, job in enumerate(jobs):
                if not await self._start(job, now):
                    for rest in jobs[i + 1 :]:
                        await store.release(rest)
                    return

    async def _arm_timer(self) -> None:
        # No timer while every worker is busy: the next exit wakes the pool anyway.
        free = self.store.pool_size > len(self.slots)
        due = await self.store.next_due() if free else None
        if due == self._timer_at:
            return
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._timer_at = due
        if due is not None:
            # A millisecond late rather than early: the loop's clock is not the wall clock.  At most
            # a day ahead: a timer that far is armed again when it fires, whatever the job's time.
            delay = min(max(0.0, due - time.time()) + 0.001, 86400.0)
            self._timer = self.loop.call_later(delay, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = self._timer_at = None
        self.wake()

    def _free_slot(self) -> int:
        n = 1
        while n in self.slots:
            n += 1
        return n

    async def _start(self, job: Job, now: float) -> bool:
        """Hand a claimed job to a spawner; its start is recorded when the spawner reports it."""
        slot = self._free_slot()
        out, err = self.outputs.starting(job.id)
        env = None
        if job.env is not None:
            env = await self.store.environment(job.env)
            if env is None:  # a damaged or hand-edited journal lost it
                return await self._cannot_start(job, now, slot, "cannot start: its environment is not on record")
        try:
            run = self.runner.start(job.id, job.command, job.attempts + 1, job.cwd, job.timeout, out, err,
                                    self.store.config.output_limit, job.idle_timeout, job.env, env)
        except Exception as e:  # whatever stops a job from starting is that job's failure
            return await self._cannot_start(job, now, slot, f"cannot start: {e}")
        self.slots[slot] = run
        self._jobs[run] = (slot, job, now)
        self.idle.clear()
        return True

    async def _cannot_start(self, job: Job, now: float, slot: int, what: str) -> bool:
        """The run never began: record a start and its failure, so the attempt counts."""
        try:
            await self.store.start(job, now, slot, 0, 0)
        except StoreError as err:
            await self._give_back(job, err)
            return False
        await self._finish(job, slot, now, None, what)
        return True

    async def _give_back(self, job: Job, e: StoreError) -> None:
        await self.store.release(job)
        if isinstance(e, Full):
            self._retry_later()

    def _retry_later(self) -> None:
        if self._retry is None:
            self._retry = self.loop.call_later(RETRY_AFTER_FULL, self._retry_now)

    def _retry_now(self) -> None:
        self._retry = None
        self.wake()

    # -- ends ----------------------------------------------------------------------

    def _on_started(self, run: Run) -> None:
        self._started.append(run)
        self.wake()

    def _on_exit(self, run: Run, result: Result) -> None:
        self._ended.append((run, result))
        self.wake()

    async def _settle(self) -> None:
        """Record the starts and ends the spawners reported, in the order they happened: the starts of a pass
        together, then its ends together (handed to the store in report order, so that a store that batches
        writes them in one go)."""
        started, self._started = self._started, []
        ended, self._ended = self._ended, []  # now: an end taken after the awaits below could precede its start
        now = time.time()
        await _together([self._record_start(run) for run in started])
        if ended:  # a run's output is in the store before its end is
            await self.store.output_ended([self._jobs[run][1] for run, _ in ended if run.started])
        ends: list[Coroutine[Any, Any, object]] = []
        for run, result in ended:
            slot, job, _ = self._jobs.pop(run)
            del self.slots[slot]
            self._cancelling.discard(job.id)
            why = self._why.pop(run, INTERRUPTED)
            if result.output:
                self.outputs.wrote(job.id)
            if run.discard:
                ends.append(self.store.release(job))
            elif not run.started:
                ends.append(self._cannot_start(job, now, slot, result.error or "cannot start"))
            elif run.interrupted:  # the daemon stopped it: no retry rule judges that
                ends.append(self._finish(job, slot, None, result.exit_code, why))
            else:
                ends.append(self._finish(job, slot, None, result.exit_code, result.error, result.failure))
        await _together(ends)
        if not self.slots:
            self.idle.set()

    async def _record_start(self, run: Run) -> None:
        slot, job, handed = self._jobs[run]
        try:
            # Started when the pool handed it to its worker, as the queue sees it.
            await self.store.begin(job, handed, slot, run.pgid, run.pid_start)
        except StoreError as e:
            # Not on record, so it must not run: stop it, and give the job back once it has exited.
            if isinstance(e, Withdrawn):
                log.info("stopping the run of job %s: %s", job.id, e)
            else:
                log.error("cannot record the start of job %s: %s", job.id, e)
            run.discard = True
            self.runner.kill(run)
            if isinstance(e, Full):
                self._retry_later()
            return
        self.store.output_started(job, self.output_paths(job.id))
        self._announce(job, slot)

    async def _finish(self, job: Job, slot: int, now: float | None, exit_code: int | None, error: str | None,
                      failure: Failure = None, timed: bool = True) -> None:
        now = time.time() if now is None else now
        outcome = plan_end(job, now, exit_code, error, self.store.config, failure=failure)
        started, due = job.started_at, job.due  # before the end reschedules a retry
        if await self.store.finish(job, now, outcome):
            self._announce(job, slot)
        self.stats.ended(job.group, job.state if job.state != "processing" else outcome.state, started, due, now, timed)

    def _landed(self, jobs: list[Job]) -> None:
        """Endings the store held (a full disk) are on record now."""
        for job in jobs:
            self._announce(job, None)
        self.wake()

    def _announce(self, job: Job, slot: int | None) -> None:
        if self.bus.listeners:
            self.bus.publish(job.event(slot))

    # -- start-up and shutdown ----------------------------------------------------------

    async def recover(self) -> int:
        """End the runs the store shows as going: the daemon stopped under them.

        A run's processes may have outlived the daemon: kill its session
        first, then count the attempt as interrupted.
        """
        runs = await self.store.interrupted()
        now = time.time()
        for r in runs:
            if kill_orphan_group(r.pgid, r.pid_start):
                log.warning("killed the surviving processes of interrupted job %s (session %d)", r.job.id, r.pgid)
            await self._finish(r.job, 0, now, None, INTERRUPTED, timed=False)  # its end is not known
        if runs:
            log.warning("%d job(s) were interrupted by the last stop; each counts as a failed attempt", len(runs))
        return len(runs)

    async def drain(self, grace: float, force: asyncio.Event) -> None:
        """Start nothing new; let running jobs finish for `grace` s; then SIGTERM them, and SIGKILL
        them KILL_GRACE s later, as a timeout does.  `force` (a second signal) kills them at once.

        Bounded: a job that outlives its SIGKILL by EXIT_WAIT s is left for the next start to end.
        """
        self.draining = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = self._timer_at = None
        if self.slots:
            log.info("waiting up to %g s for %d running job(s)", grace, len(self.slots))
            await self._idle_or(force, grace)
        if self.slots and not force.is_set():
            log.warning("stopping %d job(s) still running after %g s (SIGTERM, SIGKILL %g s later)",
                        len(self.slots), grace, KILL_GRACE)
            for run in list(self.slots.values()):
                self.runner.terminate(run, interrupted=True)
            await self._idle_or(force, KILL_GRACE + EXIT_WAIT)
        if self.slots:
            for run in list(self.slots.values()):
                self.runner.kill(run, interrupted=True)
            await self._idle_or(None, EXIT_WAIT)
        if self.slots:
            log.error("%d job(s) did not exit after SIGKILL; the next start ends them as interrupted",
                      len(self.slots))

    async def _idle_or(self, force: asyncio.Event | None, timeout: float) -> None:
        waits = [asyncio.ensure_future(self.idle.wait())]
        if force is not None:
            waits.append(asyncio.ensure_future(force.wait()))
        try:
            await asyncio.wait(waits, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for w in waits:
                w.cancel()


async def _together(calls: Sequence[Coroutine[Any, Any, object]]) -> None:
    """Run the store's calls of a pass side by side, begun in their order; every one runs to its end, and the
    first failure is raised after them all, as it would have been raised by one after another."""
    if len(calls) == 1:
        await calls[0]
    elif calls:
        failed = [r for r in await asyncio.gather(*calls, return_exceptions=True) if isinstance(r, BaseException)]
        if failed:
            raise failed[0]

