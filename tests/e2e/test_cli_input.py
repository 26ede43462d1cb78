"""Input the CLI refuses in one line with exit 2 (or 3), never an internal error: bytes that are not UTF-8,
numbers out of bounds; and input it takes as meant: a byte-order mark before a JSON line."""

from __future__ import annotations

import subprocess

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
