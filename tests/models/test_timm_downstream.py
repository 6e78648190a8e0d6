"""A timm student downstream, unchanged: distilled through the API, exported to ONNX + INT8 by the export
step table, validated, and converted to OpenVINO when that package is installed. A random timm start taught by
the repository's Fashion-MNIST teacher on 1,024 images: nothing is downloaded."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

pytest.importorskip("timm")
pytest.importorskip("onnxruntime")

import compress  # noqa: E402
from compress.deployable import load_deployable  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
TEACHER = ROOT / "compress" / "weights" / "fashion-mnist-resnet20.safetensors"
STUDENT = "timm:mobilenetv3_small_050"


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("timm-downstream")
    result = compress.distill(STUDENT, [str(TEACHER)], "fashion-mnist", method="kd", out=out / "student", epochs=1,
                              train_limit=1024, val_limit=64, batch_size=32, device="cpu")
    summary = compress.export(result.out_dir, out / "export", ("onnx", "int8"))  # the export step table
    return result.out_dir / "model.safetensors", summary


def test_timm_student_exports_to_onnx_and_int8(exported: tuple[Path, dict]) -> None:
    checkpoint, summary = exported
    module, pre, _ = load_deployable(checkpoint)
    assert module.spec.name == STUDENT and (pre.image_size, pre.channels) == (28, 1)
    assert summary["parity"]["ok"] and summary["parity"]["top1_agreement"] == 1.0
    assert summary["int8"]["n"] > 0 and summary["int8"]["agreement"] >= 0.8
    assert summary["int8"]["accuracy_drop_points"] < 5
    assert {Path(p).name for p in summary["files"].values()} == {"model.onnx", "model.int8.onnx"}


def test_timm_student_validates_with_its_exports(exported: tuple[Path, dict]) -> None:
    checkpoint, summary = exported
    files = summary["files"]
    report = compress.validate({"student": checkpoint, "onnx": files["model.onnx"], "int8": files["model.int8.onnx"]},
                               "fashion-mnist", val_limit=64, measure_latency=False)
    student, onnx, int8 = (report.stages[name].accuracy for name in ("student", "onnx", "int8"))
    assert student.samples == onnx.samples == int8.samples == 64
    assert onnx.agreement == 100.0 and onnx.top1 == pytest.approx(student.top1)
    assert student.top1 > 15  # above chance (10 %): agreement is measured on a model that predicts something
    assert int8.max_abs_logit_diff > 0 and int8.agreement >= 75  # really quantized, and still close
    assert int8.agreement == pytest.approx(100 * summary["int8"]["agreement"], abs=10)  # as export measured it


def test_timm_student_converts_to_openvino(exported: tuple[Path, dict], tmp_path: Path) -> None:
    pytest.importorskip("openvino", reason="the openvino extra is not installed: pip install 'compress-edge[openvino]'")
    from compress.export.openvino import OpenVinoOptions, export_openvino

    checkpoint, summary = exported
    module, _, _ = load_deployable(checkpoint)
    images = torch.randn(16, 1, 28, 28, generator=torch.Generator().manual_seed(3))
    result = export_openvino(summary["files"]["model.onnx"], tmp_path, OpenVinoOptions(), module=module.eval(),
                             parity_images=images)
    assert result.parity is not None and result.parity.ok and result.parity.n == 16
    assert result.files["fp32"].exists()
