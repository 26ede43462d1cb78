"""Rendering jobs and status for people (tables) and programs (JSON dicts)."""

from __future__ import annotations

import json
import time

from .wire import STATES

DEFAULT_GROUP = "default"  # as the protocol names it (this module does not import the protocol)

# This module also serves the quick path, which imports neither msgspec nor typing.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterable
    from typing import IO, Any

    from . import protocol as p

TIME_FIELDS = ("run_at", "created_at", "updated_at", "started_at", "finished_at", "next_retry_at")
JSON_TIME_FIELDS = (*TIME_FIELDS, "locked_at")  # locked_at is started_at while the job runs: not shown twice

# SGR colours per state; used only on a terminal and never with NO_COLOR (https://no-color.org).
COLORS = {"processing": "36", "completed": "32", "failed": "33", "dead": "31", "deleted": "2"}
_color = False
_escape = False

# C0 and C1 control characters (but newline and tab) as \xNN: a command or a message holding an escape
# sequence must not drive the terminal that shows it.  The format characters that reorder text (the bidi
# marks, embeddings, overrides and isolates) as \uNNNN: they must not make a line read other than it is.
_BIDI = (0x061C, 0x200E, 0x200F, *range(0x202A, 0x202F), *range(0x2066, 0x206A))
_CONTROLS = {c: f"\\x{c:02x}" for c in (*range(0x00, 0x09), *range(0x0B, 0x20), *range(0x7F, 0xA0))}
_CONTROLS.update({c: f"\\u{c:04x}" for c in _BIDI})


def set_color(enabled: bool) -> None:
    global _color
    _color = enabled


def set_escape(enabled: bool) -> None:
    """Show control characters escaped (on a terminal); pipes and JSON get the text as it is."""
    global _escape
    _escape = enabled


def escaped(text: str) -> str:
    return text.translate(_CONTROLS)


def shown(text: str) -> str:
    """`text` as it may be written to the output: escaped when that is a terminal."""
    return text.translate(_CONTROLS) if _escape else text


def paint(text: str, state: str) -> str:
    code = COLORS.get(state) if _color else None
    return f"\x1b[{code}m{text}\x1b[0m" if code else text


def iso(t: float | None) -> str | None:
    """UNIX seconds as ISO 8601 UTC with milliseconds, e.g. 2026-11-28T04:49:28.123Z.

    A time the platform cannot convert (past its time_t, infinite, NaN) is
    written as the number, so that a read command never fails on a value.
    """
    if t is None:
        return None
    try:
        ms = round(t * 1000)
        secs, ms = divmod(ms, 1000)
        return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(secs)) + f".{ms:03d}Z"
    except (OverflowError, ValueError, OSError):
        return repr(t)


def clock(t: float) -> str:
    """Local HH:MM:SS, or the number for a time the platform cannot convert."""
    try:
        return time.strftime("%H:%M:%S", time.localtime(t))
    except (OverflowError, ValueError, OSError):
        return repr(t)


def job_dict(job: p.Job) -> dict[str, Any]:
    d = {f: getattr(job, f) for f in job.__struct_fields__}
    for f in JSON_TIME_FIELDS:
        d[f] = iso(d[f])
    return d


def ago(t: float | None, now: float | None = None) -> str:
    """'3s ago', 'in 4s', '2h ago'; '-' for None."""
    if t is None:
        return "-"
    delta = (time.time() if now is None else now) - t
    span = abs(delta)
    if span < 1:
        text = "now" if span < 0.5 else "1s"
    elif span < 90:
        text = f"{span:.0f}s"
    elif span < 90 * 60:
        text = f"{span / 60:.0f}m"
    elif span < 48 * 3600:
        text = f"{span / 3600:.0f}h"
    else:
        text = f"{span / 86400:.0f}d"
    if text == "now":
        return text
    return f"{text} ago" if delta >= 0 else f"in {text}"


