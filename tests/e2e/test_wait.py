"""`queuectl wait` against a real daemon: at depth, deletes, --state, timeouts, a daemon restart."""

from __future__ import annotations

import json
import os
import pty
import shlex
import subprocess
import threading
from collections.abc import Iterator

import pytest

from tests.conftest import QUEUECTL, Env, daemon_pid, wait_for


@pytest.fixture
def d(env: Env) -> Env:
    env.start_daemon()
    return env


class TtyWait:
    """`queuectl wait ARGS` with its stderr on a pseudo-terminal, so that it draws its progress bar.

    The bar appears once the daemon has sent the set: from then on the wait is following it.
    """

    def __init__(self, env: Env, *args: str, then: str = ":", **extra_env: str) -> None:
        master, slave = pty.openpty()
        # `then` runs in the shell as soon as the wait returns, keeping its exit status.
        script = f'{shlex.quote(QUEUECTL)} wait "$@"; code=$?; {then}; exit $code'
        self.proc = subprocess.Popen(["sh", "-c", script, "sh", *args], env=dict(env.env, **extra_env),
                                     stdout=subprocess.PIPE, stderr=slave)
        os.close(slave)
        self.master = master
        self.screen = ""
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        while True:
            try:
                data = os.read(self.master, 4096)
            except OSError:  # EIO: the terminal's last reader is gone
                return
            if not data:
                return
            self.screen += data.decode(errors="replace")

    def drawn(self, text: str, timeout: float = 15.0) -> None:
        wait_for(lambda: text in self.screen, timeout, f"{text!r} in the bar (so far: {self.screen!r})")

    def end(self, timeout: float = 60.0) -> int:
        code = self.proc.wait(timeout)
        self.thread.join(5)
        os.close(self.master)
        return code

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture
def tty_waits() -> Iterator[list[TtyWait]]:
    started: list[TtyWait] = []
    yield started
    for w in started:
        w.kill()


def test_wait_returns_when_its_jobs_end_while_the_rest_of_a_deep_queue_still_waits(
    d: Env, tmp_path: os.PathLike[str], tty_waits: list[TtyWait]
) -> None:
    # 10,000 jobs start in the order they were enqueued; the wait is for the first 1,000.  The
    # 1,300th job looks for a file made the moment the wait returns: it must find it, i.e. the
    # wait was over before 300 more jobs had run (about 40 do here, against 360 to 2,900 when
    # `wait` polled).
    returned, probe = os.path.join(str(tmp_path), "returned"), os.path.join(str(tmp_path), "probe")
    jobs = ['{"command": "true"}\n'] * 10_000
    look = f"if [ -e {returned} ]; then echo after; else echo before; fi > {probe}"
    jobs[1299] = json.dumps({"command": look}) + "\n"
    ids = d.ok("enqueue", "-", input="".join(jobs)).out.split()
    w = TtyWait(d, *ids[:1000], then=f": > {returned}")
    tty_waits.append(w)
    w.drawn("] 0/1000  pending 1000")
    d.ok("worker", "start", "--count", "4", "--detach")
    assert w.end() == 0
    assert "1000/1000  completed 1000" in w.screen
    assert d.ok("status", "--json").json()["jobs"]["pending"] > 0  # the queue has not drained
    d.wait_state(ids[1299], "completed", timeout=60)
    with open(probe) as f:
        assert f.read() == "after\n", "the 1,300th job ran before the wait for the first 1,000 returned"


def test_a_job_deleted_mid_wait_counts_as_deleted(d: Env, tty_waits: list[TtyWait]) -> None:
    done = d.enqueue(command="true")
    later = d.enqueue(command="true", delay=3600)
    d.ok("worker", "start", "--count", "1", "--detach")
    d.wait_state(done, "completed")
    w = TtyWait(d, done, later)
    tty_waits.append(w)
    w.drawn("] 1/2")
    assert d.q("status").code == 0  # the daemon answers others meanwhile
    d.ok("delete", later)
    assert w.end() == 1
    assert "2/2  completed 1  deleted 1" in w.screen


def test_wait_state_follows_the_jobs_in_that_state_when_it_began(
    d: Env, tmp_path: os.PathLike[str], tty_waits: list[TtyWait]
) -> None:
    go, go2 = os.path.join(str(tmp_path), "go"), os.path.join(str(tmp_path), "go2")
    running = [d.enqueue(command=f"while [ ! -e {go} ]; do sleep 0.02; done") for _ in range(2)]
    d.ok("worker", "start", "--count", "2", "--detach")
    for job_id in running:
        d.wait_state(job_id, "processing")
    behind = d.enqueue(command=f"while [ ! -e {go2} ]; do sleep 0.02; done")
    w = TtyWait(d, "--state", "processing")
    tty_waits.append(w)
    w.drawn("] 0/2  processing 2")
    open(go, "w").close()
    assert w.end() == 0
    assert "2/2  completed 2" in w.screen
    assert d.show(behind)["state"] in ("pending", "processing")  # it entered processing after the wait began
    open(go2, "w").close()


def test_a_timed_out_wait_reports_each_jobs_latest_state(d: Env, tmp_path: os.PathLike[str]) -> None:
    go = os.path.join(str(tmp_path), "go")
    running = d.enqueue(command=f"while [ ! -e {go} ]; do sleep 0.02; done")
    done = d.enqueue(command="true")
    later = d.enqueue(command="true", delay=3600)
    d.ok("worker", "start", "--count", "2", "--detach")
    d.wait_state(running, "processing")
    d.wait_state(done, "completed")
    r = d.q("wait", running, done, later, "--timeout", "0.3", "--json")
    assert r.code == 124, r
    assert r.json() == [{"id": running, "state": "processing"}, {"id": done, "state": "completed"},
                        {"id": later, "state": "pending"}]
    r = d.q("wait", running, later, "--timeout", "0.3")
    assert r.code == 124 and r.err == "queuectl: timed out with 2 job(s) not final\n", r
    assert d.q("wait", done, "--timeout", "0").code == 0  # final already: no time needed
    open(go, "w").close()
    assert d.q("wait", running, "--timeout", "60").code == 0


def test_a_wait_goes_on_across_a_daemon_restart(d: Env, tty_waits: list[TtyWait]) -> None:
    job = d.enqueue(command="true")
    gone = d.enqueue(command="true", delay=3600)
    old = daemon_pid(d.home)
    w = TtyWait(d, job, gone, QUEUECTL_NO_AUTOSTART="0")  # it may start a daemon, as a user's would
    tty_waits.append(w)
    w.drawn("] 0/2")
    d.stop_daemon(9)  # no time to end the wait: the client finds its connection gone
    # The wait reconnects, which starts a daemon, and waits for the jobs still open there.
    wait_for(lambda: os.path.exists(os.path.join(d.home, "queuectld.lock")) and daemon_pid(d.home) != old
             and d.q("status").code == 0, 20, "a new daemon")
    d.ok("delete", gone)
    d.ok("worker", "start", "--count", "1", "--detach")
    assert w.end() == 1
    assert "2/2  completed 1  deleted 1" in w.screen
