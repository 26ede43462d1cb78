"""Several nodes' run stats shown as one: what `queuectl stats` shows of a cluster."""

from __future__ import annotations

from queuectld import stats as st


def test_the_nodes_endings_minutes_and_percentiles_add_up() -> None:
    now = 1_800_000_000.0
    a, b = st.Stats(began=now - 600), st.Stats(began=now - 60)
    for _ in range(3):
        a.ended("default", "completed", now - 2, now - 3, now)
    b.ended("default", "dead", now - 20, now - 21, now)
    b.ended("reports", "completed", now - 1, now - 1, now - 120)
    again = st.decode(st.encode(b), now)  # as another node saved it
    both = st.combined([a, again])
    assert both.began == now - 600
    w = both.window("default", now, 3600)
    assert w.ends == [3, 0, 1]
    assert w.duration(0.5) is not None and w.duration(0.5) < 5 < (w.duration(1.0) or 0)
    assert both.window("reports", now, 3600).ends == [1, 0, 0]
    assert both.window("reports", now, 60).ends == [0, 0, 0]  # its minute is older than the window
    g = both.groups["default"]
    assert g.ends == [3, 0, 1] and g.duration.count == 4
    assert a.groups["default"].ends == [3, 0, 0]  # the parts are left as they were
