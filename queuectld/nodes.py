"""The `nodes` request: the daemons serving this queue (a journal store: this one alone)."""

from __future__ import annotations

import os
import time
from typing import Any

from queuectl_client import protocol as p
from queuectl_client.wire import VERSION

from .store import Store


class NodeRequests:
    def __init__(self, store: Store, pool: Any, started_at: float) -> None:
        self.store = store
        self.pool = pool
        self.started_at = started_at
        self.table: dict[type, Any] = {p.Nodes: self.nodes}

    async def listing(self) -> list[p.NodeInfo]:
        nodes = await self.store.nodes()
        if nodes is not None:
            return nodes
        return [p.NodeInfo(f"pid-{os.getpid()}", self.store.node, self.store.pool_size, self.pool.busy, VERSION, "up",
                           self.started_at, time.time(), 0.0, True)]

    async def nodes(self, req: p.Nodes, conn: Any) -> p.Message:
        return p.NodesReply(await self.listing())
