"""What every part of the PostgreSQL store shares: the pool of connections, transactions with their
notifications, the node's identity and clock, the cluster-wide settings, and batched writes."""

from __future__ import annotations

import asyncio
import logging
import socket
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any, Generic, TypeVar

import asyncpg

from .. import events as ev
from ..config import Config
from ..store import Store, StoreError
from . import names, schema

log = logging.getLogger("queuectld.store")

MAX_PAYLOAD = 7900  # bytes of a NOTIFY payload; beyond, '*'

T = TypeVar("T")
R = TypeVar("R")


class Batcher(Generic[T, R]):
    """Group commit: items handed in while a write is under way go together in the next one.
    `write(items)` returns one result (or exception) per item, in their order."""

    def __init__(self, write: Callable[[list[T]], Awaitable[list[R | BaseException]]], width: int = 1) -> None:
        self._write = write
        self._items: list[tuple[T, asyncio.Future[R]]] = []
        self._running = 0
        self._tasks: set[asyncio.Task[None]] = set()
        self._width = width  # writes under way at most at once (each on a connection of its own)

    async def __call__(self, item: T) -> R:
        fut: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        self._items.append((item, fut))
        if self._running < self._width and len(self._items) == 1:
            self._running += 1
            task = asyncio.get_running_loop().create_task(self._run())
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        return await fut

    async def _run(self) -> None:
        try:
            await asyncio.sleep(0)  # the callers of this loop turn join the batch
            while self._items:
                batch, self._items = self._items, []
                try:
                    results = await self._write([item for item, _ in batch])
                except BaseException as e:  # every caller of the batch hears of it
                    results = [e] * len(batch)
                for (_, fut), result in zip(batch, results):
                    if fut.done():
                        continue
                    if isinstance(result, BaseException):
                        fut.set_exception(result)
                    else:
                        fut.set_result(result)
        finally:
            self._running -= 1


def _literal(text: str) -> str:
    """A string as an SQL literal (standard_conforming_strings is on: only quotes are doubled)."""
    return "'" + text.replace("'", "''") + "'"


def store_error(e: BaseException) -> StoreError:
    """A database failure as the store reports it: one line."""
    if isinstance(e, StoreError):
        return e
    return StoreError(f"the database: {type(e).__name__}: {e}".splitlines()[0])


async def _kept(conn: Any) -> None:
    """A connection back in the pool keeps its session as it is: the pool's sessions hold no state (no LISTEN,
    no session-level lock or setting, no cursor), so asyncpg's default reset query (a round trip after every
    pooled statement) has nothing to undo; a transaction left open is still rolled back by asyncpg."""


