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
from collections.abc import AsyncIterator, Callable

from queuectl_client.protocol import JobSpec

from .config import Config
from .model import Job
from .rules import Outcome, QueueError

__all__ = ["Full", "Job", "Outcome", "QueueError", "RunRecord", "Store", "StoreError"]


class StoreError(Exception):
    """The store cannot record a change; the message says why."""


class Full(StoreError):
    """The store is out of space: nothing was changed, and it accepts changes again once space frees up."""


class RunRecord:
    """A run the store shows as going: the job, and its process group as its start recorded."""

    __slots__ = ("job", "pgid", "pid_start")

    def __init__(self, job: Job, pgid: int, pid_start: int) -> None:
        self.job = job
        self.pgid = pgid
        self.pid_start = pid_start


class Store(ABC):
    """The queue's state, whatever keeps it."""

    node: str  # the machine this daemon runs on, for `locked_by`
    config: Config  # the current settings (read-only; change them with `configure`)
    pool_size: int  # the configured number of workers
    # Called when the store itself changes what the pool may do (a held ending was written).
    on_change: Callable[[list[Job]], None] | None = None
    # Called when the store fails for good: nothing more can be acknowledged, the daemon must stop.
    on_fatal: Callable[[StoreError], None] | None = None

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
    async def add(self, specs: list[JobSpec], at: float, id_prefix: str = "", cwd: str | None = None) -> list[Job]:
        """Add a batch, all or nothing (QueueError names the first problem); returns the new jobs."""

    @abstractmethod
    async def claim(self, now: float, count: int) -> list[Job]:
        """Take up to `count` jobs due at `now`, best first; each is held for this caller until
        it is started or released, and no other claim returns it meanwhile."""

    @abstractmethod
    async def release(self, job: Job) -> None:
        """Give a claimed job back unstarted."""

    @abstractmethod
    async def start(self, job: Job, at: float, worker: int, pgid: int, pid_start: int) -> None:
        """Record that a claimed job's run started (the attempt counts); raises Full or StoreError."""

    @abstractmethod
    async def finish(self, job: Job, at: float, outcome: Outcome) -> bool:
        """Record a run's end.  False: the store is full and holds the ending until it can write it
        (claims return nothing meanwhile, and `on_change` reports it once written)."""

    @abstractmethod
    async def delete(self, job_id: str, at: float) -> None:
        """Remove a job that is not running."""

    @abstractmethod
    async def revive(self, ids: list[str], everything: bool, at: float) -> list[str]:
        """Move dead jobs back to pending, attempts reset: the named ones (all must be dead), or all."""

    @abstractmethod
    async def configure(self, key: str, value: str) -> tuple[str, str]:
        """Change a setting; returns its canonical name and value (ConfigError if invalid)."""

    @abstractmethod
    async def resize(self, count: int) -> None:
        """Set the pool size."""

    # -- reads --------------------------------------------------------------------

    @abstractmethod
    async def get(self, job_id: str) -> Job:
        """The job, or QueueError not_found."""

    @abstractmethod
    def pages(self, state: str | None, limit: int | None, size: int) -> AsyncIterator[list[Job]]:
        """Jobs in the order they entered `state` (or every state, in rules.LIST_ORDER), in pages."""

    @abstractmethod
    async def counts(self) -> dict[str, int]:
        """Jobs per state."""

    @abstractmethod
    async def next_due(self) -> float | None:
        """When the earliest waiting job becomes due, or None."""

    @abstractmethod
    async def interrupted(self) -> list[RunRecord]:
        """The runs the store shows as going on this node: after a crash, none of them is ours."""
