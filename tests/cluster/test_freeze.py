"""A frozen daemon (SIGSTOP: as a long stall or a paused VM would hold it): its event loop cannot fence,
yet its job dies before another node runs it again, because the spawner's lease runs out; no job runs
twice at once, and the node rejoins and runs jobs again once it resumes."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable
from typing import Any

from tests.cluster.conftest import Nodes, all_final, configure, enqueue_batch, job_pids, kill_jobs_of, node_rows
from tests.conftest import pid_alive, wait_for

HEARTBEAT = 0.5


def test_a_frozen_node_s_job_dies_before_it_is_rescued_and_the_node_rejoins(
        nodes: Nodes, report: Callable[[str, object], None]) -> None:
    a, b = nodes.add("n1"), nodes.add("n2")
    configure(a, heartbeat=str(HEARTBEAT), backoff_base="1")  # a rescued job waits 1 s (the least backoff)
    b.start_daemon("--workers", "0")
    a.ok("worker", "start", "--count", "1", "--detach")
    [job] = enqueue_batch(a, [{"id": "frozen", "command": nodes.command(80), "max_retries": 5}])
    # Frozen once the run has gone a while: the first round of its output's shipping (a transaction that
    # locks the job's row, 0.25 s after the start) is over, and the rescue does not wait for the node's
    # session to time out while it holds that lock.
    wait_for(lambda: any(r.node == "n1" and r.last >= r.start + 0.5 for r in nodes.runs().by_job.get(job, [])), 20,
             "n1 to run the job for a while")
    b.ok("worker", "start", "--count", "1", "--detach")
    pids = job_pids(nodes.dir, "n1")
    assert pids, "no process of n1's job found"
    assert a.daemon is not None
    daemon = a.daemon.pid
    frozen = False
    try:
        os.kill(daemon, signal.SIGSTOP)  # the daemon only: its spawners go on
        frozen = True
        stopped_at = time.time()
        wait_for(lambda: not any(pid_alive(p) for p in pids), 30, "the frozen node's job to die")
        gone_at = time.time()
        rescued_yet = [r for r in nodes.runs().by_job[job] if r.node != "n1"]
        assert not rescued_yet, f"the job ran again before the frozen node's run was gone: {rescued_yet}"
        wait_for(lambda: any(r.node == "n2" for r in nodes.runs().by_job[job]), 30, "n2 to run the job again")
        first, again = sorted(nodes.runs().by_job[job], key=lambda r: r.start)[:2]
        assert first.node == "n1" and not first.ended and again.node == "n2", nodes.runs().by_job[job]
        assert gone_at < again.start, f"n1's run was seen gone at {gone_at}, the rescue began {again.start}"
        assert first.last < again.start, f"n1's run lived until {first.last}, the rescue began {again.start}"
        os.kill(daemon, signal.SIGCONT)
        frozen = False
        resumed_at = time.time()
        # It fences itself, finds itself declared lost, and rejoins; its lease comes back with its heartbeats.
        wait_for(lambda: _alive(node_rows(b), "n1"), 30, "n1 to show up alive in `nodes` again")
        back_at = time.time()
        assert a.daemon.poll() is None, "n1's daemon died after it resumed"
        assert all_final(b, [job], timeout=30) == {job: "completed"}
        b.ok("worker", "stop")
        later = enqueue_batch(a, [{"id": f"after{i}", "command": nodes.command(), "max_retries": 0} for i in range(3)])
        final = all_final(a, later, timeout=30, what="n1 to run jobs again")
        assert set(final.values()) == {"completed"}, final
        assert {r.node for r in nodes.runs().all if r.job in later} == {"n1"}
        runs = nodes.runs()
        assert not runs.overlaps(), runs.overlaps()
        detail = a.show(job)
        assert detail["attempts"] >= 2, detail
    except AssertionError as e:
        raise AssertionError(f"{e}\n{nodes.logs()}") from None
    finally:
        if frozen:
            os.kill(daemon, signal.SIGCONT)
    assert "lost contact with the database" in a.log(), a.log()[-3000:]
    assert kill_jobs_of(nodes.dir) == 0
    report("frozen daemon: its job's last sign of life after the SIGSTOP (s), heartbeat 0.5 s",
           f"{first.last - stopped_at:.2f}")
    report("frozen daemon: from its job's death (seen) to the rescued run's start (s)", f"{again.start - gone_at:.2f}")
    report("frozen daemon: from SIGCONT to `nodes` showing it up again (s)", f"{back_at - resumed_at:.2f}")


def _alive(rows: list[dict[str, Any]], name: str) -> bool:
    """Whether `nodes --json` lists a node called `name` that is up (not fenced, lost or stopped)."""
    return any(r["name"] == name and r["state"] == "up" for r in rows)
