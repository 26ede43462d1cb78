"""An in-process daemon on its real socket, in a temp home, with the default store."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from queuectl_client.paths import resolve
from queuectld.daemon import Daemon
from queuectld.journal_store import JournalStore


@pytest.fixture
async def daemon(home: str) -> AsyncIterator[Daemon]:
    paths = resolve(home)
    d = Daemon(paths, JournalStore(paths.journal), workers=0, grace=1.0)
    await d.start()
    yield d
    await d.shutdown()
