"""The CLI's grammar: every subcommand, its arguments, help and examples (argparse).

`cli` runs the commands, `shell` reads the same grammar line by line, and
`completions` turns it into completion scripts; none of them import each other.
"""

from __future__ import annotations

import argparse
import math
from typing import Any, NoReturn

import msgspec

from . import values
from .connection import __version__
from .durations import plain_number
from .schedule_args import schedule_args
from .values import quoted as _quoted
from .values import whole
from .watch_args import audit_args, stats_args
from .wire import STATES


class UsageError(Exception):
    """Invalid input from the user (exit 2)."""


# The bounds of the numeric options, as --help states them.
INT32 = 2**31 - 1  # the protocol's limit for a count of jobs
MIN_INTERVAL, MAX_INTERVAL = 0.05, 86_400.0  # top's refresh: 50 ms to a day
MAX_WAIT = 100 * 365.25 * 86_400  # wait --timeout: a century (the daemon treats a decade as forever)
MAX_PARALLEL = 1_000_000  # a group's cap on running jobs


def seconds(lo: float, hi: float, what: str) -> Any:
    """An argparse type: a number of seconds from `lo` to `hi` (`what` says the bounds in words)."""

    def parse(text: str) -> float:
        try:
            x = float(text) if plain_number(text) else math.nan
        except ValueError:
            x = math.nan
        if not lo <= x <= hi:  # NaN fails this too
            raise argparse.ArgumentTypeError(f"expected a number of seconds from {what}, not {_quoted(text)}")
        return x

    return parse


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


def _json_flag(parser: Parser, text: str = "print JSON instead of text") -> None:
    parser.add_argument("--json", action="store_true", help=text)


def _enqueue_args(e: Parser) -> None:
    e.add_argument("job", nargs="?", help="a job as JSON, or - to read JSON lines from stdin")
    e.add_argument("--file", "-f", help="read one JSON job per line from this file")
    e.add_argument("--after", action="append", type=values.job_id, metavar="ID",
                   help="run only once job ID has completed (repeat for more); added to each job's `after`")
    e.add_argument("--env", "-e", action="append", default=[], metavar="NAME[=VALUE]",
                   help="set a variable for the jobs; NAME alone takes its value from here (repeatable)")
    e.add_argument("--clean-env", action="store_true",
                   help="run the jobs with only PATH, HOME, USER, LANG and SHELL from here, and their env")
    _json_flag(e)


def _worker_args(w: Parser) -> None:
    wsub = w.add_subparsers(dest="action", metavar="ACTION", required=True)
    ws = wsub.add_parser("start", help="set the pool to N workers and follow their jobs",
                         epilog="examples:\n  queuectl worker start --count 4\n  queuectl worker start -n 2 --detach",
                         formatter_class=argparse.RawDescriptionHelpFormatter)
    ws.add_argument("--count", "-n", type=int, default=1, metavar="N", help="number of workers, 1 to 1024 (default 1)")
    ws.add_argument("--detach", "-d", action="store_true", help="return at once instead of following")
    ws.add_argument("--json", action="store_true", help="print each job event as a JSON line on stdout")
    wsub.add_parser("stop", help="start no new job; return once running jobs finished")


def _status_args(s: Parser) -> None:
    _json_flag(s)


def _list_args(ls: Parser) -> None:
    ls.add_argument("--state", choices=STATES)
    ls.add_argument("--group", type=values.group_name, metavar="GROUP", help="only the jobs of this group")
    ls.add_argument("--limit", type=whole(0, INT32), metavar="N", help=f"at most N jobs (0 to {INT32})")
    ls.add_argument("--quiet", "-q", action="store_true", help="print only the ids, one per line")
    _json_flag(ls)


def _show_args(sh: Parser) -> None:
    sh.add_argument("id")
    _json_flag(sh)


def _why_args(w: Parser) -> None:
    w.add_argument("id")
    _json_flag(w, "print the reason as JSON: its code, the facts it rests on, and the line")


def _logs_args(lg: Parser) -> None:
    lg.add_argument("id")
    which = lg.add_mutually_exclusive_group()
    which.add_argument("--stdout", action="store_true", help="only standard output, unlabelled")
    which.add_argument("--stderr", action="store_true", help="only standard error, unlabelled")
    lg.add_argument("--follow", "-f", action="store_true",
                    help="stream the run's output as it comes, until the run ends (its stdout to stdout, "
                         "its stderr to stderr); a job that waits is followed once it starts")
    lg.add_argument("--tail", "-n", type=whole(0, INT32), metavar="N",
                    help=f"only the last N lines of each stream (0 to {INT32})")
    lg.add_argument("--json", action="store_true",
                    help='print {"id", "stdout", "stderr"}; with --follow, a JSON line per chunk')


