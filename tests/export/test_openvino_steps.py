"""The OpenVINO backends' steps and the INT8 step's accuracy gate, on a source of our own (as test_steps)."""

from __future__ import annotations

from pathlib import Path

import pytest

import deploy
from compress.artifacts import read_sidecar, sha256_file
from compress.errors import ExportError
from compress.export.base import ExportImages, ExportSource
from compress.export.onnx import OnnxOptions, onnx_step
from compress.export.openvino_int8 import OpenVinoInt8Options, RouteMeasure, choose_route, openvino_int8_step
from compress.export.int8 import Int8Options, int8_step

pytest.importorskip("openvino", reason="the openvino extra is not installed: pip install 'compress-edge[openvino]'")
from compress.export.openvino import OpenVinoIrOptions, openvino_step  # noqa: E402


def _source(module, preprocessing, val_images, calib_images, cache: Path) -> ExportSource:
    def images(val: int, calibration: int, channels: int) -> ExportImages:
        return ExportImages(val_images[0][:val].numpy(), val_images[1][:val].numpy(), calib_images[:calibration])

    return ExportSource(student=lambda: (module, preprocessing), student_sha256="f" * 64, images=images,
                        built={}, options={}, cache_dir=cache, full_checks=False)


@pytest.fixture(scope="module")
def built(tmp_path_factory, trained_tiny, preprocessing, val_images, calib_images):
    """model.onnx and model.int8.onnx from the steps, then both OpenVINO steps, in one folder."""
    folder = tmp_path_factory.mktemp("ov-steps")
    source = _source(trained_tiny, preprocessing, val_images, calib_images, folder)
    source.built = {"onnx": onnx_step(source, OnnxOptions(exporter="torchscript", parity_images=16), folder)
                    .artifacts[0]}
    source.built["int8"] = int8_step(source, Int8Options(calibration=32, eval_images=64), folder).artifacts[0]
    ir = openvino_step(source, OpenVinoIrOptions(parity_images=32), folder)
    int8 = openvino_int8_step(source, OpenVinoInt8Options(calibration=32, eval_images=300), folder)
    return folder, source, ir, int8


def test_openvino_step_writes_a_checked_ir_with_its_weights(built):
    folder, source, ir, _ = built
    assert ir.artifacts == [folder / "model.xml"] and (folder / "model.bin").is_file()
    assert ir.checks["openvino"]["ok"] and ir.checks["openvino"]["n"] == 32
    assert ir.checks["openvino"]["max_abs_diff"] < 1e-4
    assert ir.summary.startswith("model.xml (fp32 weights), parity: max |Δlogit| ")
    record = read_sidecar(folder / "model.xml")
    assert record["weights"]["sha256"] == sha256_file(folder / "model.bin")
    assert record["inputs"] == {"onnx": sha256_file(source.built["onnx"])}


def test_openvino_int8_step_ships_the_route_that_measured_better(built, val_images):
    folder, source, _, step = built
    check = step.checks["openvino_int8"]
    assert step.artifacts == [folder / "model.int8.xml"] and (folder / "model.int8.bin").is_file()
    assert set(check["routes"]) == {"nncf", "qdq"} and check["n"] == 300
    assert check["route"] in ("nncf", "qdq")
    assert list(check["routes"]["nncf"]["p50_ms"]) == ["1"]  # full_checks off: batch 1 only
    assert check["routes"]["nncf"]["ratio"]["1"] == 1.0  # the first route is the baseline
    measured = {r: RouteMeasure(m["top1"], m["drop_points"], {1: m["p50_ms"]["1"]}, {1: m["ratio"]["1"]})
                for r, m in check["routes"].items()}
    assert choose_route(measured, 1.0)[0] == check["route"]  # the shipped route is the one the rule picks
    record = read_sidecar(folder / "model.int8.xml")
    assert record["route"] == check["route"] and record["why"] == check["why"]
    assert record["inputs"] == {"onnx": sha256_file(source.built["onnx"]),
                                "onnx-int8": sha256_file(source.built["int8"])}
    # the shipped file runs through the deploy runner and scores what the step measured for its route
    x, y = val_images[0][:300].numpy(), val_images[1][:300].numpy()
    top1 = float((deploy.load(folder / "model.int8.xml").predict_logits(x).argmax(1) == y).mean())
    assert top1 == pytest.approx(check["routes"][check["route"]]["top1"], abs=1e-4)
    assert 100 * (check["fp32_top1"] - top1) <= 1.0


