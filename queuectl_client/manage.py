"""`queuectl group|pause|resume|cancel|retry|rerun|edit|prune` and `delete`: arguments to requests, replies to output.

The checks a command's arguments need together (ids or a selector, at least
one change) are made here, before any request, as UsageError (exit 2).
"""

from __future__ import annotations

import argparse
import sys

import msgspec

from . import control
from . import protocol as p
from .connection import Client
from .output import json_out
from .parser import UsageError
from .render import group_table, human_job, job_dict

EXIT_OK = 0


def cmd_group(client: Client, args: argparse.Namespace) -> int:
    if args.action == "add":
        control.group_add(client, args.name, args.parallel)
        print(f"added group {args.name}{_limit(args.parallel)}", file=sys.stderr)
    elif args.action == "set":
        control.group_set(client, args.name, args.parallel)
        print(f"group {args.name}{_limit(args.parallel) or ': no limit but the pool'}", file=sys.stderr)
    elif args.action == "rm":
        control.group_remove(client, args.name)
        print(f"removed group {args.name}", file=sys.stderr)
    else:
        groups = control.group_dicts(control.groups(client))
        if args.json:
            json_out(groups)
        elif args.quiet:
            sys.stdout.write("".join(g["name"] + "\n" for g in groups))
        else:
            sys.stdout.write(group_table(groups))
    return EXIT_OK


def _limit(parallel: int) -> str:
    return f": at most {parallel} running" if parallel else ""


def cmd_pause(client: Client, args: argparse.Namespace) -> int:
    resume = args.cmd == "resume"
    names = control.pause(client, args.groups, resume)
    print(f"{'resumed' if resume else 'paused'}: {', '.join(names) if names else 'no group'}")
    return EXIT_OK


def _select(args: argparse.Namespace) -> p.Selector | None:
    """The selector the arguments give, or None for ids; a UsageError unless exactly one of them is given."""
    if args.state is None:
        extra = [flag for flag, v in (("--group", args.group), ("--older-than", args.older_than)) if v is not None]
        if extra:
            raise UsageError(f"{' and '.join(extra)} {'work' if len(extra) > 1 else 'works'} only with --state")
        if not args.ids:
            raise UsageError("give job ids, or --state (with --group, --older-than) to select jobs")
        return None
    if args.ids:
        raise UsageError("give job ids or --state, not both")
    return control.selector(args.state, args.group, args.older_than)


def _report(changed: p.Changed, verb: str, as_json: bool) -> int:
    if as_json:
        json_out(changed.ids)
    else:
        print(f"{verb} {changed.count} job{'' if changed.count == 1 else 's'}")
    return EXIT_OK


def cmd_cancel(client: Client, args: argparse.Namespace) -> int:
    select = _select(args)
    return _report(control.cancel(client, args.ids, select, args.signal, args.grace), "cancelled", args.json)


def cmd_retry(client: Client, args: argparse.Namespace) -> int:
    select = _select(args)
    return _report(control.retry(client, args.ids, select), "retried", args.json)


def cmd_delete(client: Client, args: argparse.Namespace) -> int:
    select = _select(args)
    if select is None and len(args.ids) == 1:
        client.delete(args.ids[0], args.cascade)
        if args.json:
            json_out(args.ids)
        else:
            print(f"deleted {args.ids[0]}", file=sys.stderr)
        return EXIT_OK
    return _report(control.delete(client, args.ids, select, args.cascade), "deleted", args.json)


def cmd_prune(client: Client, args: argparse.Namespace) -> int:
    changed = control.prune(client, args.state, args.older_than, args.dry_run)
    return _report(changed, "would prune" if args.dry_run else "pruned", args.json)


def cmd_rerun(client: Client, args: argparse.Namespace) -> int:
    job = control.rerun(client, args.id)
    if args.json:
        json_out(job_dict(job))
    else:
        print(job.id)
    return EXIT_OK


EDITS = ("priority", "run_at", "delay", "group", "max_retries", "timeout")


def cmd_edit(client: Client, args: argparse.Namespace) -> int:
    # The edit flags default to UNSET: `--run-at now` and `--timeout none` are None, and changes too.
    fields = {f: getattr(args, f) for f in EDITS if getattr(args, f) is not msgspec.UNSET}
    if not fields:
        raise UsageError("give at least one change: --priority, --run-at, --delay, --group, --max-retries or --timeout")
    job = control.edit(client, args.id, **fields)
    if args.json:
        json_out(job_dict(job))
    else:
        sys.stdout.write(human_job(job))
    return EXIT_OK
