"""The stores the contract suite runs against: each is opened, closed and reopened on the same state."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from queuectld.journal_store import JournalStore
from queuectld.store import Store

Opener = Callable[[], Awaitable[Store]]


@pytest.fixture(params=["journal"])
async def open_store(request: pytest.FixtureRequest, tmp_path: os.PathLike[str]) -> AsyncIterator[Opener]:
    """Opens a store on one state: a second call while the first is open is a restart after a crash."""
    opened: list[Store] = []

    async def opener() -> Store:
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
