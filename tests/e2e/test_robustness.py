"""No single job, setting or signal may stop the queue, break a read command, or keep the daemon from starting."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time

from queuectl_client import Client
from queuectl_client.protocol import JobSpec
from queuectld import events as ev
from queuectld.journal import Journal
from queuectld.model import NewJob
from tests.conftest import QUEUECTLD, Env, pid_alive, wait_for


def _write_journal(path: str, events: list[ev.Event]) -> None:
    """Records as a daemon of an earlier version could have committed them."""

    async def write() -> None:
        j = Journal(path)
        for _ in j.open():
            pass
        j.write(events)
        await j.commit()
        j.close()

    asyncio.run(write())


def test_committed_records_that_cannot_run_never_stop_the_queue_or_a_start(env: Env) -> None:
    _write_journal(os.path.join(env.home, "journal"), [
        ev.ConfigChanged("max-retries", "99999999999999999999999999"),
        ev.Added(time.time(), [
            NewJob("nul-command", "echo a\x00b", 0, 0, None, None, None),
            NewJob("nul-cwd", "true", 0, 0, None, None, "/tmp\x00x"),
            NewJob("far", "true", 0, 0, 1e18, None, None),
            NewJob("good", "echo ok", 0, 0, None, None, None),
        ]),
    ])
    env.start_daemon("--workers", "2")
    for job_id in ("nul-command", "nul-cwd"):
        job = env.wait_state(job_id, "dead")
        assert job["error_message"].startswith("cannot start:") and "null" in job["error_message"], job
    env.wait_state("good", "completed")
    assert env.show("far")["state"] == "pending"
    assert env.ok("config", "get", "max-retries").out.strip() == "3"  # the stored value was not usable
    assert "ignoring the stored setting max-retries" in env.log()
    assert env.q("list").code == 0 and env.q("list", "--json").code == 0 and env.q("show", "far").code == 0
    later = env.enqueue(command="true")
    env.wait_state(later, "completed")
    env.stop_daemon()
    env.start_daemon()  # and again, with those records replayed
    assert env.show("good")["state"] == "completed"


def test_out_of_range_numbers_are_refused_at_the_boundary(env: Env) -> None:
    env.start_daemon("--workers", "0")
    for key, value in (("max-retries", "99999999999999999999999999"), ("job-timeout", "1e18"),
                       ("output-limit", "10T"), ("backoff-base", "0.99")):
        r = env.q("config", "set", key, value)
        assert r.code == 2 and key in r.err, r
    for job in ('{"command":"true","max_retries":99999999999999999999999}', '{"command":"true","priority":1e300}',
                '{"command":"true","delay":1e18}', '{"command":"true","timeout":1e18}',
                '{"command":"true","run_at":300000000000}', '{"command":"echo a\\u0000b"}',
                '{"command":"true","cwd":"/tmp\\u0000"}'):
        r = env.q("enqueue", job)
        assert r.code == 2 and r.err.count("\n") == 1, (job, r)
    assert env.jobs() == []
    assert env.q("config", "set", "backoff-base", "1").code == 0
    assert env.ok("config", "get", "backoff-base").out.strip() == "1"


def test_jobs_run_in_a_directory_replaced_since_the_last_job(env: Env, tmp_path: os.PathLike[str]) -> None:
    work = os.path.join(str(tmp_path), "build")
    os.mkdir(work)
    env.start_daemon("--workers", "1")
    with Client(env.home, autostart=False) as c:
        first = c.enqueue("echo one > out", cwd=work)
        c.wait_for(first)
        os.rename(work, work + ".old")
        os.mkdir(work)
        second = c.enqueue("echo two > out", cwd=work)
        assert c.wait_for(second).state == "completed"
    with open(os.path.join(work, "out")) as f:
        assert f.read() == "two\n"
    with open(os.path.join(work + ".old", "out")) as f:
        assert f.read() == "one\n"


def _processes_with(marker: str) -> list[int]:
    found = []
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                with open(f"/proc/{name}/cmdline", "rb") as f:
                    if marker.encode() in f.read() and pid_alive(int(name)):
                        found.append(int(name))
            except OSError:
                pass
    return found


ESCAPE = """import os, sys, time
os.setpgid(0, 0)
with open(sys.argv[1], "w") as f:
    f.write(str(os.getpid()))
