"""Output capture keeps the head and the tail of a stream within its limit."""

from __future__ import annotations

import os

from queuectld.capture import Capture


def _capture(tmp: str, data: bytes, limit: int, piece: int) -> bytes:
    r, w = os.pipe()
    os.close(w)
    path = os.path.join(tmp, f"out-{len(data)}-{piece}")
    cap = Capture(r, path, limit)
    for i in range(0, len(data), piece):
        cap.feed(data[i : i + piece])
    cap.close()
    if not os.path.exists(path):
        return b""
    with open(path, "rb") as f:
        return f.read()


def test_head_and_tail_are_kept_and_the_gap_is_reported(tmp_path: os.PathLike[str]) -> None:
    data = b"".join(b"%05d\n" % i for i in range(10_000))
    for piece in (1, 777, 4096, len(data)):
        out = _capture(str(tmp_path), data, 1000, piece)
        assert out.startswith(data[:500]) and out.endswith(data[-500:]), piece
        assert f"[queuectl: {len(data) - 1000} bytes of output omitted]".encode() in out


def test_output_within_the_limit_is_kept_whole(tmp_path: os.PathLike[str]) -> None:
    assert _capture(str(tmp_path), b"x" * 1000, 1000, 7) == b"x" * 1000
    assert _capture(str(tmp_path), b"", 1000, 7) == b""
