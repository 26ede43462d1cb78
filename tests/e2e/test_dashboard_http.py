"""`queuectl dashboard` over HTTP, with a real daemon and a real dashboard process (the page itself is
tested in a browser by tests/browser)."""

from __future__ import annotations

import http.client
import json
import os
import re
import select
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import pytest

from queuectl_client.dashboard.auth import REFUSED
from tests.conftest import QUEUECTL, Env, bash_complete, wait_for

START = re.compile(r"^dashboard: (http://[^/]+)(/[^?]*)\?token=(\S+)$")


class Dash:
    """A `queuectl dashboard` process and an HTTP client for it."""

    def __init__(self, env: Env, *args: str) -> None:
        self.proc = subprocess.Popen([QUEUECTL, "dashboard", "--listen", "127.0.0.1:0", *args], env=env.env,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        assert self.proc.stdout is not None
        ready, _, _ = select.select([self.proc.stdout], [], [], 20)
        line = self.proc.stdout.readline().strip() if ready else ""
        m = START.match(line)
        assert m, (line, self.proc.poll())
        self.origin, self.base_slash, self.token = m.group(1), m.group(2), m.group(3)
        self.base = self.base_slash.rstrip("/")
        parts = urlsplit(self.origin)
        self.host, self.port = parts.hostname or "", parts.port or 0
        self.csrf = ""

    def request(self, method: str, path: str, *, token: str | None = "", body: Any = None,
                headers: dict[str, str] | None = None, raw: bytes | None = None) -> tuple[int, dict[str, str], bytes]:
        """`path` under the base path; `token` "" sends the right one as a bearer header, None none."""
        h = dict(headers or {})
        if token is not None:
            h.setdefault("Authorization", f"Bearer {token or self.token}")
        data = raw if body is None else json.dumps(body).encode()
        conn = http.client.HTTPConnection(self.host, self.port, timeout=15)
        try:
            conn.request(method, self.base + path, body=data, headers=h)
            r = conn.getresponse()
            return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read()
        finally:
            conn.close()

    def get(self, path: str) -> Any:
        status, _, body = self.request("GET", path)
        assert status == 200, (path, status, body)
        return json.loads(body)

    def post(self, path: str, body: Any = None) -> tuple[int, Any]:
        if not self.csrf:
            page = self.request("GET", "/")[2].decode()
            m = re.search(r'<meta name="csrf-token" content="([^"]+)">', page)
            assert m, page
            self.csrf = m.group(1)
        status, _, raw = self.request("POST", path, body=body, headers={"X-CSRF-Token": self.csrf})
        return status, json.loads(raw)

    def events(self, path: str, want: Any, timeout: float = 15) -> list[tuple[str, Any]]:
        """Read the event stream at `path` until `want(events so far)` holds; fail after `timeout` s."""
        conn = http.client.HTTPConnection(self.host, self.port, timeout=timeout)
        got: list[tuple[str, Any]] = []
        deadline = time.monotonic() + timeout
        try:
            conn.request("GET", self.base + path, headers={"Authorization": f"Bearer {self.token}"})
            r = conn.getresponse()
            assert r.status == 200 and r.getheader("Content-Type", "").startswith("text/event-stream")
            event = None
            while not want(got):
                assert time.monotonic() < deadline, f"timed out waiting on {path}: {got[-3:]}"
                line = r.fp.readline().decode()
                assert line, f"the stream {path} ended: {got[-3:]}"
                if line.startswith("event: "):
                    event = line[7:].strip()
                elif line.startswith("data: ") and event is not None:
                    got.append((event, json.loads(line[6:])))
                    event = None
        finally:
            conn.close()
        return got

    def stop(self) -> tuple[int, str]:
        self.proc.send_signal(signal.SIGTERM)
        _, err = self.proc.communicate(timeout=20)
        return self.proc.returncode, err


@pytest.fixture
def dash(env: Env) -> Iterator[Dash]:
    env.start_daemon()
    d = Dash(env)
    yield d
    if d.proc.poll() is None:
        code, err = d.stop()
        assert code == 0 and "Traceback" not in err, err


def test_without_the_right_token_every_url_is_401_and_says_nothing_else(dash: Dash, env: Env) -> None:
    job_id = env.enqueue(command="true", delay=3600)
    for path in ("/", "/static/app.css", "/api/overview", "/api/jobs", f"/api/jobs/{job_id}", "/metrics",
                 "/api/events", "/nowhere"):
        for token, headers in ((None, {}), ("wrong", {}), (None, {"Cookie": "queuectl_token=wrong"})):
            status, h, body = dash.request("GET", path, token=token, headers=headers)
            assert (status, body.decode()) == (401, REFUSED), (path, token, status, body)
            assert job_id.encode() not in body and b"0.1" not in body
            assert "'self'" in h["content-security-policy"] and h["x-content-type-options"] == "nosniff"
            assert not any(k.startswith("access-control-") for k in h)
    status, _, body = dash.request("GET", f"/?token=wrong{dash.token}", token=None)
    assert status == 401 and "set-cookie" not in _


def test_the_token_url_sets_a_strict_http_only_cookie_and_leaves_the_url(dash: Dash) -> None:
    status, h, _ = dash.request("GET", f"/?token={dash.token}", token=None)
    assert status == 303 and h["location"] == dash.base + "/"
    cookie = h["set-cookie"]
    assert cookie.startswith(f"queuectl_token={dash.token};") and "HttpOnly" in cookie
    assert "SameSite=Strict" in cookie and "Path=/" in cookie and "Secure" not in cookie
    status, h, body = dash.request("GET", "/api/overview", token=None,
                                   headers={"Cookie": f"queuectl_token={dash.token}"})
    assert status == 200 and json.loads(body)["jobs"]["pending"] == 0 and h["cache-control"] == "no-store"
    status, _, page = dash.request("GET", "/", token=None, headers={"Cookie": f"queuectl_token={dash.token}"})
    assert status == 200 and b'<meta name="base-path" content="">' in page and b"{{" not in page


def test_a_post_without_the_csrf_header_or_from_another_origin_is_403_and_changes_nothing(dash: Dash, env: Env) -> None:
    job_id = env.enqueue(command="true", delay=3600)
    page = dash.request("GET", "/")[2].decode()
    csrf = re.search(r'<meta name="csrf-token" content="([^"]+)">', page).group(1)  # type: ignore[union-attr]
    refused = (
        {},
        {"X-CSRF-Token": "wrong"},
        {"X-CSRF-Token": csrf, "Origin": "http://evil.example"},
        {"X-CSRF-Token": csrf, "Origin": f"http://127.0.0.1:{dash.port + 1}"},
    )
    for headers in refused:
        status, h, body = dash.request("POST", f"/api/jobs/{job_id}/cancel", headers=headers)
        assert (status, json.loads(body)) == (403, {"error": "forbidden"}), headers
        assert not any(k.startswith("access-control-") for k in h)
    assert env.show(job_id)["state"] == "pending"
    status, h, _ = dash.request("OPTIONS", f"/api/jobs/{job_id}/cancel",
                                headers={"Origin": "http://evil.example", "Access-Control-Request-Method": "POST"})
    assert status == 405 and not any(k.startswith("access-control-") for k in h)
    status, _, body = dash.request("POST", f"/api/jobs/{job_id}/cancel",
                                   headers={"X-CSRF-Token": csrf, "Origin": dash.origin})
    assert status == 200 and json.loads(body) == {"ok": True, "message": f"cancelled {job_id}"}
    assert env.show(job_id)["state"] == "dead"


def test_a_base_path_holds_the_page_assets_api_and_stream_and_nothing_is_outside_it(env: Env) -> None:
    env.start_daemon()
    d = Dash(env, "--base-path", "/q/")
    try:
        assert d.base == "/q"
        status, h, _ = d.request("GET", f"/?token={d.token}", token=None)
        assert status == 303 and h["location"] == "/q/" and "Path=/q/" in h["set-cookie"]
        status, _, page = d.request("GET", "/")
        assert status == 200 and b'<meta name="base-path" content="/q">' in page
        assert d.request("GET", "/static/app.css")[0] == 200
        assert d.get("/api/overview")["workers"]["configured"] == 0
        assert d.get("/api/jobs")["jobs"] == []
        assert d.events("/api/events", lambda got: any(e == "overview" for e, _ in got))
        d.base = ""
        for path in ("/", "/api/overview", "/static/app.css", "/api/events"):
            assert d.request("GET", path)[0] == 404, path
    finally:
        assert d.stop()[0] == 0


def test_the_overview_stream_shows_an_enqueue_without_a_reload(dash: Dash, env: Env) -> None:
    def pending(n: int) -> Any:
        return lambda got: any(e == "overview" and data["jobs"]["pending"] == n for e, data in got)

    enqueued: list[str] = []

    def enqueue_once_seen(got: list[tuple[str, Any]]) -> bool:
        if pending(0)(got) and not enqueued:
            enqueued.append(env.enqueue(command="true", delay=3600))
        return bool(pending(1)(got)) and sum(e == "jobs" for e, _ in got) >= 2

    got = dash.events("/api/events", enqueue_once_seen)
    versions = [data["version"] for e, data in got if e == "jobs"]
    assert len(versions) >= 2 and versions == sorted(versions)
    view = next(d for e, d in reversed(got) if e == "overview")
    assert view["groups"][0]["jobs"]["pending"] == 1 and len(view["minutes"]) == 60
    minutes = [m["t"] for m in view["minutes"]]
    assert all(b - a == 60 for a, b in zip(minutes, minutes[1:]))


def test_keyset_pages_go_through_250_jobs_without_dupes_or_gaps_while_jobs_are_added(dash: Dash, env: Env) -> None:
    lines = "".join(json.dumps({"id": f"p{i:03}", "command": f"echo {i}", "delay": 3600}) + "\n" for i in range(250))
    env.ok("enqueue", "-", input=lines)
    seen: list[str] = []
    cursor = ""
    for n in range(20):
        page = dash.get(f"/api/jobs?state=pending&limit=40{'&cursor=' + cursor if cursor else ''}")
        assert page["total"] == 250 + n
        seen += [job["id"] for job in page["jobs"]]
        env.enqueue(command="true", delay=3600, id=f"new{n}")  # newer than the cursor: not on later pages
        cursor = page["next"]
        if cursor is None:
            break
    assert seen == [f"p{i:03}" for i in range(249, -1, -1)]
    found = dash.get("/api/jobs?q=p007")
    assert [j["id"] for j in found["jobs"]] == ["p007"] and found["total"] is None
    found = dash.get("/api/jobs?q=echo%2024&limit=5")
    assert [j["id"] for j in found["jobs"]] == ["p249", "p248", "p247", "p246", "p245"]
    assert [j["id"] for j in dash.get("/api/dlq")["jobs"]] == []
    for bad in ("state=nope", "limit=0", "limit=201", "limit=x", "cursor=nonsense", "group=bad%20name"):
        status, _, body = dash.request("GET", f"/api/jobs?{bad}")
        assert status == 400 and list(json.loads(body)) == ["error"], (bad, body)


def test_a_script_in_a_command_and_its_output_comes_back_as_json_text(dash: Dash, env: Env) -> None:
    evil = "<script>alert(1)</script>"
    job_id = env.enqueue(command=f"printf '%s\\n' '{evil}'; printf '%s' '{evil}' >&2")
    env.ok("worker", "start", "--count", "1", "--detach")
    env.wait_state(job_id, "completed")
    status, h, body = dash.request("GET", f"/api/jobs/{job_id}")
    assert status == 200 and h["content-type"].startswith("application/json")
    detail = json.loads(body)
    assert evil in detail["job"]["command"] and detail["why"] is None
    out = dash.get(f"/api/jobs/{job_id}/output?stream=stdout")
    assert out == {"data": evil + "\n", "offset": len(evil) + 1, "size": len(evil) + 1, "more": False}
    assert dash.get(f"/api/jobs/{job_id}/output?stream=stderr&offset=8")["data"] == evil[8:]
    got = dash.events(f"/api/jobs/{job_id}/events", lambda got: any(e == "end" for e, _ in got))
    assert ("output", {"stream": "stdout", "data": evil + "\n", "offset": len(evil) + 1}) in got
    assert got[0][0] == "job" and got[0][1]["state"] == "completed"
    assert dash.request("GET", "/api/jobs/nope")[0] == 404


def test_output_comes_64_kib_at_a_time_and_never_cuts_a_character(dash: Dash, env: Env) -> None:
    # 30,000 euro signs: 90,000 bytes, and 65,536 falls inside one of them.
    job_id = env.enqueue(command="i=0; while [ $i -lt 300 ]; do printf '%0100d' 0 | sed 's/0/€/g'; i=$((i+1)); done")
    env.ok("worker", "start", "--count", "1", "--detach")
    env.wait_state(job_id, "completed")
    first = dash.get(f"/api/jobs/{job_id}/output")
    assert first["size"] == 90_000 and first["more"] is True and first["offset"] == 65_535
    assert first["data"] == "€" * 21_845
    rest = dash.get(f"/api/jobs/{job_id}/output?offset={first['offset']}")
    assert rest == {"data": "€" * 8_155, "offset": 90_000, "size": 90_000, "more": False}
    assert dash.get(f"/api/jobs/{job_id}/output?offset=99999") == {"data": "", "offset": 90_000, "size": 90_000,
                                                                   "more": False}


def test_a_running_jobs_output_streams_live_and_the_stream_ends_once_it_is_final(dash: Dash, env: Env,
                                                                                 home: str) -> None:
    go = os.path.join(home, "go")
    job_id = env.enqueue(command=f"echo first; while [ ! -e {go} ]; do sleep 0.05; done; echo second")
    env.ok("worker", "start", "--count", "1", "--detach")
    env.wait_state(job_id, "processing")

    def release_after_first(got: list[tuple[str, Any]]) -> bool:
        text = "".join(d["data"] for e, d in got if e == "output")
        if "first" in text and not os.path.exists(go):
            open(go, "w").close()
        return any(e == "end" for e, _ in got)

    got = dash.events(f"/api/jobs/{job_id}/events", release_after_first)
    assert "".join(d["data"] for e, d in got if e == "output") == "first\nsecond\n"
    states = [d["state"] for e, d in got if e == "job"]
    assert states[0] == "processing" and states[-1] == "completed"
    # From an offset: only what follows it.
    got = dash.events(f"/api/jobs/{job_id}/events?stdout=6", lambda got: any(e == "end" for e, _ in got))
    assert [d["data"] for e, d in got if e == "output"] == ["second\n"]


def test_actions_answer_with_the_daemons_words(dash: Dash, env: Env) -> None:
    dead = env.enqueue(command="exit 3", max_retries=0)
    env.ok("worker", "start", "--count", "1", "--detach")
    env.wait_state(dead, "dead")
    status, reply = dash.post(f"/api/jobs/{dead}/cancel")
    assert status == 409 and list(reply) == ["error"] and dead in reply["error"], reply
    assert dash.post("/api/dlq/retry", {"ids": [dead]}) == (200, {"ok": True,
                                                                  "message": "1 job(s) moved back to pending"})
    env.wait_state(dead, "dead")
    status, reply = dash.post(f"/api/jobs/{dead}/rerun")
    assert status == 200 and reply["message"].startswith(f"enqueued a copy of {dead} as ")
    assert dash.post("/api/groups/default/pause") == (200, {"ok": True, "message": "paused default"})
    assert dash.get("/api/groups")["groups"][0]["paused"] is True
    assert dash.post("/api/groups/nope/resume")[0] == 404
    assert dash.post("/api/groups/default/resume")[0] == 200
    assert dash.post("/api/pool", {"size": 3}) == (200, {"ok": True, "message": "the pool has 3 worker(s)"})
    for bad in ({"size": -1}, {"size": 1025}, {"size": "2"}, {}, [1]):
        status, reply = dash.post("/api/pool", bad)
        assert status == 400 and list(reply) == ["error"], bad
    assert dash.post("/api/dlq/retry", {"ids": [dead], "all": True})[0] == 400
    status, _, raw = dash.request("POST", "/api/pool", headers={"X-CSRF-Token": dash.csrf},
                                  raw=b"[" * 100_000 + b"]" * 100_000)
    assert status == 400 and json.loads(raw) == {"error": "the body is not JSON (or is nested too deeply)"}
    assert dash.post("/api/jobs/nope/delete") == (404, {"error": "no job with id 'nope'"})
    assert dash.get("/api/overview")["workers"]["configured"] == 3
    assert dash.get("/api/schedules") == {"schedules": []}
    # Bad listings and long ids: plain words, one bounded line.
    for query, says in (("cursor=garbage", "cursor: not a cursor of this listing"),
                        ("cursor=pending:" + "9" * 30, "'pending:" + "9" * 30 + "' is not a cursor of this listing"),
                        ("group=%00", "group: not a group name"),
                        ("q=" + "x" * 5000, "query: a search is 1 to 4096 characters")):
        status, _, raw = dash.request("GET", "/api/jobs?" + query)
        assert (status, json.loads(raw)) == (400, {"error": says}), query
    status, reply = dash.post("/api/dlq/retry", {"ids": ["a" * 100_000]})
    assert status == 404 and len(reply["error"]) <= 300 and reply["error"].endswith("…"), reply
    # Each change is in the audit trail, from the dashboard, with the uid of its process.
    trail = [(e["via"], e["action"], e["uid"]) for e in env.ok("audit", "--json").json() if e["via"] == "dashboard"]
    assert trail == [("dashboard", a, os.getuid()) for a in ("retry", "rerun", "pause", "resume", "pool")], trail


def test_only_the_dashboard_command_imports_aiohttp() -> None:
    code = ("import sys; from queuectl_client import cli; cli.build_parser(['status', '--json']); "
            "cli.build_parser(['dashboard']).parse_args(['dashboard', '--open']); "
            "print(sorted(m for m in ('aiohttp', 'aiofiles', 'queuectl_client.dashboard.app') if m in sys.modules))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert (proc.returncode, proc.stdout) == (0, "[]\n"), proc.stderr


def test_bash_completes_the_dashboards_flags_and_a_token_files_name(env: Env, home: str) -> None:
    path = os.path.join(home, "token")
    open(path, "w").close()
    script = env.ok("completions", "bash").out
    assert bash_complete(env, script, "queuectl", "dash") == ["dashboard"]
    assert bash_complete(env, script, "queuectl", "dashboard", "--t") == ["--token-file"]
    assert bash_complete(env, script, "queuectl", "dashboard", "--token-file", path[:-2]) == [path]


def test_metrics_are_the_prometheus_text_of_queuectl_metrics(env: Env, dash: Dash) -> None:
    status, h, body = dash.request("GET", "/metrics")
    assert status == 200 and h["content-type"] == "text/plain; version=0.0.4; charset=utf-8"
    assert b"# TYPE queuectl_jobs gauge" in body and b"queuectl_build_info{" in body
    names = {ln.split("{")[0].split(" ")[0] for ln in env.ok("metrics").out.splitlines() if not ln.startswith("#")}
    assert names == {ln.split("{")[0].split(" ")[0] for ln in body.decode().splitlines() if not ln.startswith("#")}


def test_listening_beyond_loopback_needs_allow_remote_and_bad_options_are_one_line(env: Env, home: str) -> None:
    empty = os.path.join(home, "empty")
    open(empty, "w").close()
    for args in (["--listen", "0.0.0.0:0"], ["--listen", "nonsense"], ["--listen", "127.0.0.1:99999"],
                 ["--token-file", os.path.join(home, "missing")], ["--token-file", empty],
                 ["--base-path", "/a b"], ["--base-path", "/a/../b"], ["--base-path", "/./q"], ["--base-path", "q"]):
        r = env.q("dashboard", *args, timeout=20)
        assert r.code == 2 and r.out == "" and len(r.err.splitlines()) == 1, (args, r)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        r = env.q("dashboard", "--listen", f"127.0.0.1:{taken.getsockname()[1]}", timeout=20)
    assert r.code == 1 and "cannot listen" in r.err and len(r.err.splitlines()) == 1, r


def test_allow_remote_warns_and_a_token_file_gives_the_token(env: Env, home: str) -> None:
    path = os.path.join(home, "token")
    with open(path, "w") as f:
        f.write("s3cret-token\nignored\n")
    d = Dash(env, "--token-file", path)
    try:
        assert d.token == "s3cret-token"
        status, _, body = d.request("GET", "/api/overview")
        assert status == 502 and json.loads(body)["error"].startswith("daemon unreachable")
    finally:
        assert d.stop()[0] == 0
    proc = subprocess.Popen([QUEUECTL, "dashboard", "--listen", "0.0.0.0:0", "--allow-remote"], env=env.env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    ready, _, _ = select.select([proc.stdout], [], [], 20)
    assert ready and proc.stdout.readline().startswith("dashboard: http://0.0.0.0:")
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=20)
    assert proc.returncode == 0 and "warning" in err and "Traceback" not in err


def test_the_dashboard_outlives_a_daemon_restart(dash: Dash, env: Env) -> None:
    assert dash.get("/api/overview")["jobs"]["pending"] == 0

    def stop_then_start(got: list[tuple[str, Any]]) -> bool:
        if got and got[-1][0] == "overview" and env.daemon is not None and not any(e == "unreachable" for e, _ in got):
            env.stop_daemon()
        if got and got[-1][0] == "unreachable" and env.daemon is None:
            status, _, body = dash.request("GET", "/api/overview")
            assert status == 502 and json.loads(body)["error"].startswith("daemon unreachable")
            env.start_daemon()
            env.enqueue(command="true", delay=3600)
        return bool(got) and got[-1][0] == "overview" and got[-1][1]["jobs"]["pending"] == 1

    dash.events("/api/events", stop_then_start, timeout=30)
    assert wait_for(lambda: dash.get("/api/jobs")["total"] == 1, what="the jobs after the restart")


def test_the_first_change_after_a_daemon_restart_is_made_with_no_page_open(dash: Dash, env: Env) -> None:
    assert dash.get("/api/groups")["groups"][0]["paused"] is False  # the dashboard's connection is open
    env.stop_daemon()
    env.start_daemon()
    assert dash.post("/api/groups/default/pause") == (200, {"ok": True, "message": "paused default"})
    assert env.ok("group", "list", "--json").json()[0]["paused"] is True


def test_a_token_or_csrf_header_that_is_not_utf8_is_refused_like_a_wrong_one(dash: Dash) -> None:
    for headers in ({"Authorization": "Bearer \xff\xfe"}, {"Cookie": "queuectl_token=\xff"}):
        status, _, body = dash.request("GET", "/api/overview", token=None, headers=headers)
        assert (status, body.decode()) == (401, REFUSED), headers
    dash.post("/api/pool", {"size": 1})  # reads the page's CSRF value
    status, _, body = dash.request("POST", "/api/pool", body={"size": 2}, headers={"X-CSRF-Token": "\xff"})
    assert (status, json.loads(body)) == (403, {"error": "forbidden"})


def test_a_host_no_resolver_takes_and_a_token_with_control_bytes_are_one_line(env: Env, home: str) -> None:
    r = env.q("dashboard", "--listen", "a" * 70 + ":80", "--allow-remote", timeout=20)
    assert r.code == 1 and r.err.startswith("queuectl: cannot listen on") and len(r.err.splitlines()) == 1, r
    for token in ("\x00abc", "a\x1bb", "a b", "a&b"):
        path = os.path.join(home, "token")
        with open(path, "w") as f:
            f.write(token + "\n")
        r = env.q("dashboard", "--listen", "127.0.0.1:0", "--token-file", path, timeout=20)
        assert r.code == 2 and r.out == "" and "printable ASCII" in r.err and len(r.err.splitlines()) == 1, r

