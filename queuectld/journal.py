"""The journal: checksummed records, group commit, replay, compaction.

The journal is a directory::

    MANIFEST     which files make up the state: a snapshot and a chain of logs
    snap-N       the live state at some sequence number
    log-N        records after it, appended

The files' format and how they are read is in `journal_files`.  See
docs/DECISIONS.md for the replay rules and the compaction steps.

Records are written with `os.write` on an O_APPEND descriptor the moment they
are made; one `fdatasync`, run in a thread, then covers every record written
during a loop turn (group commit).  A caller awaits `commit()` before it
acknowledges anything.  After a failed fdatasync nothing is acknowledged
again: the daemon exits and the next start replays (fsyncgate).
"""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import time
import zlib
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor

import msgspec

from . import events as ev
from .journal_compaction import Compaction
from .journal_files import (
    FILE_NAME,
    HEADER,
    LOG_MAGIC,
    MANIFEST_MAGIC,
    SNAP_MAGIC,
    STATS_FILE,
    DiskFull,
    FileScan,
    JournalError,
    Manifest,
    SyncFailed,
    encode_records,
    file_seed,
    fsync_dir,
    guess_manifest,
    write_file,
)

__all__ = ["DiskFull", "Journal", "JournalError", "SyncFailed"]

log = logging.getLogger("queuectld.journal")

LAZY_SYNC = 0.05  # seconds within which records nobody awaits (a run's start and end) reach the disk