def _measure(top1: float, fp32: float, ratio: float) -> RouteMeasure:
    return RouteMeasure(top1, 100 * (fp32 - top1), {1: ratio}, {1: ratio})


def test_route_choice_is_the_fastest_within_the_gate() -> None:
    fast_but_lossy, slow, fast = _measure(0.80, 0.85, 0.5), _measure(0.85, 0.85, 1.0), _measure(0.846, 0.85, 0.7)
    route, why = choose_route({"nncf": slow, "qdq": fast}, 1.0)
    assert route == "qdq" and why.startswith("fastest at batch 1 within the 1-point gate (drop 0.40 points)")
    assert "nncf: 0.00 points, 1.43x its batch-1 latency" in why
    route, why = choose_route({"nncf": slow, "qdq": fast_but_lossy}, 1.0)
    assert route == "nncf" and "qdq: 5.00 points, over the 1-point gate" in why
    assert choose_route({"qdq": fast}, 1.0) == ("qdq", "the only route built; top-1 drop 0.40 points")
    with pytest.raises(ExportError, match=r"loses more than 0.1 points of top-1 against fp32 \(nncf 5.00, "
                                          r"qdq 0.40\): raise openvino_int8.max_top1_drop"):
        choose_route({"nncf": fast_but_lossy, "qdq": fast}, 0.1)


def test_int8_step_with_a_gate_keeps_sensitive_layers_in_float_and_records_the_cost(
        outlier_onnx, trained_tiny, preprocessing, val_images, calib_images, tmp_path):
    source = _source(trained_tiny, preprocessing, val_images, calib_images, tmp_path)
    source.built = {"onnx": outlier_onnx}
    step = int8_step(source, Int8Options(calibration=32, eval_images=500, max_top1_drop=1.0), tmp_path)
    fallback = step.checks["int8"]["fallback"]
    assert len(fallback["float_layers"]) == 2 and fallback["drop_points"] <= 1.0
    assert fallback["method"] == "minmax" and set(fallback["method_accuracy"]) == {"minmax", "entropy", "percentile"}
    assert step.checks["int8"]["accuracy_drop_points"] <= 1.0
    assert step.summary.endswith(", 2 layer(s) kept in float")
    cost = fallback["latency_cost"]["1"]
    assert cost["all_int8_p50_ms"] > 0 and cost["float_layers_p50_ms"] > 0 and cost["ratio"] > 0
    record = read_sidecar(tmp_path / "model.int8.onnx")
    assert record["float_nodes"] == fallback["float_layers"]
    assert record["accuracy_fallback"]["latency_cost"] == fallback["latency_cost"]
    # the same gate with no room for float layers cannot be met: the export fails and says how to fix it
    (tmp_path / "capped").mkdir()
    with pytest.raises(ExportError, match=r"INT8 loses \d+\.\d\d points .* even with 0 layer\(s\) in float, over the "
                                          r"1-point gate: allow more \(max_float_layers\)"):
        int8_step(source, Int8Options(calibration=32, eval_images=500, max_top1_drop=1.0, max_float_layers=0,
                                      method="minmax"), tmp_path / "capped")


def test_int8_step_without_a_gate_is_the_plain_quantization(built) -> None:
    folder, _, _, _ = built
    record = read_sidecar(folder / "model.int8.onnx")
    assert "accuracy_fallback" not in record and "float_nodes" not in record
    assert record["quantization"]["method"] == "minmax" and record["calibration_images"] == 32
