"""Parity: the README's commands give the same output and exit codes on the PostgreSQL store as on
the journal.

Each scenario runs its commands, one by one, against a journal-backed daemon and a PostgreSQL-backed
one (a node on a fresh database), and compares exit code, stdout and stderr once ids that are drawn
at random, times, durations, pids and the homes are normalised.
"""

from __future__ import annotations

import json
import re
import shutil
import tempfile
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import pytest

from tests import pgserver
from tests.conftest import Env, Result, _kill_daemon_of


@dataclass
class Step:
    args: tuple[str, ...]
    input: str | None = None


def c(*args: str, input: str | None = None) -> Step:
    return Step(args, input)


def jobs(*objs: dict[str, object]) -> str:
    return "".join(json.dumps(o) + "\n" for o in objs)


TOUR = [
    c("enqueue", '{"id": "backup", "command": "echo archived; echo warn >&2", "timeout": 600}'),
    c("enqueue", "-", input=jobs({"command": "echo one"}, {"command": "echo two", "priority": 5})),
    c("enqueue", '{"id": "flaky", "command": "exit 1", "max_retries": 0}'),
    c("list"), c("list", "--json"), c("status"),
    c("worker", "start", "--count", "1", "--detach"),
    c("wait", "backup", "flaky", "{P}-1", "{P}-2", "--timeout", "30"),
    c("status"), c("list"), c("list", "--state", "completed", "--quiet"), c("list", "--limit", "1"),
    c("show", "backup"), c("show", "flaky", "--json"), c("why", "backup"), c("why", "flaky"),
    c("logs", "backup"), c("logs", "backup", "--stderr"), c("logs", "backup", "--json"),
    c("logs", "backup", "--tail", "1"),
    c("dlq", "list"), c("dlq", "list", "--json"), c("dlq", "retry", "flaky"),
    c("wait", "flaky", "--timeout", "30"), c("retry", "flaky"), c("wait", "flaky", "--timeout", "30"),
    # (`wait` with no ids waits for what is unfinished when it asks: it asks once flaky is dead again on both)
    c("dlq", "retry", "--all"), c("wait", "flaky", "--timeout", "30"), c("wait", "--timeout", "30"),
    c("show", "nosuch"), c("why", "nosuch"), c("logs", "nosuch"), c("wait", "nosuch", "--timeout", "1"),
    c("enqueue", '{"command": ""}'), c("enqueue", '{"id": "x", "command": "true", "bogus": 1}'),
    c("enqueue", '{"id": "backup", "command": "true"}'),
    c("enqueue", '{"id": "sleeper", "command": "echo going; sleep 30"}'), c("@processing", "sleeper"),
    c("why", "sleeper"), c("cancel", "sleeper"), c("wait", "sleeper", "--timeout", "30"), c("show", "sleeper"),
    c("logs", "sleeper", "--follow"),
    c("prune", "--dry-run"), c("prune", "--state", "dead", "--json"), c("list"),
    c("worker", "stop"), c("status"),
]

CONTROL = [
    c("group", "add", "batch", "--parallel", "1"), c("group", "list"), c("group", "list", "--json"),
    c("enqueue", '{"id": "g1", "command": "true", "group": "batch"}'),
    c("enqueue", '{"id": "g2", "command": "true", "group": "nosuch"}'),
    c("why", "g1"), c("pause", "batch"), c("why", "g1"), c("group", "list"), c("resume", "batch"), c("why", "g1"),
    c("pause"), c("why", "g1"), c("resume"),
    c("edit", "g1", "--priority", "5"), c("edit", "g1", "--delay", "3600"), c("why", "g1"), c("list"),
    c("edit", "g1", "--max-retries", "7", "--timeout", "none", "--json"), c("edit", "nosuch", "--priority", "1"),
    c("cancel", "g1"), c("show", "g1"), c("dlq", "list"), c("retry", "g1"), c("list", "--state", "pending"),
    c("cancel", "--state", "pending", "--json"), c("delete", "g1"), c("list"), c("delete", "g1"),
    c("config", "get", "max-retries"), c("config", "set", "max-retries", "2"), c("config", "get", "max-retries"),
    c("config", "list"), c("config", "get"), c("config", "get", "--json"), c("config", "set", "nosuch", "1"),
    c("config", "set", "max-retries", "-1"),
    c("group", "set", "batch", "--parallel", "3"), c("group", "list"), c("group", "rm", "batch"), c("group", "list"),
    c("group", "rm", "default"),
]

