"""The training-step benchmark harness runs here with tiny shapes and writes a sane record."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

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
