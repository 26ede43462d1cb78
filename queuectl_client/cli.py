"""`queuectl`: argparse subcommands -> requests -> rendered replies and exit codes.

Exit codes: 0 ok; 1 refused (unknown id, duplicate id, wrong state, disk
full); 2 invalid input; 3 the daemon is unreachable or could not be started.
Errors are one line on stderr, never a traceback.
"""

from __future__ import annotations

import sys

# msgspec uses typing_extensions when it is installed (test and dev tools bring it), and importing it
# costs a CLI call about 15 ms; the protocol needs nothing from it.
if "typing_extensions" not in sys.modules:
    sys.modules["typing_extensions"] = None  # type: ignore[assignment]

import argparse
import os
import signal
import time
from collections.abc import Callable, Iterable
from typing import Any, NoReturn

import msgspec

from . import protocol as p
from .connection import Client, DaemonUnavailable, RequestFailed, __version__
from .render import human_job, job_dict, print_table, status_json, status_lines

EXIT_OK, EXIT_REFUSED, EXIT_INVALID, EXIT_UNAVAILABLE = 0, 1, 2, 3


class UsageError(Exception):
    """Invalid input from the user (exit 2)."""


class Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{message} (see '{self.prog} --help')")


EXAMPLES = """\
examples:
  queuectl enqueue '{"command": "echo hello", "max_retries": 2}'
  queuectl enqueue --file jobs.jsonl
  queuectl worker start --count 4
  queuectl list --state dead
  queuectl logs JOB_ID
"""


def _enqueue_args(e: Parser) -> None:
    e.add_argument("job", nargs="?", help="a job as JSON, or - to read JSON lines from stdin")
    e.add_argument("--file", "-f", help="read one JSON job per line from this file")


def _worker_args(w: Parser) -> None:
    wsub = w.add_subparsers(dest="action", metavar="ACTION", required=True)
    ws = wsub.add_parser("start", help="set the pool to N workers and follow their jobs")
    ws.add_argument("--count", "-n", type=int, default=1, help="number of workers (default 1)")
    ws.add_argument("--detach", "-d", action="store_true", help="return at once instead of following")
    wsub.add_parser("stop", help="start no new job; return once running jobs finished")


def _status_args(s: Parser) -> None:
    s.add_argument("--json", action="store_true")


def _list_args(ls: Parser) -> None:
    ls.add_argument("--state", choices=p.STATES)
    ls.add_argument("--limit", type=int)
    ls.add_argument("--json", action="store_true")


def _show_args(sh: Parser) -> None:
    sh.add_argument("id")
    sh.add_argument("--json", action="store_true")


def _logs_args(lg: Parser) -> None:
    lg.add_argument("id")
    which = lg.add_mutually_exclusive_group()
    which.add_argument("--stdout", action="store_true", help="only standard output, unlabelled")
    which.add_argument("--stderr", action="store_true", help="only standard error, unlabelled")


def _delete_args(d: Parser) -> None:
    d.add_argument("id")


def _dlq_args(q: Parser) -> None:
    qsub = q.add_subparsers(dest="action", metavar="ACTION", required=True)
    ql = qsub.add_parser("list", help="list dead jobs")
    ql.add_argument("--json", action="store_true")
    ql.add_argument("--limit", type=int)
    qr = qsub.add_parser("retry", help="move dead jobs back to pending, attempts reset")
    qr.add_argument("ids", nargs="*", metavar="ID")
    qr.add_argument("--all", action="store_true", help="every dead job")


def _config_args(c: Parser) -> None:
    csub = c.add_subparsers(dest="action", metavar="ACTION", required=True)
    cg = csub.add_parser("get")
    cg.add_argument("key")
    cs = csub.add_parser("set")
    cs.add_argument("key")
    cs.add_argument("value")
    cl = csub.add_parser("list")
    cl.add_argument("--json", action="store_true")


# name -> (help, what adds its arguments)
SUBCOMMANDS: dict[str, tuple[str, Any]] = {
    "enqueue": ("add jobs", _enqueue_args),
    "worker": ("start or stop the worker pool", _worker_args),
    "status": ("counts per state, workers, daemon", _status_args),
    "list": ("list jobs", _list_args),
    "show": ("one job in full", _show_args),
    "logs": ("a job's output from its latest run", _logs_args),
    "delete": ("delete a job that is not running", _delete_args),
    "dlq": ("the dead-letter queue", _dlq_args),
    "config": ("get, set or list settings", _config_args),
}


