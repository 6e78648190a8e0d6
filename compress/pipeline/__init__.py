"""Declarative pipelines: a validated YAML recipe (``spec``) and the stage runner (``runner``).

    from compress.pipeline import run_pipeline
    run_pipeline("pipelines/fashion_mnist_ci.yaml", out="runs/ci", until_stage="validate")
"""

from compress.pipeline.runner import PipelineResult, StageOutcome, run_pipeline
from compress.pipeline.spec import STAGES, PipelineSpec, load_recipe, parse_recipe

__all__ = ["STAGES", "PipelineResult", "PipelineSpec", "StageOutcome", "load_recipe", "parse_recipe", "run_pipeline"]
