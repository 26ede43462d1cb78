"""A schedule's fire is checked against the command policy when it fires, not only when it was added."""

from __future__ import annotations

import os
import time

from queuectl_client.paths import resolve
from queuectl_client.protocol import JobSpec, ScheduleAdd
from queuectld.daemon import Daemon
from queuectld.journal_store import JournalStore
from queuectld.policy import NOT_ALLOWED, Policy


async def test_a_fire_the_policy_refuses_makes_no_job_and_counts_as_a_failed_fire(home: str) -> None:
    allow = os.path.join(home, "allow")
    with open(allow, "w") as f:
        f.write("echo *\n")
    paths = resolve(home)
    d = Daemon(paths, JournalStore(paths.journal), workers=0, grace=1.0, policy=Policy.load(allow))
    await d.start()
    try:
        # Added before the policy forbade them (the store never asks it): both have missed a slot.
        added = time.time() - 2 * 3600
        for name, command in (("wipe", "rm -rf /tmp/nothing-here"), ("greet", "echo hi")):
            await d.store.define_schedule(ScheduleAdd(name, "@hourly", JobSpec(command=command)), added, "UTC")
        assert d.scheduler is not None
        await d.scheduler.catch_up()
        infos = {s.name: s for s in await d.store.schedules()}
        assert (infos["wipe"].fires, infos["wipe"].failed, infos["wipe"].last_error) == (0, 1, NOT_ALLOWED)
        assert (infos["greet"].fires, infos["greet"].failed) == (1, 0)
        assert [job.command async for page in d.store.pages(None, None, 10) for job in page] == ["echo hi"]
    finally:
        await d.shutdown()