time.sleep(300)
"""


def test_processes_that_leave_the_job_group_die_with_the_job(env: Env, tmp_path: os.PathLike[str]) -> None:
    script = os.path.join(str(tmp_path), "escape.py")
    with open(script, "w") as f:
        f.write(ESCAPE)
    py = sys.executable
    pid = {name: os.path.join(str(tmp_path), name) for name in ("timed-out", "ended", "setpgid", "double-fork")}
    env.start_daemon("--workers", "4")
    cases = {
        # GNU timeout calls setpgid itself; here the job's own timeout kills the shell.
        "timed-out": (f"timeout 300 sleep 313 & echo $! > {pid['timed-out']}; sleep 300",
                      {"timeout": 1, "max_retries": 0}),
        # The same, at a normal end.
        "ended": (f"timeout 300 sleep 316 & echo $! > {pid['ended']}; sleep 0.5", {}),
        # A process that calls setpgid, and one that is also double-forked away from the shell.
        "setpgid": (f"{py} {script} {pid['setpgid']} & sleep 1", {}),
        "double-fork": (f"( {py} {script} {pid['double-fork']} & ); sleep 1", {}),
    }
    for job_id, (command, fields) in cases.items():
        env.enqueue(id=job_id, command=command, **fields)
    for job_id, (_, fields) in cases.items():
        env.wait_state(job_id, "dead" if "timeout" in fields else "completed")
        with open(pid[job_id]) as f:
            escaped = int(f.read())
        wait_for(lambda p=escaped: not pid_alive(p), 5, f"{job_id}'s escaped process {escaped} to be killed")
    assert not _processes_with("sleep 313") and not _processes_with("sleep 316")
    zombies = subprocess.run(["ps", "-o", "stat=", "--ppid", str(env.daemon.pid)],  # type: ignore[union-attr]
                             capture_output=True, text=True).stdout.split()
    assert not [z for z in zombies if z.startswith("Z")]


def test_a_stopping_daemon_answers_reads_and_says_it_is_stopping(env: Env) -> None:
    env.start_daemon("--workers", "1", "--grace", "25")
    job_id = env.enqueue(command="sleep 300")
    env.wait_state(job_id, "processing")
    assert env.daemon is not None
    env.daemon.send_signal(signal.SIGTERM)
    wait_for(lambda: "stopping" in open(os.path.join(env.home, "queuectld.lock")).read(), what="the stop to begin")
    with Client(env.home, autostart=False) as c:
        assert c.status().stopping and c.server is not None and c.server.stopping
        assert c.show(job_id).state == "processing"
        queued = c.enqueue("true")  # kept for the next start
    r = env.q("worker", "start", "--count", "2", "--detach")
    assert r.code == 3 and "stopping" in r.err, r
    t0 = time.monotonic()
    env.daemon.send_signal(signal.SIGTERM)  # the second signal: exit now
    assert env.daemon.wait(10) == 0
    assert time.monotonic() - t0 < 5
    env.daemon = None
    env.start_daemon("--workers", "0")
    assert env.show(job_id)["error_message"].startswith("interrupted")
    assert env.show(queued)["state"] == "pending"


def test_past_the_grace_period_jobs_get_sigterm_then_sigkill(env: Env, tmp_path: os.PathLike[str]) -> None:
    termed = os.path.join(str(tmp_path), "termed")
    env.start_daemon("--workers", "2", "--grace", "0.5")
    polite = env.enqueue(command=f"trap 'echo yes > {termed}; exit 0' TERM; sleep 300 & wait")
    stubborn = env.enqueue(command="trap '' TERM; while :; do sleep 0.1; done")
    env.wait_state(polite, "processing")
    env.wait_state(stubborn, "processing")
    t0 = time.monotonic()
    assert env.stop_daemon(signal.SIGTERM) == 0
    took = time.monotonic() - t0
    assert os.path.exists(termed)  # SIGTERM came first
    assert 3.0 <= took < 8.0, took  # grace, then KILL_GRACE for the stubborn one
    assert not _processes_with("while :; do sleep 0.1")


def test_a_signal_during_replay_stops_the_daemon_cleanly(env: Env) -> None:
    env.start_daemon("--workers", "0")
    with Client(env.home, autostart=False) as c:
        c.enqueue_many([{"command": "true"}] * 300_000)
    env.stop_daemon()
    open(env.log_path, "w").close()
    log = open(env.log_path, "ab")
    daemon = subprocess.Popen([QUEUECTLD, "--home", env.home], stdout=log, stderr=log, env=env.env)
    log.close()
    wait_for(lambda: "replaying the journal" in env.log(), what="the replay to begin")
    daemon.send_signal(signal.SIGTERM)
    assert daemon.wait(30) == 0, env.log()
    assert "stopped" in env.log()


def test_a_missing_home_directory_runs_jobs_in_the_root(env: Env, tmp_path: os.PathLike[str]) -> None:
    out = os.path.join(str(tmp_path), "where")
    env.env["HOME"] = "/nonexistent/home"
    env.start_daemon("--workers", "1")
    with Client(env.home, autostart=False) as c:
        [job_id] = c.enqueue_specs([JobSpec(command=f"pwd > {out}")], cwd=None)
        assert c.wait_for(job_id).state == "completed"
    with open(out) as f:
        assert f.read() == "/\n"


def test_show_and_list_name_the_worker_holding_a_running_job(env: Env) -> None:
    env.start_daemon("--workers", "1")
    job_id = env.enqueue(command="sleep 300", max_retries=0)
    job = env.wait_state(job_id, "processing")
    assert job["locked_by"].endswith("/1") and job["locked_at"] == job["started_at"]
    assert [j["locked_by"] for j in env.jobs("processing")] == [job["locked_by"]]
    env.stop_daemon(signal.SIGKILL)
    env.start_daemon("--workers", "0")
    job = env.show(job_id)
    assert job["locked_by"] is None and job["locked_at"] is None


def test_a_setsid_child_outlives_its_job_and_other_jobs_ends_never_touch_it(
    env: Env, tmp_path: os.PathLike[str]
) -> None:
    pidfile = os.path.join(str(tmp_path), "detached")
    env.start_daemon("--workers", "2")
    # The documented way to leave something running: a session of its own.
    long = env.enqueue(command=f"(setsid sh -c 'echo $$ > {pidfile}; exec sleep 351' &); sleep 300", max_retries=0)
    env.wait_state(long, "processing")
    wait_for(lambda: os.path.exists(pidfile) and open(pidfile).read().strip(), what="the detached process")
    with open(pidfile) as f:
        detached = int(f.read())
    quick = env.enqueue(command="echo quick")
    env.wait_state(quick, "completed")
    short = env.enqueue(command="sleep 0.2")
    env.wait_state(short, "completed")
    assert pid_alive(detached)  # another job's end leaves it alone
    env.ok("delete", quick)
    os.kill(detached, signal.SIGKILL)


def test_jobs_get_the_default_action_of_every_signal(env: Env, tmp_path: os.PathLike[str]) -> None:
    out = os.path.join(str(tmp_path), "sig")
    env.start_daemon("--workers", "1")
    job_id = env.enqueue(command=f"grep -E '^Sig(Ign|Blk)' /proc/self/status > {out}; yes | head -c 10 > /dev/null")
    env.wait_state(job_id, "completed")
    with open(out) as f:
        masks = dict(line.split(":\t") for line in f.read().splitlines())
    # Signals 1-31 (32 and 33 are glibc's own, which it sets up in every process).
    assert int(masks["SigBlk"], 16) & 0x7FFFFFFF == 0 and int(masks["SigIgn"], 16) & 0x7FFFFFFF == 0, masks
    assert env.ok("logs", job_id, "--stderr").out == ""  # `yes` ended by SIGPIPE, not by an EPIPE message


def test_a_page_of_long_commands_still_lists(env: Env) -> None:
    env.start_daemon("--workers", "0")
    command = "echo " + "x" * 130_000
    with Client(env.home, autostart=False) as c:
        c.enqueue_many([{"command": command}] * 140)
    assert len(env.jobs()) == 140
    assert len(env.ok("list", "--quiet").out.split()) == 140


def test_a_stop_ends_the_follow_streams_with_a_word_that_it_is_a_stop(env: Env) -> None:
    env.start_daemon("--workers", "0")
    env.enqueue(command="sleep 0.5")
    with Client(env.home, autostart=False) as c:
        events = c.events(start=1)
        next(events)  # the job started: the stream is open
        assert env.daemon is not None
        env.daemon.send_signal(signal.SIGTERM)
        try:
            for _ in events:
                pass
            raise AssertionError("the stream ended without a word")
        except Exception as e:  # RequestFailed, from the Error frame
            assert getattr(e, "code", None) == "stopping" and "is stopping" in str(e), e
    assert env.daemon.wait(10) == 0
    env.daemon = None


def test_a_job_object_printed_by_show_enqueues_again_under_a_new_id(env: Env) -> None:
    env.start_daemon("--workers", "0")
    job = env.ok("enqueue", '{"command": "echo hi", "id": "first", "delay": 3600}', "--json").json()[0]
    job.update(id="second")
    job.pop("run_at")
    assert env.q("enqueue", json.dumps(job)).code == 0
    assert env.show("second")["command"] == "echo hi"
