"""The PostgreSQL store's audit trail and its stats blob.

The trail is the table `queuectl_audit(seq bigserial, at float8, entry bytea)`, each entry an
encoded `AuditEntry`.  A person's change writes its entry in the change's own transaction
(`_audited(conn, record)` with the record the journal store would have written): the change and who
made it commit together or not at all, as one journal record carries both.  The entry's words
come from the journal's own `trail.describe` / `trail.edited`, so both stores say the same.

Retention follows `keep-dead` as the journal's trail does: entries older than it go when a newer
one is written and at each retention pass (`trim_audit`); at most `trail.MAX_ENTRIES` are kept.

Stats: one blob per node name in `queuectl_stats` (each node keeps its own runs' stats).
`save_stats` is called from a worker thread (at most once a minute), `load_stats` on the loop
before the daemon serves (the loop cannot wait for itself): both run their one statement on a
short-lived connection of their own, in a thread of their own, and wait for it.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, TypeVar

import msgspec

from queuectl_client.protocol import AuditEntry

from .. import audit as who
from .. import events as ev
from .. import trail

if TYPE_CHECKING:
    import asyncpg

    from .base import PgBase
else:
    PgBase = object

_encode = msgspec.msgpack.Encoder().encode
_decode = msgspec.msgpack.Decoder(AuditEntry).decode

T = TypeVar("T")
STATS_TIMEOUT = 10.0  # seconds a save or a load of the stats blob may take


class TrailMixin(PgBase):
    """refuse, audit, trim_audit, load_stats, save_stats; and `_audit` for the other writers."""

    # -- writing entries -------------------------------------------------------------------------

    async def _audited(self, conn: asyncpg.Connection, record: Any, detail: str | None = None) -> None:
        """Keep the entry of `record` (an `events` record without `by`) if a person asked for it;
        `detail` replaces the summary `trail.describe` gives (an edit says what it changed)."""
        by = getattr(record, "by", None) or who.actor.get()
        if by is None:
            return
        if "by" in record.__struct_fields__:
            record = msgspec.structs.replace(record, by=by)
        action, summary = trail.describe(record)
        entry = AuditEntry(by.at, by.uid, by.via, action, summary if detail is None else detail)
        await conn.execute("INSERT INTO queuectl_audit (at, entry) VALUES ($1, $2)", entry.at, _encode(entry))
        await self._trim(conn, by.at)

    async def _trim(self, conn: asyncpg.Connection, now: float) -> int:
        keep = self.config.keep_dead
        gone = 0
        if keep > 0:
            status = await conn.execute("DELETE FROM queuectl_audit WHERE at < $1", now - keep)
            gone = int(status.split()[-1])
        status = await conn.execute(
            "DELETE FROM queuectl_audit WHERE seq <= (SELECT max(seq) FROM queuectl_audit) - $1", trail.MAX_ENTRIES)
        return gone + int(status.split()[-1])

    async def refuse(self, action: str, detail: str) -> None:
        async with self.tx() as conn:
            await self._audited(conn, ev.Refused(action, detail))

    async def audit(self, since: float, limit: int | None) -> list[AuditEntry]:
        if limit is None:
            rows = await self.db.fetch("SELECT entry FROM queuectl_audit WHERE at >= $1 ORDER BY seq", since)
        else:
            rows = await self.db.fetch(
                "SELECT entry FROM (SELECT seq, entry FROM queuectl_audit WHERE at >= $1 ORDER BY seq DESC LIMIT $2) "
                "newest ORDER BY seq", since, limit)
        return [_decode(row["entry"]) for row in rows]

    async def trim_audit(self, now: float) -> int:
        async with self.tx() as conn:
            return await self._trim(conn, now)

    # -- the stats blob ----------------------------------------------------------------------------

    def load_stats(self) -> bytes | None:
        async def read(conn: asyncpg.Connection) -> bytes | None:
            data = await conn.fetchval("SELECT data FROM queuectl_stats WHERE node = $1", self.node)
            return None if data is None else bytes(data)

        return self._blocking(read)

    def save_stats(self, data: bytes) -> None:
        async def write(conn: asyncpg.Connection) -> None:
            await conn.execute("INSERT INTO queuectl_stats (node, data) VALUES ($1, $2) "
                               "ON CONFLICT (node) DO UPDATE SET data = excluded.data", self.node, data)

        self._blocking(write)

    def _blocking(self, fn: Callable[[asyncpg.Connection], Awaitable[T]]) -> T:
        """Run `fn` on a connection of its own, in a thread of its own, and wait for it: callable from the
        loop (which cannot wait for itself) and from a worker thread alike.  OSError if the database fails."""
        import asyncpg

        async def run() -> T:
            conn = await asyncpg.connect(self.url, **self._connect)
            try:
                return await fn(conn)
            finally:
                await conn.close()

        result: list[T] = []
        error: list[BaseException] = []

        def target() -> None:
            try:
                result.append(asyncio.run(asyncio.wait_for(run(), STATS_TIMEOUT)))
            except BaseException as e:  # handed back to the caller
                error.append(e)

        t = threading.Thread(target=target, name="queuectl-stats")
        t.start()
        t.join()
        if error:
            raise OSError(f"the database: {error[0]}".splitlines()[0]) from error[0]
        return result[0]
