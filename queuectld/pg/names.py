"""A node's name and its place: which rows a start may take as its own earlier run's, and which start a
name in use refuses (docs/DECISIONS.md, "Node names").

A node's row says where it runs: `host` (the host name) and `home` (the daemon's state directory).  Two
rows with the same name, host and home are runs of one daemon, one after the other: the home's lock file
keeps two daemons off one home, so while a new run starts, an earlier one with that place is dead.  A
row with the same name from another place is another daemon: while it is alive (neither lost nor
stopped, its heartbeat within LOST_AFTER intervals of the database's clock) a start under its name is
refused, and a start never takes its rows, alive or not (the rescue ends a gone node's).  A row without
a place (written before schema version 2) is of no known place: it is never taken, nor refused against.

A store opened without a home (the journal's import, tests that open stores in-process) is no daemon: it
is refused nothing, and takes back only the rows of earlier stores without a home on its host.
"""

from __future__ import annotations

from typing import Any

from ..store import StoreError

LOST_AFTER = 4  # intervals since a node's last heartbeat before it is gone (rescue.py declares it lost)
NAME_LOCK = 0x716E  # first key of the advisory lock that makes two starts under one name take turns ("qn")

# The node ids of the earlier runs of this daemon: the same name, host and home.
_EARLIER = ("SELECT e.id::text FROM queuectl_nodes e WHERE e.name = {name} AND e.host = {host} "
            "AND e.home IS NOT DISTINCT FROM {home}")


def earlier(name: str, host: str, home: str) -> str:
    """A condition on a job row: its holder is an earlier run of this daemon.  `name`, `host`, `home`:
    the statement's parameters ("$1") that carry them."""
    return f"split_part(locked_by, '/', 1) IN ({_EARLIER.format(name=name, host=host, home=home)})"


# Claims an earlier run of this daemon held but never started go back (its runs are `interrupted`).
GIVE_BACK = ("UPDATE queuectl_jobs SET locked_by = NULL, locked_at = NULL, node = NULL, attempts = attempts - 1 "
             "WHERE node = $1 AND locked_by IS NOT NULL AND state <> 'processing' AND NOT starts_with(locked_by, $2) "
             f"AND {earlier('$1', '$3', '$4')}")

# A live node of this name in another place (a row of no known place is not one).
_ELSEWHERE = """
SELECT host, coalesce(home, '?') FROM queuectl_nodes
 WHERE name = $1 AND lost_at IS NULL AND stopped_at IS NULL
   AND heartbeat_at >= now() - make_interval(secs => $4)
   AND host IS NOT NULL AND (host <> $2 OR home IS DISTINCT FROM $3)
 LIMIT 1
"""


def in_use(name: str, host: str, home: str) -> str:
    """The refusal of a start under a name in use elsewhere: one line."""
    return f"node name {name} is in use by a live node on {host} ({home}); give this node another --node"


async def claim(conn: Any, name: str, host: str, home: str | None, interval: float) -> None:
    """In the transaction that registers the node, before its row: refuse the start (StoreError) if a live
    node of this name runs in another place.  Two starts at once under one name take turns here."""
    await conn.execute("SELECT pg_advisory_xact_lock($1, hashtext($2))", NAME_LOCK, name)
    if home is None:
        return
    other = await conn.fetchrow(_ELSEWHERE, name, host, home, interval * LOST_AFTER)
    if other is not None:
        raise StoreError(in_use(name, other[0], other[1]))


# For the heartbeat's RETURNING, on its row `m`: another live node of this node's name in another place (a
# start that raced this one's, or one that took the name while this node was declared lost), as
# "HOST (HOME)"; NULL if none.  `$3`: the seconds within which a heartbeat is alive.
OTHER = """
(SELECT o.host || ' (' || coalesce(o.home, '?') || ')' FROM queuectl_nodes o
  WHERE m.home IS NOT NULL AND o.name = m.name AND o.id <> m.id
    AND o.lost_at IS NULL AND o.stopped_at IS NULL AND o.heartbeat_at >= now() - make_interval(secs => $3)
    AND o.host IS NOT NULL AND (o.host <> m.host OR o.home IS DISTINCT FROM m.home)
  LIMIT 1)"""
