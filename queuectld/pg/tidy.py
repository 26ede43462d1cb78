"""The elected node keeps the live partition's claim index clean: a VACUUM once dead rows pile up.

A claim updates its rows out of the claim index's predicate and an end moves them to the done
partition, so each claimed job leaves a dead entry at the head of the claim index, where every later
claim starts its scan, until a VACUUM removes it.  Autovacuum comes round once a minute at most
(`autovacuum_naptime`), long enough for a busy queue to leave tens of thousands there: claim and
complete fell from about 11,500 to about 8,000 jobs/s between runs of 5,000 and 20,000 jobs, and
held about 13,900 with a VACUUM of the partition every half second beside it.  So the elected node
looks at the partition's dead rows every TIDY_EVERY seconds and vacuums it once there are TIDY_DEAD,
on a pooled session (a VACUUM runs outside a transaction, and never on the heartbeat's connection).
"""

from __future__ import annotations

import asyncio
import logging

from .core import PgCore

log = logging.getLogger("queuectld.cluster")

TIDY_EVERY = 0.5  # seconds between two looks at the live partition's dead rows
TIDY_DEAD = 2000  # dead rows that make the elected node vacuum the live partition

_DEAD = "SELECT n_dead_tup FROM pg_stat_user_tables WHERE relname = 'queuectl_jobs_live'"


class Tidy(PgCore):
    _leader: bool

    async def _tidy(self) -> None:
        while True:
            await asyncio.sleep(TIDY_EVERY)
            if not self._leader or self.fenced:
                continue
            try:
                dead = await self.db.fetchval(_DEAD)
                if dead is not None and dead >= TIDY_DEAD:
                    await self.db.execute("VACUUM queuectl_jobs_live")
            except asyncio.CancelledError:
                raise
            except Exception as e:  # the next look tries again; autovacuum is still there
                log.debug("the live partition's VACUUM failed: %r", e)
