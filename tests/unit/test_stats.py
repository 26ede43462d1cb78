"""The run stats' arithmetic: grid buckets, percentiles, the day-long ring, totals at configured edges,
the stats file (round trip; missing, truncated, damaged, of a later version), and the Prometheus text."""

from __future__ import annotations

import asyncio
import logging
import math
import os
import shutil
import subprocess

import pytest
from prometheus_client.parser import text_string_to_metric_families

from queuectl_client import protocol as p
from queuectl_client.prometheus import escape, render
from queuectld import stats as st
from queuectld.config import DEFAULT_BUCKETS, Config, ConfigError
from queuectld.journal_store import JournalStore
from queuectld.metrics import histogram
from queuectld.stats_keeper import Keeper

DAY = 86_400.0
T0 = 1_800_000_000.0  # a minute boundary (30,000,000 minutes)


def test_a_value_lands_in_the_bucket_whose_edge_is_the_first_at_or_above_it() -> None:
    assert st.EDGES[0] == pytest.approx(1e-4) and st.EDGES[-1] == pytest.approx(1e6)
    assert len(st.EDGES) == 201 and st.BUCKETS == 202
    assert st.bucket(0.0) == 0 and st.bucket(1e-5) == 0 and st.bucket(st.EDGES[0]) == 0
    for i in (1, 57, 100, 200):
        edge = st.EDGES[i]
        assert st.bucket(edge) == i  # an edge belongs to the bucket it closes (Prometheus' `le`)
        assert st.bucket(math.nextafter(edge, math.inf)) == i + 1
    assert st.bucket(1e9) == st.BUCKETS - 1  # above the grid
    for a, b in zip(st.EDGES, st.EDGES[1:], strict=False):
        assert b / a == pytest.approx(10 ** (1 / 20))  # 12% apart, everywhere


def test_configured_edges_round_to_the_nearest_grid_edge_within_six_percent() -> None:
    for bound in (*DEFAULT_BUCKETS, 0.0001, 0.3, 7, 45, 999_999):
        edge = st.EDGES[st.nearest_edge(bound)]
        assert abs(edge / bound - 1) <= 10 ** (1 / 40) - 1 + 1e-12, (bound, edge)
    assert st.nearest_edge(1e-9) == 0 and st.nearest_edge(1e12) == len(st.EDGES) - 1


def test_percentiles_interpolate_inside_a_bucket_and_are_none_without_runs() -> None:
    assert st.percentile([], 0.5) is None
    i = st.bucket(1.0)  # (EDGES[i-1], 1.0]
    low = st.EDGES[i - 1]
    assert st.percentile([(i, 100)], 0.5) == pytest.approx(low + (1.0 - low) * 0.5)
    assert st.percentile([(i, 100)], 1.0) == pytest.approx(1.0)
    # 90 fast runs and 10 slow ones: p50 among the fast, p95 and p99 among the slow.
    fast, slow = st.bucket(0.01), st.bucket(30.0)
    pairs = [(fast, 90), (slow, 10)]
    assert st.EDGES[fast - 1] < st.percentile(pairs, 0.5) <= st.EDGES[fast]  # type: ignore[operator]
    assert st.EDGES[slow - 1] < st.percentile(pairs, 0.95) <= st.EDGES[slow]  # type: ignore[operator]
    assert st.percentile([(0, 4)], 0.5) == pytest.approx(0.5e-4)  # the bottom bucket starts at 0
    assert st.percentile([(st.BUCKETS - 1, 1)], 0.99) == st.GRID_HIGH


def test_a_window_counts_outcomes_and_times_of_its_minutes_only() -> None:
    s = st.Stats(began=T0)
    s.ended("g", "completed", T0 + 10, T0 + 9.5, T0 + 12)  # ran 2 s, waited 0.5 s
    s.ended("g", "failed", T0 + 70, T0 + 70, T0 + 71)
    s.ended("g", "dead", T0 + 130, T0 + 100, T0 + 140)
    s.ended("g", "processing", T0, T0, T0 + 1)  # not an ending: ignored
    now = T0 + 150  # in the third minute
    w = s.window("g", now, 60)
    assert w.ends == [0, 0, 1]
    w = s.window("g", now, 120)
    assert w.ends == [0, 1, 1]
    w = s.window("g", now, DAY)
    assert w.ends == [1, 1, 1]
    assert w.duration(0.5) == pytest.approx(2.0, rel=0.13)
    assert w.wait(0.99) == pytest.approx(30.0, rel=0.13)
    assert s.window("other", now, DAY).ends == [0, 0, 0] and s.window("other", now, DAY).duration(0.5) is None
    g = s.groups["g"]
    assert g.ends == [1, 1, 1] and g.duration.count == 3 and g.wait.sum == pytest.approx(0.5 + 0 + 30)


