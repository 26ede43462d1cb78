"""Three nodes on one database share one queue: each of 5,000 jobs runs exactly once."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable

from tests.cluster.conftest import Nodes, drained, enqueue_batch, states

JOBS = 5000


def test_three_nodes_run_each_of_5000_jobs_exactly_once(nodes: Nodes, report: Callable[[str, object], None]) -> None:
    cluster = [nodes.add(f"n{i}") for i in (1, 2, 3)]
    for node in cluster:
        node.start_daemon("--workers", "0")
    ids: list[str] = []
    for k, node in enumerate(cluster):  # each node takes a third of the enqueues
        share = range(k, JOBS, 3)
        ids += enqueue_batch(node, [{"id": f"j{i}", "command": nodes.command()} for i in share])
    assert len(set(ids)) == JOBS
    began = time.monotonic()
    for node in cluster:
        node.ok("worker", "start", "--count", "4", "--detach")
    try:
        drained(cluster[0], JOBS, timeout=150)
    except AssertionError as e:
        raise AssertionError(f"{e}\n{nodes.logs()}") from None
    took = time.monotonic() - began
    final = states(cluster[0], ids)
    assert Counter(final.values()) == {"completed": JOBS}
    runs = nodes.runs()
    started = Counter(r.job for r in runs.all)
    ended = Counter(r.job for r in runs.all if r.ended)
    twice = sorted(j for j, n in started.items() if n > 1)
    assert not twice, f"{len(twice)} jobs started more than once, e.g. {[runs.by_job[j] for j in twice[:3]]}"
    assert set(started) == set(ids) and set(ended) == set(ids), set(ids) - set(ended)
    assert all(r.attempt == "1" for r in runs.all)
    per_node = Counter(r.node for r in runs.all)
    assert set(per_node) == {"n1", "n2", "n3"}, per_node
    for node in cluster:  # every node sees the same queue
        assert node.ok("status", "--json").json()["jobs"]["completed"] == JOBS
    report("exactly once: jobs run by 3 nodes (4 workers each), each started and ended once", JOBS)
    report("exactly once: runs per node", dict(sorted(per_node.items())))
    report("exactly once: drain time of 5,000 jobs on 3 nodes (s)", round(took, 1))
