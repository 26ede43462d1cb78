"""The CLI's quick-path codec against msgspec, the protocol's codec."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from queuectl_client import minipack
from queuectl_client import protocol as p

scalars = (
    st.none() | st.booleans() | st.integers(min_value=-(1 << 63), max_value=(1 << 64) - 1)
    | st.floats(allow_nan=False) | st.text() | st.binary()
)
values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=20) | st.dictionaries(st.text(max_size=10), inner, max_size=20),
    max_leaves=60,
)


@settings(max_examples=400, deadline=None)
@given(values)
def test_encodes_byte_for_byte_as_msgspec_and_decodes_what_msgspec_writes(value: Any) -> None:
    data = msgspec.msgpack.encode(value)
    assert minipack.packb(value) == data
    assert minipack.unpackb(data) == value


def test_decodes_every_reply_the_quick_path_reads() -> None:
    reply = p.StatusReply({"pending": 3, "dead": 0}, p.Workers(4, 1), 1234, "0.1.0", 1.75e9)
    assert minipack.unpackb(msgspec.msgpack.encode(reply)) == {
        "type": "StatusReply", "jobs": {"pending": 3, "dead": 0}, "workers": {"type": "Workers", "configured": 4,
                                                                                "busy": 1},
        "pid": 1234, "version": "0.1.0", "started_at": 1.75e9,
    }
    assert minipack.unpackb(msgspec.msgpack.encode(p.Error("invalid", "bad"))) == {
        "type": "Error", "code": "invalid", "message": "bad"}


def test_the_daemon_reads_a_quick_enqueue_as_the_full_client_sends_it() -> None:
    quick = minipack.packb({"type": "Enqueue", "jobs": [{"command": "echo hi", "max_retries": 2}], "more": False,
                            "id_prefix": "abcd1234", "cwd": "/tmp"})
    full = p.Enqueue([p.JobSpec(command="echo hi", max_retries=2)], False, "abcd1234", "/tmp")
    assert msgspec.msgpack.Decoder(p.Request).decode(quick) == full


@pytest.mark.parametrize("data", [b"", b"\x92\x01", b"\xa5abc", b"\xc1", b"\xd4\x00\x00", b"\x01\x02", b"\xa2\xff\xfe"])
def test_bad_input_is_a_value_error(data: bytes) -> None:
    with pytest.raises(ValueError):
        minipack.unpackb(data)


@pytest.mark.parametrize("value", [1 << 64, -(1 << 63) - 1, object(), {1.5j}])
def test_what_it_cannot_encode_is_a_value_error(value: Any) -> None:
    with pytest.raises(ValueError):
        minipack.packb(value)
