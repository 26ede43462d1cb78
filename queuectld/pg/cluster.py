"""Several nodes on one database: heartbeats, self-fencing, the election, the rescue of lost nodes' jobs,
and the wake-ups that LISTEN brings (docs/DECISIONS.md, "Several nodes: liveness, fencing and rescue").

Each node keeps ONE direct connection for its heartbeat and its LISTEN (a pooler in transaction mode
breaks LISTEN: `poll_only` then skips it and polls).  Every `heartbeat` s it writes `heartbeat_at =
now()` on its row (the database's clock) and measures the clock's offset.  A node whose last
successful heartbeat was sent 2 intervals ago (its own monotonic clock) fences itself: its runs' process
groups are killed (`on_fence`) and it claims nothing until a heartbeat succeeds again.  Each heartbeat that
succeeds also renews the spawners' lease to that same time (`on_lease`): they kill the runs then by
themselves, even if this node's event loop is frozen and cannot fence.  The elected node (a lease in
`queuectl_leader`) declares lost every node whose heartbeat is older than 4 intervals (the database's clock)
and ends that node's processing jobs through the failure path, each with a compare-and-set whose row count
is checked.  A node that finds itself declared lost rejoins under a new id.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from typing import Any

from queuectl_client.wire import VERSION

from . import connect, names
from .mend import Mend
from .rescue import FENCE_AFTER, LOST_AFTER, held_range
from .rows import JOB_COLUMNS, job
from .tidy import Tidy

log = logging.getLogger("queuectld.cluster")

LEASE = 2  # intervals the election's lease lasts (renewed every interval)
FENCE_CHECK = 0.1  # seconds between two looks at the time since the last successful heartbeat
CANCEL_POLL = 0.5  # seconds between two looks for this node's runs whose cancel was asked for
SAFETY_POLL = 5.0  # seconds between two wake-ups of the pool whatever the notifications
POLL_ONLY = 0.5  # seconds between two wake-ups without LISTEN (--poll-only)
START_TIMEOUT = 10.0  # seconds to reach the database at start
CHANNELS = ("queuectl_wake", "queuectl_cancel", "queuectl_changed", "queuectl_config")

_BEAT = """
UPDATE queuectl_nodes m SET heartbeat_at = now(), busy = $2
 WHERE id = $1 AND lost_at IS NULL AND stopped_at IS NULL
RETURNING extract(epoch FROM clock_timestamp())::float8, """ + names.OTHER
_JOIN = """
INSERT INTO queuectl_nodes (id, name, pool, busy, version, started_at, heartbeat_at, host, home)
VALUES ($1, $2, $3, $4, $5, now(), now(), $6, $7)
"""
_ELECT = """
INSERT INTO queuectl_leader AS l (one, node_id, until) VALUES (true, $1, now() + make_interval(secs => $2))
ON CONFLICT (one) DO UPDATE SET node_id = excluded.node_id, until = excluded.until
 WHERE l.node_id = excluded.node_id OR l.until < now() OR l.node_id IS NULL
    OR NOT EXISTS (SELECT 1 FROM queuectl_nodes n WHERE n.id = l.node_id AND n.lost_at IS NULL AND n.stopped_at IS NULL)
