"""`queuectl stats` and `queuectl metrics` against a real daemon running real `sh -c` jobs: the counts by
outcome, percentiles, the window and its bounds, what survives a clean stop and a kill -9, a damaged
stats file, and the Prometheus text checked by a maintained parser (and promtool when installed)."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from queuectl_client import Client
from queuectl_client import protocol as p
from queuectld import stats as st
from tests.conftest import Env, wait_for

EXPECTED = {"completed": 2, "failed": 1, "dead": 2}


def _run_the_mix(env: Env) -> None:
    """Two jobs that complete, one that fails once and then dies, one that dies at once, and one
    cancelled while it waited (never ran, so not a run ending)."""
    env.ok("config", "set", "backoff-base", "1")  # the retry comes 1 s after the failure
    waiting = env.enqueue(command="true", delay=3600)
    env.ok("cancel", waiting)
    ids = [env.enqueue(command="true"), env.enqueue(command="sleep 0.2"),
           env.enqueue(command="exit 1", max_retries=1), env.enqueue(command="exit 3", max_retries=0)]
    env.ok("worker", "start", "--count", "2", "--detach")
    assert env.q("wait", *ids, "--timeout", "30").code == 1  # not all completed: two died
    for job_id in ids:
        env.wait_state(job_id, "completed", "dead")


def _default(env: Env, *args: str) -> dict[str, Any]:
    groups = env.ok("stats", "--json", *args).json()["groups"]
    return next(g for g in groups if g["group"] == "default")  # type: ignore[no-any-return]


def _counts(g: dict[str, Any]) -> dict[str, int]:
    return {k: g[k] for k in EXPECTED}


def test_stats_count_run_endings_by_outcome_with_rates_ratio_and_percentiles(env: Env) -> None:
    env.start_daemon()
    env.ok("group", "add", "idle")
    _run_the_mix(env)
    g = _default(env)
    assert _counts(g) == EXPECTED
    assert g["success_ratio"] == pytest.approx(2 / 5)
    d, w = g["duration_seconds"], g["wait_seconds"]
    assert 0 < d["p50"] <= d["p95"] <= d["p99"] and 0 <= w["p50"] <= w["p95"]
    assert d["p99"] >= 0.15  # the sleep 0.2 run is the slowest: the top percentile lands in its bucket
    assert g["per_minute"]["completed"] > 0 and g["per_minute"]["dead"] > 0
    idle = next(x for x in env.ok("stats", "--json").json()["groups"] if x["group"] == "idle")
    assert _counts(idle) == {"completed": 0, "failed": 0, "dead": 0} and idle["success_ratio"] is None
    assert idle["duration_seconds"] == {"p50": None, "p95": None, "p99": None}
    only = env.ok("stats", "--json", "--group", "idle", "--since", "1h").json()
    assert [x["group"] for x in only["groups"]] == ["idle"] and only["since_seconds"] == 3600
    table = env.ok("stats", "--since", "90s").out.splitlines()
    assert "last 90s" in table[0] and "estimates" in table[0]
    assert table[1].split()[:4] == ["GROUP", "COMPLETED", "FAILED", "DEAD"]
    row = next(line.split() for line in table if line.startswith("default"))
    assert row[1:4] == ["2", "1", "2"] and row[5] == "40.0%"
    assert next(line for line in table if line.startswith("idle")).split()[1:6] == ["0", "0", "0", "0/0/0", "-"]


def test_the_per_minute_series_adds_up_to_the_counts(env: Env) -> None:
    env.start_daemon()
    _run_the_mix(env)
    with Client(env.home, autostart=False) as c:
        reply = c.request(p.Stats(since=3600, minutes=True))
    assert isinstance(reply, p.StatsReply)
    g = next(x for x in reply.groups if x.group == "default")
    assert len(g.minutes) == 60 and [m.t for m in g.minutes] == sorted(m.t for m in g.minutes)
    assert g.minutes[-1].t == (reply.now // 60) * 60
    assert (sum(m.completed for m in g.minutes), sum(m.failed for m in g.minutes),
            sum(m.dead for m in g.minutes)) == (g.completed, g.failed, g.dead) == (2, 1, 2)


@pytest.mark.parametrize("args, code, words", [
    (["--since", "59s"], 2, "out of range"), (["--since", "25h"], 2, "out of range"),
    (["--since", "soon"], 2, "not a duration"), (["--since", "nan"], 2, "not a duration"),
    (["--group", "nope"], 1, "no group named 'nope'"), (["--group", "bad name!"], 2, "group"),
])
def test_a_bad_window_or_an_unknown_group_is_one_line_and_its_exit_code(env: Env, args: list[str], code: int,
                                                                         words: str) -> None:
    env.start_daemon()
    r = env.q("stats", *args)
    assert r.code == code and r.out == "" and words in r.err and r.err.count("\n") == 1, r


def test_stats_survive_a_clean_stop_and_a_kill_after_the_minute_write(env: Env) -> None:
    env.env["QUEUECTL_FAULTS"] = "stats-every=0.2"  # the once-a-minute save, five times a second
    env.start_daemon()
    _run_the_mix(env)
    before = _default(env)
    stats_file = os.path.join(env.home, "journal", "stats")

    def saved() -> bool:
        try:
            with open(stats_file, "rb") as f:
                kept = st.decode(f.read(), time.time())
        except (OSError, st.StatsFileError):
            return False
        return kept.groups.get("default") is not None and kept.groups["default"].ends == [2, 1, 2]

    wait_for(saved, what="the stats file to hold every ending")
    env.stop_daemon(signal.SIGKILL)
    env.start_daemon()
    after_kill = _default(env)
    assert _counts(after_kill) == EXPECTED and after_kill["duration_seconds"] == before["duration_seconds"]
    env.env.pop("QUEUECTL_FAULTS")
    job = env.enqueue(command="true")
    env.wait_state(job, "completed")
    assert env.stop_daemon() == 0  # a clean stop saves what ended since the last save
    env.start_daemon()
    assert _counts(_default(env)) == {**EXPECTED, "completed": 3}


@pytest.mark.parametrize("damage", ["truncated", "garbage", "future"])
def test_a_damaged_stats_file_is_logged_and_the_daemon_starts_with_empty_stats(env: Env, damage: str) -> None:
    env.start_daemon()
    _run_the_mix(env)
    assert env.stop_daemon() == 0
    path = os.path.join(env.home, "journal", "stats")
    with open(path, "rb") as f:
        data = f.read()
    data = {"truncated": data[: len(data) - 7], "garbage": os.urandom(len(data)),
            "future": data[:8] + (st.FORMAT + 1).to_bytes(2, "big") + data[10:]}[damage]
    with open(path, "wb") as f:
        f.write(data)
    env.start_daemon()
    assert _counts(_default(env)) == {"completed": 0, "failed": 0, "dead": 0}
    assert "the stats start empty" in env.log()
    assert env.show(env.jobs("completed")[0]["id"])["state"] == "completed"  # the queue itself is whole
    job = env.enqueue(command="true")
    env.wait_state(job, "completed")
    assert env.stop_daemon() == 0
    env.start_daemon()
    assert _default(env)["completed"] == 1  # the file was written afresh


def _scrape(env: Env) -> dict[str, Any]:
    text = env.ok("metrics").out
    if shutil.which("promtool"):
        proc = subprocess.run(["promtool", "check", "metrics"], input=text, capture_output=True, text=True)
        assert proc.returncode == 0 and proc.stdout + proc.stderr == "", proc
    samples: dict[str, Any] = {}
    for family in text_string_to_metric_families(text):
        samples[family.name] = family
    return samples


def _values(family: Any, suffix: str = "") -> dict[tuple[tuple[str, str], ...], float]:
    return {tuple(sorted(s.labels.items())): s.value for s in family.samples if s.name == family.name + suffix}


def test_metrics_are_valid_prometheus_text_with_monotonic_counters(env: Env) -> None:
    env.start_daemon()
    _run_the_mix(env)
    first = _scrape(env)
    assert first["queuectl_jobs"].type == "gauge" and first["queuectl_jobs_finished"].type == "counter"
    for name in ("queuectl_job_duration_seconds", "queuectl_job_wait_seconds", "queuectl_journal_fsync_seconds"):
        assert first[name].type == "histogram"
    jobs = _values(first["queuectl_jobs"])
    assert jobs[(("group", "default"), ("state", "completed"))] == 2
    assert jobs[(("group", "default"), ("state", "dead"))] == 3  # the cancelled job is dead, not a run ending
    finished = _values(first["queuectl_jobs_finished"], "_total")
    assert {k[1][1]: v for k, v in finished.items() if k[0] == ("group", "default")} == EXPECTED
    workers = _values(first["queuectl_workers"])
    assert workers == {(("state", "busy"),): 0, (("state", "idle"),): 2}
    assert _values(first["queuectl_journal_bytes"])[()] > 0
    assert _values(first["queuectl_journal_fsync_seconds"], "_count")[()] > 0
    info = first["queuectl_build_info"].samples[0]
    assert info.value == 1 and set(info.labels) == {"version", "python"}
    assert abs(_values(first["process_start_time_seconds"])[()] - time.time()) < 600
    for family in first.values():
        for s in family.samples:  # never a job id or a command in a label
            assert set(s.labels) <= {"group", "state", "outcome", "le", "version", "python"}, s
    _check_histogram(first["queuectl_job_duration_seconds"], 5)

    job = env.enqueue(command="true")
    env.wait_state(job, "completed")
    second = _scrape(env)
    for name, suffix in (("queuectl_jobs_finished", "_total"), ("queuectl_job_duration_seconds", "_count"),
                         ("queuectl_job_duration_seconds", "_bucket"), ("queuectl_job_wait_seconds", "_sum"),
                         ("queuectl_journal_fsync_seconds", "_count")):
        old, new = _values(first[name], suffix), _values(second[name], suffix)
        assert all(new[k] >= v for k, v in old.items()), name
    assert _values(second["queuectl_job_duration_seconds"], "_count")[(("group", "default"),)] == 6


def _check_histogram(family: Any, count: int) -> None:
    buckets = [(float(s.labels["le"]), s.value) for s in family.samples
               if s.name.endswith("_bucket") and s.labels["group"] == "default"]
    assert buckets[-1][0] == float("inf") and buckets[-1][1] == count
    assert [n for _, n in buckets] == sorted(n for _, n in buckets)
    assert _values(family, "_count")[(("group", "default"),)] == count


def test_oldest_pending_age_follows_the_longest_waiting_due_job(env: Env) -> None:
    env.start_daemon()
    env.ok("group", "add", "held")
    env.ok("pause", "held")
    age = lambda: _values(_scrape(env)["queuectl_oldest_pending_age_seconds"])  # noqa: E731
    assert age() == {(("group", "default"),): 0, (("group", "held"),): 0}
    env.enqueue(command="true", group="held")
    env.enqueue(command="true", group="held", delay=3600)  # not due: not waiting for a worker
    first = wait_for(lambda: (a := age())[(("group", "held"),)] > 0 and a, what="the held job's age to show")
    assert first[(("group", "default"),)] == 0
    later = wait_for(lambda: (a := age())[(("group", "held"),)] > first[(("group", "held"),)] and a,
                     what="the age to grow")
    assert later[(("group", "held"),)] < 600
    env.ok("worker", "start", "--count", "1", "--detach")
    env.ok("resume", "held")
    wait_for(lambda: age()[(("group", "held"),)] == 0, what="the age to drop once the job ran")


def test_metrics_buckets_set_the_histogram_edges(env: Env) -> None:
    env.start_daemon()
    r = env.q("config", "set", "metrics-buckets", "0.1,1,10,60,600,3600,21600")
    assert r.code == 0, r
    _run_the_mix(env)
    family = _scrape(env)["queuectl_job_duration_seconds"]
    edges = [s.labels["le"] for s in family.samples if s.name.endswith("_bucket") and s.labels["group"] == "default"]
    assert edges == ["0.1", "1", "10", "60", "600", "3600", "21600", "+Inf"]
    _check_histogram(family, 5)
    for bad in ("1,0.5", "0", "x", ",".join(str(i) for i in range(1, 42))):
        r = env.q("config", "set", "metrics-buckets", bad)
        assert r.code == 2 and r.err.count("\n") == 1 and "metrics-buckets" in r.err, r
    assert env.ok("config", "get", "metrics-buckets").out == "0.1,1,10,60,600,3600,21600\n"
