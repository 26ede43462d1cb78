"""A run's output reaches PostgreSQL while it runs, and any node reads it back byte for byte
(queuectld/pg/output.py), with real `sh -c` processes writing the files and a real database."""

from __future__ import annotations

import asyncio
import os
import subprocess
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

from queuectld.model import Job

asyncpg = pytest.importorskip("asyncpg")

from queuectld.pg.store import PgStore  # noqa: E402 -- once asyncpg is known to be there


async def until(predicate: Callable[[], Awaitable[Any]], timeout: float = 10.0, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    delay = 0.005
    while True:
        value = await predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        await asyncio.sleep(delay)
        delay = min(delay * 2, 0.1)


@pytest.fixture
async def nodes(pg_database: str) -> AsyncIterator[tuple[PgStore, PgStore]]:
    """Two nodes on one database: the one that runs the jobs, and a reader."""
    runner, reader = PgStore(pg_database, node="runner"), PgStore(pg_database, node="reader")
    await runner.open()
    await reader.open()
    yield runner, reader
    await runner.close()
    await reader.close()


def job(job_id: str, attempts: int) -> Job:
    j = Job(id=job_id, command="true", max_retries=0, priority=0, run_at=None, timeout=None)
    j.attempts = attempts
    return j


def homes(tmp_path: Any, name: str) -> tuple[str, str]:
    """A node's (stdout, stderr) paths for job `name`, under its own state dir."""
    out = tmp_path / "runner" / "output"
    out.mkdir(parents=True, exist_ok=True)
    return str(out / f"{name}.out"), str(out / f"{name}.err")


def reader_local(tmp_path: Any, name: str) -> tuple[str, str]:
    out = tmp_path / "reader" / "output"
    out.mkdir(parents=True, exist_ok=True)
    return str(out / f"{name}.out"), str(out / f"{name}.err")


def read(path: str) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read()
    except FileNotFoundError:
        return b""


async def test_output_reaches_the_database_while_the_job_runs_and_reads_back_byte_for_byte(
        nodes: tuple[PgStore, PgStore], tmp_path: Any) -> None:
    runner, reader = nodes
    paths = homes(tmp_path, "j1")
    flag = tmp_path / "flag"
    script = f'echo first; echo oops >&2; while [ ! -e "{flag}" ]; do sleep 0.02; done; echo second'
    with open(paths[0], "wb") as out, open(paths[1], "wb") as err:
        proc = subprocess.Popen(["sh", "-c", script], stdout=out, stderr=err)
    j = job("j1", 1)
    runner.output_started(j, paths)

    async def seen_running() -> bool:
        files = await reader.output_files(j, reader_local(tmp_path, "j1"))
        return read(files[0]) == b"first\n" and read(files[1]) == b"oops\n"

    await until(seen_running, what="the first line in the database while the job runs")
    assert proc.poll() is None  # it was still running: the job waits for the flag
    flag.touch()
    await asyncio.to_thread(proc.wait, 10)
    await runner.output_ended([j])
    files = await reader.output_files(j, reader_local(tmp_path, "j1"))
    assert read(files[0]) == read(paths[0]) == b"first\nsecond\n"
    assert read(files[1]) == b"oops\n"


async def test_a_large_output_goes_in_chunks_and_a_new_run_replaces_the_old_one(
        nodes: tuple[PgStore, PgStore], tmp_path: Any) -> None:
    runner, reader = nodes
    db = runner.db
    paths = homes(tmp_path, "big")
    subprocess.run(["sh", "-c", f'head -c 3000000 /dev/urandom > "{paths[0]}"'], check=True)
    j = job("big", 1)
    runner.output_started(j, paths)
    await runner.output_ended([j])
    files = await reader.output_files(j, reader_local(tmp_path, "big"))
    assert read(files[0]) == read(paths[0]) and len(read(files[0])) == 3000000
    assert not os.path.exists(files[1])  # no stderr: no file, as on one machine
    assert await db.fetchval("SELECT count(*) FROM queuectl_output WHERE job_id = 'big'") >= 3

    # The next run, on another node, with less output: only its own rows are left, and read.
    os.unlink(paths[0])
    other = homes(tmp_path / "n2", "big")
    subprocess.run(["sh", "-c", f'echo again > "{other[1]}"'], check=True)
    j2 = job("big", 2)
    reader.output_started(j2, other)
    await reader.output_ended([j2])
    files = await runner.output_files(j2, reader_local(tmp_path / "n3", "big"))
    assert read(files[1]) == b"again\n" and not os.path.exists(files[0])
    assert await db.fetchval("SELECT array_agg(DISTINCT attempt) FROM queuectl_output WHERE job_id = 'big'") == [2]


async def test_a_revived_job_s_run_of_the_same_number_is_not_mixed_with_the_copy_of_the_old_one(
        nodes: tuple[PgStore, PgStore], tmp_path: Any) -> None:
    runner, reader = nodes
    local = reader_local(tmp_path, "r")
    paths = homes(tmp_path, "r")
    subprocess.run(["sh", "-c", f'echo "the old run, longer" > "{paths[0]}"'], check=True)
    j = job("r", 1)
    runner.output_started(j, paths)
    await runner.output_ended([j])
    assert read((await reader.output_files(j, local))[0]) == b"the old run, longer\n"

    subprocess.run(["sh", "-c", f'echo new > "{paths[0]}"'], check=True)  # revived: attempt 1 again
    runner.output_started(j, paths)
    await runner.output_ended([j])
    assert read((await reader.output_files(j, local))[0]) == b"new\n"


async def test_a_deleted_job_s_output_goes_from_the_database_and_from_the_readers(
        nodes: tuple[PgStore, PgStore], tmp_path: Any) -> None:
    runner, reader = nodes
    db = runner.db
    paths = homes(tmp_path, "d")
    subprocess.run(["sh", "-c", f'echo bye > "{paths[0]}"'], check=True)
    j = job("d", 1)
    runner.output_started(j, paths)
    await runner.output_ended([j])
    local = reader_local(tmp_path, "d")
    files = await reader.output_files(j, local)
    assert read(files[0]) == b"bye\n"
    reader.output_forget(["d"], os.path.dirname(local[0]))
    assert not os.path.exists(files[0])

    async def gone() -> bool:
        return await db.fetchval("SELECT count(*) FROM queuectl_output WHERE job_id = 'd'") == 0

    await until(gone, what="the deleted job's rows to go")


async def test_a_silent_run_s_end_does_not_wait_and_still_clears_the_previous_run(
        nodes: tuple[PgStore, PgStore], tmp_path: Any) -> None:
    runner = nodes[0]
    db = runner.db
    paths = homes(tmp_path, "s")
    subprocess.run(["sh", "-c", f'echo before > "{paths[0]}"'], check=True)
    j = job("s", 1)
    runner.output_started(j, paths)
    await runner.output_ended([j])
    os.unlink(paths[0])
    j2 = job("s", 2)
    runner.output_started(j2, paths)
    await runner.output_ended([j2])  # nothing to ship: returns at once

    async def cleared() -> bool:
        return await db.fetchval("SELECT count(*) FROM queuectl_output WHERE job_id = 's'") == 0

    await until(cleared, what="the previous run's rows to go")


async def test_a_restarted_reader_starts_its_copies_afresh(nodes: tuple[PgStore, PgStore], tmp_path: Any,
                                                           pg_database: str) -> None:
    runner, reader = nodes
    for name in ("x", "y"):
        paths = homes(tmp_path, name)
        subprocess.run(["sh", "-c", f'echo {name} > "{paths[0]}"'], check=True)
        runner.output_started(job(name, 1), paths)
        await runner.output_ended([job(name, 1)])
    old_copy = (await reader.output_files(job("x", 1), reader_local(tmp_path, "x")))[0]
    assert read(old_copy) == b"x\n"
    again = PgStore(pg_database, node="reader")
    await again.open()
    try:
        copy = (await again.output_files(job("y", 1), reader_local(tmp_path, "y")))[0]
        assert read(copy) == b"y\n" and not os.path.exists(old_copy)
    finally:
        await again.close()
