"""`queuectl stats` (what ended per group over a window, as a table or JSON) and `queuectl metrics`
(the Prometheus text)."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from . import protocol as p
from .connection import Client
from .durations import show_duration
from .output import json_out
from .render import iso, shown

MIN_SINCE = 60.0  # seconds: the shortest window


def cmd_stats(client: Client, args: argparse.Namespace) -> int:
    reply = client.request(p.Stats(since=args.since, group=args.group))
    assert isinstance(reply, p.StatsReply)
    if args.json:
        json_out(stats_json(reply))
    else:
        sys.stdout.write(stats_table(reply))
    return 0


def cmd_metrics(client: Client, args: argparse.Namespace) -> int:
    from .prometheus import render

    reply = client.request(p.Metrics())
    assert isinstance(reply, p.MetricsReply)
    sys.stdout.write(render(reply))
    return 0


def window_minutes(reply: p.StatsReply) -> float:
    """The minutes the rates are over: the window, or the time since the stats began if shorter
    (at least a minute)."""
    span = reply.since
    if reply.began is not None:
        span = min(span, reply.now - reply.began)
    return max(span, MIN_SINCE) / 60


def stats_json(reply: p.StatsReply) -> dict[str, Any]:
    minutes = window_minutes(reply)
    groups = []
    for g in reply.groups:
        groups.append({
            "group": g.group, "completed": g.completed, "failed": g.failed, "dead": g.dead,
            "per_minute": {"completed": g.completed / minutes, "failed": g.failed / minutes,
                           "dead": g.dead / minutes},
            "success_ratio": g.success_ratio,
            "duration_seconds": {"p50": g.duration_p50, "p95": g.duration_p95, "p99": g.duration_p99},
            "wait_seconds": {"p50": g.wait_p50, "p95": g.wait_p95},
        })
    return {"since_seconds": reply.since, "now": iso(reply.now), "began": iso(reply.began), "groups": groups}


HEADER = ("GROUP", "COMPLETED", "FAILED", "DEAD", "PER MIN (C/F/D)", "SUCCESS", "DURATION p50/p95/p99",
          "WAIT p50/p95")


def stats_table(reply: p.StatsReply) -> str:
    minutes = window_minutes(reply)
    rows = [HEADER]
    for g in reply.groups:
        rates = "/".join(_rate(n / minutes) for n in (g.completed, g.failed, g.dead))
        ratio = "-" if g.success_ratio is None else f"{g.success_ratio * 100:.1f}%"
        rows.append((shown(g.group), str(g.completed), str(g.failed), str(g.dead), rates, ratio,
                     " / ".join(span(x) for x in (g.duration_p50, g.duration_p95, g.duration_p99)),
                     " / ".join(span(x) for x in (g.wait_p50, g.wait_p95))))
    widths = [max(len(row[i]) for row in rows) for i in range(len(HEADER))]
    lines = [f"Runs that ended in the last {show_duration(reply.since)} "
             "(percentiles are estimates from histogram buckets):"]
    for row in rows:
        cells = [row[0].ljust(widths[0])] + [c.rjust(w) for c, w in zip(row[1:6], widths[1:6], strict=True)]
        cells += [c.ljust(w) for c, w in zip(row[6:], widths[6:], strict=True)]
        lines.append("  ".join(cells).rstrip())
    if not reply.groups:
        lines.append("(no group)")
    return "\n".join(lines) + "\n"


def _rate(x: float) -> str:
    return "0" if x == 0 else f"{x:.2g}" if x < 10 else f"{x:.0f}"


def span(seconds: float | None) -> str:
    """A duration for people: 850µs, 12ms, 4.2s, 3m05s, 2h10m, 1d4h; '-' for None."""
    if seconds is None:
        return "-"
    if seconds < 0.001:
        return f"{seconds * 1e6:.0f}µs"
    if seconds < 1:
        return f"{seconds * 1000:.0f}ms"
    if seconds < 10:
        return f"{seconds:.1f}s"
    if seconds < 60:
        return f"{seconds:.0f}s"
    s = round(seconds)
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    if s < 86_400:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    return f"{s // 86_400}d{s % 86_400 // 3600}h"

