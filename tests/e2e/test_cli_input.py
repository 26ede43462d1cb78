"""Input the CLI refuses in one line with exit 2 (or 3), never an internal error: bytes that are not UTF-8,
numbers out of bounds; and input it takes as meant: a byte-order mark before a JSON line."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from tests.conftest import QUEUECTL, Env


@pytest.fixture
def d(env: Env) -> Env:
    env.start_daemon()
    return env


def _run(env: Env, *args: bytes, cwd: bytes | None = None, input: bytes | None = None,
         **extra: bytes) -> tuple[int, str, str]:
    """The CLI with arguments, directory and environment given as bytes, as a shell passes them."""
    environ = {k.encode(): v.encode() for k, v in env.env.items()}
    environ.update({k.encode(): v for k, v in extra.items()})
    proc = subprocess.run([QUEUECTL.encode(), *args], cwd=cwd, env=environ, input=input, capture_output=True,
                          timeout=30)
    out, err = proc.stdout.decode(errors="replace"), proc.stderr.decode(errors="replace")
    assert "Traceback" not in err and "internal error" not in err, err
    return proc.returncode, out, err


# --- arguments that are not UTF-8 ---------------------------------------------------


@pytest.mark.parametrize("args", [
    [b"show", b"\xff"], [b"wait", b"\xff"], [b"delete", b"\xff"], [b"logs", b"\xff"], [b"dlq", b"retry", b"\xff"],
    [b"config", b"set", b"\xff", b"1"], [b"config", b"set", b"max-retries", b"\xff"],
    [b"config", b"get", b"job\xfftimeout"], [b"list", b"--state", b"\xff"], [b"enqueue", b'{"command": "echo \xff"}'],
    [b"status", b"--json", b"\xfe"], [b"\xff"],
])
def test_an_argument_that_is_not_utf8_is_refused_naming_it(d: Env, args: list[bytes]) -> None:
    code, out, err = _run(d, *args)
    n = next(i for i, a in enumerate(args, 1) if not _utf8(a))
    shown = args[n - 1].decode(errors="backslashreplace")
    assert code == 2 and err == f"queuectl: argument {n} is not valid UTF-8: {shown}\n", (code, err)
    assert out == ""
    assert d.ok("config", "get", "max-retries").out == "3\n" and d.jobs() == []


def _utf8(arg: bytes) -> bool:
    try:
        arg.decode()
        return True
    except UnicodeDecodeError:
        return False


def test_a_long_or_multiline_argument_is_named_on_one_line(d: Env) -> None:
    code, _, err = _run(d, b"show", b"a\nb\xff" + b"x" * 500)
    assert code == 2 and err.count("\n") == 1 and err.startswith("queuectl: argument 2 is not valid UTF-8: a\\nb\\xff")
    assert len(err) < 120, err


def test_a_shell_line_that_is_not_utf8_is_refused_and_the_shell_goes_on(d: Env) -> None:
    code, out, err = _run(d, b"shell", input=b"show \xff\nconfig get max-retries\n")
    assert err == "queuectl: argument 2 is not valid UTF-8: \\xff\n", err
    assert out == "3\n" and code == 0


# --- a current directory or a home that is not UTF-8 ------------------------------------------


def test_a_current_directory_whose_name_is_not_utf8_is_refused_unless_the_job_names_one(
    d: Env, tmp_path: os.PathLike[str]
) -> None:
    where = os.path.join(os.fsencode(str(tmp_path)), b"bad\xffdir")
    os.mkdir(where)
    job = b'{"command": "pwd"}'
    for args, stdin in (([b"enqueue", job], None), ([b"enqueue", b"-"], job + b"\n")):
        code, _, err = _run(d, *args, cwd=where, input=stdin)
        assert code == 2 and err == "queuectl: the current directory's name is not UTF-8; give the job a cwd\n", err
    assert d.jobs() == []
    code, _, _ = _run(d, b"enqueue", b'{"command": "pwd", "cwd": "/"}', cwd=where)
    assert code == 0 and [j["cwd"] for j in d.jobs()] == ["/"]


@pytest.mark.parametrize("autostart", [b"0", b"1"])
def test_a_home_whose_path_is_not_utf8_exits_3_naming_it(env: Env, autostart: bytes) -> None:
    home = os.fsencode(env.home) + b"/u\xff"
    code, _, err = _run(env, b"status", QUEUECTL_HOME=home, QUEUECTL_NO_AUTOSTART=autostart)
    shown = env.home + "/u\\xff"
    assert code == 3 and err.count("\n") == 1 and shown in err, err
    assert "UnicodeEncodeError" not in err and "\\udc" not in err
    if autostart == b"0":
        assert err == f"queuectl: cannot start queuectld: the path {shown} is not UTF-8, " \
                      "and its home and socket need paths that are\n"
        assert not os.path.exists(home)


# --- numbers out of bounds --------------------------------------------------------------


@pytest.mark.parametrize(("args", "words"), [
    (["list", "--limit", "99999999999999999999"], "--limit: expected a whole number from 0 to 2147483647"),
    (["list", "--limit", "-1"], "--limit: expected a whole number from 0 to 2147483647"),
    (["list", "--limit", "1e3"], "--limit: expected a whole number"),
    (["dlq", "list", "--limit", "99999999999999999999"], "--limit: expected a whole number"),
    (["logs", "x", "--tail", "99999999999999999999"], "--tail/-n: expected a whole number from 0 to 2147483647"),
    (["logs", "x", "-n", "-3"], "--tail/-n: expected a whole number"),
    (["top", "--interval", "1e300"], "--interval: expected a number of seconds from 0.05 to 86400"),
    (["top", "--interval", "1e-9"], "--interval: expected a number of seconds from 0.05 to 86400"),
    (["top", "--interval", "nan"], "--interval: expected a number of seconds"),
    (["top", "--interval", "inf"], "--interval: expected a number of seconds"),
    (["top", "--interval", "0"], "--interval: expected a number of seconds"),
    (["wait", "--timeout", "nan"], "--timeout: expected a number of seconds from 0 to a century"),
    (["wait", "--timeout", "inf"], "--timeout: expected a number of seconds"),
    (["wait", "--timeout", "-1"], "--timeout: expected a number of seconds"),
    (["wait", "--timeout", "1e300"], "--timeout: expected a number of seconds"),
    (["worker", "start", "--count", "99999999999999999999"], "--count must be between 1 and 1024"),
    (["worker", "start", "--count", "-1", "--detach"], "--count must be between 1 and 1024"),
])
def test_a_number_out_of_bounds_is_refused_in_one_line(d: Env, args: list[str], words: str) -> None:
    r = d.q(*args, timeout=10)
    assert r.code == 2 and words in r.err and r.err.count("\n") == 1, r
    assert "internal error" not in r.err and r.out == ""


def test_the_bounds_are_in_the_help(env: Env) -> None:
    assert "0 to 2147483647" in env.ok("list", "--help").out
    assert "0 to 2147483647" in env.ok("dlq", "list", "--help").out
    assert "0 to 2147483647" in env.ok("logs", "--help").out
    assert "0.05 to 86400" in " ".join(env.ok("top", "--help").out.split())
    assert "0 to 3155760000" in " ".join(env.ok("wait", "--help").out.split())
    assert "1 to 1024" in env.ok("worker", "start", "--help").out


def test_numbers_at_the_bounds_are_taken(d: Env) -> None:
    d.enqueue(command="true", id="one", delay=3600)
    assert d.ok("list", "--limit", "2147483647", "--quiet").out == "one\n"
    assert d.ok("list", "--limit", "0", "--quiet").out == ""
    assert d.ok("dlq", "list", "--limit", "2147483647", "--quiet").out == ""
    assert d.ok("logs", "one", "--tail", "2147483647").out.startswith("==> stdout <==")
    assert d.q("wait", "one", "--timeout", "0").code == 124
    assert d.ok("top", "--interval", "0.05").out and d.ok("top", "--interval", "86400").out


# --- a byte-order mark before a JSON line --------------------------------------------------


def test_a_byte_order_mark_before_a_json_line_is_ignored(d: Env, tmp_path: os.PathLike[str]) -> None:
    bom = "\ufeff".encode()
    lines = bom + b'{"command": "echo one", "id": "one"}\r\n' + bom + b'{"command": "echo two", "id": "two"}\n'
    path = os.path.join(str(tmp_path), "jobs.jsonl")
    with open(path, "wb") as f:
        f.write(bom + b'{"command": "echo three", "id": "three"}\n')
    code, out, err = _run(d, b"enqueue", b"-", input=lines)
    assert code == 0 and out == "one\ntwo\n", err
    code, out, err = _run(d, b"enqueue", b"--file", path.encode())
    assert code == 0 and out == "three\n", err
    code, out, err = _run(d, b"enqueue", bom + b'{"command": "echo four", "id": "four"}')
    assert code == 0 and out == "four\n", err
    assert [d.show(i)["command"] for i in ("one", "two", "three", "four")] == [
        "echo one", "echo two", "echo three", "echo four"]
    # Errors still name the line, counted as written; a mark inside a string is kept.
    code, _, err = _run(d, b"enqueue", b"-", input=bom + b'{"command": "true"}\n' + bom + b'{"command": " "}\n')
    assert code == 2 and err.startswith("queuectl: line 2: invalid job: command must not be blank"), err
    inner = json.dumps({"command": "echo \ufeffx", "id": "inner"}, ensure_ascii=False).encode()
    code, _, err = _run(d, b"enqueue", b"-", input=inner + b"\n")
    assert code == 0 and d.show("inner")["command"] == "echo \ufeffx", err


# --- queue control: arguments wrong in themselves, refused before connecting ----------------------


@pytest.mark.parametrize(("args", "words"), [
    (["cancel"], "give job ids, or --state"),
    (["retry"], "give job ids, or --state"),
    (["delete"], "give job ids, or --state"),
    (["cancel", "a", "--state", "pending"], "give job ids or --state, not both"),
    (["delete", "a", "b", "--state", "dead"], "give job ids or --state, not both"),
    (["retry", "--group", "g"], "--group works only with --state"),
    (["delete", "a", "--older-than", "1d"], "--older-than works only with --state"),
    (["cancel", "--state", "dead"], "--state: only waiting and running jobs can be cancelled"),
    (["cancel", "--state", "completed"], "expected pending, failed or processing, not 'completed'"),
    (["retry", "--state", "pending"], "--state: only failed and dead jobs can be retried"),
    (["retry", "--state", "processing"], "expected failed or dead"),
    (["delete", "--state", "processing"], "--state: delete never touches running jobs"),
    (["cancel", "a", "--signal", "FOO"], "--signal/-s: expected a signal name"),
    (["cancel", "a", "--signal", "0"], "--signal/-s: expected a signal name (TERM, INT, KILL, ...) or a number from 1"),
    (["cancel", "a", "-s", "65"], "or a number from 1 to 64, not '65'"),
    (["cancel", "a", "--grace", "-1"], "--grace: expected a number of seconds from 0 to 86400"),
    (["cancel", "a", "--grace", "86401"], "--grace: expected a number of seconds from 0 to 86400"),
    (["cancel", "a", "--grace", "nan"], "--grace: expected a number of seconds"),
    (["cancel", "--state", "pending", "--older-than", "soon"], "--older-than: 'soon' is not a duration"),
    (["prune", "--older-than=-1d"], "--older-than: '-1d' is not a duration"),
    (["prune", "--older-than", "-1d"], "--older-than: expected one argument"),
    (["prune", "--older-than", "200y"], "is not a duration"),
    (["prune", "--older-than", "99999999w"], "is too long (at most a century)"),
    (["prune", "--state", "failed"], "--state: invalid choice: 'failed'"),
    (["edit", "a"], "give at least one change"),
    (["edit", "a", "--priority", "2147483648"], "--priority: expected a whole number from -2147483647 to 2147483647"),
    # Numbers are written in ASCII digits: int() and float() also take other scripts' digits and "1_0".
    (["edit", "a", "--priority", "\u0661\u0662"], "--priority: expected a whole number"),
    (["edit", "a", "--delay", "1_0"], "--delay: expected a number of seconds"),
    (["edit", "a", "--timeout", "\uff11\uff12"], "--timeout: expected seconds"),
    (["edit", "a", "--run-at", "\u0662\u0660\u0662\u0666"], "--run-at: expected an ISO 8601 time"),
    (["group", "add", "x", "--parallel", "\u0663"], "--parallel: expected a whole number"),
    (["cancel", "a", "--signal", "\u0669"], "--signal/-s: expected a signal name"),
    (["cancel", "--state", "pending", "--older-than", "\uff11h"], "is not a duration"),
    (["edit", "a", "--max-retries", "-1"], "--max-retries: expected a whole number from 0"),
    (["edit", "a", "--delay", "-1"], "--delay: expected a number of seconds from 0 to a century"),
    (["edit", "a", "--run-at", "tomorrow"], "--run-at: expected an ISO 8601 time"),
    (["edit", "a", "--run-at", "1e300"], "--run-at: expected a time from 1970 to 9999"),
    (["edit", "a", "--run-at", "now", "--delay", "1"], "--delay: not allowed with argument --run-at"),
    (["edit", "a", "--timeout", "-5"], "--timeout: expected seconds, more than 0"),
    (["edit", "a", "--group", "no/such"], "--group: a group name is 1 to 64 letters"),
    (["list", "--group", "-"], "--group: a group name is"),
    (["list", "--group", "a b"], "--group: a group name is"),
    (["group", "add", "../x"], "a group name is"),
    (["group", "set", "../x", "--parallel", "1"], "a group name is"),
    (["group", "rm", ".hidden"], "a group name is"),
    (["pause", "ok", "../x"], "a group name is"),
    (["resume", "a" * 65], "a group name is"),
    (["group", "add", "x", "--parallel", "-1"], "--parallel: expected a whole number from 0 to 1000000"),
    (["group", "add", "x", "--parallel", "1000001"], "--parallel: expected a whole number from 0 to 1000000"),
    (["group", "set", "x"], "the following arguments are required: --parallel"),
    (["group"], "the following arguments are required: ACTION"),
])
def test_a_control_argument_wrong_in_itself_exits_2_before_connecting(env: Env, args: list[str], words: str) -> None:
    r = env.q(*args, timeout=10)  # no daemon, no autostart: a connection attempt would exit 3
    assert r.code == 2 and words in r.err and r.err.count("\n") == 1, r
    assert r.out == "" and "internal error" not in r.err
    assert not os.path.exists(os.path.join(env.home, "queuectld.sock"))


def test_the_control_commands_bounds_and_examples_are_in_their_help(env: Env) -> None:
    cancel = " ".join(env.ok("cancel", "--help").out.split())
    assert "1 to 64" in cancel and "0 to 86400" in cancel and "queuectl cancel --state" in cancel
    assert "0 to 1000000" in " ".join(env.ok("group", "add", "--help").out.split())
    for args in (["group"], ["pause"], ["resume"], ["retry"], ["rerun"], ["edit"], ["prune"], ["delete"]):
        assert "examples:\n  queuectl " + args[0] in env.ok(*args, "--help").out, args


def test_json_nested_too_deeply_is_refused_in_one_line(d: Env, tmp_path: Path) -> None:
    deep = b"[" * 100_000 + b"]" * 100_000
    batch = tmp_path / "deep.jsonl"
    batch.write_bytes(b'{"command": ' + deep + b"}\n")
    for args, stdin, says in (([b"enqueue", b"-"], deep, "invalid job: Expected `object`, got `array`"),
                              ([b"enqueue", b"--file", str(batch).encode()], None, "Expected `str`, got `array`"),
                              ([b"enqueue", b"-"], b'{"command": ' + deep + b"}", "Expected `str`, got `array`")):
        code, _, err = _run(d, *args, input=stdin)
        assert code == 2 and err.count("\n") == 1 and says in err, (args, err)

