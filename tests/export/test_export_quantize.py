from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from compress.errors import ConfigError
from compress.export.onnx import export_onnx, ort_session, read_metadata
from compress.export.quantize import QuantConfig, compare_int8, onnx_predict, quantize_int8


@pytest.fixture(scope="module")
def fp32_path(tmp_path_factory, trained_tiny, preprocessing):
    return export_onnx(trained_tiny, preprocessing, tmp_path_factory.mktemp("q") / "model.onnx")


def test_int8_accuracy_within_one_point_on_fashion_mnist(fp32_path, calib_images, val_images, preprocessing):
    int8 = quantize_int8(fp32_path, fp32_path.with_name("model.int8.onnx"), calib_images)
    x, y = val_images[0].numpy(), val_images[1].numpy()
    report = compare_int8(fp32_path, int8, x, y, batch_sizes=(8,), rounds=2)
    assert report.n == 1000
    assert report.fp32_accuracy > 0.70, "the tiny model should have learned Fashion-MNIST"
    assert report.accuracy_drop_points <= 1.0
    assert report.agreement >= 0.97
    assert report.latency["8"]["int8_p50_ms"] > 0
    # metadata survives quantization, so deploy can still preprocess for the int8 model
    assert read_metadata(int8)["compress.preprocessing"] == preprocessing.to_dict()


def test_int8_graph_is_qdq_u8s8_per_channel(fp32_path, calib_images):
    path = quantize_int8(fp32_path, fp32_path.with_name("a.int8.onnx"), calib_images[:64])
    model = onnx.load(str(path))
    ops = [n.op_type for n in model.graph.node]
    assert ops.count("QuantizeLinear") > 0 and ops.count("DequantizeLinear") > ops.count("QuantizeLinear")
    inits = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    zero_points = [inits[n.input[2]] for n in model.graph.node if n.op_type == "QuantizeLinear"]
    assert all(z.dtype == np.uint8 for z in zero_points)  # activations: unsigned (x86 fast path)
    weight_scales = [inits[n.input[1]] for n in model.graph.node
                     if n.op_type == "DequantizeLinear" and n.input[0] in inits and inits[n.input[0]].dtype == np.int8]
    assert any(s.ndim == 1 and s.size > 1 for s in weight_scales)  # per-channel weights


def test_tensorrt_int8_is_symmetric_signed(fp32_path, calib_images, val_images):
    path = quantize_int8(fp32_path, fp32_path.with_name("t.int8.onnx"), calib_images[:64], QuantConfig.for_tensorrt())
    model = onnx.load(str(path))
    inits = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    zps = [inits[n.input[2]] for n in model.graph.node if n.op_type in ("QuantizeLinear", "DequantizeLinear")
           and len(n.input) > 2]
    activation_and_weight = [z for z in zps if z.dtype != np.int32]  # int32 zero points belong to biases
    assert activation_and_weight and all(z.dtype == np.int8 and not z.any() for z in activation_and_weight)
    x = val_images[0][:200].numpy()
    agree = (onnx_predict(ort_session(path), x).argmax(1) == onnx_predict(ort_session(fp32_path), x).argmax(1)).mean()
    assert agree >= 0.95


@pytest.mark.parametrize("method", ["entropy", "percentile"])
def test_other_calibration_methods(fp32_path, calib_images, val_images, method):
    path = quantize_int8(fp32_path, fp32_path.with_name(f"{method}.int8.onnx"), calib_images[:128],
                         QuantConfig(method=method))
    x = val_images[0][:200].numpy()
    agree = (onnx_predict(ort_session(path), x).argmax(1) == onnx_predict(ort_session(fp32_path), x).argmax(1)).mean()
    assert agree >= 0.95


def test_bad_quantization_options(fp32_path, calib_images):
    with pytest.raises(ConfigError, match="unknown calibration method 'kl'"):
        quantize_int8(fp32_path, fp32_path.with_name("x.onnx"), calib_images, QuantConfig(method="kl"))
    with pytest.raises(ConfigError, match="non-empty N x C x H x W"):
        quantize_int8(fp32_path, fp32_path.with_name("x.onnx"), calib_images[0])
    assert not fp32_path.with_name("x.onnx").exists()
