"""The rules every store shares: new jobs and a run's outcome."""

from __future__ import annotations

import pytest

from queuectl_client.protocol import MAX_COMMAND_BYTES, MAX_TIME, JobSpec
from queuectld.config import Config
from queuectld.exits import run_end
from queuectld.model import Extras, Job
from queuectld.rules import QueueError, new_jobs, plan_end


def test_a_backoff_past_any_representable_time_is_capped_not_an_overflow() -> None:
    config = Config()
    config.restore("backoff-base", "3600")
    config.restore("backoff-max", "5200w")  # a century: the longest it may be set to
    job = Job("a", "false", 2**31 - 1, 0, None, None, attempts=200)
    outcome = plan_end(job, 1_000.0, 1, "exited with status 1", config)
    assert outcome.state == "failed" and outcome.next_retry_at == 1_000.0 + 5200 * 7 * 86_400
    outcome = plan_end(job, MAX_TIME - 10, 1, "exited with status 1", config)
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


# --- retry rules: (rule field, its list, the run's failure kind, its error) -> state, error -----------------------

EXIT2, EXIT3, EXIT75 = "exited with status 2", "exited with status 3", "exited with status 75"
TIMED_OUT, SILENT, KILLED = "timed out after 5 s", "no output for 1 s", "killed by SIGKILL"

RULE_TABLE = [
    # no rule: every failure is retried
    (None, None, 2, EXIT2, "failed", EXIT2),
    (None, None, "timeout", TIMED_OUT, "failed", TIMED_OUT),
    (None, None, "signal", KILLED, "failed", KILLED),
    # no_retry_on: the listed kinds are dead at once, the rest retried
    ("no_retry_on", [2], 2, EXIT2, "dead", "exited with status 2; exit 2 is not retried"),
    ("no_retry_on", [2], 3, EXIT3, "failed", EXIT3),
    ("no_retry_on", [2], "timeout", TIMED_OUT, "failed", TIMED_OUT),
    ("no_retry_on", ["timeout"], "timeout", TIMED_OUT, "dead", "timed out after 5 s; timeout is not retried"),
    ("no_retry_on", ["timeout"], "timeout", SILENT, "dead", "no output for 1 s; timeout is not retried"),
    ("no_retry_on", ["signal"], "signal", KILLED, "dead", "killed by SIGKILL; signal is not retried"),
    ("no_retry_on", ["signal"], 137, "exited with status 137", "failed", "exited with status 137"),
    ("no_retry_on", [], 2, EXIT2, "failed", EXIT2),
    # retry_on: only the listed kinds are retried
    ("retry_on", [75], 75, EXIT75, "failed", EXIT75),
    ("retry_on", [75], 2, EXIT2, "dead", "exited with status 2; exit 2 is not retried"),
    ("retry_on", [75], "timeout", TIMED_OUT, "dead", "timed out after 5 s; timeout is not retried"),
    ("retry_on", [75], "signal", KILLED, "dead", "killed by SIGKILL; signal is not retried"),
    ("retry_on", [75, "timeout"], "timeout", TIMED_OUT, "failed", TIMED_OUT),
    ("retry_on", ["signal"], "signal", KILLED, "failed", KILLED),
    ("retry_on", [], 1, "exited with status 1", "dead", "exited with status 1; exit 1 is not retried"),
    # a failure without a kind (it could not start, the daemon stopped it) is judged by no rule
    ("retry_on", [75], None, "cannot start: No such file or directory (/gone)", "failed",
     "cannot start: No such file or directory (/gone)"),
    ("retry_on", [], None, "interrupted: daemon stopped while the job ran", "failed",
     "interrupted: daemon stopped while the job ran"),
    # an exit the rule names, without an error message of its own
    ("no_retry_on", [2], 2, None, "dead", "exit 2 is not retried"),
]


@pytest.mark.parametrize(("field", "codes", "failure", "error", "state", "message"), RULE_TABLE)
def test_a_retry_rule_decides_whether_a_failure_with_retries_left_is_retried(
        field: str | None, codes: list[int | str] | None, failure: int | str | None, error: str | None,
        state: str, message: str) -> None:
    rule = {field: codes} if field else {}
    job = Job("a", "x", 3, 0, None, None, extra=Extras(**rule), attempts=1)  # type: ignore[arg-type]
    exit_code = failure if isinstance(failure, int) else None
    outcome = plan_end(job, 100.0, exit_code, error, Config(), failure=failure)
    assert (outcome.state, outcome.error, outcome.exit_code) == (state, message, exit_code)
    assert (outcome.next_retry_at is not None) == (state == "failed")


def test_a_job_without_retries_left_is_dead_with_its_own_error_whatever_its_rule() -> None:
    job = Job("a", "x", 1, 0, None, None, extra=Extras(no_retry_on=[2]), attempts=2)
    outcome = plan_end(job, 100.0, 2, EXIT2, Config(), failure=2)
    assert (outcome.state, outcome.error) == ("dead", EXIT2)


def test_a_cancelled_run_and_a_success_are_not_judged_by_the_rule() -> None:
    job = Job("a", "x", 3, 0, None, None, extra=Extras(retry_on=[]), attempts=1)
    assert plan_end(job, 1.0, None, KILLED, Config(), cancelled=True, failure="signal").error == "cancelled"
    assert plan_end(job, 1.0, 0, None, Config(), failure=None).state == "completed"


def test_backoff_max_caps_the_wait_when_the_run_ends() -> None:
    config = Config()
    config.restore("backoff-base", "60")
    job = Job("a", "false", 5, 0, None, None, attempts=3)
    assert plan_end(job, 10.0, 1, "x", config, failure=1).next_retry_at == 10.0 + 3600  # 60^3 s capped at 1 h
    config.restore("backoff-max", "2")
    assert plan_end(job, 10.0, 1, "x", config, failure=1).next_retry_at == 12.0
    config.restore("backoff-max", "1d")
    assert plan_end(job, 10.0, 1, "x", config, failure=1).next_retry_at == 10.0 + 86_400
    job = Job("a", "false", 5, 0, None, None, attempts=1)
    assert plan_end(job, 10.0, 1, "x", config, failure=1).next_retry_at == 70.0  # under the cap: base ^ k


def test_backoff_max_is_at_least_a_second_and_takes_durations() -> None:
    config = Config()
    assert config.backoff_max == 3600
    assert config.parse("backoff_max", "2") == ("backoff-max", "2")
    assert config.parse("backoff-max", "2h") == ("backoff-max", "7200")
    for bad in ("0.5", "0", "-1", "x", "200y"):
        with pytest.raises(ValueError, match="bad value for backoff-max"):
            config.parse("backoff-max", bad)


def test_a_failure_kind_is_told_from_how_the_run_ended() -> None:
    assert run_end(0, None, None) == (0, None, None)
    assert run_end(2, None, None) == (2, EXIT2, 2)
    assert run_end(-9, None, None) == (None, KILLED, "signal")
    assert run_end(-15, 5.0, None) == (None, TIMED_OUT, "timeout")
    assert run_end(143, 5.0, None) == (143, TIMED_OUT, "timeout")  # its shell trapped the SIGTERM
    assert run_end(-15, None, 1.0) == (None, SILENT, "timeout")
    assert run_end(0, None, 0.5) == (0, "no output for 0.5 s", "timeout")
