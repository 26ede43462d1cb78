"""The Prometheus text exposition format (version 0.0.4) of a `MetricsReply`.

`queuectl metrics` prints it and the dashboard serves it at /metrics: both
call `render`.  It imports nothing at run time, so a web process pays
nothing for it.  Names follow Prometheus' conventions: a `queuectl_`
prefix, base units (seconds, bytes), `_total` on counters; labels are the
group, a state, an outcome or a bucket edge, never a job id or a command.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .stats_messages import Histogram, MetricsReply

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
STATES = ("pending", "processing", "completed", "failed", "dead")
OUTCOMES = ("completed", "failed", "dead")


def render(reply: MetricsReply) -> str:
    out: list[str] = []

    def head(name: str, kind: str, text: str) -> None:
        out.append(f"# HELP {name} {_help(text)}\n# TYPE {name} {kind}\n")

    head("queuectl_jobs", "gauge", "Jobs in the queue now, by state and group.")
    for g in reply.groups:
        for state in (*STATES, *sorted(set(g.jobs) - set(STATES))):
            out.append(f"queuectl_jobs{_labels(group=g.group, state=state)} {g.jobs.get(state, 0)}\n")
    head("queuectl_jobs_finished_total", "counter",
         "Runs that ended, by group and outcome (failed: to be retried; dead: not retried).")
    for g in reply.groups:
        for outcome in OUTCOMES:
            out.append(f"queuectl_jobs_finished_total{_labels(group=g.group, outcome=outcome)} "
                       f"{g.finished.get(outcome, 0)}\n")
    head("queuectl_job_duration_seconds", "histogram", "How long runs took, from start to end, by group.")
    for g in reply.groups:
        _histogram(out, "queuectl_job_duration_seconds", g.duration, group=g.group)
    head("queuectl_job_wait_seconds", "histogram", "How long jobs waited for a worker once due, by group.")
    for g in reply.groups:
        _histogram(out, "queuectl_job_wait_seconds", g.wait, group=g.group)
    head("queuectl_oldest_pending_age_seconds", "gauge",
         "How long the longest-waiting due job of the group has waited for a worker (0: none waits).")
    for g in reply.groups:
        age = g.oldest_pending_age or 0.0
        out.append(f"queuectl_oldest_pending_age_seconds{_labels(group=g.group)} {_number(age)}\n")
    head("queuectl_workers", "gauge", "Workers of the pool, busy running a job or idle.")
    out.append(f'queuectl_workers{{state="busy"}} {reply.busy}\n')
    out.append(f'queuectl_workers{{state="idle"}} {max(0, reply.workers - reply.busy)}\n')
    head("queuectl_journal_bytes", "gauge", "Bytes of the journal on disk: its logs and its snapshot.")
    out.append(f"queuectl_journal_bytes {reply.journal_bytes}\n")
    head("queuectl_journal_fsync_seconds", "histogram", "How long each fdatasync of the journal took.")
    _histogram(out, "queuectl_journal_fsync_seconds", reply.fsync)
    head("queuectl_build_info", "gauge", "The daemon's version and Python version; always 1.")
    out.append(f"queuectl_build_info{_labels(python=reply.python, version=reply.version)} 1\n")
    head("process_start_time_seconds", "gauge", "When the daemon process started, in seconds since the epoch.")
    out.append(f"process_start_time_seconds {_number(reply.started_at)}\n")
    return "".join(out)


def _histogram(out: list[str], name: str, h: Histogram, **labels: str) -> None:
    for bound, count in zip(h.bounds, h.counts, strict=True):
        out.append(f"{name}_bucket{_labels(**labels, le=_number(bound))} {count}\n")
    out.append(f"{name}_bucket{_labels(**labels, le='+Inf')} {h.count}\n")
    out.append(f"{name}_sum{_labels(**labels)} {_number(h.sum)}\n")
    out.append(f"{name}_count{_labels(**labels)} {h.count}\n")


def _labels(**labels: str) -> str:
    if not labels:
        return ""
    return "{" + ",".join(f'{k}="{escape(v)}"' for k, v in labels.items()) + "}"


def escape(value: str) -> str:
    """A label value as the format quotes it: backslash, double quote and line feed escaped."""
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _help(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n")


def _number(x: float) -> str:
    """A sample value or bucket edge: whole numbers without a fraction, others in full precision."""
    if math.isnan(x):
        return "NaN"
    if math.isinf(x):
        return "+Inf" if x > 0 else "-Inf"
    if x == int(x) and abs(x) < 1e15:
        return str(int(x))
    return repr(x)
