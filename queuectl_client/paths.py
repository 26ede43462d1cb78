"""Where a queuectl home keeps its state and its socket."""

from __future__ import annotations

import os

SOCKET_NAME = "queuectld.sock"


class Paths:
    """The state dir (journal, output files, lock, daemon log) and the socket."""

    __slots__ = ("state", "socket")

    def __init__(self, state: str, socket: str) -> None:
        self.state = state
        self.socket = socket

    @property
    def socket_dir(self) -> str:
        return os.path.dirname(self.socket)

    @property
    def lock(self) -> str:
        return os.path.join(self.state, "queuectld.lock")

    @property
    def journal(self) -> str:
        return os.path.join(self.state, "journal")

    @property
    def output(self) -> str:
        return os.path.join(self.state, "output")

    @property
    def daemon_log(self) -> str:
        return os.path.join(self.state, "queuectld.log")

    def output_file(self, job_id: str, stream: str) -> str:
        return os.path.join(self.output, f"{job_id}.{stream}")


def resolve(home: str | None = None) -> Paths:
    """`home` (the daemon's --home), else $QUEUECTL_HOME, else the XDG dirs."""
    home = home or os.environ.get("QUEUECTL_HOME")
    if home:
        home = os.path.abspath(home)
        return Paths(home, os.path.join(home, SOCKET_NAME))
    xdg_state = os.environ.get("XDG_STATE_HOME") or os.path.expanduser("~/.local/state")
    state = os.path.join(xdg_state, "queuectl")
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    sock_dir = os.path.join(runtime, "queuectl") if runtime else state
    return Paths(state, os.path.join(sock_dir, SOCKET_NAME))
