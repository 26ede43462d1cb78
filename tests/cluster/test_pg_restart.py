"""A PostgreSQL restart under load: the nodes reconnect, nothing acknowledged is lost, jobs go on."""

from __future__ import annotations

import time
from collections.abc import Callable

from tests import pgserver
from tests.cluster.conftest import Enqueuer, Nodes, all_final, completed_once, node_rows
from tests.conftest import wait_for


def test_a_postgresql_restart_under_load_loses_nothing_acknowledged_and_jobs_go_on(
        throwaway_pg: pgserver.Cluster, nodes_on: Callable[[str], Nodes],
        report: Callable[[str, object], None]) -> None:
    server = pgserver.Server(throwaway_pg.url, "a throwaway cluster")
    nodes = nodes_on(server.create_database())
    n1, n2 = nodes.add("n1"), nodes.add("n2")
    n1.start_daemon("--workers", "0")
    n1.ok("config", "set", "backoff-base", "1")
    n2.start_daemon("--workers", "0")
    for node in (n1, n2):
        node.ok("worker", "start", "--count", "3", "--detach")
    loads = [Enqueuer(n1, nodes.command(2), "a"), Enqueuer(n2, nodes.command(2), "b")]
    for load in loads:
        load.start()
    try:
        wait_for(lambda: sum(1 for r in nodes.runs().all if r.ended) >= 20, 30, "20 jobs to run before the restart")
        before = len(nodes.runs().all)
        restart_began = time.monotonic()
        throwaway_pg.restart("fast")  # every connection is cut; the server is back a moment later
        down = time.monotonic() - restart_began
        up_at = time.time()
        wait_for(lambda: sum(1 for r in nodes.runs().all if r.start > up_at and r.ended) >= 20, 60,
                 "20 jobs to run after the restart")
        for load in loads:
            load.stop.set()
        for load in loads:
            load.join(30)
        acked = [i for load in loads for i in load.acked]
        assert all(i.startswith(("a", "b")) for i in acked), acked
        final = all_final(n1, acked, timeout=60, what="every acknowledged job to complete")
        assert n1.daemon is not None and n1.daemon.poll() is None and n2.daemon is not None and n2.daemon.poll() is None
        wait_for(lambda: {r["name"] for r in node_rows(n2) if r["state"] == "up"}
                 >= {"n1", "n2"}, 20, "both nodes to show in `nodes`")
    except AssertionError as e:
        raise AssertionError(f"{e}\n{nodes.logs()}") from None
    runs = completed_once(final, nodes)
    after = [r for r in runs.all if r.start > up_at]
    assert {r.node for r in after} == {"n1", "n2"}, "a node ran no job after the restart"
    report("PostgreSQL restart: enqueues acknowledged / refused while it was down / lost",
           f"{len(acked)} / {sum(load.refused for load in loads)} / 0")
    report("PostgreSQL restart: runs before / after the restart", f"{before} / {len(after)}")
    report("PostgreSQL restart: pg_ctl restart took (s)", f"{down:.2f}")
