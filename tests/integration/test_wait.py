"""The daemon-side wait, in-process over the real socket: the set, its changes, hang-ups, many ids."""

from __future__ import annotations

import asyncio
import os
import socket
import time
from collections.abc import Callable, Iterator
from typing import Any

import msgspec
import pytest

from queuectl_client import Client, RequestFailed
from queuectl_client import protocol as p
from queuectld.daemon import Daemon

Frame = p.WaitSet | p.WaitChanges


async def until(predicate: Callable[[], Any], what: str, timeout: float = 10.0) -> None:
    """Poll `predicate` on the daemon's loop until it is true; fail after `timeout` s."""
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out after {timeout} s waiting for {what}"
        await asyncio.sleep(0.01)


def states(frames: list[Frame]) -> dict[str, str]:
    seen: dict[str, str] = {}
    for f in frames:
        seen.update((j.id, j.state) for j in f.jobs)
    return seen


def waiters(d: Daemon) -> int:
    return sum(1 for listener in d.bus.listeners if type(listener).__name__ == "Watch")


async def test_a_wait_sends_its_set_then_replies_when_the_last_job_ends(daemon: Daemon, home: str) -> None:
    c = Client(home, autostart=False)
    other = Client(home, autostart=False)
    try:
        jobs = [{"command": "true"}, {"command": "exit 3", "max_retries": 0}, {"command": "true", "delay": 3600}]
        a, b, later = await asyncio.to_thread(c.enqueue_many, jobs)
        frames = c.wait([a, b, a])
        first: p.WaitSet = await asyncio.to_thread(next, frames)  # type: ignore[arg-type]
        assert first == p.WaitSet([p.WaitedJob(a, "pending"), p.WaitedJob(b, "pending")], False)
        assert waiters(daemon) == 1
        # The waiting connection holds no other client up.
        assert (await asyncio.to_thread(other.status)).jobs["pending"] == 3
        await asyncio.to_thread(other.worker_start, 2)
        rest = await asyncio.to_thread(list, frames)
        assert rest[-1].done and not rest[-1].timed_out  # type: ignore[union-attr]
        assert states(rest) == {a: "completed", b: "dead"}
        assert waiters(daemon) == 0 and daemon.store.queue.get(later).state == "pending"
        # The connection goes on as before.
        assert (await asyncio.to_thread(c.show, a)).state == "completed"
    finally:
        c.close()
        other.close()


async def test_a_client_that_hangs_up_ends_its_wait(daemon: Daemon, home: str) -> None:
    c = Client(home, autostart=False)
    (job,) = await asyncio.to_thread(c.enqueue_many, [{"command": "true"}])
    frames = c.wait([job])
    await asyncio.to_thread(next, frames)
    assert waiters(daemon) == 1 and len(daemon.server.connections) == 1  # type: ignore[union-attr]
    c.close()
    await until(lambda: waiters(daemon) == 0, "the wait to end")
    await until(lambda: not daemon.server.connections, "the connection to close")  # type: ignore[union-attr]
    # Leaving the loop early hangs up too.
    c = Client(home, autostart=False)
    frames = c.wait([job])
    await asyncio.to_thread(next, frames)
    frames.close()  # type: ignore[attr-defined]
    await until(lambda: waiters(daemon) == 0, "the wait to end")
    assert c._sock is None


async def test_a_job_deleted_mid_wait_ends_it_as_deleted(daemon: Daemon, home: str) -> None:
    c = Client(home, autostart=False)
    other = Client(home, autostart=False)
    try:
        ids = await asyncio.to_thread(c.enqueue_many, [{"command": "true", "delay": 3600}] * 2)
        frames = c.wait(ids, progress=True)
        seen = [await asyncio.to_thread(next, frames)]
        await asyncio.to_thread(other.delete, ids[0])
        while states(seen)[ids[0]] != "deleted":  # progress frames come every 0.2 s
            seen.append(await asyncio.to_thread(next, frames))
        assert not seen[-1].done and waiters(daemon) == 1  # type: ignore[union-attr]  # the other is still open
        await asyncio.to_thread(other.delete, ids[1])
        seen += await asyncio.to_thread(list, frames)
        assert states(seen) == {ids[0]: "deleted", ids[1]: "deleted"} and seen[-1].done  # type: ignore[union-attr]
    finally:
        c.close()
        other.close()


