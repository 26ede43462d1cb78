"""`queuectl nodes [--json]`, and the nodes section of `status`: the daemons that serve one queue.

Rendered from plain data (msgspec.to_builtins of NodeInfo), as `status` is.  A heartbeat's age is
the database's (the nodes' clocks are not compared); the journal store shows its one node.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

import msgspec

from . import protocol as p
from .output import json_out
from .render import ago, iso, paint, shown

COLORS = {"up": "completed", "fenced": "failed", "lost": "dead", "stopped": "pending"}


def age(seconds: float | None) -> str:
    return "-" if seconds is None else ago(0.0, max(0.0, seconds))


def _cells(n: dict[str, Any]) -> tuple[str, ...]:
    return (shown(n["name"]) + (" *" if n.get("this") else ""), n["state"], str(n["pool"]), str(n["busy"]),
            age(n.get("heartbeat_age")), shown(n["version"]), ago(n.get("started_at")), n["id"][:8])


def node_table(nodes: list[dict[str, Any]]) -> str:
    """NAME (this node starred), STATE, POOL, BUSY, HEARTBEAT, VERSION, STARTED, ID (its first 8)."""
    header = ("NAME", "STATE", "POOL", "BUSY", "HEARTBEAT", "VERSION", "STARTED", "ID")
    rows = [_cells(n) for n in nodes]
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    out = []
    for r in [header, *rows]:
        cells = [c.ljust(w) for c, w in zip(r, widths)]
        if r is not header:
            cells[1] = paint(cells[1], COLORS.get(r[1], ""))
        out.append("  ".join(cells).rstrip() + "\n")
    return "".join(out)


def node_lines(nodes: list[dict[str, Any]]) -> list[str]:
    """`nodes    NAME  STATE  pool P  busy B  heartbeat AGE  version V`, one line per node, aligned."""
    cells = [(shown(n["name"]) + (" *" if n.get("this") else ""), n["state"], f"pool {n['pool']}",
              f"busy {n['busy']}", f"heartbeat {age(n.get('heartbeat_age'))}", f"version {shown(n['version'])}")
             for n in nodes]
    widths = [max(len(c[i]) for c in cells) for i in range(6)]
    lines = []
    for k, c in enumerate(cells):
        parts = [x.ljust(w) for x, w in zip(c, widths)]
        parts[1] = paint(parts[1], COLORS.get(c[1], ""))
        lines.append((f"{'nodes' if k == 0 else '':<9}" + "  ".join(parts)).rstrip())
    return lines


def node_json(n: dict[str, Any]) -> dict[str, Any]:
    return {"id": n["id"], "name": n["name"], "state": n["state"], "pool": n["pool"], "busy": n["busy"],
            "version": n["version"], "started_at": iso(n.get("started_at")),
            "heartbeat_at": iso(n.get("heartbeat_at")), "heartbeat_age": n.get("heartbeat_age"),
            "this": bool(n.get("this", False))}


def cmd_nodes(client: Any, args: argparse.Namespace) -> int:
    reply = client.request(p.Nodes())
    assert isinstance(reply, p.NodesReply)
    nodes = msgspec.to_builtins(reply.nodes)
    if args.json:
        json_out([node_json(n) for n in nodes])
    else:
        sys.stdout.write(node_table(nodes))
    return 0
