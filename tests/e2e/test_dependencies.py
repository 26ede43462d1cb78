"""Job dependencies against a real daemon with real `sh -c` jobs: pipelines run in order, a dead dependency
kills its dependents (transitively) and a revived one brings them back, deletes, bad input, restarts."""

from __future__ import annotations

import json
import os
from datetime import datetime

import pytest

from tests.conftest import Env, wait_for


@pytest.fixture
def d(env: Env) -> Env:
    env.start_daemon("--workers", "0")
    return env


def _t(iso: str) -> float:
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


def _enq(env: Env, job: dict[str, object], *args: str) -> str:
    return env.ok("enqueue", json.dumps(job), *args).out.strip()


def test_a_pipeline_runs_in_order_and_shows_what_each_job_waits_for(d: Env, tmp_path: os.PathLike[str]) -> None:
    out = os.path.join(tmp_path, "order")
    fetch = _enq(d, {"id": "fetch", "command": f"sleep 0.3; echo fetch >> {out}"})
    transform = _enq(d, {"id": "transform", "command": f"echo transform >> {out}"}, "--after", fetch)
    load = _enq(d, {"id": "load", "command": f"echo load >> {out}"}, "--after", "transform")
    assert (fetch, transform, load) == ("fetch", "transform", "load")
    assert d.show("load")["blocked_by"] == ["transform"] and d.show("load")["after"] == ["transform"]
    assert d.show("fetch")["blocked_by"] == []
    listed = {j["id"]: j["blocked_by"] for j in d.jobs()}
    assert listed == {"fetch": [], "transform": ["fetch"], "load": ["transform"]}
    assert "blocked by fetch" in d.ok("show", "transform").out
    rows = {ln.split()[0]: ln for ln in d.ok("list").out.splitlines()[1:]}
    assert "blocked by transform" in rows["load"] and "blocked by" not in rows["fetch"]
    d.ok("worker", "start", "--count", "3", "--detach")
    assert d.q("wait", "load", "--timeout", "30").code == 0
    with open(out) as f:
        assert f.read().split() == ["fetch", "transform", "load"]
    jobs = {j: d.show(j) for j in ("fetch", "transform", "load")}
    assert _t(jobs["transform"]["started_at"]) >= _t(jobs["fetch"]["finished_at"])
    assert _t(jobs["load"]["started_at"]) >= _t(jobs["transform"]["finished_at"])
    assert all(j["blocked_by"] == [] for j in jobs.values())


def test_enqueue_after_applies_to_each_job_of_a_batch_and_a_met_dependency_counts(d: Env) -> None:
    first = _enq(d, {"id": "first", "command": "true"})
    lines = "".join(json.dumps({"id": f"b{i}", "command": "true", "after": ["first"]}) + "\n" for i in range(3))
    lines += json.dumps({"id": "b3", "command": "true", "after_any": ["b0", "b1"]}) + "\n"
    assert d.ok("enqueue", "-", "--after", first, input=lines).out.split() == ["b0", "b1", "b2", "b3"]
    assert d.show("b3")["after"] == [first] and d.show("b3")["blocked_by"] == [first, "b0", "b1"]
    assert d.show("b0")["after"] == [first]
    d.ok("worker", "start", "--count", "2", "--detach")
    assert d.q("wait", "--timeout", "30").code == 0
    late = _enq(d, {"id": "late", "command": "true"}, "--after", "first", "--after", "b3")
    assert d.show(late)["blocked_by"] == []  # both completed already
    d.wait_state(late, "completed")


def test_after_any_runs_after_a_failure_and_a_dead_dependency_kills_its_after_dependents(d: Env) -> None:
    _enq(d, {"id": "a", "command": "exit 3", "max_retries": 0})
    _enq(d, {"id": "b", "command": "true", "after": ["a"]})
    _enq(d, {"id": "c", "command": "true", "after": ["b"]})
    _enq(d, {"id": "cleanup", "command": "true", "after_any": ["a"]})
    d.ok("worker", "start", "--count", "2", "--detach")
    d.wait_state("cleanup", "completed")
    b, c = d.show("b"), d.show("c")
    assert (b["state"], b["error_message"], b["attempts"]) == ("dead", "dependency a is dead", 0)
    assert (c["state"], c["error_message"]) == ("dead", "dependency b is dead")
    assert {j["id"] for j in d.ok("dlq", "list", "--json").json()} == {"a", "b", "c"}
    assert d.q("wait", "c", "--timeout", "10").code == 1  # dead: the wait saw it
    # c cannot come back while b is dead; naming both is fine.
    r = d.q("retry", "c")
    assert r.code == 1 and r.err == "queuectl: job c waits for b, which is dead: retry b first\n", r


