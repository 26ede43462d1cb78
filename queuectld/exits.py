"""How a run ended, in the queue's words: its exit code, its error message and its failure kind.

The failure kind is what a job's retry rule (`retry_on`, `no_retry_on`)
names: an exit code from 0 to 255, TIMEOUT (killed for its `timeout` or its
`idle_timeout`) or SIGNAL (its shell was killed by a signal that was not the
timeout's).  A run that failed for a reason outside the job (it could not
start, the daemon stopped it, its spawner died) has no kind: no rule judges
it.  Spawners tell the kind with the exit, so no one parses error messages.

Pure: the spawner processes and the queue's rules both import it.
"""

from __future__ import annotations

import signal

TIMEOUT = "timeout"
SIGNAL = "signal"

Failure = int | str | None  # an exit code, TIMEOUT, SIGNAL, or None: no rule applies


def describe_status(code: int) -> str | None:
    """The error message for an exit code from os.waitstatus_to_exitcode (negative: a signal)."""
    if code == 0:
        return None
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        return f"killed by {name}"
    if code == 127:
        return "exited with status 127 (command not found)"
    if code == 126:
        return "exited with status 126 (command not executable)"
    return f"exited with status {code}"


def cannot_start(e: BaseException) -> str:
    if isinstance(e, OSError):
        return f"cannot start: {e.strerror or e}" + (f" ({e.filename})" if e.filename else "")
    return f"cannot start: {e}"


def secs(x: float | None) -> str:
    if x is None:
        return "?"
    return str(int(x)) if float(x).is_integer() else f"{x:g}"


def run_end(code: int, timeout: float | None, idle_timeout: float | None) -> tuple[int | None, str | None, Failure]:
    """A reaped run's exit code, error message and failure kind.  `code` is from
    os.waitstatus_to_exitcode; `timeout` or `idle_timeout` is set when the run was killed for it.

    A run killed for a timeout keeps the exit code its shell chose, if it exited
    (a trap), but its kind is TIMEOUT whatever the code.
    """
    exit_code = code if code >= 0 else None
    if idle_timeout is not None:
        return exit_code, f"no output for {secs(idle_timeout)} s", TIMEOUT
    if timeout is not None:
        return exit_code, f"timed out after {secs(timeout)} s", TIMEOUT
    if code < 0:
        return None, describe_status(code), SIGNAL
    return code, describe_status(code), code if code else None
