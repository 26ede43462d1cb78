"""`queuectl dashboard`: the routes, the listening socket, the start line, and a clean stop.

Every route is under the base path; outside it there is nothing (404, after
the token check like everything else).
"""

from __future__ import annotations

import asyncio
import html
import ipaddress
import re
import signal
import socket
import sys
import webbrowser
from dataclasses import dataclass
from importlib import resources

from aiohttp import web

from ..paths import Paths
from . import auth
from .api import Api
from .hub import Hub
from .link import Link

DEFAULT_LISTEN = "127.0.0.1:8470"
ANSWER_WITHIN = 30.0  # seconds the daemon may take to answer one request
BASE_PATH = re.compile(r"^(/[A-Za-z0-9._~-]+)*$")


class BadOption(Exception):
    """A bad --listen, --base-path or --token-file: one line, exit 2."""


@dataclass
class Options:
    host: str
    port: int
    base: str
    token: str
    allow_remote: bool
    open_browser: bool


def parse_listen(text: str) -> tuple[str, int]:
    m = re.fullmatch(r"\[([0-9A-Fa-f:.]+)\]:(\d{1,5})|([^:\[\]]*):(\d{1,5})", text)
    if m is None:
        raise BadOption(f"--listen takes HOST:PORT (for example {DEFAULT_LISTEN} or [::1]:8470), not {text!r}")
    host = m.group(1) or m.group(3) or ""
    port = int(m.group(2) or m.group(4))
    if not host or port > 65535:
        raise BadOption(f"--listen takes HOST:PORT with a host and a port from 0 to 65535, not {text!r}")
    return host, port


def loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def parse_base(text: str | None) -> str:
    base = (text or "").rstrip("/")
    if (base and not base.startswith("/")) or not BASE_PATH.fullmatch(base) or \
            any(part in (".", "..") for part in base.split("/")):
        raise BadOption(f"--base-path takes a path like /queue (letters, digits, . _ ~ - between slashes), "
                        f"not {text!r}")
    return base


def options(listen: str | None, base_path: str | None, token_file: str | None, allow_remote: bool,
            open_browser: bool) -> Options:
    host, port = parse_listen(listen or DEFAULT_LISTEN)
    if not loopback(host) and not allow_remote:
        raise BadOption(f"--listen {host} is not a loopback address: anyone who can reach it may try the token; "
                        "add --allow-remote to mean it")
    try:
        token = auth.read_token(token_file)
    except auth.TokenFileError as e:
        raise BadOption(str(e)) from None
    return Options(host, port, parse_base(base_path), token, allow_remote, open_browser)


def _index(base: str, csrf: str) -> str:
    page = resources.files(__package__).joinpath("static/index.html").read_text(encoding="utf-8")
    return (page.replace("{{BASE_PATH}}", html.escape(base, quote=True))
                .replace("{{CSRF_TOKEN}}", html.escape(csrf, quote=True)))


def build(paths: Paths, opts: Options) -> tuple[web.Application, Hub]:
    guard = auth.Guard(opts.token, opts.base)
    link = Link(None)
    link.client.paths = paths
    hub = Hub(link)
    api = Api(link, hub)
    app = web.Application(middlewares=[guard.middleware, api.errors], client_max_size=1 << 20)
    app.on_response_prepare.append(auth.headers)
    index = _index(opts.base, guard.csrf)

    async def page(request: web.Request) -> web.Response:
        return web.Response(text=index, content_type="text/html")

    b = opts.base
    static = str(resources.files(__package__).joinpath("static"))
    app.router.add_get(b + "/", page)
    app.router.add_static(b + "/static/", static, show_index=False, follow_symlinks=False)
    app.router.add_get(b + "/api/overview", api.overview)
    app.router.add_get(b + "/api/jobs", api.jobs)
    app.router.add_get(b + "/api/jobs/{id}", api.job)
    app.router.add_get(b + "/api/jobs/{id}/output", api.output)
    app.router.add_get(b + "/api/jobs/{id}/events", api.job_events)
    app.router.add_post(b + "/api/jobs/{id}/{action:cancel|retry|rerun|delete}", api.job_action)
    app.router.add_get(b + "/api/dlq", api.dlq)
    app.router.add_post(b + "/api/dlq/retry", api.dlq_retry)
    app.router.add_get(b + "/api/schedules", api.schedules)
    app.router.add_get(b + "/api/groups", api.groups)
    app.router.add_post(b + "/api/groups/{name}/{action:pause|resume}", api.group_action)
    app.router.add_post(b + "/api/pool", api.pool)
    app.router.add_get(b + "/api/events", api.events)
    app.router.add_get(b + "/metrics", api.metrics)

    async def stopping(app: web.Application) -> None:
        await hub.close()
        api.watchers.close()
        link.close()

    app.on_shutdown.append(stopping)
    return app, hub


def url(host: str, port: int, base: str, token: str) -> str:
    shown = f"[{host}]" if ":" in host else host
    return f"http://{shown}:{port}{base}/?token={token}"


async def serve(paths: Paths, opts: Options) -> int:
    stop = asyncio.Event()  # set by SIGTERM or SIGINT, from before the start line on
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    app, hub = build(paths, opts)
    runner = web.AppRunner(app, shutdown_timeout=2.0, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, opts.host, opts.port, reuse_address=True)
    try:
        await site.start()
    except (OSError, UnicodeError) as e:  # UnicodeError: a host name no resolver takes (a label too long)
        await runner.cleanup()
        print(f"queuectl: cannot listen on {opts.host}:{opts.port}: {getattr(e, 'strerror', None) or e}",
              file=sys.stderr)
        return 1
    hub.start()
    port = opts.port
    for address in runner.addresses:
        port = address[1]
        break
    link = url(opts.host, port, opts.base, opts.token)
    if not loopback(opts.host):
        print(f"queuectl: warning: the dashboard listens on {opts.host}, beyond this machine; anyone who "
              "has the token can act on the queue", file=sys.stderr)
    print(f"dashboard: {link}", flush=True)
    if opts.open_browser:
        webbrowser.open(link)
    try:
        await stop.wait()
    finally:
        await runner.cleanup()
    return 0


def run(paths: Paths, listen: str | None, base_path: str | None, token_file: str | None, allow_remote: bool,
        open_browser: bool) -> int:
    """The command: 0 after SIGTERM or SIGINT, 1 if it cannot listen, 2 for a bad option (BadOption)."""
    opts = options(listen, base_path, token_file, allow_remote, open_browser)
    # The link's blocking socket: a daemon that stops answering (stopped with SIGSTOP, say) is
    # unreachable after this long, instead of holding every request.  The server's own sockets
    # are non-blocking and unaffected.
    socket.setdefaulttimeout(ANSWER_WITHIN)
    return asyncio.run(serve(paths, opts))
