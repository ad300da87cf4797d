"""Every command in the README and docs/ names what exists, as written: ``twinflow`` subcommands and
their options (parsed by the CLI itself, nothing run), ``python -m benchmarks.…`` modules and their
options (each module's own argument parser, nothing run), ``make`` targets and the Bytewax
dataflow factories. The integration tests run the commands; this catches a doc that drifted from
them (a renamed option, a removed target) before a user does.
"""

from __future__ import annotations

import argparse
import importlib
import inspect
import re
import shlex
from pathlib import Path

import pytest
import typer
from typer.core import TyperGroup
from typer.main import get_command

ROOT = Path(__file__).resolve().parents[2]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
ENV = re.compile(r"^[A-Z][A-Z0-9_]*=\S*$")  # a leading VAR=value


def documented_commands() -> list[tuple[str, list[str]]]:
    """(where, words) of each command line in the docs' fenced code blocks, comments and leading
    environment assignments left out, continued lines joined."""
    out: list[tuple[str, list[str]]] = []
    for path in DOCS:
        block, pending, start = False, "", 0
        for number, line in enumerate(path.read_text().splitlines(), start=1):
            if line.strip().startswith("```"):
                block, pending = not block, ""
                continue
            if not block:
                continue
            text = line.strip().removeprefix("$ ")
            if pending:
                text = pending + " " + text
            else:
                start = number
            if text.endswith("\\"):
                pending = text[:-1]
                continue
            pending = ""
            for words in shell_commands(text):
                while words and ENV.match(words[0]):
                    words = words[1:]
                if words and (words[0] in ("twinflow", "make") or words[:2] == ["python", "-m"]):
                    out.append((f"{path.relative_to(ROOT)}:{start}", words))
    return out


def shell_commands(text: str) -> list[list[str]]:
    """The words of each command of a shell line (split at ``;``, ``&``, ``&&``, ``|``, ``||``)."""
    lexer = shlex.shlex(text, posix=True, punctuation_chars="&|;")  # (not <>: placeholders like <id>)
    lexer.whitespace_split = True
    lexer.commenters = "#"
    try:
        tokens = list(lexer)
    except ValueError:  # not a shell line (a TOML or JSON example)
        return []
    commands: list[list[str]] = [[]]
    for token in tokens:
        if token in (";", "&", "&&", "|", "||"):
            commands.append([])
        else:
            commands[-1].append(token)
    return [c for c in commands if c]


COMMANDS = documented_commands()


def twinflow_command(words: list[str]) -> None:
    """Parse ``twinflow …`` down to its subcommand with the CLI's own parser (options, their
    types and choices checked; no command callback runs)."""
    from twinflow.cli.main import app

    command = get_command(app)
    ctx = command.make_context("twinflow", list(words[1:]))
    while isinstance(command, TyperGroup):
        args = [*ctx._protected_args, *ctx.args]  # the subcommand and its arguments (Typer's click)
        name, sub, rest = command.resolve_command(ctx, args)
        assert sub is not None and name is not None
        ctx = sub.make_context(name, rest, parent=ctx)
        command = sub


class _Parsed(Exception):
    """Raised instead of running a benchmark once its arguments parsed."""


def module_command(words: list[str], monkeypatch: pytest.MonkeyPatch) -> None:
    """``python -m MODULE ARGS``: a benchmark's arguments parsed by its own parser (its ``main``
    stops right after parsing); a Bytewax run names a dataflow factory that exists."""
    module, args = words[2], words[3:]
    if module == "bytewax.run":
        target = next(a for a in args if ":" in a)
        factory = importlib.import_module(target.split(":")[0])
        assert callable(getattr(factory, target.split(":")[1].split("(")[0], None)), f"no dataflow {target}"
        return
    mod = importlib.import_module(module)
    # (a main that parses otherwise would run here: only argparse's parse_args is stopped)
    assert "parse_args(" in inspect.getsource(mod), f"{module} does not parse its arguments with argparse"
    parse = argparse.ArgumentParser.parse_args

    def parse_then_stop(self: argparse.ArgumentParser, argv: list[str] | None = None, namespace: object = None):
        parse(self, args, namespace)
        raise _Parsed

    monkeypatch.setattr(argparse.ArgumentParser, "parse_args", parse_then_stop)
    monkeypatch.setattr("sys.argv", [module, *args])
    with pytest.raises(_Parsed):
        mod.main()


def make_target(words: list[str]) -> None:
    targets = set(re.findall(r"^([A-Za-z][\w-]*):", (ROOT / "Makefile").read_text(), re.M))
    for target in words[1:]:
        if not target.startswith("-") and "=" not in target:
            assert target in targets, f"no make target {target!r}"


def test_the_docs_have_commands() -> None:
    kinds = {words[0] if words[0] != "python" else words[2].split(".")[0] for _, words in COMMANDS}
    assert {"twinflow", "make", "benchmarks"} <= kinds


def check(words: list[str], monkeypatch: pytest.MonkeyPatch) -> str | None:
    """None when the command parses as written, else why not."""
    try:
        if words[0] == "twinflow":
            twinflow_command(words)
        elif words[0] == "make":
            make_target(words)
        else:
            module_command(words, monkeypatch)
    except (typer.TyperException, SystemExit, AssertionError, ImportError, StopIteration) as exc:
        detail = getattr(exc, "format_message", exc.__repr__)()
        if not re.search(r"file '[^']+' does not exist", detail):  # (an example's input: the user's own file)
            return detail
    return None


@pytest.mark.parametrize(("where", "words"), COMMANDS, ids=[f"{w}" for w, _ in COMMANDS])
def test_documented_command_exists_as_written(where: str, words: list[str], monkeypatch: pytest.MonkeyPatch) -> None:
    problem = check(words, monkeypatch)
    assert problem is None, f"{where}: `{shlex.join(words)}` does not parse: {problem}"


@pytest.mark.parametrize(
    "line",
    [
        "twinflow run pipeline --processes two",
        "twinflow run pipeline --no-such-option",
        "twinflow stak up",
        "twinflow alerts ack",  # its alert id is missing
        "python -m benchmarks.latency --rate 100 --no-such-option",
        "python -m benchmarks.no_such_benchmark",
        "make no-such-target",
        'python -m bytewax.run "twinflow.dataflows:no_such_flow()"',
    ],
)
def test_a_command_that_does_not_exist_is_found(line: str, monkeypatch: pytest.MonkeyPatch) -> None:
    [words] = shell_commands(line)
    assert check(words, monkeypatch) is not None