def build_parser(argv: list[str] | None = None) -> Parser:
    """The CLI's parser.  Given argv that names a subcommand, only that one is built in full:
    building all of them costs a CLI call more than its request does."""
    ap = Parser(prog="queuectl", description="A durable background job queue for shell commands.",
                epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--version", action="version", version=f"queuectl {__version__}")
    sub = ap.add_subparsers(dest="cmd", metavar="COMMAND", required=True)
    first = next((a for a in argv or () if not a.startswith("-")), None)
    for name, (help_text, add_args) in SUBCOMMANDS.items():
        if first not in SUBCOMMANDS or name == first:
            add_args(sub.add_parser(name, help=help_text))
        else:
            sub.add_parser(name, help=help_text, add_help=False)
    return ap


# --- commands ---------------------------------------------------------------


def cmd_enqueue(client: Client, args: argparse.Namespace) -> int:
    if args.file is not None and args.job is not None:
        raise UsageError("give a job or --file, not both")
    if args.file is not None or args.job == "-":
        specs = parse_lines(_read(args.file))
    elif args.job is not None:
        specs = [_parse_one(args.job.encode(), "")]
    else:
        raise UsageError("give a job as JSON, - for stdin, or --file")
    ids = client.enqueue_specs(specs, _cwd())
    sys.stdout.write("".join(job_id + "\n" for job_id in ids))
    return EXIT_OK


def _read(path: str | None) -> bytes:
    if path in (None, "-"):
        return sys.stdin.buffer.read()
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as e:
        raise UsageError(f"cannot read {path}: {e.strerror}") from None


_decode_one = msgspec.json.Decoder(p.JobSpec).decode
_decode_many = msgspec.json.Decoder(list[p.JobSpec]).decode


def parse_lines(data: bytes) -> list[p.JobSpec]:
    """One JSON job per line, blank lines skipped; errors name the line."""
    lines = [ln for ln in data.splitlines() if ln.strip()]
    if not lines:
        raise UsageError("no jobs given: expected one JSON object per line")
    try:
        # One decode for the whole batch; the per-line pass below only runs to find an error.
        specs = _decode_many(b"[" + b",".join(lines) + b"]")
        if len(specs) == len(lines) and not any(s.run_at is not None and s.delay is not None for s in specs):
            return specs
    except msgspec.DecodeError:
        pass
    for n, line in enumerate(data.splitlines(), 1):
        if line.strip():
            _parse_one(line, f"line {n}: ")
    raise UsageError("the lines do not hold one JSON object each")


def _parse_one(text: bytes, where: str) -> p.JobSpec:
    try:
        spec: p.JobSpec = _decode_one(text)
    except msgspec.ValidationError as e:
        raise UsageError(f"{where}invalid job: {e}") from None
    except msgspec.DecodeError as e:
        raise UsageError(f"{where}invalid JSON: {e}") from None
    if spec.run_at is not None and spec.delay is not None:
        raise UsageError(f"{where}invalid job: give `run_at` or `delay`, not both")
    return spec


def _cwd() -> str | None:
    try:
        return os.getcwd()
    except OSError:
        return None


def cmd_worker(client: Client, args: argparse.Namespace) -> int:
    if args.action == "stop":
        client.worker_stop()
        print("workers stopped; no job is running", file=sys.stderr)
        return EXIT_OK
    if not 0 <= args.count <= 1024:
        raise UsageError("--count must be between 0 and 1024")
    if args.detach:
        client.worker_start(args.count)
        print(f"{args.count} worker(s) started", file=sys.stderr)
        return EXIT_OK
    return _follow(client, args.count)


def _follow(client: Client, count: int) -> int:
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
    for msg in events:
        if isinstance(msg, p.Event):
            err.write(_event_line(msg) + "\n")
        elif isinstance(msg, p.EventsDropped):
            err.write(f"({msg.count} events not shown: this terminal fell behind)\n")
        err.flush()
    print("workers stopped", file=err)
    return EXIT_OK


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
    return f"{clock}  {who:<9} {e.id:<12} {what}"


def cmd_status(client: Client, args: argparse.Namespace) -> int:
    st = msgspec.to_builtins(client.status())
    if args.json:
        _json_out(status_json(st))
    else:
        sys.stdout.write("".join(line + "\n" for line in status_lines(st)))
    return EXIT_OK


def cmd_list(client: Client, args: argparse.Namespace) -> int:
    limit = _limit(args.limit)
    jobs = client.list(args.state, limit) if args.cmd == "list" else client.dlq_list(limit)
    if args.json:
        _json_array(jobs)
    else:
        print_table(jobs, sys.stdout)
    return EXIT_OK


def _limit(n: int | None) -> int | None:
    if n is not None and n < 0:
        raise UsageError("--limit must not be negative")
    return n


def cmd_show(client: Client, args: argparse.Namespace) -> int:
    job = client.show(args.id)
    if args.json:
        _json_out(job_dict(job))
    else:
        sys.stdout.write(human_job(job))
    return EXIT_OK


def cmd_logs(client: Client, args: argparse.Namespace) -> int:
    reply = client.request(p.Logs(args.id))
    assert isinstance(reply, p.LogsReply)
    out = sys.stdout.buffer
    if args.stdout or args.stderr:
        _copy(reply.stdout if args.stdout else reply.stderr, out)
        return EXIT_OK
    for name, path in (("stdout", reply.stdout), ("stderr", reply.stderr)):
        out.write(f"==> {name} <==\n".encode())
        if not _copy(path, out):
            out.write(b"(no output)\n")
    return EXIT_OK


def _copy(path: str, out: Any) -> bool:
    """Copy a file to `out`; False if it does not exist or is empty."""
    try:
        with open(path, "rb") as f:
            wrote = False
            last = b""
            while chunk := f.read(1 << 16):
                out.write(chunk)
                wrote, last = True, chunk
            if wrote and not last.endswith(b"\n"):
                out.write(b"\n")
            return wrote
    except FileNotFoundError:
        return False


def cmd_delete(client: Client, args: argparse.Namespace) -> int:
    client.delete(args.id)
    print(f"deleted {args.id}", file=sys.stderr)
    return EXIT_OK


def cmd_dlq(client: Client, args: argparse.Namespace) -> int:
    if args.action == "list":
        return cmd_list(client, args)
    if args.all and args.ids:
        raise UsageError("give job ids or --all, not both")
    if not args.all and not args.ids:
        raise UsageError("give the ids of dead jobs, or --all")
    ids = client.dlq_retry(args.ids, args.all)
    for job_id in ids:
        print(job_id)
    print(f"{len(ids)} job(s) moved back to pending", file=sys.stderr)
    return EXIT_OK


def cmd_config(client: Client, args: argparse.Namespace) -> int:
    if args.action == "get":
        print(client.config_get(args.key))
    elif args.action == "set":
        client.config_set(args.key, args.value)
    elif args.json:
        _json_out(client.config_list())
    else:
        values = client.config_list()
        width = max(map(len, values))
        for key, value in values.items():
            print(f"{key:<{width}}  {value}")
    return EXIT_OK


COMMANDS = {
    "enqueue": cmd_enqueue, "worker": cmd_worker, "status": cmd_status, "list": cmd_list,
    "show": cmd_show, "logs": cmd_logs, "delete": cmd_delete, "dlq": cmd_dlq, "config": cmd_config,
}


# --- output -----------------------------------------------------------------


def _json_out(obj: Any) -> None:
    sys.stdout.buffer.write(msgspec.json.format(msgspec.json.encode(obj), indent=2) + b"\n")


def _json_array(jobs: Iterable[p.Job]) -> None:
    out = sys.stdout.buffer
    encode = msgspec.json.encode
    sep = b"[\n  "
    for job in jobs:
        out.write(sep + encode(job_dict(job)))
        sep = b",\n  "
    out.write(b"[]\n" if sep == b"[\n  " else b"\n]\n")


# --- entry point ------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    if argv is None:
        argv = sys.argv[1:]

    def run() -> int:
        args = build_parser(argv).parse_args(argv)
        with Client() as client:
            return COMMANDS[args.cmd](client, args)

    return guarded(run)


def enqueue_again(text: str, prefix: str) -> int:
    """Send a one-job enqueue again after the quick path lost its reply, under the same id prefix."""

    def run() -> int:
        spec = _parse_one(text.encode(), "")
        with Client() as client:
            ids = client.enqueue_resent([spec], prefix, _cwd())
        sys.stdout.write("".join(job_id + "\n" for job_id in ids))
        return EXIT_OK

    return guarded(run)


def guarded(run: Callable[[], int]) -> int:
    """Run a command; failures become one line on stderr and an exit code."""
    try:
        code = run()
        sys.stdout.flush()
        return code
    except UsageError as e:
        return _fail(f"queuectl: {e}", EXIT_INVALID)
    except RequestFailed as e:
        return _fail(f"queuectl: {e.message}", e.exit_code)
    except DaemonUnavailable as e:
        return _fail(f"queuectl: {e}", EXIT_UNAVAILABLE)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # The reader went away (`queuectl list | head`): not an error.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_OK
    except Exception as e:
        if os.environ.get("QUEUECTL_DEBUG"):
            raise
        message = f"queuectl: internal error: {type(e).__name__}: {e} (set QUEUECTL_DEBUG=1 for details)"
        return _fail(message, EXIT_REFUSED)


def _fail(message: str, code: int) -> int:
    print(message.splitlines()[0] if message else "queuectl: error", file=sys.stderr)
    return code
