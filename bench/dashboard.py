"""What an open dashboard costs the queue (targets 17 and 18 of `make bench`).

Throughput of trivial jobs on 4 workers with no dashboard, and with `queuectl dashboard` running and
two tabs of headless chromium open on it and updating (the overview, and the jobs table, which
refetches its page at each push): the two alternate, each in a fresh daemon, in pairs whose order
alternates too, and the report gives the medians and the median of the pairs' ratios.  Then the
dispatch latency (enqueue to start, one idle worker) with the same tabs open, beside the same
measure without, in blocks that alternate in one daemon.

    .venv/bin/python bench/run.py --dashboard-only [--quick]
"""

from __future__ import annotations

import os
import queue
import re
import shutil
import socket
import statistics
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import Any

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
SETTLE = 3.0  # seconds between opening the tabs and measuring
BLOCKS = 3  # dispatch samples alternate without and with the dashboard in this many blocks each
URL_LINE = re.compile(r"dashboard: (https?://\S+)")

Daemon = Callable[[], AbstractContextManager[tuple[str, Any, Any]]]


def missing() -> str | None:
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "Playwright is not installed (pip install -e '.[test]')"
    if not os.access(CHROMIUM, os.X_OK):
        return f"no chromium at {CHROMIUM} (apt-get install chromium)"
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _parents() -> dict[int, int]:
    out = {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                with open(f"/proc/{name}/stat") as f:
                    out[int(name)] = int(f.read().rsplit(") ", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                pass
    return out


def tree(root: int) -> set[int]:
    """`root` and every process below it."""
    parents = _parents()
    found, grew = {root}, True
    while grew:
        more = {pid for pid, ppid in parents.items() if ppid in found} - found
        found |= more
        grew = bool(more)
    return found


def cpu_seconds(pids: set[int]) -> float:
    """User and system CPU time the live processes `pids` used so far."""
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(") ", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
        except (OSError, IndexError, ValueError):
            pass
    return total / os.sysconf("SC_CLK_TCK")


def browser_pids(daemon_pid: int, dashboard_pid: int) -> set[int]:
    """This process's descendants that are neither the daemon's nor the dashboard's: Playwright's driver
    and chromium's processes."""
    return tree(os.getpid()) - tree(daemon_pid) - tree(dashboard_pid) - {os.getpid()}


@contextmanager
def dashboard_process(queuectl: str, home: str) -> Iterator[tuple[str, int]]:
    """`queuectl dashboard` on a free loopback port for `home`; yields the URL it printed and its pid."""
    env = dict(os.environ, QUEUECTL_HOME=home, QUEUECTL_NO_AUTOSTART="1")
    proc = subprocess.Popen([queuectl, "dashboard", "--listen", f"127.0.0.1:{_free_port()}"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    lines: queue.Queue[str] = queue.Queue()

    def read() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.put(line)

    threading.Thread(target=read, daemon=True).start()
    try:
        while True:
            m = URL_LINE.search(lines.get(timeout=30))
            if m:
                break
        yield m.group(1), proc.pid
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


class Tabs:
    """Two tabs on a dashboard, the overview and the jobs table, counting the requests they make."""

    def __init__(self, browser: Any, url: str) -> None:
        self.context = browser.new_context(viewport={"width": 1280, "height": 900})
        self.requests = 0
        self.overview = self.context.new_page()
        self.overview.goto(url)  # the token becomes the context's cookie
        self.jobs = self.context.new_page()
        self.jobs.goto(self.overview.url.split("#")[0] + "#/jobs")
        for page in (self.overview, self.jobs):
            page.on("request", self._count)
        self.overview.wait_for_selector("#count-completed:not(:has-text('—'))", timeout=30_000)
        self.jobs.wait_for_selector("#jobs table, #jobs .empty", timeout=30_000)
        # A page someone keeps open has long finished loading: let the first render's work end
        # before a measure starts, so that what is measured is the updating.
        self.jobs.wait_for_timeout(SETTLE * 1000)

    def _count(self, _: Any) -> None:
        self.requests += 1

    def completed_shown(self, expected: int, timeout: float = 15.0) -> float | None:
        """Seconds until the overview shows `expected` completed jobs (None: it did not within `timeout`)."""
        want = f"{expected:,}"
        t = time.perf_counter()
        while time.perf_counter() - t < timeout:
            if self.overview.inner_text("#count-completed") == want:
                return time.perf_counter() - t
            self.overview.wait_for_timeout(50)
        return None

    def close(self) -> None:
        self.context.close()


def dispatch(client: Any, samples: int) -> list[float]:
    """Enqueue to start of one `true` job at a time on one idle worker, in ms."""
    client.worker_start(1)
    lat = []
    for _ in range(samples):
        job = client.wait_for(client.enqueue("true"), ("completed",))
        lat.append((job.started_at - job.created_at) * 1000)
    client.worker_stop()
    return lat


def _p99(xs: list[float]) -> float:
    return xs[max(0, int(len(xs) * 0.99) - 1)]


def measure(queuectl: str, daemon: Daemon, drain_rate: Callable[[Any, int], float], n_jobs: int, reps: int,
            samples: int, say: Callable[[str], None]) -> dict[str, Any]:
    why = missing()
    if why:
        say(f"dashboard: skipped, {why}")
        return {"skipped": why}
    from playwright.sync_api import sync_playwright

    plain: list[float] = []
    watched: list[float] = []
    ratios: list[float] = []
    requests: list[float] = []
    shown: list[float] = []
    cpu_dash: list[float] = []
    cpu_browser: list[float] = []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        for i in range(reps):
            # The two alternate which goes first, so that a machine that drifts over the pair
            # favours neither.
            first = "without" if i % 2 == 0 else "with"
            say(f"dashboard: pair {i + 1} of {reps}, {n_jobs:,} trivial jobs on 4 workers, {first} the tabs first")
            for open_tabs in ((False, True) if i % 2 == 0 else (True, False)):
                if not open_tabs:
                    with daemon() as (_, _, c):
                        plain.append(drain_rate(c, n_jobs))
                    continue
                with daemon() as (home, proc, c), dashboard_process(queuectl, home) as (url, dash_pid):
                    tabs = Tabs(browser, url)
                    others, dash = browser_pids(proc.pid, dash_pid), tree(dash_pid)
                    before, t = tabs.requests, time.perf_counter()
                    cpu0 = cpu_seconds(dash), cpu_seconds(others)
                    watched.append(drain_rate(c, n_jobs))
                    seconds = time.perf_counter() - t
                    cpu_dash.append((cpu_seconds(dash) - cpu0[0]) / seconds)
                    cpu_browser.append((cpu_seconds(others) - cpu0[1]) / seconds)
                    lag = tabs.completed_shown(n_jobs)
                    requests.append((tabs.requests - before) / seconds)
                    if lag is not None:
                        shown.append(lag)
                    tabs.close()
            ratios.append(watched[-1] / plain[-1])
        say(f"dashboard: dispatch latency, {samples} jobs one at a time each way, in blocks that alternate "
            "without and with the dashboard and its tabs, in one daemon")
        quiet: list[float] = []
        busy: list[float] = []
        with daemon() as (home, _, c):
            for _ in range(BLOCKS):
                quiet += dispatch(c, samples // BLOCKS)
                with dashboard_process(queuectl, home) as (url, _):
                    tabs = Tabs(browser, url)
                    busy += dispatch(c, samples // BLOCKS)
                    tabs.close()
        quiet.sort()
        busy.sort()
        browser.close()
    return {"jobs": n_jobs, "plain": statistics.median(plain), "watched": statistics.median(watched),
            "ratio": statistics.median(ratios), "ratios": ratios, "plain_each": plain, "watched_each": watched,
            "requests_per_s": statistics.median(requests), "cpu_dashboard": statistics.median(cpu_dash),
            "cpu_browser": statistics.median(cpu_browser),
            "shown_after_s": statistics.median(shown) if shown else None, "shown_runs": len(shown),
            "dispatch_p50_ms": statistics.median(busy), "dispatch_p99_ms": _p99(busy),
            "dispatch_quiet_p50_ms": statistics.median(quiet), "dispatch_quiet_p99_ms": _p99(quiet),
            "samples": samples}


def report(d: dict[str, Any]) -> str:
    if "skipped" in d:
        return f"dashboard: skipped, {d['skipped']}"
    each = ", ".join(f"{x:.0%}" for x in d["ratios"])
    shown = (f"the overview showed the last completion {d['shown_after_s']:.2f} s after the drain ended"
             if d["shown_after_s"] is not None else "the overview did not show the last completion within 15 s")
    return (f"dashboard: {d['jobs']:,} trivial jobs on 4 workers drain at {d['watched']:,.0f} jobs/s with the "
            f"dashboard and two chromium tabs open (overview, jobs table) against {d['plain']:,.0f}/s without "
            f"(median of paired ratios {d['ratio']:.0%}: {each})\n"
            f"  during the drain the tabs made {d['requests_per_s']:.1f} requests/s to the dashboard, which used "
            f"{d['cpu_dashboard']:.1%} of a core, chromium and Playwright's driver {d['cpu_browser']:.1%}; {shown}\n"
            f"  enqueue to start, one idle worker, {d['samples']} jobs each way in alternating blocks: "
            f"p50 {d['dispatch_p50_ms']:.2f} ms, "
            f"p99 {d['dispatch_p99_ms']:.2f} ms with the tabs open; p50 {d['dispatch_quiet_p50_ms']:.2f} ms, "
            f"p99 {d['dispatch_quiet_p99_ms']:.2f} ms without")
