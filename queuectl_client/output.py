"""JSON on stdout for the full CLI: a document, or a streamed array of jobs in the shape of `show --json`."""

from __future__ import annotations

import sys
from collections.abc import Iterable
from typing import Any

import msgspec

from . import protocol as p
from .render import job_dict


def json_out(obj: Any) -> None:
    sys.stdout.buffer.write(msgspec.json.format(msgspec.json.encode(obj), indent=2) + b"\n")


def json_array(jobs: Iterable[p.Job]) -> None:
    """One job object per line, written as the jobs arrive."""
    out = sys.stdout.buffer
    encode = msgspec.json.encode
    sep = b"[\n  "
    for job in jobs:
        out.write(sep + encode(job_dict(job)))
        sep = b",\n  "
    out.write(b"[]\n" if sep == b"[\n  " else b"\n]\n")
