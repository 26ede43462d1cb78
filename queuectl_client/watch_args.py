"""The grammar of the commands that watch the queue: `stats`, `audit` and `dashboard` (see `parser`)."""

from __future__ import annotations

import argparse

from . import values
from .schema import INT32


def _json_flag(parser: argparse.ArgumentParser, text: str) -> None:
    parser.add_argument("--json", action="store_true", help=text)


def stats_args(s: argparse.ArgumentParser) -> None:
    s.add_argument("--since", type=values.since, default=86_400.0, metavar="DURATION",
                   help="the window: runs that ended this long ago at most (1m to 24h; default 24h)")
    s.add_argument("--group", type=values.group_name, metavar="GROUP", help="only this group")
    _json_flag(s, "print JSON: counts, rates per minute, ratios, and percentiles in seconds")


def audit_args(a: argparse.ArgumentParser) -> None:
    a.add_argument("--since", type=values.duration, metavar="DURATION",
                   help="only the last DURATION (90s, 30m, 12h, 7d)")
    a.add_argument("--limit", type=values.whole(0, INT32), metavar="N",
                   help=f"only the newest N entries (0 to {INT32})")
    _json_flag(a, "print a JSON array, one object per entry: at, uid, user, via, action, detail")
