"""Every ``twinflow`` command's ``--help`` renders (help texts are Rich markup: a bare ``[opcua]`` or
``[/PATH]`` in one is a markup error, a traceback instead of the help)."""

from __future__ import annotations

from collections.abc import Iterator

import click
import pytest
from typer.main import get_command
from typer.testing import CliRunner

from twinflow.cli.main import app


def _commands(cmd: click.Command, path: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    yield path
    for name, sub in getattr(cmd, "commands", {}).items():
        yield from _commands(sub, (*path, name))


@pytest.mark.parametrize("path", list(_commands(get_command(app))), ids=" ".join)
def test_help_renders(path: tuple[str, ...]) -> None:
    result = CliRunner().invoke(app, [*path, "--help"], env={"COLUMNS": "120"})
    assert result.exit_code == 0, f"twinflow {' '.join(path)} --help: {result.exception!r}"
    assert "Usage" in result.output
