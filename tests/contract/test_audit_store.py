"""The storage port's audit trail: a change made for a person is kept with who made it, as durably
as the change; a refusal is kept too; the daemon's own changes are not; keep-dead trims it."""

from __future__ import annotations

import time

from queuectl_client.protocol import JobSpec, ScheduleAdd
from queuectld.audit import acting
from queuectld.store import Store
from tests.contract.conftest import Opener

H = 3600.0


def spec(job_id: str | None = None, command: str = "true") -> JobSpec:
    return JobSpec(id=job_id, command=command)


async def test_a_persons_changes_are_kept_with_who_and_survive_a_crash(open_store: Opener) -> None:
    store = await open_store()
    with acting(1000, "cli", "Enqueue"):
        await store.add([spec("a"), spec("b")], 10.0)
    with acting(1001, "shell", "ConfigSet"):
        await store.configure("max-retries", "4")
    with acting(1000, "python", "Cancel"):
        await store.cancel(["a"], None, 11.0)
    with acting(1000, "dashboard", "Enqueue"):
        await store.refuse("enqueue", "rm -rf /")
    await store.add([spec("c")], 12.0)  # no one asked: a schedule's fire, say
    await store.prune({"dead": 1e12}, 10)  # retention's pass
    expected = [(1000, "cli", "enqueue", "2 jobs: a, b"), (1001, "shell", "config set", "max-retries 4"),
                (1000, "python", "cancel", "a"), (1000, "dashboard", "refused", "enqueue: rm -rf /")]
    assert [(e.uid, e.via, e.action, e.detail) for e in await store.audit(0.0, None)] == expected
    again = await open_store()  # the first never closed: a restart after kill -9
    assert [(e.uid, e.via, e.action, e.detail) for e in await again.audit(0.0, None)] == expected
    assert [e.detail for e in await again.audit(0.0, 1)] == ["enqueue: rm -rf /"]


async def test_the_trail_follows_keep_dead(store: Store) -> None:
    with acting(1000, "cli", "ConfigSet"):
        await store.configure("keep-dead", "1h")
    now = time.time()
    assert len(await store.audit(0.0, None)) == 1
    assert await store.trim_audit(now + 30) == 0
    assert await store.trim_audit(now + H + 30) == 1
    assert await store.audit(0.0, None) == []


async def test_a_fire_the_callers_check_refuses_is_a_failed_fire(store: Store) -> None:
    await store.define_schedule(ScheduleAdd("hourly", "@hourly", spec(command="rm -rf /")), 10 * H + 5, "UTC")
    assert await store.fire(11 * H + 1, lambda command: "not allowed" if "rm" in command else None) == []
    (info,) = await store.schedules()
    assert (info.fires, info.failed, info.last_error) == (0, 1, "not allowed")
    (job,) = await store.fire(12 * H + 1, lambda command: None)
    assert job.command == "rm -rf /"