DEPS_UNIQUE = [
    c("enqueue", '{"id": "a", "command": "exit 3", "max_retries": 0}'),
    c("enqueue", '{"id": "b", "command": "echo b"}', "--after", "a"),
    c("enqueue", '{"id": "c", "command": "echo c", "after_any": ["a"]}'),
    c("enqueue", '{"id": "d", "command": "echo d", "after": ["nosuch"]}'),
    c("why", "b"), c("why", "c"), c("list"),
    c("enqueue", '{"id": "u1", "command": "true", "unique_key": "k"}'),
    c("enqueue", '{"id": "u2", "command": "true", "unique_key": "k"}'),
    c("enqueue", '{"id": "u3", "command": "true", "unique_key": "k"}', "--json"),
    c("worker", "start", "--count", "1", "--detach"),
    c("wait", "a", "b", "c", "u1", "--timeout", "30"),
    c("show", "b"), c("why", "b"), c("list"),
    c("enqueue", '{"id": "u4", "command": "true", "unique_key": "k"}'), c("wait", "u4", "--timeout", "30"),
    c("enqueue", '{"id": "e", "command": "true", "delay": 3600}'),
    c("enqueue", '{"id": "f", "command": "true"}', "--after", "e"),
    c("delete", "e"), c("delete", "e", "--cascade", "--json"), c("show", "f"),
    c("delete", "--state", "completed"), c("list"),
]

SCHEDULES = [
    c("schedule", "add", "nightly", "0 3 * * *", '{"command": "true"}'),
    c("schedule", "add", "nightly", "0 3 * * *", '{"command": "true"}'),
    c("schedule", "add", "bad", "nonsense", '{"command": "true"}'),
    c("schedule", "add", "zoned", "30 2 * * 1", '{"command": "true"}', "--tz", "Europe/Paris", "--no-overlap"),
    c("schedule", "list"), c("schedule", "list", "--quiet"), c("schedule", "list", "--json"),
    c("schedule", "pause", "nightly"), c("schedule", "list"), c("schedule", "resume", "nightly"),
    c("schedule", "rm", "nightly"), c("schedule", "rm", "nightly"), c("schedule", "list"),
]

AUDIT = [
    c("enqueue", '{"id": "a1", "command": "true"}'), c("config", "set", "max-retries", "1"),
    c("group", "add", "g", "--parallel", "2"), c("pause", "g"), c("resume", "g"),
    c("worker", "start", "--count", "1", "--detach"), c("wait", "a1", "--timeout", "30"), c("worker", "stop"),
    c("audit"), c("audit", "--limit", "2"), c("audit", "--since", "1h", "--json"),
]

SCENARIOS = {"tour": TOUR, "control": CONTROL, "deps-unique": DEPS_UNIQUE, "schedules": SCHEDULES, "audit": AUDIT}

# Differences found so far, each a defect of the PostgreSQL store: scenario -> reason.
KNOWN: dict[str, str] = {}  # scenario -> a known difference, marked as an expected failure

_ISO = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d(:\d\d(\.\d+)?)?(Z|[+-]\d\d:?\d\d)?")
_DURATION = re.compile(r"\b\d+(\.\d+)?\s?(µs|us|ms|s|m|h|d|w|y)\b(\s+\d+(\.\d+)?\s?(µs|us|ms|s|m|h|d|w|y)\b)*")
_CLOCK = re.compile(r"\b\d\d:\d\d(:\d\d)?\b")
_PID = re.compile(r"\b(pid|\"pid\":)\s?\d+")
_EPOCH = re.compile(r"\b1[6-9]\d{8}(\.\d+)?\b")


