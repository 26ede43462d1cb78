"""The tools users would otherwise pick, on the same workload: task-spooler and huey (SQLite),
and the baselines that are not queues at all: `xargs -P 4` and GNU `parallel -j 4`.

Each peer is installed if it can be (task-spooler and GNU parallel from Debian's
packages, huey from PyPI) and skipped with a clear message otherwise.
"""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from typing import Any

Say = Callable[[str], None]


def measure(n: int, reps: int, say: Say) -> dict[str, Any]:
    return {"task-spooler (tsp)": _tsp(n, reps, say), "huey (SqliteHuey)": _huey(n, reps, say)}


def _apt_install(package: str, say: Say) -> None:
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        return
    say(f"installing {package} from Debian's packages")
    subprocess.run(["apt-get", "update", "-qq"], capture_output=True)
    subprocess.run(["apt-get", "install", "-y", "-qq", package], capture_output=True)


# --- xargs -P and GNU parallel: no queue, no journal -------------------------------------


def commands_file(commands: list[str]) -> str:
    """The commands one a line, in a temporary file for xargs and parallel to read."""
    fd, path = tempfile.mkstemp(prefix="qc-bench-cmds-", dir="/tmp")
    with os.fdopen(fd, "w") as f:
        f.write("".join(c + "\n" for c in commands))
    return path


def xargs_wall(path: str, workers: int = 4) -> float:
    """Seconds for `xargs -P 4 -n 1 sh -c` to run every line of `path` (a line is one argument)."""
    with open(path, "rb") as f:
        t = time.perf_counter()
        subprocess.run(["xargs", "-d", "\\n", "-P", str(workers), "-n", "1", "sh", "-c"], stdin=f,
                       stdout=subprocess.DEVNULL, check=True)
        return time.perf_counter() - t


def ensure_parallel(say: Say) -> str | None:
    """GNU parallel's path, installed from Debian's packages if it can be; None if it cannot."""
    found = shutil.which("parallel")
    if found is None:
        _apt_install("parallel", say)
        found = shutil.which("parallel")
    if found is None:
        return None
    # moreutils ships another `parallel`, which takes no commands on stdin.
    out = subprocess.run([found, "--version"], capture_output=True, text=True)
    return found if "GNU parallel" in out.stdout else None


def parallel_wall(parallel: str, path: str, workers: int = 4) -> float:
    """Seconds for `parallel -j 4 sh -c` to run every line of `path` (each as `sh -c LINE`, as xargs)."""
    with open(path, "rb") as f:
        t = time.perf_counter()
        subprocess.run([parallel, "--will-cite", "-j", str(workers), "sh", "-c"], stdin=f,
                       stdout=subprocess.DEVNULL, check=True)
        return time.perf_counter() - t


# --- task-spooler ---------------------------------------------------------------------


def _ensure_tsp(say: Say) -> str | None:
    found = shutil.which("tsp") or shutil.which("ts")
    if found:
        return found
    _apt_install("task-spooler", say)
    return shutil.which("tsp")


def _tsp(n: int, reps: int, say: Say) -> dict[str, Any]:
    tsp = _ensure_tsp(say)
    if tsp is None:
        return {"skipped": "task-spooler is not installed and cannot be (needs root and apt-get)"}
    # Every queued tsp job is a waiting process with a connection to the server, which takes at most
    # 1,000 connections (MAXCONN): more than that and enqueueing blocks.
    n = min(n, 900)
    say(f"peer: task-spooler, {n} trivial jobs on 4 slots")
    drains, enqueues = [], []
    for _ in range(reps):
        d = tempfile.mkdtemp(prefix="qc-tsp-", dir="/tmp")
        env = dict(os.environ, TS_SOCKET=os.path.join(d, "sock"), TMPDIR=d, TS_MAXFINISHED=str(n + 10),
                   TS_SAVELIST="", TS_ONFINISH="")
        fifo = os.path.join(d, "gate")
        os.mkfifo(fifo)

        def ts(*args: str, env: dict[str, str] = env) -> None:
            # tsp forks a process that waits to run the job and keeps stdout open: no pipe here.
            subprocess.run([tsp, *args], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)

        try:
            ts("-S", "4")
            for _ in range(4):  # hold every slot while the queue fills
                ts("-n", "sh", "-c", f"read x < {fifo}")
            t = time.perf_counter()
            for _ in range(n):
                ts("-n", "true")
            enqueues.append(n / (time.perf_counter() - t))
            t = time.perf_counter()
            with open(fifo, "w") as f:
                f.write("go\n" * 4)
            ts("-w", str(n + 3))  # ids count from 0: the gates are 0-3
            drains.append(n / (time.perf_counter() - t))
        finally:
            subprocess.run([tsp, "-K"], env=env, capture_output=True)
            shutil.rmtree(d, ignore_errors=True)
    return {"drain": statistics.median(drains), "enqueue": statistics.median(enqueues),
            "note": "C, memory only; enqueue: one `tsp` call per job; at most ~1,000 queued",
            "by_depth": {0: statistics.median(drains)}}


# --- huey -----------------------------------------------------------------------------

_TASKS = '''
import os, subprocess
from huey import SqliteHuey
huey = SqliteHuey(filename=os.environ["BENCH_HUEY_DB"], results=False)
MARKS = os.environ["BENCH_HUEY_MARKS"]

@huey.task()
def run(cmd):
    subprocess.run(cmd, shell=True)
    with open(MARKS, "a") as f:
        f.write("x")
'''


def _huey(n: int, reps: int, say: Say) -> dict[str, Any]:
    try:
        import huey  # noqa: F401
    except ImportError:
        say("installing huey from PyPI")
        r = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "huey"], capture_output=True, text=True)
        if r.returncode != 0:
            return {"skipped": f"huey could not be installed: {r.stderr.strip().splitlines()[-1:]}"}
    consumer = shutil.which("huey_consumer", path=os.path.dirname(sys.executable)) or shutil.which(
        "huey_consumer.py", path=os.path.dirname(sys.executable))
    if consumer is None:
        return {"skipped": "huey is installed but its consumer script was not found"}
    say(f"peer: huey with SqliteHuey, {n} tasks running `true` on 4 process workers")
    drains, enqueues = [], []
    for _ in range(reps):
        d = tempfile.mkdtemp(prefix="qc-huey-", dir="/tmp")
        with open(os.path.join(d, "bench_tasks.py"), "w") as f:
            f.write(_TASKS)
        marks = os.path.join(d, "marks")
        env = dict(os.environ, BENCH_HUEY_DB=os.path.join(d, "huey.db"), BENCH_HUEY_MARKS=marks,
                   PYTHONPATH=d)
        enqueue = (
            "import time, bench_tasks as t\n"
            f"s = time.perf_counter()\nfor _ in range({n}): t.run('true')\n"
            "print(time.perf_counter() - s)\n"
        )
        out = subprocess.run([sys.executable, "-c", enqueue], env=env, capture_output=True, text=True, check=True)
        enqueues.append(n / float(out.stdout))
        t = time.perf_counter()
        proc = subprocess.Popen([consumer, "bench_tasks.huey", "-w", "4", "-k", "process"], env=env, cwd=d,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            while not os.path.exists(marks) or os.path.getsize(marks) < n:
                time.sleep(0.005)
            drains.append(n / (time.perf_counter() - t))
        finally:
            proc.terminate()
            proc.wait(30)
            shutil.rmtree(d, ignore_errors=True)
    return {"drain": statistics.median(drains), "enqueue": statistics.median(enqueues),
            "note": "Python, SQLite; enqueue: one call per task from Python; drain includes consumer start",
            "by_depth": {0: statistics.median(drains)}}
