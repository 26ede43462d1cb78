"""`queuectl shell`: every CLI command over one open connection, with completion and history.

A line is split like a shell would (`shlex`) and run by the same code as
`queuectl ARGS`, so the syntax, the output and the errors are the CLI's.  A
bottom toolbar shows the counts, polled once a second on a second
connection by a background thread; the prompt redraws it without touching
what is being typed.  A daemon that restarted is noticed before the next
command, which then runs on a new connection.
"""

from __future__ import annotations

import os
import shlex
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator

from prompt_toolkit import PromptSession
from prompt_toolkit.completion import CompleteEvent, Completer, Completion
from prompt_toolkit.document import Document
from prompt_toolkit.history import FileHistory
from prompt_toolkit.patch_stdout import patch_stdout

from . import completions, control
from .connection import Client, DaemonUnavailable, RequestFailed
from .parser import SUBCOMMANDS
from .text import not_utf8

# Runs one command line's words on the shell's connection and returns its exit status (`cli.run_line`).
RunLine = Callable[[Client, list[str]], int]

PROMPT = "queuectl> "
HISTORY_FILE = "shell_history"
BUILTINS = {
    "help": "list the commands; `help COMMAND` for one",
    "clear": "clear the screen",
    "exit": "leave the shell (or Ctrl-D)",
    "quit": "leave the shell",
}
COUNTS_PERIOD = 1.0  # seconds between the toolbar's status requests
LOOKUP_TTL = 2.0  # seconds completion values (ids, keys) are reused


def run_shell(client: Client, run_line: RunLine) -> int:
    if not sys.stdin.isatty():
        # Piped commands: one per line, no prompt, no toolbar; the status is the last command's, as in sh.
        status = 0
        for line in sys.stdin:
            code = execute(client, line, run_line)
            if code is None:
                break
            status = code
        return status
    os.makedirs(client.paths.state, mode=0o700, exist_ok=True)
    counts = Counts(client)
    counts.start()
    session: PromptSession[str] = PromptSession(
        history=FileHistory(os.path.join(client.paths.state, HISTORY_FILE)),
        completer=ShellCompleter(client),
        bottom_toolbar=counts.toolbar,
        refresh_interval=0.5,
    )
    print(f"queuectl shell: {len(SUBCOMMANDS) - 1} commands, Tab completes, `help` lists them, Ctrl-D leaves")
    try:
        while True:
            try:
                with patch_stdout():
                    line = session.prompt(PROMPT)
            except KeyboardInterrupt:
                continue  # Ctrl-C at the prompt clears the line
            except EOFError:
                break
            if execute(client, line, run_line) is None:
                break
    finally:
        counts.stop.set()
    return 0


def execute(client: Client, line: str, run_line: RunLine) -> int | None:
    """Run one line; its exit status, or None to leave the shell."""
    try:
        argv = shlex.split(line)
    except ValueError as e:
        print(f"queuectl: {e}", file=sys.stderr)
        return 2
    if not argv:
        return 0
    problem = not_utf8(argv)
    if problem is not None:  # piped bytes that are not UTF-8
        print(f"queuectl: {problem}", file=sys.stderr)
        return 2
    if argv[0] in ("exit", "quit"):
        return None
    if argv[0] == "clear":
        sys.stdout.write("\x1b[H\x1b[2J")
        sys.stdout.flush()
        return 0
    if argv[0] == "help":
        if len(argv) > 1:
            argv = [argv[1], "--help"]
        else:
            width = max(map(len, [*SUBCOMMANDS, *BUILTINS]))
            for name, (text, _, _) in SUBCOMMANDS.items():
                if name != "shell":
                    print(f"  {name:<{width}}  {text}")
            for name, text in BUILTINS.items():
                print(f"  {name:<{width}}  {text}")
            return 0
    if not client.alive():
        client.close()  # the daemon went away or restarted: the command connects again

    try:
        code = run_line(client, argv)
    except SystemExit as e:  # --help and --version print, then exit
        code = e.code if isinstance(e.code, int) else 0
    if code == 130:
        client.close()  # interrupted mid-reply: start the next command on a fresh connection
    sys.stdout.flush()
    return code


