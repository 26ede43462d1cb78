"""The stores the contract suite runs against: each is opened, closed and reopened on the same state."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from queuectld.journal_store import JournalStore
from queuectld.store import Store

Opener = Callable[[], Awaitable[Store]]


@pytest.fixture(params=["journal", "postgresql"])
async def open_store(request: pytest.FixtureRequest, tmp_path: os.PathLike[str]) -> AsyncIterator[Opener]:
    """Opens a store on one state: a second call while the first is open is a restart after a crash
    (for PostgreSQL: the same node name starting again, under a new node id)."""
    opened: list[Store] = []
    url = request.getfixturevalue("pg_database") if request.param == "postgresql" else None

    async def opener() -> Store:
        if url is not None:
            from queuectld.pg.store import PgStore

            store: Store = PgStore(url, node="node-a")
            await store.open()
            opened.append(store)
            return store
        store = JournalStore(os.path.join(tmp_path, "journal"), node="node-a")
        await store.open()
        opened.append(store)
        return store

    yield opener
    for store in opened:
        await store.close()


@pytest.fixture
async def store(open_store: Opener) -> Store:
    return await open_store()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> object:
    """A store that does not offer an operation yet refuses it with one line: the test is an expected failure
    until it does (the line says which), not a pass."""
    from queuectld.pg import missing

    missing.USED.clear()
    try:
        return (yield)
    except Exception:
        if missing.USED and "[postgresql]" in item.name:
            pytest.xfail(f"the PostgreSQL store has no {missing.USED[0]} yet")
        raise
