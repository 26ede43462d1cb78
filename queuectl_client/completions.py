"""`queuectl completions bash|zsh|fish`: completion scripts generated from the CLI's parser.

Commands, actions and flags come from the argparse definitions, so the
scripts cannot drift from the CLI; so do the values of a flag with choices
(a command's states).  Other values come from the daemon when the user
presses Tab: job ids (`queuectl list --quiet`), dead job ids, group names,
config keys, schedule names; the names of exported variables (`enqueue
--env`) from the shell; signals and shells are fixed lists.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import dataclass, field

from .parser import SUBCOMMANDS, build_parser
from .wire import STATES

# Where a command's positional argument takes its values from.
POSITIONAL = {
    "show": "ids", "logs": "ids", "delete": "ids", "wait": "ids", "cancel": "ids", "retry": "ids", "rerun": "ids",
    "edit": "ids", "dlq retry": "dead", "config get": "keys", "config set": "keys", "completions": "shells",
    "pause": "groups", "resume": "groups", "group set": "groups", "group rm": "groups", "why": "ids",
    "schedule rm": "schedules", "schedule pause": "schedules", "schedule resume": "schedules",
}
# What each kind of value is, as a shell command (run at Tab time) or a fixed list.
DYNAMIC = {
    "ids": "QUEUECTL_NO_AUTOSTART=1 queuectl list --quiet --limit 1000 2>/dev/null",
    "dead": "QUEUECTL_NO_AUTOSTART=1 queuectl dlq list --quiet --limit 1000 2>/dev/null",
    "keys": 'QUEUECTL_NO_AUTOSTART=1 queuectl config list 2>/dev/null | cut -d" " -f1',
    "groups": "QUEUECTL_NO_AUTOSTART=1 queuectl group list --quiet 2>/dev/null",
    "variables": "env | cut -d= -f1",  # the names exported here (for `enqueue --env NAME`)
    "schedules": "QUEUECTL_NO_AUTOSTART=1 queuectl schedule list --quiet 2>/dev/null",
}
FIXED = {"states": " ".join(STATES), "shells": "bash zsh fish", "signals": "TERM INT HUP KILL QUIT USR1 USR2"}
# The values of flags without choices in the parser.
FLAG_VALUES = {"--group": "groups", "--signal": "signals", "--after": "ids", "--env": "variables"}
FILE_FLAGS = {("enqueue", "--file"), ("dashboard", "--token-file")}


@dataclass
class Flag:
    names: list[str]
    takes_value: bool
    help: str
    choices: list[str] = field(default_factory=list)  # its values, from the parser
    kind: str | None = None  # else the kind of its values (FIXED, DYNAMIC)


@dataclass
class Command:
    name: str  # "list", or "dlq retry" for an action
    help: str
    flags: list[Flag] = field(default_factory=list)
    actions: list[Command] = field(default_factory=list)


def model() -> list[Command]:
    """Every command and action with its flags, read from the parser."""
    commands = []
    for name, (help_text, _, _) in SUBCOMMANDS.items():
        parser = _subparsers(build_parser([name]))[name]
        commands.append(_command(name, help_text, parser))
    return commands


def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def _command(name: str, help_text: str, parser: argparse.ArgumentParser) -> Command:
    cmd = Command(name, help_text)
    for action in parser._actions:
        if action.option_strings and not isinstance(action, argparse._HelpAction):
            names = list(action.option_strings)
            cmd.flags.append(Flag(names, action.nargs != 0, action.help or "", [str(c) for c in action.choices or ()],
                                  None if action.choices else FLAG_VALUES.get(names[0])))
        if isinstance(action, argparse._SubParsersAction):
            helps = {a.dest: a.help or "" for a in action._choices_actions}
            for sub_name, sub in action.choices.items():
                cmd.actions.append(_command(f"{name} {sub_name}", helps.get(sub_name, ""), sub))
    cmd.flags.append(Flag(["--help", "-h"], False, "show help"))
    return cmd


def script(shell: str) -> str:
    return {"bash": _bash, "zsh": _zsh, "fish": _fish}[shell](model())


def _flag_names(cmd: Command) -> str:
    return " ".join(n for f in cmd.flags for n in f.names)


def _all(commands: list[Command]) -> list[Command]:
    return [c for cmd in commands for c in [cmd, *cmd.actions]]


# --- bash ---------------------------------------------------------------------


def _cases(commands: list[Command], offer: Callable[[str], str], values: Callable[[str], str], paren: str) -> str:
    """One `case` branch per command and action: the values of the flag before the cursor, else its actions
    and flags, or its positional values.

    `offer(words)` is the shell's statement offering fixed words, `values(kind)` the one offering a kind
    of value; `paren` is "(" where the shell wants case patterns opened.
    """
    cases = []
    for cmd in _all(commands):
        pattern = cmd.name.replace(" ", "\\ ")
        branches = []  # (test, statement)
        for flag in cmd.flags:
            then = offer(" ".join(flag.choices)) if flag.choices else values(flag.kind) if flag.kind else None
            if then:
                branches.append(("[[ " + " || ".join(f"$prev == {n}" for n in flag.names) + " ]]", then))
        if cmd.actions:
            rest = offer(" ".join(a.name.split()[-1] for a in cmd.actions) + " " + _flag_names(cmd))
        elif cmd.name in POSITIONAL:
            branches.append(("[[ $cur == -* ]]", offer(_flag_names(cmd))))
            rest = values(POSITIONAL[cmd.name])
        else:
            rest = offer(_flag_names(cmd))
        body = rest
        if branches:
            body = "; el".join(f"if {test}; then {then}" for test, then in branches) + f"; else {rest}; fi"
        cases.append(f"        {paren}{pattern}) {body} ;;")
    return "\n".join(cases)


def _file_test(command: str) -> str:
    """The shell test for a flag whose value is a file name (FILE_FLAGS), `command` naming the command word."""
    return " || ".join(f"($prev == {flag} && {command} == {name})" for name, flag in sorted(FILE_FLAGS))


def _bash(commands: list[Command]) -> str:
    def values(kind: str) -> str:
        return f'words="$({DYNAMIC[kind]})"' if kind in DYNAMIC else f'words="{FIXED[kind]}"'

    cases = _cases(commands, lambda words: f'words="{words}"', values, "")
    top = " ".join(c.name for c in commands) + " --help --version"
    return f"""# bash completion for queuectl (generated by `queuectl completions bash`)
