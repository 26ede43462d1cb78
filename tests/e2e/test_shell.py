"""`queuectl shell` used the way a person uses it: keys into a terminal (tmux), the screen read back."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator

import pytest

from tests.conftest import Env, Terminal, wait_for

needs_tmux = pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed")

PROMPT = "queuectl> "


@pytest.fixture
def term(env: Env, tmp_path: os.PathLike[str]) -> Iterator[Terminal]:
    env.start_daemon()
    t = Terminal(os.path.join(str(tmp_path), "tmux.sock"), env.env, "queuectl shell")
    yield t
    t.close()


@needs_tmux
def test_the_shell_completes_runs_commands_keeps_history_and_survives_errors(env: Env, term: Terminal) -> None:
    # A small environment: `show` lists it, and the whole job fits on the 30-line screen.
    env.ok("enqueue", "--clean-env", json.dumps({"command": "echo hi", "id": "alpha"}))
    term.wait(PROMPT.rstrip())
    term.wait("pending 1 │")  # the toolbar

    term.type("sta")
    term.key("Tab")
    wait_for(lambda: term.prompt_line().rstrip() == PROMPT + "status", what="`status` completed")
    term.key("Enter")
    term.wait("jobs     pending 1  processing 0")

    term.type("show al")
    term.key("Tab")
    wait_for(lambda: term.prompt_line().rstrip() == PROMPT + "show alpha", what="the job id completed")
    term.key("Enter")
    term.wait("command:    echo hi")

    term.type("list --st")
    term.key("Tab")
    wait_for(lambda: "list --state" in term.prompt_line(), what="a flag completed")
    term.type(" dea")
    term.key("Tab")
    wait_for(lambda: term.prompt_line().rstrip() == PROMPT + "list --state dead", what="a state completed")
    term.key("C-u")

    term.type("config get max-r")
    term.key("Tab")
    wait_for(lambda: term.prompt_line().rstrip() == PROMPT + "config get max-retries", what="a config key")
    term.key("Enter")

    term.type("frobnicate now")
    term.key("Enter")
    term.wait("invalid choice: 'frobnicate'")
    term.type("show nope")
    term.key("Enter")
    term.wait("no job with id 'nope'")
    assert term.prompt_line().rstrip() == PROMPT.rstrip() and not term.dead()

    # Up recalls the last line; Ctrl-R searches the history.
    term.key("Up")
    wait_for(lambda: term.prompt_line().rstrip() == PROMPT + "show nope", what="Up to recall the last command")
    term.key("C-u")
    term.type("clear")
    term.key("Enter")
    wait_for(lambda: "workers  0 busy" not in term.screen(), what="`clear` to clear the screen")
    term.key("C-r")
    term.type("stat")
    wait_for(lambda: any("reverse-i-search" in ln and "status" in ln for ln in term.screen().splitlines()),
             what="Ctrl-R to find `status`")
    term.key("Enter")
    wait_for(lambda: term.prompt_line().rstrip() == PROMPT + "status", what="the found line at the prompt")
    term.key("Enter")
    term.wait("workers  0 busy of 0")

    # The toolbar follows the queue while a line is being typed, and leaves the line alone.
    term.type("lis")
    env.enqueue(command="true", id="beta")
    term.wait("pending 2 │")
    assert term.prompt_line().rstrip() == PROMPT + "lis"
    term.key("C-u")

    term.key("C-d")
    wait_for(term.dead, what="Ctrl-D to leave the shell")
    history = os.path.join(env.home, "shell_history")
    with open(history) as f:
        kept = f.read()
    assert "status" in kept and "frobnicate now" in kept


@needs_tmux
def test_the_shell_reconnects_after_a_daemon_restart_and_top_runs_until_ctrl_c(env: Env, term: Terminal) -> None:
    term.wait(PROMPT.rstrip())
    term.type("status")
    term.key("Enter")
    assert env.daemon is not None
    first = env.daemon.pid
    term.wait(f"daemon   pid {first}")
    env.stop_daemon()
    term.wait("daemon not answering")  # the toolbar noticed
    env.start_daemon()
    assert env.daemon is not None and env.daemon.pid != first
    term.wait("workers 0/0 busy")  # the toolbar is back
    term.type("status")
    term.key("Enter")
    term.wait(f"daemon   pid {env.daemon.pid}")

    term.type("top --interval 0.2")
    term.key("Enter")
    term.wait("queuectl top")
    term.wait("Ctrl-C to leave")
    # A small environment: `show` lists it, and the whole job fits on the 30-line screen.
    env.ok("enqueue", "--clean-env", json.dumps({"command": "true", "id": "gamma"}))
    term.wait("pending 1  processing 0")  # it refreshes by itself
    term.key("C-c")
    wait_for(lambda: term.prompt_line().rstrip() == PROMPT.rstrip(), what="the prompt after Ctrl-C")
    term.type("show gamma")
    term.key("Enter")
    term.wait("command:    true")
    assert not term.dead()


def test_commands_piped_into_the_shell_run_in_order_and_the_last_one_sets_the_status(env: Env) -> None:
    env.start_daemon()
    env.enqueue(command="true", id="one")
    r = env.q("shell", input="status\nshow one --json\nshow nope\n")
    assert r.code == 1 and "pending 1" in r.out and '"id": "one"' in r.out and "no job with id 'nope'" in r.err
    assert env.q("shell", input="show nope\nstatus\n").code == 0
    assert env.q("shell", input="status\nexit\nshow nope\n").code == 0
