"""Jobs as people write them: JSON text to checked `JobSpec`s, errors that name the field.

A bad field is named in words (`fields.friendly`), keeping its path.  A
`run_at` without a zone is the caller's local time, so it becomes UNIX
seconds here, in the caller's zone, before it is sent.
"""

from __future__ import annotations

import os
import sys

import msgspec

from . import environ
from . import protocol as p
from .batches import local_seconds
from .fields import friendly
from .parser import UsageError
from .schema import MAX_DEPENDENCIES
from .text import utf8

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


BOM = b"\xef\xbb\xbf"  # UTF-8's byte-order mark, which some editors write at the start of a file


def _without_bom(line: bytes) -> bytes:
    return line[len(BOM) :] if line.startswith(BOM) else line


def parse_lines(data: bytes) -> list[p.JobSpec]:
    """One JSON job per line, blank lines skipped, a byte-order mark starting a line ignored; errors name the line."""
    if BOM in data:
        data = b"\n".join(_without_bom(ln) for ln in data.splitlines())
    lines = [ln for ln in data.splitlines() if ln.strip()]
    if not lines:
        raise UsageError("no jobs given: expected one JSON object per line")
    try:
        # One decode for the whole batch; the per-line pass below only runs to find an error.
        specs = _decode_many(b"[" + b",".join(lines) + b"]")
        if len(specs) == len(lines):
            if any(s.run_at is not None for s in specs):
                specs = [s if s.run_at is None else _settle_line(s, data, n) for n, s in enumerate(specs)]
            return specs
    except (msgspec.DecodeError, RecursionError):
        pass
    for n, line in enumerate(data.splitlines(), 1):
        if line.strip():
            parse_one(line, f"line {n}: ")
    raise UsageError("the lines do not hold one JSON object each")


def _settle_line(spec: p.JobSpec, data: bytes, index: int) -> p.JobSpec:
    try:
        return _settle(spec, "")
    except UsageError:
        return _settle(spec, f"line {_line_of(data, index)}: ")  # raises again, naming the line


def _line_of(data: bytes, index: int) -> int:
    """The line number of the index-th non-blank line (counted only for an error)."""
    seen = -1
    for n, line in enumerate(data.splitlines(), 1):
        if line.strip():
            seen += 1
            if seen == index:
                return n
    return index + 1


def parse_one(text: bytes | str, where: str = "") -> p.JobSpec:
    """One job; `where` ("line 3: ") starts every error message."""
    if isinstance(text, str):
        try:
            text = text.encode()
        except UnicodeEncodeError:
            raise UsageError(f"{where}invalid JSON: the job is not valid UTF-8") from None
    text = _without_bom(text)
    try:
        spec: p.JobSpec = _decode_one(text)
    except msgspec.ValidationError as e:
        raise UsageError(f"{where}invalid job: {friendly(str(e), _plain(text))}") from None
    except msgspec.DecodeError as e:
        raise UsageError(f"{where}invalid JSON: {e}") from None
    except RecursionError:
        raise UsageError(f"{where}invalid JSON: nested too deeply") from None
    return _settle(spec, where) if spec.run_at is not None else spec


def _plain(text: bytes) -> object:
    """The job as plain data, to name a bad field more closely than its type's error can."""
    try:
        return msgspec.json.decode(text)
    except (msgspec.DecodeError, RecursionError):
        return None


def _settle(spec: p.JobSpec, where: str) -> p.JobSpec:
    """Check run_at against delay, and turn a time into UNIX seconds in this process's zone."""
    if spec.delay is not None:
        raise UsageError(f"{where}invalid job: give `run_at` or `delay`, not both")
    try:
        return local_seconds(spec)
    except msgspec.ValidationError as e:
        raise UsageError(f"{where}invalid job: {e}") from None


def after(specs: list[p.JobSpec], ids: list[str]) -> list[p.JobSpec]:
    """`--after ID`: each job also waits for these (after its own `after`, each once)."""
    out = []
    for s in specs:
        merged = list(dict.fromkeys([*(s.after or ()), *ids]))
        if len(merged) > MAX_DEPENDENCIES:
            raise UsageError(f"invalid job: `after` may name at most {MAX_DEPENDENCIES} jobs")
        out.append(msgspec.structs.replace(s, after=merged))
    return out


def cwd_for(specs: list[p.JobSpec]) -> str | None:
    """The current directory, for the jobs that name none; refused when it was deleted or its name is not UTF-8."""
    try:
        cwd = os.getcwd()
    except OSError:
        if all(s.cwd is not None for s in specs):
            return None
        raise UsageError("the current directory no longer exists: cd to one that does, "
                         "or give the job a `cwd`") from None
    if not utf8(cwd):  # bytes that are not UTF-8, which no request can carry
        if all(s.cwd is not None for s in specs):
            return None
        raise UsageError("the current directory's name is not UTF-8; give the job a cwd") from None
    return cwd


def with_env(specs: list[p.JobSpec], given: list[str], clean: bool) -> list[p.JobSpec]:
    """The jobs with `--env NAME=VALUE` and `--env NAME` (its value from here) over their own `env`,
    and with `--clean-env`, not inheriting; a name that is not set here, or not a name, is refused."""
    if not given and not clean:
        return specs
    extra: dict[str, str] = {}
    for item in given:
        name, eq, value = item.partition("=")
        if not environ.is_name(name):
            raise UsageError(f"--env {item!r}: not a variable name (letters, digits and '_', "
                             "not starting with a digit)")
        if name.startswith("QUEUECTL_"):
            raise UsageError(f"--env {name}: QUEUECTL_* variables are set by queuectl for each run")
        if not eq:
            if name not in os.environ:
                raise UsageError(f"--env {name}: {name} is not set here; give --env {name}=VALUE")
            value = os.environ[name]
            if not environ.passed_on("X", value):
                raise UsageError(f"--env {name}: its value here is not UTF-8 or is too long")
        elif len(value) > environ.MAX_VALUE:
            raise UsageError(f"--env {name}: the value is longer than {environ.MAX_VALUE:,} characters")
        extra[name] = value
    replace = msgspec.structs.replace
    if not extra:
        return [replace(s, inherit_env=False) for s in specs]
    out = []
    for s in specs:
        env = extra if not s.env else {**s.env, **extra}
        out.append(replace(s, env=env, inherit_env=False) if clean else replace(s, env=env))
    return out
