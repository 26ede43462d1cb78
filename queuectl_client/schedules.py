"""Cron schedules on a `Client`, and `queuectl schedule add|list|rm|pause|resume`.

The functions send one request each; the changes are sent once (no resend
after a lost reply), as for the other control commands.  The job is checked
here first, as `enqueue` checks one, so a bad field is named before any
connection; the expression and the zone are checked by the daemon, which
keeps the cron library and the zone database.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Mapping
from typing import Any

import msgspec

from . import jobs
from . import protocol as p
from .connection import Client
from .environ import minimal, sent
from .output import json_out
from .parser import UsageError
from .render import schedule_dict, schedule_line, schedule_table

EXIT_OK = 0


def add(client: Client, name: str, cron: str, job: p.JobSpec | dict[str, Any], zone: str | None = None,
        no_overlap: bool = False, cwd: str | None = None, *,
        environ: Mapping[str, str] | None = None) -> p.ScheduleInfo:
    """Enqueue `job` at each slot of `cron` (five fields, or @hourly ... @yearly) in `zone` (an IANA name;
    None: the daemon's local zone).  Each fire's job is named NAME-<UTC slot>, e.g. nightly-20261201T0300Z.
    Its jobs run with `environ` as `Client.enqueue_many`'s do (by default, the minimal environment)."""
    spec = job if isinstance(job, p.JobSpec) else msgspec.convert(job, p.JobSpec)
    request = p.ScheduleAdd(name, cron, spec, zone, no_overlap, cwd, sent(environ))
    reply: p.SchedulesReply = client.request(request, retry=False)
    return reply.schedules[0]


def schedules(client: Client) -> list[p.ScheduleInfo]:
    reply: p.SchedulesReply = client.request(p.ScheduleList())
    return reply.schedules


def remove(client: Client, name: str) -> None:
    """Remove a schedule; the jobs it made stay."""
    client.request(p.ScheduleRemove(name), retry=False)


def pause(client: Client, name: str, resume: bool = False) -> p.ScheduleInfo:
    """Pause a schedule, or resume it: from its next slot on, never for the slots it missed meanwhile."""
    reply: p.SchedulesReply = client.request(p.SchedulePause(name, resume), retry=False)
    return reply.schedules[0]


def scheduled_job(text: str) -> p.JobSpec:
    """The job of `schedule add`, checked as `enqueue` checks one; it may not name id, run_at or delay."""
    spec = jobs.parse_one(text)
    problem = p.unschedulable(spec)
    if problem is not None:
        raise UsageError(problem)
    return spec


def cmd_schedule(client: Client, args: argparse.Namespace) -> int:
    action = args.action
    if action == "add":
        (spec,) = jobs.with_env([scheduled_job(args.job)], args.env, args.clean_env)
        info = add(client, args.name, args.cron, spec, args.tz, args.no_overlap, jobs.cwd_for([spec]),
                   environ=minimal(os.environ) if args.clean_env else os.environ)  # as enqueue's
        print(f"added schedule {schedule_line(msgspec.to_builtins(info))}", file=sys.stderr)
    elif action == "list":
        found = [msgspec.to_builtins(s) for s in schedules(client)]
        if args.json:
            json_out([schedule_dict(s) for s in found])
        elif args.quiet:
            sys.stdout.write("".join(s["name"] + "\n" for s in found))
        else:
            sys.stdout.write(schedule_table(found))
    elif action == "rm":
        remove(client, args.name)
        print(f"removed schedule {args.name}", file=sys.stderr)
    else:
        info = pause(client, args.name, resume=action == "resume")
        verb = "resumed" if action == "resume" else "paused"
        print(f"{verb} schedule {schedule_line(msgspec.to_builtins(info))}", file=sys.stderr)
    return EXIT_OK
