"""Output across nodes: a run's output files shipped to `queuectl_output` while it runs, and read back
on any node into files that `logs`, `logs --follow` and the dashboard read as they read local ones.

The node that runs a job keeps writing its output files as on one machine (capture.py: the head as
it comes, then at the end the omitted-bytes line and the tail), so a file only ever grows during a
run.  A shipper task reads what each running job's files gained, every SHIP_EVERY seconds, and
appends it as rows `(job_id, attempt, stream, seq, data)` where `seq` is the chunk's byte offset in
its file; it never touches the job's pipes, so a job that writes fast is not slowed, and what it
reads is bounded by the output limit (the file is).  At the run's end the pool waits until the rest
of the files is committed (`output_ended`), before the end is recorded: once a job is seen final
anywhere, its whole output is in the database, byte for byte the file of the node that ran it.

A node that reads a job's output (`output_files`) appends the rows it lacks to a file of its own
under `<state>/output-db/<job id>/<attempt>.<stream>`, each chunk written at its offset (so that
two readers at once write the same bytes), and hands that path out.  Rows of a job go when a new
run of it ships (the latest run only, as on one machine) and when the job is deleted or pruned
(`output_forget`).
"""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
from collections.abc import Iterable

import asyncpg

from ..model import Job
from .core import PgCore

log = logging.getLogger("queuectld.store")

SHIP_EVERY = 0.25  # seconds between two reads of the running jobs' files
CHUNK = 1024**2  # bytes per row at most
ROUND = 8 * 1024**2  # bytes read per round at most, over every run: the shipper's memory
END_WAIT = 10.0  # seconds a run's end waits for its output to be committed before it is recorded anyway
READ_ROWS = 8  # rows fetched per query when a reader catches up
_HELD = """
SELECT j.id FROM queuectl_jobs_live j JOIN unnest($1::text[], $2::int[]) AS r(id, attempts)
    ON j.id = r.id AND j.attempts = r.attempts
 WHERE starts_with(j.locked_by, $3)
   FOR SHARE OF j
"""
STREAMS = ((b"o", 0), (b"e", 1))  # the row's stream ("char": a byte), and the index of its path in (stdout, stderr)


class _Run:
    """A run of this node whose output is being shipped."""

    __slots__ = ("attempt", "done", "ended", "fresh", "job_id", "paths", "sent")

    def __init__(self, job_id: str, attempt: int, paths: tuple[str, str]) -> None:
        self.job_id = job_id
        self.attempt = attempt
        self.paths = paths
        self.sent = [0, 0]  # bytes of each file committed
        self.fresh = True  # the previous runs' rows are still to be removed
        self.ended = False  # the files are complete
        self.done: asyncio.Future[None] | None = None  # set once an ended run is all committed


def _read(path: str, offset: int, limit: int) -> bytes:
    try:
        with open(path, "rb") as f:
            f.seek(offset)
            return f.read(limit)
    except FileNotFoundError:
        return b""


def _chunks(run: _Run, budget: int) -> list[tuple[bytes, int, bytes]]:
    """What the run's files gained since `sent`, at most `budget` bytes: (stream, offset, data) each."""
    out: list[tuple[bytes, int, bytes]] = []
    for stream, i in STREAMS:
        offset = run.sent[i]
        while budget > 0:
            data = _read(run.paths[i], offset, min(CHUNK, budget))
            if not data:
                break
            out.append((stream, offset, data))
            offset += len(data)
            budget -= len(data)
            if len(data) < CHUNK:
                break
    return out


