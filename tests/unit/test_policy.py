"""The command policy file: globs and `re:` patterns against the whole command, comments, and errors
that name FILE:LINE."""

from __future__ import annotations

import os
import time

import pytest

from queuectld.policy import CHECK_BUDGET, NOT_ALLOWED, Policy, PolicyError, parse, shown


def policy(text: str) -> Policy:
    return Policy("p", parse(text, "p"))


def test_a_glob_matches_the_whole_command_only() -> None:
    pol = policy("echo *\nmake test\n/usr/bin/backup-[ab]\n")
    assert pol.allows("echo hello world")
    assert pol.allows("make test")
    assert not pol.allows("make test; rm -rf ~")  # not a prefix match
    assert not pol.allows("sudo make test")
    assert pol.allows("/usr/bin/backup-a") and not pol.allows("/usr/bin/backup-c")
    assert not pol.allows("Make test")  # case-sensitive


def test_re_patterns_must_match_the_whole_command() -> None:
    pol = policy(r"re:sleep [0-9]+" + "\n" + r"re:./report\.sh --day [0-9]{4}-[0-9]{2}-[0-9]{2}")
    assert pol.allows("sleep 10")
    assert not pol.allows("sleep 10; reboot")
    assert not pol.allows("xsleep 10")
    assert pol.allows("./report.sh --day 2026-11-29")
    assert not pol.allows("./report.sh --day 2026-11-29 && curl evil")


def test_blank_lines_comments_and_surrounding_spaces_are_not_patterns() -> None:
    pol = policy("\n# a comment\n   # an indented comment\n\n   true   \n")
    assert len(pol.patterns) == 1
    assert pol.allows("true")
    assert not pol.allows("# a comment")


def test_a_policy_without_patterns_allows_nothing() -> None:
    pol = policy("# nothing yet\n")
    assert pol.patterns == [] and not pol.allows("true")
    assert pol.check("true") == NOT_ALLOWED


def test_a_bad_regular_expression_names_its_file_and_line() -> None:
    with pytest.raises(PolicyError, match=r"^p:4: bad regular expression '\(unclosed': missing \)"):
        parse("true\n# two\n\nre:(unclosed\n", "p")
    for bad in ("a{99999999999}", "(" * 5000 + ")" * 5000, "x\\"):
        with pytest.raises(PolicyError, match=r"^p:2: bad regular expression '.*': \S"):
            parse(f"true\nre:{bad}\n", "p")


def test_a_pattern_that_backtracks_without_end_refuses_the_command_within_the_budget() -> None:
    pol = Policy("p", parse("true\nre:(a+)+$\nre:(x|xx)+y\n", "p"))
    started = time.monotonic()
    # (50,000: the `regex` module gives up on 5,000 in about the budget itself, so that length proved nothing)
    assert pol.check("a" * 50_000 + "!") == f"{NOT_ALLOWED} (matching it against p:2 took over {CHECK_BUDGET:g} s)"
    assert pol.first_refused(["true", "a" * 40, "x" * 5000 + "!"]) == (
        "x" * 5000 + "!", f"{NOT_ALLOWED} (matching it against p:3 took over {CHECK_BUDGET:g} s)")
    assert time.monotonic() - started < 60  # bounded, not a timing bar: without the timeout it never ends
    assert pol.allows("a" * 40) and pol.allows("true")


def test_a_file_that_cannot_be_read_or_is_not_text_is_refused(tmp_path: os.PathLike[str]) -> None:
    missing = os.path.join(tmp_path, "missing")
    with pytest.raises(PolicyError, match="missing: cannot read the command policy: No such file"):
        Policy.load(missing)
    binary = os.path.join(tmp_path, "binary")
    with open(binary, "wb") as f:
        f.write(b"true\n\xff\xfe\n")
    with pytest.raises(PolicyError, match="binary:2: not UTF-8 text"):
        Policy.load(binary)


def test_reload_keeps_the_patterns_in_force_when_the_file_went_bad(tmp_path: os.PathLike[str]) -> None:
    path = os.path.join(tmp_path, "allow")
    with open(path, "w") as f:
        f.write("true\n")
    pol = Policy.load(path)
    with open(path, "w") as f:
        f.write("re:[\n")
    with pytest.raises(PolicyError, match="allow:1:"):
        pol.reload()
    assert pol.allows("true") and len(pol.patterns) == 1
    with open(path, "w") as f:
        f.write("false\n")
    pol.reload()
    assert pol.allows("false") and not pol.allows("true")
    assert pol.info().patterns == 1 and pol.info().file == path


def test_the_first_refused_command_of_a_batch_is_named() -> None:
    pol = policy("echo *")
    assert pol.first_refused(["echo a", "echo b"]) is None
    assert pol.first_refused(["echo a", "rm x", "rm y"]) == ("rm x", NOT_ALLOWED)


def test_a_refused_command_is_shown_on_one_line_escaped_and_shortened() -> None:
    assert shown("echo\n  a\tb") == "echo a b"
    assert shown("printf '\x1b[2J'") == "printf '\\x1b[2J'"
    long = shown("x" * 500)
    assert len(long) == 60 and long.endswith("…")
