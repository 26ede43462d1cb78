"""The dashboard's pages, clicked through as a person does, against a real daemon running real jobs."""

from __future__ import annotations

import os
import re
from typing import Any

from tests.browser.conftest import Dashboard, expect, open_page, screenshot
from tests.conftest import Env, wait_for

WAIT = 10_000  # ms: the page promises updates within a second; this bounds a loaded machine's wait


def test_overview_counts_follow_a_cli_enqueue_without_a_reload(env: Env, page: Any) -> None:
    expect(page.locator("#count-pending")).to_have_text("0", timeout=WAIT)
    page.evaluate("window.__sameDocument = true")  # gone if the page reloads
    env.enqueue(id="waits", command="true")  # no workers yet: it stays pending
    expect(page.locator("#count-pending")).to_have_text("1", timeout=WAIT)
    env.ok("worker", "start", "--count", "1", "--detach")
    expect(page.locator("#count-completed")).to_have_text("1", timeout=WAIT)
    expect(page.locator("#count-pending")).to_have_text("0", timeout=WAIT)
    expect(page.locator("#workers")).to_have_text("0 / 1", timeout=WAIT)
    assert page.evaluate("window.__sameDocument") is True

    page.click("nav >> text=Jobs")
    expect(page.locator('#jobs tr[data-id="waits"]')).to_contain_text("completed", timeout=WAIT)
    env.ok("pause")
    env.enqueue(id="later", command="true")
    row = page.locator('#jobs tr[data-id="later"]')
    expect(row).to_contain_text("pending", timeout=WAIT)  # the table updated itself
    assert page.evaluate("window.__sameDocument") is True


def test_the_chart_counts_runs_that_ended_this_hour(env: Env, page: Any) -> None:
    env.ok("worker", "start", "--count", "1", "--detach")
    env.wait_state(env.enqueue(command="true"), "completed")
    env.wait_state(env.enqueue(command="exit 1", max_retries=0), "dead")
    # The dashboard asks for the minutes every 10 s: the chart may lag the counts by that much.
    expect(page.locator("#hour-completed")).to_have_text("1", timeout=3 * WAIT)
    expect(page.locator("#hour-failed")).to_have_text("1", timeout=3 * WAIT)
    bars = page.locator("#minutes-chart rect.ok")
    assert bars.count() == 60
    # The two runs may end in different minutes, and the last bar may already be a later one: the bars' sums.
    titles = page.locator("#minutes-chart g title").all_text_contents()
    counts = [re.search(r": (\d+) completed, (\d+) failed, (\d+) dead$", t) for t in titles]
    assert all(counts) and len(counts) == 60, titles
    assert [sum(int(m.group(i)) for m in counts if m) for i in (1, 2, 3)] == [1, 0, 1], titles


def test_a_running_jobs_output_appears_live_stdout_and_stderr_apart(env: Env, page: Any) -> None:
    gate = os.path.join(env.home, "gate")
    env.ok("worker", "start", "--count", "1", "--detach")
    job = env.enqueue(command=f"echo first; echo warning >&2; while [ ! -e {gate} ]; do sleep 0.05; done; echo second")
    page.goto(page.url.split("#")[0] + "#/job/" + job)
    expect(page.locator("#job-state")).to_have_text("processing", timeout=WAIT)
    expect(page.locator("#stdout")).to_contain_text("first", timeout=WAIT)
    expect(page.locator("#stderr")).to_contain_text("warning", timeout=WAIT)
    expect(page.locator("#stdout")).not_to_contain_text("warning")
    expect(page.locator("#job-live")).to_contain_text("live")
    open(gate, "w").close()
    expect(page.locator("#stdout")).to_contain_text("second", timeout=WAIT)
    expect(page.locator("#job-state")).to_have_text("completed", timeout=WAIT)
    expect(page.locator('#job-fields dd[data-field="exit_code"]')).to_have_text("0", timeout=WAIT)
    assert page.locator("#stdout").inner_text().count("first") == 1  # the live part does not repeat the loaded one
    screenshot(page, "job-page")


def test_large_output_is_loaded_on_demand(env: Env, page: Any) -> None:
    env.ok("worker", "start", "--count", "1", "--detach")
    job = env.enqueue(command="seq 1 40000")  # 228,894 bytes: four reads of 64 KiB
    env.wait_state(job, "completed")
    page.goto(page.url.split("#")[0] + "#/job/" + job)
    expect(page.locator("#stdout-more")).to_be_visible(timeout=WAIT)
    assert "40000" not in page.locator("#stdout").inner_text()
    for _ in range(3):
        page.click("#stdout-more")
    expect(page.locator("#stdout-more")).to_be_hidden(timeout=WAIT)
    text = page.locator("#stdout-head").inner_text()
    assert text.split() == [str(i) for i in range(1, 40001)]


