"""Every number a user gives is bounded by what is meaningful, NaN-safely, and the error names the range;
an output folder may not hold the command's inputs (issue 17, items 4, 5 and 11)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest
import torch

from compress.bounds import MAX_BATCH, MAX_EPOCHS, MAX_SEED, OPTION_BOUNDS, check_range, shown, span, within
from compress.data import DataConfig
from compress.errors import ConfigError
from compress.export import Int8Options, OnnxOptions, TensorRTOptions
from compress.output_folder import check_output_path
from compress.train_config import TrainConfig, seed_everything
from compress.validate.gates import GateSpec
from compress.validate.latency import LatencyConfig, benchmark

NAN, INF = math.nan, math.inf


@pytest.mark.parametrize("value, low, high, above, below, inside", [
    (1, 1, 10, False, False, True), (10, 1, 10, False, False, True), (0, 1, 10, False, False, False),
    (0.0, 0, 1, True, False, False), (1.0, 0, 1, False, True, False), (0.5, 0, 1, True, True, True),
    (NAN, 0, 1, False, False, False), (INF, 0, 1e308, False, False, False), (-INF, -1e308, 0, False, False, False),
    (True, 0, 1, False, False, False), ("1", 0, 2, False, False, False), (2**70, 0, 2**32, False, False, False),
])
def test_within(value: object, low: float, high: float, above: bool, below: bool, inside: bool) -> None:
    assert within(value, low, high, above=above, below=below) is inside


def test_messages_name_the_range_and_cut_huge_values_short() -> None:
    assert span(1, 100_000) == "at least 1 and at most 100000"
    assert span(0, 10.0, above=True, below=True) == "above 0 and below 10"
    assert shown(2**70) == "a 22-digit number"
    assert shown("x" * 1000) == "'" + "x" * 56 + "..."
    with pytest.raises(ConfigError, match=r"^duration must be above 0 and at most 3600 s, got nan$"):
        check_range("duration", NAN, 0, 3600.0, above=True, hint=" s")


@pytest.mark.parametrize("kwargs, message", [
    ({"epochs": 10**9}, r"^epochs must be at least 1 and at most 100000, got 1000000000$"),
    ({"lr": 1e308}, r"^learning rate must be a positive number up to 10, got 1e\+308$"),
    ({"lr": NAN}, r"learning rate must be a positive number up to 10, got nan"),
    ({"seed": 2**70}, r"^seed must be at least 0 and at most 4294967295, got a 22-digit number$"),
    ({"seed": -1}, r"^seed must be at least 0"),
    ({"weight_decay": NAN}, r"^weight decay must be at least 0 and at most 1, got nan$"),
    ({"momentum": INF}, r"^momentum must be at least 0 and below 1, got inf$"),
    ({"gamma": 0.0}, r"^gamma \(the multistep lr factor\) must be above 0 and at most 1"),
    ({"warmup_epochs": NAN}, r"^warm-up must be >= 0 and shorter than training \(10 epochs\), got nan$"),
    ({"schedule": "multistep", "milestones": (5, 10**6)}, r"^milestones must be epochs from 1 to 100000"),
    ({"log_every": 0}, r"^log-every must be at least 1 and at most 1000000"),
])
def test_training_numbers_are_bounded(kwargs: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        TrainConfig(**kwargs).validate()


def test_the_largest_accepted_values_are_usable() -> None:
    """The bounds admit only what the code can run: the top seed seeds every generator."""
    TrainConfig(epochs=MAX_EPOCHS, lr=10.0, seed=MAX_SEED, weight_decay=1.0, gamma=1.0).validate()
    seed_everything(MAX_SEED, deterministic=False)
    assert torch.initial_seed() == MAX_SEED  # the top seed reached the generator unchanged
    DataConfig(batch_size=MAX_BATCH, eval_batch_size=MAX_BATCH, seed=MAX_SEED, label_seed=MAX_SEED).validate()


@pytest.mark.parametrize("kwargs, message", [
    ({"batch_size": 200_000}, r"^batch-size must be at least 1 and at most 65536, got 200000$"),
    ({"eval_batch_size": -1}, r"^eval-batch-size must be at least 1"),
    ({"val_limit": 2**40}, r"^--val-limit must be at least 1 and at most 2147483647"),
    ({"workers": 10_000}, r"^--workers must be 0 or more \(0 decodes in the main process\) and at most 256"),
    ({"image_size": 100_000}, r"^image size must be at least 8 and at most 2048 px, got 100000$"),
    ({"seed": 2**32}, r"^--seed must be at least 0 and at most 4294967295"),
    ({"label_seed": -5}, r"^--label-seed must be at least 0"),
    ({"labeled_share": NAN}, r"^--labeled-share \(labelled images per batch\) must be above 0 and below 1, got nan$"),
    ({"label_fraction": NAN}, r"^--label-fraction must be in \(0, 1\]"),
    ({"name": "synthetic", "synthetic_size": (0, 10)}, r"^synthetic-size must be two image counts"),
    ({"name": "synthetic", "image_size": 2048}, r"^synthetic data of 2560 images of 2048 px needs 30\.0 GiB"),
])
def test_data_numbers_are_bounded(kwargs: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        DataConfig(**kwargs).validate()


@pytest.mark.parametrize("kwargs, message", [
    ({"duration_s": NAN}, r"^duration must be above 0 and at most 3600 s, got nan$"),
    ({"duration_s": INF}, r"^duration must be above 0 and at most 3600 s, got inf$"),
    ({"duration_s": 1e9}, r"^duration must be above 0 and at most 3600 s"),
    ({"batch_sizes": (1, 200_000)}, r"^batch sizes must be at least 1 and at most 65536, got \[1, 200000\]$"),
    ({"threads": (2**31,)}, r"^thread counts must be at least 1 and at most 1024"),
    ({"runs": 10**12}, r"^runs must be at least 1 and at most 10000000"),
    ({"pause_s": NAN}, r"^latency pause_s must be at least 0 and at most 60 s, got nan$"),
])
def test_latency_options_are_bounded(kwargs: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        LatencyConfig(**kwargs).validate()


def test_a_batch_that_does_not_fit_is_refused_before_it_is_allocated() -> None:
    cfg = LatencyConfig(batch_sizes=(1, MAX_BATCH), runs=1)
    with pytest.raises(ConfigError, match=r"^batch size 65536 of 3x224x224 inputs needs 36\.8 GiB per batch: "
                                          r"choose batch sizes up to 3566$"):
        benchmark([], (3, 224, 224), cfg)


@pytest.mark.parametrize("options, message", [
    (Int8Options(calibration=2**70), r"^calibration images must be at least 1 and at most 100000, got a 22-digit"),
    (Int8Options(eval_images=10**6), r"^eval_images must be at least 1 and at most 100000, got 1000000$"),
    (OnnxOptions(parity_images=0), r"^parity_images must be at least 1 and at most 100000, got 0$"),
    (TensorRTOptions(batch=(1, 8, 200_000)), r"^--batch max must be at least 1 and at most 65536, got 200000$"),
    (TensorRTOptions(workspace_mb=2**40), r"^workspace_mb must be at least 16 and at most 1048576"),
    (TensorRTOptions(precision="int8", calibration=10**9), r"^calibration images must be at least 1 and at most"),
], ids=["calibration", "eval images", "parity images", "tensorrt batch", "workspace", "tensorrt calibration"])
def test_export_options_are_bounded(options: Int8Options | OnnxOptions | TensorRTOptions, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        options.validate()


@pytest.mark.parametrize("gate", ["max_p90_ms", "min_speedup"])
@pytest.mark.parametrize("value", [NAN, INF])
def test_gate_thresholds_must_be_finite(gate: str, value: float) -> None:
    with pytest.raises(ConfigError, match=f"^gate {gate} must be positive, got {value}$"):
        GateSpec(**{gate: value})


# ------------------------------------------------------------------------------ output folder vs inputs

def test_an_output_folder_holding_an_input_is_refused(tmp_path: Path) -> None:
    run = tmp_path / "teacher"
    run.mkdir()
    (run / "model.safetensors").write_bytes(b"weights")
    for inputs in ([run / "model.safetensors"], [run], ["resnet8", None, run / "model.safetensors"]):
        with pytest.raises(ConfigError, match=r"output folder '.*teacher' holds the input '.*teacher.*': writing "
                                              r"there could replace it; choose another --out"):
            check_output_path(run, inputs)
    with pytest.raises(ConfigError, match="holds the input"):  # the folder above holds it too
        check_output_path(tmp_path, [run / "model.safetensors"])


def test_an_output_folder_reached_through_a_link_is_the_same_folder(tmp_path: Path) -> None:
    (tmp_path / "teacher").mkdir()
    (tmp_path / "teacher" / "model.safetensors").write_bytes(b"weights")
    (tmp_path / "link").symlink_to(tmp_path / "teacher")
    with pytest.raises(ConfigError, match="holds the input"):
        check_output_path(tmp_path / "link", [tmp_path / "teacher" / "model.safetensors"])


def test_an_output_folder_beside_or_below_the_inputs_is_fine(tmp_path: Path) -> None:
    (tmp_path / "teacher").mkdir()
    weights = tmp_path / "teacher" / "model.safetensors"
    weights.write_bytes(b"weights")
    check_output_path(tmp_path / "student", [weights, "resnet8", "imagenet", None])
    check_output_path(tmp_path / "teacher" / "export", [weights])  # export's default: CHECKPOINT_DIR/export
    assert weights.read_bytes() == b"weights"  # the checks read nothing and wrote nothing
    check_output_path(tmp_path / "teacher-2", [tmp_path / "teacher"])  # a shared name prefix is not inside


# ------------------------------------------------------------------------------------------- recipes

@pytest.mark.parametrize("section, key, value, message", [
    ("distill.train", "batch_size", 200_000, r"^distill\.train\.batch_size: must be at least 1 and at most 65536, "
                                             r"got 200000$"),
    ("distill.train", "lr", 1e308, r"^distill\.train: learning rate must be a positive number up to 10"),
    ("distill.train", "epochs", 10**9, r"^distill\.train: epochs must be at least 1 and at most 100000"),
    ("distill.train", "seed", 2**40, r"^distill\.train: seed must be at least 0 and at most 4294967295"),
    ("data", "val_limit", 2**40, r"^data: --val-limit must be at least 1 and at most 2147483647"),
    ("validate", "val_limit", 2**40, r"^validate\.val_limit: must be at least 1 and at most 2147483647"),
    ("validate", "duration_s", 1e9, r"^validate: duration must be above 0 and at most 3600 s, got 1000000000\.0$"),
    ("validate", "batch_sizes", [1, 200_000], r"^validate: batch sizes must be at least 1 and at most 65536"),
    ("export.int8", "calibration", 10**6, r"^export\.int8: calibration images must be at least 1 and at most 100000"),
])
def test_recipe_numbers_are_bounded_when_the_recipe_is_read(section: str, key: str, value: object,
                                                            message: str) -> None:
    """The same bounds as on the command line, before anything runs (not hours later, at that stage)."""
    import yaml

    from compress.pipeline.spec import parse_recipe

    raw = yaml.safe_load((Path(__file__).parents[1] / "pipelines" / "fashion_mnist_ci.yaml").read_text())
    node = raw
    for part in section.split("."):
        node = node[part]
    node[key] = value
    with pytest.raises(ConfigError, match=message):
        parse_recipe(raw)


# ------------------------------------------------------------------------ the table every number option reads

def _commands() -> dict[str, Any]:
    """Every command of `compress` (the group's own options under ""), read from the CLI itself."""
    import typer

    from compress.cli import app

    group = typer.main.get_command(app)
    return {"": group, **group.commands}  # type: ignore[attr-defined]


def _number_options() -> list[tuple[str, str, str]]:
    """(command, option, "int" | "float") for every number option of every command."""
    from compress.cli.app import long_name, number_params

    return [(name, long_name(p), p.bare_type()) for name, command in _commands().items()
            for p in number_params(command)]


NUMBER_OPTIONS = _number_options()


def test_the_walk_sees_every_kind_of_number_option() -> None:
    """Guards the walk: options written out, built from the gate table and from the method settings."""
    seen = {(command, option) for command, option, _ in NUMBER_OPTIONS}
    assert {("export", "--threads"), ("train-teacher", "--epochs"), ("validate", "--min-top1"),
            ("distill", "--temperature"), ("distill", "--factor"), ("", "--verbose")} <= seen
    assert len(NUMBER_OPTIONS) >= 60


@pytest.mark.parametrize("command, option, kind", NUMBER_OPTIONS, ids=[f"{c or 'compress'} {o}" for c, o, _ in
                                                                       NUMBER_OPTIONS])
def test_every_number_option_has_a_bound_in_the_table(command: str, option: str, kind: str) -> None:
    bound = OPTION_BOUNDS.get(option)
    assert bound is not None, f"`compress {command} {option}` takes a number but compress.bounds.OPTION_BOUNDS has " \
                              "no range for it (or an explicit reason why it needs none)"
    if bound.unbounded:
        assert len(bound.unbounded) > 20, "say why the option needs no range"
        return
    assert bound.low < bound.high and math.isfinite(bound.high)


def _refusal(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    from compress.cli import main

    with pytest.raises(SystemExit) as stopped:
        main(args)
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and "Traceback" not in err, err
    return int(stopped.value.code or 0), lines[0]


BOUNDED = [(c, o, k) for c, o, k in NUMBER_OPTIONS if not OPTION_BOUNDS[o].unbounded]


@pytest.mark.parametrize("command, option, kind", BOUNDED, ids=[f"{c} {o}" for c, o, _ in BOUNDED])
def test_the_command_line_refuses_what_the_table_refuses_before_any_work(
        command: str, option: str, kind: str, capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    """Just past either end (NaN and infinity for floats) is one line, exit 2, before the command runs: the
    other required arguments are not even given. The ends themselves pass (the command then misses them)."""
    bound = OPTION_BOUNDS[option]
    step = 1 if kind == "int" else max(bound.high * 1e-6, 1e-9)
    outside = [bound.low - step, bound.high + step, bound.high * 1000 + 1]
    outside = [int(v) if kind == "int" else v for v in outside] + ([NAN, INF, -INF] if kind == "float" else [])
    for value in outside:
        code, line = _refusal([command, option, str(value)], capsys)
        assert code == 2 and line.startswith(f"error: {option} must be "), (value, line)
    for value in (bound.low, bound.high):
        if (value == bound.low and bound.above) or (value == bound.high and bound.below):
            continue
        text = str(int(value)) if kind == "int" else repr(float(value))
        code, line = _refusal([command, option, text], capsys)
        assert code == 2 and "Missing" in line and f"{option} must be" not in line, (value, line)


def test_export_threads_of_a_million_are_refused_at_once(capsys: pytest.CaptureFixture[str]) -> None:
    code, line = _refusal(["export", "model.safetensors", "--target", "cpu", "--threads", "1000000"], capsys)
    assert (code, line) == (2, "error: --threads must be at least 1 and at most 1024, got 1000000")