RETURNING node_id
"""
_CANCELLED = ("SELECT id FROM queuectl_jobs_live WHERE state = 'processing' AND cancelled "
              "AND locked_by >= $1 AND locked_by < $2")


class Cluster(Mend, Tidy):
    """The cluster's side of the PostgreSQL store (a part of PgStore)."""

    poll_only: bool = False  # no LISTEN (a pooler in transaction mode): poll every POLL_ONLY s
    version: str = VERSION

    async def open(self) -> int:
        self._own: set[int] = set()  # the backends of this node's pool: what they notify, it announced itself
        try:  # a database that is not there is told apart from one that refuses: a start may be tried later
            conn = await connect.connect(self.url, START_TIMEOUT, **self._connect)
        except Exception as e:
            if connect.unreachable(e):
                raise connect.Unreachable(f"cannot reach the database at {connect.redact(self.url)}: "
                                          f"{str(e).splitlines()[0] if str(e) else type(e).__name__}") from None
        else:
            await conn.close()
        n = await super().open()
        await self.start_cluster()
        return n

    async def close(self) -> None:
        await self.stop_cluster()
        await super().close()

    async def _connected(self, conn: Any) -> None:
        # What this node's own sessions notify, it has announced already: `_heard` leaves it.
        pid = conn.get_server_pid()
        self._own.add(pid)
        conn.add_termination_listener(lambda _: self._own.discard(pid))  # a later session may get the pid

    # -- life ---------------------------------------------------------------------

    async def start_cluster(self) -> None:
        """After the node's row is written: heartbeats, the watch and the election, as tasks."""
        self._hb: Any = None  # the direct connection: heartbeats and LISTEN
        self._last_ok = time.monotonic()
        self._sent_every = self.interval()  # the interval when the last successful heartbeat was sent
        self._renew(self._last_ok + FENCE_AFTER * self._sent_every)  # the join counts as one, as for the fence
        self._rebeat = asyncio.Event()  # the interval changed: heartbeat now
        self._was: tuple[float, float] = (0.0, 0.0)  # until when (monotonic) the longer interval before a change holds
        self._leader = False
        self._clash: str | None = None  # another live node of this name, from another place, that was warned of
        self._stopping: set[str] = set()  # jobs whose stop was asked of the pool already
        self._looked = asyncio.Event()  # something asked for a look at cancelled runs now
        self._tasks: list[asyncio.Task[None]] = []
        self._reads: set[asyncio.Task[None]] = set()
        await self.db.execute("UPDATE queuectl_nodes SET version = $2 WHERE id = $1", uuid.UUID(self.node_id),
                              self.version)
        loop = asyncio.get_running_loop()
        self._tasks = [loop.create_task(self._beats(), name="heartbeat"),
                       loop.create_task(self._watch(), name="fence-watch"),
                       loop.create_task(self._polls(), name="cluster-polls"),
                       loop.create_task(self._elections(), name="election"),
                       loop.create_task(self._tidy(), name="tidy")]

    async def stop_cluster(self) -> None:
        for task in getattr(self, "_tasks", []) + list(getattr(self, "_reads", ())):
            task.cancel()
        pending = set(getattr(self, "_tasks", [])) | set(getattr(self, "_reads", ()))
        while pending:  # a task may miss a cancel (one that met a timeout): cancel it again until it ends
            _, pending = await asyncio.wait(pending, timeout=0.5)
            for task in pending:
                task.cancel()
        if getattr(self, "_leader", False):
            try:  # the next node takes the election at once rather than when the lease lapses
                async with asyncio.timeout(2):
                    await self.db.execute("UPDATE queuectl_leader SET until = now() - interval '1 s' "
                                          "WHERE node_id = $1", self.node_id)
            except Exception:  # the lease lapses by itself
                pass
        self._drop()

    # -- heartbeats ---------------------------------------------------------------------

    async def _beats(self) -> None:
        delay = connect.BACKOFF_FIRST
        down_since: float | None = None
        while True:
            interval = self.interval()
            sent = time.monotonic()
            try:
                if self._hb is None:
                    await self._link(interval)
                before = time.time()
                async with asyncio.timeout(interval):
                    beat = await self._hb.fetchrow(  # the pool: `resize` writes it
                        _BEAT, uuid.UUID(self.node_id), self._busy_now(), interval * LOST_AFTER)
                db_now: float | None = None
                if beat is not None:
                    db_now = beat[0]
                    self._offset = beat[0] - (before + time.time()) / 2
                    self._same_name(beat[1])
            except asyncio.CancelledError:
                raise
            except Exception as e:
                log.debug("heartbeat of node %s failed: %r", self.node, e)
                if down_since is None:
                    down_since = sent
                    log.error("node %s cannot heartbeat: %s", self.node, str(e).splitlines()[0] if str(e) else
                              type(e).__name__)
                self._drop()
                await asyncio.sleep(delay)
                delay = connect.next_delay(delay)
                continue
            delay = connect.BACKOFF_FIRST
            if db_now is None:  # declared lost: the rescue takes (or took) its jobs; rejoin as a new node
                await self._rejoin()
                continue
            self._last_ok, self._sent_every = sent, interval
            self._renew(sent + FENCE_AFTER * interval)
            self._flushed(sent)
            if down_since is not None or self.fenced:  # a lost link, or the end of a fence
                if down_since is not None:
                    log.info("node %s heartbeats again after %.1f s", self.node, time.monotonic() - down_since)
                try:  # any lost connection is a possible lost write: mend before claiming again
                    async with asyncio.timeout(interval * FENCE_AFTER):
                        await self.mend()
                except asyncio.CancelledError:
                    raise
                except Exception as e:
                    log.warning("node %s cannot compare its runs with the database yet: %s", self.node,
                                str(e).splitlines()[0] if str(e) else type(e).__name__)
                    await asyncio.sleep(delay)
                    continue
                down_since = None
            if self.fenced:
                self.fenced = False
                log.warning("node %s is back in contact with the database: it claims jobs again", self.node)
                self._wake()
            self._rebeat.clear()
            try:
                async with asyncio.timeout(max(0.0, sent + interval - time.monotonic())):  # not wait_for: it
                    await self._rebeat.wait()  # can swallow a cancel that meets its timeout (3.11)
            except TimeoutError:
                pass

    def _renew(self, until: float) -> None:
        """The runs may live until `until`: the spawners kill them then, when the fence would, even if this
        loop cannot (frozen), unless a heartbeat renews it meanwhile."""
        self.lease = (until, f"node {self.node} lost contact with the database")
        if self.on_lease is not None:
            self.on_lease(*self.lease)

    async def _link(self, interval: float) -> None:
        """(Re)open the direct connection, LISTEN again, and poll at once: a notification may have been missed."""
        conn = await connect.connect(self.url, max(interval, 1.0), **self._connect)
        try:
            if not self.poll_only:
                for channel in CHANNELS:
                    async with asyncio.timeout(interval):
                        await conn.add_listener(channel, self._heard)
        except BaseException:
            conn.terminate()
            raise
        self._hb = conn
        self._wake()
        self._looked.set()

    def _drop(self) -> None:
        hb, self._hb = getattr(self, "_hb", None), None
        if hb is not None:
            hb.terminate()  # never waits on a link that may be cut

    async def _rejoin(self) -> None:
        old = self.node_id
        self._fence(f"interrupted: node {self.node} was declared lost")
        self.node_id = str(uuid.uuid4())
        async with asyncio.timeout(self.interval()):
            await self._hb.execute(_JOIN, uuid.UUID(self.node_id), self.node, self._pool_now(), self._busy_now(),
                                   self.version, self.host, self.home)
        log.warning("node %s was declared lost (id %s); it rejoins as %s", self.node, old, self.node_id)

    def _same_name(self, other: str | None) -> None:
        """Another live node has this node's name, from another place (pg/names.py): said once."""
        if other is not None and other != self._clash:
            log.warning("node name %s is also in use by a live node on %s: give one of them another --node",
                        self.node, other)
        self._clash = other

    def _pool_now(self) -> int:
        n: int = getattr(self, "pool_size", 0)
        return n

    def rescued(self, ids: list[str]) -> None:
        self._spawn(self._read_changed(ids))

    # -- fencing, cancels and polls ---------------------------------------------------------

    def _fence(self, why: str) -> None:
        if self.fenced:
            return
        self.fenced = True
        log.error("node %s fences itself: %s; its runs are killed and it claims nothing until it heartbeats",
                  self.node, why)
        if self.on_fence is not None:
            self.on_fence(why)

    async def _watch(self) -> None:
        """Fence on time: a task of its own that never waits on the database (a cut link can hang a query)."""
        while True:
            await asyncio.sleep(FENCE_CHECK)
            if not self.fenced and time.monotonic() - self._last_ok > FENCE_AFTER * max(self._sent_every,
                                                                                         self.interval()):
                self._fence(f"interrupted: node {self.node} lost contact with the database")

    async def _polls(self) -> None:
        """Look for cancelled runs every CANCEL_POLL s (at once when asked), and wake the pool on the safety poll."""
        safety = settings = time.monotonic()
        while True:
            try:
                async with asyncio.timeout(CANCEL_POLL):  # not wait_for: see _beats
                    await self._looked.wait()
            except TimeoutError:
                pass
            self._looked.clear()
            now = time.monotonic()
            if now - safety >= (POLL_ONLY if self.poll_only else SAFETY_POLL):
                safety = now
                self._wake()
                if self.poll_only and now - settings >= SAFETY_POLL:  # no NOTIFY says they changed
                    settings = now
                    await self._reconfigure()
            await self._look()

    async def _look(self) -> None:
        """Stop this node's runs whose cancel another node asked for."""
        try:
            low, high = held_range(self.node_id)
            async with asyncio.timeout(CANCEL_POLL * 2):
                rows = await self.db.fetch(_CANCELLED, low, high)
        except asyncio.CancelledError:
            raise
        except Exception as e:
            log.debug("cannot look for cancelled runs: %s", e)
            return
        ids = [r[0] for r in rows]
        new = [i for i in ids if i not in self._stopping]
        self._stopping = set(ids)
        if new and self.on_stop is not None:
            self.on_stop(new)

    def _wake(self) -> None:
        if self.on_wake is not None:
            self.on_wake()

    # -- notifications --------------------------------------------------------------------

    def _heard(self, conn: Any, pid: int, channel: str, payload: str) -> None:
        if channel == "queuectl_wake":
            self._wake()
        elif channel == "queuectl_cancel":
            if payload == "*" or self.node_id in payload.split(","):
                self._looked.set()
        elif channel == "queuectl_changed":
            if pid not in self._own and payload and payload != "*" and self.on_change is not None:
                self._spawn(self._read_changed(payload.split(",")))
        elif channel == "queuectl_config":
            self._spawn(self._reconfigure())

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._reads.add(task)
        task.add_done_callback(self._reads.discard)

    async def _read_changed(self, ids: list[str]) -> None:
        """Jobs another node changed: this node's followers and waits hear of them."""
        try:
            rows = await self.db.fetch(f"SELECT {JOB_COLUMNS} FROM queuectl_jobs WHERE id = ANY($1::text[])", ids)
        except Exception as e:
            log.debug("cannot read the jobs another node changed: %s", e)
            return
        if rows and self.on_change is not None:
            self.on_change([job(r) for r in rows])

    async def _reconfigure(self) -> None:
        try:
            rows = await self.db.fetch("SELECT key, value FROM queuectl_settings")
        except Exception as e:
            log.debug("cannot read the settings again: %s", e)
            return
        before = self.interval()
        for key, value in rows:
            self.config.restore(key, value)
        if self.interval() != before:
            # Every node beats at once on the new interval; a node that has not heard of it yet is judged
            # by the old one for as long as the old one would take to declare it lost.
            self._was = (time.monotonic() + LOST_AFTER * before, before)
            self._rebeat.set()
        self._wake()

    # -- the election and the rescue --------------------------------------------------------

    async def _elections(self) -> None:
        while True:
            interval = self.interval()
            try:
                if not self.fenced:
                    async with asyncio.timeout(interval * 2):
                        await self._elect(interval)
            except asyncio.CancelledError:
                raise
            except Exception as e:
                log.warning("the election's round failed: %s", str(e).splitlines()[0] if str(e) else type(e).__name__)
            await asyncio.sleep(interval)

    async def _elect(self, interval: float) -> None:
        won = await self.db.fetchval(_ELECT, uuid.UUID(self.node_id), interval * LEASE) is not None
        if won != self._leader:
            self._leader = won
            log.info("node %s %s the elected node", self.node, "is now" if won else "is no longer")
        if won:
            await self.rescue(max(interval, self._was[1]) if time.monotonic() < self._was[0] else interval)
