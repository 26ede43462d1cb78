"""The client's modules keep to their layers: no import circles, no module doing two things."""

from __future__ import annotations

import ast
import os

import queuectl_client

PACKAGE = os.path.dirname(queuectl_client.__file__)


def _imports(module: str) -> set[str]:
    """The client modules `module` imports anywhere in its source (at the top or inside a function)."""
    with open(os.path.join(PACKAGE, module + ".py")) as f:
        tree = ast.parse(f.read())
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.level == 1:
            found.update([node.module] if node.module else [a.name for a in node.names])
    return found


def test_the_cli_the_shell_and_completions_do_not_import_each_other_in_a_circle() -> None:
    assert "cli" not in _imports("shell") | _imports("completions") | _imports("parser")
    assert "shell" not in _imports("completions") | _imports("parser")
    assert "completions" not in _imports("parser")


def test_every_client_module_stays_under_400_lines() -> None:
    for name in os.listdir(PACKAGE):
        if name.endswith(".py"):
            with open(os.path.join(PACKAGE, name)) as f:
                assert sum(1 for _ in f) < 400, name
