"""A wait's safety re-read, for a store that several nodes share.

A wait follows its jobs on the bus.  On one machine every change passes
through it; with a shared store, another node's changes arrive as hints
(NOTIFY, then `on_change`), which a lost connection can lose.  So such a
wait also re-reads its open jobs every `store.reread_every` seconds, at most
REREAD_MAX of them per round (the next round goes on where it stopped): a
missed change is seen late, never missed.
"""

from __future__ import annotations

from .bus import DELETED, FINAL, Watch
from .rules import QueueError
from .store import Store

REREAD_MAX = 1000  # jobs re-read per round


class Reread:
    def __init__(self, store: Store, watch: Watch, now: float) -> None:
        self.store = store
        self.watch = watch
        self.every = store.reread_every
        self.at = None if self.every is None else now + self.every
        self.cursor = 0

    def pause(self, pause: float | None, now: float) -> float | None:
        """`pause`, or less: until the next re-read."""
        if self.at is None:
            return pause
        until = max(0.0, self.at - now)
        return until if pause is None else min(pause, until)

    async def __call__(self, now: float) -> None:
        """Re-read a round of the open jobs if it is time to."""
        if self.at is None or self.every is None or now < self.at:
            return
        self.at = now + self.every
        open_ids = [job_id for job_id, state in self.watch.states.items() if state not in FINAL]
        if self.cursor >= len(open_ids):
            self.cursor = 0
        round_ids = open_ids[self.cursor : self.cursor + REREAD_MAX]
        self.cursor += len(round_ids)
        for job_id in round_ids:
            try:
                job = await self.store.get(job_id)
            except QueueError as e:
                if e.code == "not_found":
                    self.watch.seen(job_id, DELETED)
                continue
            self.watch.seen(job_id, job.state)