def test_retry_on_a_dead_job_in_the_dlq_makes_it_run(env: Env, page: Any) -> None:
    marker = os.path.join(env.home, "tried")
    job = env.enqueue(command=f"if [ -e {marker} ]; then echo passed; else touch {marker}; exit 3; fi", max_retries=0)
    env.ok("worker", "start", "--count", "1", "--detach")
    env.wait_state(job, "dead")
    page.click("nav >> text=DLQ")
    row = page.locator(f'#dlq tr[data-id="{job}"]')
    expect(row).to_contain_text("dead", timeout=WAIT)
    expect(row).to_contain_text("exit", timeout=WAIT)  # its error message
    row.get_by_role("button", name=f"Retry job {job}").click()
    expect(page.locator("#flash")).to_be_visible(timeout=WAIT)
    expect(row).to_have_count(0, timeout=WAIT)  # the table followed the job out of the DLQ
    page.click("nav >> text=Jobs")
    page.locator(f'#jobs tr[data-id="{job}"] a').click()
    expect(page.locator("#job-state")).to_have_text("completed", timeout=WAIT)
    expect(page.locator("#stdout")).to_contain_text("passed", timeout=WAIT)


def test_retry_all_asks_first_then_retries_every_dead_job(env: Env, page: Any) -> None:
    ids = [env.enqueue(command="exit 1", max_retries=0) for _ in range(3)]
    env.ok("worker", "start", "--count", "1", "--detach")
    for job in ids:
        env.wait_state(job, "dead")
    env.ok("pause")  # the retried jobs wait, so the DLQ's emptying is the retry's doing
    page.click("nav >> text=DLQ")
    expect(page.locator("#dlq tbody tr")).to_have_count(3, timeout=WAIT)
    page.watch.answer(False)
    page.click("#retry-all")
    expect(page.locator("#dlq tbody tr")).to_have_count(3)  # dismissed: nothing happened
    assert {env.show(j)["state"] for j in ids} == {"dead"}
    page.watch.answer(True)
    page.click("#retry-all")
    expect(page.locator("#dlq")).to_contain_text("No dead jobs", timeout=WAIT)
    assert {env.show(j)["state"] for j in ids} == {"pending"}


def test_pausing_a_group_stops_its_dispatch_until_resumed(env: Env, page: Any) -> None:
    env.ok("group", "add", "nightly")
    env.ok("worker", "start", "--count", "2", "--detach")
    page.click("nav >> text=Groups")
    row = page.locator('#groups tr[data-group="nightly"]')
    expect(row).to_contain_text("running", timeout=WAIT)
    row.get_by_role("button", name="Pause group nightly").click()
    expect(row).to_contain_text("paused", timeout=WAIT)
    held = env.enqueue(command="echo held", group="nightly")
    other = env.enqueue(command="echo other")  # the default group still runs: dispatch went on
    env.wait_state(other, "completed")
    assert env.show(held)["state"] == "pending"
    expect(row.locator('td[data-state="pending"]')).to_have_text("1", timeout=WAIT)
    page.goto(page.url.split("#")[0] + "#/job/" + held)  # the why line says what holds it
    expect(page.locator("#job-why")).to_contain_text("paused", timeout=WAIT)
    page.go_back()
    row.get_by_role("button", name="Resume group nightly").click()
    expect(row).to_contain_text("running", timeout=WAIT)
    env.wait_state(held, "completed")
    expect(row.locator('td[data-state="completed"]')).to_have_text("1", timeout=WAIT)


def test_job_actions_cancel_rerun_and_a_confirmed_delete(env: Env, page: Any) -> None:
    env.ok("worker", "start", "--count", "1", "--detach")
    job = env.enqueue(command="sleep 600")
    env.wait_state(job, "processing")
    page.goto(page.url.split("#")[0] + "#/job/" + job)
    expect(page.locator("#job-state")).to_have_text("processing", timeout=WAIT)
    expect(page.locator("#job-delete")).to_be_disabled()
    page.click("#job-cancel")
    expect(page.locator("#job-state")).to_have_text("dead", timeout=WAIT)
    expect(page.locator('#job-fields dd[data-field="error_message"]')).to_contain_text("cancelled", timeout=WAIT)
    page.click("#job-rerun")
    expect(page.locator("#flash")).to_be_visible(timeout=WAIT)
    assert len(env.jobs()) == 2
    page.watch.answer(False)
    page.click("#job-delete")
    assert env.show(job)["state"] == "dead"
    page.watch.answer(True)
    page.click("#job-delete")
    expect(page.locator("h1")).to_have_text("Jobs", timeout=WAIT)
    assert env.q("show", job).code == 1


