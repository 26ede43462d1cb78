"""Rendering never fails on a value the wire can carry, and shows a stopping daemon."""

from __future__ import annotations

import io

import pytest

from queuectl_client import protocol as p
from queuectl_client import render

FAR = [p.MAX_TIME, 1e12, 1e20, -1e20, float("inf"), float("-inf"), float("nan")]


@pytest.mark.parametrize("t", FAR)
def test_far_times_render_without_failing(t: float) -> None:
    assert isinstance(render.iso(t), str)
    assert isinstance(render.ago(t), str)
    job = p.Job("far", "true", "failed", 1, 3, 0, None, t, t, t, t, t, t, None, "x", None, "/")
    assert "far" in render.human_job(job)
    out = io.StringIO()
    render.print_table([job], out)
    assert "far" in out.getvalue()
    st = {"jobs": {}, "workers": {"configured": 0, "busy": 0}, "pid": 1, "version": "0", "started_at": t}
    assert render.status_lines(st) and render.status_json(st)["daemon"]["started_at"]


def test_the_last_second_iso_8601_can_write() -> None:
    assert render.iso(p.MAX_TIME) == "9999-12-31T23:59:59.000Z"


def test_a_stopping_daemon_shows_in_status() -> None:
    st = {"jobs": {}, "workers": {"configured": 2, "busy": 1}, "pid": 7, "version": "0", "started_at": 0.0,
          "stopping": True}
    assert "stopping" in render.status_lines(st)[-1]
    assert render.status_json(st)["daemon"]["stopping"] is True
    st["stopping"] = False
    assert "stopping" not in render.status_lines(st)[-1]
    assert render.status_json(st)["daemon"]["stopping"] is False
    del st["stopping"]
    assert render.status_json(st)["daemon"]["stopping"] is False


BIDI = "\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"


def test_format_characters_that_reorder_text_are_escaped_on_a_terminal() -> None:
    shown = render.escaped(f"rm -rf /tmp/x #{BIDI}end")
    assert not any(c in shown for c in BIDI), shown
    assert shown == ("rm -rf /tmp/x #\\u061c\\u200e\\u200f\\u202a\\u202b\\u202c\\u202d\\u202e"
                     "\\u2066\\u2067\\u2068\\u2069end")
    # Text that only joins or spaces (emoji sequences, scripts) is left as it is.
    for kept in ("👩\u200d💻", "a\u00a0b", "ä", "日本語", "שלום", "\ufeff"):
        assert render.escaped(kept) == kept
    render.set_escape(True)
    try:
        assert render.shown("a\u202eb") == "a\\u202eb"
    finally:
        render.set_escape(False)
    assert render.shown("a\u202eb") == "a\u202eb"  # piped: as it is


def test_show_names_a_retry_rule_and_an_idle_timeout_only_when_set() -> None:
    base = ("j", "true", "pending", 0, 3, 0, None, None, 1.0, 1.0, None, None, None, None, None, None, "/")
    plain = render.human_job(p.Job(*base))  # type: ignore[arg-type]
    assert "retry on" not in plain and "idle timeout" not in plain
    shown = render.human_job(p.Job(*base, retry_on=[75, "timeout"], idle_timeout=600))  # type: ignore[arg-type]
    assert "\nretry on:     exit 75, timeout\n" in shown and "\nidle timeout: 600 s without output\n" in shown
    assert "\nno retry on: nothing\n" in render.human_job(p.Job(*base, no_retry_on=[]))  # type: ignore[arg-type]
    assert "\nretry on:   nothing\n" in render.human_job(p.Job(*base, retry_on=[]))  # type: ignore[arg-type]