def test_the_ring_keeps_a_day_and_a_minute_a_day_later_takes_its_slot() -> None:
    s = st.Stats(began=T0)
    s.ended("g", "completed", T0, T0, T0 + 1)
    s.ended("g", "completed", T0 + 120, T0 + 120, T0 + 121)
    assert s.window("g", T0 + DAY - 1, DAY).ends == [2, 0, 0]  # still within the day
    assert s.window("g", T0 + DAY, DAY).ends == [1, 0, 0]  # the first minute has left the window
    s.ended("g", "dead", T0 + DAY + 5, T0 + DAY, T0 + DAY + 6)  # same slot as T0's minute, a day later
    assert s.window("g", T0 + DAY + 10, DAY).ends == [1, 0, 1]
    assert s.window("g", T0 + DAY + 10, 60).ends == [0, 0, 1]
    assert s.groups["g"].ends == [2, 0, 1]  # the totals keep everything
    assert sum(m is not None for m in s.groups["g"].ring) == 2  # a minute without a run costs nothing
    # A clock that went back more than a day: the totals count the run, the ring's newer minute stays.
    s.ended("g", "failed", T0 + 5, T0, T0 + 6)
    assert s.groups["g"].ends == [2, 1, 1] and s.window("g", T0 + DAY + 10, 60).ends == [0, 0, 1]


def test_an_untimed_ending_counts_its_outcome_but_no_time() -> None:
    s = st.Stats()
    s.ended("g", "failed", T0, T0, T0 + 3600, timed=False)
    assert s.groups["g"].ends == [0, 1, 0] and s.groups["g"].duration.count == 0
    assert s.window("g", T0 + 3600, 60).duration(0.5) is None


def test_totals_at_configured_edges_are_cumulative_and_end_at_the_count() -> None:
    t = st.Totals()
    for x in (0.0, 0.004, 0.2, 3.0, 3.0, 500.0, 2e6):
        t.observe(x)
    h = histogram(t, list(DEFAULT_BUCKETS))
    assert h.count == 7 and h.sum == pytest.approx(2e6 + 506.204)
    assert h.counts == sorted(h.counts) and h.counts[-1] == 6  # 2e6 s only in +Inf
    at = dict(zip(h.bounds, h.counts, strict=True))
    assert at[0.01] == 2 and at[5.0] == 5


def _filled() -> st.Stats:
    s = st.Stats(began=T0 - 3600)
    for k in range(50):
        s.ended("default", ("completed", "failed", "dead")[k % 3], T0 + 3 * k, T0 + 3 * k - 0.01 * k,
                T0 + 3 * k + 0.1 * k)  # over three minutes
    s.ended("b\"ack\\ups\n", "completed", T0, T0, T0 + 2)
    s.synced(0.0003)
    return s


