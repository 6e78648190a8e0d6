"""The training-step benchmark harness runs here with tiny shapes and writes a sane record."""

from __future__ import annotations

import importlib.util
import json
import statistics
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]


def _harness():  # benchmarks/ is not a package: load the script as a module
    spec = importlib.util.spec_from_file_location("train_step_bench", ROOT / "benchmarks" / "train_step.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the script executes
    assert spec.loader is not None
    spec.loader.exec_module(module)
    return module


def test_train_step_harness_writes_a_sane_record(tmp_path: Path, capsys) -> None:
    threads = torch.get_num_threads()
    record = _harness().main(["--small", "--configs", "resnet32x4-resnet8x4-32", "--image", "8", "--batch", "4",
                              "--warmup", "1", "--steps", "2", "--end-to-end", "--imagefolder", "--workers", "1",
                              "--device", "cpu", "--out", str(tmp_path), "--tag", "test"])
    torch.set_num_threads(threads)
    saved = json.loads((tmp_path / "train_step_test.json").read_text())
    assert saved["ratios"] == record["ratios"] and (tmp_path / "train_step_test.md").read_text().startswith("#")
    assert saved["device_type"] == "cpu" and saved["device"] and saved["environment"]["torch"] == torch.__version__
    rows = {r["mode"]: r for r in saved["results"]}
    assert set(rows) == {"reference", "default", "simkd", "teacher-only"}
    for r in rows.values():
        assert r["images_per_s"] > 0 and 0 < r["step_ms_min"] <= r["step_ms_p50"] <= r["step_ms_p90"] <= r["step_ms_max"]
        assert r["peak_memory_mb"] > 0 and r["batch"] == 4 and r["image"] == 8
    assert rows["reference"]["reference_semantics"] and not rows["default"]["reference_semantics"]
    assert rows["reference"]["amp"] == "off" and not rows["reference"]["channels_last"]
    assert rows["default"]["e2e_images_per_s"] > 0 and rows["default"]["loader_images_per_s"] > 0
    assert rows["default"]["imagefolder_e2e_images_per_s"] > 0 and rows["default"]["imagefolder_loader_images_per_s"] > 0
    assert rows["default"]["imagefolder_workers"] == 1 and "imagefolder_e2e_images_per_s" not in rows["reference"]
    assert "ImageFolder pipeline" in (tmp_path / "train_step_test.md").read_text()
    ratio = rows["default"]["images_per_s"] / rows["reference"]["images_per_s"]
    assert saved["ratios"]["resnet32x4-resnet8x4-32"] == ratio
    assert capsys.readouterr().out.strip().splitlines()[-1].startswith("ratio default/reference")


def test_interleaved_rounds_give_each_mode_its_median_and_its_cost_relative_to_kd(tmp_path: Path, capsys) -> None:
    harness = _harness()
    threads = torch.get_num_threads()
    record = harness.main(["--configs", "resnet20-resnet8-28", "--modes", "kd", "default", "atsc-frozen", "atsc-every2",
                           "--image", "8", "--batch", "4", "--warmup", "1", "--steps", "2", "--rounds", "3",
                           "--threads", "1", "--device", "cpu", "--out", str(tmp_path), "--tag", "test"])
    torch.set_num_threads(threads)
    rows = {r["mode"]: r for r in record["results"]}
    assert list(rows) == ["kd", "default", "atsc-frozen", "atsc-every2"]
    assert rows["atsc-every2"]["settings"] == {"teacher_feedback": True, "teacher_every": 2}
    assert rows["kd"]["method"] == "kd"
    for r in rows.values():
        assert r["rounds"] == 3 and len(r["round_images_per_s"]) == 3
        assert r["images_per_s"] == statistics.median(r["round_images_per_s"])
    kd = rows["kd"]["round_images_per_s"]
    assert set(record["cost_vs_kd"]) == {f"resnet20-resnet8-28 {m}" for m in ("default", "atsc-frozen", "atsc-every2")}
    assert record["cost_vs_kd"]["resnet20-resnet8-28 default"] == pytest.approx(
        statistics.median(k / m for k, m in zip(kd, rows["default"]["round_images_per_s"])))
    assert "Step cost relative to KD" in (tmp_path / "train_step_test.md").read_text()
    assert capsys.readouterr().out.strip().splitlines()[-1].startswith("step cost / KD resnet20-resnet8-28 atsc-every2")
    with pytest.raises(SystemExit):
        harness.main(["--rounds", "2", "--end-to-end"])
    assert "--end-to-end times one mode at a time" in capsys.readouterr().err
