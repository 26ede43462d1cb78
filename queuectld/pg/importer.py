"""`queuectld --store URL --import-journal DIR`: the embedded store's queue moved to PostgreSQL.

The journal is replayed as a start would (`JournalStore(DIR).open()`; a daemon that runs on it
holds its lock, and the import refuses to go on).  The database must hold no job: an import
never merges two queues.  Everything goes in one transaction, so a failed import leaves the
database as it was: the settings, this node's pool size, the groups, the environments, the jobs
(each with its ticket, so the order of the line is kept, and in the order it entered its state),
their dependency edges, the schedules with their state, the audit trail, and the run stats (as
this node's).  A job that was running when the journal's daemon stopped is ended as a restart
ends it: interrupted, failed with its backoff or dead (cancelled, if its cancel was asked for),
and its dependents follow.  Nothing is written to the journal.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections import Counter
from typing import Any

from ..config import KEYS
from ..journal import JournalError
from ..journal_store import JournalStore
from ..model import Job
from ..rules import DEAD, INTERRUPTED, LIST_ORDER, PROCESSING, plan_end
from ..store import StoreError
from . import deps, rows
from .schedules import encode, next_fire
from .trail import _encode as encode_entry

log = logging.getLogger("queuectld")

EXIT_REFUSED = 1

COLUMNS = ("id", "command", "state", "priority", "max_retries", "run_at", "timeout", "cwd", "grp", "env", "after",
           "after_any", "unique_key", "retry_on", "no_retry_on", "idle_timeout", "schedule", "slot", "late",
           "blocked", "cause", "attempts", "created_at", "updated_at", "started_at", "finished_at",
           "next_retry_at", "exit_code", "error_message", "worker", "due", "ticket", "entered")


def row(job: Job, entered: int) -> tuple[Any, ...]:
    return (job.id, job.command, job.state, job.priority, job.max_retries, job.run_at, job.timeout, job.cwd,
            job.group, job.env, job.after, job.after_any, job.unique_key, rows.rule_text(job.retry_on),
            rows.rule_text(job.no_retry_on), job.idle_timeout, job.schedule, job.slot, job.late, job.blocked,
            job.cause, job.attempts, job.created_at, job.updated_at, job.started_at, job.finished_at,
            job.next_retry_at, job.exit_code, job.error_message, job.worker, job.due, job.ticket, entered)


def interrupt(journal: JournalStore, job: Job, now: float) -> None:
    """End a run the journal shows as going, as the pool's recovery does at a start."""
    q = journal.queue
    outcome = plan_end(job, now, None, INTERRUPTED, q.config, cancelled=job.id in q.cancelled)
    job.state, job.exit_code, job.error_message = outcome.state, outcome.exit_code, outcome.error
    job.next_retry_at, job.finished_at, job.updated_at, job.worker = outcome.next_retry_at, now, now, None
    if outcome.next_retry_at is not None:
        job.due = outcome.next_retry_at