class Journal(Compaction):
    """Owner of the journal directory: the only code that writes it."""

    def __init__(self, path: str, salvage: bool = False, compact_min: int = 4 << 20,
                 compact_ratio: float = 2.0) -> None:
        self.dir = path
        self.salvage = salvage
        self.compact_min = compact_min
        self.compact_ratio = compact_ratio
        self.manifest = Manifest(None, [], 1)
        self.fd = -1
        self.seq = 0
        self.log_bytes = 0  # bytes in the logs since the snapshot
        self.snapshot_bytes = 0
        self.compactions = 0
        self._seed = 0
        self._waiters: list[asyncio.Future[None]] = []
        self._retired_fds: list[int] = []  # old logs, closed after their last sync
        self._sync_scheduled = False
        self._lazy: asyncio.TimerHandle | None = None  # the timer that syncs records nobody awaits
        self._syncing = False
        self._unsynced = False
        self._compacting = False
        self._compaction: asyncio.Task[None] | None = None
        self._failed: JournalError | None = None
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="journal-sync")
        self._loop: asyncio.AbstractEventLoop | None = None
        self.on_fatal: list[Callable[[JournalError], None]] = []
        self.snapshot_source: Callable[[], list[ev.Event]] | None = None
        self.on_sync: Callable[[float], None] | None = None  # told how long each fdatasync took
        self.dropped: list[str] = []  # what salvage could not read
        self._log_size = 0  # size of the log appended to
        self._compact_after = 0.0

    def _path(self, name: str) -> str:
        return os.path.join(self.dir, name)

    # -- opening and replay -------------------------------------------------------

    def open(self) -> Iterator[ev.Replayed]:
        """Replay the journal (creating it if new) and leave its last log open for appending."""
        os.makedirs(self.dir, mode=0o700, exist_ok=True)
        os.chmod(self.dir, 0o700)  # it holds the jobs' environments: only this user may read it
        names = os.listdir(self.dir)
        if "MANIFEST" not in names:
            files = sorted(n for n in names if FILE_NAME.match(n))
            if files and not self.salvage:
                raise JournalError(f"{self.dir} holds {', '.join(files)} but no MANIFEST; "
                                   "refusing to start empty (queuectld --salvage recovers what is readable)")
            if not files:
                self._create()
                return iter(())
            self.manifest = guess_manifest(files)
            log.warning("salvage: no MANIFEST; using %s", self.manifest)
        else:
            try:
                self.manifest = self._read_manifest()
            except JournalError:
                if not self.salvage:
                    raise
                self.manifest = guess_manifest(sorted(n for n in names if FILE_NAME.match(n)))
                log.warning("salvage: the MANIFEST is damaged; using %s", self.manifest)
        return self._replay()

    def _read_manifest(self) -> Manifest:
        path = self._path("MANIFEST")
        with open(path, "rb") as f:
            data = f.read()
        magic, crc, body = data[:8], data[8:12], data[12:]
        if magic != MANIFEST_MAGIC or len(crc) != 4 or zlib.crc32(body) != int.from_bytes(crc, "big"):
            raise JournalError(f"{path}: damaged manifest (bad magic or checksum at offset 0); "
                               "refusing to start (queuectld --salvage recovers what is readable)")
        return msgspec.msgpack.decode(body, type=Manifest)

    def _replay(self) -> Iterator[ev.Replayed]:
        m = self.manifest
        seq = 0
        dropped: list[str] = []
        events: list[ev.Replayed] = []
        if m.snapshot is not None:
            snap = FileScan(self._path(m.snapshot), SNAP_MAGIC, self.salvage)
            if snap.bad_at is not None:
                raise JournalError(f"{snap.path}: damaged snapshot at offset {snap.bad_at}; refusing to start "
                                   "(queuectld --salvage recovers what is readable)")
            if not snap.events or not isinstance(snap.events[-1], ev.SnapshotEnd):
                if not self.salvage:
                    raise JournalError(f"{snap.path}: snapshot is incomplete (no end record at offset "
                                       f"{snap.good_end}); refusing to start")
                dropped.append(f"{snap.path}: snapshot has no end record")
            else:
                restored = sum(len(e.jobs) for e in snap.events if isinstance(e, ev.Restored))
                if restored != snap.events[-1].jobs:
                    if not self.salvage:
                        raise JournalError(f"{snap.path}: snapshot holds {restored} jobs where its end record "
                                           f"counts {snap.events[-1].jobs}; refusing to start "
                                           "(queuectld --salvage recovers what is readable)")
                    dropped.append(f"{snap.path}: {snap.events[-1].jobs - restored} jobs missing")
            dropped += [f"{snap.path}: {n} bytes at offset {o}" for o, n in snap.dropped]
            events += snap.events
            seq = snap.base_seq
            self.snapshot_bytes = snap.size
        for i, name in enumerate(m.logs):
            last = i == len(m.logs) - 1
            scan = FileScan(self._path(name), LOG_MAGIC, self.salvage, seq if self.salvage else 0)
            if scan.base_seq != seq and not self.salvage:
                raise JournalError(f"{scan.path}: starts after record {scan.base_seq}, expected {seq} "
                                   "(a journal file is missing or stale); refusing to start")
            if scan.bad_at is not None:
                if not last or scan.valid_after_bad:
                    # Kafka and NATS truncate only the last segment's tail; anything else loses acked data.
                    raise JournalError(
                        f"{scan.path}: corrupt record at offset {scan.bad_at} with valid records after it; "
                        "refusing to start (queuectld --salvage keeps what is readable)")
                log.warning("journal %s: dropped a torn or unreadable tail of %d bytes at offset %d "
                            "(after record %d)", scan.path, scan.size - scan.bad_at, scan.bad_at, scan.last_seq)
                with open(scan.path, "r+b") as f:
                    f.truncate(scan.bad_at)
                    os.fsync(f.fileno())
            dropped += [f"{scan.path}: {n} bytes at offset {o}" for o, n in scan.dropped]
            events += scan.events
            seq = max(seq, scan.last_seq)
            self.log_bytes += scan.good_end
            if last:
                self._log_size = scan.good_end
                self._seed = file_seed(scan.generation)
                self.fd = os.open(scan.path, os.O_WRONLY | os.O_APPEND | os.O_CLOEXEC)
        self.seq = seq
        if self.salvage:
            for line in dropped:
                log.warning("salvage dropped %s", line)
            log.warning("salvage: replayed %d records; %d unreadable region(s) dropped", len(events), len(dropped))
            self.dropped = dropped
        else:
            if not m.logs:
                raise JournalError(f"{self._path('MANIFEST')} lists no log file; refusing to start")
            self._remove_strays()
        return iter(events)

    def _create(self) -> None:
        self.manifest = Manifest(None, [], 1)
        name = self._new_log(0)
        self._write_manifest(Manifest(None, [name], self.manifest.next_file))

    def _remove_strays(self) -> None:
        """Delete files no manifest refers to: leftovers of an interrupted compaction."""
        keep = set(self.manifest.logs) | {self.manifest.snapshot, "MANIFEST", STATS_FILE}
        for name in os.listdir(self.dir):
            if name not in keep and (FILE_NAME.match(name) or name.endswith(".tmp")):
                log.info("removing %s, left over from an interrupted compaction", name)
                os.unlink(self._path(name))

    # -- files and the manifest ------------------------------------------------------

    def _new_log(self, base_seq: int) -> str:
        """Create and open an empty log following `base_seq`; it becomes the file appended to."""
        n = self.manifest.next_file
        name = f"log-{n}"
        generation = os.urandom(8)
        write_file(self._path(name), HEADER.pack(LOG_MAGIC, generation, base_seq))
        fsync_dir(self.dir)
        self.manifest = Manifest(self.manifest.snapshot, self.manifest.logs, n + 1)
        old = self.fd
        self.fd = os.open(self._path(name), os.O_WRONLY | os.O_APPEND | os.O_CLOEXEC)
        self._seed = file_seed(generation)
        self._log_size = HEADER.size
        if old >= 0:
            self._retired_fds.append(old)
        return name

    def _write_manifest(self, m: Manifest) -> None:
        body = msgspec.msgpack.encode(m)
        tmp = self._path("MANIFEST.tmp")
        write_file(tmp, MANIFEST_MAGIC + zlib.crc32(body).to_bytes(4, "big") + body)
        os.rename(tmp, self._path("MANIFEST"))
        fsync_dir(self.dir)
        self.manifest = m

    async def aclose(self) -> None:
        """Stop a compaction in progress (its files are removed at the next start), then close."""
        task = self._compaction
        if task is not None and not task.done():
            task.cancel()
            await asyncio.wait([task])
        self.close()

    def close(self) -> None:
        for fd in [*self._retired_fds, self.fd]:
            if fd >= 0:
                os.close(fd)
        self._retired_fds = []
        self.fd = -1
        if self._lazy is not None:
            self._lazy.cancel()
            self._lazy = None
        self.snapshot_source = None  # a compaction scheduled but not begun finds nothing to do
        self._executor.shutdown(wait=True)

    # -- appending ---------------------------------------------------------------

    def write(self, events: list[ev.Event]) -> None:
        """Append records now, all or none; durable at the next commit, or within LAZY_SYNC s.

        A write alone does not ask for an fdatasync at once: what a request
        acknowledges is committed, and a run's records (which nobody awaits)
        are synced with the next commit or by a timer.  A process crash loses
        nothing written; only power loss can lose the last LAZY_SYNC s of them.
        """
        if self._failed is not None:
            raise self._failed
        buf, seq = encode_records(events, self._seed, self.seq)
        try:
            written = os.write(self.fd, buf)
            if written != len(buf):
                raise OSError(errno.ENOSPC, "short write")
        except OSError as e:
            self._undo_write()
            if e.errno in (errno.ENOSPC, errno.EDQUOT):
                raise DiskFull("disk full: the journal could not be written; nothing was changed") from None
            raise self._fail(f"cannot write the journal: {e.strerror}") from None
        self.seq = seq
        self.log_bytes += len(buf)
        self._log_size += len(buf)
        self._unsynced = True
        self._schedule_lazy_sync()
        if self.log_bytes > max(self.compact_min, self.compact_ratio * self.snapshot_bytes):
            self._maybe_compact()

    def _maybe_compact(self) -> None:
        if self._compacting or self.snapshot_source is None or time.monotonic() < self._compact_after:
            return
        self._compacting = True
        self._get_loop().call_soon(self._start_compaction)

    def _undo_write(self) -> None:
        """Cut the log back to its last whole record after a failed or partial write."""
        try:
            os.ftruncate(self.fd, self._log_size)
        except OSError as e:
            raise self._fail(f"cannot truncate the journal after a failed write: {e.strerror}") from None

    def commit(self) -> asyncio.Future[None]:
        """A future that resolves once everything written so far is on disk."""
        fut: asyncio.Future[None] = self._get_loop().create_future()
        if self._failed is not None:
            fut.set_exception(self._failed)
            return fut
        self._waiters.append(fut)
        self._schedule_sync()
        return fut

    def _get_loop(self) -> asyncio.AbstractEventLoop:
        if self._loop is None:
            self._loop = asyncio.get_running_loop()
        return self._loop

    def _schedule_sync(self) -> None:
        if not self._sync_scheduled and not self._syncing:
            self._sync_scheduled = True
            self._get_loop().call_soon(self._start_sync)

    def _schedule_lazy_sync(self) -> None:
        if self._lazy is None and not self._sync_scheduled and not self._syncing:
            self._lazy = self._get_loop().call_later(LAZY_SYNC, self._lazy_sync)

    def _lazy_sync(self) -> None:
        self._lazy = None
        self._schedule_sync()

    def _start_sync(self) -> None:
        self._sync_scheduled = False
        if self._syncing or self._failed is not None:
            return
        if self._lazy is not None:
            self._lazy.cancel()
            self._lazy = None
        self._syncing = True
        self._unsynced = False
        waiters, self._waiters = self._waiters, []
        retired, self._retired_fds = self._retired_fds, []
        fut = self._get_loop().run_in_executor(self._executor, _sync, retired, self.fd)
        fut.add_done_callback(lambda f: self._synced(f, waiters))

    def _synced(self, f: asyncio.Future[float], waiters: list[asyncio.Future[None]]) -> None:
        self._syncing = False
        exc = f.exception()
        if exc is not None:
            err = self._fail(f"fdatasync failed: {exc}")
            for w in waiters:
                if not w.done():
                    w.set_exception(err)
            return
        if self.on_sync is not None:
            self.on_sync(f.result())
        for w in waiters:
            if not w.done():
                w.set_result(None)
        if self._waiters or self._retired_fds:
            self._schedule_sync()
        elif self._unsynced:
            self._schedule_lazy_sync()

    def _fail(self, message: str) -> SyncFailed:
        """After a failed write or sync nothing more may be acknowledged: fail the waiters, stop the daemon."""
        if self._failed is None:
            self._failed = SyncFailed(f"{message}; nothing more will be acknowledged, queuectld is exiting")
            log.critical("%s", self._failed)
            for w in self._waiters:
                if not w.done():
                    w.set_exception(self._failed)
            self._waiters = []
            for callback in self.on_fatal:
                callback(self._failed)
        assert isinstance(self._failed, SyncFailed)
        return self._failed

def _sync(retired: list[int], fd: int) -> float:
    """Sync the retired logs and the current one; returns the seconds the current one's sync took."""
    for old in retired:
        os.fdatasync(old)
        os.close(old)
    began = time.perf_counter()
    os.fdatasync(fd)
    return time.perf_counter() - began
