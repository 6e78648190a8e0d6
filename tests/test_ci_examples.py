"""The copy-ready CI examples (examples/ci/*.yml) only call `compress` the way the CLI accepts: every
command line in them is parsed by the real command-line parser (known command, known options, valid values)."""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Any, Iterator

import pytest
import typer
import yaml

from compress.cli import app

EXAMPLES = sorted((Path(__file__).parent.parent / "examples" / "ci").glob("*.yml"))


def shell_snippets(node: Any) -> Iterator[str]:
    """Every shell script in a workflow: GitHub's `run:` blocks, GitLab's `script:` lists."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "run" and isinstance(value, str):
                yield value
            elif key in ("script", "before_script", "after_script"):
                yield from ([value] if isinstance(value, str) else [str(v) for v in value])
            else:
                yield from shell_snippets(value)
    elif isinstance(node, list):
        for item in node:
            yield from shell_snippets(item)


def compress_commands(path: Path) -> list[list[str]]:
    """The `compress ...` command lines of a workflow file, split into words as the shell would."""
    commands = []
    for snippet in shell_snippets(yaml.safe_load(path.read_text())):
        for line in snippet.replace("\\\n", " ").splitlines():
            words = shlex.split(line, comments=True)
            if words and words[0] == "compress":
                commands.append(words[1:])
    return commands


def parse(words: list[str]) -> str:
    """Parse ``compress COMMAND ARGS...`` with the CLI's own parser without running it; return COMMAND."""
    group = typer.main.get_command(app)
    parent = group.make_context("compress", [], resilient_parsing=True)  # the common options are not used here
    command = group.get_command(parent, words[0])  # type: ignore[attr-defined]
    assert command is not None, f"no command '{words[0]}'"
    command.make_context(words[0], words[1:], parent=parent)  # a usage error on an unknown option or bad value
    return words[0]


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.name for p in EXAMPLES])
def test_every_compress_command_in_the_ci_examples_parses(path: Path) -> None:
    commands = compress_commands(path)
    assert commands, f"{path.name} calls no compress command"
    for words in commands:
        assert parse(words) in {"run", "validate"}, words
    assert any("--junit" in words for words in commands)  # the examples publish the gates as tests


def test_the_parser_catches_an_option_the_cli_does_not_know() -> None:
    assert parse(["run", "pipelines/fashion_mnist_ci.yaml", "--junit", "gates.xml"]) == "run"
    with pytest.raises(typer.TyperException, match="No such option: --junit-xml"):
        parse(["run", "pipelines/fashion_mnist_ci.yaml", "--junit-xml", "gates.xml"])
