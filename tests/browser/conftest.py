"""The dashboard in a real browser: Debian's chromium driven by Playwright, against a real daemon and a
real `queuectl dashboard` process.

Outside CI the tests skip when chromium or Playwright is missing; with CI=true they fail instead.
Screenshots go to $QUEUECTL_SCREENSHOTS, or tests/browser/screenshots/ (git-ignored).
"""

from __future__ import annotations

import os
import queue
import re
import shutil
import socket
import subprocess
import threading
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import pytest

from tests.conftest import QUEUECTL, Env

try:  # the tests import `expect` from here: without Playwright they skip (or fail in CI) at `browser`
    from playwright.sync_api import expect
except ImportError:
    expect = None

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
SCREENSHOTS = os.environ.get("QUEUECTL_SCREENSHOTS") or os.path.join(os.path.dirname(__file__), "screenshots")
HOW_TO_ENABLE = ("browser tests need Debian's chromium and Playwright: "
                 "apt-get install chromium; pip install -e '.[test]'")
URL_LINE = re.compile(r"dashboard: (https?://\S+)")


def _missing() -> str | None:
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "playwright is not installed"
    if not os.access(CHROMIUM, os.X_OK):
        return f"no chromium at {CHROMIUM}"
    return None


# Per module, not per session: while Playwright's sync API is open, its event loop counts as
# running in this thread, and the asyncio tests of other directories could not run theirs.
@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    missing = _missing()
    if missing:
        if os.environ.get("CI") == "true":
            pytest.fail(f"{missing}: CI must run the browser tests ({HOW_TO_ENABLE})")
        pytest.skip(HOW_TO_ENABLE)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield b
        b.close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Dashboard:
    """A `queuectl dashboard` process for a home; `url` is the one it printed (token included),
    `root` the page's address without the token (scheme://host:port + base path + /)."""

    def __init__(self, env: Env, *args: str, timeout: float = 20, port: int | None = None) -> None:
        self.port = port or free_port()
        self.proc = subprocess.Popen(
            [QUEUECTL, "dashboard", "--listen", f"127.0.0.1:{self.port}", *args],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env.env)
        self.lines: queue.Queue[str] = queue.Queue()
        self.output: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()
        self.url = self._wait_url(timeout)
        parts = urlsplit(self.url)
        self.token = dict(q.split("=", 1) for q in parts.query.split("&") if "=" in q)["token"]
        self.origin = f"{parts.scheme}://{parts.netloc}"
        self.root = self.origin + parts.path

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.output.append(line)
            self.lines.put(line)

    def _wait_url(self, timeout: float) -> str:
        try:
            while True:
                line = self.lines.get(timeout=timeout)
                if m := URL_LINE.search(line):
                    return m.group(1)
        except queue.Empty:
            self.stop()
            printed = "".join(self.output)
            raise AssertionError(f"queuectl dashboard printed no URL in {timeout} s: {printed!r}") from None

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@pytest.fixture
def dashboard(env: Env) -> Iterator[Dashboard]:
    """A daemon (no workers yet: a new home has none) and a dashboard on a free loopback port."""
    env.start_daemon()
    d = Dashboard(env)
    yield d
    d.stop()


class Watch:
    """What a page did that a test must not see: dialogs (a script that ran), page errors; and the
    answers to the confirmations a test expects (`answer`), each used by one dialog."""

    def __init__(self, page: Any) -> None:
        self.dialogs: list[str] = []
        self.answers: list[bool] = []
        self.confirmed: list[str] = []
        self.errors: list[str] = []
        self.requests: list[str] = []
        page.on("dialog", self._dialog)
        page.on("pageerror", lambda e: self.errors.append(str(e)))
        page.on("request", lambda r: self.requests.append(r.url))

    def answer(self, accept: bool) -> None:
        self.answers.append(accept)

    def _dialog(self, dialog: Any) -> None:
        if dialog.type == "confirm" and self.answers:
            self.confirmed.append(dialog.message)
            dialog.accept() if self.answers.pop(0) else dialog.dismiss()
            return
        self.dialogs.append(f"{dialog.type}: {dialog.message}")
        dialog.dismiss()


def open_page(browser: Any, dash: Dashboard, **context: Any) -> tuple[Any, Watch]:
    """A new browser context on the dashboard, signed in through the printed URL (the token then
    leaves the address: the cookie carries it)."""
    ctx = browser.new_context(**{"viewport": {"width": 1280, "height": 900}, **context})
    page = ctx.new_page()
    watch = Watch(page)
    page.goto(dash.url)
    assert "token=" not in page.url, page.url
    return page, watch


@pytest.fixture
def page(browser: Any, dashboard: Dashboard) -> Iterator[Any]:
    pg, watch = open_page(browser, dashboard)
    pg.watch = watch
    yield pg
    pg.context.close()
    assert not watch.dialogs, watch.dialogs
    assert not watch.errors, watch.errors


def screenshot(page: Any, name: str) -> str:
    os.makedirs(SCREENSHOTS, exist_ok=True)
    path = os.path.join(SCREENSHOTS, name + ".png")
    page.screenshot(path=path, full_page=True)
    return path
