"""INT8 that keeps its accuracy: calibration method by measurement, float fallback for sensitive layers."""

from __future__ import annotations

import pytest

from compress.artifacts import read_sidecar
from compress.errors import ConfigError
from compress.export.onnx import export_onnx, ort_session, read_metadata
from compress.export.quantize import onnx_predict, quantize_int8
from compress.export.sensitivity import FallbackOptions, quantize_with_fallback, quantized_layers


@pytest.fixture(scope="module")
def held_out(val_images):
    return val_images[0][:500].numpy(), val_images[1][:500].numpy()


def _top1(path, images, labels):
    return float((onnx_predict(ort_session(path), images).argmax(1) == labels).mean())


def test_outlier_layer_fails_plain_int8_and_the_fallback_keeps_it_in_float(outlier_onnx, calib_images, held_out):
    x, y = held_out
    fp32 = _top1(outlier_onnx, x, y)
    plain = quantize_int8(outlier_onnx, outlier_onnx.with_name("plain.int8.onnx"), calib_images)
    assert fp32 > 0.7
    assert 100 * (fp32 - _top1(plain, x, y)) > 20, "plain INT8 must fail the 1-point gate by far"

    out = outlier_onnx.with_name("model.int8.onnx")
    result = quantize_with_fallback(outlier_onnx, out, calib_images, x, y, FallbackOptions(methods=("minmax",)))
    assert result.passed and result.drop_points <= 1.0
    assert result.fp32_accuracy == pytest.approx(fp32)
    assert result.steps[0].float_layers == () and result.steps[0].drop_points > 20
    # the two convs that quantize the outlier tensor rank first (quantized alone, each wipes accuracy)
    # and are exactly the layers kept in float
    ranked = {s.node: s for s in result.sensitivity}
    assert {ranked[n].weight for n in result.float_layers} == {"net.0.weight", "net.4.weight"}
    assert all(ranked[n].accuracy < 0.3 for n in result.float_layers)
    assert {s.node for s in result.sensitivity[:2]} == set(result.float_layers)
    assert all(s.accuracy > fp32 - 0.02 for s in result.sensitivity[2:]), "no other layer is sensitive"
    # the written file is the chosen step: float layers unquantized, the layers after them still INT8
    # (the max-pools between the two float convs follow them into float: ORT only quantizes those
    # after a quantized producer), and it scores what the search measured
    still_quantized = quantized_layers(out)
    assert not {node for node, _, _ in still_quantized} & set(result.float_layers)
    assert {"net.8.weight", "net.12.weight"} <= {weight for _, _, weight in still_quantized}
    assert _top1(out, x, y) == pytest.approx(result.accuracy)
    record = read_sidecar(out)
    assert record["float_nodes"] == list(result.float_layers)
    assert record["accuracy_fallback"]["passed"] is True
    assert read_metadata(out)["compress.float_nodes"] == ",".join(result.float_layers)


def test_calibration_method_is_chosen_by_measured_accuracy(tmp_path, trained_tiny, preprocessing, calib_images,
                                                            held_out):
    """One corrupted calibration pixel stretches the min-max range of the input 300-fold; the 99.999th
    percentile ignores it. Without labels the fp32 predictions are the reference."""
    onnx_path = export_onnx(trained_tiny, preprocessing, tmp_path / "model.onnx")
    calibration = calib_images.copy()
    calibration[7, 0, 3, 3] = 1000.0
    result = quantize_with_fallback(onnx_path, tmp_path / "model.int8.onnx", calibration, held_out[0],
                                    options=FallbackOptions(max_float_layers=0))
    assert set(result.method_accuracy) == {"minmax", "entropy", "percentile"}
    assert result.method == max(result.method_accuracy, key=result.method_accuracy.get) == "percentile"
    assert result.method_accuracy["minmax"] < 0.5 < result.method_accuracy["percentile"]
    assert result.fp32_accuracy == 1.0  # its own predictions as labels
    assert result.sensitivity == () and result.float_layers == ()
    assert read_sidecar(tmp_path / "model.int8.onnx")["quantization"]["method"] == "percentile"


def test_model_within_the_gate_is_left_alone(tmp_path, trained_tiny, preprocessing, calib_images, held_out):
    onnx_path = export_onnx(trained_tiny, preprocessing, tmp_path / "model.onnx")
    result = quantize_with_fallback(onnx_path, tmp_path / "model.int8.onnx", calib_images, *held_out,
                                    FallbackOptions(methods=("minmax",)))
    assert result.passed and result.float_layers == () and len(result.steps) == 1
    assert "float_nodes" not in read_sidecar(tmp_path / "model.int8.onnx")


def test_a_search_that_cannot_pass_reports_it(outlier_onnx, calib_images, held_out):
    result = quantize_with_fallback(outlier_onnx, outlier_onnx.with_name("capped.int8.onnx"), calib_images,
                                    *held_out, FallbackOptions(methods=("minmax",), max_float_layers=1))
    assert not result.passed
    assert len(result.steps) == 2 and result.drop_points > 20


@pytest.mark.parametrize("options, match", [
    (FallbackOptions(methods=("kl",)), "unknown calibration method 'kl'"),
    (FallbackOptions(methods=()), "no calibration method"),
    (FallbackOptions(max_drop_points=-1), "max_drop_points"),
    (FallbackOptions(max_float_layers=-1), "max_float_layers"),
])
def test_bad_options(outlier_onnx, calib_images, held_out, options, match):
    with pytest.raises(ConfigError, match=match):
        quantize_with_fallback(outlier_onnx, outlier_onnx.with_name("x.onnx"), calib_images, *held_out, options)


def test_bad_inputs(outlier_onnx, calib_images, held_out):
    x, y = held_out
    with pytest.raises(ConfigError, match="held-out images must be a non-empty"):
        quantize_with_fallback(outlier_onnx, outlier_onnx.with_name("x.onnx"), calib_images, x[0], y)
    with pytest.raises(ConfigError, match=r"one class per held-out image \(500\)"):
        quantize_with_fallback(outlier_onnx, outlier_onnx.with_name("x.onnx"), calib_images, x, y[:10])
    assert not outlier_onnx.with_name("x.onnx").exists()
