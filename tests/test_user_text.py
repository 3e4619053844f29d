"""User-facing text cites the method papers by authors and year (Chen et al. 2022, Gerace et al.
2023, ...: docs/references.md), never by the numbers of the seed files they came in, which users
have never seen. tests/test_architecture.py checks the same of the code, README and docs."""

from __future__ import annotations

import re

import pytest
import typer

import advisor
from advisor.cli.app import app

INTERNAL = re.compile(r"seeds?[\s_-]*0\d\d", re.IGNORECASE)  # a seed file number, spaced or not


def _command_paths(cmd, path: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    """Every command and sub-command of the click tree, as its argv prefix (the root is ())."""
    paths = [path]
    for name, sub in sorted(getattr(cmd, "commands", {}).items()):  # a group (typer may vendor its own click)
        if not getattr(sub, "hidden", False):
            paths += _command_paths(sub, path + (name,))
    return paths


COMMANDS = _command_paths(typer.main.get_command(app))


def _flat(text: str) -> str:
    """Help as one line: rich's panel borders dropped and whitespace collapsed, so a phrase that
    wraps across lines is still found."""
    return " ".join(re.sub(r"[\u2500-\u257f]", " ", text).split())


def test_the_command_tree_is_walked():
    assert () in COMMANDS and len(COMMANDS) > 5
    assert any(len(p) == 2 for p in COMMANDS)  # sub-commands of the groups (cache, domain)


@pytest.mark.parametrize("path", COMMANDS, ids=lambda p: " ".join(p) or "advisor")
def test_help_cites_papers_by_author(run_cli, monkeypatch, path):
    monkeypatch.setenv("COLUMNS", "200")
    code, out, err = run_cli(*path, "--help")
    assert code == 0, err
    assert "Usage" in out
    text = _flat(out)
    assert not INTERNAL.search(text), text


def test_estimator_descriptions_cite_papers_by_author():
    estimators = advisor.list_estimators()
    assert estimators
    for e in estimators:
        assert not INTERNAL.search(e.description), (e.name, e.description)
