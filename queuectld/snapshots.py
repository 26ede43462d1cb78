"""Snapshots of the queue: the records that rebuild its state exactly, and applying their jobs.

A snapshot holds the settings, the pool size, the groups, the environments
and schedules in use, every job state by state in the order it entered it
(in chunks), the process groups of running jobs, and an end record that
counts the jobs.  Restoring a chunk fills each state's dict in one pass.
"""

from __future__ import annotations

import sys
from itertools import chain
from typing import TYPE_CHECKING

from queuectl_client.protocol import STATES

from . import events as ev
from .lanes import by_place
from .rules import PROCESSING, WAITS

if TYPE_CHECKING:
    from .queue import Queue



def restore(q: Queue, e: ev.Restored) -> None:
    """Apply a snapshot's chunk of jobs: into their state's dict, their group's tally and lanes, and the
    dependency and unique-key indexes."""
    chunk = e.jobs
    if not chunk:
        return
    intern = sys.intern
    for job in chunk:
        job.command = intern(job.command)
        job.group = intern(job.group)  # (environment keys are interned as they are read: events.interned)
    # A snapshot writes each state's jobs in their own chunks (see `snapshot`), so a chunk
    # normally goes into one dict in one pass.  Comprehensions, not one loop doing everything:
    # a million jobs restore in about half the time.
    state = chunk[0].state
    if all(job.state == state for job in chunk):
        q.by_state[state].update({job.id: job for job in chunk})
        q._tally(chunk, state)
        running = chunk if state == PROCESSING else []
    else:
        for s, jobs in q.by_state.items():
            these = [job for job in chunk if job.state == s]
            if these:
                jobs.update({job.id: job for job in these})
                q._tally(these, s)
        running = [job for job in chunk if job.state == PROCESSING]
    for job in running:
        q._count_in(q._group_of(job))
    q.deps.restored(chunk)
    q.uniques.restored(chunk)
    waits = [job for job in chunk if job.state in WAITS and (job.extra is None or not job.extra.blocked)]
    for (_, priority), same in by_place(waits).items():
        q._group_of(same[0]).lanes.restore(priority, [(job.due, job.ticket, job) for job in same])


def snapshot(q: Queue, chunk: int = 10_000) -> list[ev.Event]:
    """Events that rebuild this state exactly: settings, pool, groups, every job, the running groups,
    the audit trail."""
    out: list[ev.Event] = [ev.ConfigChanged(k, q.config.show(k)) for k in q.config.values]
    out.append(ev.PoolSized(q.pool_size))
    out += [ev.GroupDefined(g.name, g.parallel, g.paused) for g in q.groups.values()]
    out += q.envs.snapshot(chain(*(jobs.values() for jobs in q._states), q.schedules.by_name.values()))
    out += q.schedules.snapshot()
    # The live Job structs themselves, state by state in the order they entered it: the
    # caller encodes them before the loop runs again, so the snapshot is the state of this moment.
    total = 0
    for state in STATES:
        jobs = list(q.by_state[state].values())
        total += len(jobs)
        out += [ev.Restored(jobs[i : i + chunk]) for i in range(0, len(jobs), chunk)]
    out += [ev.Running(job_id, pgid, start, job_id in q.cancelled)
            for job_id, (pgid, start) in q.running.items()]
    out += q.trail.snapshot()
    out.append(ev.SnapshotEnd(total, q._ticket))
    return out

