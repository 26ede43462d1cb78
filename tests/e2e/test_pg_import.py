"""`queuectld --store URL --import-journal DIR`: a real daemon's journal, moved to PostgreSQL."""

from __future__ import annotations

import json
import os
import signal
import subprocess

import pytest

from queuectl_client.paths import resolve
from tests.conftest import QUEUECTLD, Env

pytest.importorskip("asyncpg")

from queuectld.pg.store import PgStore


def import_journal(env: Env, url: str, *args: str) -> subprocess.CompletedProcess[str]:
    journal = resolve(env.home).journal
    proc = subprocess.run([QUEUECTLD, "--store", url, "--import-journal", journal, "--node", "n1", *args],
                          capture_output=True, text=True, timeout=60, env=env.env)
    assert "Traceback" not in proc.stderr, proc.stderr
    return proc


async def test_a_daemons_journal_is_imported_with_its_jobs_groups_schedules_and_trail(env: Env,
                                                                                     pg_database: str) -> None:
    env.start_daemon()
    env.ok("config", "set", "backoff-base", "60")
    env.ok("group", "add", "slow", "--parallel", "1")
    env.ok("pause", "slow")
    env.ok("schedule", "add", "hourly", "@hourly", '{"command": "date"}', "--tz", "UTC")
    env.ok("enqueue", json.dumps({"id": "ok", "command": "true"}))
    env.ok("enqueue", json.dumps({"id": "bad", "command": "exit 3", "max_retries": 0}))
    env.ok("enqueue", json.dumps({"id": "long", "command": "sleep 60", "max_retries": 2}))
    env.ok("worker", "start", "--count", "2", "--detach")
    env.wait_state("ok", "completed")
    env.wait_state("bad", "dead")
    env.wait_state("long", "processing")
    env.ok("enqueue", json.dumps({"id": "held", "command": "true", "group": "slow"}))
    env.ok("enqueue", json.dumps({"id": "after", "command": "true", "after": ["long"], "unique_key": "k"}))
    env.stop_daemon(signal.SIGKILL)  # `long` was running: the import ends its run as a restart would

    proc = import_journal(env, pg_database)
    assert proc.returncode == 0, proc.stderr
    (summary,) = proc.stdout.splitlines()
    assert summary.startswith("imported 5 jobs (") and "1 interrupted runs ended" in summary
    assert "2 groups, 1 schedules" in summary

    store = PgStore(pg_database, node="n1")
    await store.open()
    try:
        states = {job_id: (await store.get(job_id)).state for job_id in ("ok", "bad", "long", "held", "after")}
        assert states == {"ok": "completed", "bad": "dead", "long": "failed", "held": "pending",
                          "after": "pending"}
        long = await store.get("long")
        assert (long.attempts, long.error_message) == (1, "interrupted: daemon stopped while the job ran")
        assert long.next_retry_at is not None and long.next_retry_at >= long.finished_at + 59  # backoff-base 60
        assert (await store.get("bad")).exit_code == 3
        assert await store.blockers([await store.get("after")]) == {"after": ["long"]}
        assert (await store.get("after")).unique_key == "k"
        assert store.config.backoff_base == 60.0 and store.pool_size == 2
        groups = {g.name: (g.parallel, g.paused) for g in await store.groups()}
        assert groups == {"default": (0, False), "slow": (1, True)}
        (schedule,) = await store.schedules()
        assert (schedule.name, schedule.cron, schedule.zone) == ("hourly", "@hourly", "UTC")
        actions = [e.action for e in await store.audit(0.0, None)]
        assert actions[:3] == ["config set", "group add", "pause"] and "schedule add" in actions
        assert await store.claim(store.clock(), 10) == []  # paused, blocked, backing off
    finally:
        await store.close()

    again = import_journal(env, pg_database)  # never into a queue that holds jobs
    assert again.returncode == 1 and again.stdout == ""
    refusal = [line for line in again.stderr.splitlines() if "cannot import" in line]
    assert len(refusal) == 1 and "the database already holds jobs" in refusal[0], again.stderr


def test_an_import_without_a_database_or_from_no_journal_is_refused_in_one_line(env: Env, pg_database: str) -> None:
    proc = subprocess.run([QUEUECTLD, "--import-journal", "/nonexistent/journal"], capture_output=True, text=True,
                          timeout=60, env={k: v for k, v in env.env.items() if k != "QUEUECTL_STORE"})
    assert proc.returncode == 1 and "--store" in proc.stderr and "Traceback" not in proc.stderr
    proc = subprocess.run([QUEUECTLD, "--store", pg_database, "--import-journal", "/nonexistent/journal"],
                          capture_output=True, text=True, timeout=60, env=env.env)
    assert proc.returncode == 1 and "no journal in /nonexistent/journal" in proc.stderr, proc
    os.makedirs(os.path.join(env.home, "empty"))
    proc = subprocess.run([QUEUECTLD, "--store", pg_database, "--import-journal", os.path.join(env.home, "empty")],
                          capture_output=True, text=True, timeout=60, env=env.env)
    assert proc.returncode == 0 and proc.stdout.startswith("imported 0 jobs (none;"), proc