def _delete_args(d: Parser) -> None:
    d.add_argument("ids", nargs="*", metavar="ID", help="the jobs to delete (all or none)")
    _select_args(d, ("pending", "completed", "failed", "dead"), "delete never touches running jobs")
    d.add_argument("--cascade", action="store_true",
                   help="also when other jobs wait for it: those that need it to complete (`after`) die with it")
    _json_flag(d, "print the ids of the deleted jobs as a JSON array")


def _select_args(parser: Parser, states: tuple[str, ...], why: str = "") -> None:
    """`--state S [--group G] [--older-than D]`: the jobs a command acts on, instead of ids."""
    parser.add_argument("--state", type=values.state_in(*states, why=why), choices=states,
                        help="act on every job in this state now (one record, all at once)")
    parser.add_argument("--group", type=values.group_name, metavar="GROUP", help="with --state: only this group's")
    parser.add_argument("--older-than", type=values.duration, metavar="DURATION",
                        help="with --state: only jobs whose state changed longer ago than this (90s, 30m, 12h, 7d)")


def _dlq_args(q: Parser) -> None:
    qsub = q.add_subparsers(dest="action", metavar="ACTION", required=True)
    ql = qsub.add_parser("list", help="list dead jobs")
    _json_flag(ql)
    ql.add_argument("--limit", type=whole(0, INT32), metavar="N", help=f"at most N jobs (0 to {INT32})")
    ql.add_argument("--quiet", "-q", action="store_true", help="print only the ids, one per line")
    qr = qsub.add_parser("retry", help="move dead jobs back to pending, attempts reset")
    qr.add_argument("ids", nargs="*", metavar="ID")
    qr.add_argument("--all", action="store_true", help="every dead job")
    _json_flag(qr)


def _config_args(c: Parser) -> None:
    csub = c.add_subparsers(dest="action", metavar="ACTION", required=True)
    cg = csub.add_parser("get", help="one setting; every setting without a KEY")
    cg.add_argument("key", nargs="?")
    _json_flag(cg)
    cs = csub.add_parser("set")
    cs.add_argument("key")
    cs.add_argument("value")
    cl = csub.add_parser("list")
    _json_flag(cl)


def _wait_args(w: Parser) -> None:
    w.add_argument("ids", nargs="*", metavar="ID", help="the jobs to wait for (default: every job not yet final)")
    w.add_argument("--state", choices=STATES, help="wait for the jobs that are in this state now")
    w.add_argument("--timeout", type=seconds(0, MAX_WAIT, "0 to a century (3155760000)"), metavar="SECONDS",
                   help="give up after this long (exit 124); 0 to 3155760000, a century")
    _json_flag(w)


def _top_args(t: Parser) -> None:
    t.add_argument("--interval", type=seconds(MIN_INTERVAL, MAX_INTERVAL, "0.05 to 86400 (a day)"), default=1.0,
                   metavar="SECONDS", help="refresh period, 0.05 to 86400, a day (default 1)")
    t.add_argument("--json", action="store_true", help="print one snapshot as JSON and exit")


def _group_args(g: Parser) -> None:
    gsub = g.add_subparsers(dest="action", metavar="ACTION", required=True)
    parallel = "at most N of its jobs run at once, 0 to 1000000 (0: no limit but the pool's)"
    def sub(name: str, help_text: str, examples: str) -> Parser:
        return gsub.add_parser(name, help=help_text, description=help_text[0].upper() + help_text[1:] + ".",
                               epilog="examples:\n" + "".join(f"  {ln}\n" for ln in examples.splitlines()),
                               formatter_class=argparse.RawDescriptionHelpFormatter)

    ga = sub("add", "create a group", "queuectl group add backups --parallel 1\nqueuectl group add reports")
    ga.add_argument("name", type=values.group_name)
    ga.add_argument("--parallel", type=whole(0, MAX_PARALLEL), default=0, metavar="N", help=parallel + ", default 0")
    gs = sub("set", "change a group's limit",
             "queuectl group set backups --parallel 2\nqueuectl group set backups --parallel 0")
    gs.add_argument("name", type=values.group_name)
    gs.add_argument("--parallel", type=whole(0, MAX_PARALLEL), required=True, metavar="N", help=parallel)
    gr = sub("rm", "remove a group that holds no job but completed or dead ones", "queuectl group rm backups")
    gr.add_argument("name", type=values.group_name)
    gl = sub("list", "the groups, their limits, whether paused, their jobs",
             "queuectl group list\nqueuectl group list --json")
    gl.add_argument("--quiet", "-q", action="store_true", help="print only the names, one per line")
    _json_flag(gl)


