"""The elected node's work: declare lost the nodes that went silent, and end the jobs of lost and stopped
nodes through the failure path, each with a compare-and-set (docs/DECISIONS.md, "Several nodes"); and the
nodes as `nodes` and `status` show them."""

from __future__ import annotations

import logging

from queuectl_client import protocol as p
from queuectl_client.node_messages import NodeState

from ..rules import plan_end
from . import deps, names
from .core import PgCore
from .rows import JOB_COLUMNS, job

log = logging.getLogger("queuectld.cluster")

FENCE_AFTER = 2  # intervals without a successful heartbeat before a node fences itself
LOST_AFTER = names.LOST_AFTER  # intervals since a node's last heartbeat before the elected node declares it lost
KEEP_NODES = 86400.0  # seconds a stopped or lost node's row stays once its jobs are resolved

_DECLARE = """
UPDATE queuectl_nodes SET lost_at = now()
 WHERE lost_at IS NULL AND stopped_at IS NULL AND heartbeat_at < now() - make_interval(secs => $1)
RETURNING id::text, name
"""
_GONE = """
SELECT DISTINCT n.id::text, n.name FROM queuectl_nodes n
  JOIN queuectl_jobs_live j ON j.locked_by >= n.id::text || '/' AND j.locked_by < n.id::text || '0'
 WHERE n.lost_at IS NOT NULL OR n.stopped_at IS NOT NULL
"""
# The jobs a node holds: locked_by is "<node id>/<slot>", so they sort between "<id>/" and "<id>0".
# A row another session has locked is skipped, not waited for, and rescued at a later round: a node that froze
# inside a transaction keeps its rows locked until PostgreSQL ends its session (idle_in_transaction_session_
# timeout), and a rescue that waited for them would hold up the election, and every other lost node's rescue.
_HELD = (f"SELECT {JOB_COLUMNS}, locked_by, cancelled FROM queuectl_jobs_live "
         "WHERE state = 'processing' AND locked_by >= $1 AND locked_by < $2 FOR UPDATE SKIP LOCKED")
_UNHOLD = """
UPDATE queuectl_jobs SET locked_by = NULL, locked_at = NULL, node = NULL, attempts = attempts - 1
 WHERE id IN (SELECT id FROM queuectl_jobs_live WHERE locked_by >= $1 AND locked_by < $2 AND state <> 'processing'
                 FOR UPDATE SKIP LOCKED)
   AND locked_by >= $1 AND locked_by < $2 AND state <> 'processing'
RETURNING id
"""
RESCUE_LOCK_WAIT = "1s"  # any other lock a rescue meets: waited for this long, then tried at the next round
_RESCUE = """
UPDATE queuectl_jobs SET state = $4, exit_code = NULL, error_message = $5, next_retry_at = $6,
       due = coalesce($6, due), finished_at = $7, updated_at = $7, worker = NULL, locked_by = NULL,
       locked_at = NULL, pgid = NULL, pid_start = NULL, node = NULL, cancelled = false,
       entered = nextval('queuectl_entered'),
       ticket = CASE WHEN $4 = 'failed' THEN nextval('queuectl_ticket') ELSE ticket END
 WHERE id = $1 AND state = 'processing' AND attempts = $2 AND locked_by = $3
"""
_FORGET = """
DELETE FROM queuectl_nodes n WHERE coalesce(n.lost_at, n.stopped_at) < now() - make_interval(secs => $1)
   AND NOT EXISTS (SELECT 1 FROM queuectl_jobs_live j
                    WHERE j.locked_by >= n.id::text || '/' AND j.locked_by < n.id::text || '0')
"""
_NODES = """
SELECT id::text AS id, name, pool, busy, version, extract(epoch FROM started_at)::float8 AS started,
       extract(epoch FROM heartbeat_at)::float8 AS beat, extract(epoch FROM now() - heartbeat_at)::float8 AS age,
       lost_at IS NOT NULL AS lost, stopped_at IS NOT NULL AS stopped
  FROM queuectl_nodes ORDER BY started_at DESC, id
"""

def held_range(node_id: str) -> tuple[str, str]:
    """The bounds of the `locked_by` values of a node's claims and runs."""
    return node_id + "/", node_id + "0"



class Rescue(PgCore):
    def interval(self) -> float:
        """The heartbeat interval (the cluster-wide `heartbeat` setting)."""
        return self.config.heartbeat

    def _busy_now(self) -> int:
        return self.count_busy() if self.count_busy is not None else 0

    def rescued(self, ids: list[str]) -> None:
        """Jobs the rescue changed: announce them on this node."""

    async def rescue(self, interval: float) -> int:
        """Declare lost the nodes silent for LOST_AFTER intervals, end the jobs of gone nodes; returns how many."""
        for node_id, name in await self.db.fetch(_DECLARE, interval * LOST_AFTER):
            log.warning("node %s (id %s) is lost: no heartbeat for %g s", name, node_id, interval * LOST_AFTER)
        ended = 0
        for node_id, name in await self.db.fetch(_GONE):
            ended += await self._rescue_node(node_id, name)
        await self.db.execute(_FORGET, KEEP_NODES)
        return ended

    async def _rescue_node(self, node_id: str, name: str) -> int:
        low, high = held_range(node_id)
        at = self.clock()
        changed: list[str] = []
        async with self.tx() as conn:
            await conn.execute(f"SET LOCAL lock_timeout = '{RESCUE_LOCK_WAIT}'")
            dead: list[str] = []
            unheld = [r[0] for r in await conn.fetch(_UNHOLD, low, high)]  # claimed, never started: given back
            retried = bool(unheld)
            for r in await conn.fetch(_HELD, low, high):
                held = job(r)
                error = f"interrupted: node {name} lost"
                outcome = plan_end(held, at, None, error, self.config, cancelled=r["cancelled"])
                status = await conn.execute(_RESCUE, held.id, held.attempts, r["locked_by"], outcome.state,
                                            outcome.error, outcome.next_retry_at, at)
                if status != "UPDATE 1":  # it ended, or moved, since the read: the rescue leaves it
                    log.info("the rescue left job %s: it changed meanwhile", held.id)
                    continue
                log.warning("job %s (attempt %d) was running on lost node %s: %s", held.id, held.attempts, name,
                            outcome.state)
                changed.append(held.id)
                if outcome.state == "dead":
                    dead.append(held.id)
                else:
                    retried = True
            changed += await deps.died(conn, dead, at)
            if changed:
                await self.notify(conn, "queuectl_changed", *changed)
            if retried or len(changed) > len(dead):
                await self.notify(conn, "queuectl_wake", "")
        if changed:
            self.rescued(changed)
        return len(changed)

    # -- the nodes' view ------------------------------------------------------------------------

    async def nodes(self) -> list[p.NodeInfo]:
        interval = self.interval()
        rows = await self.db.fetch(_NODES)
        out = []
        for r in rows:
            this = r["id"] == self.node_id
            state: NodeState
            age = r["age"]
            if r["stopped"]:
                state = "stopped"
            elif r["lost"]:
                state = "lost"
            elif (this and self.fenced) or (age is not None and age > FENCE_AFTER * interval):
                state = "fenced"  # as the others see it: silent long enough to have fenced itself
            else:
                state = "up"
            # A lost or stopped node runs nothing: its last report no longer says what runs.
            busy = self._busy_now() if this else 0 if state in ("lost", "stopped") else r["busy"]
            pool = self.pool_size if this else r["pool"]
            out.append(p.NodeInfo(r["id"], r["name"], pool, busy, r["version"] or "", state, r["started"],
                                  r["beat"], age, this))
        return out
