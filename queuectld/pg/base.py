"""What the PostgreSQL store's mixins may use of `PgStore`: for type checking only.

The mixins (control, schedules, trail) are written against `PgCore` (the pooled connections,
the node's name and id, the cached settings, the database's clock, a transaction, a NOTIFY sent
at its commit) and the one method of `PgStore` they share: writing new jobs.  At run time they
derive from `object`, and `PgStore` puts them first among its bases.
"""

from __future__ import annotations

from typing import Any

from ..model import Job, NewJob
from .core import PgCore


class PgBase(PgCore):
    _disk: int | None  # the database's size measured last (queries.Reads); None: changed since

    async def _insert(self, conn: Any, fresh: list[NewJob], at: float, envs: dict[str, dict[str, str]],
                      explicit: bool) -> list[Job]:
        """New jobs written with their checks (group, id, dependencies) and edges; QueueError names a problem."""
        raise NotImplementedError

    async def _audited(self, conn: Any, record: Any, detail: str | None = None) -> None:
        """Keep who made the change `record` says, in its transaction (`detail`: the entry's words instead)."""
        raise NotImplementedError
