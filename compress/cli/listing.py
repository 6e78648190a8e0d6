"""`compress list` and `compress schema`: what is registered, and the recipe's keys (all read from
torch-free tables: both answer without loading torch)."""

from __future__ import annotations

import json
from enum import Enum

import typer

from compress.cli.app import app
from compress.cli.options import JSON_HELP


class ListWhat(str, Enum):
    models = "models"
    datasets = "datasets"
    methods = "methods"
    projectors = "projectors"
    presets = "presets"


def _listing(what: ListWhat) -> list[tuple[str, str]]:
    """(name, description) of every registered entry of a kind."""
    if what is ListWhat.models:
        from compress.models.zoo import model_listing

        return [(name, f"{source:12s} {family}") for name, source, family in model_listing()]
    if what is ListWhat.datasets:
        from compress.data.config import DATASETS

        return [(name, DATASETS.get(name).description) for name in DATASETS.names()]
    if what is ListWhat.methods:
        from compress.distill.methods import METHODS

        return [(name, METHODS.get(name).summary) for name in METHODS.names()]
    if what is ListWhat.projectors:
        from compress.models.projector_kinds import PROJECTORS

        return [(name, "") for name in PROJECTORS.names()]
    from compress.distill.config import PRESETS

    return [(name, PRESETS.get(name).get("description", "")) for name in PRESETS.names()]


@app.command("schema")
def schema(markdown: bool = typer.Option(False, "--markdown", help="Print the reference of every key with its type, default and meaning (docs/recipes.md) instead.")) -> None:
    """Print the JSON Schema of a pipeline recipe, generated from the config classes (for editors and CI checks)."""
    from compress.pipeline.schema import recipe_markdown, recipe_schema

    typer.echo(recipe_markdown() if markdown else json.dumps(recipe_schema(), indent=2), nl=not markdown)


@app.command("list")
def list_command(what: ListWhat = typer.Argument(..., help="What to list."),
                 json_output: bool = typer.Option(False, "--json", help=JSON_HELP)) -> None:
    """List registered models, datasets, distillation methods, projectors or presets."""
    rows = _listing(what)
    if json_output:
        typer.echo(json.dumps([{"name": name, "description": text} for name, text in rows], indent=2))
        return
    width = max((len(name) for name, _ in rows), default=0) + 2
    for name, text in rows:
        typer.echo(f"{name:{width}s}{text}".rstrip())


# Options shared by the training commands (typer wants them spelled out per command).
