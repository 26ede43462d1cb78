"""The audit trail the queue keeps: one entry per record a person's request wrote.

A record that carries `by` (an `audit.Actor`) is noted once it is applied,
live or in replay: its action in words and a bounded summary of what it
named.  Entries are kept in memory, oldest first; a snapshot writes them as
`AuditKept` records, so that compaction keeps them.

Retention follows `keep-dead`: an entry older than it is dropped when a new
entry comes (its time is the clock, so replay trims as the live daemon did)
and on the retention pass.  Whatever `keep-dead` says, at most MAX_ENTRIES
are kept (`keep-dead 0` keeps dead jobs forever, not the trail's memory).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from datetime import UTC, datetime
from itertools import islice
from typing import Any

from queuectl_client.protocol import AuditEntry

from . import events as ev
from .config import Config

MAX_ENTRIES = 100_000  # entries kept at most, the newest
SHOWN = 10  # ids or names an entry lists before "+N more"
MAX_TEXT = 80  # characters of a command or value an entry keeps
CHUNK = 10_000  # entries per AuditKept record of a snapshot

# The records a person's request writes (a live `Added` is noted by `Queue.add_new`, which applies it).
AUDITED = (ev.AddedJobs, ev.Deleted, ev.DeletedMany, ev.Revived, ev.Cancelled, ev.Edited, ev.GroupDefined,
           ev.GroupRemoved, ev.Paused, ev.ConfigChanged, ev.PoolSized, ev.ScheduleDefined, ev.ScheduleRemoved,
           ev.SchedulePaused)


def short(text: str, limit: int = MAX_TEXT) -> str:
    """`text` on one line, at most `limit` characters (an ellipsis marks a cut)."""
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def listed(names: list[str]) -> str:
    """The first SHOWN names, and how many more."""
    text = ", ".join(short(n, 64) for n in names[:SHOWN])
    return text + (f" +{len(names) - SHOWN} more" if len(names) > SHOWN else "")


def describe(e: Any) -> tuple[str, str]:
    """A record's action and summary, as `queuectl audit` shows them."""
    request = e.by.request if e.by is not None else ""
    if isinstance(e, (ev.Added, ev.AddedJobs)):
        jobs = e.jobs
        what = (f"{jobs[0].id}: {short(jobs[0].command)}" if len(jobs) == 1
                else f"{len(jobs)} jobs" + (": " + listed([job.id for job in jobs]) if jobs else ""))
        return ("rerun" if request == "Rerun" else "enqueue"), what
    if isinstance(e, ev.Deleted):
        return "delete", e.id
    if isinstance(e, ev.DeletedMany):
        return ("prune" if request == "Prune" else "delete"), listed(e.ids)
    if isinstance(e, ev.Revived):
        return "retry", listed(e.ids)
    if isinstance(e, ev.Cancelled):
        return "cancel", listed(e.ids)
    if isinstance(e, ev.Edited):
        return "edit", e.id
    if isinstance(e, ev.GroupDefined):
        return ("group add" if request == "GroupAdd" else "group set"), f"{e.name} parallel {e.parallel}"
    if isinstance(e, ev.GroupRemoved):
        return "group rm", e.name
    if isinstance(e, ev.Paused):
        return ("pause" if e.paused else "resume"), listed(e.groups)
    if isinstance(e, ev.ConfigChanged):
        return "config set", f"{e.key} {short(e.value)}"
    if isinstance(e, ev.PoolSized):
        return "pool", f"{e.count} worker{'' if e.count == 1 else 's'}"
    if isinstance(e, ev.ScheduleDefined):
        return "schedule add", f"{e.name} '{e.cron}': {short(e.job.command)}"
    if isinstance(e, ev.ScheduleRemoved):
        return "schedule rm", e.name
    if isinstance(e, ev.SchedulePaused):
        return ("schedule pause" if e.paused else "schedule resume"), e.name
    if isinstance(e, ev.Refused):
        return "refused", f"{e.action}: {e.detail}"
    return type(e).__name__.lower(), ""


EDITABLE = ("priority", "run_at", "group", "max_retries", "timeout")


def _value(name: str, v: Any) -> str:
    if v is None:
        return "none"
    if name == "run_at":
        return datetime.fromtimestamp(v, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return short(str(v), 64)


def edited(e: ev.Edited, before: tuple[Any, ...] | None) -> str:
    """An edit's job and what it changed (`before`: the job's editable values before it)."""
    after = (e.priority, e.run_at, e.group, e.max_retries, e.timeout)
    if before is None:
        return e.id
    changes = [f"{name} {_value(name, old)} -> {_value(name, new)}"
               for name, old, new in zip(EDITABLE, before, after) if old != new]
    return f"{e.id}: {', '.join(changes) or 'nothing changed'}"


class Trail:
    def __init__(self, config: Config, find: Callable[[str], Any] | None = None) -> None:
        self.config = config  # keep-dead
        self.find = find  # the queue's job of an id, to say what an edit changed
        self.entries: deque[AuditEntry] = deque(maxlen=MAX_ENTRIES)

    def __len__(self) -> int:
        return len(self.entries)

    def wrap(self, table: dict[type, Callable[[Any], object]]) -> dict[type, Callable[[Any], object]]:
        """The queue's table of appliers, each audited record noted once applied; and the trail's own records."""
        for kind in AUDITED:
            table[kind] = self._noting_edit(table[kind]) if kind is ev.Edited else self._noting(table[kind])
        table[ev.Refused] = self.note
        table[ev.AuditKept] = lambda e: self.entries.extend(e.entries)
        return table

    def _noting(self, apply: Callable[[Any], object]) -> Callable[[Any], object]:
        note = self.note

        def applied(e: Any) -> None:
            apply(e)
            if e.by is not None:
                note(e)

        return applied

    def _noting_edit(self, apply: Callable[[Any], object]) -> Callable[[Any], object]:
        def applied(e: ev.Edited) -> None:
            job = self.find(e.id) if e.by is not None and self.find is not None else None
            before = None if job is None else tuple(getattr(job, name) for name in EDITABLE)
            apply(e)
            if e.by is not None:
                self.note(e, edited(e, before))

        return applied

    def note(self, e: Any, detail: str | None = None) -> None:
        by = e.by
        if by is None:
            return
        action, summary = describe(e)
        detail = summary if detail is None else detail
        self.entries.append(AuditEntry(by.at, by.uid, by.via, action, detail))
        self.trim(by.at)

    def trim(self, now: float) -> int:
        """Drop the entries older than `keep-dead` at `now` (0: none); returns how many went."""
        keep = self.config.keep_dead
        if keep <= 0:
            return 0
        cutoff, entries, n = now - keep, self.entries, 0
        while entries and entries[0].at < cutoff:
            entries.popleft()
            n += 1
        return n

    def since(self, at: float, limit: int | None = None) -> list[AuditEntry]:
        """The entries from `at` on, oldest first; with `limit`, the newest `limit` of them."""
        found = [e for e in self.entries if e.at >= at]
        return found if limit is None or len(found) <= limit else found[len(found) - limit :]

    def snapshot(self) -> list[ev.AuditKept]:
        it = iter(self.entries)
        return [ev.AuditKept(list(islice(it, CHUNK))) for _ in range(0, len(self.entries), CHUNK)]
