"""Job events for the clients that follow them (`worker start`, `Subscribe`, `Wait`).

The pool publishes every state change of a job; the delete handler publishes
a `Deleted` notice.  Each follower's listener runs inside `publish`, so it
must be cheap: a subscriber's forwards to its connection, dropping what a
slow reader cannot take; a wait's `Watch` updates its set's states.
"""

from __future__ import annotations

from collections.abc import Callable

from queuectl_client import protocol as p

from .rules import COMPLETED, DEAD

DELETED = "deleted"  # a wait's word for a job deleted while it was followed
FINAL = frozenset((COMPLETED, DEAD, DELETED))


class Deleted:
    """A job was deleted.  Not a wire message: subscribers are not told, waits are."""

    __slots__ = ("id",)

    def __init__(self, job_id: str) -> None:
        self.id = job_id


Notice = p.Message | Deleted
Listener = Callable[[Notice], None]


class Bus:
    def __init__(self) -> None:
        self.listeners: set[Listener] = set()

    def publish(self, msg: Notice) -> None:
        for listener in list(self.listeners):
            listener(msg)


class Watch:
    """The states of a set of jobs, kept current from the bus.

    A listener: per notice, one dict lookup, whatever the size of the set or
    of the queue.  A job's state stops changing here once it is final (a dead
    job retried later stays dead to this watch), as a wait sees it.  Memory:
    the set's states, and the changes not yet taken, each at most one entry
    per job.
    """

    def __init__(self) -> None:
        self.states: dict[str, str] = {}  # in the order the jobs were added
        self.changed: dict[str, str] = {}  # since the last `take_changes`
        self.open = 0  # jobs not final
        self.on_final: Callable[[], None] | None = None  # called when the last open job becomes final

    def add(self, job_id: str, state: str) -> None:
        """Put a job in the set with its state as the store gave it; a job already in keeps its own."""
        if job_id not in self.states:
            self.states[job_id] = state
            if state not in FINAL:
                self.open += 1

    def __call__(self, msg: Notice) -> None:
        if isinstance(msg, p.Event):
            self._set(msg.id, msg.state)
        elif isinstance(msg, Deleted):
            self._set(msg.id, DELETED)

    def seen(self, job_id: str, state: str) -> None:
        """A job of the set, as the store shows it now (a re-read: see rereads.py)."""
        self._set(job_id, state)

    def _set(self, job_id: str, state: str) -> None:
        old = self.states.get(job_id)
        if old is None or old == state or old in FINAL:
            return
        self.states[job_id] = state
        self.changed[job_id] = state
        if state in FINAL:
            self.open -= 1
            if not self.open and self.on_final is not None:
                self.on_final()

    def take_changes(self) -> dict[str, str]:
        """The jobs whose state changed since the last call, with their state now."""
        changed, self.changed = self.changed, {}
        return changed
