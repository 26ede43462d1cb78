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
from collections.abc import Callable, Iterable
from typing import Any, NoReturn

import msgspec

from . import protocol as p
from .connection import Client, DaemonUnavailable, RequestFailed, __version__
from .render import human_job, iso, job_dict, paint, print_table, set_color, status_json, status_lines

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
  queuectl logs JOB_ID --follow
  queuectl wait
  queuectl shell
"""


def _json_flag(parser: Parser) -> None:
    parser.add_argument("--json", action="store_true", help="print JSON instead of text")


def _enqueue_args(e: Parser) -> None:
    e.add_argument("job", nargs="?", help="a job as JSON, or - to read JSON lines from stdin")
    e.add_argument("--file", "-f", help="read one JSON job per line from this file")
    _json_flag(e)


def _worker_args(w: Parser) -> None:
    wsub = w.add_subparsers(dest="action", metavar="ACTION", required=True)
    ws = wsub.add_parser("start", help="set the pool to N workers and follow their jobs",
                         epilog="examples:\n  queuectl worker start --count 4\n  queuectl worker start -n 2 --detach",
                         formatter_class=argparse.RawDescriptionHelpFormatter)
    ws.add_argument("--count", "-n", type=int, default=1, help="number of workers (default 1)")
    ws.add_argument("--detach", "-d", action="store_true", help="return at once instead of following")
    ws.add_argument("--json", action="store_true", help="print each job event as a JSON line on stdout")
    wsub.add_parser("stop", help="start no new job; return once running jobs finished")


def _status_args(s: Parser) -> None:
    _json_flag(s)


def _list_args(ls: Parser) -> None:
    ls.add_argument("--state", choices=p.STATES)
    ls.add_argument("--limit", type=int)
    ls.add_argument("--quiet", "-q", action="store_true", help="print only the ids, one per line")
    _json_flag(ls)


def _show_args(sh: Parser) -> None:
    sh.add_argument("id")
    _json_flag(sh)


def _logs_args(lg: Parser) -> None:
    lg.add_argument("id")
    which = lg.add_mutually_exclusive_group()
    which.add_argument("--stdout", action="store_true", help="only standard output, unlabelled")
    which.add_argument("--stderr", action="store_true", help="only standard error, unlabelled")
    lg.add_argument("--follow", "-f", action="store_true",
                    help="stream the run's output as it comes, until the run ends (its stdout to stdout, "
                         "its stderr to stderr); a job that waits is followed once it starts")
    lg.add_argument("--tail", "-n", type=int, metavar="N", help="only the last N lines of each stream")
    lg.add_argument("--json", action="store_true",
                    help='print {"id", "stdout", "stderr"}; with --follow, a JSON line per chunk')


def _delete_args(d: Parser) -> None:
    d.add_argument("id")


def _dlq_args(q: Parser) -> None:
    qsub = q.add_subparsers(dest="action", metavar="ACTION", required=True)
    ql = qsub.add_parser("list", help="list dead jobs")
    _json_flag(ql)
    ql.add_argument("--limit", type=int)
    ql.add_argument("--quiet", "-q", action="store_true", help="print only the ids, one per line")
    qr = qsub.add_parser("retry", help="move dead jobs back to pending, attempts reset")
    qr.add_argument("ids", nargs="*", metavar="ID")
    qr.add_argument("--all", action="store_true", help="every dead job")
    _json_flag(qr)


def _config_args(c: Parser) -> None:
    csub = c.add_subparsers(dest="action", metavar="ACTION", required=True)
    cg = csub.add_parser("get")
    cg.add_argument("key")
    _json_flag(cg)
    cs = csub.add_parser("set")
    cs.add_argument("key")
    cs.add_argument("value")
    cl = csub.add_parser("list")
    _json_flag(cl)


def _wait_args(w: Parser) -> None:
    w.add_argument("ids", nargs="*", metavar="ID", help="the jobs to wait for (default: every job not yet final)")
    w.add_argument("--state", choices=p.STATES, help="wait for the jobs that are in this state now")
    w.add_argument("--timeout", type=float, metavar="SECONDS", help="give up after this long (exit 124)")
    _json_flag(w)


def _top_args(t: Parser) -> None:
    t.add_argument("--interval", type=float, default=1.0, metavar="SECONDS", help="refresh period (default 1)")
    t.add_argument("--json", action="store_true", help="print one snapshot as JSON and exit")


def _completions_args(c: Parser) -> None:
    c.add_argument("shell", choices=("bash", "zsh", "fish"))


def _no_args(parser: Parser) -> None:
    pass


# name -> (help, what adds its arguments, examples)
SUBCOMMANDS: dict[str, tuple[str, Any, str]] = {
    "enqueue": ("add jobs", _enqueue_args,
                """queuectl enqueue '{"command": "make test", "max_retries": 2, "timeout": 600}'
queuectl enqueue '{"command": "./report.sh", "run_at": "2026-12-01T09:00:00"}'
queuectl enqueue '{"id": "nightly", "command": "backup.sh", "priority": 10}'
jq -c '.[]' jobs.json | queuectl enqueue -
queuectl enqueue --file jobs.jsonl --json"""),
    "worker": ("start or stop the worker pool", _worker_args,
               """queuectl worker start --count 4       # follow the jobs; Ctrl-C stops gracefully
