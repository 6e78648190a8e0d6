from __future__ import annotations

import sys

import numpy as np
import onnx
import pytest

from compress.artifacts import read_sidecar
from compress.errors import ConfigError, MissingDependency
from compress.export.fp16 import convert_to_fp16
from compress.export.onnx import export_onnx, ort_session
from compress.export.quantize import onnx_predict
from compress.export.tensorrt import Profile, _prepare_onnx, build_engine, parse_batch, write_engine_sidecar


@pytest.fixture(scope="module")
def fp32_path(tmp_path_factory, trained_tiny, preprocessing):
    return export_onnx(trained_tiny, preprocessing, tmp_path_factory.mktemp("trt") / "model.onnx")


def test_profile_parsing():
    assert parse_batch("1,8,32") == Profile(1, 8, 32)
    assert parse_batch((4, 4, 4)) == Profile(4, 4, 4)


@pytest.mark.parametrize("text, message", [("8,4,32", r"min <= opt <= max, got 8,4,32"),
                                           ("1,64,32", r"min <= opt <= max, got 1,64,32"),
                                           ("0,1,2", "min must be at least 1"),
                                           ("1,8", "three integers"), ("a,b,c", "three integers")])
def test_impossible_profile_is_a_clear_error(text, message):
    with pytest.raises(ConfigError, match=message):
        parse_batch(text)


def test_missing_tensorrt_is_a_clear_error(fp32_path, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorrt", None)  # makes `import tensorrt` raise ImportError
    with pytest.raises(MissingDependency, match=r"'tensorrt' is not installed .*pip install 'compress-edge\[trt\]'"):
        build_engine(fp32_path, tmp_path / "model.plan", precision="fp16")
    assert not (tmp_path / "model.plan").exists()


def test_profile_is_checked_before_anything_else(fp32_path, tmp_path):
    with pytest.raises(ConfigError, match="min <= opt <= max"):
        build_engine(fp32_path, tmp_path / "model.plan", batch=(32, 8, 1))
    with pytest.raises(ConfigError, match="unknown precision 'int4'"):
        build_engine(fp32_path, tmp_path / "model.plan", precision="int4")


def test_int8_engine_needs_qdq(fp32_path, tmp_path):
    with pytest.raises(ConfigError, match="needs an ONNX with Q/DQ nodes"):
        _prepare_onnx(fp32_path, "int8", 11, tmp_path)


def test_fp16_onnx_for_strongly_typed_builds(fp32_path, tmp_path, val_images):
    path, strongly_typed = _prepare_onnx(fp32_path, "fp16", 11, tmp_path)
    assert strongly_typed and path != fp32_path
    model = onnx.load(str(path))
    onnx.checker.check_model(model, full_check=True)
    floats = [t for t in model.graph.initializer if t.data_type in (onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16)]
    assert floats and all(t.data_type == onnx.TensorProto.FLOAT16 for t in floats)
    # interface unchanged: float32 in, float32 out
    assert model.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    assert model.graph.output[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    x = val_images[0][:100].numpy()
    ref, got = onnx_predict(ort_session(fp32_path), x), onnx_predict(ort_session(path), x)
    assert np.abs(ref - got).max() <= 2e-2 * np.abs(ref).max()
    assert (ref.argmax(1) == got.argmax(1)).mean() >= 0.98
    # TensorRT 10 keeps the fp32 graph and uses the FP16 builder flag instead
    assert _prepare_onnx(fp32_path, "fp16", 10, tmp_path) == (fp32_path, False)


def test_fp16_conversion_clamps_out_of_range_constants():
    from onnx import TensorProto, helper, numpy_helper

    big = numpy_helper.from_array(np.array([1e9, -1e9, 1.5], dtype=np.float32), "big")
    graph = helper.make_graph([helper.make_node("Add", ["input", "big"], ["logits"])], "g",
                              [helper.make_tensor_value_info("input", TensorProto.FLOAT, [None, 3])],
                              [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [None, 3])], [big])
    model = convert_to_fp16(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)]))
    values = numpy_helper.to_array(model.graph.initializer[0])
    assert values.dtype == np.float16 and np.isfinite(values).all() and values[2] == 1.5


def test_engine_sidecar_records_versions_profile_and_hashes(fp32_path, tmp_path):
    engine = tmp_path / "model.plan"
    engine.write_bytes(b"fake engine bytes")
    write_engine_sidecar(engine, fp32_path, tensorrt_version="10.9.0", gpu="NVIDIA H100", precision="fp16",
                         profile=Profile(1, 8, 32), strongly_typed=False,
                         metadata={"compress.preprocessing": {"channels": 1}})
    record = read_sidecar(engine)
    assert record["kind"] == "tensorrt-engine" and record["tensorrt"] == "10.9.0" and record["gpu"] == "NVIDIA H100"
    assert record["profile"] == {"min": 1, "opt": 8, "max": 32} and record["precision"] == "fp16"
    assert record["inputs"]["onnx"] == read_sidecar(fp32_path)["sha256"]
    assert record["preprocessing"] == {"channels": 1}


@pytest.mark.gpu
@pytest.mark.tensorrt
@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_build_and_run_engine_matches_onnx(fp32_path, tmp_path, val_images, precision):
    import deploy

    engine = build_engine(fp32_path, tmp_path / "model.plan", precision=precision, batch=(1, 8, 32),
                          timing_cache_path=tmp_path / "timing.cache")
    assert (tmp_path / "timing.cache").exists()
    runner = deploy.load(engine)
    x = val_images[0][:50].numpy()
    ref = onnx_predict(ort_session(fp32_path), x)
    got = runner.predict_logits(x)  # 50 > max 32: runs in chunks
    assert np.abs(ref - got).max() <= (1e-3 if precision == "fp32" else 2e-2) * max(1.0, np.abs(ref).max())


@pytest.mark.gpu
@pytest.mark.tensorrt
def test_build_int8_engine_from_qdq(fp32_path, tmp_path, calib_images, val_images):
    import deploy
    from compress.export.quantize import QuantConfig, quantize_int8

    qdq = quantize_int8(fp32_path, tmp_path / "model.trt-int8.onnx", calib_images, QuantConfig.for_tensorrt())
    runner = deploy.load(build_engine(qdq, tmp_path / "model.plan", precision="int8"))
    x = val_images[0][:64].numpy()
    agree = (runner.predict_logits(x).argmax(1) == onnx_predict(ort_session(fp32_path), x).argmax(1)).mean()
    assert agree >= 0.95