def test_reviving_a_dead_dependency_brings_its_dependents_back_blocked(d: Env, tmp_path: os.PathLike[str]) -> None:
    flag = os.path.join(tmp_path, "ready")
    _enq(d, {"id": "a", "command": f"test -e {flag}", "max_retries": 0})
    _enq(d, {"id": "b", "command": "true", "after": ["a"]})
    _enq(d, {"id": "c", "command": "true", "after": ["b"]})
    d.ok("worker", "start", "--count", "1", "--detach")
    d.wait_state("c", "dead")
    d.ok("worker", "stop")
    assert d.ok("dlq", "retry", "a").out.split() == ["a"]
    for job_id, waits in (("a", []), ("b", ["a"]), ("c", ["b"])):
        job = d.show(job_id)
        assert (job["state"], job["blocked_by"], job["error_message"]) == ("pending", waits, None), job
    open(flag, "w").close()
    d.ok("worker", "start", "--count", "2", "--detach")
    assert d.q("wait", "a", "b", "c", "--timeout", "30").code == 0


def test_delete_of_a_job_others_wait_for_is_refused_unless_cascade(d: Env) -> None:
    _enq(d, {"id": "a", "command": "true"})
    _enq(d, {"id": "b", "command": "true", "after": ["a"]})
    _enq(d, {"id": "c", "command": "true", "after": ["b"]})
    _enq(d, {"id": "any", "command": "true", "after_any": ["a"]})
    r = d.q("delete", "a")
    assert r.code == 1 and r.err.count("\n") == 1 and "b, any" in r.err and "--cascade" in r.err, r
    r = d.q("delete", "--state", "pending")  # all of them: nobody is left waiting
    assert r.code == 0, r
    _enq(d, {"id": "a", "command": "true"})
    _enq(d, {"id": "b", "command": "true", "after": ["a"]})
    _enq(d, {"id": "c", "command": "true", "after": ["b"]})
    _enq(d, {"id": "any", "command": "true", "after_any": ["a"]})
    d.ok("delete", "a", "--cascade")
    assert [d.show(j)["error_message"] for j in "bc"] == ["dependency a is dead", "dependency b is dead"]
    assert d.show("any")["blocked_by"] == []
    r = d.q("retry", "b")
    assert r.code == 1 and "a, which was deleted before it completed" in r.err, r
    d.ok("worker", "start", "--count", "1", "--detach")
    d.wait_state("any", "completed")


def test_bad_dependencies_are_refused_with_exit_2_naming_them(d: Env) -> None:
    _enq(d, {"id": "a", "command": "true"})
    r = d.q("enqueue", json.dumps({"id": "b", "command": "true"}), "--after", "nope")
    assert (r.code, r.err) == (2, "queuectl: job b: unknown dependency nope\n"), r
    r = d.q("enqueue", json.dumps({"id": "b", "command": "true", "after_any": ["a", "zz"]}))
    assert (r.code, r.err) == (2, "queuectl: job b: unknown dependency zz\n"), r
    r = d.q("enqueue", json.dumps({"id": "self", "command": "true", "after": ["self"]}))
    assert r.code == 2 and "self" in r.err and r.err.count("\n") == 1, r
    r = d.q("enqueue", json.dumps({"id": "s2", "command": "true"}), "--after", "s2")
    assert r.code == 2 and "s2" in r.err, r
    r = d.q("enqueue", json.dumps({"command": "true"}), "--after", "bad id!")
    assert r.code == 2 and "--after" in r.err and r.err.count("\n") == 1, r
    r = d.q("enqueue", json.dumps({"command": "true", "after": [1]}))
    assert r.code == 2 and "after" in r.err, r
    r = d.q("enqueue", json.dumps({"command": "true", "after_any": ["a", "a b"]}))
    assert r.err == ("queuectl: invalid job: after_any entries must be job ids: 1 to 64 letters, digits, '.', "
                     "'_' or '-', starting with a letter or digit (at $.after_any[1])\n") and r.code == 2, r
    assert [j["id"] for j in d.jobs()] == ["a"]  # nothing half-done


def test_blocked_jobs_stay_blocked_across_a_restart_and_run_once_met(d: Env) -> None:
    _enq(d, {"id": "a", "command": "true", "delay": 3600})
    _enq(d, {"id": "b", "command": "true", "after": ["a"]})
    _enq(d, {"id": "c", "command": "true", "after_any": ["a", "b"]})
    d.stop_daemon()
    d.start_daemon("--workers", "2")
    assert d.show("c")["blocked_by"] == ["a", "b"]
    marker = d.enqueue(command="true")
    d.wait_state(marker, "completed")  # the pool has dispatched since: b and c did not start
    assert d.show("b")["state"] == "pending" and d.show("c")["state"] == "pending"
    d.ok("edit", "a", "--delay", "0")
    assert d.q("wait", "a", "b", "c", "--timeout", "30").code == 0
    jobs = {j: d.show(j) for j in "abc"}
    assert _t(jobs["c"]["started_at"]) >= _t(jobs["b"]["finished_at"])
    wait_for(lambda: d.ok("status", "--json").json()["jobs"]["completed"] == 4, what="all completed")
