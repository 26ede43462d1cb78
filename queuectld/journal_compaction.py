"""The journal's compaction: a new snapshot of the live state replaces the snapshot and logs.

A mixin of `journal.Journal`, which owns the files, the manifest and the appends; see docs/DECISIONS.md
for the steps and why a crash at any of them replays either the old files or the new ones.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import time
from collections.abc import Callable

from . import events as ev
from . import faults
from .journal_files import HEADER, SNAP_MAGIC, JournalError, Manifest, encode_records, file_seed, fsync_dir, write_file

log = logging.getLogger("queuectld.journal")


class Compaction:
    """`compact`, and starting it in the background; the attributes are the journal's."""

    dir: str
    manifest: Manifest
    seq: int
    log_bytes: int
    snapshot_bytes: int
    compactions: int
    snapshot_source: Callable[[], list[ev.Event]] | None
    _compacting: bool
    _compact_after: float
    _failed: JournalError | None
    _log_size: int
    _compaction: asyncio.Task[None] | None

    def _path(self, name: str) -> str:
        raise NotImplementedError

    def _new_log(self, base_seq: int) -> str:
        raise NotImplementedError

    def _write_manifest(self, m: Manifest) -> None:
        raise NotImplementedError

    def _get_loop(self) -> asyncio.AbstractEventLoop:
        raise NotImplementedError

    def _start_compaction(self) -> None:
        self._compaction = self._get_loop().create_task(self.compact(), name="journal-compaction")
        self._compaction.add_done_callback(_report_compaction)

    async def compact(self, keep_old: bool = False) -> None:
        """Replace the snapshot and logs by a new snapshot of the live state and an empty log.

        Steps (each a crash point for the tests):
          1. create log-N+1 and switch appends to it
          2. commit a manifest naming the old snapshot and both logs
          3. write snap-N+2.tmp from the state as of the switch, fsync
          4. rename it to snap-N+2, fsync the directory
          5. commit a manifest naming snap-N+2 and log-N+1 only
          6. delete the old snapshot and logs
        A crash before 5 replays the old files; from 5 on, the new ones.
        With `keep_old` (after a salvage) the old files are moved aside, not deleted.
        """
        self._compacting = True
        try:
            if self._failed is not None or self.snapshot_source is None:
                return
            started = time.monotonic()
            old = self.manifest
            # Steps 1-2, the state capture and its encoding happen in one go on the
            # loop, with no await between them: the snapshot events refer to the
            # live job structs, and must hold exactly the records up to the new
            # log's base.
            base = self.seq
            snapshot_events = self.snapshot_source()
            new_log = self._new_log(base)
            faults.point("compact-1")
            self._write_manifest(Manifest(old.snapshot, [*old.logs, new_log], self.manifest.next_file))
            faults.point("compact-2")
            n = self.manifest.next_file
            snap = f"snap-{n}"
            generation = os.urandom(8)
            body, _ = encode_records(snapshot_events, file_seed(generation), base)
            data = HEADER.pack(SNAP_MAGIC, generation, base) + body
            del snapshot_events, body
            await self._get_loop().run_in_executor(None, write_file, self._path(snap + ".tmp"), data)
            faults.point("compact-3")
            os.rename(self._path(snap + ".tmp"), self._path(snap))
            fsync_dir(self.dir)
            faults.point("compact-4")
            self._write_manifest(Manifest(snap, [new_log], n + 1))
            self.snapshot_bytes = len(data)
            self.log_bytes = self._log_size
            faults.point("compact-5")
            aside = self._path(f"salvaged-{int(time.time())}") if keep_old else None
            if aside is not None:
                os.makedirs(aside, exist_ok=True)
            for name in [*old.logs, old.snapshot]:
                if name is None:
                    continue
                if aside is not None:
                    os.rename(self._path(name), os.path.join(aside, name))
                else:
                    os.unlink(self._path(name))
            fsync_dir(self.dir)
            faults.point("compact-6")
            self.compactions += 1
            log.info("compacted the journal: snapshot of %d bytes at record %d in %.2f s",
                     len(data), base, time.monotonic() - started)
        except OSError as e:
            for name in os.listdir(self.dir):
                if name.endswith(".tmp"):
                    os.unlink(self._path(name))
            self._compact_after = time.monotonic() + 5.0
            if e.errno in (errno.ENOSPC, errno.EDQUOT):
                log.warning("compaction postponed: disk full")
            else:
                raise
        finally:
            self._compacting = False


def _report_compaction(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("compaction failed: %s", task.exception())