class OutputMixin(PgCore):
    """The output part of PgStore."""

    _out_runs: dict[str, _Run]
    _out_forget: list[str]
    _out_task: asyncio.Task[None] | None
    _out_wake: asyncio.Event
    _out_swept: bool

    def _out_state(self) -> dict[str, _Run]:
        if not hasattr(self, "_out_runs"):
            self._out_runs = {}
            self._out_forget = []
            self._out_task = None
            self._out_wake = asyncio.Event()
        return self._out_runs

    def _out_kick(self, now: bool = False) -> None:
        if self._out_task is None or self._out_task.done():
            self._out_task = asyncio.get_running_loop().create_task(self._out_ship())
        if now:
            self._out_wake.set()

    async def close(self) -> None:
        task = getattr(self, "_out_task", None)
        while task is not None and not task.done():  # cancelled again if a timeout swallowed the cancel
            task.cancel()
            await asyncio.wait([task], timeout=0.5)
        await super().close()

    # -- the node that runs the job ---------------------------------------------------

    def output_started(self, job: Job, paths: tuple[str, str]) -> None:
        """A run of `job` (its attempt counted) started on this node, writing `paths`: ship them."""
        self._out_state()[job.id] = _Run(job.id, job.attempts, paths)
        self._out_kick()

    async def output_ended(self, jobs: Iterable[Job]) -> None:
        """These runs ended (their files are complete): return once their output is committed, or
        after END_WAIT seconds (logged) if the database cannot take it."""
        runs = self._out_state()
        waits: list[asyncio.Future[None]] = []
        for job in jobs:
            run = runs.get(job.id)
            if run is None:
                continue
            run.ended = True
            if all(_size(p) == s for p, s in zip(run.paths, run.sent)):
                continue  # nothing left to ship (a new run's old rows go at the next round): no wait
            run.done = asyncio.get_running_loop().create_future()
            waits.append(run.done)
        if not waits:
            return
        self._out_kick(now=True)
        _, pending = await asyncio.wait(waits, timeout=END_WAIT)
        if pending:
            log.warning("the output of %d ended run(s) is not in the database yet; their ends are recorded "
                        "meanwhile", len(pending))

    def output_forget(self, job_ids: list[str], local_dir: str) -> None:
        """These jobs were deleted: their rows go (at the shipper's next round), and so do the copies
        this node read of them (`local_dir`: where this node's own runs write)."""
        self._out_state()
        self._out_forget.extend(job_ids)
        self._out_kick()
        cache = os.path.join(os.path.dirname(local_dir), "output-db")
        for job_id in job_ids:
            if os.path.isdir(os.path.join(cache, job_id)):
                shutil.rmtree(os.path.join(cache, job_id), ignore_errors=True)

    async def _out_ship(self) -> None:
        runs = self._out_state()
        failing = retried = False
        while runs or self._out_forget:
            try:
                async with asyncio.timeout(SHIP_EVERY):  # not wait_for, which can swallow a cancel (3.11)
                    await self._out_wake.wait()
            except TimeoutError:
                pass
            self._out_wake.clear()
            try:
                more = await self._out_round(runs)
                failing = retried = False
            except Exception as e:  # the database is away: the same bytes go at a later round
                if isinstance(e, asyncpg.TransactionRollbackError) and not retried:
                    # A run's end moved its row to the done partition while the round locked it, or
                    # the round and an end deadlocked: once more at once, the moved run then not held.
                    retried = True
                    self._out_wake.set()
                    continue
                if not failing:
                    log.warning("cannot ship job output to the database: %s", str(e).splitlines()[0] if str(e) else e)
                failing = True
                continue
            if more:
                self._out_wake.set()

    async def _out_round(self, runs: dict[str, _Run]) -> bool:
        """One transaction: old rows out, new bytes in.  True if a budget left bytes for the next."""
        budget = ROUND
        picked: list[tuple[_Run, bool, list[tuple[bytes, int, bytes]]]] = []
        for run in list(runs.values()):
            ended = run.ended  # before the read: what it reads then is the whole of the files
            chunks = await asyncio.to_thread(_chunks, run, budget) if budget > 0 else []
            budget -= sum(len(c[2]) for c in chunks)
            if chunks or run.fresh or ended:  # else nothing to do for it this round
                picked.append((run, ended, chunks))
        forget, self._out_forget = self._out_forget, []
        lost: set[str] = set()
        if picked or forget:
            try:
                async with self.db.acquire() as conn, conn.transaction():
                    if picked:
                        # Only runs this node still holds write (the row locked until the commit, so a
                        # rescue waits): a node that was declared lost must not touch the new run's rows.
                        held = {r[0] for r in await conn.fetch(_HELD, [run.job_id for run, _, _ in picked],
                                                               [run.attempt for run, _, _ in picked], self.me)}
                        lost = {run.job_id for run, _, _ in picked} - held
                    stale = [run.job_id for run, _, _ in picked if run.fresh and run.job_id not in lost]
                    rows = [(run.job_id, run.attempt, stream, offset, data) for run, _, chunks in picked
                            if run.job_id not in lost for stream, offset, data in chunks]
                    if stale or forget:
                        await conn.execute("DELETE FROM queuectl_output WHERE job_id = ANY($1::text[])",
                                           stale + forget)
                    if rows:
                        await conn.executemany(
                            "INSERT INTO queuectl_output (job_id, attempt, stream, seq, data) "
                            "VALUES ($1, $2, $3, $4, $5) ON CONFLICT (job_id, stream, seq) "
                            "DO UPDATE SET attempt = EXCLUDED.attempt, data = EXCLUDED.data", rows)
            except BaseException:
                self._out_forget = forget + self._out_forget
                raise
        for run, ended, chunks in picked:
            if run.job_id in lost:  # no longer this node's run: its output is not shipped
                if runs.get(run.job_id) is run:
                    del runs[run.job_id]
                if run.done is not None and not run.done.done():
                    run.done.set_result(None)
                continue
            run.fresh = False
            for stream, offset, data in chunks:
                i = 0 if stream == b"o" else 1
                run.sent[i] = offset + len(data)
            if ended and budget > 0:  # read to the end of both files: all of it is committed
                if runs.get(run.job_id) is run:
                    del runs[run.job_id]
                if run.done is not None and not run.done.done():
                    run.done.set_result(None)
        return budget <= 0

    # -- any node ----------------------------------------------------------------------

    async def output_files(self, job: Job, local: tuple[str, str]) -> tuple[str, str]:
        """Files on this machine holding the output of the job's latest run as far as it is in the
        database (a missing file: none); `local` is where this node's own runs write theirs."""
        root = os.path.join(os.path.dirname(os.path.dirname(local[0])), "output-db")
        if not getattr(self, "_out_swept", False):  # copies of a previous daemon's reads: a cache, gone
            self._out_swept = True
            await asyncio.to_thread(shutil.rmtree, root, True)
        cache = os.path.join(root, job.id)
        paths = (os.path.join(cache, f"{job.attempts}.out"), os.path.join(cache, f"{job.attempts}.err"))
        if job.attempts == 0:
            return paths
        await asyncio.to_thread(_clear_others, cache, {os.path.basename(p) for p in paths})
        for stream, i in STREAMS:
            await self._catch_up(job, stream, paths[i])
        return paths

    async def _catch_up(self, job: Job, stream: bytes, path: str) -> None:
        size = await asyncio.to_thread(_size, path)
        # The file must end where a row of this run ends; else it is of an older run of the same number.
        if size and not await self.db.fetchval(
                "SELECT EXISTS (SELECT 1 FROM queuectl_output WHERE job_id = $1 AND attempt = $2 AND stream = $3 "
                "AND seq < $4 AND seq + length(data) = $4)", job.id, job.attempts, stream, size):
            await asyncio.to_thread(_remove, path)
            size = 0
        while True:
            rows = await self.db.fetch(
                "SELECT seq, data FROM queuectl_output WHERE job_id = $1 AND attempt = $2 AND stream = $3 "
                "AND seq >= $4 ORDER BY seq LIMIT $5", job.id, job.attempts, stream, size, READ_ROWS)
            contiguous = []
            for seq, data in rows:
                if seq != size:
                    break
                contiguous.append((seq, bytes(data)))
                size += len(data)
            if contiguous:
                await asyncio.to_thread(_write_at, path, contiguous)
            if len(contiguous) < READ_ROWS:
                return


def _size(path: str) -> int:
    try:
        return os.path.getsize(path)
    except OSError:
        return 0


def _remove(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def _clear_others(cache: str, keep: set[str]) -> None:
    """Remove the copies of the job's older runs."""
    try:
        with os.scandir(cache) as entries:
            for entry in entries:
                if entry.name not in keep:
                    _remove(entry.path)
    except FileNotFoundError:
        pass


def _write_at(path: str, chunks: list[tuple[int, bytes]]) -> None:
    os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        for offset, data in chunks:
            os.pwrite(fd, data, offset)
    finally:
        os.close(fd)
