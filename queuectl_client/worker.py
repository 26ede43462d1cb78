"""`queuectl worker start|stop`: size the pool, and in the foreground follow its job events.

A foreground `worker start` is the pool's keeper for as long as it runs: if
the daemon crashes, it connects again (starting the daemon as any command
does), sets the pool to its size again and goes on following.  It leaves
when the pool is stopped (from anywhere), or after Ctrl-C, SIGTERM or SIGHUP
(its terminal closed), each of which stops the pool gracefully first: one
attempt, then it leaves, 0 if the pool stopped and 3 if no daemon answered.
A daemon stopped on purpose (it says so on the stream, in its greeting, or
in its lock file) is left stopped: the follower says so and exits 3.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from typing import IO, Any

import msgspec

from . import protocol as p
from .autostart import alive, read_lock
from .connection import CannotStart, Client, ConnectionLost, DaemonStopping, DaemonUnavailable, RequestFailed
from .parser import UsageError
from .render import clock, escaped, iso, paint

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


def cmd_worker(client: Client, args: argparse.Namespace) -> int:
    if args.action == "stop":
        client.worker_stop()
        print("workers stopped; no job is running", file=sys.stderr)
        return 0
    if args.count == 0:
        raise UsageError("--count 0 starts no worker; to stop the pool, use `queuectl worker stop`")
    if not 1 <= args.count <= 1024:
        raise UsageError("--count must be between 1 and 1024")
    if args.detach:
        client.worker_start(args.count)
        print(f"{args.count} worker(s) started", file=sys.stderr)
        return 0
    previous = {sig: signal.getsignal(sig) for sig in STOP_SIGNALS}
    try:
        return Follower(client, args.count, args.json).run()
    finally:
        for sig, handler in previous.items():  # the shell goes on after this command
            signal.signal(sig, handler)


class _Out:
    """A stream that goes quiet once writing to it fails (its terminal was closed)."""

    def __init__(self, stream: IO[Any]) -> None:
        self.stream = stream
        self.ok = True

    def write(self, data: Any) -> None:
        if self.ok:
            try:
                self.stream.write(data)
                self.stream.flush()
            except (OSError, ValueError):
                self.ok = False
                # What is left in the stream's buffer must not fail the exit either.
                os.dup2(os.open(os.devnull, os.O_WRONLY), self.stream.fileno())


class Follower:
    """Prints the pool's job events, through daemon crashes, until the pool stops or the daemon is stopped."""

    def __init__(self, client: Client, count: int, as_json: bool) -> None:
        self.client = client
        self.count = count
        self.as_json = as_json
        self.err = _Out(sys.stderr)
        self.out = _Out(sys.stdout.buffer)
        self.tty = sys.stderr.isatty()
        self.stopping = False  # Ctrl-C, SIGTERM or SIGHUP came: stop the pool once, never reconnect
        self.following = False  # a follow stream is open, so the stop is asked on a connection of its own
        self.stopper: threading.Thread | None = None
        self.stop_code: int | None = None  # how the attempt to stop the pool went: an exit code

    def say(self, line: str) -> None:
        self.err.write(line + "\n")

    def stop(self, signum: int, frame: object) -> None:
        if self.stopping:
            raise KeyboardInterrupt
        self.stopping = True
        self.say("stopping: no new job starts; waiting for running jobs to finish (Ctrl-C again to leave)")
        if self.following:  # the stream goes on showing the running jobs end, until PoolStopped
            self.stopper = threading.Thread(target=self._stop_pool, daemon=True)
            self.stopper.start()
        # Otherwise the main loop, between connections, makes the one attempt itself.

    def run(self) -> int:
        for sig in STOP_SIGNALS:
            signal.signal(sig, self.stop)
        lost = False
        backoff = 0.05
        while not self.stopping:
            try:
                if self._follow(lost):
                    self.say("workers stopped")
                    return 0
            except (ConnectionLost, DaemonUnavailable) as e:
                if isinstance(e, CannotStart):
                    raise  # it could not be started, or it is being stopped: say so and leave
                self.client.close()
                if self.stopping:
                    break
                self._unless_stopped_on_purpose()
                if not lost:
                    self.say(f"lost queuectld ({e}); reconnecting")
                lost = True
                time.sleep(backoff)
                backoff = min(backoff * 2, 1.0)
        return self._leave()

    def _follow(self, again: bool) -> bool:
        """Follow the pool until it stops (True); False if a stop was asked before the stream opened."""
        self.client.connect()  # starting the daemon if need be
        server = self.client.server
        if server is not None and server.stopping:
            raise DaemonStopping(f"queuectld (pid {server.pid}) is stopping")
        # Decide and send with the stop signals held: a stop asked from here on sees the stream open.
        held = signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
        try:
            if self.stopping:
                return False
            events = self.client.events(start=self.count)
            self.following = True
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, held)
        try:
            if again:
                pid = server.pid if server is not None else "?"
                self.say(f"reconnected to queuectld (pid {pid}); {self.count} worker(s) set again")
            else:
                self.say(f"{self.count} worker(s) started; Ctrl-C stops them once running jobs finish")
            for msg in events:
                self._show(msg)
        finally:
            self.following = False
        return True

    def _unless_stopped_on_purpose(self) -> None:
        """After a lost connection: DaemonStopping if the home's lock says its daemon was being stopped.

        A daemon that crashed (kill -9) leaves its lock saying only its pid, and
        is started again; one stopped on purpose (SIGTERM, `systemctl stop`)
        wrote "PID stopping" first, and is left stopped.
        """
        pid, stopping = read_lock(self.client.paths.lock)
        if stopping:
            raise DaemonStopping(f"queuectld (pid {pid}) is stopping" if pid is not None and alive(pid)
                                 else f"queuectld (pid {pid}) was stopped")

    def _stop_pool(self) -> None:
        """The one attempt to stop the pool: on a connection of its own, starting no daemon."""
        stopper = Client(autostart=False, via="cli")
        stopper.paths = self.client.paths  # the same socket, wherever the home put it
        try:
            with stopper:
                stopper.request(p.WorkerStop(), retry=False)
            self.stop_code = 0
        except DaemonUnavailable as e:
            self.say(f"queuectl: could not stop the pool: {e}; it keeps {self.count} worker(s) for the next "
                     "daemon (`queuectl worker stop` then)")
            self.stop_code = 3
        except RequestFailed as e:
            self.say(f"queuectl: could not stop the pool: {e.message}")
            self.stop_code = e.exit_code

    def _leave(self) -> int:
        """A stop was asked while no stream was open: stop the pool once, or hear how the attempt went."""
        if self.stopper is not None:
            self.stopper.join()
        else:
            self._stop_pool()
        if self.stop_code == 0:
            self.say("workers stopped")
        return self.stop_code if self.stop_code is not None else 3

    def _show(self, msg: p.Message) -> None:
        if self.as_json:
            if isinstance(msg, (p.Event, p.EventsDropped)):
                event = msgspec.to_builtins(msg)
                if "at" in event:
                    event["at"] = iso(event["at"])
                if event.get("next_retry_at") is not None:
                    event["next_retry_at"] = iso(event["next_retry_at"])
                self.out.write(msgspec.json.encode(event) + b"\n")
        elif isinstance(msg, p.Event):
            self.say(event_line(msg, escaped if self.tty else str))
        elif isinstance(msg, p.EventsDropped):
            self.say(f"({msg.count} events not shown: this terminal fell behind)")


def event_line(e: p.Event, shown: Callable[[str], str] = str) -> str:
    """One event for people; `shown` makes the job's own text safe for where it goes."""
    who = f"worker {e.worker}" if e.worker else "worker -"
    if e.state == "processing":
        what = f"started (attempt {e.attempts}): {shown(e.command)}"
    elif e.state == "completed":
        what = "completed"
    elif e.state == "failed":
        wait = f" in {e.next_retry_at - e.at:.3g}s" if e.next_retry_at is not None else ""
        what = f"failed: {shown(str(e.error_message))}; retry {e.attempts} of {e.max_retries}{wait}"
    elif e.state == "pending":
        what = "back to pending (retried)"
    else:
        what = f"dead: {shown(str(e.error_message))}; moved to the DLQ"
    return f"{clock(e.at)}  {who:<9} {e.id:<12} {paint(what, e.state)}"
