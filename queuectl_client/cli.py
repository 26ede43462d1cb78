"""`queuectl`: parsed arguments -> requests -> rendered replies and exit codes.

Exit codes: 0 ok; 1 refused (unknown id, duplicate id, wrong state, disk
full); 2 invalid input; 3 the daemon is unreachable or could not be started.
Errors are one line on stderr, never a traceback.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable

import msgspec

from . import jobs
from . import protocol as p
from .audit import cmd_audit
from .connection import Client, DaemonUnavailable, RequestFailed
from .environ import TooManyVariables, minimal
from .manage import cmd_cancel, cmd_delete, cmd_edit, cmd_group, cmd_pause, cmd_prune, cmd_rerun, cmd_retry
from .nodes import cmd_nodes
from .output import json_array, json_out
from .parser import UsageError, build_parser
from .render import human_job, iso, job_dict, print_table, set_color, set_escape, shown, status_json, status_lines
from .schedules import cmd_schedule
from .stats import cmd_metrics, cmd_stats
from .worker import cmd_worker

EXIT_OK, EXIT_REFUSED, EXIT_INVALID, EXIT_UNAVAILABLE = 0, 1, 2, 3


# --- commands ---------------------------------------------------------------


def cmd_enqueue(client: Client, args: argparse.Namespace) -> int:
    if args.file is not None and args.job is not None:
        raise UsageError("give a job or --file, not both")
    if args.file is not None or args.job == "-":
        specs = jobs.parse_lines(jobs.read(args.file))
    elif args.job is not None:
        specs = [jobs.parse_one(args.job)]
    else:
        raise UsageError("give a job as JSON, - for stdin, or --file")
    if args.after:
        specs = jobs.after(specs, args.after)
    specs = jobs.with_env(specs, args.env, args.clean_env)
    cwd = jobs.cwd_for(specs)
    # The jobs run with the caller's environment, as under at(1); with --clean-env, its minimal part.
    env = minimal(os.environ) if args.clean_env else os.environ
    if args.json:
        reply = client.enqueue_reply(specs, cwd, environ=env)
        json_array(reply.jobs, reply.created)
    else:
        ids = client.enqueue_specs(specs, cwd, environ=env)
        sys.stdout.write("".join(job_id + "\n" for job_id in ids))
    return EXIT_OK


def cmd_status(client: Client, args: argparse.Namespace) -> int:
    st = msgspec.to_builtins(client.status())
    if args.json:
        json_out(status_json(st))
    else:
        sys.stdout.write("".join(line + "\n" for line in status_lines(st)))
    return EXIT_OK


def cmd_list(client: Client, args: argparse.Namespace) -> int:
    jobs = client.list(args.state, args.limit, args.group) if args.cmd == "list" else client.dlq_list(args.limit)
    if args.json:
        json_array(jobs)
    elif args.quiet:
        out = sys.stdout
        for job in jobs:
            out.write(job.id + "\n")
    else:
        print_table(jobs, sys.stdout)
    return EXIT_OK


def cmd_show(client: Client, args: argparse.Namespace) -> int:
    job = client.show(args.id)
    if args.json:
        json_out(job_dict(job))
    else:
        sys.stdout.write(human_job(job))
    return EXIT_OK


def cmd_why(client: Client, args: argparse.Namespace) -> int:
    from .reasons import CODES, local_time, sentence

    reply = client.request(p.Why(args.id))
    assert isinstance(reply, p.WhyReply)
    if args.json:
        fields = msgspec.to_builtins(reply.reason)
        fields["at"] = iso(reply.reason.at)
        json_out({"id": reply.id, **fields, "text": reply.text})
    else:
        known = reply.reason.code in CODES  # a reason of a newer daemon: its own words
        line = sentence(reply.reason, time.time(), local_time) if known else reply.text
        sys.stdout.write(shown(line) + "\n")
    return EXIT_OK


def cmd_logs(client: Client, args: argparse.Namespace) -> int:
    from . import live

    streams = ["stdout"] if args.stdout else ["stderr"] if args.stderr else ["stdout", "stderr"]
    if args.follow:
        return live.follow_logs(client, args.id, streams, args.tail, args.json)
    reply = client.request(p.Logs(args.id))
    assert isinstance(reply, p.LogsReply)
    paths = {"stdout": reply.stdout, "stderr": reply.stderr}
    if args.json:
        texts = {name: live.read_output(paths[name], args.tail).decode(errors="replace") for name in streams}
        json_out({"id": args.id, **texts})
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


def cmd_dlq(client: Client, args: argparse.Namespace) -> int:
    if args.action == "list":
        return cmd_list(client, args)
    if args.all and args.ids:
        raise UsageError("give job ids or --all, not both")
    if not args.all and not args.ids:
        raise UsageError("give the ids of dead jobs, or --all")
    ids = client.dlq_retry(args.ids, args.all)
    if args.json:
        json_out(list(ids))
        return EXIT_OK
    for job_id in ids:
        print(job_id)
    print(f"{len(ids)} job(s) moved back to pending", file=sys.stderr)
    return EXIT_OK


def cmd_config(client: Client, args: argparse.Namespace) -> int:
    if args.action == "get" and args.key is not None:
        value = client.config_get(args.key)
        if args.json:
            json_out({args.key: value})
        else:
            print(value)
    elif args.action == "set":
        client.config_set(args.key, args.value)
    elif args.json:
        json_out(client.config_list())
    else:
        values = client.config_list()
        width = max(map(len, values))
        for key, value in values.items():
            print(f"{key:<{width}}  {value}")
    return EXIT_OK


def cmd_wait(client: Client, args: argparse.Namespace) -> int:
    from .live import wait

    return wait(client, args.ids, args.state, args.timeout, args.json)


def cmd_top(client: Client, args: argparse.Namespace) -> int:
    from .live import top

    return top(client, args.interval, args.json)


def cmd_shell(client: Client, args: argparse.Namespace) -> int:
    from .shell import run_shell

    client.via = "shell"  # what the audit trail records for the shell's commands
    return run_shell(client, run_line)


def cmd_dashboard(client: Client, args: argparse.Namespace) -> int:
    try:
        from .dashboard.app import BadOption, run
    except ImportError as e:  # aiohttp or aiofiles missing from this installation
        return _fail(f"queuectl: the dashboard needs {e.name}: pip install aiohttp aiofiles", EXIT_REFUSED)
    try:
        return run(client.paths, args.listen, args.base_path, args.token_file, args.allow_remote, args.open)
    except BadOption as e:
        raise UsageError(str(e)) from None


def cmd_completions(client: Client, args: argparse.Namespace) -> int:
    from .completions import script

    sys.stdout.write(script(args.shell))
    return EXIT_OK


COMMANDS = {
    "enqueue": cmd_enqueue, "worker": cmd_worker, "status": cmd_status, "list": cmd_list,
    "show": cmd_show, "why": cmd_why, "logs": cmd_logs, "delete": cmd_delete, "dlq": cmd_dlq, "config": cmd_config,
    "wait": cmd_wait, "top": cmd_top, "shell": cmd_shell, "completions": cmd_completions,
    "dashboard": cmd_dashboard,
    "group": cmd_group, "pause": cmd_pause, "resume": cmd_pause, "cancel": cmd_cancel, "retry": cmd_retry,
    "rerun": cmd_rerun, "edit": cmd_edit, "prune": cmd_prune, "schedule": cmd_schedule, "audit": cmd_audit,
    "stats": cmd_stats, "metrics": cmd_metrics, "nodes": cmd_nodes,
}


# --- entry point ------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    if argv is None:
        argv = sys.argv[1:]

    def run() -> int:
        args = build_parser(argv).parse_args(argv)
        tty = sys.stdout.isatty()
        set_color(tty and not os.environ.get("NO_COLOR"))
        set_escape(tty)
        with Client(via="cli") as client:
            return COMMANDS[args.cmd](client, args)

    return guarded(run)


def run_line(client: Client, argv: list[str]) -> int:
    """One command of `queuectl shell`, on the shell's connection."""

    def run() -> int:
        args = build_parser(argv).parse_args(argv)
        if args.cmd == "shell":
            raise UsageError("this is the shell already")
        return COMMANDS[args.cmd](client, args)

    return guarded(run)


def enqueue_again(text: str, prefix: str) -> int:
    """Send a one-job enqueue again after the quick path lost its reply, under the same id prefix."""

    def run() -> int:
        spec = jobs.parse_one(text)
        with Client(via="cli") as client:
            ids = client.enqueue_resent([spec], prefix, jobs.cwd_for([spec]), environ=os.environ)
        sys.stdout.write("".join(job_id + "\n" for job_id in ids))
        return EXIT_OK

    return guarded(run)


def guarded(run: Callable[[], int]) -> int:
    """Run a command; failures become one line on stderr and an exit code."""
    try:
        code = run()
        sys.stdout.flush()
        return code
    except (UsageError, TooManyVariables) as e:
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
