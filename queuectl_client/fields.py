"""Jobs checked, and their field errors in words, for the CLI and the Python API alike.

The protocol's bounds are written as msgspec patterns and limits, whose own
messages quote a regular expression; the ones a person meets are put in
words here, keeping the field's path (`$.command`, `$[3].id`).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

import msgspec

from . import protocol as p

_ID_WORDS = "id must be 1 to 64 letters, digits, '.', '_' or '-', starting with a letter or digit"
_PATH_WORDS = "cwd must be an absolute path (starting with /) of at most 4,095 characters, without a NUL byte"
_NEW_JOB = "(a new job's value) or left out"
# The job model's fields a new job holds as null (JobSpec declares them `None`).
_BOUND = re.compile(r"Expected `(?:int|float)` (<=|>=|<|>) (-?[0-9.]+)$")
_BOUND_WORDS = {"<=": "at most", ">=": "at least", "<": "less than", ">": "greater than"}
_RULE_ENTRY = re.compile(r"^(?:no_)?retry_on\[\d+\]$")
_DEPENDENCY = re.compile(r"^after(?:_any)?\[\d+\]$")
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,254}")
_NULL_ONLY = frozenset(name for name, kind in p.JobSpec.__annotations__.items() if kind in ("None", None))


def friendly(message: str, job: Any = None) -> str:
    """msgspec's message for a bad field, in words where it quotes a pattern or a limit; `job`, the
    job as plain data when there is one, names the variable of a bad `env` (msgspec says `env[...]`)."""
    if "$.env" in message or "].env" in message:
        words = env_problem(job)
        if words is not None:
            return words
    what, sep, where = message.rpartition(" - at `")
    if not sep:
        return message
    path = where.rstrip("`")
    field = path.rsplit(".", 1)[-1]
    words = None
    if field == "command":
        if "length <=" in what:
            words = f"command must be at most {p.MAX_COMMAND_BYTES:,} characters (one argument to a program)"
        elif "regex" in what or "length >=" in what:
            words = "command must not be blank or contain a NUL byte"
    elif field == "cwd" and ("regex" in what or "length" in what):
        words = _PATH_WORDS
    elif field in ("id", "group") and ("regex" in what or "length" in what):
        words = _ID_WORDS.replace("id", field, 1)
    elif field == "state" and "Invalid enum value" in what:
        words = f'state must be "pending" {_NEW_JOB}'
    elif field == "attempts" and ("Invalid enum value" in what or "Expected" in what):
        words = f"attempts must be 0 {_NEW_JOB}"
    elif field in _NULL_ONLY and "Expected `null`" in what:
        words = f"{field} must be null {_NEW_JOB}"
    elif _DEPENDENCY.match(field) and ("regex" in what or "length" in what):
        words = f"{field.partition('[')[0]} entries must be job ids: " + _ID_WORDS.partition(" must be ")[2]
    elif field == "unique_key" and ("regex" in what or "length" in what):
        words = "unique_key must be 1 to 256 characters without a NUL byte"
    elif _RULE_ENTRY.match(field):
        words = f'{field.partition("[")[0]} entries must be exit codes from 0 to 255, "timeout" or "signal"'
    elif m := _BOUND.match(what):
        x = float(m.group(2))
        words = f"{field} must be {_BOUND_WORDS[m.group(1)]} {int(x) if x.is_integer() else x:,}"
    return f"{words} (at {path})" if words else message


def env_problem(job: Any) -> str | None:
    """The first bad variable of a job's `env`, in words naming it (`env.NAME`), or None."""
    env = job.get("env") if isinstance(job, dict) else None
    if not isinstance(env, dict):
        return None
    for name, value in env.items():
        if not isinstance(name, str) or not _ENV_NAME.fullmatch(name):
            return (f"env: {name!r} is not a variable name (letters, digits and '_', not starting "
                    "with a digit, at most 255) (at $.env)")
        if not isinstance(value, str):
            kind = "null" if value is None else type(value).__name__
            return f"env.{name} must be a string, not {kind} (at $.env.{name})"
        if "\x00" in value or len(value) > p.MAX_COMMAND_BYTES:
            return f"env.{name} must be a string without a NUL byte, of at most {p.MAX_COMMAND_BYTES:,} " \
                   f"characters (at $.env.{name})"
    if len(env) > 4096:
        return "env may hold at most 4,096 variables (at $.env)"
    return None


def checked(jobs: Iterable[dict[str, Any] | p.JobSpec]) -> list[p.JobSpec]:
    """Jobs (dicts of their JSON fields, or JobSpecs) as checked JobSpecs; a bad field raises
    msgspec.ValidationError, naming the first one in words."""
    items = [j if isinstance(j, dict) else msgspec.structs.asdict(j) for j in jobs]
    try:
        return msgspec.convert(items, list[p.JobSpec])
    except msgspec.ValidationError as e:
        message = str(e)
        bad = re.search(r"\$\[(\d+)\]", message)
        job = items[int(bad.group(1))] if bad and int(bad.group(1)) < len(items) else None
        raise msgspec.ValidationError(friendly(message, job)) from None
