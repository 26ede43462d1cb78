"""Jobs as people write them: JSON text to checked `JobSpec`s, errors that name the field."""

from __future__ import annotations

import os
import sys

import msgspec

from . import protocol as p
from .parser import UsageError

_decode_one = msgspec.json.Decoder(p.JobSpec).decode
_decode_many = msgspec.json.Decoder(list[p.JobSpec]).decode


def read(path: str | None) -> bytes:
    """The bytes of a jobs file, or of stdin for None or "-"."""
    if path in (None, "-"):
        return sys.stdin.buffer.read()
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as e:
        raise UsageError(f"cannot read {path}: {e.strerror}") from None


def parse_lines(data: bytes) -> list[p.JobSpec]:
    """One JSON job per line, blank lines skipped; errors name the line."""
    lines = [ln for ln in data.splitlines() if ln.strip()]
    if not lines:
        raise UsageError("no jobs given: expected one JSON object per line")
    try:
        # One decode for the whole batch; the per-line pass below only runs to find an error.
        specs = _decode_many(b"[" + b",".join(lines) + b"]")
        if len(specs) == len(lines) and not any(s.run_at is not None and s.delay is not None for s in specs):
            return specs
    except msgspec.DecodeError:
        pass
    for n, line in enumerate(data.splitlines(), 1):
        if line.strip():
            parse_one(line, f"line {n}: ")
    raise UsageError("the lines do not hold one JSON object each")


def parse_one(text: bytes | str, where: str = "") -> p.JobSpec:
    """One job; `where` ("line 3: ") starts every error message."""
    if isinstance(text, str):
        text = text.encode()
    try:
        spec: p.JobSpec = _decode_one(text)
    except msgspec.ValidationError as e:
        raise UsageError(f"{where}invalid job: {e}") from None
    except msgspec.DecodeError as e:
        raise UsageError(f"{where}invalid JSON: {e}") from None
    if spec.run_at is not None and spec.delay is not None:
        raise UsageError(f"{where}invalid job: give `run_at` or `delay`, not both")
    return spec


def cwd() -> str | None:
    try:
        return os.getcwd()
    except OSError:
        return None
