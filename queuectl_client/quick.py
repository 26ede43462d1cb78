"""`queuectl`'s entry point, with a quick path for the calls scripts make most.

`queuectl status [--json]` and `queuectl enqueue JSON` (one job) are served
here with the standard library only: no msgspec, no argparse.  The daemon
answers a connection in JSON when its Hello is JSON, so `json` does the
encoding.  Any other command, and every case the quick path is not sure of,
goes to the full CLI (`cli.main`), which gives the same result and the
canonical messages: a daemon that is not running (the full path starts one),
a reply the quick path cannot read, a job the daemon calls invalid (the full
path names the bad field the same way as for a file of jobs), a `run_at`
time (the full path reads it in the caller's zone), and a current directory
that no longer exists.
"""

from __future__ import annotations

import json
import os
import socket
import sys

from . import wire
from .environ import inherited
from .paths import resolve
from .text import not_utf8

TYPE_CHECKING = False  # typing costs a CLI call ~5 ms; it is for the type checker only
if TYPE_CHECKING:
    from typing import Any


def entry() -> None:
    argv = sys.argv[1:]
    problem = not_utf8(argv)
    if problem is not None:
        print(f"queuectl: {problem}", file=sys.stderr)
        sys.exit(2)
    code = quick(argv)
    if code is None:
        from .cli import main

        code = main(argv)
    sys.exit(code)


def quick(argv: list[str]) -> int | None:
    """The exit code, or None when the full CLI should handle `argv`."""
    try:
        if argv in (["status"], ["status", "--json"]):
            return _status(json_out=len(argv) == 2)
        if len(argv) == 2 and argv[0] == "enqueue" and argv[1].lstrip().startswith("{"):
            return _enqueue(argv[1])
    except _Fallback:
        pass
    return None


class _Fallback(Exception):
    """Leave this call to the full CLI."""


class _Link:
    """One connection, greeted; every failure before a request is sent means: fall back."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            self.sock.connect(resolve().socket)
            self.send({"type": "Hello", "version": wire.PROTOCOL_VERSION, "pid": os.getpid(), "server_version": "",
                       "via": "cli"})
            hello = self.read()
        except (OSError, ValueError, wire.ProtocolError):
            self.sock.close()
            raise _Fallback from None
        if hello.get("type") != "Hello" or hello.get("version") != wire.PROTOCOL_VERSION:
            self.sock.close()
            raise _Fallback

    def send(self, msg: dict[str, Any]) -> None:
        self.sock.sendall(wire.frame(encode(msg)))

    def read(self) -> dict[str, Any]:
        body = self._exactly(wire.frame_length(self._exactly(wire.HEADER_SIZE)))
        msg = json.loads(body, parse_constant=_refuse)
        if not isinstance(msg, dict):
            raise ValueError("a reply that is not a message")
        return msg

    def _exactly(self, n: int) -> bytes:
        buf = bytearray()
        while len(buf) < n:
            chunk = self.sock.recv(n - len(buf))
            if not chunk:
                raise ConnectionResetError("queuectld closed the connection")
            buf += chunk
        return bytes(buf)


def encode(msg: dict[str, Any]) -> bytes:
    """A message as JSON; ValueError for what JSON or one frame cannot hold (NaN, lone surrogates, size)."""
    body = json.dumps(msg, ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode()
    if len(body) > wire.MAX_FRAME:
        raise ValueError("too large for a frame")
    return body


def _refuse(constant: str) -> Any:
    raise ValueError(constant)  # NaN and Infinity are not JSON; the full path says so


def _fail(reply: dict[str, Any]) -> int:
    message = str(reply.get("message", "error")).splitlines() or ["error"]
    print(f"queuectl: {message[0]}", file=sys.stderr)
    return wire.ERROR_CODES.get(reply.get("code", ""), 1)


def _status(json_out: bool) -> int:
    from .render import set_color, status_json, status_lines

    set_color(sys.stdout.isatty() and not os.environ.get("NO_COLOR"))

    link = _Link()
    try:
        link.send({"type": "Status"})
        reply = link.read()
        if reply.get("type") == "Error":
            return _fail(reply)
        if reply.get("type") != "StatusReply":
            raise _Fallback
        if json_out:
            text = json.dumps(status_json(reply), indent=2, ensure_ascii=False)
        else:
            text = "\n".join(status_lines(reply))
    except (OSError, ValueError, KeyError, TypeError, wire.ProtocolError):
        raise _Fallback from None  # the full path asks again, and explains a failure
    finally:
        link.sock.close()
    sys.stdout.write(text + "\n")
    return 0


def _enqueue(text: str) -> int:
    try:
        job = json.loads(text, parse_constant=_refuse)
    except ValueError:
        raise _Fallback from None
    if not isinstance(job, dict) or any(isinstance(v, (dict, list)) for v in job.values()):
        raise _Fallback
    if isinstance(job.get("run_at"), str):
        raise _Fallback  # a time: the full path reads it in this process's zone
    prefix = "" if "id" in job else wire.new_id_prefix()
    try:
        cwd = os.getcwd()
    except OSError:
        raise _Fallback from None  # deleted: the full path refuses a job that names no directory
    try:
        request = encode({"type": "Enqueue", "jobs": [job], "more": False, "id_prefix": prefix, "cwd": cwd,
                          "env": inherited(os.environ)})
    except ValueError:
        raise _Fallback from None
    link = _Link()
    try:
        link.sock.sendall(wire.frame(request))
    except OSError:
        link.sock.close()
        raise _Fallback from None  # not sent: the full path sends it
    try:
        reply = link.read()
    except (OSError, ValueError, wire.ProtocolError):
        # The request went out and the reply was lost: the job may be in.  Send it again under
        # the same prefix, where a duplicate means the first copy landed.
        return _enqueue_again(text, prefix)
    finally:
        link.sock.close()
    kind = reply.get("type")
    if kind == "Enqueued" and isinstance(reply.get("ids"), list) and len(reply["ids"]) == 1:
        sys.stdout.write(f"{reply['ids'][0]}\n")
        return 0
    if kind != "Error":
        return _enqueue_again(text, prefix)  # a reply it cannot read: as if lost
    if reply.get("code") not in ("invalid", "duplicate"):
        return _fail(reply)
    # Invalid: nothing was added, and the full path names the bad field.  Duplicate: a given id
    # exists (the full path says so), or the random prefix collided (it draws another).
    raise _Fallback


def _enqueue_again(text: str, prefix: str) -> int:
    from .cli import enqueue_again

    return enqueue_again(text, prefix)
