"""A blocking client for queuectld: connect (starting a daemon if needed), request, stream.

This module, like the rest of the client outside `repl`, avoids asyncio so that
a CLI call stays cheap.
"""

from __future__ import annotations

import builtins
import errno
import os
import socket
import sys
import time
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import msgspec

from . import paths as _paths
from . import protocol as p
from .wire import VERSION, new_id_prefix

__version__ = VERSION

AUTOSTART_TIMEOUT = 10.0

_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(p.Reply)


class DaemonUnavailable(Exception):
    """queuectld is not answering and could not be started."""


class ConnectionLost(DaemonUnavailable):
    """The daemon closed the connection before it replied."""


class RequestFailed(Exception):
    """The daemon refused the request; `code` is one of protocol.ERROR_CODES."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message

    @property
    def exit_code(self) -> int:
        return p.ERROR_CODES.get(self.code, 1)


class Client:
    """One connection to queuectld.

    >>> with Client() as c:
    ...     c.enqueue("echo hello")
    """

    def __init__(self, home: str | None = None, *, autostart: bool | None = None) -> None:
        self.paths = _paths.resolve(home)
        if autostart is None:
            autostart = os.environ.get("QUEUECTL_NO_AUTOSTART", "") not in ("1", "true", "yes")
        self.autostart = autostart
        self._sock: socket.socket | None = None
        self._rfile: Any = None
        self.server: p.Hello | None = None

    # -- connection ---------------------------------------------------------

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self._sock is not None:
            self._rfile.close()
            self._sock.close()
            self._sock = None

    def alive(self) -> bool:
        """Whether the open connection still stands; False once the daemon has closed it.

        Between requests the daemon sends nothing, so anything readable (its end
        of stream, or a stray frame) means the connection is no longer usable.
        """
        if self._sock is None:
            return False
        try:
            self._sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT)
        except BlockingIOError:
            return True
        except OSError:
            return False
        return False

    def connect(self) -> None:
        if self._sock is not None:
            return
        try:
            self._connect_once()
        except (OSError, ConnectionLost) as e:
            if not self.autostart or not _not_answering(e):
                raise DaemonUnavailable(f"cannot connect to {self.paths.socket}: {_reason(e)}") from None
            self._start_daemon()

    def _connect_once(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.connect(self.paths.socket)
            sock.sendall(p.frame(_encoder.encode(p.Hello(pid=os.getpid()))))
            self._sock, self._rfile = sock, sock.makefile("rb")
            hello = self._read()
        except BaseException:
            self._sock = None
            sock.close()
            raise
        if not isinstance(hello, p.Hello):
            self.close()
            raise DaemonUnavailable(f"unexpected greeting from {self.paths.socket}")
        if hello.version != p.PROTOCOL_VERSION:
            self.close()
            raise DaemonUnavailable(
                f"queuectld speaks protocol {hello.version}, this client speaks {p.PROTOCOL_VERSION}; "
                "restart the daemon"
            )
        self.server = hello

    def _start_daemon(self) -> None:
        import subprocess

        os.makedirs(self.paths.state, mode=0o700, exist_ok=True)

        def spawn() -> subprocess.Popen[bytes]:
            with open(self.paths.daemon_log, "ab") as log:
                return subprocess.Popen(
                    [sys.executable, "-m", "queuectld"],
                    stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                    start_new_session=True, close_fds=True,
                )

        proc = spawn()
        deadline = time.monotonic() + AUTOSTART_TIMEOUT
        delay = 0.002
        while True:
            try:
                self._connect_once()
                return
            except (OSError, ConnectionLost) as e:
                if not _not_answering(e):
                    raise DaemonUnavailable(f"cannot connect to {self.paths.socket}: {_reason(e)}") from None
            code = proc.poll()
            if code == 75:
                # Another daemon holds the lock: it is starting (it will answer) or dying (it
                # will let go); either way, try again.
                proc = spawn()
            elif code is not None:
                raise DaemonUnavailable(f"could not start queuectld: {_last_line(self.paths.daemon_log)}")
            if time.monotonic() > deadline:
                raise DaemonUnavailable(
                    f"queuectld did not answer on {self.paths.socket} within {AUTOSTART_TIMEOUT:.0f} s"
                )
            time.sleep(delay)
            delay = min(delay * 2, 0.05)

    # -- framing ------------------------------------------------------------

    def _send(self, msg: p.Message) -> None:
        assert self._sock is not None
        try:
            self._sock.sendall(p.frame(_encoder.encode(msg)))
        except OSError as e:
            self.close()
            raise ConnectionLost(f"lost the connection to queuectld: {e.strerror}") from None

    def _read(self) -> p.Message:
        try:
            header = self._rfile.read(p.HEADER_SIZE)
            if len(header) == p.HEADER_SIZE:
                body = self._rfile.read(p.frame_length(header))
                msg: p.Message = _decoder.decode(body)
                return msg
        except (OSError, p.ProtocolError, msgspec.DecodeError) as e:
            self.close()
            raise ConnectionLost(f"lost the connection to queuectld: {e}") from None
        self.close()
        raise ConnectionLost("queuectld closed the connection")

    def _reply(self, msg: p.Message) -> p.Message:
        self.connect()
        self._send(msg)
        reply = self._read()
        if isinstance(reply, p.Error):
            raise RequestFailed(reply.code, reply.message)
        return reply

    def request(self, msg: p.Message, retry: bool = True) -> Any:
        """Send one request and return its reply; `retry` reconnects once if the reply is lost."""
        try:
            return self._reply(msg)
        except ConnectionLost:
            if not retry:
                raise
        return self._reply(msg)

    def stream(self, msg: p.Message) -> Iterator[p.Message]:
        """Send one request and yield its replies until the daemon says it is done."""
        self.connect()
        self._send(msg)
        while True:
            reply = self._read()
            if isinstance(reply, p.Error):
                raise RequestFailed(reply.code, reply.message)
            yield reply
            if isinstance(reply, p.JobPage) and not reply.more:
                return
            if isinstance(reply, p.PoolStopped):
                return

    # -- the API --------------------------------------------------------------

    def enqueue(self, command: str, **fields: Any) -> str:
        """Add one job and return its id once it is on disk."""
        return self.enqueue_many([dict(fields, command=command)])[0]

    def enqueue_many(self, jobs: Iterable[dict[str, Any] | p.JobSpec], cwd: str | None = None,
                     batch: int = 20_000) -> list[str]:
        """Add jobs all or nothing and return their ids once they are on disk.

        Each job is a JobSpec or a dict of its JSON fields (`command`, `id`,
        `max_retries`, `priority`, `run_at`, `delay`, `timeout`, `cwd`).
        Raises msgspec.ValidationError naming a bad field.
        """
        items = builtins.list(jobs)
        if all(isinstance(j, p.JobSpec) for j in items):
            specs: list[p.JobSpec] = items  # type: ignore[assignment]
        else:
            specs = msgspec.convert([j if isinstance(j, dict) else msgspec.structs.asdict(j) for j in items],
                                    builtins.list[p.JobSpec])
        return self.enqueue_specs(specs, cwd, batch)

    def enqueue_specs(self, specs: list[p.JobSpec], cwd: str | None = None, batch: int = 20_000) -> list[str]:
        """Add checked jobs; those without an id are named from a random prefix made here.

        A prefix made here lets a request resent after a lost reply be
        recognised as a duplicate instead of adding the jobs twice; if it
        collides with existing jobs, another is drawn.
        """
        own = any(s.id is None for s in specs)
        given = not all(s.id is None for s in specs)
        for attempt in range(3):
            try:
                return self._enqueue_batch(specs, new_id_prefix() if own else "", cwd, batch)
            except RequestFailed as e:
                if e.code != "duplicate" or given or attempt == 2:
                    raise
        raise AssertionError("unreachable")

    def _enqueue_batch(self, specs: list[p.JobSpec], prefix: str, cwd: str | None, batch: int) -> list[str]:
        try:
            reply = self._send_batch(specs, prefix, cwd, batch)
        except ConnectionLost:
            return self.enqueue_resent(specs, prefix, cwd, batch)
        assert isinstance(reply, p.Enqueued)
        return reply.ids

    def enqueue_resent(self, specs: list[p.JobSpec], prefix: str, cwd: str | None = None,
                       batch: int = 20_000) -> list[str]:
        """Send a batch again after the reply to it was lost: the jobs may be in.

        The batch is atomic, so a duplicate-id refusal means the first copy landed.
        """
        try:
            reply = self._send_batch(specs, prefix, cwd, batch)
        except RequestFailed as e:
            if e.code != "duplicate":
                raise
            return _batch_ids(specs, prefix)
        assert isinstance(reply, p.Enqueued)
        return reply.ids

    def _send_batch(self, specs: list[p.JobSpec], prefix: str, cwd: str | None, batch: int) -> p.Message:
        chunks = [specs[i : i + batch] for i in range(0, len(specs), batch)] or [[]]
        self.connect()
        for chunk in chunks[:-1]:
            self._send(p.Enqueue(chunk, True, prefix, cwd))
        return self._reply(p.Enqueue(chunks[-1], False, prefix, cwd))

    def status(self) -> p.StatusReply:
        reply: p.StatusReply = self.request(p.Status())
        return reply

    def list(self, state: str | None = None, limit: int | None = None) -> Iterator[p.Job]:
        for page in self.stream(p.List(state=state, limit=limit)):  # type: ignore[arg-type]
            assert isinstance(page, p.JobPage)
            yield from page.jobs

    def show(self, job_id: str) -> p.Job:
        reply: p.JobReply = self.request(p.Show(job_id))
        return reply.job

    def delete(self, job_id: str) -> None:
        self.request(p.Delete(job_id), retry=False)

    def dlq_list(self, limit: int | None = None) -> Iterator[p.Job]:
        for page in self.stream(p.DlqList(limit=limit)):
            assert isinstance(page, p.JobPage)
            yield from page.jobs

    def dlq_retry(self, ids: Sequence[str] = (), all: bool = False) -> Sequence[str]:
        reply: p.Retried = self.request(p.DlqRetry(builtins.list(ids), all), retry=False)
        return reply.ids

    def config_get(self, key: str) -> str:
        reply: p.ConfigReply = self.request(p.ConfigGet(key))
        return next(iter(reply.values.values()))

    def config_set(self, key: str, value: str) -> None:
        self.request(p.ConfigSet(key, str(value)))

    def config_list(self) -> dict[str, str]:
        reply: p.ConfigReply = self.request(p.ConfigList())
        return reply.values

    def worker_start(self, count: int) -> None:
        self.request(p.WorkerStart(count))

    def worker_stop(self) -> None:
        """Returns once the running jobs have finished."""
        self.request(p.WorkerStop())

    def events(self, start: int | None = None) -> Iterator[p.Message]:
        """Job events until the pool is stopped; `start` sets the pool size first."""
        if start is None:
            return self.stream(p.Subscribe())
        return self.stream(p.WorkerStart(start, follow=True))

    def wait_for(self, job_id: str, states: Iterable[str] = ("completed", "dead"), timeout: float = 30.0) -> p.Job:
        """Poll until the job is in one of `states`; raises TimeoutError."""
        wanted = set(states)
        deadline = time.monotonic() + timeout
        delay = 0.005
        while True:
            job = self.show(job_id)
            if job.state in wanted:
                return job
            if time.monotonic() > deadline:
                raise TimeoutError(f"job {job_id} is {job.state}, not {'/'.join(sorted(wanted))}, after {timeout} s")
            time.sleep(delay)
            delay = min(delay * 2, 0.1)


def _not_answering(e: BaseException) -> bool:
    """No daemon, a stale socket, or a daemon that died during the greeting: one may be started."""
    if isinstance(e, ConnectionLost):
        return True
    return isinstance(e, OSError) and e.errno in (errno.ENOENT, errno.ECONNREFUSED, errno.ECONNRESET)


def _reason(e: BaseException) -> str:
    return e.strerror if isinstance(e, OSError) and e.strerror else str(e)


def _batch_ids(specs: list[p.JobSpec], prefix: str) -> list[str]:
    """The ids the daemon gives a batch (see protocol.Enqueue.id_prefix)."""
    if len(specs) == 1:
        return [specs[0].id or prefix]
    return [s.id or f"{prefix}-{i}" for i, s in enumerate(specs, 1)]


def _last_line(path: str) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - 4096))
            lines = [ln for ln in f.read().decode(errors="replace").splitlines() if ln.strip()]
        if not lines:
            return f"it exited without a message (log: {path})"
        import re

        # Drop the log line's time, name and level.
        return re.sub(r"^\S+ \S+ queuectld\[\d+\] [A-Z]+ ", "", lines[-1])
    except OSError:
        return f"it exited without a message (log: {path})"
