"""What a person sees from any node of a cluster: two real daemons on one real PostgreSQL database,
real `sh -c` jobs.  Node `a` runs the jobs (they are enqueued there); node `b` has no workers and looks."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from typing import Any

import pytest

from tests.conftest import QUEUECTL, Env, wait_for

pytest.importorskip("asyncpg")


@pytest.fixture
def cluster(pg_database: str) -> Iterator[tuple[Env, Env]]:
    envs = []
    for name, workers in (("a", "1"), ("b", "0")):
        e = Env(tempfile.mkdtemp(prefix="qc-", dir="/tmp"))
        e.env["QUEUECTL_FAULTS"] = "stats-every=0.2"
        e.start_daemon("--store", pg_database, "--node", name, "--workers", workers)
        envs.append(e)
    yield envs[0], envs[1]
    for e in envs:
        if e.daemon is not None and e.daemon.poll() is None:
            e.daemon.kill()
            e.daemon.wait()
        shutil.rmtree(e.home, ignore_errors=True)


def _shipped(url: str, job: str) -> bool:
    import asyncio

    import asyncpg

    async def look() -> bool:
        conn = await asyncpg.connect(url)
        try:
            return bool(await conn.fetchval("SELECT count(*) FROM queuectl_output WHERE job_id = $1", job))
        finally:
            await conn.close()

    return asyncio.run(look())


def gated(flag: str, before: str, after: str) -> str:
    """A command that prints `before`, waits for `flag` to exist, then prints `after`."""
    return f'{before}; while [ ! -e "{flag}" ]; do sleep 0.02; done; {after}'


def test_logs_and_logs_follow_on_another_node_show_what_the_running_node_shows(cluster: tuple[Env, Env]) -> None:
    a, b = cluster
    flag = os.path.join(a.home, "go")
    job = a.enqueue(command=gated(flag, "echo first; echo oops >&2", "echo second; echo done >&2"))
    wait_for(lambda: b.q("logs", job, "--stdout").out == "first\n", what="the running job's output on node b")
    assert b.show(job)["state"] == "processing"

    follow = subprocess.Popen([QUEUECTL, "logs", job, "--follow"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              env=b.env)
    wait_for(lambda: os.path.exists(os.path.join(b.home, "output-db", job, "1.out")), what="the follower's copy")
    open(flag, "w").close()
    out, err = follow.communicate(timeout=30)
    assert follow.returncode == 0, err
    assert (out, err) == (b"first\nsecond\n", b"oops\ndone\n")

    a.wait_state(job, "completed")
    for args in ([], ["--json"], ["--stderr"], ["--tail", "1"]):
        on_a, on_b = a.q("logs", job, *args), b.q("logs", job, *args)
        assert (on_b.code, on_b.out, on_b.err) == (on_a.code, on_a.out, on_a.err)
    assert json.loads(b.ok("logs", job, "--json").out) == {"id": job, "stdout": "first\nsecond\n",
                                                          "stderr": "oops\ndone\n"}
    missing = b.q("logs", "no-such-job")
    assert (missing.code, missing.err) == (a.q("logs", "no-such-job").code, a.q("logs", "no-such-job").err)


def test_logs_follow_on_another_node_of_a_run_whose_start_is_not_on_record_yet_shows_its_output(
        pg_database: str) -> None:
    """The follower first sees the job held (claimed, its attempt counted, its start not written yet: here
    a second late), then ended: the run it follows is the one it saw counted."""
    a = Env(tempfile.mkdtemp(prefix="qc-", dir="/tmp"))
    b = Env(tempfile.mkdtemp(prefix="qc-", dir="/tmp"))
    try:
        a.env["QUEUECTL_FAULTS"] = "start-wait=30"
        a.start_daemon("--store", pg_database, "--node", "a", "--workers", "1")
        b.start_daemon("--store", pg_database, "--node", "b", "--workers", "0")
        flag = os.path.join(a.home, "go")
        job = a.enqueue(command=gated(flag, "echo before", "echo out; echo err >&2"))
        wait_for(lambda: _shipped(pg_database, job), what="the first output in the database")
        assert (b.show(job)["state"], b.show(job)["attempts"]) == ("pending", 1)  # held
        follow = subprocess.Popen([QUEUECTL, "logs", job, "--follow"], stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, env=b.env)
        wait_for(lambda: os.path.exists(os.path.join(b.home, "output-db", job, "1.out")), what="the first look")
        open(flag, "w").close()
        out, err = follow.communicate(timeout=30)
        assert (follow.returncode, out, err) == (0, b"before\nout\n", b"err\n")
    finally:
        for e in (a, b):
            if e.daemon is not None and e.daemon.poll() is None:
                e.daemon.kill()
                e.daemon.wait()
            shutil.rmtree(e.home, ignore_errors=True)


def test_a_large_output_is_cut_as_on_the_node_that_ran_it(cluster: tuple[Env, Env]) -> None:
    a, b = cluster
    a.ok("config", "set", "output-limit", "64KiB")
    job = a.enqueue(command="i=0; while [ $i -lt 20000 ]; do echo line $i; i=$((i+1)); done")
    a.wait_state(job, "completed", timeout=60)
    on_a, on_b = a.q("logs", job, "--stdout"), b.q("logs", job, "--stdout")
    assert on_b.out == on_a.out and "bytes of output omitted" in on_b.out and on_b.out.endswith("line 19999\n")


def test_wait_on_another_node_ends_when_the_job_ends_there(cluster: tuple[Env, Env]) -> None:
    a, b = cluster
    flag = os.path.join(a.home, "go")
    job = a.enqueue(command=gated(flag, "true", "exit 3"), max_retries=0)
    wait = subprocess.Popen([QUEUECTL, "wait", job], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=b.env,
                            text=True)
    a.wait_state(job, "processing")
    open(flag, "w").close()
    out, err = wait.communicate(timeout=30)
    on_a = a.q("wait", job)
    assert (wait.returncode, out, err) == (on_a.code, on_a.out, on_a.err)
    assert b.show(job)["state"] == "dead"


def test_stats_on_any_node_count_the_cluster_s_runs(cluster: tuple[Env, Env]) -> None:
    a, b = cluster
    jobs = [a.enqueue(command="true") for _ in range(3)]
    for job in jobs:
        a.wait_state(job, "completed")

    def completed_on_b() -> bool:
        groups = b.ok("stats", "--json").json()["groups"]
        return any(g["group"] == "default" and g["completed"] == 3 for g in groups)

    wait_for(completed_on_b, what="node b's stats to count node a's runs")


def test_the_dashboard_of_a_node_that_runs_nothing_shows_the_cluster_s_jobs_and_their_output(
        cluster: tuple[Env, Env]) -> None:
    from tests.e2e.test_dashboard_http import Dash

    a, b = cluster
    go = os.path.join(a.home, "go")
    job = a.enqueue(command=gated(go, "echo first", "echo second"))
    a.wait_state(job, "processing")
    dash = Dash(b)
    try:
        assert dash.get(f"/api/jobs/{job}")["job"]["state"] == "processing"
        assert [j["id"] for j in dash.get("/api/jobs?state=processing")["jobs"]] == [job]

        def release_after_first(got: list[tuple[str, Any]]) -> bool:
            text = "".join(d["data"] for e, d in got if e == "output")
            if "first" in text and not os.path.exists(go):
                open(go, "w").close()
            return any(e == "end" for e, _ in got)

        got = dash.events(f"/api/jobs/{job}/events", release_after_first, timeout=30)
        assert "".join(d["data"] for e, d in got if e == "output") == "first\nsecond\n"
        states = [d["state"] for e, d in got if e == "job"]
        assert states[0] == "processing" and states[-1] == "completed"
        assert dash.get(f"/api/jobs/{job}/output?stream=stdout") == {"data": "first\nsecond\n", "offset": 13,
                                                                      "size": 13, "more": False}
        overview = dash.get("/api/overview")
        assert overview["workers"]["configured"] == 0, overview  # node b's own pool
        assert overview["jobs"]["completed"] == 1  # the cluster's counts
        wait_for(lambda: sum(m.get("completed", 0) for m in dash.get("/api/overview")["minutes"]) == 1,
                 what="node a's run in node b's chart")  # a saves its stats every 0.2 s here
    finally:
        code, err = dash.stop()
    assert code == 0 and "Traceback" not in err, err


def test_the_shell_of_another_node_runs_the_cluster_s_commands(cluster: tuple[Env, Env]) -> None:
    a, b = cluster
    job = a.enqueue(command="echo from-a", id="alpha")
    a.wait_state(job, "completed")
    r = b.q("shell", input="status\nshow alpha --json\nlogs alpha --stdout\nlist --state completed\nshow nope\n")
    assert r.code == 1 and "no job with id 'nope'" in r.err, r
    assert "completed 1" in r.out and '"id": "alpha"' in r.out and "from-a\n" in r.out, r.out
    assert b.q("shell", input="show nope\nlogs alpha\n").code == 0


@pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed")
def test_the_shell_completes_a_job_id_of_the_cluster_and_shows_its_logs(cluster: tuple[Env, Env],
                                                                      tmp_path: os.PathLike[str]) -> None:
    from tests.conftest import Terminal

    a, b = cluster
    a.enqueue(command="echo hello-from-a", id="bravo")
    a.wait_state("bravo", "completed")
    term = Terminal(os.path.join(str(tmp_path), "tmux.sock"), b.env, "queuectl shell")
    try:
        term.wait("queuectl>")
        term.type("logs bra")
        term.key("Tab")
        wait_for(lambda: term.prompt_line().rstrip() == "queuectl> logs bravo", what="the job id completed")
        term.key("Enter")
        term.wait("hello-from-a")
        assert not term.dead()
    finally:
        term.close()


def test_the_audit_trail_and_a_cancel_from_the_dashboard_of_a_node_that_did_not_enqueue(
        cluster: tuple[Env, Env]) -> None:
    from tests.e2e.test_dashboard_http import Dash

    a, b = cluster
    waiting = a.enqueue(command="true", run_at="2099-01-01T00:00:00Z", id="later")
    dash = Dash(b)
    try:
        assert dash.post(f"/api/jobs/{waiting}/cancel")[0] == 200
        assert a.show(waiting)["state"] == "dead"
        status, reply = dash.post(f"/api/jobs/{waiting}/cancel")
        assert status == 409 and waiting in reply["error"], reply  # the daemon's words, as on one machine
    finally:
        code, err = dash.stop()
    assert code == 0 and "Traceback" not in err, err
    b.ok("config", "set", "max-retries", "5")
    for e in (a, b):  # the same trail from either node
        trail = [(x["via"], x["action"]) for x in e.ok("audit", "--json").json() if x["via"] != "queuectld"]
        assert trail == [("cli", "enqueue"), ("dashboard", "cancel"), ("cli", "config set")], trail
