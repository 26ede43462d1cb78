"""The protocol's messages for the nodes that serve one queue (`queuectl nodes`, and `status`'s nodes section).

`protocol` re-exports them and lists them among its requests and replies.
"""

from __future__ import annotations

from typing import Literal

from .schema import Message

NodeState = Literal["up", "fenced", "lost", "stopped"]


class NodeInfo(Message, frozen=True):
    """One daemon start on the queue's database (a node id is drawn anew at every start).

    `heartbeat_age`: seconds since its last heartbeat, by the database's clock (None: never).
    `this`: the node that answered."""

    id: str
    name: str
    pool: int
    busy: int
    version: str
    state: NodeState
    started_at: float | None = None
    heartbeat_at: float | None = None
    heartbeat_age: float | None = None
    this: bool = False


class Nodes(Message, frozen=True):
    """Every node of the queue's database, newest start first (a journal store: its one node)."""


class NodesReply(Message, frozen=True):
    nodes: list[NodeInfo]
