"""A foreground `worker start` whose daemon goes away: stopped on purpose, crashed, or gone when asked to stop."""

from __future__ import annotations

import fcntl
import os
import select
import signal
import subprocess
import time

from tests.conftest import QUEUECTL, Env, _kill_daemon_of, pid_alive, wait_for


class Follower:
    """`queuectl worker start --count N` in the foreground, its stderr read as it comes."""

    def __init__(self, env: dict[str, str], count: int) -> None:
        self.proc = subprocess.Popen([QUEUECTL, "worker", "start", "--count", str(count)], env=env,
                                     stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        assert self.proc.stderr is not None
        self.fd = self.proc.stderr.fileno()
        self.err = ""

    def _read(self, timeout: float) -> bool:
        """Read what is there within `timeout` s; False at the end of the stream."""
        ready, _, _ = select.select([self.fd], [], [], timeout)
        if not ready:
            return True
        chunk = os.read(self.fd, 65536)
        self.err += chunk.decode(errors="replace")
        return bool(chunk)

    def wait_for(self, text: str, timeout: float = 15) -> None:
        deadline = time.monotonic() + timeout
        while text not in self.err:
            left = deadline - time.monotonic()
            assert left > 0, f"timed out waiting for {text!r} on the follower's stderr: {self.err!r}"
            if not self._read(min(left, 0.5)):
                assert text in self.err, f"the follower ended without saying {text!r}: {self.err!r}"

    def exit_code(self, timeout: float = 15) -> int:
        deadline = time.monotonic() + timeout
        while self._read(max(0.0, min(deadline - time.monotonic(), 0.5))):
            assert time.monotonic() < deadline, f"the follower did not exit within {timeout} s: {self.err!r}"
        return self.proc.wait(max(1.0, deadline - time.monotonic()))

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        assert self.proc.stderr is not None
        self.proc.stderr.close()


def _lock_is_free(home: str) -> bool:
    """Whether no daemon holds the home's lock."""
    fd = os.open(os.path.join(home, "queuectld.lock"), os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except BlockingIOError:
        return False
    finally:
        os.close(fd)


def test_a_stop_asked_while_the_daemon_is_gone_is_tried_once_then_it_leaves(env: Env) -> None:
    env.start_daemon()
    fg = Follower(env.env, 1)  # QUEUECTL_NO_AUTOSTART=1: nothing brings the daemon back
    try:
        fg.wait_for("1 worker(s) started")
        env.stop_daemon(signal.SIGKILL)
        fg.wait_for("lost queuectld")
        t0 = time.monotonic()
        fg.proc.send_signal(signal.SIGTERM)
        assert fg.exit_code(10) == 3, fg.err
        assert time.monotonic() - t0 < 5, fg.err
        assert fg.err.count("stopping: no new job starts") == 1, fg.err
        assert fg.err.count("queuectl: could not stop the pool: cannot connect to") == 1, fg.err
        assert "reconnected" not in fg.err and "Traceback" not in fg.err, fg.err
    finally:
        fg.close()


def test_a_stop_asked_while_reconnecting_stops_the_daemon_that_is_back_and_exits_0(env: Env) -> None:
    env.start_daemon()
    fg = Follower(env.env, 1)
    try:
        fg.wait_for("1 worker(s) started")
        env.stop_daemon(signal.SIGKILL)
        fg.wait_for("lost queuectld")
        env.start_daemon()  # a daemon is back (systemd, another command); the follower may not have seen it yet
        fg.proc.send_signal(signal.SIGTERM)
        assert fg.exit_code(15) == 0, fg.err
        assert env.ok("status", "--json").json()["workers"]["configured"] == 0
        assert fg.err.rstrip().endswith("workers stopped"), fg.err
    finally:
        fg.close()


def test_a_daemon_stopped_on_purpose_is_left_stopped(env: Env) -> None:
    env.start_daemon()
    follow = dict(env.env)
    del follow["QUEUECTL_NO_AUTOSTART"]  # it would start a daemon, as after a crash
    fg = Follower(follow, 2)
    try:
        fg.wait_for("2 worker(s) started")
        assert env.daemon is not None
        pid = env.daemon.pid
        assert env.stop_daemon(signal.SIGTERM) == 0  # as `systemctl stop` does
        assert fg.exit_code(15) == 3, fg.err
        assert fg.err.count(f"queuectl: queuectld (pid {pid}) is stopping\n") == 1, fg.err
        assert "reconnect" not in fg.err, fg.err
        assert _lock_is_free(env.home), "a daemon was started again"
        with open(os.path.join(env.home, "queuectld.lock")) as f:
            assert f.read() == f"{pid} stopping\n"
    finally:
        fg.close()


def test_a_follower_leaves_as_soon_as_the_stop_begins_while_jobs_still_run(
    env: Env, tmp_path: os.PathLike[str]
) -> None:
    go = os.path.join(str(tmp_path), "go")
    env.start_daemon("--grace", "30")
    job_id = env.enqueue(command=f"while [ ! -e {go} ]; do sleep 0.02; done")
    follow = dict(env.env)
    del follow["QUEUECTL_NO_AUTOSTART"]
    fg = Follower(follow, 1)
    try:
        env.wait_state(job_id, "processing")
        assert env.daemon is not None
        env.daemon.send_signal(signal.SIGTERM)
        # The daemon says so on the stream when the stop begins: the follower leaves while the job runs.
        assert fg.exit_code(10) == 3, fg.err
        assert env.daemon.poll() is None and env.show(job_id)["state"] == "processing"
        assert fg.err.count("is stopping") == 1 and "reconnect" not in fg.err, fg.err
    finally:
        open(go, "w").close()
        fg.close()
    assert env.daemon.wait(15) == 0
    env.daemon = None


def test_a_lost_daemon_whose_lock_says_it_was_stopping_is_not_started_again(env: Env) -> None:
    env.start_daemon()
    fg = Follower(env.env, 1)
    try:
        fg.wait_for("1 worker(s) started")
        assert env.daemon is not None
        pid = env.daemon.pid
        env.stop_daemon(signal.SIGKILL)  # as systemd does to a daemon whose stop outlasted TimeoutStopSec
        fg.wait_for("lost queuectld")
        with open(os.path.join(env.home, "queuectld.lock"), "w") as f:
            f.write(f"{pid} stopping\n")
        assert fg.exit_code(10) == 3, fg.err
        assert fg.err.endswith(f"queuectl: queuectld (pid {pid}) was stopped\n"), fg.err
    finally:
        fg.close()


def test_a_crashed_daemon_is_still_started_again(env: Env) -> None:
    env.start_daemon()
    follow = dict(env.env)
    del follow["QUEUECTL_NO_AUTOSTART"]
    fg = Follower(follow, 1)
    try:
        fg.wait_for("1 worker(s) started")
        env.stop_daemon(signal.SIGKILL)
        fg.wait_for("reconnected to queuectld")
        assert fg.proc.poll() is None
        env.ok("worker", "stop")
        assert fg.exit_code(15) == 0, fg.err
    finally:
        fg.close()


def test_ctrl_c_stops_the_pool_when_the_socket_is_in_xdg_runtime_dir(env: Env) -> None:
    state, runtime = os.path.join(env.home, "state"), os.path.join(env.home, "run")
    os.mkdir(runtime, 0o700)
    xdg = {k: v for k, v in env.env.items() if k != "QUEUECTL_HOME"}
    xdg.update(XDG_STATE_HOME=state, XDG_RUNTIME_DIR=runtime, QUEUECTL_NO_AUTOSTART="0")
    fg = Follower(xdg, 1)
    try:
        fg.wait_for("1 worker(s) started")
        assert os.path.exists(os.path.join(runtime, "queuectl", "queuectld.sock"))
        fg.proc.send_signal(signal.SIGINT)
        assert fg.exit_code(15) == 0, fg.err
        status = subprocess.run([QUEUECTL, "status", "--json"], env=xdg, capture_output=True, text=True, timeout=30)
        assert '"configured": 0' in status.stdout, status
    finally:
        fg.close()
        with open(os.path.join(state, "queuectl", "queuectld.lock")) as f:
            pid = int(f.read().split()[0])
        _kill_daemon_of(os.path.join(state, "queuectl"))
        wait_for(lambda: not pid_alive(pid), what="the daemon to exit")
