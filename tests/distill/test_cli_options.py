"""`compress distill`'s method options: derived from the configs, applied only where they belong."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import typer

import compress.workflows
from compress.cli import app, main
from compress.distill import DistillConfig, settings_table


@pytest.fixture
def runs(monkeypatch: pytest.MonkeyPatch) -> list[DistillConfig]:
    """The method configs `compress distill` would train with (the training itself is not run)."""
    seen: list[DistillConfig] = []

    def record(student: str, teachers: list[str], weights: list[str], config: DistillConfig, *args: Any,
               **kwargs: Any) -> None:
        seen.append(config)

    monkeypatch.setattr(compress.workflows, "distill_run", record)
    return seen


def distill(tmp_path: Path, *args: str) -> None:
    main(["distill", "--student", "resnet8", "--teacher", "resnet20", "--out", str(tmp_path / "out"), *args])


def test_every_setting_is_an_option_with_its_docs() -> None:
    params = {p.name: p for p in typer.main.get_command(app).commands["distill"].params}
    for name, info in settings_table().items():
        if info.follows:  # taken from the training schedule, not an option
            assert name not in params
            continue
        assert params[name].help == info.help and params[name].default is None
        assert params[name].opts[0] == "--" + name.replace("_", "-")
    assert params["factor"].opts == ["--factor", "-r"]
    assert params["teacher_feedback"].secondary_opts == ["--no-teacher-feedback"]
    assert params["teacher_margin"].hidden and params["teacher_margin"].opts == ["--teacher-margin"]
    assert params["shared_kl"].help.startswith("atsc: weight of T^2 KL")
    assert params["temperature"].help == ("atsc: temperature T of the shared-classifier KL. "
                                          "kd: temperature T of the soft targets. Default: 4.0.")


def test_given_options_over_the_preset_over_the_defaults(tmp_path: Path, runs: list[DistillConfig]) -> None:
    distill(tmp_path, "--preset", "imagenet")
    distill(tmp_path, "--preset", "imagenet", "--w", "2", "--reference", "--teacher-drop-limit", "0.05")
    distill(tmp_path, "--preset", "imagenet", "--method", "kd", "--temperature", "2")  # the preset's w is not KD's
    distill(tmp_path, "--teacher-margin", "0.2")  # the option's earlier name
    default, given, kd, old_name = runs
    assert (default.w, default.factor, default.reference, default.teacher_ce) == (10.0, 2, False, 1.0)
    assert default.momentum == 0.9  # follows the training's momentum (the preset's)
    assert (given.w, given.reference, given.teacher_ce, given.teacher_drop_limit) == (2.0, True, 0.0, 0.05)
    assert kd == DistillConfig("kd", temperature=2.0)
    assert (old_name.w, old_name.teacher_drop_limit) == (1.0, 0.2)


def test_adaptation_options_reach_the_config(tmp_path: Path, runs: list[DistillConfig]) -> None:
    distill(tmp_path, "--teacher-adapt", "none")
    distill(tmp_path, "--teacher-every", "4", "--pseudo-threshold", "0.9")
    frozen, every = runs
    assert (frozen.teacher_adapt, frozen.teacher_every, frozen.pseudo_threshold) == ("none", 1, None)
    assert (every.teacher_adapt, every.teacher_every, every.pseudo_threshold) == ("all", 4, 0.9)


@pytest.mark.parametrize("args, message", [
    (["--method", "simkd", "--temperature", "2"],
     "error: distill setting 'temperature' does not apply to method 'simkd'; it is a setting of atsc, kd"),
    (["--method", "none", "--w", "2"],
     "error: distill setting 'w' does not apply to method 'none'; it is a setting of atsc"),
    (["--method", "kd", "--no-teacher-feedback"],
     "error: distill setting 'teacher_feedback' does not apply to method 'kd'; it is a setting of atsc"),
    (["--stability", "maybe"], "error: distill setting 'stability' must be one of error, warn, off; got 'maybe'"),
    (["--teacher-adapt", "none", "--reference"],
     "error: teacher_adapt='none' trains no teacher weights, the reference path adapts them all: drop one of the two"),
    (["--teacher-adapt", "bn", "--teacher-every", "4"],
     "error: teacher_every applies to a teacher whose weights adapt; teacher_adapt='bn' keeps them fixed: drop it or "
     "use teacher_adapt='all'"),
])
def test_a_setting_the_method_does_not_take_is_one_error_line(tmp_path: Path, runs: list[DistillConfig],
                                                             capsys: pytest.CaptureFixture[str], args: list[str],
                                                             message: str) -> None:
    with pytest.raises(SystemExit) as exit_info:
        distill(tmp_path, *args)
    assert exit_info.value.code == 1 and capsys.readouterr().err.strip() == message
    assert not runs and not (tmp_path / "out").exists()