def test_script_in_a_command_and_its_output_stays_text(env: Env, page: Any) -> None:
    env.ok("worker", "start", "--count", "1", "--detach")
    payload = "<script>alert(1)</script><img src=x onerror=alert(2)>"
    job = env.enqueue(command=f"echo '{payload}'; echo '<b>bold</b>{payload}' >&2; : '<svg onload=alert(3)>' "
                              "'\u202eabc\x1b[31m'")
    env.wait_state(job, "completed")
    page.click("nav >> text=Jobs")
    cell = page.locator(f'#jobs tr[data-id="{job}"] td.cmd')
    expect(cell).to_contain_text("<script>alert(1)</script>", timeout=WAIT)
    page.goto(page.url.split("#")[0] + "#/job/" + job)
    expect(page.locator("#stdout")).to_contain_text(payload, timeout=WAIT)
    expect(page.locator("#stderr")).to_contain_text("<b>bold</b>", timeout=WAIT)
    expect(page.locator('#job-fields dd[data-field="command"]')).to_contain_text("<svg onload=alert(3)>")
    # A mark that reverses text, and an escape, are shown as what they are.
    expect(page.locator('#job-fields dd[data-field="command"]')).to_contain_text("'\\u202eabc\\x1b[31m'")
    page.go_back()
    expect(cell).to_have_attribute("title", re.compile(re.escape("'\\u202eabc\\x1b[31m'")), timeout=WAIT)
    scripts = page.eval_on_selector_all("script", "all => all.map(s => s.getAttribute('src'))")
    assert scripts == ["static/core.js", "static/pages.js", "static/job.js", "static/app.js"], scripts
    assert page.locator("img[src=x], svg[onload], b").count() == 0
    assert not page.watch.dialogs


def test_a_phone_in_dark_mode_gets_a_readable_page(browser: Any, env: Env, dashboard: Dashboard) -> None:
    env.ok("group", "add", "a-group-with-a-rather-long-name-for-a-phone")
    env.ok("worker", "start", "--count", "1", "--detach")
    for i in range(5):
        env.enqueue(command=f"echo {i}; printf 'a long command line that needs more room than a phone has {i}'")
    env.enqueue(command="exit 1", max_retries=0)
    pg, watch = open_page(browser, dashboard, viewport={"width": 390, "height": 844}, is_mobile=True,
                          has_touch=True, device_scale_factor=2, color_scheme="dark")
    try:
        expect(pg.locator("#count-completed")).to_have_text("5", timeout=WAIT)
        background = pg.evaluate("getComputedStyle(document.body).backgroundColor")
        assert _luminance(background) < 0.2, background
        for route in ("", "jobs", "groups"):
            pg.goto(pg.url.split("#")[0] + "#/" + route)
            expect(pg.locator("main h1")).to_be_visible(timeout=WAIT)
            if route:
                expect(pg.locator("main table")).to_be_visible(timeout=WAIT)
            # Tables scroll inside their box; the page itself never scrolls sideways.
            assert pg.evaluate("document.documentElement.scrollWidth <= window.innerWidth"), route
            screenshot(pg, f"phone-dark-{route or 'overview'}")
        assert not watch.dialogs and not watch.errors
    finally:
        pg.context.close()


def _luminance(css: str) -> float:
    r, g, b = (int(x) for x in css[css.index("(") + 1:css.index(")")].split(",")[:3])
    return (0.2126 * r + 0.7152 * g + 0.0722 * b) / 255


def test_jobs_filter_by_state_and_search_by_command_or_id(env: Env, page: Any) -> None:
    env.ok("group", "add", "etl")
    env.ok("pause")
    env.enqueue(id="plain-1", command="echo hay")
    env.enqueue(id="needle-job", command="echo a needle in the hay", group="etl")
    env.enqueue(id="plain-2", command="echo more hay")
    page.click("nav >> text=Jobs")
    expect(page.locator("#jobs tbody tr")).to_have_count(3, timeout=WAIT)
    page.fill("#f-q", "needle in")
    page.click("form.filters button")
    expect(page.locator("#jobs tbody tr")).to_have_count(1, timeout=WAIT)
    expect(page.locator("#jobs tbody tr")).to_have_attribute("data-id", "needle-job")
    expect(page.locator("#page-note")).to_contain_text("searched", timeout=WAIT)
    assert "q=needle" in page.url  # the search is in the address: a reload or a shared link shows it
    page.fill("#f-q", "plain-2")  # an id
    page.press("#f-q", "Enter")
    expect(page.locator("#jobs tbody tr")).to_have_attribute("data-id", "plain-2", timeout=WAIT)
    page.fill("#f-q", "")
    page.select_option("#f-group", "etl")
    expect(page.locator("#jobs tbody tr")).to_have_count(1, timeout=WAIT)
    expect(page.locator("#jobs-total")).to_have_text("1 job in group etl", timeout=WAIT)
    page.select_option("#f-group", "")
    page.select_option("#f-state", "completed")
    expect(page.locator("#jobs")).to_contain_text("No jobs.", timeout=WAIT)


