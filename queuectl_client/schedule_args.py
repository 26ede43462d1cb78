"""The grammar of `queuectl schedule add|list|rm|pause|resume`, with help and examples (see `parser`)."""

from __future__ import annotations

import argparse

from . import values


def schedule_args(s: argparse.ArgumentParser) -> None:
    ssub = s.add_subparsers(dest="action", metavar="ACTION", required=True)

    def sub(name: str, help_text: str, examples: str) -> argparse.ArgumentParser:
        return ssub.add_parser(name, help=help_text, description=help_text[0].upper() + help_text[1:] + ".",
                               epilog="examples:\n" + "".join(f"  {ln}\n" for ln in examples.splitlines()),
                               formatter_class=argparse.RawDescriptionHelpFormatter)

    sa = sub("add", "enqueue a job at each slot of a cron expression",
             """queuectl schedule add nightly '0 3 * * *' '{"command": "backup.sh", "timeout": 3600}'
queuectl schedule add report '30 8 * * MON-FRI' '{"command": "./report.sh"}' --tz Europe/Berlin
queuectl schedule add sync '*/15 * * * *' '{"command": "sync.sh", "group": "net"}' --no-overlap
queuectl schedule add rotate @daily '{"command": "logrotate -s state rotate.conf"}'""")
    sa.add_argument("name", type=values.schedule_name, help="its jobs are named NAME-<UTC slot>, e.g. "
                                                            "nightly-20261201T0300Z")
    sa.add_argument("cron", type=values.cron_text,
                    help="minute hour day-of-month month day-of-week (ranges, steps, lists, names), "
                         "or @hourly, @daily, @weekly, @monthly, @yearly")
    sa.add_argument("job", help="the job as JSON, as for enqueue, without id, run_at or delay")
    sa.add_argument("--tz", type=values.time_zone, metavar="ZONE",
                    help="an IANA time zone, e.g. Europe/Berlin (default: the daemon's local zone, recorded now)")
    sa.add_argument("--no-overlap", action="store_true",
                    help="skip a slot (and count it) while the previous fire's job is not completed or dead")
    sa.add_argument("--env", "-e", action="append", default=[], metavar="NAME[=VALUE]",
                    help="set a variable for its jobs, as for enqueue; NAME alone takes its value from here")
    sa.add_argument("--clean-env", action="store_true",
                    help="its jobs run with only PATH, HOME, USER, LANG and SHELL from here, and their env")
    sl = sub("list", "the schedules: next fire, last fire and its job, paused, skipped fires",
             "queuectl schedule list\nqueuectl schedule list --json")
    sl.add_argument("--quiet", "-q", action="store_true", help="print only the names, one per line")
    sl.add_argument("--json", action="store_true", help="print JSON instead of text")
    for name, text in (("rm", "remove a schedule (the jobs it made stay)"),
                       ("pause", "fire nothing until resumed"),
                       ("resume", "fire again from the next slot (the slots missed while paused are not fired)")):
        sub(name, text, f"queuectl schedule {name} nightly").add_argument("name", type=values.schedule_name)
