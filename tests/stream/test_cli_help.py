"""Every command documents itself with examples (sqlite-utils style)."""

from __future__ import annotations

import click
import pytest
from click.testing import CliRunner

from stream.cli import main


def _walk(group: click.Group, prefix: tuple[str, ...] = ()):
    for name, command in group.commands.items():
        yield (*prefix, name), command
        if isinstance(command, click.Group):
            yield from _walk(command, (*prefix, name))


COMMANDS = list(_walk(main))


def test_top_level_help_lists_core_commands():
    result = CliRunner().invoke(main, ["--help"])
    assert result.exit_code == 0
    for name in ["broker", "worker", "sink", "simulate", "ingest", "score", "sql", "demo"]:
        assert name in main.commands, f"`swingdial {name}` is missing"
        assert name in result.output


@pytest.mark.parametrize("path", [p for p, _ in COMMANDS], ids=" ".join)
def test_every_command_has_help_with_an_example(path):
    command = dict(COMMANDS)[path]
    result = CliRunner().invoke(main, [*path, "--help"])
    assert result.exit_code == 0, result.output
    if not isinstance(command, click.Group):
        assert "Example" in result.output, f"`swingdial {' '.join(path)} --help` has no example"