class Counts(threading.Thread):
    """Keeps the toolbar's text: the counts, polled on a connection of its own."""

    def __init__(self, main: Client) -> None:
        super().__init__(name="queuectl-shell-counts", daemon=True)
        self.client = Client(autostart=False, via="shell")
        self.client.paths = main.paths
        self.text = " connecting…"
        self.stop = threading.Event()

    def run(self) -> None:
        while True:
            try:
                st = self.client.status()
                jobs = st.jobs
                self.text = (
                    f" pending {jobs.get('pending', 0)} │ processing {jobs.get('processing', 0)} │ "
                    f"failed {jobs.get('failed', 0)} │ dead {jobs.get('dead', 0)} │ "
                    f"completed {jobs.get('completed', 0)} │ workers {st.workers.busy}/{st.workers.configured} busy"
                )
            except (DaemonUnavailable, RequestFailed, OSError):
                self.client.close()
                self.text = " daemon not answering; a command will start it"
            if self.stop.wait(COUNTS_PERIOD):
                self.client.close()
                return

    def toolbar(self) -> str:
        return self.text


class ShellCompleter(Completer):
    """Commands, actions, flags, states, signals, job ids, dead job ids, group and schedule names, config keys."""

    def __init__(self, main: Client) -> None:
        self.commands = {c.name: c for c in completions._all(completions.model())}
        self.top = [(name, c.help) for name, c in self.commands.items() if " " not in name and name != "shell"]
        self.top += list(BUILTINS.items())
        self.lookup = Client(autostart=False)  # Tab never starts a daemon
        self.lookup.paths = main.paths
        self.lock = threading.Lock()
        self.cache: dict[str, tuple[float, list[str]]] = {}

    def get_completions(self, document: Document, complete_event: CompleteEvent) -> Iterator[Completion]:
        text = document.text_before_cursor
        try:
            words = shlex.split(text)
        except ValueError:
            return
        if not text or text[-1].isspace():
            words.append("")
        cur, before = words[-1], words[:-1]
        for value, meta in self._candidates(before, cur):
            if value.startswith(cur):
                yield Completion(value, start_position=-len(cur), display_meta=meta)

    def _candidates(self, before: list[str], cur: str) -> Iterable[tuple[str, str]]:
        if not before:
            return self.top
        if before[0] == "help":
            return self.top if len(before) == 1 else []
        cmd = self.commands.get(before[0])
        if cmd is None:
            return []
        if cmd.actions:
            if len(before) == 1:
                return [(a.name.split()[-1], a.help) for a in cmd.actions]
            action = self.commands.get(f"{before[0]} {before[1]}")
            if action is None:
                return []
            cmd = action
        flag = next((f for f in cmd.flags if before[-1] in f.names and f.takes_value), None)
        if flag is not None and (flag.choices or flag.kind):
            return [(v, "") for v in flag.choices or self._values(flag.kind or "")]
        if cur.startswith("-"):
            return [(n, f.help) for f in cmd.flags for n in f.names if n.startswith("--")]
        kind = completions.POSITIONAL.get(cmd.name)
        return [(v, "") for v in self._values(kind)] if kind else []

    def _values(self, kind: str) -> list[str]:
        if kind in completions.FIXED:
            return completions.FIXED[kind].split()
        now = time.monotonic()
        hit = self.cache.get(kind)
        if hit and now - hit[0] < LOOKUP_TTL:
            return hit[1]
        with self.lock:
            try:
                values = self._fetch(kind)
            except (DaemonUnavailable, RequestFailed, OSError):
                self.lookup.close()
                values = []
        self.cache[kind] = (now, values)
        return values

    def _fetch(self, kind: str) -> list[str]:
        c = self.lookup
        if kind == "ids":
            return [j.id for j in c.list(None, 1000)]
        if kind == "dead":
            return [j.id for j in c.dlq_list(1000)]
        if kind == "keys":
            return list(c.config_list())
        if kind == "groups":
            return [g.name for g in control.groups(c)]
        if kind == "schedules":
            from .schedules import schedules

            return [s.name for s in schedules(c)]
        return []