queuectl worker start -n 2 --detach
queuectl worker stop                   # returns once running jobs finished"""),
    "status": ("counts per state, workers, daemon", _status_args, "queuectl status\nqueuectl status --json"),
    "list": ("list jobs", _list_args, """queuectl list
queuectl list --state failed --limit 20
queuectl list --state dead --quiet | xargs queuectl dlq retry
queuectl list --json"""),
    "show": ("one job in full", _show_args, "queuectl show JOB_ID\nqueuectl show JOB_ID --json"),
    "logs": ("a job's output from its latest run", _logs_args, """queuectl logs JOB_ID
queuectl logs JOB_ID --follow
queuectl logs JOB_ID --stderr --tail 20"""),
    "delete": ("delete a job that is not running", _delete_args, "queuectl delete JOB_ID"),
    "dlq": ("the dead-letter queue", _dlq_args, """queuectl dlq list
queuectl dlq retry JOB_ID [JOB_ID...]
queuectl dlq retry --all"""),
    "config": ("get, set or list settings", _config_args, """queuectl config list
queuectl config set max-retries 5
queuectl config set backoff-base 3
queuectl config get job-timeout"""),
    "wait": ("wait until jobs are completed or dead (exit 0: all completed, 1: not all, 124: timed out)",
             _wait_args, """queuectl wait     # every job not yet final
queuectl wait JOB_ID --timeout 60
queuectl wait --state pending --json"""),
    "top": ("a live view of the queue, until Ctrl-C", _top_args, "queuectl top\nqueuectl top --interval 0.5"),
    "shell": ("an interactive shell: every command, with completion and history", _no_args, "queuectl shell"),
    "completions": ("print a shell completion script", _completions_args,
                    """queuectl completions bash > ~/.local/share/bash-completion/completions/queuectl
queuectl completions zsh > "${fpath[1]}/_queuectl"
queuectl completions fish > ~/.config/fish/completions/queuectl.fish"""),
}


def build_parser(argv: list[str] | None = None) -> Parser:
    """The CLI's parser.  Given argv that names a subcommand, only that one is built in full:
    building all of them costs a CLI call more than its request does."""
    ap = Parser(prog="queuectl", description="A durable background job queue for shell commands.",
                epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--version", action="version", version=f"queuectl {__version__}")
    sub = ap.add_subparsers(dest="cmd", metavar="COMMAND", required=True)
    first = next((a for a in argv or () if not a.startswith("-")), None)
    for name, (help_text, add_args, examples) in SUBCOMMANDS.items():
        if first not in SUBCOMMANDS or name == first:
            add_args(sub.add_parser(name, help=help_text, description=help_text[0].upper() + help_text[1:] + ".",
                                    epilog="examples:\n" + "".join(f"  {ln}\n" for ln in examples.splitlines()),
                                    formatter_class=argparse.RawDescriptionHelpFormatter))
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
    if args.json:
        _json_out(ids)
    else:
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
    return f"{clock}  {who:<9} {e.id:<12} {paint(what, e.state)}"


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
    elif args.quiet:
        out = sys.stdout
        for job in jobs:
            out.write(job.id + "\n")
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
    from . import live

    if args.tail is not None and args.tail < 0:
        raise UsageError("--tail must not be negative")
    streams = ["stdout"] if args.stdout else ["stderr"] if args.stderr else ["stdout", "stderr"]
    if args.follow:
        return live.follow_logs(client, args.id, streams, args.tail, args.json)
    reply = client.request(p.Logs(args.id))
    assert isinstance(reply, p.LogsReply)
    paths = {"stdout": reply.stdout, "stderr": reply.stderr}
    if args.json:
        texts = {name: live.read_output(paths[name], args.tail).decode(errors="replace") for name in streams}
        _json_out({"id": args.id, **texts})
        return EXIT_OK
    out = sys.stdout.buffer
    if len(streams) == 1:
        out.write(live.read_output(paths[streams[0]], args.tail))
        return EXIT_OK
    for name in streams:
        out.write(f"==> {name} <==\n".encode())
        data = live.read_output(paths[name], args.tail)
        out.write(data + (b"" if data.endswith(b"\n") else b"\n") if data else b"(no output)\n")
    return EXIT_OK


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
    if args.json:
        _json_out(list(ids))
        return EXIT_OK
    for job_id in ids:
        print(job_id)
    print(f"{len(ids)} job(s) moved back to pending", file=sys.stderr)
    return EXIT_OK


def cmd_config(client: Client, args: argparse.Namespace) -> int:
    if args.action == "get":
        value = client.config_get(args.key)
        if args.json:
            _json_out({args.key: value})
        else:
            print(value)
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


def cmd_wait(client: Client, args: argparse.Namespace) -> int:
    from .live import wait

    if args.timeout is not None and args.timeout < 0:
        raise UsageError("--timeout must not be negative")
    return wait(client, args.ids, args.state, args.timeout, args.json)


def cmd_top(client: Client, args: argparse.Namespace) -> int:
    from .live import top

    if args.interval <= 0:
        raise UsageError("--interval must be positive")
    return top(client, args.interval, args.json)


def cmd_shell(client: Client, args: argparse.Namespace) -> int:
    from .shell import run_shell

    return run_shell(client)


def cmd_completions(client: Client, args: argparse.Namespace) -> int:
    from .completions import script

    sys.stdout.write(script(args.shell))
    return EXIT_OK


COMMANDS = {
    "enqueue": cmd_enqueue, "worker": cmd_worker, "status": cmd_status, "list": cmd_list,
    "show": cmd_show, "logs": cmd_logs, "delete": cmd_delete, "dlq": cmd_dlq, "config": cmd_config,
    "wait": cmd_wait, "top": cmd_top, "shell": cmd_shell, "completions": cmd_completions,
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
        set_color(sys.stdout.isatty() and not os.environ.get("NO_COLOR"))
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
