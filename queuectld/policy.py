"""The command policy: which commands this daemon runs (`queuectld --allow-commands FILE`).

The file holds one pattern a line; blank lines and lines starting with `#`
are skipped, and the spaces around a pattern are not part of it.  A pattern
is a shell-style glob (`fnmatch`: `*`, `?`, `[...]`, case-sensitive) matched
against the whole command, or `re:` and a Python regular expression that
must match the whole command.  A command is allowed when one pattern
matches it; a policy without patterns allows nothing.

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

from queuectl_client.protocol import Policy as PolicyInfo

NOT_ALLOWED = "command not allowed by this daemon's policy"
MAX_BYTES = 1 << 20  # a policy file larger than this is refused
SHOWN = 60  # characters of a refused command a message shows


class PolicyError(Exception):
    """The policy file cannot be used; the message names FILE or FILE:LINE and why."""


def parse(text: str, path: str) -> list[re.Pattern[str]]:
    """The patterns of a policy file's text, each compiled to match a whole command."""
    patterns = []
    for n, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("re:"):
            try:
                patterns.append(re.compile(line[3:]))
            except re.error as e:
                raise PolicyError(f"{path}:{n}: bad regular expression {line[3:]!r}: {e.msg}") from None
        else:
            patterns.append(re.compile(fnmatch.translate(line)))
    return patterns


def read(path: str) -> list[re.Pattern[str]]:
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
    def __init__(self, path: str, patterns: list[re.Pattern[str]]) -> None:
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

    def allows(self, command: str) -> bool:
        return any(pattern.fullmatch(command) for pattern in self.patterns)

    def first_refused(self, commands: Iterable[str]) -> str | None:
        """The first of `commands` the policy does not allow, or None: all are allowed."""
        seen: set[str] = set()
        for command in commands:
            if command not in seen:
                if not self.allows(command):
                    return command
                seen.add(command)
        return None

    def check(self, command: str) -> str | None:
        """None if `command` is allowed, else why not (a schedule's fire records it)."""
        return None if self.allows(command) else NOT_ALLOWED

    def info(self) -> PolicyInfo:
        return PolicyInfo(self.path, len(self.patterns), self.loaded_at)
