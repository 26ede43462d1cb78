"""Who gets in, from where: the token, CSRF on actions, a base path behind a proxy, and a daemon that
goes away and comes back — in a real browser against a real `queuectl dashboard`."""

from __future__ import annotations

import os
from typing import Any
from urllib.parse import urlsplit

from tests.browser.conftest import Dashboard, Watch, expect, open_page, screenshot
from tests.conftest import Env

WAIT = 10_000  # ms
REFUSED = "this dashboard needs its token"


def test_a_wrong_or_missing_token_gets_the_401_page_and_nothing_else(browser: Any, dashboard: Dashboard,
                                                                        env: Env) -> None:
    env.enqueue(id="secret-job", command="echo hidden")
    ctx = browser.new_context()
    page = ctx.new_page()
    try:
        for address in (dashboard.root + "?token=wrong" + dashboard.token[:8], dashboard.root,
                        dashboard.root + "api/overview", dashboard.root + "static/app.js",
                        dashboard.root + "api/jobs/secret-job", dashboard.root + "metrics"):
            response = page.goto(address)
            assert response is not None and response.status == 401, address
            body = page.locator("body").inner_text()
            assert REFUSED in body, (address, body)
            assert "secret-job" not in body and "0.1.0" not in body, body
        assert not ctx.cookies(), ctx.cookies()
        screenshot(page, "wrong-token")
        # The header form of the token opens the API without a cookie.
        reply = page.request.get(dashboard.root + "api/overview",
                                 headers={"Authorization": "Bearer " + dashboard.token})
        assert reply.status == 200 and reply.json()["jobs"]["pending"] == 1
        reply = page.request.get(dashboard.root + "api/overview", headers={"Authorization": "Bearer nope"})
        assert reply.status == 401
    finally:
        ctx.close()


def test_the_printed_url_sets_an_httponly_strict_cookie_and_drops_the_token(browser: Any,
                                                                           dashboard: Dashboard) -> None:
    page, _ = open_page(browser, dashboard)
    try:
        assert page.url == dashboard.root, page.url
        (cookie,) = page.context.cookies()
        assert cookie["name"] == "queuectl_token" and cookie["httpOnly"] and cookie["sameSite"] == "Strict"
        assert page.evaluate("document.cookie") == ""  # out of a script's reach
    finally:
        page.context.close()


def test_a_post_without_the_csrf_header_or_from_another_origin_is_refused(env: Env, page: Any,
                                                                           dashboard: Dashboard) -> None:
    expect(page.locator("#count-pending")).to_have_text("0", timeout=WAIT)
    size_before = env.ok("status").out
    # From the page's own script, cookie sent, no header: 403.
    status = page.evaluate("""async () => {
        const base = document.querySelector('meta[name="base-path"]').content;
        const r = await fetch(base + '/api/pool', {method: 'POST', headers: {'Content-Type': 'application/json'},
                                                   body: JSON.stringify({size: 7})});
        return [r.status, await r.text()];
    }""")
    assert status[0] == 403, status
    assert "forbidden" in status[1]
    # With the cookie (the browser context's), a wrong header: 403.
    reply = page.request.post(dashboard.root + "api/pool", data={"size": 7}, headers={"X-CSRF-Token": "guess"})
    assert reply.status == 403
    # The right header from a foreign Origin: 403.
    csrf = page.get_attribute('meta[name="csrf-token"]', "content")
    reply = page.request.post(dashboard.root + "api/pool", data={"size": 7},
                              headers={"X-CSRF-Token": csrf, "Origin": "http://evil.example"})
    assert reply.status == 403
    assert reply.headers.get("access-control-allow-origin") is None
    assert env.ok("status").out.split("\n")[1] == size_before.split("\n")[1]  # the pool is as it was
    # The page's own form, which sends the header: done.
    page.fill("#pool-size", "3")
    page.click("#pool-form button")
    expect(page.locator("#workers")).to_have_text("0 / 3", timeout=WAIT)
    assert "of 3" in env.ok("status").out


def test_the_page_sends_a_strict_csp_and_needs_no_inline_code(page: Any, dashboard: Dashboard) -> None:
    response = page.request.get(dashboard.root)
    csp = response.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp
    html = response.text()
    assert "<style" not in html and " style=" not in html and "<script>" not in html
    assert "{{" not in html  # every placeholder filled in
    expect(page.locator("#count-pending")).to_have_text("0", timeout=WAIT)  # and it works under that CSP
    assert not page.watch.errors


