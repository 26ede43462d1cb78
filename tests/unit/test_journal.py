"""The journal on real files: framing, replay rules, corruption, salvage, compaction."""

from __future__ import annotations

import os
import struct
from collections.abc import Callable

import pytest

from queuectl_client.protocol import JobSpec
from queuectld import events as ev
from queuectld.journal import Journal, JournalError
from queuectld.journal_files import HEADER, REC
from queuectld.planning import plan_delete
from queuectld.queue import Queue
from tests.unit.plans import plan_add, plan_end, plan_start


def _added(i: int) -> ev.Event:
    return ev.Added(float(i), [ev.NewJob(f"j{i}", "true", 3, 0, None, None)])


def _as_replayed(e: ev.Event) -> object:
    """A written event as replay gives it back (an Added comes back as AddedJobs)."""
    return ev.decoder.decode(ev.encoder.encode(e))


async def _journal(path: str, n: int, **kw: object) -> Journal:
    j = Journal(path, **kw)  # type: ignore[arg-type]
    list(j.open())
    for i in range(n):
        j.write([_added(i)])
    await j.commit()
    return j


def _replay(path: str, salvage: bool = False) -> list[ev.Event]:
    j = Journal(path, salvage=salvage)
    try:
        return list(j.open())
    finally:
        j.close()


def _log(path: str) -> str:
    logs = sorted(n for n in os.listdir(path) if n.startswith("log-"))
    return os.path.join(path, logs[-1])


def _end_of(path: str, records: int) -> int:
    """The offset just past the first `records` records of a file."""
    with open(path, "rb") as f:
        data = f.read()
    pos = HEADER.size
    for _ in range(records):
        length, _, _ = REC.unpack_from(data, pos)
        pos += REC.size + length
    return pos


@pytest.fixture
def jdir(tmp_path: os.PathLike[str]) -> str:
    return os.path.join(str(tmp_path), "journal")


async def test_round_trip_and_reopen(jdir: str) -> None:
    (await _journal(jdir, 5)).close()
    j = Journal(jdir)
    assert list(j.open()) == [_as_replayed(_added(i)) for i in range(5)]
    assert j.seq == 5
    j.write([_added(5)])
    await j.commit()
    j.close()
    assert len(_replay(jdir)) == 6


async def test_every_torn_tail_offset_is_cut_back_to_the_last_whole_record(
    jdir: str, report: Callable[[str, object], None]
) -> None:
    j = await _journal(jdir, 2)
    j.write([ev.Added(9.0, [ev.NewJob("big", "echo " + "z" * 500, 3, 0, None, None)])])
    await j.commit()
    j.close()
    log = _log(jdir)
    end_of_two = _end_of(log, 2)
    with open(log, "rb") as f:
        full = f.read()
    for cut in range(end_of_two, len(full)):
        with open(log, "wb") as f:
            f.write(full[:cut])
        assert len(_replay(jdir)) == 2, cut
        assert os.path.getsize(log) == end_of_two
    report("torn-tail offsets tried", len(full) - end_of_two)


@pytest.mark.parametrize("tail", [
    b"\x00" * 4096,  # zero-filled blocks after a power loss
    os.urandom(1000),  # garbage
    struct.pack(">IIQ", 0xFFFFFFF0, 0, 4) + b"x" * 100,  # a huge length
    struct.pack(">IIQ", 10, 0, 4) + b"short",  # a length past the end
])
async def test_garbage_tails_are_truncated(jdir: str, tail: bytes) -> None:
    (await _journal(jdir, 3)).close()
    log = _log(jdir)
    size = os.path.getsize(log)
    with open(log, "ab") as f:
        f.write(tail)
    assert len(_replay(jdir)) == 3
    assert os.path.getsize(log) == size


async def test_corruption_in_the_middle_refuses_to_start_and_salvage_keeps_the_rest(jdir: str) -> None:
    (await _journal(jdir, 10)).close()
    log = _log(jdir)
    at = _end_of(log, 4) + REC.size + 3  # inside record 5's payload
    with open(log, "r+b") as f:
        f.seek(at)
        byte = f.read(1)
        f.seek(at)
        f.write(bytes([byte[0] ^ 0xFF]))
    with pytest.raises(JournalError) as e:
        _replay(jdir)
    assert log in str(e.value) and f"offset {_end_of(log, 4)}" in str(e.value)
    assert "valid records after it" in str(e.value)
    kept = _replay(jdir, salvage=True)
    assert kept == [_as_replayed(_added(i)) for i in range(10) if i != 4]


