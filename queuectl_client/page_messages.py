"""The protocol's message for one page of jobs, newest first, resumed by a cursor (the dashboard's tables).

A page costs the daemon the same at any depth: it seeks to the cursor instead of
walking the jobs before it.  A filter (a group, or `query`: a job id, or text
found in the command) looks at no more than SCAN_LIMIT jobs per request; a page
with fewer jobs than asked and a `next` cursor means "more may follow: ask again".

`protocol` re-exports them and lists them among its requests and replies.
"""

from __future__ import annotations

from typing import Annotated

import msgspec

from .schema import GroupName, Job, Message, State

SCAN_LIMIT = 20_000  # jobs a filtered page looks at, at most
MAX_PAGE = 200

Cursor = Annotated[str, msgspec.Meta(max_length=100, pattern=r"^[a-z]+:[0-9]+$")]
Query = Annotated[str, msgspec.Meta(min_length=1, max_length=4096)]


class Page(Message, frozen=True):
    """Up to `limit` jobs of `state` (every state, in list order, without one), newest first in each
    state, after `cursor` (a page's `next`), of `group`, matching `query`."""

    state: State | None = None
    group: GroupName | None = None
    query: Query | None = None
    cursor: Cursor | None = None
    limit: Annotated[int, msgspec.Meta(ge=1, le=MAX_PAGE)] = 50


class PageReply(Message, frozen=True):
    """The jobs; `next`: the cursor of the following page (None: the end); `scanned`: the jobs looked
    at; `total`: the jobs of the state and group, from the daemon's counters (None with a query)."""

    jobs: list[Job]
    next: str | None = None
    scanned: int = 0
    total: int | None = None
