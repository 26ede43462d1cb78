"""Where a node finds its database: the URL, the password (never from argv), and connections with backoff.

The URL comes from `--store` or QUEUECTL_STORE.  A password in a `--store` URL is refused, since
every user of the machine reads argv (`ps`); QUEUECTL_STORE may carry one (a process's environment is
its owner's only).  Otherwise the password comes from `--store-password-file FILE` or
QUEUECTL_STORE_PASSWORD_FILE (its first line), then PGPASSWORD, then ~/.pgpass, the last two read by
asyncpg itself.  TLS: `sslmode=` in the URL (disable, prefer, require, verify-ca, verify-full).
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import stat
from collections.abc import Mapping
from typing import Any
from urllib.parse import parse_qsl, urlsplit, urlunsplit

from ..store import StoreError

log = logging.getLogger("queuectld.store")

BACKOFF_FIRST = 0.1  # seconds before the first new attempt after a lost connection; doubled each time
BACKOFF_MAX = 5.0
EXIT_UNREACHABLE = 69  # EX_UNAVAILABLE: the database could not be reached at start (systemd restarts the node)

ALTERNATIVES = ("QUEUECTL_STORE (environment), --store-password-file FILE, QUEUECTL_STORE_PASSWORD_FILE, "
                "PGPASSWORD or ~/.pgpass")


class Unreachable(StoreError):
    """The database cannot be reached (refused, timed out, no route): a start may be tried again later."""

    exit_code = EXIT_UNREACHABLE


def is_url(text: str) -> bool:
    return text.startswith(("postgresql://", "postgres://"))


def has_password(url: str) -> bool:
    try:
        parts = urlsplit(url)
    except ValueError:
        return False
    return parts.password is not None or "password=" in parts.query.lower()


def redact(url: str) -> str:
    """The URL as logs may show it: without a password."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "postgresql://…"
    if parts.password is None:
        return url
    host = parts.hostname or ""
    if parts.port:
        host += f":{parts.port}"
    user = f"{parts.username}@" if parts.username else ""
    return urlunsplit((parts.scheme, user + host, parts.path, parts.query, parts.fragment))


def read_password_file(path: str) -> str:
    """The first line of FILE, without its line end; StoreError (one line) if it cannot be used."""
    try:
        with open(path, "rb") as f:
            st = os.fstat(f.fileno())
            data = f.read(4096)
    except OSError as e:
        raise StoreError(f"cannot read the password file {path}: {e.strerror}") from None
    if st.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        log.warning("the password file %s can be read by other users (mode %o); chmod 600 it", path,
                    stat.S_IMODE(st.st_mode))
    line = data.split(b"\n", 1)[0].rstrip(b"\r")
    try:
        password = line.decode()
    except UnicodeDecodeError:
        raise StoreError(f"the password file {path} is not UTF-8 text") from None
    if not password:
        raise StoreError(f"the password file {path} is empty")
    return password


def resolve(argv_url: str | None, password_file: str | None,
            environ: Mapping[str, str]) -> tuple[str | None, dict[str, Any]]:
    """The database URL (None: no --store and no QUEUECTL_STORE: the journal store) and the keyword
    arguments for asyncpg (the password, when a file gives it).  StoreError: one line saying why not."""
    url = argv_url
    if url is not None and has_password(url):
        raise StoreError(f"--store must not carry a password (every user can read a command line); give it in "
                         f"{ALTERNATIVES}")
    if url is None:
        url = environ.get("QUEUECTL_STORE") or None
    if url is None:
        return None, {}
    if not is_url(url):
        raise StoreError(f"the store {redact(url)!r} is not a postgresql:// URL")
    check_url(url)
    extra: dict[str, Any] = {}
    path = password_file or environ.get("QUEUECTL_STORE_PASSWORD_FILE") or None
    if path is not None:
        extra["password"] = read_password_file(path)
    return url, extra


SSLMODES = ("disable", "allow", "prefer", "require", "verify-ca", "verify-full")
NODE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


def check_url(url: str) -> None:
    """Refuse, in one line, what asyncpg would refuse with a traceback: a port that is not one, an
    unknown sslmode, connect_timeout, a control character, a URL that does not parse (an unclosed IPv6 bracket)."""
    if any(ord(c) < 32 or ord(c) == 127 for c in url):
        raise StoreError(f"the store {redact(url)!r} holds a control character")
    try:
        parts = urlsplit(url)
    except ValueError as e:
        raise StoreError(f"the store {redact(url)!r} is not a URL: {e}") from None
    for host in parts.netloc.rpartition("@")[2].split(","):  # host[:port], several for a failover list
        after = host.rpartition("]")[2]  # past an IPv6 address's brackets
        if ":" not in after:
            continue
        port = after.rpartition(":")[2]
        if not port.isdigit() or not 1 <= int(port) <= 65535:
            raise StoreError(f"the store {redact(url)!r} names port {port!r}: a port is a number from 1 to 65535")
    for key, value in parse_qsl(parts.query):
        if key == "sslmode" and value not in SSLMODES:
            raise StoreError(f"sslmode={value!r} is not one of {', '.join(SSLMODES)}")
        if key == "connect_timeout":  # asyncpg would send it to the server as a setting it refuses
            raise StoreError("connect_timeout= is not supported in the store URL: queuectld bounds each "
                             "connection attempt itself")


def check_node(name: str) -> str:
    """A node name as `--node` gives it: letters, digits, '.', '_' and '-', at most 64 (it is shown as
    NAME/WORKER); StoreError if not."""
    if not NODE_NAME.fullmatch(name):
        raise StoreError(f"--node {name!r}: a node name is 1 to 64 letters, digits, '.', '_' or '-', "
                         "starting with a letter or digit")
    return name


def unreachable(e: BaseException) -> bool:
    """Whether a failure to connect says the server is not there (rather than that it refuses us)."""
    import asyncpg

    if isinstance(e, asyncpg.CannotConnectNowError | asyncpg.TooManyConnectionsError):
        return True
    return isinstance(e, OSError | asyncio.TimeoutError | ConnectionError)


async def connect(url: str, timeout: float, **kwargs: Any) -> Any:
    """One direct connection (no pooler session state is assumed), within `timeout` s."""
    import asyncpg

    return await asyncio.wait_for(asyncpg.connect(url, timeout=timeout, **kwargs), timeout)


def next_delay(delay: float) -> float:
    return min(delay * 2, BACKOFF_MAX)
