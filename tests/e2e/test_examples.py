"""The examples run as the README says, against a real daemon, and show what they claim."""

from __future__ import annotations

import os
import re
import subprocess

import pytest

from tests.conftest import BIN, Env

EXAMPLES = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "examples")


@pytest.mark.parametrize(("script", "expected"), [
    ("convert/run.sh", [r"completed  [23]/5", r"\.csv\.gz"]),
    ("fetch/run.sh", ["attempts: +3 of at most 4", "report for daily.csv: 42 rows",
                      r"attempts: +1 of at most 4\n(.*\n)*error: +exited with status 1; exit 1 is not retried"]),
    ("backup/run.sh", ["home.tar.gz", "timed out after 2 s", "upload-.*  dead"]),
    ("priorities/run.sh", ["the order they ran in:\npage-oncall\nrebuild-index\nreport-a\nreport-b\nreport-c"]),
    ("groups/run.sh", ["start db\n(thumbnail \\d\n)*end db\n(thumbnail \\d\n)*start web\n(thumbnail \\d\n)*end web",
                       r"backups  running 0 of 1  pending 1  paused", "cancelled 1 job", r"error: +cancelled"]),
    ("scheduled/run.sh", ["runs in", "report generated at", "reminder sent at"]),
    ("pipeline/run.sh", [r"blocked by fetch-\d+", r"waiting for dependency transform-\d+ \(pending\)",
                         "loaded 5 rows", r"dead: dependency fetch2-\d+ is dead", "loaded again",
                         r"(sync-\d+)\n\n.*\n\1\n", r"group default paused", r"nightly-\d+ +30 2 \* \* \*"]),
    ("python_api/enqueue_and_wait.py", [r"completed after 1 run\(s\): 25", r"dead after 1 run\(s\): no such tool",
                                        "refused as expected"]),
])
def test_example(env: Env, script: str, expected: list[str]) -> None:
    """`expected`: regular expressions its output must match."""
    env.start_daemon()
    env.ok("config", "set", "backoff-base", "1.5")
    command = ["python" if script.endswith(".py") else "bash", os.path.join(EXAMPLES, script)]
    proc = subprocess.run(command, env=dict(env.env, PATH=BIN + ":" + os.environ["PATH"]), capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    for pattern in expected:
        assert re.search(pattern, proc.stdout), (pattern, proc.stdout)
    assert "Traceback" not in proc.stderr


@pytest.mark.parametrize("script", ["priorities/run.sh", "python_api/enqueue_and_wait.py"])
def test_an_example_run_without_a_home_uses_one_of_its_own(tmp_path: os.PathLike[str], script: str) -> None:
    import shutil
    import tempfile

    from tests.conftest import _kill_daemon_of

    user_state = os.path.join(str(tmp_path), "state")  # where the user's own queue would be
    tmp = tempfile.mkdtemp(prefix="qx-", dir="/tmp")  # short: the example's socket lives under it
    env = {k: v for k, v in os.environ.items() if not k.startswith(("QUEUECTL_", "XDG_"))}
    env.update(PATH=BIN + ":" + os.environ["PATH"], HOME=str(tmp_path), XDG_STATE_HOME=user_state, TMPDIR=tmp)
    command = ["python" if script.endswith(".py") else "bash", os.path.join(EXAMPLES, script)]
    try:
        proc = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert not os.path.exists(os.path.join(user_state, "queuectl")), "the example used the user's queue"
        assert os.listdir(tmp) == [], "the example left its home behind"
        for pid in filter(str.isdigit, os.listdir("/proc")):
            try:
                with open(f"/proc/{pid}/cmdline", "rb") as f:
                    assert tmp.encode() not in f.read(), f"the example left its daemon (pid {pid}) running"
            except OSError:
                pass
    finally:
        _kill_daemon_of(os.path.join(user_state, "queuectl"))
        for name in os.listdir(tmp):
            _kill_daemon_of(os.path.join(tmp, name))
        shutil.rmtree(tmp, ignore_errors=True)
