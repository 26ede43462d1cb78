"""`make demo-cluster`'s script runs to its end and shows what it says: two nodes, one killed, its jobs rescued."""

from __future__ import annotations

import os
import re
import subprocess
from typing import Any

from tests.conftest import BIN

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_demo_cluster_rescues_the_killed_nodes_jobs_and_completes_them_all(pg_server: Any) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("QUEUECTL_") or k == "QUEUECTL_TEST_PG"}
    env["PATH"] = BIN + os.pathsep + env.get("PATH", "")
    env["NO_COLOR"] = "1"
    r = subprocess.run(["bash", os.path.join(ROOT, "examples", "demo-cluster.sh")], capture_output=True, text=True,
                       env=env, timeout=300, stdin=subprocess.DEVNULL)
    out = r.stdout + r.stderr
    assert r.returncode == 0, out[-3000:]
    assert re.search(r"alpha\b.*\bup\b", out) and re.search(r"beta\b.*\bup\b", out), out
    assert re.search(r"beta +lost", out), out
    assert "error:         interrupted: node beta lost" in out, out
    assert re.search(r"completed 12 ", out), out
    assert "ran on alpha" in out, out
    assert not re.findall(r"^ +[A-Z_]+=", out, re.M), "the demo shows a job's environment"
    assert "demo over" in out