_queuectl() {{
    local cur=${{COMP_WORDS[COMP_CWORD]}} prev=${{COMP_WORDS[COMP_CWORD-1]}} words="" key
    if [[ $COMP_CWORD -eq 1 ]]; then
        COMPREPLY=($(compgen -W "{top}" -- "$cur"))
        return
    fi
    if [[ {_file_test("${COMP_WORDS[1]}")} ]]; then
        COMPREPLY=($(compgen -f -- "$cur"))
        return
    fi
    # The command, and its action when it has them ("dlq retry").
    key=${{COMP_WORDS[1]}}
    if [[ $COMP_CWORD -gt 2 && " {' '.join(c.name for c in commands if c.actions)} " == *" $key "* ]]; then
        key="$key ${{COMP_WORDS[2]}}"
    fi
    case $key in
{cases}
    esac
    COMPREPLY=($(compgen -W "$words" -- "$cur"))
}}
complete -F _queuectl queuectl
"""


# --- zsh ----------------------------------------------------------------------


def _zsh(commands: list[Command]) -> str:
    def values(kind: str) -> str:
        if kind in DYNAMIC:
            return f'compadd -- ${{(f)"$({DYNAMIC[kind]})"}}'
        return f"compadd -- {FIXED[kind]}"

    def esc(text: str) -> str:
        return text.replace("'", "'\\''").replace(":", "\\:")

    described = "\n".join(f"        '{c.name}:{esc(c.help)}'" for c in commands)
    cases = _cases(commands, lambda words: f"compadd -- {words}", values, "(")
    return f"""#compdef queuectl
# zsh completion for queuectl (generated by `queuectl completions zsh`)
_queuectl() {{
    local cur=${{words[CURRENT]}} prev=${{words[CURRENT-1]}} key
    local -a commands
    commands=(
{described}
    )
    if (( CURRENT == 2 )); then
        _describe -t commands 'queuectl command' commands
        return
    fi
    if [[ {_file_test("${words[2]}")} ]]; then
        _files
        return
    fi
    key=${{words[2]}}
    if (( CURRENT > 3 )) && [[ " {' '.join(c.name for c in commands if c.actions)} " == *" $key "* ]]; then
        key="$key ${{words[3]}}"
    fi
    case $key in
{cases}
    esac
}}
if [[ $funcstack[1] == _queuectl ]]; then
    _queuectl "$@"
else
    compdef _queuectl queuectl
fi
"""


# --- fish ---------------------------------------------------------------------


def _fish(commands: list[Command]) -> str:
    def esc(text: str) -> str:
        return text.replace("\\", "\\\\").replace("'", "\\'")

    lines = [
        "# fish completion for queuectl (generated by `queuectl completions fish`)",
        "complete -c queuectl -f",
        "complete -c queuectl -n __fish_use_subcommand -l version -d 'print the version'",
    ]
    for cmd in commands:
        lines.append(f"complete -c queuectl -n __fish_use_subcommand -a {cmd.name} -d '{esc(cmd.help)}'")
    for cmd in _all(commands):
        words = cmd.name.split()
        if len(words) == 1:
            cond = f"__fish_seen_subcommand_from {words[0]}"
            if any(c.name == words[0] and c.actions for c in commands):
                actions = " ".join(a.name.split()[-1] for a in next(c for c in commands if c.name == words[0]).actions)
                lines.append(f"complete -c queuectl -n '{cond}; and not __fish_seen_subcommand_from {actions}' "
                             f"-a '{actions}'")
                cond = f"{cond}; and not __fish_seen_subcommand_from {actions}"
        else:
            cond = f"__fish_seen_subcommand_from {words[0]}; and __fish_seen_subcommand_from {words[1]}"
        for flag in cmd.flags:
            opts = " ".join(f"-l {n[2:]}" if n.startswith("--") else f"-s {n[1:]}" for n in flag.names)
            extra = ""
            if flag.takes_value:
                extra = " -r -F" if (words[0], flag.names[0]) in FILE_FLAGS else " -x"
                if flag.choices:
                    extra += f" -a '{' '.join(flag.choices)}'"
                elif flag.kind:
                    extra += f" -a '({DYNAMIC[flag.kind]})'" if flag.kind in DYNAMIC else f" -a '{FIXED[flag.kind]}'"
            lines.append(f"complete -c queuectl -n '{cond}' {opts}{extra} -d '{esc(flag.help)}'")
        kind = POSITIONAL.get(cmd.name)
        if kind:
            source = f"({DYNAMIC[kind]})" if kind in DYNAMIC else FIXED[kind]
            lines.append(f"complete -c queuectl -n '{cond}' -a '{source}'")
    return "\n".join(lines) + "\n"
