"""An in-process daemon over its real socket: group commit, acknowledgement, framing."""

from __future__ import annotations

import asyncio
import os
import socket
import threading

import msgspec
import pytest

from queuectl_client import Client, RequestFailed
from queuectl_client import protocol as p
from queuectld.daemon import Daemon


def _raw(home: str) -> socket.socket:
    s = socket.socket(socket.AF_UNIX)
    s.settimeout(5)
    s.connect(os.path.join(home, "queuectld.sock"))
    return s


def _recv(s: socket.socket) -> p.Message:
    header = s.recv(4, socket.MSG_WAITALL)
    body = s.recv(int.from_bytes(header, "big"), socket.MSG_WAITALL)
    msg: p.Message = msgspec.msgpack.decode(body, type=p.Reply)
    return msg


def _send(s: socket.socket, msg: p.Message) -> None:
    s.sendall(p.frame(msgspec.msgpack.encode(msg)))


async def test_one_fsync_serves_many_concurrent_enqueues(
    daemon: Daemon, home: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = 0
    real = os.fdatasync

    def counting(fd: int) -> None:
        nonlocal calls
        calls += 1
        real(fd)

    monkeypatch.setattr(os, "fdatasync", counting)

    def enqueue_many(n: int) -> list[str]:
        with Client(home, autostart=False) as c:
            return [c.enqueue("true") for _ in range(n)]

    results = await asyncio.gather(*(asyncio.to_thread(enqueue_many, 25) for _ in range(8)))
    ids = [i for r in results for i in r]
    assert len(set(ids)) == 200 and len(daemon.store.queue) == 200
    assert daemon.store.journal.seq >= 200
    assert calls < 200, f"{calls} fsyncs for 200 acknowledged enqueues"


async def test_no_reply_before_the_record_is_synced(daemon: Daemon, home: str, monkeypatch: pytest.MonkeyPatch) -> None:
    gate = threading.Event()
    real = os.fdatasync

    def gated(fd: int) -> None:
        gate.wait(10)
        real(fd)

    monkeypatch.setattr(os, "fdatasync", gated)
    reply: list[str] = []
    t = threading.Thread(target=lambda: reply.append(Client(home, autostart=False).enqueue("true", id="held")))
    t.start()
    for _ in range(200):  # bounded: the job is applied long before 2 s
        if daemon.store.queue.find("held") is not None:
            break
        await asyncio.sleep(0.01)
    assert daemon.store.queue.find("held") is not None
    await asyncio.sleep(0.1)
    assert reply == []  # written and applied, but not yet acknowledged
    gate.set()
    await asyncio.to_thread(t.join, 10)
    assert reply == ["held"]


async def test_bad_frames_get_errors_and_the_connection_goes_on(daemon: Daemon, home: str) -> None:
    def talk() -> list[p.Message]:
        with _raw(home) as s:
            _send(s, p.Hello())
            got = [_recv(s)]
            s.sendall(p.frame(b"\xc1"))  # not msgpack
            got.append(_recv(s))
            s.sendall(p.frame(msgspec.msgpack.encode({"type": "Nope"})))
            got.append(_recv(s))
            _send(s, p.Enqueue([p.JobSpec(id="ok1", command="true")]))
            got.append(_recv(s))
            s.sendall(p.frame(msgspec.msgpack.encode({"type": "Enqueue", "jobs": [{"id": "x", "command": 5}]})))
            got.append(_recv(s))
            s.sendall((p.MAX_FRAME + 1).to_bytes(4, "big"))
            got.append(_recv(s))
            assert s.recv(1) == b""  # closed after an oversized frame
            return got

    hello, bad, unknown, ok, wrong_type, too_big = await asyncio.to_thread(talk)
    assert isinstance(hello, p.Hello) and hello.version == p.PROTOCOL_VERSION
    assert isinstance(bad, p.Error) and bad.code == "invalid"
    assert isinstance(unknown, p.Error) and unknown.code == "invalid"
    assert isinstance(ok, p.Enqueued) and ok.ids == ["ok1"]
    assert isinstance(wrong_type, p.Error) and "$.jobs[0].command" in wrong_type.message
    assert isinstance(too_big, p.Error) and "exceeds" in too_big.message
    assert [j.id for j in daemon.store.queue.iter_jobs()] == ["ok1"]


async def test_request_before_hello_is_refused(daemon: Daemon, home: str) -> None:
    def talk() -> p.Message:
        with _raw(home) as s:
            _send(s, p.Status())
            return _recv(s)

    reply = await asyncio.to_thread(talk)
    assert isinstance(reply, p.Error) and "Hello" in reply.message


async def test_multi_frame_enqueue_is_one_atomic_batch(daemon: Daemon, home: str) -> None:
    def enqueue() -> list[str]:
        with Client(home, autostart=False) as c:
            return c.enqueue_many([{"command": "true"} for _ in range(2500)], batch=1000)

    ids = await asyncio.to_thread(enqueue)
    assert len(ids) == 2500 and len(daemon.store.queue) == 2500
    # One Added record for the whole batch.
    from queuectld.journal_files import LOG_MAGIC, FileScan

    events = FileScan(os.path.join(daemon.store.journal.dir, daemon.store.journal.manifest.logs[-1]), LOG_MAGIC).events
    added = [e for e in events if type(e).__name__ == "AddedJobs"]
    assert len(added) == 1 and len(added[0].jobs) == 2500  # type: ignore[attr-defined]


async def test_list_streams_in_pages(daemon: Daemon, home: str) -> None:
    def go() -> tuple[int, int]:
        with Client(home, autostart=False) as c:
            c.enqueue_many([{"command": "true"} for _ in range(2500)])
            pages = list(c.stream(p.List(page_size=1000)))
            return len(pages), sum(len(pg.jobs) for pg in pages)  # type: ignore[attr-defined]

    assert await asyncio.to_thread(go) == (3, 2500)


async def test_enospc_on_write_refuses_then_recovers(
    daemon: Daemon, home: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The same as the tmpfs test, for machines where mounting is not possible."""
    import errno

    real = os.write
    full = True

    def write(fd: int, data: bytes) -> int:
        if full and fd == daemon.store.journal.fd:
            real(fd, bytes(data)[: len(data) // 2])  # a partial write first, as a filling disk does
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real(fd, data)

    def go() -> None:
        nonlocal full
        with Client(home, autostart=False) as c:
            c.enqueue("true", id="before")  # page cache: fine
            size = os.path.getsize(os.path.join(daemon.store.journal.dir, daemon.store.journal.manifest.logs[-1]))
            monkeypatch.setattr(os, "write", write)
            with pytest.raises(RequestFailed) as e:
                c.enqueue("true", id="refused")
            assert e.value.code == "disk_full" and "disk full" in e.value.message
            journal = daemon.store.journal
            assert os.path.getsize(os.path.join(journal.dir, journal.manifest.logs[-1])) == size
            assert [j.id for j in c.list()] == ["before"]  # reads still work
            full = False
            c.enqueue("true", id="after")

    await asyncio.to_thread(go)
    assert [j.id for j in daemon.store.queue.iter_jobs()] == ["before", "after"]


async def test_a_connection_that_says_hello_in_json_is_answered_in_json(daemon: Daemon, home: str) -> None:
    import json

    def talk() -> list[dict[str, object]]:
        def send(body: bytes) -> None:
            s.sendall(p.frame(body))

        def recv() -> dict[str, object]:
            header = s.recv(4, socket.MSG_WAITALL)
            reply: dict[str, object] = json.loads(s.recv(int.from_bytes(header, "big"), socket.MSG_WAITALL))
            return reply

        with _raw(home) as s:
            send(b'{"type": "Hello", "version": %d}' % p.PROTOCOL_VERSION)
            got = [recv()]
            send(b'{"type": "Enqueue", "jobs": [{"id": "j1", "command": "true", "run_at": 4102444800}]}')
            got.append(recv())
            send(b"{not json")
            got.append(recv())
            send(b'{"type": "Enqueue", "jobs": [{"command": "a\\u0000b"}]}')
            got.append(recv())
            send(b'{"type": "Show", "id": "j1"}')
            got.append(recv())
            send(msgspec.msgpack.encode(p.Status()))  # msgpack on a JSON connection is not JSON
            got.append(recv())
            send(b'{"type": "Status"}')
            got.append(recv())
            return got

    hello, enqueued, bad, nul, shown, mixed, status = await asyncio.to_thread(talk)
    assert hello["type"] == "Hello" and hello["version"] == p.PROTOCOL_VERSION
    assert enqueued == {"type": "Enqueued", "ids": ["j1"], "jobs": [], "created": []}
    assert bad["type"] == "Error" and bad["code"] == "invalid"
    assert nul["type"] == "Error" and "$.jobs[0].command" in str(nul["message"])
    assert shown["type"] == "JobReply" and shown["job"]["run_at"] == 4102444800.0  # type: ignore[index]
    assert mixed["type"] == "Error" and mixed["code"] == "invalid"
    assert status["type"] == "StatusReply" and status["jobs"]["pending"] == 1  # type: ignore[index]
    # A msgpack client on another connection is served as before.
    with Client(home, autostart=False) as c:
        assert (await asyncio.to_thread(c.show, "j1")).run_at == 4102444800.0


async def test_a_stop_right_after_a_start_still_tells_the_followers(daemon: Daemon) -> None:
    # The pool is stopped (size 0, nothing running) and has told so; a resize to 1 and back to 0
    # within one loop turn, before the pool's pass runs, must still tell the followers it stopped.
    assert daemon.pool is not None
    told: list[str] = []
    daemon.bus.listeners.add(lambda msg: told.append(type(msg).__name__))

    async def told_stopped() -> None:
        for _ in range(500):
            if "PoolStopped" in told:
                return
            await asyncio.sleep(0.01)
        raise AssertionError(f"the followers were not told the pool stopped: {told}")

    await daemon.store.resize(0)
    daemon.pool.resized()
    await told_stopped()
    told.clear()
    for count in (1, 0):
        await daemon.store.resize(count)
        daemon.pool.resized()
    await told_stopped()
    assert told == ["PoolStopped"]
