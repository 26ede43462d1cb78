"""Journal framing and replay on real files."""

from __future__ import annotations

import asyncio
import os

import pytest

from queuectld import events as ev
from queuectld.journal import FILE_HEADER, REC, Journal, JournalError, scan


def _events(n: int) -> list[ev.Event]:
    return [ev.Added(float(i), [ev.NewJob(f"j{i}", "true", 3, 0, None, None)]) for i in range(n)]


async def _write(path: str, events: list[ev.Event]) -> Journal:
    j = Journal(path)
    list(j.open())
    for e in events:
        j.write([e])
    await j.commit()
    return j


async def test_round_trip_and_sequence(tmp_path: os.PathLike[str]) -> None:
    path = os.path.join(str(tmp_path), "journal")
    j = await _write(path, _events(5))
    j.close()
    j2 = Journal(path)
    assert list(j2.open()) == _events(5)
    assert j2.seq == 5
    j2.write(_events(1))
    await j2.commit()
    j2.close()
    _, events, seq, end, size = scan(path)
    assert len(events) == 6 and seq == 6 and end == size


async def test_every_torn_tail_is_cut_back_to_the_last_whole_record(tmp_path: os.PathLike[str]) -> None:
    path = os.path.join(str(tmp_path), "journal")
    (await _write(path, _events(3))).close()
    end_of_two = _end_of(path, 2)
    with open(path, "rb") as f:
        full = f.read()
    for cut in range(end_of_two, len(full)):
        with open(path, "wb") as f:
            f.write(full[:cut])
        j = Journal(path)
        assert len(list(j.open())) == 2, cut
        j.close()
        assert os.path.getsize(path) == end_of_two


def _end_of(path: str, records: int) -> int:
    """The offset just past the first `records` records."""
    with open(path, "rb") as f:
        data = f.read()
    pos = FILE_HEADER
    for _ in range(records):
        length, _, _ = REC.unpack_from(data, pos)
        pos += REC.size + length
    return pos


async def test_records_from_another_generation_never_replay(tmp_path: os.PathLike[str]) -> None:
    a = os.path.join(str(tmp_path), "a")
    b = os.path.join(str(tmp_path), "b")
    (await _write(a, _events(2))).close()
    (await _write(b, _events(1))).close()
    # Graft a's second record onto b: same sequence number, valid crc for a, not for b.
    with open(a, "rb") as f:
        data_a = f.read()
    with open(b, "ab") as f:
        f.write(data_a[_end_of(a, 1) :])
    _, events, seq, _, _ = scan(b)
    assert len(events) == 1 and seq == 1


def test_a_file_that_is_not_a_journal_is_refused(tmp_path: os.PathLike[str]) -> None:
    path = os.path.join(str(tmp_path), "journal")
    with open(path, "wb") as f:
        f.write(b"something else entirely")
    with pytest.raises(JournalError, match="not a queuectl journal"):
        list(Journal(path).open())


async def test_many_records_written_at_once_all_replay(tmp_path: os.PathLike[str]) -> None:
    path = os.path.join(str(tmp_path), "journal")
    j = await _write(path, [])
    j.write(_events(100))
    await asyncio.wait_for(j.commit(), 5)
    j.close()
    assert len(scan(path)[1]) == 100
