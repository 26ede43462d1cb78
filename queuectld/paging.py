"""The request for one page of jobs, newest first, resumed by a cursor (the dashboard's tables)."""

from __future__ import annotations

from typing import Any

from queuectl_client import protocol as p
from queuectl_client.page_messages import SCAN_LIMIT

from .store import Store


class Paging:
    def __init__(self, store: Store) -> None:
        self.store = store
        self.table: dict[type, Any] = {p.Page: self.page}

    async def page(self, req: p.Page, conn: Any) -> p.Message:
        got = await self.store.page(req.state, req.group, req.query, req.cursor, req.limit, SCAN_LIMIT)
        blocked = await self.store.blockers(got.jobs)
        node = self.store.node
        return p.PageReply([job.view(node, blocked.get(job.id)) for job in got.jobs], got.next, got.scanned, got.total)
