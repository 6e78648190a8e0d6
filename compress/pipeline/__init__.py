"""Declarative pipelines: a validated YAML recipe (``spec``), its stages (``stages``) and the stage runner.

    from compress.pipeline import run_pipeline
    run_pipeline("pipelines/fashion_mnist_ci.yaml", out="runs/ci", until_stage="validate")
"""

from compress.pipeline.context import PipelineResult, StageOutcome
from compress.pipeline.runner import run_pipeline
from compress.pipeline.spec import PipelineSpec, load_recipe, parse_recipe
from compress.pipeline.stages import STAGES

__all__ = ["STAGES", "PipelineResult", "PipelineSpec", "StageOutcome", "load_recipe", "parse_recipe", "run_pipeline"]
