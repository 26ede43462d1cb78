"""The journal's files: their format, reading and checking them, and writing a file durably.

Every file starts with a magic string, a random generation and the
sequence number it follows; every record is::

    length (u32) | crc32 (u32) | seq (u64) | payload (msgpack event)

The crc covers the file's generation, the sequence number and the payload,
and sequence numbers run on without a gap, so stale bytes from another file
or an older generation never replay.
"""

from __future__ import annotations

import os
import re
import struct
import zlib

import msgspec

from . import events as ev
from .store import Full, StoreError

LOG_MAGIC = b"QCTLLOG1"
SNAP_MAGIC = b"QCTLSNP5"  # 5: jobs have scheduling fields; 4: a group; 3: NewJob order, `Running` records
# Older snapshot formats, read and upgraded.
LEGACY_SNAPSHOTS = {b"QCTLSNP4": ev.decoder4, b"QCTLSNP3": ev.decoder3}
MANIFEST_MAGIC = b"QCTLMAN1"
HEADER = struct.Struct(">8s8sQ")  # magic, generation, seq the file follows
REC = struct.Struct(">IIQ")
MAX_RECORD = 1 << 30
STATS_FILE = "stats"  # the run stats kept beside the journal (see queuectld.stats); not part of the state
FILE_NAME = re.compile(r"^(snap|log)-(\d+)$")


class JournalError(StoreError):
    """The journal cannot be used as it is; the message names the file and offset."""


class DiskFull(JournalError, Full):
    """A write failed for lack of space; nothing was written."""


class SyncFailed(JournalError):
    """A write or fdatasync failed: nothing more is acknowledged, the daemon must exit."""


class Manifest(msgspec.Struct, frozen=True):
    snapshot: str | None
    logs: list[str]
    next_file: int


def file_seed(generation: bytes) -> int:
    return zlib.crc32(generation)


def record_crc(seed: int, seq: int, payload: bytes | memoryview) -> int:
    return zlib.crc32(payload, zlib.crc32(seq.to_bytes(8, "big"), seed))


def encode_records(events: list[ev.Event], seed: int, seq: int) -> tuple[bytes, int]:
    """Frame events as records after `seq`; returns the bytes and the last seq."""
    parts = []
    encode = ev.encoder.encode
    for event in events:
        payload = encode(event)
        seq += 1
        parts.append(REC.pack(len(payload), record_crc(seed, seq, payload), seq))
        parts.append(payload)
    return b"".join(parts), seq


class FileScan:
    """What reading one journal file found."""

    def __init__(self, path: str, magic: bytes, salvage: bool = False, after_seq: int = 0) -> None:
        self.path = path
        with open(path, "rb") as f:
            data = f.read()
        self.size = len(data)
        if len(data) < HEADER.size:
            raise JournalError(f"{path}: too short for a journal file header ({len(data)} bytes)")
        got_magic, self.generation, self.base_seq = HEADER.unpack_from(data)
        legacy = LEGACY_SNAPSHOTS.get(got_magic) if magic == SNAP_MAGIC else None
        if got_magic != magic and legacy is None:
            if got_magic[:7] == magic[:7]:
                raise JournalError(f"{path}: written by another version of queuectl (format {got_magic[7:].decode()}, "
                                   f"this one reads {magic[7:].decode()})")
            raise JournalError(f"{path}: not a queuectl {magic[4:7].decode().lower()} file (bad header)")
        self.events: list[ev.Replayed] = []
        self.dropped: list[tuple[int, int]] = []  # (offset, bytes) skipped by salvage
        self.bad_at: int | None = None  # first bad record, when not salvaging
        self.valid_after_bad = False
        seed = file_seed(self.generation)
        pos, seq = HEADER.size, self.base_seq
        while pos < len(data):
            rec = record_at(data, pos, seed, seq + 1 if not salvage else None)
            if rec is not None:
                end, rseq, payload = rec
                try:
                    if rseq > after_seq:  # salvage: a log older than the snapshot
                        self.events.append(ev.interned(ev.upgrade(legacy.decode(payload)) if legacy is not None
                                                       else ev.decoder.decode(payload)))
                except msgspec.DecodeError as e:
                    raise JournalError(f"{path}: record {rseq} at offset {pos} passed its checksum but "
                                       f"does not decode: {e}") from None
                pos, seq = end, rseq
                continue
            nxt = next_record(data, pos + 1, seed, seq)
            if salvage:
                stop = len(data) if nxt is None else nxt
                self.dropped.append((pos, stop - pos))
                pos = stop
                continue
            self.bad_at = pos
            self.valid_after_bad = nxt is not None
            break
        self.last_seq = seq
        self.good_end = pos if self.bad_at is None else self.bad_at


def record_at(data: bytes, pos: int, seed: int, want_seq: int | None) -> tuple[int, int, memoryview] | None:
    """The record at `pos` if it is whole and checks out (with seq `want_seq` unless None)."""
    if pos + REC.size > len(data):
        return None
    length, crc, seq = REC.unpack_from(data, pos)
    end = pos + REC.size + length
    if length > MAX_RECORD or end > len(data) or (want_seq is not None and seq != want_seq) or seq == 0:
        return None
    payload = memoryview(data)[pos + REC.size : end]
    if record_crc(seed, seq, payload) != crc:
        return None
    return end, seq, payload


def next_record(data: bytes, start: int, seed: int, after_seq: int) -> int | None:
    """The offset of the next valid record with a seq above `after_seq`, searching byte by byte."""
    limit = len(data) - REC.size
    for pos in range(start, limit + 1):
        rec = record_at(data, pos, seed, None)
        if rec is not None and rec[1] > after_seq:
            return pos
    return None


def fsync_dir(path: str) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_file(path: str, data: bytes) -> None:
    """Write a whole new file durably: the data and its directory entry."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        os.fsync(fd)
    finally:
        os.close(fd)


def guess_manifest(files: list[str]) -> Manifest:
    """For salvage without a usable MANIFEST: the newest snapshot and every log, in order.

    Replay skips log records the snapshot already holds.
    """
    numbered = sorted((int(m.group(2)), m.group(1), n) for n in files if (m := FILE_NAME.match(n)))
    snaps = [name for _, kind, name in numbered if kind == "snap"]
    logs = [name for _, kind, name in numbered if kind == "log"]
    return Manifest(snaps[-1] if snaps else None, logs, numbered[-1][0] + 1 if numbered else 1)
