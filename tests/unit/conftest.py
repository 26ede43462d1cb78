"""Fixtures of the unit tests."""

from __future__ import annotations

import heapq
from collections import Counter
from collections.abc import Callable, Iterator

import pytest


@pytest.fixture
def heap_ops(monkeypatch: pytest.MonkeyPatch) -> Iterator[Counter[str]]:
    """Counts the queue's heap operations: pushes and pops, and the entries each heapify covers."""
    ops: Counter[str] = Counter()

    def counted(name: str, fn: Callable[..., object]) -> Callable[..., object]:
        def call(heap: list[object], *args: object) -> object:
            ops[name] += len(heap) if name == "heapify" else 1
            return fn(heap, *args)
        return call

    for name in ("heappush", "heappop", "heapify"):
        monkeypatch.setattr(heapq, name, counted(name, getattr(heapq, name)))
    yield ops
