"""The append-only journal: framing, group commit and replay.

File layout::

    header   b"QCTLJRN1" + generation (8 random bytes)
    record   length (u32) | crc32 (u32) | seq (u64) | payload (msgpack event)

The crc covers the generation, the sequence number and the payload, so bytes
left over from another file can never pass as a record of this one.  Records
are written with `os.write` on an O_APPEND descriptor the moment they are
made; one `fdatasync`, run in a thread, then covers every record written
during a loop turn (group commit).  A caller awaits the commit before it
acknowledges anything.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import struct
import zlib
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor

from . import events as ev

log = logging.getLogger("queuectld.journal")

MAGIC = b"QCTLJRN1"
FILE_HEADER = len(MAGIC) + 8
REC = struct.Struct(">IIQ")
MAX_RECORD = 1 << 30


class JournalError(Exception):
    """The journal cannot be used; the message names the file and offset."""


class DiskFull(JournalError):
    """A write failed for lack of space; nothing was written."""


class SyncFailed(JournalError):
    """fdatasync failed: what was written may not be on disk, so nothing more is acknowledged."""


def _seed(generation: bytes) -> int:
    return zlib.crc32(generation)


def _crc(seed: int, seq: int, payload: bytes | memoryview) -> int:
    return zlib.crc32(payload, zlib.crc32(seq.to_bytes(8, "big"), seed))


def scan(path: str) -> tuple[bytes, list[ev.Event], int, int, int]:
    """Read a journal file.

    Returns (generation, events, last seq, end of the last good record, file size).
    Raises JournalError when the header is unreadable.
    """
    with open(path, "rb") as f:
        data = f.read()
    if len(data) < FILE_HEADER or data[: len(MAGIC)] != MAGIC:
        raise JournalError(f"{path}: not a queuectl journal (bad header)")
    generation = data[len(MAGIC) : FILE_HEADER]
    seed = _seed(generation)
    events: list[ev.Event] = []
    decode = ev.decoder.decode
    pos, seq, size = FILE_HEADER, 0, len(data)
    view = memoryview(data)
    while pos + REC.size <= size:
        length, crc, rseq = REC.unpack_from(data, pos)
        end = pos + REC.size + length
        if length > MAX_RECORD or end > size or rseq != seq + 1:
            break
        payload = view[pos + REC.size : end]
        if _crc(seed, rseq, payload) != crc:
            break
        try:
            events.append(decode(payload))
        except Exception as e:  # a record that passed its crc but does not decode
            raise JournalError(f"{path}: record {rseq} at offset {pos} does not decode: {e}") from None
        pos, seq = end, rseq
    return generation, events, seq, pos, size


class Journal:
    """Owner of the journal file: the only code that writes it."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.fd = -1
        self.seq = 0
        self.size = 0
        self._seed = 0
        self._waiters: list[asyncio.Future[None]] = []
        self._sync_scheduled = False
        self._syncing = False
        self._unsynced = False
        self._failed: JournalError | None = None
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="journal-sync")
        self._loop: asyncio.AbstractEventLoop | None = None
        self.on_fatal: list[object] = []

    def open(self) -> Iterator[ev.Event]:
        """Replay the file (creating it if new) and leave it open for appending."""
        if not os.path.exists(self.path):
            self._create()
            return iter(())
        generation, events, seq, good_end, size = scan(self.path)
        if good_end < size:
            log.warning(
                "journal %s: dropped a torn or unreadable tail of %d bytes at offset %d (after record %d)",
                self.path, size - good_end, good_end, seq,
            )
            with open(self.path, "r+b") as f:
                f.truncate(good_end)
                os.fsync(f.fileno())
        self._seed = _seed(generation)
        self.seq, self.size = seq, good_end
        self.fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CLOEXEC)
        return iter(events)

    def _create(self) -> None:
        generation = os.urandom(8)
        tmp = self.path + ".new"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
        try:
            os.write(fd, MAGIC + generation)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.rename(tmp, self.path)
        _fsync_dir(os.path.dirname(self.path))
        self._seed = _seed(generation)
        self.seq, self.size = 0, FILE_HEADER
        self.fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CLOEXEC)

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
        self._executor.shutdown(wait=True)

    # -- appending ----------------------------------------------------------

    def write(self, events: Iterable[ev.Event]) -> None:
        """Append records now, all or none; durable at the next commit."""
        if self._failed is not None:
            raise self._failed
        parts = []
        seq, seed, encode = self.seq, self._seed, ev.encoder.encode
        for event in events:
            payload = encode(event)
            seq += 1
            parts.append(REC.pack(len(payload), _crc(seed, seq, payload), seq))
            parts.append(payload)
        buf = b"".join(parts)
        try:
            written = os.write(self.fd, buf)
            if written != len(buf):
                raise OSError(errno.ENOSPC, "short write")
        except OSError as e:
            self._undo_write()
            if e.errno in (errno.ENOSPC, errno.EDQUOT):
                raise DiskFull("disk full: the journal could not be written; nothing was changed") from None
            raise self._fail(f"cannot write {self.path}: {e.strerror}") from None
        self.seq = seq
        self.size += len(buf)
        self._unsynced = True
        self._schedule_sync()

    def _undo_write(self) -> None:
        try:
            os.ftruncate(self.fd, self.size)
        except OSError as e:
            raise self._fail(f"cannot truncate {self.path} after a failed write: {e.strerror}") from None

    def commit(self) -> asyncio.Future[None]:
        """A future that resolves once everything written so far is on disk."""
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[None] = loop.create_future()
        if self._failed is not None:
            fut.set_exception(self._failed)
            return fut
        self._waiters.append(fut)
        self._schedule_sync()
        return fut

    async def append(self, events: Iterable[ev.Event]) -> None:
        self.write(events)
        await self.commit()

    def _schedule_sync(self) -> None:
        if not self._sync_scheduled and not self._syncing:
            self._sync_scheduled = True
            self._loop = self._loop or asyncio.get_running_loop()
            self._loop.call_soon(self._start_sync)

    def _start_sync(self) -> None:
        self._sync_scheduled = False
        if self._syncing or self._failed is not None:
            return
        self._syncing = True
        self._unsynced = False
        waiters, self._waiters = self._waiters, []
        assert self._loop is not None
        fut = self._loop.run_in_executor(self._executor, os.fdatasync, self.fd)
        fut.add_done_callback(lambda f: self._synced(f, waiters))

    def _synced(self, f: asyncio.Future[None], waiters: list[asyncio.Future[None]]) -> None:
        self._syncing = False
        exc = f.exception()
        if exc is not None:
            err = self._fail(f"fdatasync of {self.path} failed: {exc}")
            for w in waiters + self._waiters:
                if not w.done():
                    w.set_exception(err)
            self._waiters = []
            return
        for w in waiters:
            if not w.done():
                w.set_result(None)
        if self._waiters or self._unsynced:
            self._schedule_sync()

    def _fail(self, message: str) -> SyncFailed:
        """After a failed sync or write nothing more may be acknowledged: the daemon must exit."""
        if self._failed is None:
            self._failed = SyncFailed(message)
            log.critical("%s; refusing further writes, the daemon will exit", message)
            for callback in self.on_fatal:
                callback(self._failed)  # type: ignore[operator]
        assert isinstance(self._failed, SyncFailed)
        return self._failed


def _fsync_dir(path: str) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