async def copy(conn: Any, journal: JournalStore, node: str, now: float) -> dict[str, int]:
    """Write the journal's queue in the caller's transaction; returns what was written."""
    q = journal.queue
    defaults = {name: spec[2] for name, spec in KEYS.items()}
    settings = [(k, q.config.show(k)) for k, v in q.config.values.items() if v != defaults[k]]
    await conn.executemany("INSERT INTO queuectl_settings (key, value) VALUES ($1, $2) "
                           "ON CONFLICT (key) DO UPDATE SET value = excluded.value", settings)
    await conn.execute("INSERT INTO queuectl_node_pools (name, pool) VALUES ($1, $2) "
                       "ON CONFLICT (name) DO UPDATE SET pool = excluded.pool", node, q.pool_size)
    await conn.executemany("INSERT INTO queuectl_groups (name, parallel, paused) VALUES ($1, $2, $3) ON CONFLICT "
                           "(name) DO UPDATE SET parallel = excluded.parallel, paused = excluded.paused",
                           [(g.name, g.parallel, g.paused) for g in q.groups.values()])
    await conn.executemany("INSERT INTO queuectl_environments (key, vars) VALUES ($1, $2) ON CONFLICT DO NOTHING",
                           [(k, rows.json_text(v)) for k, v in q.envs.vars.items()])
    interrupted = list(q.by_state[PROCESSING].values())
    for job in interrupted:
        interrupt(journal, job, now)
    records, edges, entered = [], [], 0
    for state in LIST_ORDER:
        kept = [] if state == PROCESSING else list(q.by_state[state].values())  # each run ended above
        jobs = kept + [job for job in interrupted if job.state == state]
        for job in jobs:
            entered += 1
            records.append(row(job, entered))
            edges += [(job.id, d, False) for d in job.after or ()] + [(job.id, d, True) for d in job.after_any or ()]
    if records:
        await conn.copy_records_to_table("queuectl_jobs", records=records, columns=COLUMNS)
    if edges:
        await conn.copy_records_to_table("queuectl_deps", records=list(dict.fromkeys(edges)),
                                         columns=("job_id", "dep_id", "is_any"))
    await conn.execute("SELECT setval('queuectl_ticket', greatest((SELECT max(ticket) FROM queuectl_jobs), 1))")
    await conn.execute("SELECT setval('queuectl_entered', $1)", max(entered, 1))
    dead = [job.id for job in interrupted if job.state == DEAD]
    if dead:
        await deps.died(conn, dead, now)
    for s in q.schedules.by_name.values():
        await conn.execute("INSERT INTO queuectl_schedules (name, data, next_fire, paused) VALUES ($1, $2, $3, $4)",
                           s.name, encode(s), next_fire(s), s.paused)
    entries = list(q.trail.entries)
    if entries:
        await conn.copy_records_to_table("queuectl_audit", records=[(e.at, encode_entry(e)) for e in entries],
                                         columns=("at", "entry"))
    stats = journal.load_stats()
    if stats is not None:
        await conn.execute("INSERT INTO queuectl_stats (node, data) VALUES ($1, $2) "
                           "ON CONFLICT (node) DO UPDATE SET data = excluded.data", node, stats)
    counts = Counter(job.state for job in (r for s in q.by_state.values() for r in s.values()))
    return {"jobs": len(records), "interrupted": len(interrupted), "groups": len(q.groups),
            "schedules": len(q.schedules), "audit": len(entries), **{f"state:{k}": v for k, v in counts.items()}}


async def run(url: str, journal_dir: str, node: str | None) -> str:
    """Import; returns the summary line.  StoreError (one line) if it cannot."""
    from .store import PgStore

    if not os.path.isdir(journal_dir):
        raise StoreError(f"no journal in {journal_dir}")
    journal = JournalStore(journal_dir, node=node)
    try:
        await journal.open()
    except (JournalError, OSError) as e:
        raise StoreError(f"cannot read the journal in {journal_dir}: {e}".splitlines()[0]) from None
    try:
        store = PgStore(url, node=node)
        await store.open()
        try:
            async with store.tx() as conn:
                await conn.execute("LOCK TABLE queuectl_jobs IN EXCLUSIVE MODE")
                if await conn.fetchval("SELECT EXISTS (SELECT 1 FROM queuectl_jobs)"):
                    raise StoreError("the database already holds jobs: a journal is imported into an empty queue "
                                     "only (use a new database, or delete its jobs first)")
                n = await copy(conn, journal, store.node, time.time())
        finally:
            await store.close()
    finally:
        await journal.close()
    states = ", ".join(f"{n[f'state:{s}']} {s}" for s in LIST_ORDER if n.get(f"state:{s}"))
    return (f"imported {n['jobs']} jobs ({states or 'none'}; {n['interrupted']} interrupted runs ended), "
            f"{n['groups']} groups, {n['schedules']} schedules and {n['audit']} audit entries from {journal_dir}")


def main(url: str, journal_dir: str, node: str | None) -> int:
    """`queuectld --import-journal`: the exit code (0, or 1 with one line on stderr)."""
    try:
        summary = asyncio.run(run(url, journal_dir, node))
    except StoreError as e:
        log.error("cannot import: %s", e)
        return EXIT_REFUSED
    except Exception as e:  # the database refused something: one line, never a traceback
        log.error("cannot import: %s", f"{type(e).__name__}: {e}".splitlines()[0])
        return EXIT_REFUSED
    print(summary, flush=True)
    return 0