def _pause_args(pr: Parser) -> None:
    pr.add_argument("groups", nargs="*", type=values.group_name, metavar="GROUP",
                    help="the groups (default: every group)")


def _cancel_args(c: Parser) -> None:
    c.add_argument("ids", nargs="*", metavar="ID", help="the jobs to cancel (all or none)")
    _select_args(c, ("pending", "failed", "processing"), "only waiting and running jobs can be cancelled")
    c.add_argument("--signal", "-s", type=values.signal_number, default=15, metavar="SIG",
                   help="sent to a running job's process group: a name (TERM, INT, ...) or 1 to 64 (default TERM)")
    c.add_argument("--grace", type=seconds(0, values.MAX_GRACE, "0 to 86400 (a day)"), default=3.0,
                   metavar="SECONDS", help="then SIGKILL this long after the signal, 0 to 86400 (default 3)")
    _json_flag(c, "print the ids of the cancelled jobs as a JSON array")


def _retry_args(r: Parser) -> None:
    r.add_argument("ids", nargs="*", metavar="ID", help="failed or dead jobs (all or none)")
    _select_args(r, ("failed", "dead"), "only failed and dead jobs can be retried")
    _json_flag(r, "print the ids of the retried jobs as a JSON array")


def _rerun_args(r: Parser) -> None:
    r.add_argument("id")
    _json_flag(r, "print the new job as `show --json` does")


def _edit_args(e: Parser) -> None:
    e.add_argument("id")
    e.set_defaults(**{f: msgspec.UNSET for f in ("priority", "run_at", "delay", "group", "max_retries", "timeout")})
    e.add_argument("--priority", type=whole(-INT32, INT32), metavar="N", help=f"-{INT32} to {INT32}; higher runs first")
    when = e.add_mutually_exclusive_group()
    when.add_argument("--run-at", type=values.when, metavar="TIME",
                      help="ISO 8601 (without a zone: local time), UNIX seconds, or now")
    when.add_argument("--delay", type=seconds(0, MAX_WAIT, "0 to a century (3155760000)"), metavar="SECONDS",
                      help="run this long from now, 0 to 3155760000 (a century)")
    e.add_argument("--group", type=values.group_name, metavar="GROUP", help="move it to this group")
    e.add_argument("--max-retries", type=whole(0, INT32), metavar="N",
                   help=f"retries after the first run, 0 to {INT32}")
    e.add_argument("--timeout", type=values.timeout, metavar="SECONDS",
                   help="more than 0 and at most ten years; none (or 0) for no timeout")
    _json_flag(e)


def _prune_args(pr: Parser) -> None:
    pr.add_argument("--state", choices=("completed", "dead"), help="only jobs in this state (default: both)")
    pr.add_argument("--older-than", type=values.duration, metavar="DURATION",
                    help="finished longer ago than this (90s, 30m, 12h, 7d; default: the keep-completed "
                         "and keep-dead settings)")
    pr.add_argument("--dry-run", "-n", action="store_true", help="only count the jobs it would remove")
    _json_flag(pr, "print the ids of the removed jobs as a JSON array")


def _dashboard_args(d: Parser) -> None:
    d.add_argument("--listen", metavar="HOST:PORT",
                   help="where to listen (default 127.0.0.1:8470; port 0: any free one)")
    d.add_argument("--base-path", metavar="/PREFIX", help="serve under this path, as behind a reverse proxy")
    d.add_argument("--token-file", metavar="FILE",
                   help="take the token from the first line of FILE (default: a new one)")
    d.add_argument("--allow-remote", action="store_true", help="allow a --listen address that is not loopback")
    d.add_argument("--open", action="store_true", help="open the page in the browser")


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
queuectl enqueue '{"id": "load", "command": "./load.sh"}' --after fetch --after transform
jq -c '.[]' jobs.json | queuectl enqueue -
queuectl enqueue --file jobs.jsonl --json
queuectl enqueue --env LOG_LEVEL=debug --env AWS_PROFILE '{"command": "./sync.sh"}'
queuectl enqueue --clean-env '{"command": "make", "env": {"CC": "clang"}}'"""),
    "worker": ("start or stop the worker pool", _worker_args,
               """queuectl worker start --count 4       # follow the jobs; Ctrl-C stops gracefully