class Side:
    """One daemon of the comparison, and how to normalise what its CLI prints."""

    def __init__(self, env: Env) -> None:
        self.env = env
        self.prefix: str | None = None  # the random prefix of ids drawn by the daemon

    def run(self, step: Step) -> tuple[int, str, str]:
        args = [a.replace("{P}", self.prefix or "{P}") for a in step.args]
        if args[0] == "@processing":  # not a command: wait until the job runs
            self.env.wait_state(args[1], "processing")
            return 0, "", ""
        r: Result = self.env.q(*args, input=step.input, timeout=60)
        out = r.out
        if step.args == ("status",) and self.env.store is not None:  # its nodes section: the PostgreSQL store's own
            out = re.sub(r"^nodes .*\n(^ {9}\S.*\n)*", "", out, flags=re.M)
        if step.args[0] == "enqueue" and r.code == 0 and self.prefix is None:
            for line in r.out.split():
                if re.fullmatch(r"[0-9a-z]{6,12}-\d+", line):
                    self.prefix = line.rsplit("-", 1)[0]
        return r.code, self.norm(out), self.norm(r.err)

    def norm(self, text: str) -> str:
        text = text.replace(self.env.home, "<HOME>")
        if self.prefix:
            text = re.sub(rf"\b{re.escape(self.prefix)}\b", "<P>", text)
        text = _ISO.sub("<T>", text)
        text = _EPOCH.sub("<E>", text)
        text = _PID.sub(r"\1 <PID>", text)
        text = _DURATION.sub("<D>", text)
        text = _CLOCK.sub("<HH:MM>", text)
        text = re.sub(r"<D> ago|\bnow\b", "<REL>", text)  # "now" or "1s ago": when the command ran
        # Columns are padded to their widest cell: a normalised value changes the padding.
        return "\n".join(re.sub(r" {2,}", "  ", line.rstrip()) for line in text.split("\n"))


def same_json(a: tuple[int, str, str], b: tuple[int, str, str]) -> bool:
    """Whether two answers are the same JSON: the order of an object's keys means nothing (the env of
    a job read back from PostgreSQL's jsonb comes in jsonb's order, not the enqueuer's)."""
    try:
        return a[0] == b[0] and a[2] == b[2] and json.loads(a[1]) == json.loads(b[1])
    except ValueError:
        return False


@pytest.fixture
def sides(home: str, pg_database: str) -> Iterator[tuple[Side, Side]]:
    pg_home = tempfile.mkdtemp(prefix="qc-pg-", dir="/tmp")
    journal, pg = Env(home), Env(pg_home, store=pg_database)  # the node named after the host, as the journal's worker
    yield Side(journal), Side(pg)
    for e in (journal, pg):
        if e.daemon is not None and e.daemon.poll() is None:
            e.daemon.kill()
            e.daemon.wait()
        _kill_daemon_of(e.home)
    shutil.rmtree(pg_home, ignore_errors=True)


@pytest.mark.parametrize("scenario", [pytest.param(name, marks=[pytest.mark.xfail(strict=True, reason=KNOWN[name])]
                                                    if name in KNOWN else []) for name in SCENARIOS])
def test_the_postgresql_store_answers_every_command_as_the_journal_does(
        sides: tuple[Side, Side], scenario: str) -> None:
    journal, pg = sides
    journal.env.start_daemon("--workers", "0")
    pg.env.start_daemon("--workers", "0")
    differences = []
    with ThreadPoolExecutor(2) as both:  # the two sides at once: half the time
        for step in SCENARIOS[scenario]:
            want, got = both.map(Side.run, (journal, pg), (step, step))
            if want != got and not same_json(want, got):
                differences.append(f"$ queuectl {' '.join(step.args)}\n  journal: {want!r}\n  postgres: {got!r}")
    assert not differences, f"{len(differences)} commands differ:\n" + "\n".join(differences)
    # The second side did keep its queue in PostgreSQL: every change it made is in its audit table.
    [rows] = pgserver.execute(pg.env.store or "", "SELECT count(*) AS n FROM queuectl_audit")
    assert rows[0]["n"] > 0  # type: ignore[index]
