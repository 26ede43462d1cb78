"""Groups in PostgreSQL: caps that hold across the cluster, pauses, and their removal."""

from __future__ import annotations

from typing import Any

from queuectl_client.protocol import DEFAULT_GROUP, STATES, GroupInfo

from .. import audit
from .. import events as ev
from ..rules import QueueError
from ..store import Store


class Groups(Store):
    db: Any
    _capped: tuple[bool, float] | None  # whether a group has a cap, and when that was read

    async def define_group(self, name: str, parallel: int, create: bool) -> None:
        self._capped = None
        async with self.tx() as conn:  # type: ignore[attr-defined]
            if create:
                done = await conn.execute("INSERT INTO queuectl_groups (name, parallel) VALUES ($1, $2) "
                                          "ON CONFLICT (name) DO NOTHING", name, parallel)
                if done.endswith(" 0"):
                    raise QueueError("duplicate", f"a group named {name!r} already exists")
                paused = False
            else:
                paused = await conn.fetchval("UPDATE queuectl_groups SET parallel = $2 WHERE name = $1 "
                                             "RETURNING paused", name, parallel)
                if paused is None:
                    raise QueueError("not_found", f"no group named {name!r}")
            await self.notify(conn, "queuectl_config", "groups")  # type: ignore[attr-defined]
            await self.notify(conn, "queuectl_wake", "")  # type: ignore[attr-defined]
            await self._audited(conn, ev.GroupDefined(name, parallel, paused, audit.actor.get()))  # type: ignore[attr-defined]

    async def remove_group(self, name: str) -> None:
        if name == DEFAULT_GROUP:
            raise QueueError("state", "the group default cannot be removed")
        async with self.tx() as conn:  # type: ignore[attr-defined]
            if await conn.fetchval("SELECT 1 FROM queuectl_groups WHERE name = $1 FOR UPDATE", name) is None:
                raise QueueError("not_found", f"no group named {name!r}")
            live = await conn.fetchval("SELECT count(*) FROM queuectl_jobs_live WHERE grp = $1", name)
            if live:
                raise QueueError("state", f"group {name} holds {live} job(s) that are not completed or dead; "
                                          "cancel, delete or move them first")
            if await conn.fetchval("SELECT EXISTS (SELECT 1 FROM queuectl_jobs WHERE grp = $1 "
                                   "AND locked_by IS NOT NULL)", name):
                raise QueueError("state", f"group {name} is stopping the start of a cancelled job; "
                                          "try again in a moment")
            await conn.execute("DELETE FROM queuectl_groups WHERE name = $1", name)
            await self.notify(conn, "queuectl_config", "groups")  # type: ignore[attr-defined]
            await self._audited(conn, ev.GroupRemoved(name, audit.actor.get()))  # type: ignore[attr-defined]

    async def pause(self, names: list[str], paused: bool) -> list[str]:
        self._capped = None
        async with self.tx() as conn:  # type: ignore[attr-defined]
            if names:
                known = {r[0] for r in await conn.fetch(
                    "SELECT name FROM queuectl_groups WHERE name = ANY($1::text[]) FOR UPDATE", names)}
                missing = next((n for n in names if n not in known), None)
                if missing is not None:
                    raise QueueError("not_found", f"no group named {missing!r}")
                await conn.execute("UPDATE queuectl_groups SET paused = $2 WHERE name = ANY($1::text[])",
                                   names, paused)
                out = list(dict.fromkeys(names))
            else:
                out = [r[0] for r in await conn.fetch("UPDATE queuectl_groups SET paused = $1 RETURNING name", paused)]
            await self.notify(conn, "queuectl_config", "groups")  # type: ignore[attr-defined]
            if not paused:
                await self.notify(conn, "queuectl_wake", "")  # type: ignore[attr-defined]
            await self._audited(conn, ev.Paused(out, paused, audit.actor.get()))  # type: ignore[attr-defined]
        return out

    async def groups(self) -> list[GroupInfo]:
        got = await self.db.fetch(
            "SELECT g.name, g.parallel, g.paused, t.state, t.n FROM queuectl_groups g LEFT JOIN "
            "(SELECT grp, state, count(*)::int AS n FROM queuectl_jobs GROUP BY grp, state) t ON t.grp = g.name "
            "ORDER BY g.name <> 'default', g.name")
        out: dict[str, tuple[int, bool, dict[str, int]]] = {}
        for name, parallel, paused, state, n in got:
            if name not in out:
                out[name] = (parallel, paused, dict.fromkeys(STATES, 0))
            if state is not None:
                out[name][2][state] = n
        return [GroupInfo(name, p, z, jobs, jobs["processing"]) for name, (p, z, jobs) in out.items()]