queuectl worker start -n 2 --detach
queuectl worker stop                   # returns once running jobs finished"""),
    "status": ("counts per state, workers, daemon", _status_args, "queuectl status\nqueuectl status --json"),
    "nodes": ("the daemons serving this queue: pool, busy, last heartbeat, version, state", _status_args,
              "queuectl nodes\nqueuectl nodes --json"),
    "list": ("list jobs", _list_args, """queuectl list
queuectl list --state failed --limit 20
queuectl list --state dead --quiet | xargs queuectl dlq retry
queuectl list --json"""),
    "show": ("one job in full", _show_args, "queuectl show JOB_ID\nqueuectl show JOB_ID --json"),
    "why": ("why a job is not running now, in one line", _why_args, """queuectl why JOB_ID
queuectl why JOB_ID --json"""),
    "logs": ("a job's output from its latest run", _logs_args, """queuectl logs JOB_ID
queuectl logs JOB_ID --follow
queuectl logs JOB_ID --stderr --tail 20"""),
    "delete": ("delete jobs that are not running, and their output", _delete_args, """queuectl delete JOB_ID
queuectl delete JOB_ID JOB_ID --json
queuectl delete --state completed --older-than 7d
queuectl delete --state dead --group backups
queuectl delete fetch --cascade        # and the jobs waiting for it die with it"""),
    "dlq": ("the dead-letter queue", _dlq_args, """queuectl dlq list
queuectl dlq retry JOB_ID [JOB_ID...]
queuectl dlq retry --all"""),
    "config": ("get, set or list settings", _config_args, """queuectl config list
queuectl config set max-retries 5
queuectl config set backoff-base 3
queuectl config get job-timeout
queuectl config set heartbeat 1      # PostgreSQL store: the whole cluster's nodes"""),
    "group": ("groups of jobs: how many of each run at once", _group_args, """queuectl group add backups --parallel 1
queuectl group set backups --parallel 2
queuectl group list
queuectl group rm backups
queuectl enqueue '{"command": "backup.sh", "group": "backups"}'"""),
    "pause": ("start no new job of these groups (every group without names)", _pause_args,
              "queuectl pause backups\nqueuectl pause"),
    "resume": ("start jobs of paused groups again (every group without names)", _pause_args,
               "queuectl resume backups\nqueuectl resume"),
    "cancel": ("end jobs dead: waiting ones at once, running ones with a signal", _cancel_args,
               """queuectl cancel JOB_ID
queuectl cancel JOB_ID --signal INT --grace 30
queuectl cancel --state pending --group backups
queuectl cancel --state processing --older-than 2h --json"""),
    "retry": ("run failed jobs now; send dead ones back to pending", _retry_args, """queuectl retry JOB_ID
queuectl retry --state failed
queuectl retry --state dead --group backups --older-than 1h"""),
    "rerun": ("enqueue a copy of a job under a new id", _rerun_args,
              "queuectl rerun JOB_ID\nqueuectl rerun JOB_ID --json"),
    "edit": ("change a job that is not running", _edit_args, """queuectl edit JOB_ID --priority 10
queuectl edit JOB_ID --run-at 2026-12-01T09:00:00
queuectl edit JOB_ID --delay 0 --group backups
queuectl edit JOB_ID --timeout none --max-retries 5 --json"""),
    "prune": ("remove completed and dead jobs now, as retention would", _prune_args, """queuectl prune --dry-run
queuectl prune
queuectl prune --state completed --older-than 1d --json"""),
    "schedule": ("cron schedules: enqueue a job at each slot", schedule_args,
                 """queuectl schedule add nightly '0 3 * * *' '{"command": "backup.sh"}' --tz Europe/Berlin
queuectl schedule list
queuectl schedule pause nightly
queuectl schedule resume nightly
queuectl schedule rm nightly"""),
    "audit": ("who changed what: the daemon's audit trail, oldest first", audit_args,
              "queuectl audit\nqueuectl audit --since 1d\nqueuectl audit --limit 20 --json"),
    "wait": ("wait until jobs are completed or dead (exit 0: all completed, 1: not all, 124: timed out)",
             _wait_args, """queuectl wait     # every job not yet final
queuectl wait JOB_ID --timeout 60
queuectl wait --state pending --json"""),
    "stats": ("runs that ended per group: rates, success ratio, duration and wait percentiles", stats_args,
              """queuectl stats
queuectl stats --since 1h --group backups
queuectl stats --since 30m --json"""),
    "metrics": ("print the queue's metrics in the Prometheus text format", _no_args,
                """queuectl metrics
queuectl metrics > /var/lib/node_exporter/textfile/queuectl.prom.tmp"""),
    "top": ("a live view of the queue, until Ctrl-C", _top_args, "queuectl top\nqueuectl top --interval 0.5"),
    "dashboard": ("a live web page on the queue, until Ctrl-C", _dashboard_args, """queuectl dashboard
queuectl dashboard --open
queuectl dashboard --listen 127.0.0.1:9000 --base-path /queue --token-file ~/.config/queuectl/token
queuectl dashboard --listen 0.0.0.0:8470 --allow-remote"""),
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
