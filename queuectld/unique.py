"""Unique jobs: while a job holding a `unique_key` is not final, no other job with that key is created.

`Uniques` is the queue's index of the keys held, key -> the id of the one
job that is not final (not completed, not dead, not deleted) and holds it.
The queue keeps it as it applies records: a job takes its key when it is
added, revived or restored, and frees it when it ends completed or dead, is
cancelled, dies with a dependency, or is deleted.

Which jobs of a batch are new is decided by `plan_batch`, a pure function of
the index and the batch, before anything is written: only the new jobs go in
the `Added` record, so replay never decides it again.  In SQL, the same rule
is a partial unique index and an insert that skips a conflict:

    CREATE UNIQUE INDEX jobs_unique_key ON jobs (unique_key)
        WHERE unique_key IS NOT NULL AND state NOT IN ('completed', 'dead');
    INSERT INTO jobs ... ON CONFLICT (unique_key)
        WHERE unique_key IS NOT NULL AND state NOT IN ('completed', 'dead')
        DO NOTHING RETURNING id;
"""

from __future__ import annotations

from collections.abc import Mapping

from .model import Job, NewJob
from .rules import COMPLETED, DEAD

FINAL = (COMPLETED, DEAD)


class Uniques:
    """Each unique key held, and the job that holds it: a job that is not final."""

    __slots__ = ("holders",)

    def __init__(self) -> None:
        self.holders: dict[str, str] = {}

    def holder(self, key: str) -> str | None:
        return self.holders.get(key)

    def added(self, jobs: list[Job]) -> None:
        """New jobs (pending): each takes its key."""
        holders = self.holders
        for job in jobs:
            e = job.extra  # most jobs have no extras: one slot tells
            if e is not None and e.unique_key is not None:
                holders[e.unique_key] = job.id

    def restored(self, jobs: list[Job]) -> None:
        """Jobs from a snapshot: those that are not final hold their keys."""
        holders = self.holders
        for job in jobs:
            e = job.extra
            if e is not None and e.unique_key is not None and job.state not in FINAL:
                holders[e.unique_key] = job.id

    def moved(self, job: Job) -> None:
        """A job with a key changed state: final, it frees its key; back from dead, it takes it again."""
        key = job.unique_key
        if key is None:
            return
        if job.state in FINAL:
            if self.holders.get(key) == job.id:
                del self.holders[key]
        else:
            self.holders[key] = job.id

    def deleted(self, job: Job) -> None:
        key = job.unique_key
        if key is not None and self.holders.get(key) == job.id:
            del self.holders[key]


def plan_batch(holders: Mapping[str, str], jobs: list[NewJob]) -> tuple[list[NewJob], list[str | None]]:
    """The jobs of a batch to create, and for each job of the batch the id of the job it stands for
    instead (None: itself, created).

    A job whose key a job that is not final holds creates nothing and stands
    for that job; so does a job whose key an earlier job of the batch took.
    A later job of the batch that names such a job as a dependency waits for
    the job it stands for.
    """
    if all(job.extra is None or job.extra.unique_key is None for job in jobs):
        return jobs, []
    fresh: list[NewJob] = []
    instead: list[str | None] = []
    taken: dict[str, str] = {}
    stands: dict[str, str] = {}  # id of a job not created -> the job it stands for
    for job in jobs:
        if stands and (job.after or job.after_any):
            job.after = _mapped(job.after, stands)
            job.after_any = _mapped(job.after_any, stands)
        key = job.unique_key
        if key is not None:
            holder = holders.get(key) or taken.get(key)
            if holder is not None:
                instead.append(holder)
                stands[job.id] = holder
                continue
            taken[key] = job.id
        fresh.append(job)
        instead.append(None)
    return fresh, instead


def _mapped(ids: list[str] | None, stands: Mapping[str, str]) -> list[str] | None:
    return None if ids is None else list(dict.fromkeys(stands.get(x, x) for x in ids))


def revive_conflict(holders: Mapping[str, str], job: Job, taken: dict[str, str]) -> str | None:
    """Why a dead job cannot come back, or None: another job that is not final holds its key (one
    in `holders`, or one revived earlier in the same change, in `taken`).  Otherwise the key is
    noted in `taken` for the jobs revived after it."""
    key = job.unique_key
    if key is None or job.state != DEAD:
        return None
    holder = holders.get(key) or taken.get(key)
    if holder is not None and holder != job.id:
        return f"job {job.id} cannot take back its unique key {key!r}: job {holder} holds it"
    taken[key] = job.id
    return None