async def test_records_from_another_generation_never_replay(tmp_path: os.PathLike[str]) -> None:
    a = os.path.join(str(tmp_path), "a")
    b = os.path.join(str(tmp_path), "b")
    (await _journal(a, 2)).close()
    (await _journal(b, 1)).close()
    # Graft a's second record onto b: the right sequence number, a valid crc for a, not for b.
    with open(_log(a), "rb") as f:
        data = f.read()
    with open(_log(b), "ab") as f:
        f.write(data[_end_of(_log(a), 1) :])
    assert len(_replay(b)) == 1


async def test_files_without_a_manifest_are_never_replaced_by_an_empty_queue(jdir: str) -> None:
    (await _journal(jdir, 2)).close()
    os.unlink(os.path.join(jdir, "MANIFEST"))
    with pytest.raises(JournalError, match="no MANIFEST"):
        _replay(jdir)
    assert len(_replay(jdir, salvage=True)) == 2


async def test_a_damaged_manifest_refuses_to_start(jdir: str) -> None:
    (await _journal(jdir, 2)).close()
    with open(os.path.join(jdir, "MANIFEST"), "r+b") as f:
        f.seek(12)
        f.write(b"\x00\x00")
    with pytest.raises(JournalError, match="damaged manifest"):
        _replay(jdir)
    assert len(_replay(jdir, salvage=True)) == 2


def _queue_with(n: int) -> Queue:
    q = Queue()
    q.apply(plan_add(q, [JobSpec(id=f"j{i}", command="true") for i in range(n)], 0.0))
    return q


async def _compacting_journal(jdir: str, q: Queue) -> Journal:
    j = Journal(jdir, compact_min=4096)
    for e in j.open():
        q.apply(e)
    j.snapshot_source = q.snapshot
    return j


async def test_compaction_keeps_the_journal_near_the_live_state(jdir: str) -> None:
    q = Queue()
    j = await _compacting_journal(jdir, q)
    live = {}
    for i in range(3000):  # churn: add, run, finish, delete most
        e1 = plan_add(q, [JobSpec(id=f"j{i}", command="echo " + "x" * 50)], float(i))
        j.write([e1])
        q.apply(e1)
        job = q.take(float(i))
        assert job is not None
        for e in (plan_start(job, float(i), 1, 0, 0),):
            j.write([e])
            q.apply(e)
        e2 = plan_end(q, job, float(i), 0, None)
        j.write([e2])
        q.apply(e2)
        if i % 10:
            e3 = plan_delete(q, [job.id], None, float(i))
            j.write([e3])
            q.apply(e3)
        else:
            live[job.id] = job.view("n")
        await j.commit()
    while j._compacting:
        await j.commit()
    await j.compact()
    j.close()
    total = sum(os.path.getsize(os.path.join(jdir, n)) for n in os.listdir(jdir))
    assert j.compactions >= 2
    assert total < 3 * j.snapshot_bytes + 8192, (total, j.snapshot_bytes)
    twin = Queue()
    for e in _replay(jdir):
        twin.apply(e)
    assert {j.id: j.view("n") for j in twin.iter_jobs()} == live
    assert sorted(os.listdir(jdir)) == ["MANIFEST", f"log-{j.manifest.next_file - 2}", j.manifest.snapshot]


async def test_a_damaged_snapshot_refuses_to_start(jdir: str) -> None:
    q = _queue_with(50)
    j = await _compacting_journal(jdir, Queue())
    j.snapshot_source = lambda: q.snapshot(chunk=10)
    await j.compact()
    j.close()
    snap = os.path.join(jdir, j.manifest.snapshot or "")
    with open(snap, "r+b") as f:
        f.seek(os.path.getsize(snap) - 100)  # inside the last chunk of jobs
        f.write(b"\xff\xff\xff")
    with pytest.raises(JournalError, match="damaged snapshot"):
        _replay(jdir)
    twin = Queue()
    for e in _replay(jdir, salvage=True):
        twin.apply(e)
    assert len(twin) == 40


def test_an_added_record_decodes_into_jobs_because_newjob_is_the_start_of_job() -> None:
    # Replay reads Added as AddedJobs from the same bytes: the two field lists must not drift apart.
    assert ev.Job.__struct_fields__[: len(ev.NewJob.__struct_fields__)] == ev.NewJob.__struct_fields__
    new = ev.NewJob("a", "echo hi", 2, 5, 1.5, 30.0, "/tmp")
    (job,) = ev.decoder.decode(ev.encoder.encode(ev.Added(1.0, [new]))).jobs
    fields = ev.NewJob.__struct_fields__
    assert isinstance(job, ev.Job)
    assert [getattr(job, f) for f in fields] == [getattr(new, f) for f in fields]
