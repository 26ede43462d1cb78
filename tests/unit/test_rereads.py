"""A wait's safety re-read (queuectld/rereads.py): a change no one announced on the bus is seen at
the next round, on a real store."""

from __future__ import annotations

import os

import pytest

from queuectl_client.protocol import JobSpec
from queuectld import rereads
from queuectld.bus import DELETED, Watch
from queuectld.journal_store import JournalStore


async def test_a_change_the_bus_missed_is_seen_at_the_next_round_and_rounds_are_bounded(
        tmp_path: os.PathLike[str], monkeypatch: pytest.MonkeyPatch) -> None:
    store = JournalStore(os.path.join(tmp_path, "journal"), node="node-a")
    await store.open()
    try:
        await store.add([JobSpec(id=f"j{i}", command="true") for i in range(5)], 10.0)
        watch = Watch()
        for i in range(5):
            watch.add(f"j{i}", "pending")
        finals: list[bool] = []
        watch.on_final = lambda: finals.append(True)

        assert rereads.Reread(store, watch, 0.0).pause(3.0, 0.0) == 3.0  # one machine: no re-reads
        store.reread_every = 5.0  # as a shared store sets it
        await store.cancel(["j0", "j1", "j2", "j3"], None, 11.0)  # no one publishes it on the bus
        await store.delete("j4", 12.0)
        reread = rereads.Reread(store, watch, 0.0)
        reread.pause(None, 0.0)
        assert reread.pause(None, 1.0) == 4.0 and reread.pause(2.0, 1.0) == 2.0
        await reread(4.9)  # not yet
        assert watch.open == 5
        monkeypatch.setattr(rereads, "REREAD_MAX", 3)  # a smaller round, to see it bounded
        await reread(5.0)
        assert watch.take_changes() == {"j0": "dead", "j1": "dead", "j2": "dead"} and watch.open == 2
        await reread(9.0)  # the next round is 5 s after the last
        assert watch.open == 2
        await reread(10.0)
        assert watch.take_changes() == {"j3": "dead", "j4": DELETED} and watch.open == 0 and finals == [True]
    finally:
        await store.close()
