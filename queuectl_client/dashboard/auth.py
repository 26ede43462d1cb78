"""Who may use the dashboard: the token (cookie, bearer header or ?token=), the CSRF header and Origin
on POSTs, and the headers every response carries.  No CORS header is ever sent."""

from __future__ import annotations

import hmac
import secrets
from collections.abc import Awaitable, Callable

from aiohttp import web

COOKIE = "queuectl_token"
REFUSED = "401: this dashboard needs its token (see the URL queuectl dashboard printed)"
CSP = ("default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; connect-src 'self'; "
       "frame-ancestors 'none'; base-uri 'none'")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class TokenFileError(Exception):
    """The token file cannot be read, or its first line is empty."""


def read_token(path: str | None) -> str:
    """The first line of `path`, or a new random token."""
    if path is None:
        return secrets.token_urlsafe(32)
    try:
        with open(path, encoding="utf-8") as f:
            line = f.readline().strip()
    except (OSError, UnicodeDecodeError) as e:
        raise TokenFileError(f"cannot read the token file {path}: {getattr(e, 'strerror', None) or e}") from None
    if not line:
        raise TokenFileError(f"the token file {path} has no token on its first line")
    if not line.isprintable() or not line.isascii() or any(c in line for c in " &#%?/+"):
        raise TokenFileError(f"the token in {path} must be printable ASCII without spaces or any of & # % ? / +")
    return line


def _same(given: str, secret: str) -> bool:
    """Whether a header's value is the secret, in constant time (a header's bytes that are not UTF-8
    reach here as surrogate escapes: they are compared as the bytes they were)."""
    return hmac.compare_digest(given.encode("utf-8", "surrogateescape"), secret.encode())


class Guard:
    def __init__(self, token: str, base: str) -> None:
        self.token = token
        self.csrf = secrets.token_urlsafe(32)
        self.base = base

    def _matches(self, given: str | None) -> bool:
        return given is not None and _same(given, self.token)

    def _given(self, request: web.Request) -> tuple[str | None, bool]:
        """The token the request carries, and whether it came in the URL."""
        auth = request.headers.get("Authorization", "")
        if auth.startswith("Bearer "):
            return auth[7:].strip(), False
        if "token" in request.query:
            return request.query["token"], True
        return request.cookies.get(COOKIE), False

    @web.middleware
    async def middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.method == "OPTIONS":
            return web.Response(status=405, text="405: method not allowed")
        given, in_url = self._given(request)
        if not self._matches(given):
            return web.Response(status=401, text=REFUSED)
        if in_url and request.method == "GET" and request.path in (self.base + "/", self.base or "/"):
            response = web.Response(status=303, headers={"Location": self.base + "/"})
            response.set_cookie(COOKIE, self.token, path=self.base + "/", httponly=True, samesite="Strict",
                                secure=request.secure)
            return response
        if request.method == "POST" and not self._post_allowed(request):
            return web.json_response({"error": "forbidden"}, status=403)
        return await handler(request)

    def _post_allowed(self, request: web.Request) -> bool:
        csrf = request.headers.get("X-CSRF-Token")
        if csrf is None or not _same(csrf, self.csrf):
            return False
        origin = request.headers.get("Origin")
        return origin is None or origin == f"{request.scheme}://{request.host}"


async def headers(request: web.Request, response: web.StreamResponse) -> None:
    """Every response's headers (an `on_response_prepare` signal: streams and errors get them too)."""
    h = response.headers
    h["Content-Security-Policy"] = CSP
    h["X-Content-Type-Options"] = "nosniff"
    h["Referrer-Policy"] = "no-referrer"
    if "/api/" in request.path or request.path.endswith("/metrics") or response.status >= 400:
        h["Cache-Control"] = "no-store"