def test_the_stats_file_round_trips_and_drops_minutes_older_than_a_day() -> None:
    s = _filled()
    data = st.encode(s)
    back = st.decode(data, T0 + 60)
    assert back.began == s.began and set(back.groups) == set(s.groups)
    for name, g in s.groups.items():
        b = back.groups[name]
        assert b.ends == g.ends and b.duration.counts == g.duration.counts and b.wait.sum == g.wait.sum
        def kept(ring: list[st.Minute | None]) -> list[object]:
            return [m and (m.minute, m.ends, m.times) for m in ring]

        assert kept(b.ring) == kept(g.ring)
    assert back.fsync.counts == s.fsync.counts
    later = st.decode(data, T0 + DAY + 30)  # T0's minute is now older than a day; the next one is not
    assert later.window("default", T0 + DAY + 30, DAY).ends != [0, 0, 0]
    assert all(m is None or m.minute > int(T0 // 60) for m in later.groups["default"].ring)
    assert later.groups["default"].ends == s.groups["default"].ends  # totals are kept whatever their age


@pytest.mark.parametrize("damage", ["truncated", "flipped", "magic", "future", "grid", "empty"])
def test_a_damaged_stats_file_is_refused_with_a_reason(damage: str) -> None:
    data = st.encode(_filled())
    if damage == "truncated":
        data = data[: len(data) // 2]
    elif damage == "flipped":
        data = data[:40] + bytes([data[40] ^ 0xFF]) + data[41:]
    elif damage == "magic":
        data = b"NOTSTATS" + data[8:]
    elif damage == "future":
        data = data[:8] + (st.FORMAT + 1).to_bytes(2, "big") + data[10:]
    elif damage == "grid":
        s = _filled()
        body = st.msgspec.msgpack.encode(st._FileRecord((1e-3, 1e6, 10), s.began, [], 0.0, []))
        data = st.MAGIC + st.FORMAT.to_bytes(2, "big") + st.zlib.crc32(body).to_bytes(4, "big") + body
    else:
        data = b""
    with pytest.raises(st.StatsFileError) as e:
        st.decode(data, T0)
    reason = str(e.value)
    assert "\n" not in reason
    if damage == "future":
        assert "later queuectld" in reason


def _keeper_on(path: str) -> Keeper:
    store = JournalStore(path, node="n")
    asyncio.run(store.open())
    keeper = Keeper(store)
    asyncio.run(store.close())
    return keeper


@pytest.mark.parametrize("content", [None, b"", b"QCTLSTAT\x00\x01garbage", b"\x00" * 4096, "future", "directory"])
def test_the_daemon_starts_with_empty_stats_whatever_the_file_holds(
        tmp_path: os.PathLike[str], content: bytes | str | None, caplog: pytest.LogCaptureFixture) -> None:
    path = os.path.join(str(tmp_path), "journal")
    asyncio.run(JournalStore(path).open())
    stats_file = os.path.join(path, "stats")
    if content == "future":
        data = st.encode(_filled())
        content = data[:8] + (st.FORMAT + 5).to_bytes(2, "big") + data[10:]
    if content == "directory":
        os.mkdir(stats_file)  # unreadable as a file
    elif content is not None:
        with open(stats_file, "wb") as f:
            f.write(content)  # type: ignore[arg-type]
    with caplog.at_level(logging.WARNING, "queuectld.stats"):
        keeper = _keeper_on(path)
    assert keeper.stats.groups == {} and not keeper.stats.changed
    if content is not None:
        assert "stats start empty" in caplog.text
    else:
        assert caplog.text == ""


async def _opened(path: str) -> tuple[JournalStore, Keeper]:
    store = JournalStore(path, node="n")
    await store.open()
    return store, Keeper(store)


async def _ends_after_a_restart(path: str) -> list[int]:
    store, keeper = await _opened(path)
    await store.close()
    return keeper.stats.groups["default"].ends


def test_the_keeper_saves_what_changed_and_the_next_start_reads_it(tmp_path: os.PathLike[str]) -> None:
    path = os.path.join(str(tmp_path), "journal")

    async def run() -> None:
        store, keeper = await _opened(path)
        keeper.stats.ended("default", "completed", T0, T0, T0 + 1)
        keeper.stats.ended("gone", "completed", T0, T0, T0 + 1)  # a group the store does not have
        await keeper.save()
        assert not keeper.stats.changed and "gone" not in keeper.stats.groups
        mtime = os.stat(os.path.join(path, "stats")).st_mtime_ns
        await keeper.save()  # nothing changed: nothing written
        assert os.stat(os.path.join(path, "stats")).st_mtime_ns == mtime
        await store.close()
        assert await _ends_after_a_restart(path) == [1, 0, 0]  # the journal leaves its neighbour alone

    asyncio.run(run())
    assert sorted(os.listdir(path)) == ["MANIFEST", "log-1", "stats"]


def test_metrics_buckets_take_ascending_positive_edges_on_the_grid_at_most_40() -> None:
    c = Config()
    assert c.metrics_buckets == DEFAULT_BUCKETS
    edges = "0.1,1,10,60,600,3600,21600"
    assert c.parse("metrics-buckets", edges.replace(",", ", ")) == ("metrics-buckets", edges)
    for bad, words in (("1,1", "ascend"), ("10,1", "ascend"), ("0", "out of range"), ("-1", "out of range"),
                       ("nan", "out of range"), ("inf", "out of range"), ("2e6", "out of range"),
                       ("1,,2", "not a number"), ("x", "not a number"),
                       (",".join(str(i) for i in range(1, 42)), "at most 40")):
        with pytest.raises(ConfigError, match=words):
            c.parse("metrics-buckets", bad)


def _reply(s: st.Stats) -> p.MetricsReply:
    bounds = list(DEFAULT_BUCKETS)
    groups = [p.GroupMetrics(name, {"pending": 1, "processing": 0, "completed": 3, "failed": 0, "dead": 1},
                             dict(zip(st.OUTCOMES, g.ends, strict=True)), histogram(g.duration, bounds),
                             histogram(g.wait, bounds), 12.5 if name == "default" else None)
              for name, g in s.groups.items()]
    return p.MetricsReply("0.1.0", T0, 4, 1, 12345, histogram(s.fsync, [0.0001, 0.001, 0.01]), groups, "3.11.7", T0)


def test_the_prometheus_text_parses_with_escaped_labels_and_consistent_histograms() -> None:
    assert escape('a\\b"c\nd') == 'a\\\\b\\"c\\nd'
    text = render(_reply(_filled()))
    families = {f.name: f for f in text_string_to_metric_families(text)}
    assert {name: f.type for name, f in families.items()} == {
        "queuectl_jobs": "gauge", "queuectl_jobs_finished": "counter", "queuectl_job_duration_seconds": "histogram",
        "queuectl_job_wait_seconds": "histogram", "queuectl_oldest_pending_age_seconds": "gauge",
        "queuectl_workers": "gauge", "queuectl_journal_bytes": "gauge", "queuectl_journal_fsync_seconds": "histogram",
        "queuectl_build_info": "gauge", "process_start_time_seconds": "gauge",
    }
    groups = {s.labels["group"] for s in families["queuectl_jobs"].samples}
    assert groups == {"default", 'b"ack\\ups\n'}  # the parser un-escapes what render escaped
    for f in families.values():
        for s in f.samples:
            assert set(s.labels) <= {"group", "state", "outcome", "le", "version", "python"}, s
    finished = {(s.labels["group"], s.labels["outcome"]): s.value for s in families["queuectl_jobs_finished"].samples}
    assert finished[("default", "completed")] == 17 and finished[("default", "dead")] == 16
    age = {s.labels["group"]: s.value for s in families["queuectl_oldest_pending_age_seconds"].samples}
    assert age == {"default": 12.5, 'b"ack\\ups\n': 0.0}
    workers = {s.labels["state"]: s.value for s in families["queuectl_workers"].samples}
    assert workers == {"busy": 1, "idle": 3}
    for name in ("queuectl_job_duration_seconds", "queuectl_journal_fsync_seconds"):
        _check_histograms(families[name].samples)
    assert text.endswith("\n") and "# TYPE queuectl_jobs_finished_total counter" in text


def _check_histograms(samples: list) -> None:  # type: ignore[type-arg]
    by_group: dict[str, list[tuple[float, float]]] = {}
    counts: dict[str, float] = {}
    for s in samples:
        group = s.labels.get("group", "")
        if s.name.endswith("_bucket"):
            by_group.setdefault(group, []).append((float(s.labels["le"]), s.value))
        elif s.name.endswith("_count"):
            counts[group] = s.value
    for group, buckets in by_group.items():
        assert [le for le, _ in buckets] == sorted(le for le, _ in buckets) and buckets[-1][0] == math.inf
        assert [n for _, n in buckets] == sorted(n for _, n in buckets), buckets  # cumulative
        assert buckets[-1][1] == counts[group]


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool (Debian package prometheus) is not installed")
def test_promtool_finds_nothing_to_say_about_the_text() -> None:
    proc = subprocess.run(["promtool", "check", "metrics"], input=render(_reply(_filled())), capture_output=True,
                          text=True)
    assert proc.returncode == 0 and proc.stdout + proc.stderr == "", proc


def test_a_failed_save_is_logged_and_tried_again_and_a_stop_waits_for_a_write_in_flight(
        tmp_path: os.PathLike[str], caplog: pytest.LogCaptureFixture) -> None:
    path = os.path.join(str(tmp_path), "journal")

    async def run() -> None:
        store, keeper = await _opened(path)
        keeper.stats.ended("default", "completed", T0, T0, T0 + 1)
        os.mkdir(os.path.join(path, "stats"))  # the rename fails: a directory is in the way
        with caplog.at_level(logging.WARNING, "queuectld.stats"):
            await keeper.save()
        assert "cannot save the run stats" in caplog.text and keeper.stats.changed
        os.rmdir(os.path.join(path, "stats"))
        keeper.period = 0.0
        keeper.start()  # saves at once, and again and again
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        await keeper.close()  # cancels the loop, perhaps mid-write; then saves once more
        assert not keeper.stats.changed
        await store.close()
        assert await _ends_after_a_restart(path) == [1, 0, 0]

    asyncio.run(run())
