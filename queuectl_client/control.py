"""Queue control on a `Client`: groups, pause and resume, cancel, retry, rerun, edit, bulk delete and prune.

Each function sends one request.  Those that change jobs or groups are sent
once (no reconnect and resend after a lost reply), since a second copy could
act on what the first left behind; a lost reply is a DaemonUnavailable.
Commands that change many jobs reply with `Changed` frames, read here to the
last, so their result is one `Changed` holding every id.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import msgspec

from . import protocol as p
from .connection import Client


def group_add(client: Client, name: str, parallel: int = 0) -> None:
    """Create a group; `parallel` caps its running jobs (0: only the pool does)."""
    client.request(p.GroupAdd(name, parallel), retry=False)


def group_set(client: Client, name: str, parallel: int) -> None:
    client.request(p.GroupSet(name, parallel), retry=False)


def group_remove(client: Client, name: str) -> None:
    """Refused for `default`, and while the group holds a job that is not completed or dead."""
    client.request(p.GroupRemove(name), retry=False)


def groups(client: Client) -> list[p.GroupInfo]:
    reply: p.GroupsReply = client.request(p.GroupList())
    return reply.groups


def pause(client: Client, names: Sequence[str] = (), resume: bool = False) -> list[str]:
    """Pause (or resume) the named groups, every group if none is named; the names of those changed."""
    return changes(client, p.Pause(list(names), resume)).ids


def selector(state: str | None, group: str | None = None, older_than: float | None = None) -> p.Selector | None:
    """The jobs in `state` (of `group`, changed more than `older_than` s ago); None without a state."""
    if state is None:
        return None
    return p.Selector(state, group, older_than)  # type: ignore[arg-type]


def cancel(client: Client, ids: Sequence[str] = (), select: p.Selector | None = None, signal: int = 15,
           grace: float = 3.0) -> p.Changed:
    """Waiting jobs end dead at once; running ones get `signal`, then SIGKILL `grace` s later."""
    return changes(client, p.Cancel(list(ids), select, signal, grace))


def retry(client: Client, ids: Sequence[str] = (), select: p.Selector | None = None) -> p.Changed:
    """Failed jobs become due now; dead ones go back to pending with their attempts reset."""
    return changes(client, p.Retry(list(ids), select))


def delete(client: Client, ids: Sequence[str] = (), select: p.Selector | None = None,
           cascade: bool = False) -> p.Changed:
    """Delete jobs that are not running, and their output; with `cascade`, also jobs others wait for (their
    `after` dependents die with them)."""
    return changes(client, p.Delete(ids=list(ids), select=select, cascade=cascade))


def prune(client: Client, state: str | None = None, older_than: float | None = None,
          dry_run: bool = False) -> p.Changed:
    """Remove final jobs now, as retention would; with `dry_run`, only count them."""
    return changes(client, p.Prune(state, older_than, dry_run))  # type: ignore[arg-type]


def rerun(client: Client, job_id: str) -> p.Job:
    """Enqueue a copy of a job under a new id; the new job."""
    reply: p.Enqueued = client.request(p.Rerun(job_id), retry=False)
    if len(reply.jobs) == 1:
        return reply.jobs[0]
    return client.show(reply.ids[0])


def edit(client: Client, job_id: str, **fields: Any) -> p.Job:
    """Change a job that is not running: `priority`, `run_at` (None: due now), `delay`, `group`,
    `max_retries`, `timeout` (None: no timeout).  Fields not given keep their value."""
    reply: p.JobReply = client.request(p.Edit(job_id, **fields), retry=False)
    return reply.job


def changes(client: Client, msg: p.Message) -> p.Changed:
    """Every `Changed` frame of the reply to `msg`, as one."""
    count, ids = 0, []
    for reply in client.stream(msg):
        assert isinstance(reply, p.Changed), reply
        count = reply.count
        ids.extend(reply.ids)
    return p.Changed(count, ids)


def group_dicts(infos: Sequence[p.GroupInfo]) -> list[dict[str, Any]]:
    """Groups as plain data, in the shape `group list --json` prints."""
    return [msgspec.to_builtins(g) for g in infos]
