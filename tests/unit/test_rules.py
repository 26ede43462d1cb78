"""The rules every store shares: new jobs and a run's outcome."""

from __future__ import annotations

import pytest

from queuectl_client.protocol import MAX_COMMAND_BYTES, MAX_TIME, JobSpec
from queuectld.config import Config
from queuectld.model import Job
from queuectld.rules import QueueError, new_jobs, plan_end


def test_a_backoff_past_any_representable_time_is_capped_not_an_overflow() -> None:
    config = Config()
    config.restore("backoff-base", "3600")
    job = Job("a", "false", 2**31 - 1, 0, None, None, attempts=200)
    outcome = plan_end(job, 1_000.0, 1, "exited with status 1", config)
    assert outcome.state == "failed" and outcome.next_retry_at == MAX_TIME


def test_backoff_base_1_retries_every_second() -> None:
    config = Config()
    config.restore("backoff-base", "1")
    job = Job("a", "false", 5, 0, None, None, attempts=3)
    assert plan_end(job, 10.0, 1, "x", config).next_retry_at == 11.0


def test_a_command_longer_than_one_exec_argument_is_refused() -> None:
    wide = "é" * (MAX_COMMAND_BYTES // 2 + 1)  # within the character limit, past the byte limit
    with pytest.raises(QueueError, match="longer than one execve argument") as e:
        new_jobs([JobSpec(command=wide, id="w")], 0.0, Config())
    assert e.value.code == "invalid"
    assert new_jobs([JobSpec(command="x" * MAX_COMMAND_BYTES, id="ok")], 0.0, Config())[0].id == "ok"


def test_a_stored_setting_this_version_refuses_is_skipped() -> None:
    config = Config()
    config.restore("max-retries", "99999999999999999999999")
    config.restore("no-such-key", "1")
    assert config.max_retries == 3
