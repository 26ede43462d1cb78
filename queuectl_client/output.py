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


def json_array(jobs: Iterable[p.Job], created: list[bool] | None = None) -> None:
    """One job object per line, written as the jobs arrive; with `created`, each says whether it was created."""
    out = sys.stdout.buffer
    encode = msgspec.json.encode
    sep = b"[\n  "
    for i, job in enumerate(jobs):
        d = job_dict(job)
        if created is not None:
            d["created"] = created[i] if i < len(created) else True
        out.write(sep + encode(d))
        sep = b",\n  "
    out.write(b"[]\n" if sep == b"[\n  " else b"\n]\n")
