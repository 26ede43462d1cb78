"""The Unix socket: who may connect, and the per-connection frame loop.

Only this module touches client sockets.  Frames hold msgpack, or JSON for a
connection whose Hello is JSON (its body starts with `{`): the CLI's quick
path speaks JSON with the standard library, so that a one-shot call does not
pay for importing msgspec.  A frame's length is checked
against MAX_FRAME before its body is read, and its body must arrive within
a timeout.  A body that does not decode gets an `Error` reply and the
connection goes on; a bad length closes it.  Nothing a client sends can
raise out of a connection's task.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import struct
import time

import msgspec

from queuectl_client import protocol as p
from queuectl_client.wire import VERSION

from .audit import Actor, actor
from .config import ConfigError
from .handlers import Handlers
from .rules import QueueError
from .store import Full, StoreError

log = logging.getLogger("queuectld.server")

MAX_CONNECTIONS = 1024
BODY_TIMEOUT = 10.0  # seconds for the rest of a frame once its header arrived
HELLO_TIMEOUT = 5.0  # seconds a new connection has to say Hello
IDLE_TIMEOUT = 3600.0  # seconds a connection may wait between requests
SEND_BUFFER_LIMIT = 1 << 20  # a subscriber further behind than this loses events

_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(p.Request)
_json_encoder = msgspec.json.Encoder()
_json_decoder = msgspec.json.Decoder(p.Request)
_PEERCRED = struct.Struct("3i")


class Connection:
    """One client: its streams, its encoding, and the jobs it staged in a multi-frame enqueue."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.staged: list[p.JobSpec] = []
        self.uid = -1  # the peer's uid (SO_PEERCRED)
        self.via = ""  # what the peer said it is in its Hello (cli, shell, dashboard, python)
        self.greeted = False  # the first frame (the Hello) has been read: the encoding is known
        self.encode = _encoder.encode
        self.decode = _decoder.decode

    async def send(self, msg: p.Message) -> None:
        self.writer.write(p.frame(self.encode(msg)))
        await self.writer.drain()

    def send_nowait(self, msg: p.Message) -> bool:
        """Queue a frame unless the client is too far behind; False if it was not sent."""
        if self.writer.is_closing() or self.writer.transport.get_write_buffer_size() > SEND_BUFFER_LIMIT:
            return False
        self.writer.write(p.frame(self.encode(msg)))
        return True

    async def closed(self) -> None:
        """Returns when the client hangs up (anything it sends meanwhile is ignored)."""
        while await self.reader.read(4096):
            pass

    async def read(self, timeout: float | None) -> p.Message | None:
        """The next request, or None at a clean end of stream."""
        try:
            header = await asyncio.wait_for(self.reader.readexactly(p.HEADER_SIZE), timeout)
        except asyncio.IncompleteReadError as e:
            if e.partial:
                raise p.ProtocolError("truncated frame header") from None
            return None
        body = await asyncio.wait_for(self.reader.readexactly(p.frame_length(header)), BODY_TIMEOUT)
        if not self.greeted:
            self.greeted = True
            if body[:1] == b"{":  # a msgpack message never starts with this byte (a bare integer)
                self.encode = _json_encoder.encode
                self.decode = _json_decoder.decode
        msg: p.Message = self.decode(body)
        return msg


class Server:
    def __init__(self, handlers: Handlers) -> None:
        self.handlers = handlers
        self.connections: set[asyncio.Task[None]] = set()
        self.busy: set[asyncio.Task[None]] = set()  # connections in the middle of a request
        self.server: asyncio.AbstractServer | None = None
        self.uid = os.getuid()

    async def start(self, sock: socket.socket) -> None:
        self.server = await asyncio.start_unix_server(self._accept, sock=sock)

    async def close(self, grace: float = 1.0) -> None:
        """Stop listening; let requests in progress send their replies (for up to `grace` s); end every connection."""
        if self.server is not None:
            self.server.close()
        for task in self.connections - self.busy:
            task.cancel()
        if self.busy:
            await asyncio.wait(list(self.busy), timeout=grace)
        for task in list(self.connections):
            task.cancel()
        if self.connections:
            await asyncio.wait(list(self.connections), timeout=5)
        if self.server is not None:
            await self.server.wait_closed()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self.connections.add(task)
        try:
            await self._serve(Connection(reader, writer))
        except asyncio.CancelledError:
            pass
        finally:
            self.connections.discard(task)
            writer.close()

    def _peer_uid(self, writer: asyncio.StreamWriter) -> int:
        sock = writer.get_extra_info("socket")
        _pid, uid, _gid = _PEERCRED.unpack(sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _PEERCRED.size))
        return int(uid)

    async def _serve(self, conn: Connection) -> None:
        try:
            uid = conn.uid = self._peer_uid(conn.writer)
            if uid != self.uid:
                log.warning("refused a connection from uid %d", uid)
                await conn.send(p.Error("invalid", f"permission denied: queuectld serves uid {self.uid} only"))
                return
            if len(self.connections) > MAX_CONNECTIONS:
                await conn.send(p.Error("internal", f"too many connections (limit {MAX_CONNECTIONS})"))
                return
            try:
                hello = await conn.read(HELLO_TIMEOUT)
            except (msgspec.DecodeError, msgspec.ValidationError):
                hello = None
            if not isinstance(hello, p.Hello):
                await conn.send(p.Error("invalid", "expected Hello first"))
                return
            conn.via = hello.via[:32]
            await conn.send(p.Hello(p.PROTOCOL_VERSION, os.getpid(), VERSION, self.handlers.stopping))
            while True:
                try:
                    req = await conn.read(IDLE_TIMEOUT)
                except (msgspec.DecodeError, msgspec.ValidationError) as e:
                    conn.staged = []  # a multi-frame enqueue with a bad frame fails whole
                    await conn.send(p.Error("invalid", f"bad request: {e}"))
                    continue
                if req is None:
                    return
                task = asyncio.current_task()
                assert task is not None
                self.busy.add(task)
                try:
                    reply = await self._handle(req, conn)
                    if reply is not None:
                        await conn.send(reply)
                finally:
                    self.busy.discard(task)
        except p.ProtocolError as e:
            await _try_send(conn, p.Error("invalid", str(e)))
        except (TimeoutError, ConnectionError, asyncio.IncompleteReadError):
            pass

    async def _handle(self, req: p.Message, conn: Connection) -> p.Message | None:
        handler = self.handlers.table.get(type(req))
        if handler is None:
            return p.Error("invalid", f"unexpected {type(req).__name__} request")
        token = actor.set(Actor(time.time(), conn.uid, conn.via, type(req).__name__))  # who: for the records
        try:
            return await handler(req, conn)
        except QueueError as e:
            return p.Error(e.code, str(e))
        except ConfigError as e:
            return p.Error("invalid", str(e))
        except Full as e:
            return p.Error("disk_full", str(e))
        except StoreError as e:
            return p.Error("internal", str(e))
        except self.handlers.store.unavailable as e:  # the database is away for now: one line, no traceback
            what = (str(e) or type(e).__name__).splitlines()[0]
            log.warning("request %s failed: the database: %s", type(req).__name__, what)
            return p.Error("internal", f"the database cannot be reached now: {what}")
        except (ConnectionError, asyncio.CancelledError):
            raise
        except Exception as e:
            log.exception("request %s failed", type(req).__name__)
            return p.Error("internal", f"{type(req).__name__} failed: {e}")
        finally:
            actor.reset(token)


async def _try_send(conn: Connection, msg: p.Message) -> None:
    try:
        await conn.send(msg)
    except ConnectionError:
        pass