class PgCore(Store):
    """The shared part; `PgStore` adds the queue's operations to it."""

    db: asyncpg.Pool
    fenced: bool = False  # set while this node may not claim (see pg/cluster.py)
    # A connection lost, refused or timed out, the server starting or stopping: for now, not for good.
    unavailable = (ConnectionRefusedError, TimeoutError, asyncpg.InterfaceError, asyncpg.PostgresConnectionError,
                   asyncpg.CannotConnectNowError, asyncpg.AdminShutdownError, asyncpg.CrashShutdownError)

    def __init__(self, url: str, node: str | None = None, min_size: int = 2, max_size: int = 10,
                 home: str | None = None, **connect: Any) -> None:
        self.url = url
        self.host = socket.gethostname()
        self.node = node or self.host
        self.home = home  # the daemon's state directory: with the host, where this node runs (pg/names.py)
        self.node_id = str(uuid.uuid4())
        self.config = Config()
        self._pool_size = 0
        self._offset = 0.0  # the database's clock minus this machine's
        self._connect = connect
        self._sizes = (min_size, max_size)
        self._notes: dict[int, dict[str, set[str]]] = {}
        self._envs: dict[str, dict[str, str]] = {}

    @property
    def pool_size(self) -> int:  # type: ignore[override]
        return self._pool_size

    @property
    def me(self) -> str:
        """The prefix of `locked_by` for this node's claims and runs."""
        return self.node_id + "/"

    def clock(self) -> float:
        """The database's clock as epoch seconds."""
        return time.time() + self._offset

    # -- life -------------------------------------------------------------------

    async def open(self) -> int:
        try:
            conn = await asyncpg.connect(self.url, **self._connect)
        except (TimeoutError, OSError, asyncpg.PostgresError) as e:
            raise StoreError(f"cannot connect to the database: {e}".splitlines()[0]) from None
        try:
            await schema.migrate(conn)
        except asyncpg.PostgresError as e:
            raise store_error(e) from None
        finally:
            await conn.close()
        self.node_id = str(uuid.uuid4())  # a new id at every open: a restart is a new node
        self.db = await asyncpg.create_pool(self.url, min_size=self._sizes[0], max_size=self._sizes[1],
                                            server_settings={"idle_in_transaction_session_timeout": "60000",
                                                             "synchronous_commit": "on",
                                                             "standard_conforming_strings": "on",
                                                             # plan each statement once (DECISIONS: claims)
                                                             "plan_cache_mode": "force_generic_plan",
                                                             # a generic plan's estimates pass jit_above_cost:
                                                             # compiling the next-due query cost ~150 ms a pass
                                                             "jit": "off"},
                                            reset=_kept, init=self._connected, **self._connect)
        try:
            await self.measure_clock()
            async with self.tx() as c:
                for key, value in await c.fetch("SELECT key, value FROM queuectl_settings"):
                    self.config.restore(key, value)
                await names.claim(c, self.node, self.host, self.home, self.config.heartbeat)
                self._pool_size = await c.fetchval("SELECT pool FROM queuectl_node_pools WHERE name = $1",
                                                   self.node) or 0
                await c.execute("INSERT INTO queuectl_nodes (id, name, pool, started_at, heartbeat_at, host, home) "
                                "VALUES ($1, $2, $3, now(), now(), $4, $5)", self.node_id, self.node,
                                self._pool_size, self.host, self.home)
                await self._opened(c)
        except BaseException:
            self.db.terminate()  # a refused start leaves no connection behind, and waits on none
            del self.db
            raise
        return 0

    async def _opened(self, conn: Any) -> None:
        """At open, in the transaction that registers the node: what the store resolves then."""

    async def _connected(self, conn: Any) -> None:
        """A new connection of the pool (asyncpg's `init`), before its first use."""

    async def measure_clock(self, conn: Any = None) -> None:
        before = time.time()
        if conn is None:
            db = await self.db.fetchval("SELECT extract(epoch FROM clock_timestamp())::float8")
        else:
            db = await conn.fetchval("SELECT extract(epoch FROM clock_timestamp())::float8")
        after = time.time()
        self._offset = db - (before + after) / 2

    async def sync(self) -> None:
        """Wait until every change recorded so far is durable: starts and ends are committed without waiting
        for the WAL flush, and a durable commit of a write flushes everything before it."""
        async with self.tx() as conn:
            await conn.execute("UPDATE queuectl_nodes SET busy = busy WHERE id = $1", self.node_id)

    async def close(self) -> None:
        db = getattr(self, "db", None)
        if db is not None:
            try:
                await self.db.execute("UPDATE queuectl_nodes SET stopped_at = now() WHERE id = $1", self.node_id)
            except Exception:  # a node that cannot say it stopped is declared lost by the others
                pass
            await db.close()

    # -- transactions -------------------------------------------------------------

    @asynccontextmanager
    async def tx(self, durable: bool = True) -> AsyncIterator[Any]:
        """A pooled connection in a transaction (`conn.transaction()` nests in it as a savepoint);
        notifications queued on it are sent just before its commit.  `durable`: the commit waits for the
        WAL flush (every change a caller is told of, and every claim); otherwise it does not (`SET LOCAL
        synchronous_commit = off`: starts and ends, durable within moments; see DECISIONS)."""
        async with self.db.acquire() as conn:
            key = id(conn)
            tr = conn.transaction()
            await tr.start()
            try:
                yield conn
                notes = self._notes.pop(key, None)
                sql = ["SET LOCAL synchronous_commit = " + ("on;" if durable else "off;")]
                for channel, payloads in (notes or {}).items():
                    text = ",".join(sorted(payloads))
                    if "*" in payloads or len(text.encode()) > MAX_PAYLOAD:
                        text = "*"
                    sql.append(f"SELECT pg_notify({_literal(channel)}, {_literal(text)});")
                if sql:
                    await conn.execute(" ".join(sql))
            except BaseException:
                self._notes.pop(key, None)
                if not conn.is_closed():
                    try:
                        await tr.rollback()
                    except Exception:  # the connection is broken: the pool drops it
                        conn.terminate()
                raise
            await tr.commit()

    @asynccontextmanager
    async def flat_tx(self, durable: bool = True) -> AsyncIterator[Any]:
        """A transaction in fewer round trips than `tx()` (its start carries the commit setting, its commit
        the notifications), for the hot paths; no savepoint may nest in it."""
        async with self.db.acquire() as conn:
            key = id(conn)
            await conn.execute("BEGIN; SET LOCAL synchronous_commit = " + ("on" if durable else "off"))
            try:
                yield conn
                sql = []
                for channel, payloads in (self._notes.pop(key, None) or {}).items():
                    text = ",".join(sorted(payloads))
                    if "*" in payloads or len(text.encode()) > MAX_PAYLOAD:
                        text = "*"
                    sql.append(f"SELECT pg_notify({_literal(channel)}, {_literal(text)});")
                await conn.execute(" ".join([*sql, "COMMIT"]))
            except BaseException:
                self._notes.pop(key, None)
                if not conn.is_closed():
                    try:
                        await conn.execute("ROLLBACK")
                    except Exception:  # the connection is broken: the pool drops it
                        conn.terminate()
                raise

    async def notify(self, conn: Any, channel: str, *payload: str) -> None:
        """Queue a NOTIFY on `channel` for the transaction of `conn`: one per channel, sent at its commit,
        its payload the payloads given, comma-separated (or '*' if too long)."""
        self._notes.setdefault(id(conn), {}).setdefault(channel, set()).update(payload)

    async def _audited(self, conn: Any, event: ev.Event) -> None:
        """Record, in the change's own transaction, who made it (the audit trail; see pg/trail.py)."""
