"""The runs' output files, as the pool keeps them: one pair per job (its latest run's stdout and stderr),
removed when the job is deleted or runs again."""

from __future__ import annotations

import asyncio
import os
from collections import deque

from queuectl_client.paths import Paths

from .store import Store

FORGET_SLICE = 500  # deleted jobs whose output files are removed per loop turn


class Outputs:
    def __init__(self, store: Store, paths: Paths, loop: asyncio.AbstractEventLoop) -> None:
        self.store = store
        self.paths = paths
        self.loop = loop
        self._forgotten: deque[str] = deque()  # deleted jobs whose output files are still to remove
        self._forgetting: set[str] = set()
        self._outputs = self._scan()  # jobs whose latest run may have left output files

    def files(self, job_id: str) -> tuple[str, str]:
        """Where the job's latest run's stdout and stderr are (a missing file: no output)."""
        return self.paths.output_file(job_id, "out"), self.paths.output_file(job_id, "err")

    def _scan(self) -> set[str]:
        try:
            with os.scandir(self.paths.output) as entries:
                return {entry.name.rpartition(".")[0] for entry in entries}
        except OSError:
            return set()

    def starting(self, job_id: str) -> tuple[str, str]:
        """A run of the job begins: the files of its last run go (they hold the latest run only); its files."""
        files = self.files(job_id)
        if job_id in self._outputs or job_id in self._forgetting:
            self._outputs.discard(job_id)
            self._forgetting.discard(job_id)
            _remove(*files)
        return files

    def wrote(self, job_id: str) -> None:
        """A run of the job ended, and may have left output files."""
        self._outputs.add(job_id)

    def forget(self, job_ids: list[str]) -> None:
        """Jobs were deleted: their output files go too, a slice per loop turn.

        Only jobs whose runs created files cost an unlink (most jobs print
        nothing).  A new job that takes a forgotten id before its turn has the
        old files removed when it starts, and the slice then leaves its own alone.
        """
        self.store.output_forget(job_ids, self.paths.output)
        outputs = self._outputs
        job_ids = [job_id for job_id in job_ids if job_id in outputs]
        outputs.difference_update(job_ids)
        if not job_ids:
            return
        if len(job_ids) <= FORGET_SLICE and not self._forgotten:
            for job_id in job_ids:
                _remove(*self.files(job_id))
            return
        if not self._forgotten:
            self.loop.call_soon(self._forget_some)
        self._forgotten.extend(job_ids)
        self._forgetting.update(job_ids)

    def _forget_some(self) -> None:
        forgotten, forgetting = self._forgotten, self._forgetting
        for _ in range(min(FORGET_SLICE, len(forgotten))):
            job_id = forgotten.popleft()
            if job_id in forgetting:
                forgetting.discard(job_id)
                _remove(*self.files(job_id))
        if forgotten:
            self.loop.call_soon(self._forget_some)


def _remove(*paths: str) -> None:
    for path in paths:
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass
