"""Commands that watch the queue change: `logs --follow`, `wait` and `top`.

`logs --follow` and `top` poll the daemon over the open connection, from
every 10 ms backing off to a fixed period, so they cost the daemon a request
or two per period and never a stream that could fall behind.  `wait` asks
the daemon once: it follows the jobs itself and answers when they are final.
"""

from __future__ import annotations

import os
import sys
import time
from typing import IO, Any

import msgspec

from . import protocol as p
from .connection import Client, ConnectionLost
from .render import ago, iso, paint, print_table, status_json, status_lines

FINAL = ("completed", "dead")
ENDED = (*FINAL, "deleted")  # the states a wait stops following a job in
WAITING = ("pending", "failed")  # not started, or waiting to be retried
EXIT_TIMEOUT = 124  # as timeout(1)


class _Backoff:
    """Sleep 10 ms, then longer, up to `limit` seconds."""

    def __init__(self, limit: float) -> None:
        self.delay = 0.01
        self.limit = limit

    def next(self) -> float:
        """The next pause, in seconds."""
        delay = self.delay
        self.delay = min(self.delay * 2, self.limit)
        return delay

    def __call__(self) -> None:
        time.sleep(self.next())


# --- logs ---------------------------------------------------------------------


def read_output(path: str, tail: int | None = None) -> bytes:
    """A job's output file, or its last `tail` lines; b"" if there is none."""
    try:
        with open(path, "rb") as f:
            if tail is None:
                return f.read()
            return _last_lines(f, tail)
    except FileNotFoundError:
        return b""


def _last_lines(f: IO[bytes], n: int) -> bytes:
    """The last n lines of a file, read backwards in blocks (a trailing newline ends a line)."""
    if n == 0:
        return b""
    end = f.seek(0, os.SEEK_END)
    data = b""
    pos = end
    while pos > 0:
        step = min(65536, pos)
        pos -= step
        f.seek(pos)
        data = f.read(step) + data
        # n lines need n newlines before them, not counting the file's own last one.
        if data.count(b"\n", 0, len(data) - 1) >= n:
            break
    body = data[:-1] if data.endswith(b"\n") else data
    cut = len(body)
    for _ in range(n):
        cut = body.rfind(b"\n", 0, cut)
        if cut < 0:
            return data
    return data[cut + 1 :]


class _Tail:
    """Copies what a growing file gains; starts over when a new run truncates it."""

    def __init__(self, path: str, name: str, out: IO[bytes], as_json: bool) -> None:
        self.path = path
        self.name = name
        self.out = out
        self.as_json = as_json
        self.offset = 0

    def start_at_last(self, lines: int) -> None:
        tail = read_output(self.path, lines)
        try:
            self.offset = os.path.getsize(self.path) - len(tail)
        except FileNotFoundError:
            self.offset = 0

    def pump(self) -> None:
        try:
            with open(self.path, "rb") as f:
                size = os.fstat(f.fileno()).st_size
                if size < self.offset:
                    self.offset = 0
                f.seek(self.offset)
                while chunk := f.read(65536):
                    self.offset += len(chunk)
                    self._emit(chunk)
        except FileNotFoundError:
            return

    def _emit(self, chunk: bytes) -> None:
        if self.as_json:
            line = {"stream": self.name, "text": chunk.decode(errors="replace")}
            self.out.write(msgspec.json.encode(line) + b"\n")
        else:
            self.out.write(chunk)
        self.out.flush()


def follow_logs(client: Client, job_id: str, streams: list[str], tail: int | None, as_json: bool) -> int:
    """Stream the output of the job's run until it ends; a waiting job is followed once it starts."""
    reply = client.request(p.Logs(job_id))
    assert isinstance(reply, p.LogsReply)
    job = reply.job
    backoff = _Backoff(0.25)
    if job.state in WAITING and sys.stderr.isatty():
        when = job.next_retry_at or job.run_at
        due = f", due {ago(when)}" if when else ""
        print(f"waiting for {job_id} to start ({job.state}{due})", file=sys.stderr)
    while job.state in WAITING:
        backoff()
        job = client.show(job_id)
    if job is not reply.job:  # it waited: where its run's output is (a shared store: per run), brought up to date
        reply = client.request(p.Logs(job_id))
        assert isinstance(reply, p.LogsReply)
        job = reply.job
    run = job.attempts
    paths = {"stdout": reply.stdout, "stderr": reply.stderr}
    outs = {"stdout": sys.stdout.buffer, "stderr": sys.stdout.buffer if as_json else sys.stderr.buffer}
    if len(streams) == 1:
        outs[streams[0]] = sys.stdout.buffer
    tails = [_Tail(paths[name], name, outs[name], as_json) for name in streams]
    if tail is not None:
        for t in tails:
            t.start_at_last(tail)
    backoff = _Backoff(0.1)
    while True:
        for t in tails:
            t.pump()
        if job.state != "processing" or job.attempts != run:
            break
        backoff()
        # Logs rather than Show: a daemon whose store several nodes share brings the files up to date.
        reply = client.request(p.Logs(job_id))
        assert isinstance(reply, p.LogsReply)
        job = reply.job
    for t in tails:  # the run has ended: its files are complete
        t.pump()
    return 0


