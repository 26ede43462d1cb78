"""What the stats and metrics ask of a store: the oldest due job per group, the bytes on disk, the stats
blob kept beside the state."""

from __future__ import annotations

from queuectld.store import Store
from tests.contract.conftest import Opener
from tests.contract.test_store import end, run, spec


async def test_oldest_due_names_each_group_with_a_due_job_and_its_earliest_due_time(store: Store) -> None:
    assert await store.oldest_due(100.0) == {}
    await store.define_group("later", 0, create=True)
    await store.define_group("paused", 0, create=True)
    await store.add([spec("a", run_at=20.0), spec("b", priority=9), spec("c", run_at=200.0)], 50.0)
    await store.add([spec("l", group="later", run_at=500.0)], 50.0)
    await store.add([spec("p", group="paused")], 60.0)
    await store.pause(["paused"], True)
    # `a` and `b` are due since their enqueue (a run_at in the past is now), whatever the priorities;
    # `later` has nothing due; a paused group's due jobs wait too.
    assert await store.oldest_due(100.0) == {"default": 50.0, "paused": 60.0}
    job = await run(store, 100.0)
    assert job is not None and job.id == "b"  # the best first: priority 9
    job = await run(store, 100.0)
    assert job is not None and job.id == "a"
    assert await store.oldest_due(100.0) == {"paused": 60.0}  # `c` is not due yet
    # A failed run's retry is due at its retry time: waiting from then on.
    await end(store, job, 101.0, code=1)
    retry_at = (await store.get("a")).next_retry_at
    assert retry_at is not None and await store.oldest_due(retry_at - 0.5) == {"paused": 60.0}
    assert await store.oldest_due(retry_at + 1) == {"default": retry_at, "paused": 60.0}
    assert await store.oldest_due(600.0) == {"default": retry_at, "later": 500.0, "paused": 60.0}


async def test_disk_bytes_grow_with_the_state(store: Store) -> None:
    before = store.disk_bytes()
    await store.add([spec(f"j{i}") for i in range(100)], 0.0)
    assert store.disk_bytes() > before + 100 * len("true")


async def test_the_stats_blob_is_kept_across_a_restart(open_store: Opener) -> None:
    store = await open_store()
    assert store.load_stats() is None
    store.save_stats(b"one")
    store.save_stats(b"two")
    assert store.load_stats() == b"two"
    await store.close()
    again = await open_store()
    assert again.load_stats() == b"two"
