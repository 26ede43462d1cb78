"""A blocking client for queuectld: connect (starting a daemon if needed), request, stream.

This module, like the rest of the client outside `repl`, avoids asyncio so that
a CLI call stays cheap.
"""

from __future__ import annotations

import builtins
import os
import socket
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from datetime import datetime
from typing import Any

import msgspec

from . import autostart
from . import paths as _paths
from . import protocol as p
from .batches import batch_ids, enqueue_frames, local_seconds
from .environ import sent
from .errors import CannotStart as CannotStart
from .errors import ConnectionLost as ConnectionLost
from .errors import DaemonStopping as DaemonStopping
from .errors import DaemonUnavailable as DaemonUnavailable
from .errors import RequestFailed as RequestFailed
from .errors import TooLarge as TooLarge
from .errors import not_answering, reason
from .fields import checked
from .text import shown_bytes
from .wire import VERSION, new_id_prefix

__version__ = VERSION

_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(p.Reply)


class Client:
    """One connection to queuectld.

    >>> with Client() as c:
    ...     c.enqueue("echo hello")
    """

    def __init__(self, home: str | None = None, *, autostart: bool | None = None, via: str = "python") -> None:
        self.via = via  # what this client is, for the audit trail: cli, shell, dashboard or python
        self.paths = _paths.resolve(home)
        self.home_given = bool(home or os.environ.get("QUEUECTL_HOME"))  # passed on to a daemon it starts
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
            return
        except (OSError, ConnectionLost) as e:
            if not self.autostart or not not_answering(e):
                raise self._cannot_connect(e) from None

        def attempt() -> bool:
            try:
                self._connect_once()
                return True
            except (OSError, ConnectionLost) as e:
                if not_answering(e):
                    return False
                raise self._cannot_connect(e) from None

        try:
            autostart.start(self.paths, attempt, self.home_given)
        except autostart.Stopping as e:
            raise DaemonStopping(str(e)) from None
        except autostart.StartFailed as e:
            raise CannotStart(str(e)) from None

    def _cannot_connect(self, e: BaseException) -> DaemonUnavailable:
        return DaemonUnavailable(f"cannot connect to {shown_bytes(self.paths.socket, 4096)}: {reason(e)}")

    def _connect_once(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.connect(self.paths.socket)
            sock.sendall(p.frame(_encoder.encode(p.Hello(pid=os.getpid(), via=self.via))))
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

    # -- framing ------------------------------------------------------------

    def _send(self, msg: p.Message) -> None:
        body = _encoder.encode(msg)
        if len(body) > p.MAX_FRAME:
            raise TooLarge(f"the {type(msg).__name__} request is {len(body):,} bytes encoded, "
                           f"over the frame limit of {p.MAX_FRAME:,} bytes")
        self._send_body(body)

    def _send_body(self, body: bytes) -> None:
        assert self._sock is not None
        try:
            self._sock.sendall(p.frame(body))
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

    def _reply(self, msg: p.Message | bytes) -> p.Message:
        self.connect()
        if isinstance(msg, bytes):
            self._send_body(msg)
        else:
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
        """Send one request now, and return its replies, until the daemon says it is done, as an iterator."""
        self.connect()
        self._send(msg)
        return self._replies()

    def _replies(self) -> Iterator[p.Message]:
        while True:
            reply = self._read()
            if isinstance(reply, p.Error):
                raise RequestFailed(reply.code, reply.message)
            yield reply
            if isinstance(reply, (p.JobPage, p.Changed)) and not reply.more:
                return
            if isinstance(reply, p.PoolStopped):
                return

    # -- the API --------------------------------------------------------------

    def enqueue(self, command: str, *, environ: Mapping[str, str] | None = None, **fields: Any) -> str:
        """Add one job and return its id once it is on disk."""
        return self.enqueue_many([dict(fields, command=command)], environ=environ)[0]

    def enqueue_many(self, jobs: Iterable[dict[str, Any] | p.JobSpec], cwd: str | None = None,
                     batch: int = 20_000, *, environ: Mapping[str, str] | None = None) -> list[str]:
        """Add jobs all or nothing and return their ids once they are on disk.

        Each job is a JobSpec or a dict of its JSON fields (`command`, `id`,
        `max_retries`, `priority`, `run_at`, `delay`, `timeout`, `cwd`, `group`,
        `env`, ...); a field that is None is not given.  A `run_at` datetime
        without a zone is local time in this process.  Raises
        msgspec.ValidationError (a ValueError) naming a bad field in the CLI's
        words, and TooLarge for a job that does not fit in a frame.

        The jobs run with `environ` (for instance `os.environ`, less the
        terminal's variables), each job's `env` over it; by default, with
        only PATH, HOME, USER, LANG and SHELL of this process.
        """
        return self.enqueue_specs(checked(jobs), cwd, batch, environ=environ)

    def enqueue_specs(self, specs: list[p.JobSpec], cwd: str | None = None, batch: int = 20_000, *,
                      environ: Mapping[str, str] | None = None) -> list[str]:
        """Add checked jobs; those without an id are named from a random prefix made here, so that a
        request resent after a lost reply is a duplicate instead of a second copy (a prefix that
        collides with existing jobs is drawn again).  `environ`: as for `enqueue_many`."""
        return self._enqueue(specs, cwd, batch, False, sent(environ)).ids

    def enqueue_jobs(self, specs: list[p.JobSpec], cwd: str | None = None, batch: int = 20_000, *,
                     environ: Mapping[str, str] | None = None) -> list[p.Job]:
        """As `enqueue_specs`, but return the jobs as `show` gives them."""
        return self.enqueue_reply(specs, cwd, batch, environ=environ).jobs

    def enqueue_reply(self, specs: list[p.JobSpec], cwd: str | None = None, batch: int = 20_000, *,
                      environ: Mapping[str, str] | None = None) -> p.Enqueued:
        """The jobs, and whether each was created (`created`, empty if all were) or holds the spec's unique key."""
        reply = self._enqueue(specs, cwd, batch, True, sent(environ))
        if len(reply.jobs) == len(reply.ids):
            return reply
        # A daemon that predates `want_jobs`, or a lost reply resent: ask for each job.
        return p.Enqueued(reply.ids, [self.show(job_id) for job_id in reply.ids], reply.created)

    def _enqueue(self, specs: list[p.JobSpec], cwd: str | None, batch: int, want_jobs: bool,
                 env: dict[str, str]) -> p.Enqueued:
        if any(isinstance(s.run_at, datetime) for s in specs):
            specs = [local_seconds(s) for s in specs]
        own = any(s.id is None for s in specs)
        given = not all(s.id is None for s in specs)
        for attempt in range(3):
            prefix = new_id_prefix() if own else ""
            frames = enqueue_frames(specs, prefix, cwd, batch, want_jobs, env)
            try:
                try:
                    return self._send_batch(frames)
                except ConnectionLost:
                    return self._resend(specs, prefix, frames)
            except RequestFailed as e:
                if e.code != "duplicate" or given or attempt == 2:
                    raise
        raise AssertionError("unreachable")

    def enqueue_resent(self, specs: list[p.JobSpec], prefix: str, cwd: str | None = None,
                       batch: int = 20_000, *, environ: Mapping[str, str] | None = None) -> list[str]:
        """Send a batch again after its reply was lost (it is atomic: a duplicate-id refusal means it landed)."""
        frames = enqueue_frames(specs, prefix, cwd, batch, False, sent(environ))
        return self._resend(specs, prefix, frames).ids

    def _resend(self, specs: list[p.JobSpec], prefix: str, frames: list[bytes]) -> p.Enqueued:
        try:
            return self._send_batch(frames)
        except RequestFailed as e:
            if e.code != "duplicate":
                raise
            return p.Enqueued(batch_ids(specs, prefix))

    def _send_batch(self, frames: list[bytes]) -> p.Enqueued:
        self.connect()
        for body in frames[:-1]:
            self._send_body(body)
        reply = self._reply(frames[-1])
        assert isinstance(reply, p.Enqueued)
        return reply

    def status(self) -> p.StatusReply:
        reply: p.StatusReply = self.request(p.Status())
        return reply

    def list(self, state: str | None = None, limit: int | None = None, group: str | None = None) -> Iterator[p.Job]:
        for page in self.stream(p.List(state=state, limit=limit, group=group)):  # type: ignore[arg-type]
            assert isinstance(page, p.JobPage)
            yield from page.jobs

    def show(self, job_id: str) -> p.Job:
        reply: p.JobReply = self.request(p.Show(job_id))
        return reply.job

    def delete(self, job_id: str, cascade: bool = False) -> None:
        """Delete a job that is not running; one that others wait for only with `cascade` (its `after`
        dependents die with it)."""
        self.request(p.Delete(job_id, cascade=cascade), retry=False)

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
        """Job events until the pool stops; `start` sets its size first.  Sent at once; a daemon stop: RequestFailed."""
        if start is None:
            return self.stream(p.Subscribe())
        return self.stream(p.WorkerStart(start, follow=True))

    def wait(self, ids: Iterable[str] = (), state: str | None = None, every: bool = False,
             timeout: float | None = None, progress: bool = False,
             resume: bool = False) -> Iterator[p.WaitSet | p.WaitChanges]:
        """Follow jobs until each is completed, dead or deleted, or `timeout` s pass; yields the daemon's frames.

        The set: `ids`, the jobs in `state` now, and with `every` each job not
        final now.  First comes the set with each job's state (`WaitSet`
        pages, the last with `more=False`), then the changes (`WaitChanges`),
        the last with `done=True` (and `timed_out` if the time ran out).  With
        `progress`, changes come every 0.2 s, else all in the last frame.  An
        unknown id raises RequestFailed("not_found"), unless `resume`: then it
        counts as deleted.  Leaving the loop early hangs up, which ends the
        wait in the daemon too.
        """
        ids = builtins.list(ids)
        if timeout is not None and not timeout <= p.MAX_TIMEOUT:
            timeout = p.MAX_TIMEOUT  # a decade is forever here, and the daemon takes no more
        self.connect()
        done = False
        try:
            # Ids one frame cannot hold go ahead in frames of their own; the daemon answers the last.
            # A job id is at most 64 characters, so 100,000 of them are well under MAX_FRAME.
            per_frame = 100_000
            cut = len(ids) - (len(ids) - 1) % per_frame - 1 if ids else 0
            for start in range(0, cut, per_frame):
                self._send(p.Wait(ids[start : start + per_frame], more=True))
            self._send(p.Wait(ids[cut:], state=state, all=every, timeout=timeout,  # type: ignore[arg-type]
                              progress=progress, resume=resume))
            while True:
                reply = self._read()
                if isinstance(reply, p.Error):
                    done = True
                    raise RequestFailed(reply.code, reply.message)
                assert isinstance(reply, p.WaitSet | p.WaitChanges), reply
                yield reply
                if isinstance(reply, p.WaitChanges) and reply.done:
                    done = True
                    return
        finally:
            if not done:
                self.close()  # mid-wait: the daemon's next frames would answer nothing we ask next

    def wait_for(self, job_id: str, states: Iterable[str] = ("completed", "dead"),
                 timeout: float | None = None) -> p.Job:
        """Poll until the job is in one of `states` (by default: final); TimeoutError after `timeout` s, if given."""
        wanted = set(states)
        deadline = None if timeout is None else time.monotonic() + timeout
        delay = 0.005
        while True:
            job = self.show(job_id)
            if job.state in wanted:
                return job
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError(f"job {job_id} is {job.state}, not {'/'.join(sorted(wanted))}, after {timeout} s")
            time.sleep(delay)
            delay = min(delay * 2, 0.1)
