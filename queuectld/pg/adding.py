"""Adding jobs to the PostgreSQL store: checks, dependency edges, and the rows written.

A batch is one transaction.  Small batches are INSERTed; from COPY_FROM jobs on, the rows go by binary
COPY, made as they are sent, so that the database writes one part while the next is made.  Each row's
`ticket` (its place in line) and `entered` (its place in its state's pages) come from the sequences,
which step by SPAN (schema version 2): one value taken for SPAN rows numbers them in order, and no
later value falls among them, so a large batch costs one round trip of the sequences, not one a row.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any

from queuectl_client.protocol import DEFAULT_GROUP, JobSpec

from .. import audit, rules, unique
from .. import deps as rules_deps
from .. import events as ev
from ..model import Job, NewJob
from ..rules import DEAD, QueueError
from ..store import Batch
from . import deps, rows

if TYPE_CHECKING:
    from .base import PgBase
else:
    PgBase = object

COPY_FROM = 64  # batches of this many jobs or more are written with COPY
SPAN = 1 << 20  # what the ticket and entered sequences step by (schema version 2)
PART = 20_000  # jobs of a large plain batch checked and made at a time, while the COPY sends the part before


class Adding(PgBase):
    """add, and `_insert` (new jobs with their checks), which control and schedules use too."""

    async def add(self, specs: list[JobSpec], at: float, id_prefix: str = "", cwd: str | None = None,
                  env: dict[str, str] | None = None) -> Batch:
        import asyncpg

        for attempt in range(5):
            try:
                return await self._add(specs, at, id_prefix, cwd, env)
            except asyncpg.UniqueViolationError as e:
                if e.constraint_name == "queuectl_jobs_unique_key" and attempt < 4:
                    continue  # another node took a key meanwhile: decide again who stands for whom
                raise QueueError("duplicate", "a job of the batch already exists (added meanwhile)") from None
        raise AssertionError("unreachable")

    async def _add(self, specs: list[JobSpec], at: float, id_prefix: str, cwd: str | None,
                   env: dict[str, str] | None) -> Batch:
        if len(specs) >= COPY_FROM and id_prefix and all(rules.plain(s) for s in specs):
            return await self._add_plain(specs, at, id_prefix, cwd, env)
        envs: dict[str, dict[str, str]] = {}
        new = rules.new_jobs(specs, at, self.config, id_prefix, cwd, env, envs)
        async with self.tx() as conn:
            keys = [job.unique_key for job in new if job.extra is not None and job.unique_key is not None]
            holders: dict[str, str] = {}
            if keys:
                holders = dict(await conn.fetch("SELECT unique_key, id FROM queuectl_jobs_live "
                                                "WHERE unique_key = ANY($1::text[])", keys))
            fresh, instead = unique.plan_batch(holders, new)
            made = await self._insert(conn, fresh, at, envs if not instead else
                                      {k: v for k, v in envs.items() if k in {j.env for j in fresh}},
                                      any(s.id is not None for s in specs))
            if fresh:
                self._disk = None
                await self.notify(conn, "queuectl_wake", "")
                await self._audited(conn, ev.Added(at, fresh, audit.actor.get()))
            if not instead:
                return Batch(made)
            it = iter(made)
            out = [next(it) if other is None else rows.job(await conn.fetchrow(
                f"SELECT {rows.JOB_COLUMNS} FROM queuectl_jobs WHERE id = $1", other)) for other in instead]
            return Batch(out, [other is None for other in instead])

    async def _add_plain(self, specs: list[JobSpec], at: float, id_prefix: str, cwd: str | None,
                         env: dict[str, str] | None) -> Batch:
        """A large batch of jobs that name no id, key or dependency: checked and made a part at a time while
        the COPY sends the part before (a refusal mid-way aborts the COPY; nothing is written)."""
        envs: dict[str, dict[str, str]] = {}
        fresh: list[NewJob] = []
        jobs: list[Job] = []

        def made(places: list[tuple[int, int]]) -> Iterator[tuple[Any, ...]]:
            for k in range(0, len(specs), PART):
                part = rules.new_jobs(specs[k : k + PART], at, self.config, id_prefix, cwd, env, envs, k + 1, False)
                fresh.extend(part)
                yield from rows.new_rows(part, at, places, SPAN, True, jobs, k)

        async with self.tx() as conn:
            await _known_groups(conn, [s.group or DEFAULT_GROUP for s in specs])
            await _unreserved(conn, lambda: [f"{id_prefix}-{i}" for i in range(1, len(specs) + 1)])
            places = await self._places(conn, len(specs))
            await conn.copy_records_to_table("queuectl_jobs_live", records=made(places), columns=rows.PLAIN_COLUMNS)
            await _keep_environments(conn, envs)
            self._disk = None
            await self.notify(conn, "queuectl_wake", "")
            await self._audited(conn, ev.Added(at, fresh, audit.actor.get()))
            return Batch(jobs)

    async def _places(self, conn: Any, n: int) -> list[tuple[int, int]]:
        """The (ticket, entered) pairs that number n rows: one of each sequence per SPAN rows."""
        return [(t, e) for t, e in await conn.fetch(
            "SELECT nextval('queuectl_ticket'), nextval('queuectl_entered') FROM generate_series(1, $1)",
            (n + SPAN - 1) // SPAN)]

    async def _insert(self, conn: Any, fresh: list[NewJob], at: float, envs: dict[str, dict[str, str]],
                      explicit: bool = True) -> list[Job]:
        if not fresh:
            return []
        ids = [job.id for job in fresh]
        await _known_groups(conn, [job.group for job in fresh])
        # The live partition's unique index refuses an id taken by a live job; a final job's id is looked up.
        # A large batch of ids drawn from a fresh random prefix is not (a million lookups, for a collision
        # that the prefix makes as unlikely as a uuid's).
        if len(fresh) < COPY_FROM or explicit:
            taken = await conn.fetchval("SELECT id FROM queuectl_jobs WHERE id = ANY($1::text[]) LIMIT 1", ids)
            if taken is not None:
                raise QueueError("duplicate", f"a job with id {taken!r} already exists")
        await _unreserved(conn, lambda: ids)
        await _keep_environments(conn, envs)
        records, edges, jobs = await self._plan_rows(conn, fresh, at)
        if len(fresh) >= COPY_FROM:
            await self._copy(conn, fresh, at, records, jobs)
        else:
            cols = ", ".join(rows.NEW_COLUMNS)
            marks = ", ".join(f"${i}" for i in range(1, len(rows.NEW_COLUMNS) + 1))
            if records is None:
                records, jobs = [rows.new_row(n, at) for n in fresh], [rows.fresh(n, at) for n in fresh]
            await conn.executemany(f"INSERT INTO queuectl_jobs ({cols}) VALUES ({marks})", records)
        if edges:
            await conn.copy_records_to_table("queuectl_deps", records=edges, columns=("job_id", "dep_id", "is_any"))
            await deps.name(conn, list({dep for _, dep, _ in edges}))  # those of the batch too
        return jobs

    async def _copy(self, conn: Any, fresh: list[NewJob], at: float, records: list[tuple[Any, ...]] | None,
                    jobs: list[Job]) -> None:
        """COPY the batch, each row numbered in its order (`records`: the rows; None: every job is pending,
        and its row and its job, put in `jobs`, are made here as the COPY goes)."""
        places = await self._places(conn, len(fresh))
        if records is None:
            plain = all(n.extra is None for n in fresh)
            await conn.copy_records_to_table("queuectl_jobs_live", records=rows.new_rows(fresh, at, places, SPAN,
                                                                                         plain, jobs),
                                             columns=rows.PLAIN_COLUMNS if plain else rows.NUMBERED_COLUMNS)
            return
        numbered = list(_numbered(records, places))  # the numbers follow the batch's order, across both tables
        await conn.copy_records_to_table("queuectl_jobs_live", records=[r for r in numbered if r[2] != DEAD],
                                         columns=rows.NUMBERED_COLUMNS)
        dead = [r for r in numbered if r[2] == DEAD]
        if dead:
            await conn.copy_records_to_table("queuectl_jobs_done", records=dead, columns=rows.NUMBERED_COLUMNS)

    async def _plan_rows(self, conn: Any, fresh: list[NewJob],
                         at: float) -> tuple[list[tuple[Any, ...]] | None, list[Any], list[Job]]:
        """The rows of a batch, its dependency edges, and the jobs as handed back; (None, [], []) when every
        job is pending: its row and job are made as they are written."""
        named = [job for job in fresh if job.extra is not None and (job.after or job.after_any)]
        if not named:
            return None, [], []
        new_row = rows.new_row
        outside = list({d for job in named for d in rules_deps.names(job)} - {job.id for job in fresh})
        known = await deps.name(conn, outside) if outside else {}
        places = {job.id: i for i, job in enumerate(fresh)}
        records, edges, jobs = [], [], []
        for i, n in enumerate(fresh):
            job = rows.fresh(n, at)
            if n.extra is not None and (n.after or n.after_any):
                for d in rules_deps.names(n):
                    if d not in known and places.get(d, i) >= i:
                        raise QueueError("invalid", f"job {n.id}: unknown dependency {d}")
                dead = next((d for d in n.after or () if known.get(d) == DEAD), None)
                if dead is not None:
                    job.state, job.cause, job.error_message = DEAD, dead, rules_deps.death(dead)
                    job.finished_at = at
                else:
                    job.blocked = rules_deps.count_unmet(job, known.get)
                edges += [(n.id, d, False) for d in n.after or ()] + [(n.id, d, True) for d in n.after_any or ()]
            known[n.id] = job.state
            records.append(new_row(n, at, job.state, job.blocked, job.cause, job.error_message))
            jobs.append(job)
        return records, edges, jobs


async def _known_groups(conn: Any, groups: list[str]) -> None:
    """Refuse a batch that names a group that does not exist (the first one, in the batch's order)."""
    names = list(dict.fromkeys(groups))
    known = {r[0] for r in await conn.fetch("SELECT name FROM queuectl_groups WHERE name = ANY($1::text[])", names)}
    for group in names:
        if group not in known:
            raise QueueError("invalid", f"unknown group {group}; create it with `queuectl group add {group}`")


async def _unreserved(conn: Any, ids: Callable[[], list[str]]) -> None:
    """Refuse ids a dependency still names (`ids` is only listed when some job has dependencies)."""
    if await conn.fetchval("SELECT EXISTS (SELECT 1 FROM queuectl_deps)"):
        held = await deps.reserved(conn, ids())
        if held is not None:
            raise QueueError("duplicate", f"the id {held[0]} is still named as a dependency by job {held[1]}, "
                                          f"which is {held[2]}; choose another id, or delete {held[1]} first")


async def _keep_environments(conn: Any, envs: dict[str, dict[str, str]]) -> None:
    if envs:
        await conn.executemany("INSERT INTO queuectl_environments (key, vars) VALUES ($1, $2) "
                               "ON CONFLICT (key) DO NOTHING", [(k, rows.json_text(v)) for k, v in envs.items()])


def _numbered(records: Iterable[tuple[Any, ...]], places: list[tuple[int, int]]) -> Iterator[tuple[Any, ...]]:
    """Each row with its ticket and entered: the i-th of the batch gets the (i // SPAN)-th values plus i % SPAN."""
    for i, r in enumerate(records):
        t, e = places[i // SPAN]
        k = i & (SPAN - 1)
        yield (*r, t + k, e + k)
