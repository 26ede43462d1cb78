"""The port's operations the PostgreSQL store does not offer yet: each refuses with one line."""

from __future__ import annotations

from collections.abc import Callable

from queuectl_client.protocol import AuditEntry, Edit, Reason, ScheduleAdd, ScheduleInfo, Selector

from ..model import Job
from ..rules import QueueError
from ..store import Store

USED: list[str] = []  # the operations asked for that are not there yet, in order (the contract tests read it)


def _no(what: str) -> QueueError:
    USED.append(what)
    return QueueError("invalid", f"{what} is not available with the PostgreSQL store yet")


def _used(what: str) -> None:
    USED.append(what)


class Missing(Store):
    """Last in PgStore's bases: a mixin that implements one of these takes precedence."""

    async def delete(self, job_id: str, at: float, cascade: bool = False) -> None:
        raise _no("delete")

    async def delete_many(self, ids: list[str], select: Selector | None, at: float,
                          cascade: bool = False) -> list[str]:
        raise _no("delete")

    async def revive(self, ids: list[str], everything: bool, at: float) -> list[str]:
        raise _no("revive")

    async def retry(self, ids: list[str], select: Selector | None, at: float) -> list[str]:
        raise _no("retry")

    async def cancel(self, ids: list[str], select: Selector | None, at: float) -> tuple[list[str], list[str]]:
        raise _no("cancel")

    async def edit(self, req: Edit, at: float) -> Job:
        raise _no("edit")

    async def prune(self, before: dict[str, float], limit: int) -> list[str]:
        _used("prune")
        return []

    async def expired(self, before: dict[str, float], limit: int | None) -> list[str]:
        _used("expired")
        return []

    async def define_schedule(self, req: ScheduleAdd, at: float, local_zone: str) -> ScheduleInfo:
        raise _no("schedule add")

    async def remove_schedule(self, name: str) -> None:
        raise _no("schedule rm")

    async def pause_schedule(self, name: str, paused: bool, at: float) -> ScheduleInfo:
        raise _no("schedule pause")

    async def fire(self, now: float, refuse: Callable[[str], str | None] | None = None) -> list[Job]:
        _used("fire")
        return []

    async def schedules(self) -> list[ScheduleInfo]:
        _used("schedules")
        return []

    async def next_fire(self) -> float | None:
        _used("next_fire")
        return None

    async def refuse(self, action: str, detail: str) -> None:
        _used("refuse")
        return None

    async def audit(self, since: float, limit: int | None) -> list[AuditEntry]:
        _used("audit")
        return []

    async def trim_audit(self, now: float) -> int:
        _used("trim_audit")
        return 0

    async def why(self, job_id: str, now: float, pool_size: int, busy: int) -> Reason:
        raise _no("why")

    def load_stats(self) -> bytes | None:
        _used("load_stats")
        return None

    def save_stats(self, data: bytes) -> None:
        _used("save_stats")
        return None
