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

from queuectl_client.protocol import JobSpec
from queuectld.model import Job
from queuectld.rules import QueueError, plan_end

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


async def running(store: PgStore, job_id: str, **spec: Any) -> Job:
    """Job `job_id` (added if new) claimed and started by `store`: a run that node holds."""
    try:
        await store.get(job_id)
    except QueueError:
        await store.add([JobSpec(id=job_id, command="true", **spec)], store.clock())
    (j,) = await store.claim(store.clock() + 1e6, 1)  # a retry's backoff is not waited for here
    assert j.id == job_id
    await store.start(j, store.clock(), 1, 0, 0)
    return j


async def ended(store: PgStore, j: Job, code: int) -> None:
    at = store.clock()
    assert await store.finish(j, at, plan_end(j, at, code, None, store.config))


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
    j = await running(runner, "j1")
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
    j = await running(runner, "big")
    runner.output_started(j, paths)
    await runner.output_ended([j])
    files = await reader.output_files(j, reader_local(tmp_path, "big"))
    assert read(files[0]) == read(paths[0]) and len(read(files[0])) == 3000000
    assert not os.path.exists(files[1])  # no stderr: no file, as on one machine
    assert await db.fetchval("SELECT count(*) FROM queuectl_output WHERE job_id = 'big'") >= 3
    await ended(runner, j, 1)  # failed: retried

    # The next run, on the other node, with less output: only its own rows are left, and read.
    other = homes(tmp_path / "n2", "big")
    subprocess.run(["sh", "-c", f'echo again > "{other[1]}"'], check=True)
    j2 = await running(reader, "big")
    assert j2.attempts == 2
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
    j = await running(runner, "r", max_retries=0)
    runner.output_started(j, paths)
    await runner.output_ended([j])
    assert read((await reader.output_files(j, local))[0]) == b"the old run, longer\n"
    await ended(runner, j, 1)
    assert await runner.revive(["r"], False, runner.clock()) == ["r"]

    subprocess.run(["sh", "-c", f'echo new > "{paths[0]}"'], check=True)
    j = await running(runner, "r")
    assert j.attempts == 1  # attempt 1 again
    runner.output_started(j, paths)
    await runner.output_ended([j])
    assert read((await reader.output_files(j, local))[0]) == b"new\n"


async def test_a_revived_job_s_silent_run_shows_no_output_of_the_old_one(
        nodes: tuple[PgStore, PgStore], tmp_path: Any) -> None:
    runner, reader = nodes
    paths = homes(tmp_path, "s")
    subprocess.run(["sh", "-c", f'echo "the old run" > "{paths[0]}"'], check=True)
    j = await running(runner, "s", max_retries=0)
    runner.output_started(j, paths)
    await runner.output_ended([j])
    await ended(runner, j, 1)
    assert await runner.revive(["s"], False, runner.clock()) == ["s"]
    os.unlink(paths[0])  # the new run prints nothing, as on one machine its start removed the old files
    j = await running(runner, "s")
    runner.output_started(j, paths)
    await runner.output_ended([j])
    files = await reader.output_files(j, reader_local(tmp_path / "again", "s"))
    assert not os.path.exists(files[0]) and not os.path.exists(files[1])


async def test_a_node_whose_run_was_rescued_ships_nothing_more(nodes: tuple[PgStore, PgStore], tmp_path: Any) -> None:
    runner = nodes[0]
    paths = homes(tmp_path, "lost")
    subprocess.run(["sh", "-c", f'echo "the lost node\'s run" > "{paths[0]}"'], check=True)
    j = await running(runner, "lost")
    # Another node rescued it and runs it again, printing less (as pg/cluster.py's rescue and a claim do).
    await runner.db.execute("UPDATE queuectl_jobs SET attempts = attempts + 1, locked_by = 'elsewhere/1' "
                            "WHERE id = 'lost'")
    runner.output_started(j, paths)
    await runner.output_ended([j])  # the late node's round: refused, and the end does not wait
    assert await runner.db.fetchval("SELECT count(*) FROM queuectl_output WHERE job_id = 'lost'") == 0


async def test_a_deleted_job_s_output_goes_from_the_database_and_from_the_readers(
        nodes: tuple[PgStore, PgStore], tmp_path: Any) -> None:
    runner, reader = nodes
    db = runner.db
    paths = homes(tmp_path, "d")
    subprocess.run(["sh", "-c", f'echo bye > "{paths[0]}"'], check=True)
    j = await running(runner, "d")
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


async def test_a_silent_run_s_end_does_not_wait_and_shows_no_output(
        nodes: tuple[PgStore, PgStore], tmp_path: Any) -> None:
    runner, reader = nodes
    paths = homes(tmp_path, "s")
    subprocess.run(["sh", "-c", f'echo before > "{paths[0]}"'], check=True)
    j = await running(runner, "s")
    runner.output_started(j, paths)
    await runner.output_ended([j])
    await ended(runner, j, 1)
    os.unlink(paths[0])
    j2 = await running(runner, "s")
    runner.output_started(j2, paths)
    await runner.output_ended([j2])  # nothing to ship: returns at once
    files = await reader.output_files(j2, reader_local(tmp_path, "s"))
    assert not os.path.exists(files[0]) and not os.path.exists(files[1])


async def test_a_restarted_reader_starts_its_copies_afresh(nodes: tuple[PgStore, PgStore], tmp_path: Any,
                                                           pg_database: str) -> None:
    runner, reader = nodes
    jobs = {}
    for name in ("x", "y"):
        paths = homes(tmp_path, name)
        subprocess.run(["sh", "-c", f'echo {name} > "{paths[0]}"'], check=True)
        jobs[name] = await running(runner, name)
        runner.output_started(jobs[name], paths)
        await runner.output_ended([jobs[name]])
    old_copy = (await reader.output_files(jobs["x"], reader_local(tmp_path, "x")))[0]
    assert read(old_copy) == b"x\n"
    again = PgStore(pg_database, node="reader")
    await again.open()
    try:
        copy = (await again.output_files(jobs["y"], reader_local(tmp_path, "y")))[0]
        assert read(copy) == b"y\n" and not os.path.exists(old_copy)
    finally:
        await again.close()
