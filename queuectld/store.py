"""The storage port: the only door to the queue's state.

Handlers, the pool and the daemon reach jobs, settings and the pool size
through a `Store` and nothing else.  Its operations say what the queue does
(add, claim, start, finish, delete, revive, configure, resize, get, page,
counts, interrupted runs), not how a store keeps it; the journal-backed
in-memory store is the first implementation, and every implementation
passes the same contract tests (tests/contract).

What a store decides is decided by `rules`, shared by all of them: naming
and checking new jobs, and a run's outcome, which the caller plans and
hands to `finish` (as Oban's engines are handed the backoff).

A method that changes the queue returns once the change is durable, except
`start`, `finish` and `release`, which the pool calls per run: those are
durable at the next commit or within moments (the journal store: 50 ms),
and `sync()` waits for it.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Callable, Iterable

from queuectl_client.protocol import (
    AuditEntry,
    Edit,
    GroupInfo,
    JobSpec,
    NodeInfo,
    Reason,
    ScheduleAdd,
    ScheduleInfo,
    Selector,
)

from .config import Config
from .model import Job
from .rules import Outcome, QueueError

__all__ = ["Batch", "Full", "Job", "Outcome", "PageOf", "QueueError", "Reason", "RunRecord", "Store", "StoreError",
           "Withdrawn"]


class StoreError(Exception):
    """The store cannot record a change; the message says why."""


class Full(StoreError):
    """The store is out of space: nothing was changed, and it accepts changes again once space frees up."""


class Withdrawn(StoreError):
    """The job was cancelled or deleted while it was being started: its run must not go on."""


class Batch(list[Job]):
    """What an add did: for each job of the batch, in its order, the job created, or the job that
    holds its unique key (one already in the queue, or created earlier in the batch); `created`
    says which, and is empty when every job was created."""

    __slots__ = ("created",)

    def __init__(self, jobs: Iterable[Job], created: list[bool] | None = None) -> None:
        super().__init__(jobs)
        self.created = created or []


class PageOf:
    """A page of jobs: `next` is the cursor of the following page (None: the end), `scanned` the jobs
    looked at, `total` the jobs of the state and group from the kept counts (None for a search)."""

    __slots__ = ("jobs", "next", "scanned", "total")

    def __init__(self, jobs: list[Job], next: str | None, scanned: int, total: int | None) -> None:
        self.jobs = jobs
        self.next = next
        self.scanned = scanned
        self.total = total


class RunRecord:
    """A run the store shows as going: the job, its process group as its start recorded, and
    whether its cancel was asked for (its run then ends dead)."""

    __slots__ = ("cancelled", "job", "pgid", "pid_start")

    def __init__(self, job: Job, pgid: int, pid_start: int, cancelled: bool = False) -> None:
        self.job = job
        self.pgid = pgid
        self.pid_start = pid_start
        self.cancelled = cancelled


class Store(ABC):
    """The queue's state, whatever keeps it."""

    node: str  # the machine this daemon runs on, for `locked_by`
    config: Config  # the current settings (read-only; change them with `configure`)
    pool_size: int  # the configured number of workers
    # A store that several nodes share hears of the others' changes by hints that a lost connection
    # can lose: then a wait re-reads the jobs it follows this often (seconds; None: every change is heard).
    reread_every: float | None = None
    # Called when the store itself changes what the pool may do: a held ending was written, or a change
    # reached a job's dependents (they died or came back: announce them; or they may start now).
    on_change: Callable[[list[Job]], None] | None = None
    # Called when the store fails for good: nothing more can be acknowledged, the daemon must stop.
    on_fatal: Callable[[StoreError], None] | None = None
    # Called with the seconds each write to disk took to become durable (an fdatasync), in the loop.
    on_sync: Callable[[float], None] | None = None
    # What the store raises when it cannot be reached for now (a database restarting, a cut link): a
    # request that meets one fails with one line, and the store goes on once it can again.
    unavailable: tuple[type[BaseException], ...] = ()
    # A store shared by several nodes (PostgreSQL) calls these; the pool sets them.  `on_fence(why)`: this
    # node lost the database, kill every run; `on_stop(ids)`: stop these jobs' runs (cancelled elsewhere);
    # `on_wake()`: a job may be claimable; `count_busy()`: the runs going on this node; `on_lease(until, reason)`:
    # after each heartbeat that succeeded, this node's runs may live until `until` (time.monotonic()), and no
    # longer if no heartbeat renews it (the spawners enforce it, the daemon frozen or not), each then ending
    # "interrupted: REASON"; `lease` is the last one given.  A store that never gives one sets no deadline.
    on_fence: Callable[[str], None] | None = None
    on_lease: Callable[[float, str], None] | None = None
    lease: tuple[float, str] | None = None
    on_stop: Callable[[list[str]], None] | None = None
    on_wake: Callable[[], None] | None = None
    count_busy: Callable[[], int] | None = None
    # `on_withdraw(ids)`: the starts of these runs, handed to `begin`, could not be recorded (the job was
    # cancelled, deleted or blocked meanwhile, or the store is away): stop each run, then release its job.
    on_withdraw: Callable[[list[str]], None] | None = None
    fenced: bool = False  # this node may not claim now (claims return [])

    # -- life ---------------------------------------------------------------

    @abstractmethod
    async def open(self) -> int:
        """Load the state (replay, connect); returns how many records were read."""

    @abstractmethod
    async def sync(self) -> None:
        """Wait until every change recorded so far is durable."""

    @abstractmethod
    async def close(self) -> None:
        """Release the store's files, connections and tasks."""

    # -- changes ----------------------------------------------------------------

    @abstractmethod
    async def add(self, specs: list[JobSpec], at: float, id_prefix: str = "", cwd: str | None = None,
                  env: dict[str, str] | None = None) -> Batch:
        """Add a batch, all or nothing (QueueError names the first problem).  A job whose unique key a job
        that is not final holds (or one earlier in the batch) creates nothing; see `Batch`.

        `env` is the caller's environment: each job's is composed from it by `rules.environments`,
        and kept once per distinct environment, the jobs naming it by key (`Job.env`)."""

    @abstractmethod
    async def claim(self, now: float, count: int) -> list[Job]:
        """Take up to `count` jobs due at `now`, best first, from groups that are not paused and
        run fewer jobs than their `parallel` (a held job counts as running); each is held for this
        caller until it is started or released, and no other claim returns it meanwhile."""

    @abstractmethod
    async def release(self, job: Job) -> None:
        """Give a claimed job back unstarted."""

    @abstractmethod
    async def start(self, job: Job, at: float, worker: int, pgid: int, pid_start: int) -> None:
        """Record that a claimed job's run started (the attempt counts); raises Full, Withdrawn
        (it was cancelled meanwhile: stop the run, then release the job) or StoreError."""

    async def begin(self, job: Job, at: float, worker: int, pgid: int, pid_start: int) -> None:
        """Record a run's start as `start` does (the pool's way in).  A store may record it a moment
        later instead, and a run that ends first with its end; a start it then cannot record is
        reported through `on_withdraw`, and the run's `finish` gives the job back (returns False)."""
        await self.start(job, at, worker, pgid, pid_start)

    @abstractmethod
    async def finish(self, job: Job, at: float, outcome: Outcome) -> bool:
        """Record a run's end; a run whose cancel was asked for ends dead, whatever `outcome` says.
        False: the store is full and holds the ending until it can write it (claims return nothing
        meanwhile, and `on_change` reports it once written)."""

    @abstractmethod
    async def delete(self, job_id: str, at: float, cascade: bool = False) -> None:
        """Remove a job that is not running.  One that is not final with pending dependents is refused
        (QueueError state) unless `cascade`: then its `after` dependents die with it."""

    @abstractmethod
    async def delete_many(self, ids: list[str], select: Selector | None, at: float,
                          cascade: bool = False) -> list[str]:
        """Remove the named jobs (none may be running) or the selected ones (running ones left out), at once;
        dependents as for `delete`."""

    @abstractmethod
    async def revive(self, ids: list[str], everything: bool, at: float) -> list[str]:
        """Move dead jobs back to pending, attempts reset: the named ones (all must be dead), or all.  Their
        dependents that died because of them come back too.  A job whose `after` dependency is dead (and not
        revived with it) or was deleted before it completed is refused, or left out of `everything`; so is
        one whose unique key another job that is not final holds."""

    @abstractmethod
    async def retry(self, ids: list[str], select: Selector | None, at: float) -> list[str]:
        """Make failed jobs due now and revive dead ones, at once: the named ones (each must be one
        or the other) or the selected ones."""

    @abstractmethod
    async def cancel(self, ids: list[str], select: Selector | None, at: float) -> tuple[list[str], list[str]]:
        """Cancel at once: waiting jobs become dead ("cancelled"), running ones are marked so that
        their run ends dead.  Returns the jobs changed, and those whose processes must be stopped."""

    @abstractmethod
    async def edit(self, req: Edit, at: float) -> Job:
        """Change a job that is not running; it keeps its place in line unless its due time or priority changes."""

    @abstractmethod
    async def prune(self, before: dict[str, float], limit: int) -> list[str]:
        """Remove up to `limit` jobs, at once, of the final states named, that finished before the
        time given for their state, oldest first."""

    @abstractmethod
    async def define_group(self, name: str, parallel: int, create: bool) -> None:
        """Add a group (QueueError duplicate if it exists) or change one's cap (not_found if it does not)."""

    @abstractmethod
    async def remove_group(self, name: str) -> None:
        """Remove a group that holds no job but completed or dead ones; never `default`."""

    @abstractmethod
    async def pause(self, names: list[str], paused: bool) -> list[str]:
        """Pause or resume the named groups (each must exist), or every group; returns their names."""

    @abstractmethod
    async def define_schedule(self, req: ScheduleAdd, at: float, local_zone: str) -> ScheduleInfo:
        """Add a schedule (QueueError duplicate if its name is taken; invalid for a bad expression, zone or
        job); it fires for its slots after `at`, in its zone (`local_zone` if it names none)."""

    @abstractmethod
    async def remove_schedule(self, name: str) -> None:
        """Remove a schedule; the jobs it made stay."""

    @abstractmethod
    async def pause_schedule(self, name: str, paused: bool, at: float) -> ScheduleInfo:
        """Pause or resume a schedule; resumed at `at`, it fires for its slots after `at` only."""

    @abstractmethod
    async def fire(self, now: float, refuse: Callable[[str], str | None] | None = None) -> list[Job]:
        """Fire every schedule with a slot due at `now`, once, for its latest due slot, each fire with its
        job in one change; returns the jobs made (a skipped or failed fire is recorded with none).
        `refuse`: the caller's verdict on a job's command, None to allow it, else why not (a failed fire)."""

    @abstractmethod
    async def configure(self, key: str, value: str) -> tuple[str, str]:
        """Change a setting; returns its canonical name and value (ConfigError if invalid)."""

    @abstractmethod
    async def resize(self, count: int) -> None:
        """Set the pool size."""

    # -- the audit trail ------------------------------------------------------------
    # A change made inside `audit.acting` (a person's request) is recorded with who made it, in the
    # change's own record, and kept in the trail.

    @abstractmethod
    async def refuse(self, action: str, detail: str) -> None:
        """Record, durably, that a request (`action`: enqueue, rerun, schedule add) was refused;
        nothing else changes."""

    @abstractmethod
    async def audit(self, since: float, limit: int | None) -> list[AuditEntry]:
        """The trail's entries from `since` on, oldest first; with `limit`, the newest `limit` of them."""

    @abstractmethod
    async def trim_audit(self, now: float) -> int:
        """Drop the trail's entries older than `keep-dead` at `now`; returns how many went."""

    # -- reads --------------------------------------------------------------------

    @abstractmethod
    async def get(self, job_id: str) -> Job:
        """The job, or QueueError not_found."""

    @abstractmethod
    async def environment(self, key: str | None) -> dict[str, str] | None:
        """The variables of the environment `key` (a job's `env`), or None: none, or not known."""

    @abstractmethod
    def pages(self, state: str | None, limit: int | None, size: int,
              group: str | None = None) -> AsyncIterator[list[Job]]:
        """Jobs in the order they entered `state` (or every state, in rules.LIST_ORDER), of `group`, in pages."""

    @abstractmethod
    async def page(self, state: str | None, group: str | None, query: str | None, cursor: str | None,
                   limit: int, scan: int) -> PageOf:
        """Up to `limit` jobs newest first in the order they entered `state` (or every state, in
        rules.LIST_ORDER), after `cursor` (a page's `next`; QueueError invalid if it is not one), of
        `group`, whose id is `query` or whose command holds it; with a filter, no more than `scan`
        jobs are looked at.  Costs the same at any depth."""

    @abstractmethod
    async def blockers(self, jobs: list[Job]) -> dict[str, list[str]]:
        """For each of these jobs that is pending and blocked: the dependencies it still waits for."""

    @abstractmethod
    async def groups(self) -> list[GroupInfo]:
        """Every group: its cap, whether it is paused, its jobs per state and its running count."""

    @abstractmethod
    async def expired(self, before: dict[str, float], limit: int | None) -> list[str]:
        """What `prune` would remove, without removing it."""

    @abstractmethod
    async def schedules(self) -> list[ScheduleInfo]:
        """Every schedule, in the order they were added, with its next and last fires."""

    @abstractmethod
    async def next_fire(self) -> float | None:
        """When the earliest next fire of a schedule that is not paused comes, or None."""

    @abstractmethod
    async def counts(self) -> dict[str, int]:
        """Jobs per state."""

    @abstractmethod
    async def why(self, job_id: str, now: float, pool_size: int, busy: int) -> Reason:
        """The first reason the job is not running at `now` (see `diagnose`), given the pool's size and
        how many of its workers are busy; QueueError not_found for an unknown id."""

    @abstractmethod
    async def next_due(self) -> float | None:
        """When the earliest waiting job becomes due, or None."""

    @abstractmethod
    async def oldest_due(self, now: float) -> dict[str, float]:
        """Per group that has one, the due time of its longest-waiting job that is due at `now` (pending,
        or failed with its retry time passed): O(groups), not a scan of jobs."""

    @abstractmethod
    def disk_bytes(self) -> int:
        """The bytes the queue's state takes on disk now."""

    # -- the stats kept beside the state ------------------------------------------------

    @abstractmethod
    def load_stats(self) -> bytes | None:
        """The stats blob last saved, or None if there is none (OSError if it cannot be read)."""

    @abstractmethod
    def save_stats(self, data: bytes) -> None:
        """Replace the stats blob atomically and durably; blocking, so call it from a worker thread."""

    # -- output kept in a store that several nodes share (the others keep it in this node's files) ----

    def output_started(self, job: Job, paths: tuple[str, str]) -> None:
        """A run of `job` started on this node, writing its stdout and stderr to `paths`."""
        return None  # this node's files are the output

    async def output_ended(self, jobs: Iterable[Job]) -> None:
        """These runs ended and their files are complete: returns once the store holds their output."""
        return None  # this node's files are the output

    def output_forget(self, job_ids: list[str], local_dir: str) -> None:
        """These jobs were deleted: their output goes (`local_dir`: where this node's runs write theirs)."""
        return None  # this node's files are the output

    async def output_files(self, job: Job, local: tuple[str, str]) -> tuple[str, str]:
        """Files on this machine that hold the output of the job's latest run (a missing file: none);
        `local`: where this node's own run would have written them."""
        return local

    async def other_stats(self) -> list[bytes]:
        """The stats blobs the other nodes sharing this store saved last (`save_stats`); none for a
        store of one node."""
        return []

    async def nodes(self) -> list[NodeInfo] | None:
        """The nodes serving this store's queue, newest start first; None: this daemon alone (the journal)."""
        return None

    @abstractmethod
    async def interrupted(self) -> list[RunRecord]:
        """The runs the store shows as going on this node: after a crash, none of them is ours."""
