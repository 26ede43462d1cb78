"""Unique jobs against a real daemon: a held key creates nothing, it is free once its job is final, and a
revive takes it back or is refused.  (Crashes and compaction: tests/e2e/test_faults.py.)"""

from __future__ import annotations

import json
import re

import pytest

from queuectl_client import Client
from tests.conftest import Env


@pytest.fixture
def d(env: Env) -> Env:
    env.start_daemon()
    return env


def _job(**fields: object) -> str:
    return json.dumps({"command": "true", **fields})


def test_a_second_job_with_a_held_key_prints_the_first_id_and_creates_nothing(d: Env) -> None:
    first = d.enqueue(command="echo sync", unique_key="sync", delay=3600)
    r = d.ok("enqueue", _job(unique_key="sync"))  # the quick path
    assert (r.out, r.err) == (f"{first}\n", "")
    r = d.ok("enqueue", "-", input=_job(id="named", unique_key="sync") + "\n")  # the full path
    assert (r.out, r.err) == (f"{first}\n", "")
    [job] = d.ok("enqueue", _job(unique_key="sync"), "--json").json()
    assert (job["id"], job["created"], job["unique_key"], job["command"]) == (first, False, "sync", "echo sync")
    with Client(d.home, autostart=False) as c:
        assert c.enqueue("true", unique_key="sync") == first
    assert [j["id"] for j in d.jobs()] == [first] and d.show(first)["unique_key"] == "sync"
    # Another key, or none, is created as always.
    other = d.ok("enqueue", _job(unique_key="other"), "--json").json()
    assert other[0]["created"] is True and other[0]["id"] != first
    # Once the job is final (completed), the key is free again.
    d.ok("edit", first, "--delay", "0")
    d.ok("worker", "start", "--count", "1", "--detach")
    d.wait_state(first, "completed")
    [again] = d.ok("enqueue", _job(unique_key="sync", delay=3600), "--json").json()
    assert again["created"] is True and again["id"] != first


def test_a_batch_with_one_key_twice_creates_the_first_and_maps_the_second_to_it(d: Env) -> None:
    lines = "".join(line + "\n" for line in (_job(id="a", unique_key="k"), _job(id="b", unique_key="k"),
                                              _job(id="c"), _job(id="d", unique_key="j")))
    r = d.ok("enqueue", "-", input=lines)
    assert r.out == "a\na\nc\nd\n"
    assert sorted(j["id"] for j in d.jobs()) == ["a", "c", "d"]
    jobs = d.ok("enqueue", "-", "--json", input=_job(id="e", unique_key="j") + "\n" + _job(id="f") + "\n").json()
    assert [(j["id"], j["created"]) for j in jobs] == [("d", False), ("f", True)]


def test_a_job_after_one_that_stands_for_a_holder_waits_for_the_holder(d: Env) -> None:
    d.enqueue(command="true", id="held", unique_key="sync", delay=3600)
    lines = "".join(line + "\n" for line in (_job(id="again", unique_key="sync"),
                                              _job(id="report", after=["again"]),
                                              _job(id="tidy", after_any=["again", "held"])))
    assert d.ok("enqueue", "-", input=lines).out == "held\nreport\ntidy\n"
    assert (d.show("report")["after"], d.show("report")["blocked_by"]) == (["held"], ["held"])
    assert d.show("tidy")["after_any"] == ["held"]


def test_a_dependent_whose_key_was_taken_meanwhile_stays_dead_when_its_dependency_comes_back(d: Env) -> None:
    d.enqueue(command="true", id="x", delay=3600)
    d.enqueue(command="true", id="dep", unique_key="k", after=["x"])
    d.ok("cancel", "x")
    assert d.show("dep")["error_message"] == "dependency x is dead"
    assert d.enqueue(command="true", id="taker", unique_key="k", delay=3600) == "taker"  # the key was free
    d.ok("retry", "x")
    dep = d.show("dep")
    assert (dep["state"], dep["error_message"]) == ("dead", "dependency x came back, but job taker holds the "
                                                            "unique key 'k'")
    assert d.enqueue(command="true", unique_key="k") == "taker"  # one holder, still
    d.stop_daemon()
    d.start_daemon()  # replay gives the same answer
    assert d.show("dep")["state"] == "dead" and d.enqueue(command="true", unique_key="k") == "taker"


def test_a_revived_job_takes_its_key_back_and_is_refused_while_another_holds_it(d: Env) -> None:
    old = d.enqueue(command="true", id="old", unique_key="nightly", delay=3600)
    d.ok("cancel", old)  # dead: the key is free
    new = d.enqueue(command="true", id="new", unique_key="nightly", delay=3600)
    assert new == "new"
    for args in (["dlq", "retry", old], ["retry", old]):
        r = d.q(*args)
        assert r.code == 1 and "'nightly'" in r.err and "job new holds it" in r.err and r.err.count("\n") == 1, r
    # A selection leaves it out; nothing changed.
    assert d.ok("retry", "--state", "dead", "--json").json() == []
    assert d.ok("dlq", "retry", "--all", "--json").json() == []
    assert d.show(old)["state"] == "dead"
    d.ok("cancel", new)
    assert d.ok("dlq", "retry", old, "--json").json() == [old]
    assert d.enqueue(command="true", unique_key="nightly") == old
    r = d.q("retry", new)  # the other way round now
    assert r.code == 1 and "job old holds it" in r.err, r
    # The index is rebuilt from the journal: after a restart the key is still old's.
    d.stop_daemon()
    d.start_daemon()
    assert d.enqueue(command="true", unique_key="nightly") == old
    assert d.q("dlq", "retry", new).code == 1


def test_show_names_the_unique_key_a_job_holds(d: Env) -> None:
    d.enqueue(command="true", id="keyed", unique_key="nightly sync", delay=3600)
    assert re.search(r"\nunique key: +nightly sync\n", d.ok("show", "keyed").out)
    d.enqueue(command="true", id="plain", delay=3600)
    assert "unique key" not in d.ok("show", "plain").out
