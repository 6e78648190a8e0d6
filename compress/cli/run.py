"""`compress run RECIPE`: the staged pipeline, its gates published for CI."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from compress.cli.app import EXIT_HELP, app
from compress.cli.options import JSON_HELP, JUNIT_HELP, SUMMARY_HELP, _progress, _publish


@app.command("run", epilog=EXIT_HELP)
def run(
    recipe: Path = typer.Argument(..., help="Pipeline recipe (YAML), e.g. pipelines/fashion_mnist.yaml."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Run folder (default: runs/<recipe name>)."),
    from_stage: Optional[str] = typer.Option(None, "--from", help="Re-run this stage and everything after it."),
    until_stage: Optional[str] = typer.Option(None, "--until", help="Stop after this stage."),
    force: bool = typer.Option(False, "--force", help="Re-run every selected stage even if its inputs are unchanged."),
    progress: bool = typer.Option(True, "--progress/--no-progress"),
    junit: Optional[Path] = typer.Option(None, "--junit", help=JUNIT_HELP),
    summary: Optional[Path] = typer.Option(None, "--summary", help=SUMMARY_HELP),
    json_output: bool = typer.Option(False, "--json", help=JSON_HELP),
    overrides: list[str] = typer.Option([], "--set", metavar="KEY=VALUE", help="Change a recipe key: --set distill.train.epochs=4 (a YAML value: --set validate.batch_sizes=[1,8]); repeatable. Keys: docs/recipes.md."),
) -> None:
    """Run a staged pipeline: teacher(s) -> distill -> export (ONNX, INT8, TensorRT) -> validate -> report.

    Stages whose inputs are unchanged are skipped; a killed or interrupted run resumes where it stopped.
    A failed gate of any stage prints a table and exits 3, once every artifact and report is written."""
    from compress.pipeline import load_recipe, run_pipeline
    from compress.validate import check_gates
    from compress.validate.ci_report import check_gate_outputs

    check_gate_outputs(junit, summary)  # before hours of work, not after
    result = run_pipeline(load_recipe(recipe, overrides), out=out, from_stage=from_stage, until_stage=until_stage, force=force,
                          progress=_progress(progress), raise_on_failed_gates=False)
    gates = result.validation.gates if result.validation is not None else []
    _publish(recipe.stem, gates, junit, summary)
    if json_output:
        typer.echo(json.dumps({"run_dir": str(result.run_dir), "report": str(result.report) if result.report else None,
                               "passed": not any(g.status == "fail" for g in gates),
                               "stages": [vars(stage) for stage in result.stages],
                               "gates": [g.to_dict() for g in gates]}, indent=2))
    else:
        typer.echo(f"run folder: {result.run_dir}" + (f"\nreport: {result.report}" if result.report else ""))
    check_gates(gates)
