"""`queuectl worker start|stop`: size the pool, and in the foreground follow its job events."""

from __future__ import annotations

import argparse
import signal
import sys
import time

import msgspec

from . import protocol as p
from .connection import Client, DaemonUnavailable, RequestFailed
from .parser import UsageError
from .render import iso, paint


def cmd_worker(client: Client, args: argparse.Namespace) -> int:
    if args.action == "stop":
        client.worker_stop()
        print("workers stopped; no job is running", file=sys.stderr)
        return 0
    if not 0 <= args.count <= 1024:
        raise UsageError("--count must be between 0 and 1024")
    if args.detach:
        client.worker_start(args.count)
        print(f"{args.count} worker(s) started", file=sys.stderr)
        return 0
    previous = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)
    try:
        return _follow(client, args.count, args.json)
    finally:
        signal.signal(signal.SIGINT, previous[0])  # the shell goes on after this command
        signal.signal(signal.SIGTERM, previous[1])


def _follow(client: Client, count: int, as_json: bool) -> int:
    """Print job events until the pool stops; Ctrl-C or SIGTERM stops it gracefully."""
    import threading

    err = sys.stderr
    stopping = False

    def stop(signum: int, frame: object) -> None:
        nonlocal stopping
        if stopping:
            raise KeyboardInterrupt
        stopping = True
        print("stopping: no new job starts; waiting for running jobs to finish (Ctrl-C again to leave)", file=err)
        threading.Thread(target=_stop_pool, args=(client.paths.state,), daemon=True).start()

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    events = client.events(start=count)
    print(f"{count} worker(s) started; Ctrl-C stops them once running jobs finish", file=err)
    out = sys.stdout.buffer
    for msg in events:
        if as_json:
            if isinstance(msg, (p.Event, p.EventsDropped)):
                event = msgspec.to_builtins(msg)
                if "at" in event:
                    event["at"] = iso(event["at"])
                if event.get("next_retry_at") is not None:
                    event["next_retry_at"] = iso(event["next_retry_at"])
                out.write(msgspec.json.encode(event) + b"\n")
                out.flush()
            continue
        if isinstance(msg, p.Event):
            err.write(_event_line(msg) + "\n")
        elif isinstance(msg, p.EventsDropped):
            err.write(f"({msg.count} events not shown: this terminal fell behind)\n")
        err.flush()
    print("workers stopped", file=err)
    return 0


def _stop_pool(home: str) -> None:
    try:
        with Client(home, autostart=False) as c:
            c.worker_stop()
    except (DaemonUnavailable, RequestFailed) as e:
        print(f"queuectl: {e}", file=sys.stderr)


def _event_line(e: p.Event) -> str:
    clock = time.strftime("%H:%M:%S", time.localtime(e.at))
    who = f"worker {e.worker}" if e.worker else "worker -"
    if e.state == "processing":
        what = f"started (attempt {e.attempts}): {e.command}"
    elif e.state == "completed":
        what = "completed"
    elif e.state == "failed":
        wait = f" in {e.next_retry_at - e.at:.3g}s" if e.next_retry_at is not None else ""
        what = f"failed: {e.error_message}; retry {e.attempts} of {e.max_retries}{wait}"
    else:
        what = f"dead: {e.error_message}; moved to the DLQ"
    return f"{clock}  {who:<9} {e.id:<12} {paint(what, e.state)}"
