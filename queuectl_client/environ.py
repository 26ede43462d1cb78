"""A job's environment: what a caller's environment passes on to the jobs it enqueues.

A job runs with the environment of the `queuectl enqueue` that made it, as
under at(1): every variable but the terminal's own (`TERM`, `DISPLAY`,
`WINDOWID`, `SHLVL`, `_`), systemd's for one process (`NOTIFY_SOCKET`,
`WATCHDOG_*`, `LISTEN_*`) and queuectl's (`QUEUECTL_*`, which the daemon
sets for each job).  A clean environment, and a job from the Python API,
keep only `MINIMAL`.  A variable that no request can carry (a name a shell
cannot export, a value that is not UTF-8 or too long) is left out.

The standard library only: the CLI's quick path sends an environment too.
Both sides use these rules: the client to send, the daemon to compose.
"""

from __future__ import annotations

import os

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping

MINIMAL = ("PATH", "HOME", "USER", "LANG", "SHELL")  # what a clean environment keeps
LEFT_OUT = frozenset((
    "TERM", "DISPLAY", "WINDOWID", "SHLVL", "_",  # the terminal's own
    # What systemd gives one process (a service that enqueues): a job must never speak for it.
    "NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID", "LISTEN_FDS", "LISTEN_PID", "LISTEN_FDNAMES",
))
OWN_PREFIX = "QUEUECTL_"  # queuectl's own: the daemon sets them for each job
MAX_VALUE = 128 * 1024 - 1  # one execve string, as schema.EnvValue
MAX_VARIABLES = 4096  # as schema.Environment


def is_name(name: str) -> bool:
    """A name a shell can export, as schema.EnvName: ASCII letters, digits and '_', not starting with a digit."""
    return name.isascii() and name.isidentifier() and len(name) <= 255


def passed_on(name: str, value: str) -> bool:
    """Whether a caller's variable reaches its jobs."""
    if name in LEFT_OUT or name.startswith(OWN_PREFIX) or not is_name(name) or len(value) > MAX_VALUE:
        return False
    try:
        value.encode()
    except UnicodeEncodeError:  # bytes that are not UTF-8 (os.environ holds them as surrogates)
        return False
    return True


class TooManyVariables(ValueError):
    """A caller's environment holds more variables than a job can carry."""


def inherited(environ: Mapping[str, str]) -> dict[str, str]:
    """The part of a caller's environment its jobs inherit; TooManyVariables past MAX_VARIABLES (never
    a silent cut: which ones went would be luck, PATH among them)."""
    out = {k: v for k, v in environ.items() if passed_on(k, v)}
    if len(out) > MAX_VARIABLES:
        raise TooManyVariables(f"your environment holds {len(out):,} variables for its jobs to inherit, and a job "
                               f"carries at most {MAX_VARIABLES:,}: enqueue with --clean-env (from Python: "
                               "without environ=), naming what the jobs need with --env or env")
    return out


def minimal(environ: Mapping[str, str]) -> dict[str, str]:
    """The clean environment: only PATH, HOME, USER, LANG and SHELL, those the caller has."""
    return {k: environ[k] for k in MINIMAL if k in environ and passed_on(k, environ[k])}


def sent(environ: Mapping[str, str] | None) -> dict[str, str]:
    """The environment an enqueue from the Python API sends: the one given (`os.environ`, say),
    or by default the minimal one of this process."""
    return minimal(os.environ) if environ is None else inherited(environ)
