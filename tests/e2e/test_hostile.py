"""Hostile input on the socket: fuzzed frames, connection floods, idle and slow clients."""

from __future__ import annotations

import os
import socket
import struct
from collections.abc import Callable

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from queuectl_client import protocol as p
from tests.conftest import Env, rss_kib, wait_for

Report = Callable[[str, object], None]

HELLO = p.frame(msgspec.msgpack.encode(p.Hello()))
# Every request type except WorkerStart: with the pool at 0, nothing the fuzzer enqueues ever runs.
TAGS = [t.__name__ for t in p.Request.__args__ if t is not p.WorkerStart]  # type: ignore[attr-defined]

msgpack_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1) | st.floats() | st.text(max_size=20)
    | st.binary(max_size=20),
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=8), inner, max_size=5),
    max_leaves=20,
)
requests = st.builds(
    lambda tag, fields: {"type": tag, **fields},
    st.sampled_from(TAGS),
    st.dictionaries(st.sampled_from(["jobs", "id", "ids", "key", "value", "count", "state", "limit", "more",
                                     "all", "follow", "page_size", "x"]), msgpack_values, max_size=4),
)
frames = st.one_of(
    st.binary(max_size=64).map(p.frame),  # random bodies
    requests.map(lambda r: p.frame(msgspec.msgpack.encode(r))),  # plausible requests with wrong values
    st.binary(min_size=1, max_size=64),  # raw bytes, no framing
    st.integers(p.MAX_FRAME + 1, 2**32 - 1).map(lambda n: struct.pack(">I", n)),  # huge length prefixes
    st.integers(1, 1000).map(lambda n: struct.pack(">I", n + 10) + b"\x00" * n),  # truncated frames
    st.sampled_from([  # msgpack bombs: containers that claim far more than the frame holds
        p.frame(b"\xdd\xff\xff\xff\xff"), p.frame(b"\xdf\xff\xff\xff\xff"), p.frame(b"\xc6\xff\xff\xff\xff"),
        p.frame(b"\x91" * 5000 + b"\xc0"),
    ]),
)


def _exchange(path: str, payload: bytes) -> None:
    with socket.socket(socket.AF_UNIX) as s:
        s.settimeout(10)
        s.connect(path)
        s.sendall(HELLO + payload)
        s.shutdown(socket.SHUT_WR)
        while s.recv(65536):  # read every reply until the daemon closes
            pass


def test_fuzzed_frames_never_hurt_the_daemon(env: Env, report: Report) -> None:
    daemon = env.start_daemon()
    sock = os.path.join(env.home, "queuectld.sock")
    sent = 0

    @settings(max_examples=1200, deadline=None, suppress_health_check=list(HealthCheck), database=None)
    @given(st.lists(frames, min_size=1, max_size=4))
    def fuzz(batch: list[bytes]) -> None:
        nonlocal sent
        sent += len(batch)
        _exchange(sock, b"".join(batch))

    _exchange(sock, p.frame(b"\xc1"))  # warm up before measuring memory
    rss_before = rss_kib(daemon.pid)
    fuzz()
    rss_after = rss_kib(daemon.pid)
    assert daemon.poll() is None
    assert env.q("status").code == 0
    assert "Traceback" not in env.log() and "Unhandled" not in env.log()
    assert rss_after - rss_before < 20 * 1024, (rss_before, rss_after)
    report("fuzzed frames sent", sent)
    report("daemon RSS growth over the fuzzing", f"{rss_after - rss_before} KiB")


def test_a_connection_flood_hits_the_cap_and_others_are_served_again(env: Env) -> None:
    import resource

    from queuectld import server

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard < 2500:
        pytest.skip(f"needs 2500 descriptors, the hard limit is {hard}")
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    env.start_daemon()
    sock = os.path.join(env.home, "queuectld.sock")
    flood = []
    try:
        for _ in range(server.MAX_CONNECTIONS + 100):
            s = socket.socket(socket.AF_UNIX)
            s.connect(sock)  # blocking: waits for room in the listen backlog
            s.settimeout(20)
            flood.append(s)
        # The ones past the cap are told so and closed.
        refused = 0
        for s in flood[-50:]:
            data = s.recv(4096)
            if b"too many connections" in data:
                refused += 1
        assert refused == 50
        # The idle ones never said Hello: the daemon closes them after its hello timeout.
        wait_for(lambda: flood[0].recv(4096) == b"", 15, "the hello timeout to close an idle connection")
        wait_for(lambda: env.q("status").code == 0, 15, "a normal client to be served again")
    finally:
        for s in flood:
            s.close()
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_a_slow_body_times_out_without_stalling_others(env: Env) -> None:
    env.start_daemon()
    sock = os.path.join(env.home, "queuectld.sock")
    with socket.socket(socket.AF_UNIX) as slow:
        slow.settimeout(20)
        slow.connect(sock)
        slow.sendall(HELLO + struct.pack(">I", 1000) + b"\x80")  # promises 1000 bytes, sends 1
        assert env.q("status").code == 0  # others are served meanwhile
        slow.recv(4096)  # the Hello reply
        assert slow.recv(4096) == b""  # closed once the body timeout passes
