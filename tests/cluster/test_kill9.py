"""kill -9 of a node under load: nothing acknowledged is lost, no job runs twice at once, and the
lost node's jobs run again within 4 heartbeats (plus the retry's backoff and dispatch)."""

from __future__ import annotations

import datetime
import time
from collections.abc import Callable

import pytest

from tests.cluster.conftest import (
    Enqueuer,
    Nodes,
    all_final,
    completed_once,
    configure,
    enqueue_batch,
    job_pids,
    kill_jobs_of,
)
from tests.conftest import Env, pid_alive, wait_for

HEARTBEAT = 0.5
JOBS = 16  # 12 run at once; the others and the enqueues keep the survivors busy, yet with room at the rescue
TICKS = 10  # each job runs about 1 s


@pytest.mark.parametrize("victim", ["n3", "n1"], ids=["a-follower", "the-first-node"])
def test_kill_9_of_a_node_under_load_loses_nothing_and_its_jobs_run_again_soon(
        nodes: Nodes, report: Callable[[str, object], None], victim: str) -> None:
    """n1 starts first (so it is likely the elected node: killing it makes another node take the
    election over before it can declare n1 lost)."""
    n1, n2, n3 = (nodes.add(f"n{i}") for i in (1, 2, 3))
    dead = {"n1": n1, "n3": n3}[victim]
    alive = n2
    configure(n1, heartbeat=str(HEARTBEAT), backoff_base="1")  # a rescued job waits 1 s (the least backoff)
    n2.start_daemon("--workers", "0")
    n3.start_daemon("--workers", "0")
    ids = enqueue_batch(n1, [{"id": f"k{i}", "command": nodes.command(TICKS), "max_retries": 5} for i in range(JOBS)])
    for node in (n1, n2, n3):
        node.ok("worker", "start", "--count", "4", "--detach")
    load = Enqueuer(alive, nodes.command(2), "more")  # enqueues go on across the kill
    load.start()
    # Kill the victim once it runs 4 jobs that have been going for a while.
    wait_for(lambda: len([r for r in nodes.runs().all if r.node == victim and not r.ended and r.last > r.start]) >= 4,
             30, f"{victim} to run 4 jobs")
    pids = job_pids(nodes.dir, victim)
    assert pids, f"no process of {victim}'s jobs found"
    killed_at = dead.kill9()
    before = len(load.acked)
    try:
        # Its jobs die with it at once: no job of the dead node is left running.
        wait_for(lambda: not any(pid_alive(p) for p in pids), 2, f"{victim}'s jobs to die with it")
        wait_for(lambda: len(load.acked) >= before + 5, 20, "5 enqueues after the kill")
        load.stop.set()
        load.join(30)
        ids += load.acked
        final = all_final(alive, ids, timeout=90, what="every acknowledged job to complete")
    except AssertionError as e:
        raise AssertionError(f"{e}\n{nodes.logs()}") from None
    runs = completed_once(final, nodes)
    victim_ids = {r.job for r in runs.all if r.node == victim and not r.ended}  # the runs the kill cut short
    assert victim_ids and all(r.start < killed_at for r in runs.all if r.job in victim_ids and r.node == victim)
    assert max(r.last for r in runs.all if r.node == victim) < killed_at + 0.5, f"a job of {victim} outlived its daemon"
    delays = []
    for job in victim_ids:
        again = [r for r in runs.by_job[job] if r.start > killed_at]
        assert again and again[0].ended, (job, runs.by_job[job])
        delays.append(again[0].start - killed_at)
        detail = alive.show(job)
        assert detail["attempts"] >= 2, f"{job}: attempts {detail['attempts']}, killed at {killed_at}: " \
                                        f"{runs.by_job[job]}"
    worst = max(delays)
    # 4 heartbeats to be declared lost, one more for the elected node's round, the 1 s backoff, and
    # dispatch: generous, as timings are.
    bound = 5 * HEARTBEAT + 1 + 3
    declared = _declared_lost(alive, victim) or _declared_lost({"n1": n3, "n3": n1}[victim], victim)
    assert worst < bound, \
        f"the lost node's jobs ran again {worst:.2f} s after its death (bound {bound} s)\n{nodes.logs()}"
    assert all(alive.show(i)["state"] == "completed" for i in victim_ids)
    assert kill_jobs_of(nodes.dir) == 0
    report(f"kill -9 of {victim}: jobs acknowledged / lost / its jobs run again / overlapping runs",
           f"{len(ids)} / 0 / {len(victim_ids)} / 0")
    report(f"kill -9 of {victim}: from the kill to its declaration as lost (s, by the log)",
           "not logged" if declared is None else f"{declared - killed_at:.2f}")
    report(f"kill -9 of {victim}: from the kill to the rescued run's start, worst / best (s)",
           f"{worst:.2f} / {min(delays):.2f} (heartbeat {HEARTBEAT} s, backoff 1 s)")



def _declared_lost(node: Env, name: str) -> float | None:
    """When `node`'s log says node `name` was declared lost (epoch seconds), if it does."""
    for line in node.log().splitlines():
        if f"node {name} (id " in line and "is lost" in line:
            stamp = datetime.datetime.strptime(line[:23], "%Y-%m-%d %H:%M:%S,%f")
            return time.mktime(stamp.timetuple()) + stamp.microsecond / 1e6
    return None
