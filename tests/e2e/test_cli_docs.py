"""What the README says about settings and job fields is what the program does."""

from __future__ import annotations

import os
import re

from tests.conftest import Env

README = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "README.md")


def _readme() -> str:
    with open(README) as f:
        return f.read()


def test_the_readmes_config_set_examples_print_what_the_program_prints(env: Env) -> None:
    env.start_daemon()
    text = _readme()
    examples = re.findall(r"^\$ queuectl (config set \S+ \S+)\n((?:[^$`\n].*\n)*)", text, re.M)
    assert any(cmd == "config set backoff-base 0.5" for cmd, _ in examples), examples
    for cmd, shown in examples:
        r = env.q(*cmd.split())
        assert r.out + r.err == shown, (cmd, r)


def test_any_backoff_base_from_1_is_taken_as_the_readme_says(env: Env) -> None:
    env.start_daemon()
    assert "must be > 1" not in _readme()
    assert "at least 1 (1: retry every second)" in _readme()
    env.ok("config", "set", "backoff-base", "1")
    assert env.ok("config", "get", "backoff-base").out == "1\n"
    r = env.q("config", "set", "backoff-base", "0.99")
    assert r.code == 2 and "at least 1" in r.err, r


def test_job_timeout_0_is_none_and_a_null_field_is_not_given(env: Env) -> None:
    env.start_daemon()
    assert "`none` (or `0`) for no limit" in _readme() and '`"timeout": null` takes the `job-timeout`' in _readme()
    env.ok("config", "set", "job-timeout", "0")
    assert env.ok("config", "get", "job-timeout").out == "none\n"
    assert env.show(env.enqueue(command="true", timeout=None))["timeout"] is None
    env.ok("config", "set", "job-timeout", "600")
    env.ok("config", "set", "max-retries", "7")
    for job_id in (env.enqueue(command="true", timeout=None, max_retries=None),
                   env.ok("enqueue", "-", input='{"command": "true", "timeout": null}\n').out.strip()):
        job = env.show(job_id)
        assert job["timeout"] == 600 and job["max_retries"] == 7, job
