"""The command policy: which commands this daemon runs (`queuectld --allow-commands FILE`).

The file holds one pattern a line; blank lines and lines starting with `#`
are skipped, and the spaces around a pattern are not part of it.  A pattern
is a shell-style glob (`fnmatch`: `*`, `?`, `[...]`, case-sensitive) matched
against the whole command, or `re:` and a Python regular expression that
must match the whole command.  A command is allowed when one pattern
matches it; a policy without patterns allows nothing.

Globs become `re` expressions (fnmatch's translation needs no backtracking
to speak of).  `re:` expressions are compiled with the `regex` module, whose
matches take a timeout: an expression that backtracks without end on some
command (`(a+)+$`) would otherwise hold the daemon's loop for as long as it
runs.  A check has CHECK_BUDGET seconds in all; a command whose check runs
out of it is refused, as one that matches nothing is (the policy fails
closed), and the message names the slow line.

A policy is a handler's decision: the handlers and the scheduler ask it, the
stores never see it.  It is read at start (a bad file stops the daemon from
starting: running without the policy asked for would allow everything) and
again on SIGHUP (a bad file then keeps the policy in force).
"""

from __future__ import annotations

import fnmatch
import re
import time
from collections.abc import Iterable
from typing import Any

from queuectl_client.protocol import Policy as PolicyInfo

NOT_ALLOWED = "command not allowed by this daemon's policy"
MAX_BYTES = 1 << 20  # a policy file larger than this is refused
SHOWN = 60  # characters of a refused command a message shows
CHECK_BUDGET = 0.1  # seconds a check of one request's commands may take, all patterns together


class Pattern:
    """One line of the policy: its number, and the expression that must match a whole command."""

    __slots__ = ("line", "slow", "compiled")

    def __init__(self, line: int, compiled: Any, slow: bool) -> None:
        self.line = line
        self.compiled = compiled
        self.slow = slow  # a `re:` line: its matches run under a timeout


class PolicyError(Exception):
    """The policy file cannot be used; the message names FILE or FILE:LINE and why."""


def parse(text: str, path: str) -> list[Pattern]:
    """The patterns of a policy file's text, each compiled to match a whole command."""
    patterns = []
    if "re:" in text:
        import regex  # type: ignore[import-untyped,unused-ignore]  # only for `re:` lines (16 ms to import)
    for n, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("re:"):
            try:
                patterns.append(Pattern(n, regex.compile(line[3:]), True))
            except (regex.error, OverflowError, ValueError, RecursionError, MemoryError) as e:
                why = " ".join(str(getattr(e, "msg", None) or e).split()) or type(e).__name__
                raise PolicyError(f"{path}:{n}: bad regular expression {shown(line[3:])!r}: {why}") from None
        else:
            patterns.append(Pattern(n, re.compile(fnmatch.translate(line)), False))
    return patterns


def read(path: str) -> list[Pattern]:
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_BYTES + 1)
    except OSError as e:
        raise PolicyError(f"{path}: cannot read the command policy: {e.strerror or e}") from None
    if len(data) > MAX_BYTES:
        raise PolicyError(f"{path}: the command policy is larger than {MAX_BYTES} bytes")
    try:
        text = data.decode()
    except UnicodeDecodeError as e:
        line = data[: e.start].count(b"\n") + 1
        raise PolicyError(f"{path}:{line}: not UTF-8 text") from None
    return parse(text, path)


def shown(command: str, limit: int = SHOWN) -> str:
    """A command on one line, its control characters escaped, at most `limit` characters."""
    text = " ".join(command.split())
    text = "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)
    return text if len(text) <= limit else text[: limit - 1] + "…"


class Policy:
    def __init__(self, path: str, patterns: list[Pattern]) -> None:
        self.path = path
        self.patterns = patterns
        self.loaded_at = time.time()

    @classmethod
    def load(cls, path: str) -> Policy:
        return cls(path, read(path))

    def reload(self) -> None:
        """Read the file again; on an error (raised), the patterns in force stay."""
        self.patterns = read(self.path)
        self.loaded_at = time.time()

    def _verdict(self, command: str, deadline: float) -> str | None:
        """None if a pattern matches `command`; else why it is refused."""
        for pattern in self.patterns:
            if not pattern.slow:
                if pattern.compiled.fullmatch(command):
                    return None
                continue
            left = deadline - time.monotonic()
            try:
                if left <= 0:
                    raise TimeoutError
                if pattern.compiled.fullmatch(command, timeout=left):
                    return None
            except TimeoutError:
                return f"{NOT_ALLOWED} (matching it against {self.path}:{pattern.line} took over {CHECK_BUDGET:g} s)"
        return NOT_ALLOWED

    def allows(self, command: str) -> bool:
        return self.check(command) is None

    def first_refused(self, commands: Iterable[str]) -> tuple[str, str] | None:
        """The first of `commands` the policy does not allow and why, or None: all are allowed."""
        seen: set[str] = set()
        deadline = time.monotonic() + CHECK_BUDGET
        for command in commands:
            if command not in seen:
                why = self._verdict(command, deadline)
                if why is not None:
                    return command, why
                seen.add(command)
        return None

    def check(self, command: str) -> str | None:
        """None if `command` is allowed, else why not (a schedule's fire records it)."""
        return self._verdict(command, time.monotonic() + CHECK_BUDGET)

    def info(self) -> PolicyInfo:
        return PolicyInfo(self.path, len(self.patterns), self.loaded_at)