async def test_a_wait_times_out_with_each_jobs_latest_state(daemon: Daemon, home: str) -> None:
    def go() -> list[Frame]:
        with Client(home, autostart=False) as c:
            (job,) = c.enqueue_many([{"command": "true", "delay": 3600}])
            return list(c.wait([job], timeout=0.2, progress=True))

    frames = await asyncio.to_thread(go)
    assert isinstance(frames[0], p.WaitSet) and frames[-1].done and frames[-1].timed_out  # type: ignore[union-attr]
    assert set(states(frames).values()) == {"pending"}


async def test_state_and_every_select_the_set_when_the_wait_begins(daemon: Daemon, home: str) -> None:
    def go() -> tuple[list[str], list[Frame], list[Frame], list[Frame]]:
        with Client(home, autostart=False) as c:
            ids = c.enqueue_many([{"command": "true", "delay": 3600}] * 3)
            c.delete(ids[1])
            by_state = list(c.wait(state="pending", timeout=0))
            every = list(c.wait(every=True, timeout=0))
            nothing = list(c.wait(state="completed"))
            return ids, by_state, every, nothing

    ids, by_state, every, nothing = await asyncio.to_thread(go)
    assert by_state[-1].timed_out and every[-1].timed_out  # type: ignore[union-attr]
    assert states(by_state) == states(every) == {ids[0]: "pending", ids[2]: "pending"}
    assert list(states(every)) == [ids[0], ids[2]]
    assert states(nothing) == {} and nothing[-1].done and not nothing[-1].timed_out  # type: ignore[union-attr]


async def test_unknown_ids_are_refused_or_with_resume_count_as_deleted(daemon: Daemon, home: str) -> None:
    def go() -> tuple[str, dict[str, str]]:
        with Client(home, autostart=False) as c:
            try:
                list(c.wait(["nope"]))
            except RequestFailed as e:
                refused = f"{e.code}: {e.message}"
            # More ids than one frame holds: sent in several, answered once.
            many = [f"gone-{i}" for i in range(250_000)]
            frames = list(c.wait(many, resume=True))
            assert sum(isinstance(f, p.WaitSet) for f in frames) == 25
            return refused, states(frames)

    refused, seen = await asyncio.to_thread(go)
    assert refused == "not_found: no job with id 'nope'"
    assert len(seen) == 250_000 and set(seen.values()) == {"deleted"} and next(iter(seen)) == "gone-0"


def _frames(home: str, *requests: p.Wait) -> Iterator[p.Message]:
    with socket.socket(socket.AF_UNIX) as s:
        s.settimeout(10)
        s.connect(os.path.join(home, "queuectld.sock"))
        s.sendall(b"".join(p.frame(msgspec.msgpack.encode(m)) for m in (p.Hello(), *requests)))
        f = s.makefile("rb")
        while header := f.read(4):
            yield msgspec.msgpack.decode(f.read(int.from_bytes(header, "big")), type=p.Reply)


async def test_staged_ids_make_one_wait_and_too_many_are_refused_at_the_last_frame(
    daemon: Daemon, home: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    def go() -> tuple[list[p.Message], list[p.Message]]:
        with Client(home, autostart=False) as c:
            a, b, cc = c.enqueue_many([{"command": "true", "delay": 3600}] * 3)
        staged = _frames(home, p.Wait([a], more=True), p.Wait([b], more=True), p.Wait([cc], timeout=0))
        one = [next(staged) for _ in range(3)]
        staged.close()
        monkeypatch.setattr("queuectld.waits.MAX_WAIT_IDS", 2)
        over = _frames(home, p.Wait([a, b], more=True), p.Wait([cc], more=True), p.Wait([], timeout=0), p.Status())
        refused = [next(over) for _ in range(3)]
        over.close()
        return one, refused

    one, refused = await asyncio.to_thread(go)
    assert isinstance(one[0], p.Hello) and [j.state for j in one[1].jobs] == ["pending"] * 3  # type: ignore[attr-defined]
    assert one[2].done and one[2].timed_out  # type: ignore[attr-defined]
    assert isinstance(refused[1], p.Error) and "at most 2 jobs" in refused[1].message
    assert isinstance(refused[2], p.StatusReply)  # one reply per request: the connection stays in step