# --- wait ---------------------------------------------------------------------


def wait(client: Client, ids: list[str], state: str | None, timeout: float | None, as_json: bool) -> int:
    """Block until the jobs are completed or dead.  0: all completed; 1: not all; 124: timed out.

    The daemon follows the jobs and answers when the last one is final.  If
    the connection is lost (the daemon restarted), the jobs still open are
    waited for again on a new one, where a job gone meanwhile counts as deleted.
    """
    deadline = None if timeout is None else time.monotonic() + timeout
    tty = sys.stderr.isatty() and not as_json
    watch: dict[str, str] = {}  # id -> last seen state, in the order the daemon gave the set
    bar: _Progress | None = None
    frames = client.wait(dict.fromkeys(ids), state, not ids and state is None, timeout, tty)
    have_set = False  # the whole set has arrived, so a new connection can name what is left
    timed_out = False
    retry = True  # a lost connection is tried again once, and again after each frame that arrives
    while True:
        try:
            for frame in frames:
                retry = True
                watch.update((j.id, j.state) for j in frame.jobs)
                if isinstance(frame, p.WaitSet):
                    if frame.more:
                        continue
                    have_set = True
                    if tty and bar is None:
                        bar = _Progress(len(watch))
                elif frame.done:
                    timed_out = frame.timed_out
                if bar is not None:
                    bar.draw(watch)
            break
        except ConnectionLost:
            if not retry:
                raise
            retry = False
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            if have_set:
                still = [i for i, s in watch.items() if s not in ENDED]
                frames = client.wait(still, timeout=left, progress=tty, resume=True)
            else:
                watch.clear()
                frames = client.wait(dict.fromkeys(ids), state, not ids and state is None, left, tty)
    if bar is not None:
        bar.finish(watch, timed_out)
    if as_json:
        sys.stdout.buffer.write(msgspec.json.encode([{"id": i, "state": s} for i, s in watch.items()]) + b"\n")
    if timed_out:
        if not as_json:
            still_open = sum(1 for s in watch.values() if s not in ENDED)
            print(f"queuectl: timed out with {still_open} job(s) not final", file=sys.stderr)
        return EXIT_TIMEOUT
    return 0 if all(s == "completed" for s in watch.values()) else 1


class _Progress:
    """`[#######-------]  12/40  completed 10  dead 2` on stderr, redrawn in place."""

    WIDTH = 30

    def __init__(self, total: int) -> None:
        self.total = total
        self.started = time.monotonic()

    def line(self, watch: dict[str, str]) -> str:
        counts: dict[str, int] = {}
        for s in watch.values():
            counts[s] = counts.get(s, 0) + 1
        done = sum(counts.get(s, 0) for s in ENDED)
        filled = self.WIDTH * done // self.total if self.total else self.WIDTH
        parts = [paint(f"{s} {counts[s]}", s) for s in ("completed", "dead", "deleted", "processing", "failed",
                                                         "pending") if counts.get(s)]
        elapsed = time.monotonic() - self.started
        return f"[{'#' * filled}{'-' * (self.WIDTH - filled)}] {done}/{self.total}  {'  '.join(parts)}  {elapsed:.0f}s"

    def draw(self, watch: dict[str, str]) -> None:
        sys.stderr.write("\r\x1b[K" + self.line(watch))
        sys.stderr.flush()

    def finish(self, watch: dict[str, str], timed_out: bool) -> None:
        self.draw(watch)
        sys.stderr.write("  (timed out)\n" if timed_out else "\n")


# --- top ----------------------------------------------------------------------


def top(client: Client, interval: float, as_json: bool) -> int:
    """Status and the running jobs, redrawn every `interval` s until Ctrl-C; once when not on a terminal."""
    if as_json:
        st = status_json(msgspec.to_builtins(client.status()))
        running = [{"id": j.id, "command": j.command, "worker": j.worker, "started_at": iso(j.started_at),
                    "attempts": j.attempts} for j in client.list("processing")]
        sys.stdout.buffer.write(msgspec.json.format(msgspec.json.encode({"status": st, "running": running}),
                                                    indent=2) + b"\n")
        return 0
    tty = sys.stdout.isatty()
    try:
        while True:
            frame = _frame(client)
            if not tty:
                sys.stdout.write(frame)
                return 0
            sys.stdout.write("\x1b[H\x1b[2J" + frame + f"\n(every {interval:g}s; Ctrl-C to leave)\n")
            sys.stdout.flush()
            time.sleep(interval)
    except KeyboardInterrupt:
        if tty:
            sys.stdout.write("\n")
        return 0


def _frame(client: Client) -> str:
    import io

    st: dict[str, Any] = msgspec.to_builtins(client.status())
    buf = io.StringIO()
    buf.write(time.strftime("%H:%M:%S") + "  queuectl top\n")
    buf.write("".join(line + "\n" for line in status_lines(st)))
    buf.write("\nrunning:\n")
    print_table(client.list("processing", 50), buf)
    buf.write("\nnext up:\n")
    print_table(client.list("pending", 10), buf)
    return buf.getvalue()