def test_jobs_page_by_cursor_next_and_newest(env: Env, page: Any) -> None:
    lines = "".join(f'{{"id": "j{i:03}", "command": "true"}}\n' for i in range(120))
    env.ok("enqueue", "-", input=lines)
    page.goto(page.url.split("#")[0] + "#/jobs?state=pending")
    rows = page.locator("#jobs tbody tr")
    expect(rows).to_have_count(50, timeout=WAIT)
    expect(page.locator("#jobs-total")).to_have_text("120 pending jobs", timeout=WAIT)
    first = rows.first.get_attribute("data-id")
    expect(page.locator("#newest")).to_be_disabled()
    page.click("#next")
    expect(rows.first).not_to_have_attribute("data-id", first or "", timeout=WAIT)
    page.click("#next")
    expect(rows).to_have_count(20, timeout=WAIT)
    expect(page.locator("#next")).to_be_disabled()
    seen = set(rows.evaluate_all("rs => rs.map(r => r.dataset.id)"))
    assert len(seen) == 20
    page.click("#newest")
    expect(rows.first).to_have_attribute("data-id", first or "", timeout=WAIT)


def test_schedules_are_listed_with_their_command_as_text(env: Env, page: Any) -> None:
    env.ok("schedule", "add", "nightly", "0 3 * * *", '{"command": "backup <b>now</b>"}', "--tz", "UTC")
    page.click("nav >> text=Schedules")
    row = page.locator('#schedules tr[data-schedule="nightly"]')
    expect(row).to_contain_text("0 3 * * *", timeout=WAIT)
    expect(row).to_contain_text("backup <b>now</b>")
    expect(row).to_contain_text("active")
    assert row.locator("time").first.get_attribute("title").endswith("03:00:00 UTC")


def test_a_final_jobs_page_follows_its_retry_from_the_cli(env: Env, page: Any) -> None:
    marker = os.path.join(env.home, "tried")
    job = env.enqueue(command=f"if [ -e {marker} ]; then echo second run; else touch {marker}; exit 4; fi",
                      max_retries=0)
    env.ok("worker", "start", "--count", "1", "--detach")
    env.wait_state(job, "dead")
    page.goto(page.url.split("#")[0] + "#/job/" + job)
    expect(page.locator("#job-state")).to_have_text("dead", timeout=WAIT)
    expect(page.locator("#job-retry")).to_be_enabled()
    page.evaluate("window.__sameDocument = true")
    env.ok("dlq", "retry", job)
    expect(page.locator("#job-state")).to_have_text("completed", timeout=WAIT)
    expect(page.locator("#stdout")).to_contain_text("second run", timeout=WAIT)
    assert page.evaluate("window.__sameDocument") is True


def test_a_running_jobs_large_output_loads_on_demand_and_follows_without_a_gap_or_a_repeat(env: Env,
                                                                                          page: Any) -> None:
    gate = os.path.join(env.home, "gate")
    env.ok("worker", "start", "--count", "1", "--detach")
    job = env.enqueue(command=f"seq 1 40000; while [ ! -e {gate} ]; do sleep 0.05; done; echo end-of-run")
    env.wait_state(job, "processing")
    expected = "".join(f"{i}\n" for i in range(1, 40001))
    wait_for(lambda: env.q("logs", job, "--stdout").out == expected, what="the job's first output")
    page.goto(page.url.split("#")[0] + "#/job/" + job)
    expect(page.locator("#stdout-more")).to_be_visible(timeout=WAIT)  # 64 KiB shown, the rest on demand
    expect(page.locator("#job-live")).to_contain_text("live", timeout=WAIT)
    open(gate, "w").close()
    expect(page.locator("#stdout-tail")).to_have_text("end-of-run", timeout=WAIT)  # followed from the end
    for _ in range(3):
        if page.locator("#stdout-more").is_hidden():
            break
        page.click("#stdout-more")
        page.wait_for_function("() => !document.querySelector('#stdout-more').disabled")
    expect(page.locator("#stdout-more")).to_be_hidden(timeout=WAIT)
    shown = page.eval_on_selector("#stdout-head", "e => e.textContent") + \
        page.eval_on_selector("#stdout-tail", "e => e.textContent")
    assert shown == expected + "end-of-run\n"
