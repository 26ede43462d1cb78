"""A journal written by the version before the scheduling fields (snapshot format 4) is read,
upgraded, and written again as format 5 at the next compaction."""

from __future__ import annotations

import os
import time
import zlib

import msgspec

from queuectl_client import Client
from queuectl_client import protocol as p
from queuectl_client.paths import resolve
from queuectld import events as ev
from queuectld.journal_files import HEADER, LOG_MAGIC, MANIFEST_MAGIC, Manifest, encode_records, file_seed, write_file
from tests.conftest import Env, wait_for


class _NewJob4(msgspec.Struct, array_like=True):
    """An enqueued job of format 4: its first eight fields, ending with the group."""

    id: str
    command: str
    max_retries: int
    priority: int
    run_at: float | None
    timeout: float | None
    cwd: str | None
    group: str


class _Added4(ev.Record, frozen=True, tag="a"):
    at: float
    jobs: list[_NewJob4]


def _job4(job_id: str, state: str, ticket: int, t: float, **kw: object) -> ev.Job4:
    fields: dict[str, object] = dict(
        id=job_id, command="true", max_retries=3, priority=0, run_at=None, timeout=None, cwd=None, group="default",
        state=state, attempts=0, created_at=t, updated_at=t, started_at=None, finished_at=None, next_retry_at=None,
        exit_code=None, error_message=None, worker=None, due=t, ticket=ticket,
    )
    fields.update(kw)
    return ev.Job4(**fields)  # type: ignore[arg-type]


def _write_format4_journal(path: str) -> None:
    os.makedirs(path, mode=0o700)
    base = 30
    t = time.time() - 3600
    snapshot = [
        ev.ConfigChanged("backoff-base", "1"),
        ev.PoolSized(0),
        ev.GroupDefined("default", 0, False),
        ev.GroupDefined("batch", 1, True),
        ev.Restored4([_job4("waiting", "pending", 3, t, group="batch", priority=2, timeout=30.0)]),
        ev.Restored4([_job4("was-running", "processing", 1, t, attempts=1, started_at=t + 1, worker=1)]),
        ev.Restored4([_job4("done", "completed", 2, t, attempts=1, started_at=t + 1, finished_at=t + 2,
                            exit_code=0, cwd="/tmp")]),
        ev.Running("was-running", 0, 0, False),
        ev.SnapshotEnd(3, 3),
    ]
    generation = os.urandom(8)
    body, _ = encode_records(snapshot, file_seed(generation), base)  # type: ignore[arg-type]
    write_file(os.path.join(path, "snap-1"), HEADER.pack(b"QCTLSNP4", generation, base) + body)
    generation = os.urandom(8)
    added = _Added4(t + 5, [_NewJob4("logged", "echo hi", 2, 1, None, None, None, "default")])
    body, _ = encode_records([added], file_seed(generation), base)  # type: ignore[list-item]
    write_file(os.path.join(path, "log-2"), HEADER.pack(LOG_MAGIC, generation, base) + body)
    manifest = msgspec.msgpack.encode(Manifest("snap-1", ["log-2"], 3))
    write_file(os.path.join(path, "MANIFEST"), MANIFEST_MAGIC + zlib.crc32(manifest).to_bytes(4, "big") + manifest)


def _snapshot_magic(journal: str) -> bytes | None:
    try:
        with open(os.path.join(journal, "MANIFEST"), "rb") as f:
            name = msgspec.msgpack.decode(f.read()[12:], type=Manifest).snapshot
        if name is None:
            return None
        with open(os.path.join(journal, name), "rb") as f:
            return f.read(8)
    except FileNotFoundError:
        return None


def _jobs(c: Client) -> dict[str, p.Job]:
    return {j.id: j for j in c.list()}


def test_a_format_4_snapshot_is_read_and_upgraded_keeping_groups_and_fields(env: Env) -> None:
    journal = resolve(env.home).journal
    _write_format4_journal(journal)
    env.start_daemon("--workers", "0", "--compact-min", "16K")
    with Client(env.home, autostart=False) as c:
        jobs = _jobs(c)
        assert {job_id: j.state for job_id, j in jobs.items()} == {
            "waiting": "pending", "was-running": "failed", "done": "completed", "logged": "pending"}
        waiting = jobs["waiting"]
        assert (waiting.group, waiting.priority, waiting.timeout) == ("batch", 2, 30.0)
        assert (waiting.after, waiting.unique_key, waiting.retry_on, waiting.blocked_by) == (None, None, None, [])
        assert jobs["done"].cwd == "/tmp"
        assert (jobs["logged"].command, jobs["logged"].max_retries, jobs["logged"].priority) == ("echo hi", 2, 1)
        assert {g.name: (g.parallel, g.paused) for g in c.request(p.GroupList()).groups} == {
            "default": (0, False), "batch": (1, True)}
        c.enqueue_many([{"command": "echo " + "x" * 200, "id": f"fill-{i}", "run_at": 4e9} for i in range(200)])
        wait_for(lambda: _snapshot_magic(journal) == b"QCTLSNP5", what="a format-5 snapshot")
        before = _jobs(c)
    env.stop_daemon()
    env.start_daemon("--workers", "1")
    with Client(env.home, autostart=False) as c:
        assert _jobs(c).keys() == before.keys()
        assert c.show("waiting").group == "batch"
    env.wait_state("logged", "completed")
