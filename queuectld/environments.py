"""The queue's table of environments: each distinct one kept once, jobs naming it by key.

A batch of a million jobs enqueued from one shell has one environment: the
journal holds it once (an `EnvDefined` record, written with the first
`Added` that uses it) and so does memory; each job holds the key, one
interned string shared by all of them.  A snapshot writes the environments
some job still uses, and the table drops the others then: an environment
whose last job was deleted lives until the next compaction.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable
from typing import TYPE_CHECKING

from . import events as ev
from .model import Job

if TYPE_CHECKING:
    from .schedules import Schedule


class Environments:
    __slots__ = ("vars",)

    def __init__(self) -> None:
        self.vars: dict[str, dict[str, str]] = {}  # key -> the variables

    def __contains__(self, key: str) -> bool:
        return key in self.vars

    def get(self, key: str | None) -> dict[str, str] | None:
        return None if key is None else self.vars.get(key)

    def define(self, e: ev.EnvDefined) -> None:
        self.vars[sys.intern(e.key)] = e.vars

    def new(self, envs: dict[str, dict[str, str]]) -> list[ev.EnvDefined]:
        """The records for the environments of `envs` that the table lacks."""
        return [ev.EnvDefined(key, env) for key, env in envs.items() if key not in self.vars]

    def snapshot(self, users: Iterable[Job | Schedule]) -> list[ev.EnvDefined]:
        """The records of the environments jobs and schedules use; the table keeps only those from now."""
        used = {user.env for user in users}
        used.discard(None)
        self.vars = {key: env for key, env in self.vars.items() if key in used}
        return [ev.EnvDefined(key, env) for key, env in self.vars.items()]
