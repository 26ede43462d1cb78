"""What can go wrong talking to queuectld, as exceptions (each with the CLI's exit code)."""

from __future__ import annotations

import errno

from . import wire


class DaemonUnavailable(Exception):
    """queuectld is not answering and could not be started."""


class ConnectionLost(DaemonUnavailable):
    """The daemon closed the connection before it replied."""


class CannotStart(DaemonUnavailable):
    """No daemon answered, and the one started for this client failed (the message says why)."""


class DaemonStopping(CannotStart):
    """The daemon that holds the home is shutting down, so none can be started in its place yet."""


class RequestFailed(Exception):
    """The daemon refused the request; `code` is one of protocol.ERROR_CODES."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message

    @property
    def exit_code(self) -> int:
        return wire.ERROR_CODES.get(self.code, 1)


class TooLarge(RequestFailed):
    """The request would not fit in one frame (wire.MAX_FRAME); nothing of it was sent."""

    def __init__(self, message: str) -> None:
        super().__init__("invalid", message)


def not_answering(e: BaseException) -> bool:
    """No daemon, a stale socket, or a daemon that died during the greeting: one may be started."""
    if isinstance(e, ConnectionLost):
        return True
    return isinstance(e, OSError) and e.errno in (errno.ENOENT, errno.ECONNREFUSED, errno.ECONNRESET)


def reason(e: BaseException) -> str:
    """What went wrong, in words: an OSError's strerror, else the message."""
    return e.strerror if isinstance(e, OSError) and e.strerror else str(e)
