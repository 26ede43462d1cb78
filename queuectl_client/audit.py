"""`queuectl audit`: who changed what, from the daemon's audit trail, oldest first.

Each entry: when (relative, and in UTC), the uid (and its user name, when
this machine resolves it), through what (cli, shell, dashboard, python,
queuectld), the action and what it named.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Iterator
from typing import Any

from . import protocol as p
from .connection import Client
from .output import json_out
from .render import ago, iso, shown

HEADER = ("WHEN", "UTC", "UID", "VIA", "ACTION", "WHAT")


def entries(client: Client, since: float | None, limit: int | None) -> Iterator[p.AuditEntry]:
    """The daemon's entries from `since` seconds ago (None: all), the newest `limit` of them."""
    start = 0.0 if since is None else time.time() - since
    for reply in client.stream(p.Audit(start, limit)):
        assert isinstance(reply, p.AuditReply)
        yield from reply.entries
        if not reply.more:
            return


def user(uid: int, names: dict[int, str]) -> str:
    """`1000 (alice)`, or the uid alone when this machine has no name for it."""
    if uid not in names:
        import pwd

        try:
            names[uid] = f"{uid} ({pwd.getpwuid(uid).pw_name})"
        except (KeyError, OverflowError, ValueError):
            names[uid] = str(uid)
    return names[uid]


def utc(t: float) -> str:
    text = iso(t) or "-"
    return text[:19].replace("T", " ") if text.endswith("Z") else text


def entry_dict(e: p.AuditEntry, names: dict[int, str]) -> dict[str, Any]:
    return {"at": iso(e.at), "uid": e.uid, "user": user(e.uid, names).partition(" (")[2].rstrip(")") or None,
            "via": e.via, "action": e.action, "detail": e.detail}


def cmd_audit(client: Client, args: argparse.Namespace) -> int:
    found = list(entries(client, args.since, args.limit))
    names: dict[int, str] = {}
    if args.json:
        json_out([entry_dict(e, names) for e in found])
        return 0
    if not found:
        print("no audit entries" + (" in that time" if args.since is not None else ""), file=sys.stderr)
        return 0
    now = time.time()
    rows = [(ago(e.at, now), utc(e.at), user(e.uid, names), shown(e.via) or "-", e.action, shown(e.detail))
            for e in found]
    widths = [max(len(r[i]) for r in [HEADER, *rows]) for i in range(len(HEADER) - 1)]
    out = sys.stdout
    for row in [HEADER, *rows]:
        out.write("  ".join(c.ljust(w) for c, w in zip(row, widths)) + "  " + row[-1] + "\n")
    return 0
