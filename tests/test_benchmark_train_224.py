"""benchmarks/train_224.py at tiny shapes: every (method, side, variant) row is timed in every block, the
ratios pair rows of the same block, bf16 is measured only where the CPU computes it, the data side reads
the PNG folder with each worker count, and the record names the CPU."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType

import pytest
import torch

from compress.train_config import cpu_bf16_native

ROOT = Path(__file__).resolve().parents[1]


def _load(name: str, path: Path) -> ModuleType:  # benchmarks/ and scripts/ are not packages
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the file executes
    spec.loader.exec_module(module)
    return module


BENCH = _load("train_224_bench", ROOT / "benchmarks" / "train_224.py")
TINY = ["--image", "32", "--batch", "2", "--warmup", "0", "--blocks", "2", "--steps", "1", "--pause", "0"]


@pytest.fixture(scope="module")
def folder(fmnist_available: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    script = _load("make_imagefolder_224", ROOT / "scripts" / "make_imagefolder_224.py")
    out = tmp_path_factory.mktemp("data") / "fmnist"
    assert script.main([str(out), "--classes", "2", "--train", "4", "--val", "2", "--unlabeled", "4", "--size", "32"]) == 0
    return out


def test_the_harness_writes_a_sane_record(folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    threads = torch.get_num_threads()
    record = BENCH.main([*TINY, "--methods", "kd", "atsc", "--folder", str(folder), "--workers", "0", "1",
                         "--threads", "1", "--out", str(tmp_path), "--tag", "test"])
    torch.set_num_threads(threads)
    saved = json.loads((tmp_path / "train_224_test.json").read_text())
    assert saved == json.loads(json.dumps(record))
    assert saved["cpu"]["model"] and saved["cpu"]["cores"] >= 1 and saved["cpu"]["bf16_native"] == cpu_bf16_native()
    assert saved["threads"] == 1 and saved["environment"]["torch"] == torch.__version__
    variants = ["fp32", "channels_last", "bf16"] if cpu_bf16_native() else ["fp32", "channels_last"]
    assert saved["variants"] == variants and bool(saved["skipped"]) != cpu_bf16_native()
    rows = {(r["method"], r["side"], r["variant"]): r for r in saved["step"]["rows"]}
    assert set(rows) == {(m, s, v) for m, s in (("kd", "compress"), ("kd", "bare"), ("atsc", "compress"))
                         for v in variants}
    for row in rows.values():
        assert row["teacher"] == "resnet18" and len(row["blocks"]) == 2 and all(rate > 0 for rate in row["blocks"])
        assert row["images_per_s_min"] <= row["images_per_s"] <= row["images_per_s_max"]
        assert row["step_ms"] == pytest.approx(1000 * 2 / row["images_per_s"])
    ratios = {r["what"]: r for r in saved["step"]["ratios"]}
    compress, bare = rows[("kd", "compress", "fp32")]["blocks"], rows[("kd", "bare", "fp32")]["blocks"]
    paired = sorted(c / b for c, b in zip(compress, bare))  # block by block, not median over median
    assert ratios["compress/bare kd fp32"]["median"] == pytest.approx(sum(paired) / 2)
    assert (ratios["compress/bare kd fp32"]["min"], ratios["compress/bare kd fp32"]["max"]) == tuple(paired)
    assert {"channels_last/fp32 kd compress", "channels_last/fp32 kd bare", "channels_last/fp32 atsc compress"} <= set(ratios)
    assert [(r["workers"], r["images"]) for r in saved["data"]] == [(0, 12), (1, 12)]  # 8 labelled + 4 unlabelled
    assert all(r["images_per_s"] > 0 for r in saved["data"]) and saved["peak_rss_mb"] > 0
    md = (tmp_path / "train_224_test.md").read_text()
    assert md.startswith(f"# Training at 32 px on the CPU ({saved['cpu']['model']})")
    assert "| resnet18 | kd | bare | channels_last |" in md and "## The data side" in md
    assert "resnet18 compress/bare kd fp32:" in capsys.readouterr().out


def test_bf16_is_measured_only_where_the_cpu_computes_it(folder: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(BENCH, "cpu_bf16_native", lambda: False)
    threads = torch.get_num_threads()
    record = BENCH.main([*TINY, "--blocks", "1", "--variants", "fp32", "bf16", "--no-data"])
    assert record["variants"] == ["fp32"] and "neither AVX512-BF16 nor AMX" in record["skipped"]
    forced = BENCH.main([*TINY, "--blocks", "1", "--variants", "bf16", "--no-data", "--force-bf16"])
    torch.set_num_threads(threads)
    assert [(r["side"], r["variant"]) for r in forced["step"]["rows"]] == [("compress", "bf16"), ("bare", "bf16")]
    assert forced["skipped"] == "" and forced["data"] == []