def test_under_a_base_path_the_page_its_assets_api_and_streams_stay_under_it(browser: Any, env: Env) -> None:
    env.start_daemon()
    dash = Dashboard(env, "--base-path", "/q")
    try:
        assert urlsplit(dash.url).path == "/q/", dash.url
        page, watch = open_page(browser, dash)
        expect(page.locator("#count-pending")).to_have_text("0", timeout=WAIT)
        env.enqueue(id="via-proxy", command="echo behind a proxy")
        expect(page.locator("#count-pending")).to_have_text("1", timeout=WAIT)  # the live stream
        env.ok("worker", "start", "--count", "1", "--detach")
        page.click("nav >> text=Jobs")
        page.locator('#jobs tr[data-id="via-proxy"] a').click()
        expect(page.locator("#job-state")).to_have_text("completed", timeout=WAIT)
        expect(page.locator("#stdout")).to_contain_text("behind a proxy", timeout=WAIT)
        paths = {urlsplit(u).path for u in watch.requests}
        assert paths and all(p.startswith("/q/") for p in paths), sorted(paths)
        assert {"/q/static/core.js", "/q/static/app.js", "/q/static/app.css", "/q/api/events"} <= paths, sorted(paths)
        # Outside the prefix there is no dashboard.
        outside = page.request.get(dash.origin + "/api/overview")
        assert outside.status in (401, 404) and "jobs" not in outside.text()
        assert not watch.dialogs and not watch.errors
        page.context.close()
    finally:
        dash.stop()


def test_the_page_says_the_daemon_is_unreachable_and_recovers(env: Env, page: Any) -> None:
    expect(page.locator("#count-pending")).to_have_text("0", timeout=WAIT)
    page.evaluate("window.__sameDocument = true")
    env.stop_daemon()
    page.click("nav >> text=Jobs")  # a request the daemon cannot answer
    expect(page.locator("#banner")).to_contain_text("daemon unreachable", timeout=WAIT)
    expect(page.locator("#live")).to_have_text("daemon unreachable", timeout=WAIT)
    screenshot(page, "daemon-unreachable")
    env.start_daemon()
    env.enqueue(id="after-restart", command="true")
    expect(page.locator("#banner")).to_be_hidden(timeout=WAIT)
    expect(page.locator("#live")).to_have_text("live", timeout=WAIT)
    expect(page.locator('#jobs tr[data-id="after-restart"]')).to_be_visible(timeout=WAIT)
    assert page.evaluate("window.__sameDocument") is True  # recovered without a reload


def test_a_hidden_tab_reopens_its_stream_slowly_and_a_visible_one_at_full_speed(page: Any) -> None:
    expect(page.locator("#live")).to_have_text("live", timeout=WAIT)
    watch: Watch = page.watch
    page.evaluate("""() => {
        Object.defineProperty(document, 'visibilityState', {configurable: true, get: () => 'hidden'});
        document.dispatchEvent(new Event('visibilitychange'));
    }""")
    expect(page.locator("#live")).to_contain_text("slow", timeout=WAIT)
    assert any(u.endswith("/api/events?slow=1") for u in watch.requests), watch.requests
    page.evaluate("""() => {
        Object.defineProperty(document, 'visibilityState', {configurable: true, get: () => 'visible'});
        document.dispatchEvent(new Event('visibilitychange'));
    }""")
    expect(page.locator("#live")).to_have_text("live", timeout=WAIT)


def test_screenshot_of_a_busy_overview(browser: Any, env: Env, dashboard: Dashboard) -> None:
    """The README's picture: a few groups, jobs in every state, an hour's chart with runs in it."""
    env.ok("group", "add", "backups", "--parallel", "1")
    env.ok("group", "add", "reports")
    env.ok("worker", "start", "--count", "4", "--detach")
    gate = os.path.join(env.home, "gate")
    ids = [env.enqueue(command=f"echo {i}", group=g) for i, g in enumerate(["default", "reports"] * 20)]
    ids += [env.enqueue(command="exit 2", max_retries=0) for _ in range(3)]
    ids += [env.enqueue(command="exit 1", max_retries=2, group="reports")]
    for job in ids[:-1]:
        env.wait_state(job, "completed", "dead")
    env.enqueue(command=f"while [ ! -e {gate} ]; do sleep 0.1; done", group="backups")
    env.ok("pause", "reports")
    env.enqueue(command="tar czf /tmp/etc.tgz /etc", group="reports")
    page, _ = open_page(browser, dashboard, color_scheme="light")
    try:
        expect(page.locator("#count-processing")).to_have_text("1", timeout=WAIT)
        expect(page.locator("#paused-groups")).to_contain_text("reports", timeout=WAIT)
        screenshot(page, "overview")
    finally:
        open(gate, "w").close()
        page.context.close()


def test_a_dashboard_restarted_with_a_new_token_shows_the_page_how_to_get_back_in(browser: Any, env: Env) -> None:
    env.start_daemon()
    first = Dashboard(env)
    page, watch = open_page(browser, first)
    try:
        expect(page.locator("#count-pending")).to_have_text("0", timeout=WAIT)
        first.stop()
        expect(page.locator("#live")).to_have_text("reconnecting…", timeout=WAIT)
        second = Dashboard(env, port=first.port)  # a new random token: the page's cookie is stale
        try:
            assert second.token != first.token
            expect(page.locator("#banner")).to_contain_text("needs its token", timeout=3 * WAIT)
            page.goto(second.url)  # the new URL lets it back in
            expect(page.locator("#banner")).to_be_hidden(timeout=WAIT)
            expect(page.locator("#count-pending")).to_have_text("0", timeout=WAIT)
        finally:
            second.stop()
        assert not watch.dialogs and not watch.errors
    finally:
        page.context.close()
