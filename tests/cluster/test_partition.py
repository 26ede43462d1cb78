"""A partition: a node that loses the database kills its jobs before any other node rescues them,
no job runs twice at once, and the node rejoins when the link returns.

The node runs in a network namespace of its own and reaches a throwaway PostgreSQL bound to the
host side of a veth pair; the test cuts the link (`ip link set ... down`) and mends it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from tests import pgserver
from tests.cluster.conftest import Netns, Nodes, all_final, configure, enqueue_batch, node_rows
from tests.conftest import wait_for

HEARTBEAT = 0.5
LOST_AFTER = 4  # intervals without a heartbeat before the elected node may declare a node lost
TICK = 0.1  # a job's run logs a tick this often


def test_a_cut_off_node_kills_its_jobs_before_they_are_rescued_and_rejoins(
        netns_pg: tuple[Netns, pgserver.Cluster], nodes_on: Callable[[str], Nodes],
        report: Callable[[str, object], None]) -> None:
    ns, pg = netns_pg
    server = pgserver.Server(pg.url, "a throwaway cluster")
    nodes = nodes_on(server.create_database())
    n1, n2 = nodes.add("n1"), nodes.add("n2")
    n3 = nodes.add("n3", netns=ns.name)
    # n3 starts first, so it is likely the elected node: cut off, another node must take the election over.
    configure(n3, heartbeat=str(HEARTBEAT), backoff_base="1")
    n1.start_daemon("--workers", "0")
    n2.start_daemon("--workers", "0")
    n3.ok("worker", "start", "--count", "4", "--detach")
    ids = enqueue_batch(n1, [{"id": f"p{i}", "command": nodes.command(80), "max_retries": 5} for i in range(4)])
    victims = wait_for(lambda: len(v := {r.job for r in nodes.runs().all if r.node == "n3" and r.last > r.start}) == 4
                       and v, 20, "n3 to run the 4 jobs")
    n1.ok("worker", "start", "--count", "2", "--detach")
    n2.ok("worker", "start", "--count", "2", "--detach")
    cut_at = ns.cut()
    try:
        # Each job runs again on n1 or n2, and only after its run on n3 ended.
        wait_for(lambda: all(any(r.node != "n3" for r in nodes.runs().by_job.get(j, [])) for j in victims), 30,
                 "the cut-off node's jobs to be rescued")
        runs = nodes.runs()
        assert n3.daemon is not None and n3.daemon.poll() is None, "n3's daemon died when the link went down"
        gaps, fenced = [], []
        for job in victims:
            first, again = sorted(runs.by_job[job], key=lambda r: r.start)[:2]
            assert first.node == "n3" and not first.ended and again.node != "n3", runs.by_job[job]
            gaps.append(again.start - first.last)
            fenced.append(first.last - cut_at)
        # The safety argument: a node fences itself after 2 silent intervals, the others may declare it lost
        # after 4; so its runs must be gone (a tick's 0.1 s after their last sign of life) before 4 intervals.
        late = [f for f in fenced if f + TICK >= LOST_AFTER * HEARTBEAT]
        assert not late, (f"the cut-off node's runs lived {max(fenced):.2f} s after the cut: past the "
                          f"{LOST_AFTER * HEARTBEAT:.1f} s after which another node may rescue them")
        for job in victims:
            first, again = sorted(runs.by_job[job], key=lambda r: r.start)[:2]
            assert first.last < again.start, f"{job}: n3's run lived until {first.last}, the rescue began {again.start}"
        assert not runs.overlaps(), runs.overlaps()
        # The link returns: n3 finds itself declared lost, rejoins under a new node id, and runs jobs again.
        mended_at = ns.mend()
        all_final(n1, ids, timeout=30)
        wait_for(lambda: _alive(node_rows(n1), "n3"), 30, "n3 to show up alive in `nodes` again")
        n1.ok("worker", "stop")
        n2.ok("worker", "stop")
        later = enqueue_batch(n1, [{"id": f"q{i}", "command": nodes.command(), "max_retries": 0} for i in range(3)])
        all_final(n1, later, timeout=30, what="n3 to run jobs again")
        rejoined = [r for r in nodes.runs().all if r.job in later]
        assert {r.node for r in rejoined} == {"n3"}, rejoined
    except AssertionError as e:
        raise AssertionError(f"{e}\n{nodes.logs()}") from None
    assert all(n1.show(j)["state"] == "completed" for j in ids)
    killed_lines = sum(1 for r in nodes.runs().all if r.killed)
    report("partition: jobs of the cut-off node / overlapping runs", f"{len(victims)} / 0")
    report("partition: the cut node's runs ended after the cut, worst (s), heartbeat 0.5 s", f"{max(fenced):.2f}")
    report("partition: gap between the end of its run and the rescued run's start, least (s)", f"{min(gaps):.2f}")
    report("partition: runs that logged the TERM of their kill", killed_lines)
    back = min(r.start for r in rejoined) - mended_at
    report("partition: seconds from mending the link to n3's first new job", f"{back:.2f}")


def _alive(rows: list[dict[str, Any]], name: str) -> bool:
    """Whether `nodes --json` lists a node called `name` that is up (not fenced, lost or stopped)."""
    return any(r["name"] == name and r["state"] == "up" for r in rows)
