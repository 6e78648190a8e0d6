"""The camera shift: seeded, reproducible, the same shape and dtype, and the preprocessing of the clean data."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from compress.data import DataConfig, load_data
from compress.data.shift import BLOCK, apply_shift, gaussian_blur
from compress.errors import ConfigError


def images(n: int = 50) -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, (n, 1, 12, 12), dtype=np.uint8)


def test_the_shift_is_seeded_and_reproducible() -> None:
    clean = images()
    shifted = apply_shift(clean, "camera", seed=0, split="train")
    assert shifted.shape == clean.shape and shifted.dtype == np.uint8
    assert np.array_equal(shifted, apply_shift(clean.copy(), "camera", seed=0, split="train"))
    assert not np.array_equal(shifted, apply_shift(clean, "camera", seed=1, split="train"))
    assert not np.array_equal(shifted, apply_shift(clean, "camera", seed=0, split="test"))
    assert np.array_equal(clean, images())  # the input is left as it was


def test_the_camera_darkens_blurs_and_adds_noise() -> None:
    flat = np.full((4, 1, 16, 16), 200, dtype=np.uint8)
    out = apply_shift(flat, "camera", seed=0, split="train").astype(np.float64)
    assert abs(out.mean() - 0.7 * 200) < 2  # contrast 0.7, black stays black
    assert 0.04 * 255 < out.std() < 0.06 * 255  # sensor noise of sigma 0.05 (a flat image does not blur)
    edge = np.zeros((1, 1, 9, 9), dtype=np.float32)
    edge[..., 4] = 1.0
    blurred = gaussian_blur(edge, 1.0)
    assert blurred.sum() == pytest.approx(9.0) and blurred[0, 0, 4, 4] == pytest.approx(0.399, abs=0.003)


def test_an_image_gets_the_same_noise_whatever_else_is_shifted_with_it() -> None:
    many = np.random.default_rng(1).integers(0, 256, (BLOCK + 10, 1, 4, 4), dtype=np.uint8)
    whole = apply_shift(many, "camera", seed=3, split="train")
    assert np.array_equal(whole[:BLOCK], apply_shift(many[:BLOCK], "camera", seed=3, split="train"))


def test_an_unknown_shift_lists_the_known_ones() -> None:
    with pytest.raises(ConfigError, match=r"unknown shift 'fog': choose one of camera$"):
        DataConfig(shift="fog").validate()
    with pytest.raises(ConfigError, match="--shift-seed must be at least 0"):
        DataConfig(shift="camera", shift_seed=-1).validate()


def test_a_shifted_dataset_shifts_every_split_and_keeps_the_clean_preprocessing(fmnist_available: Path) -> None:
    cfg = DataConfig(train_limit=600, val_limit=200, holdout_per_class=5, augment=False)
    clean, shifted = load_data(cfg), load_data(DataConfig(**{**cfg.__dict__, "shift": "camera"}))
    assert shifted.preprocessing == clean.preprocessing  # the teacher's preprocessing check keeps passing
    for a, b in ((clean.train, shifted.train), (clean.val, shifted.val), (clean.test, shifted.test)):
        assert torch.equal(a.labels, b.labels) and a.images.shape == b.images.shape  # type: ignore[union-attr]
        assert not torch.equal(a.images, b.images)  # type: ignore[union-attr]
        assert b.images.float().mean() < a.images.float().mean()  # type: ignore[union-attr]
    again = load_data(DataConfig(**{**cfg.__dict__, "shift": "camera"}), rank=1, world_size=2)
    assert torch.equal(again.train.images, shifted.train.images)  # the same noise on every rank


def test_a_repeated_shift_is_computed_once_and_handed_out_as_a_copy() -> None:
    from compress.data import shift as shift_module

    images = np.random.default_rng(3).integers(0, 256, size=(5, 1, 8, 8), dtype=np.uint8)
    first = shift_module.apply_shift(images, "camera", 0, "train")
    expected = first.copy()
    first[:] = 0  # a caller writing into its copy must not change what the next caller gets
    again = shift_module.apply_shift(images, "camera", 0, "train")
    assert np.array_equal(again, expected)
    assert np.array_equal(shift_module._apply(images, "camera", 0, "train"), expected)


def test_the_command_line_passes_holdout_and_shift_through(fmnist_available: Path, tmp_path: Path,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    from tests.cli_helpers import run_cli

    out = tmp_path / "run"
    code, err = run_cli(["distill", "--student", "resnet8", "--method", "none", "--out", str(out), "--epochs", "1",
                         "--train-limit", "300", "--val-limit", "100", "--workers", "0", "--no-progress",
                         "--holdout-per-class", "3", "--shift", "camera", "--shift-seed", "7"], capsys)
    assert code == 0, err
    summary = json.loads((out / "summary.json").read_text())
    assert summary["validation"] == "holdout" and 0 <= summary["test_top1"] <= 100 and summary["test_epoch"] == 1
    assert (summary["data"]["holdout_per_class"], summary["data"]["shift"], summary["data"]["shift_seed"]) == (3, "camera", 7)
    # export calibrates on the images the recorded camera delivers
    from compress.export.command import _data_config
    from compress.record import CheckpointRecord

    exported = _data_config(CheckpointRecord.read(out), None, 1, 28, 10, 10)
    assert (exported.shift, exported.shift_seed, exported.holdout_per_class) == ("camera", 7, None)
    # validation after training reads the whole (shifted) test split, not the held-out images
    from compress.data import DataConfig, load_data
    from compress.deployable import load_deployable
    from compress.train import evaluate

    student, _, _ = load_deployable(out)
    scores = {}
    for shift in ("camera", None):
        extra = ["--shift", shift, "--shift-seed", "7"] if shift else []
        code, err = run_cli(["validate", str(out), "--val-limit", "100", "--no-latency", "--min-above-chance", "0",
                             "--out", str(tmp_path / f"v-{shift}"), *extra], capsys)  # a 1-epoch student: no sanity gate
        assert code == 0, err
        report = json.loads((tmp_path / f"v-{shift}" / "report.json").read_text())
        (stage,) = report["stages"].values()
        scores[shift] = stage["accuracy"]["top1"]
        assert report["data"]["samples"] == 100
        data = load_data(DataConfig(val_limit=100, shift=shift, shift_seed=7))
        assert scores[shift] == pytest.approx(evaluate(student, data.val)["top1"])
    assert scores["camera"] != scores[None]  # the camera changes what the student sees


def test_an_unknown_shift_on_the_command_line_is_one_line_before_anything_is_written(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from tests.cli_helpers import run_cli

    code, err = run_cli(["train-teacher", "--model", "resnet8", "--out", str(tmp_path / "t"), "--shift", "fog"], capsys)
    assert code == 1 and "unknown shift 'fog': choose one of camera" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "t").exists()


def test_the_help_names_every_shift() -> None:
    from compress.cli.options import SHIFT_HELP
    from compress.data.shift import SHIFTS

    assert all(f"{name} (" in SHIFT_HELP for name in SHIFTS.names())
