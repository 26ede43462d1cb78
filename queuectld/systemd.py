"""systemd integration: sd_notify (readiness, stopping, watchdog) and socket activation.

Both are plain protocols over what systemd puts in the environment, so they
are implemented here rather than through libsystemd:

- `$NOTIFY_SOCKET` names a datagram socket (a path, or `@name` in the
  abstract namespace); each message is `KEY=VALUE` lines.
- `$WATCHDOG_USEC` (with `$WATCHDOG_PID`, if set, naming this process) asks
  for `WATCHDOG=1` more often than that; the daemon pings at half of it.
- `$LISTEN_FDS` (with `$LISTEN_PID` naming this process) says how many
  sockets systemd passes from fd 3 on.

`from_environ()` removes all of these from `os.environ`, so that jobs,
which inherit the daemon's environment, never talk to systemd in its name.
"""

from __future__ import annotations

import logging
import os
import socket
import stat

log = logging.getLogger("queuectld")

LISTEN_FDS_START = 3
_VARIABLES = ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID", "LISTEN_FDS", "LISTEN_PID", "LISTEN_FDNAMES")


class Systemd:
    def __init__(self, notify_socket: str | None, watchdog_usec: int | None, listen_fds: int) -> None:
        self.notify_socket = notify_socket
        self.watchdog_interval = watchdog_usec / 2e6 if watchdog_usec else None  # seconds between pings
        self.listen_fds = listen_fds
        self._sock: socket.socket | None = None

    @classmethod
    def from_environ(cls) -> Systemd:
        env = {name: os.environ.pop(name, None) for name in _VARIABLES}
        pid = str(os.getpid())
        watchdog = None
        if env["WATCHDOG_USEC"] and env["WATCHDOG_PID"] in (None, pid):
            try:
                watchdog = int(env["WATCHDOG_USEC"]) or None
            except ValueError:
                log.warning("ignoring WATCHDOG_USEC=%r: not a number", env["WATCHDOG_USEC"])
        listen = 0
        if env["LISTEN_FDS"] and env["LISTEN_PID"] == pid:
            try:
                listen = int(env["LISTEN_FDS"])
            except ValueError:
                log.warning("ignoring LISTEN_FDS=%r: not a number", env["LISTEN_FDS"])
        return cls(env["NOTIFY_SOCKET"] or None, watchdog, listen)

    def notify(self, message: str) -> bool:
        """Send one notification; False (and a warning, once) if it could not be sent."""
        if not self.notify_socket:
            return False
        address = self.notify_socket
        if address.startswith("@"):
            address = "\0" + address[1:]
        try:
            if self._sock is None:
                self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
            self._sock.sendto(message.encode(), address)
            return True
        except OSError as e:
            log.warning("cannot notify systemd on %s: %s", self.notify_socket, e.strerror)
            self.notify_socket = None  # do not log this for every watchdog ping
            return False

    def inherited_socket(self) -> socket.socket | None:
        """The listening Unix socket systemd passed (socket activation), or None."""
        if self.listen_fds == 0:
            return None
        if self.listen_fds > 1:
            log.warning("systemd passed %d sockets; using the first", self.listen_fds)
        fd = LISTEN_FDS_START
        if not stat.S_ISSOCK(os.fstat(fd).st_mode):
            raise ValueError(f"fd {fd} from systemd is not a socket")
        sock = socket.socket(fileno=fd)
        if sock.family != socket.AF_UNIX or sock.type != socket.SOCK_STREAM:
            sock.detach()
            raise ValueError("the socket from systemd is not a Unix stream socket (ListenStream= a path)")
        os.set_inheritable(fd, False)  # jobs must not inherit it
        for extra in range(fd + 1, fd + self.listen_fds):
            os.set_inheritable(extra, False)
        sock.setblocking(False)
        return sock

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None
