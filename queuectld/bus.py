"""Job events for the clients that follow them (`worker start`, `Subscribe`).

The pool publishes; each follower's listener forwards to its connection,
dropping what a slow reader cannot take.
"""

from __future__ import annotations

from collections.abc import Callable

from queuectl_client import protocol as p

Listener = Callable[[p.Message], None]


class Bus:
    def __init__(self) -> None:
        self.listeners: set[Listener] = set()

    def publish(self, msg: p.Message) -> None:
        for listener in list(self.listeners):
            listener(msg)