def _clip(text: str, width: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"


def blocked_by(job: p.Job, most: int = 3) -> str:
    """'blocked by a, b' for a pending job that waits for dependencies, at most `most` named; else ''."""
    ids = job.blocked_by if job.state == "pending" else None
    if not ids:
        return ""
    more = f" and {len(ids) - most} more" if len(ids) > most else ""
    return "blocked by " + ", ".join(shown(i) for i in ids[:most]) + more


def _when(job: p.Job, now: float) -> str:
    if job.blocked_by and job.state == "pending":
        return blocked_by(job)
    if job.state == "failed" and job.next_retry_at is not None:
        return f"retry {ago(job.next_retry_at, now)}"
    if job.state == "pending" and job.run_at is not None and job.run_at > now:
        return f"runs {ago(job.run_at, now)}"
    return ago(job.updated_at, now)


def print_table(jobs: Iterable[p.Job], out: IO[str], page: int = 1000) -> None:
    """An aligned table, streamed: the first `page` rows set the column widths, and whether there is a
    GROUP column (when one of them is outside the default group)."""
    header = ("ID", "STATE", "TRIES", "PRIO", "GROUP", "WHEN", "COMMAND")
    rows: list[tuple[str, ...]] = []
    widths: list[int] | None = None
    keep = list(range(len(header)))  # the columns shown
    now = time.time()

    def flush() -> None:
        nonlocal widths, rows
        if widths is None:
            if all(r[4] == DEFAULT_GROUP for r in rows):
                keep.remove(4)
            widths = [max(len(r[i]) for r in [header, *rows]) for i in keep[:-1]]
            out.write(_row(tuple(header[i] for i in keep), widths))
        out.write("".join(_row(tuple(r[i] for i in keep), widths) for r in rows))
        rows = []

    for job in jobs:
        tries = f"{job.attempts}/{job.max_retries + 1}"
        rows.append((job.id, job.state, tries, str(job.priority), shown(job.group), _when(job, now),
                     _clip(shown(job.command), 60)))
        if len(rows) >= page:
            flush()
    if widths is None and not rows:
        out.write("no jobs\n")
    elif rows:
        flush()


def _row(cells: tuple[str, ...], widths: list[int]) -> str:
    padded = [c.ljust(w) for c, w in zip(cells, widths)]
    padded[1] = paint(padded[1], cells[1])  # the state
    return "  ".join(padded) + "  " + cells[-1] + "\n"


def human_job(job: p.Job) -> str:
    now = time.time()
    lines = [
        ("id", job.id),
        ("command", shown(job.command)),
        ("state", paint(job.state, job.state)),
        ("attempts", f"{job.attempts} of at most {job.max_retries + 1}"),
        ("priority", str(job.priority)),
        *([("group", shown(job.group))] if job.group != DEFAULT_GROUP else []),
        ("timeout", "none" if job.timeout is None else f"{job.timeout:g} s"),
        *([("idle timeout", f"{job.idle_timeout:g} s without output")] if job.idle_timeout is not None else []),
        *([("retry on", _rule(job.retry_on))] if job.retry_on is not None else []),
        *([("no retry on", _rule(job.no_retry_on))] if job.no_retry_on is not None else []),
        *([("unique key", _value(job.unique_key))] if job.unique_key is not None else []),
        ("directory", shown(job.cwd or "-")),
    ]
    for f in TIME_FIELDS:
        t = getattr(job, f)
        if t is not None:
            lines.append((f.replace("_", " "), f"{iso(t)} ({ago(t, now)})"))
    for name, ids in (("after", job.after), ("after any", job.after_any)):
        if ids:
            lines.append((name, _clip(", ".join(shown(i) for i in ids), 200)))
    if job.blocked_by and job.state == "pending":
        lines.append(("waiting", blocked_by(job, 20)))
    if job.exit_code is not None:
        lines.append(("exit code", str(job.exit_code)))
    if job.error_message:
        lines.append(("error", shown(job.error_message)))
    if job.schedule is not None:
        slot = f"slot {iso(job.slot)}" + (", fired late (the daemon was down at that time)" if job.late else "")
        lines.append(("schedule", f"{job.schedule}, {slot}"))
    if job.locked_by is not None:
        lines.append(("locked by", shown(job.locked_by)))
    elif job.worker is not None:
        lines.append(("worker", str(job.worker)))
    if job.env is not None:
        lines.append(("env", f"{len(job.env)} variable{'' if len(job.env) == 1 else 's'}, below"))
    width = max(len(k) for k, _ in lines)
    text = "".join(f"{k + ':':<{width + 1}} {v}\n" for k, v in lines)
    if job.env:
        text += "".join(f"  {name}={_value(value)}\n" for name, value in sorted(job.env.items()))
    return text


def _value(value: str) -> str:
    """A variable's value on one line: quoted as JSON when it holds a control character (a newline
    would otherwise read as another variable), else as it is."""
    if any(c < " " or c == "\x7f" for c in value):
        return json.dumps(value, ensure_ascii=False)
    return shown(value)


def _rule(kinds: list[int | str]) -> str:
    """A retry rule's failure kinds: 'exit 75, timeout'; an empty list names none."""
    return ", ".join(f"exit {k}" if isinstance(k, int) else k for k in kinds) or "nothing"


# Status is rendered from the reply as plain data (msgspec.to_builtins of a StatusReply, or the
# quick path's decoded map), so that both paths print the same thing.


def status_lines(st: dict[str, Any]) -> list[str]:
    counts = "  ".join(paint(f"{s} {st['jobs'].get(s, 0)}", s) for s in STATES)
    workers = st["workers"]
    stopping = ", stopping: it starts no new job" if st.get("stopping") else ""
    lines = [f"jobs     {counts}", f"workers  {workers['busy']} busy of {workers['configured']}"]
    groups = st.get("groups") or []
    if len(groups) > 1 or any(g["paused"] for g in groups):
        lines += _group_lines(groups)
    if st.get("retention") is not None:
        lines.append(retention_line(st["retention"]))
    if st.get("policy") is not None:
        pol = st["policy"]
        lines.append(f"policy   only commands matching the {pol['patterns']} pattern(s) of {shown(pol['file'])} "
                     f"(read {ago(pol['loaded_at'])})")
    if st.get("nodes"):  # a PostgreSQL store's nodes
        from .nodes import node_lines

        lines += node_lines(st["nodes"])
    lines.append(f"daemon   pid {st['pid']}, version {st['version']}, started {ago(st['started_at'])}{stopping}")
    return lines


def _group_lines(groups: list[dict[str, Any]]) -> list[str]:
    """`groups   NAME  running R[ of P]  pending N[  paused]`, aligned, one line per group."""
    cells = [(g["name"], f"running {g['running']}" + (f" of {g['parallel']}" if g["parallel"] else ""),
              f"pending {g['jobs'].get('pending', 0)}", "paused" if g["paused"] else "") for g in groups]
    widths = [max(len(c[i]) for c in cells) for i in range(3)]
    return [(f"{'groups' if n == 0 else '':<9}" + "  ".join(x.ljust(w) for x, w in zip(c, widths)) + "  " + c[3])
            .rstrip() for n, c in enumerate(cells)]


def retention_line(r: dict[str, Any]) -> str:
    """When retention (the background removal of finished jobs) last ran, and what it removed."""
    if r.get("last_at") is None:
        return "pruning  not run yet"
    last = ", ".join(f"{n} {state}" for state, n in r.get("last_removed", {}).items() if n) or "nothing"
    total = sum(r.get("total_removed", {}).values())
    return f"pruning  last ran {clock(r['last_at'])} ({ago(r['last_at'])}), removed {last} (since start: {total})"


def group_table(groups: list[dict[str, Any]]) -> str:
    """`group list`: NAME, PARALLEL, PAUSED, a column per state, RUNNING."""
    header = ("NAME", "PARALLEL", "PAUSED", *(s.upper() for s in STATES), "RUNNING")
    rows = [(shown(g["name"]), str(g["parallel"]) if g["parallel"] else "-", "yes" if g["paused"] else "no",
             *(str(g["jobs"].get(s, 0)) for s in STATES), str(g["running"])) for g in groups]
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    return "".join("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() + "\n" for r in [header, *rows])


def status_json(st: dict[str, Any]) -> dict[str, Any]:
    workers = st["workers"]
    retention = st.get("retention")
    if retention is not None:
        retention = {"last_at": iso(retention.get("last_at")), "last_removed": retention.get("last_removed", {}),
                     "total_removed": retention.get("total_removed", {})}
    return {
        "jobs": st["jobs"],
        "workers": {"configured": workers["configured"], "busy": workers["busy"]},
        "daemon": {"pid": st["pid"], "version": st["version"], "started_at": iso(st["started_at"]),
                   "stopping": bool(st.get("stopping", False))},
        "groups": [{"name": g["name"], "parallel": g["parallel"], "paused": g["paused"], "jobs": g["jobs"],
                    "running": g["running"]} for g in st.get("groups") or []],
        "retention": retention,
        "policy": None if st.get("policy") is None else {**st["policy"], "loaded_at": iso(st["policy"]["loaded_at"])},
    } | ({"nodes": [_node_json(n) for n in st["nodes"]]} if st.get("nodes") else {})


def _node_json(n: dict[str, Any]) -> dict[str, Any]:
    from .nodes import node_json

    return node_json(n)


# Schedules are rendered from plain data (msgspec.to_builtins of a ScheduleInfo).


def _last_fire(s: dict[str, Any]) -> str:
    """What the last fire made: its job (late or not), a skip, or why it failed; '-' before any fire."""
    if s.get("last_slot") is None:
        return "-"
    if s.get("last_skipped"):
        return shown(s["last_error"]) if s.get("last_error") else "skipped: the previous job was not finished"
    if s.get("last_error"):
        return f"failed: {shown(s['last_error'])}"
    return f"{s['last_job']}{' (late)' if s.get('last_late') else ''}"


def schedule_line(s: dict[str, Any]) -> str:
    """`nightly (0 3 * * * Europe/Berlin): next fire 2026-12-01T02:00:00.000Z (in 5h)`, or paused."""
    nxt = "paused" if s["paused"] else (f"next fire {iso(s['next_fire'])} ({ago(s['next_fire'])})"
                                        if s.get("next_fire") is not None else "no slot left")
    return f"{s['name']} ({shown(s['cron'])}, {s['zone']}{', no overlap' if s['no_overlap'] else ''}): {nxt}"


def schedule_table(schedules: list[dict[str, Any]]) -> str:
    """`schedule list`: NAME, CRON, ZONE, NEXT, LAST (when, and its job), PAUSED, SKIPPED."""
    if not schedules:
        return "no schedules\n"
    header = ("NAME", "CRON", "ZONE", "NEXT", "LAST", "PAUSED", "SKIPPED", "LAST JOB")
    rows = [(s["name"], shown(s["cron"]), s["zone"], "-" if s["paused"] or s.get("next_fire") is None
             else ago(s["next_fire"]), ago(s.get("last_slot")), "yes" if s["paused"] else "no",
             str(s["skipped"]), _last_fire(s)) for s in schedules]
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header) - 1)]
    return "".join("  ".join(c.ljust(w) for c, w in zip(r, widths)) + "  " + r[-1] + "\n" for r in [header, *rows])


def schedule_dict(s: dict[str, Any]) -> dict[str, Any]:
    """A schedule as `schedule list --json` prints it: times in ISO 8601 UTC, the job as given."""
    job = {k: v for k, v in s["job"].items() if (v is not None and k not in ("inherit_env",)) or
           (k == "inherit_env" and v is False)}
    return {**s, "job": job, "next_fire": iso(s.get("next_fire")), "last_slot": iso(s.get("last_slot")),
            "last_at": iso(s.get("last_at"))}
