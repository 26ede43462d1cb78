"""Handlers of the audit trail and the command policy: `audit`, the policy's checks, its `status` line.

With a policy, the requests that bring a new command into the queue
(enqueue, rerun, schedule add) are checked here before the handler that
makes them runs: a batch with one command the policy does not allow is
refused whole, and the refusal is recorded (a `Refused` record, so it is as
durable as a change) before the client hears of it.  Without a policy,
those requests go straight to their handlers, at no cost.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import msgspec

from queuectl_client import protocol as p

from .policy import NOT_ALLOWED, Policy, shown
from .rules import QueueError
from .store import Store, StoreError

log = logging.getLogger("queuectld.policy")

PAGE = 2000  # audit entries per AuditReply frame (each is bounded: well under a megabyte a frame)


class AuditRequests:
    def __init__(self, store: Store, policy: Policy | None, table: dict[type, Any]) -> None:
        self.store = store
        self.policy = policy
        self._enqueue = table[p.Enqueue]
        self._rerun = table[p.Rerun]
        self._schedule_add = table.get(p.ScheduleAdd)
        self._status = table[p.Status]
        self.table: dict[type, Any] = {p.Audit: self.audit}
        if policy is not None:
            self.table.update({p.Enqueue: self.enqueue, p.Rerun: self.rerun, p.Status: self.status})
            if self._schedule_add is not None:
                self.table[p.ScheduleAdd] = self.schedule_add

    async def audit(self, req: p.Audit, conn: Any) -> None:
        entries = await self.store.audit(req.since, req.limit)
        now = time.time()
        for start in range(0, max(len(entries), 1), PAGE):
            await conn.send(p.AuditReply(entries[start : start + PAGE], start + PAGE < len(entries), now))

    async def status(self, req: p.Status, conn: Any) -> p.Message:
        reply: p.StatusReply = await self._status(req, conn)
        assert self.policy is not None
        return msgspec.structs.replace(reply, policy=self.policy.info())

    # -- the policy's checks ------------------------------------------------------------

    async def enqueue(self, req: p.Enqueue, conn: Any) -> p.Message | None:
        if not req.more:  # the batch is whole: the staged frames and this one
            specs = conn.staged + req.jobs if conn.staged else req.jobs
            await self._check("enqueue", [spec.command for spec in specs], conn)
        return await self._enqueue(req, conn)  # type: ignore[no-any-return]

    async def rerun(self, req: p.Rerun, conn: Any) -> p.Message | None:
        job = await self.store.get(req.id)
        await self._check("rerun", [job.command], conn, f"of {req.id}")
        return await self._rerun(req, conn)  # type: ignore[no-any-return]

    async def schedule_add(self, req: p.ScheduleAdd, conn: Any) -> p.Message | None:
        await self._check("schedule add", [req.job.command], conn, f"schedule {req.name}")
        assert self._schedule_add is not None
        return await self._schedule_add(req, conn)  # type: ignore[no-any-return]

    async def _check(self, action: str, commands: list[str], conn: Any, what: str = "") -> None:
        """Refuse, and record the refusal, unless the policy allows every command."""
        assert self.policy is not None
        refused = self.policy.first_refused(commands)
        if refused is None:
            return
        command, why = refused
        conn.staged = []  # a multi-frame batch is refused whole
        batch = f" (in a batch of {len(commands)} jobs)" if len(commands) > 1 else ""
        try:
            await self.store.refuse(action, f"{what + ': ' if what else ''}{shown(command)}{batch}")
        except StoreError as e:  # refused all the same: the policy does not depend on the journal
            log.error("cannot record a refused %s: %s", action, e)
        if why != NOT_ALLOWED:
            log.warning("refused %s: %s", shown(command), why)
        raise QueueError("refused", f"{NOT_ALLOWED}: {shown(command)}{batch}{why[len(NOT_ALLOWED):]}")
