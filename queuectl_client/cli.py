"""`queuectl`: argparse subcommands -> requests -> rendered replies and exit codes.

Exit codes: 0 ok; 1 refused (unknown id, duplicate id, wrong state, disk
full); 2 invalid input; 3 the daemon is unreachable or could not be started.
Errors are one line on stderr, never a traceback.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import time
from collections.abc import Iterable, Iterator
from typing import Any, NoReturn

import msgspec

from . import protocol as p
from .connection import Client, DaemonUnavailable, IdMaker, RequestFailed, __version__, to_spec
from .render import human_job, iso, job_dict, print_table, status_lines

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


def build_parser() -> Parser:
    ap = Parser(prog="queuectl", description="A durable background job queue for shell commands.",
                epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--version", action="version", version=f"queuectl {__version__}")
    sub = ap.add_subparsers(dest="cmd", metavar="COMMAND", required=True)

    e = sub.add_parser("enqueue", help="add jobs")
    e.add_argument("job", nargs="?", help="a job as JSON, or - to read JSON lines from stdin")
    e.add_argument("--file", "-f", help="read one JSON job per line from this file")

    w = sub.add_parser("worker", help="start or stop the worker pool")
    wsub = w.add_subparsers(dest="action", metavar="ACTION", required=True)
    ws = wsub.add_parser("start", help="set the pool to N workers and follow their jobs")
    ws.add_argument("--count", "-n", type=int, default=1, help="number of workers (default 1)")
    ws.add_argument("--detach", "-d", action="store_true", help="return at once instead of following")
    wsub.add_parser("stop", help="start no new job; return once running jobs finished")

    s = sub.add_parser("status", help="counts per state, workers, daemon")
    s.add_argument("--json", action="store_true")

    ls = sub.add_parser("list", help="list jobs")
    ls.add_argument("--state", choices=p.STATES)
    ls.add_argument("--limit", type=int)
    ls.add_argument("--json", action="store_true")

    sh = sub.add_parser("show", help="one job in full")
    sh.add_argument("id")
    sh.add_argument("--json", action="store_true")

    lg = sub.add_parser("logs", help="a job's output from its latest run")
    lg.add_argument("id")
    which = lg.add_mutually_exclusive_group()
    which.add_argument("--stdout", action="store_true", help="only standard output, unlabelled")
    which.add_argument("--stderr", action="store_true", help="only standard error, unlabelled")

    d = sub.add_parser("delete", help="delete a job that is not running")
    d.add_argument("id")

    q = sub.add_parser("dlq", help="the dead-letter queue")
    qsub = q.add_subparsers(dest="action", metavar="ACTION", required=True)
    ql = qsub.add_parser("list", help="list dead jobs")
    ql.add_argument("--json", action="store_true")
    ql.add_argument("--limit", type=int)
    qr = qsub.add_parser("retry", help="move dead jobs back to pending, attempts reset")
    qr.add_argument("ids", nargs="*", metavar="ID")
    qr.add_argument("--all", action="store_true", help="every dead job")

    c = sub.add_parser("config", help="get, set or list settings")
    csub = c.add_subparsers(dest="action", metavar="ACTION", required=True)
    cg = csub.add_parser("get")
    cg.add_argument("key")
    cs = csub.add_parser("set")
    cs.add_argument("key")
    cs.add_argument("value")
    cl = csub.add_parser("list")
    cl.add_argument("--json", action="store_true")
    return ap


# --- commands ---------------------------------------------------------------


def cmd_enqueue(client: Client, args: argparse.Namespace) -> int:
    if args.file is not None and args.job is not None:
        raise UsageError("give a job or --file, not both")
    if args.file is not None or args.job == "-":
        source = sys.stdin.buffer if args.file in (None, "-") else _open(args.file)
        ids = IdMaker()
        specs = [_parse_job(line, ids, i, n) for i, (n, line) in enumerate(_lines(source))]
        if not specs:
            raise UsageError("no jobs given: expected one JSON object per line")
        own = ids.given
    elif args.job is not None:
        ids = IdMaker()
        specs = [_parse_job(args.job.encode(), ids, 0, None)]
        own = ids.given
    else:
        raise UsageError("give a job as JSON, - for stdin, or --file")
    out = sys.stdout
    for job_id in client.enqueue_specs(specs, own):
        out.write(job_id + "\n")
    return EXIT_OK


def _open(path: str) -> Any:
    try:
        return open(path, "rb")
    except OSError as e:
        raise UsageError(f"cannot read {path}: {e.strerror}") from None


def _lines(source: Any) -> Iterator[tuple[int, bytes]]:
    for n, line in enumerate(source, 1):
        if line.strip():
            yield n, line


_json_decode = msgspec.json.Decoder().decode


def _parse_job(text: bytes, ids: IdMaker, index: int, line: int | None) -> p.JobSpec:
    where = f"line {line}: " if line is not None else ""
    try:
        fields = _json_decode(text)
        spec = to_spec(fields, ids, index)
    except msgspec.ValidationError as e:
        raise UsageError(f"{where}invalid job: {e}") from None
    except msgspec.DecodeError as e:
        raise UsageError(f"{where}invalid JSON: {e}") from None
    if spec.cwd is None:
        spec = msgspec.structs.replace(spec, cwd=_cwd())
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
    st = client.status()
    if args.json:
        _json_out({
            "jobs": st.jobs,
            "workers": {"configured": st.workers.configured, "busy": st.workers.busy},
            "daemon": {"pid": st.pid, "version": st.version, "started_at": iso(st.started_at)},
        })
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
    try:
        args = build_parser().parse_args(argv)
        with Client() as client:
            code = COMMANDS[args.cmd](client, args)
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


def entry() -> None:
    sys.exit(main())
