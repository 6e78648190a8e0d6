"""OpenVINO export: IR parity with PyTorch, fp16 weights, both INT8 routes, sidecars, missing library."""

from __future__ import annotations

import copy
import json
import sys

import numpy as np
import pytest
import torch

from compress.artifacts import read_sidecar, sha256_file
from compress.errors import ConfigError, ExportError, MissingDependency
from compress.export.onnx import export_onnx, ort_session
from compress.export.openvino import OpenVinoOptions, compile_ir, export_openvino, ir_predict
from compress.export.quantize import onnx_predict, quantize_int8

pytest.importorskip("openvino", reason="the openvino extra is not installed: pip install 'compress-edge[openvino]'")


@pytest.fixture(scope="module")
def onnx_pair(tmp_path_factory, trained_tiny, preprocessing, calib_images):
    folder = tmp_path_factory.mktemp("ov")
    fp32 = export_onnx(trained_tiny, preprocessing, folder / "model.onnx")
    return fp32, quantize_int8(fp32, folder / "model.int8.onnx", calib_images)


@pytest.fixture(scope="module")
def full_export(tmp_path_factory, onnx_pair, trained_tiny, calib_images, val_images):
    out = tmp_path_factory.mktemp("ov-out")
    result = export_openvino(onnx_pair[0], out, OpenVinoOptions(int8=("nncf", "qdq")), calib_images,
                             int8_onnx=onnx_pair[1], module=trained_tiny, parity_images=val_images[0][:64])
    return out, result


def test_float_ir_matches_pytorch_and_carries_preprocessing(full_export, trained_tiny, val_images, preprocessing):
    out, result = full_export
    assert result.parity is not None and result.parity.ok and result.parity.n == 64
    assert result.parity.max_abs_diff < 1e-4
    x = val_images[0][:200]
    with torch.no_grad():
        ref = trained_tiny(x).numpy()
    got = ir_predict(compile_ir(result.files["fp32"]), x.numpy())
    np.testing.assert_allclose(got, ref, atol=1e-4, rtol=1e-4)
    import openvino as ov

    model = ov.Core().read_model(str(result.files["fp32"]))
    assert json.loads(model.get_rt_info(["compress", "preprocessing"]).astype(str)) == preprocessing.to_dict()
    assert json.loads(model.get_rt_info(["compress", "architecture"]).astype(str)) == {"type": "test-tiny-cnn"}


def test_every_ir_has_a_sidecar_that_hashes_xml_and_bin(full_export, onnx_pair):
    out, result = full_export
    assert sorted(result.files) == ["fp32", "nncf", "qdq"]
    stems, suffixes = ("model", "model.int8-nncf", "model.int8-qdq"), (".xml", ".bin", ".xml.json")
    assert sorted(p.name for p in out.iterdir()) == sorted(stem + suffix for stem in stems for suffix in suffixes)
    for route, xml in result.files.items():
        record = read_sidecar(xml)  # verifies the .xml hash
        assert record["weights"] == {"file": xml.with_suffix(".bin").name,
                                     "sha256": sha256_file(xml.with_suffix(".bin"))}
    assert read_sidecar(result.files["fp32"])["parity"]["ok"] is True
    assert read_sidecar(result.files["fp32"])["inputs"] == {"onnx": sha256_file(onnx_pair[0])}
    assert read_sidecar(result.files["nncf"])["route"] == "nncf"
    assert read_sidecar(result.files["qdq"])["inputs"] == {"onnx-int8": sha256_file(onnx_pair[1])}


def test_both_int8_routes_keep_accuracy(full_export, onnx_pair, val_images):
    out, result = full_export
    x, y = val_images[0].numpy(), val_images[1].numpy()
    fp32 = float((ir_predict(compile_ir(result.files["fp32"]), x).argmax(1) == y).mean())
    for route in ("nncf", "qdq"):
        assert result.int8_agreement[route] >= 0.95
        top1 = float((ir_predict(compile_ir(result.files[route]), x).argmax(1) == y).mean())
        assert 100 * (fp32 - top1) <= 1.0, f"{route}: {top1:.3f} vs fp32 {fp32:.3f}"
    import openvino as ov

    for route in ("nncf", "qdq"):  # really quantized: FakeQuantize nodes in the graph
        ops = [op.get_type_name() for op in ov.Core().read_model(str(result.files[route])).get_ops()]
        assert ops.count("FakeQuantize") >= 4
    # the qdq route runs ONNX Runtime's own quantization: same answers as ORT on the same file
    ort = onnx_predict(ort_session(onnx_pair[1]), x[:300]).argmax(1)
    assert (ir_predict(compile_ir(result.files["qdq"]), x[:300]).argmax(1) == ort).mean() >= 0.99


def test_fp16_weights_halve_the_file_and_pass_parity(tmp_path, onnx_pair, trained_tiny, val_images, full_export):
    result = export_openvino(onnx_pair[0], tmp_path, OpenVinoOptions(weights="fp16"), module=trained_tiny,
                             parity_images=val_images[0][:64])
    assert list(result.files) == ["fp16"] and result.parity is not None and result.parity.ok
    assert result.parity.max_abs_diff > 1e-6, "fp16 weights should move the logits a little"
    fp32_bin = full_export[1].files["fp32"].with_suffix(".bin").stat().st_size
    assert result.files["fp16"].with_suffix(".bin").stat().st_size < 0.6 * fp32_bin
    assert read_sidecar(result.files["fp16"])["kind"] == "openvino-fp16"


def test_ir_that_disagrees_with_pytorch_is_refused(tmp_path, onnx_pair, trained_tiny, val_images):
    other = copy.deepcopy(trained_tiny)
    with torch.no_grad():
        other.net[-1].bias += 1.0  # a different model than the one exported
    with pytest.raises(ExportError, match="OpenVINO IR 'model.xml' disagrees with PyTorch"):
        export_openvino(onnx_pair[0], tmp_path / "out", module=other, parity_images=val_images[0][:16])
    assert list((tmp_path / "out").iterdir()) == [], "a refused IR must not be left behind"


@pytest.mark.parametrize("options, kwargs, match", [
    (OpenVinoOptions(weights="int4"), {}, "unknown OpenVINO weight format 'int4'"),
    (OpenVinoOptions(int8=("pot",)), {}, "unknown OpenVINO INT8 route 'pot'"),
    (OpenVinoOptions(int8=("nncf", "nncf")), {}, "listed twice"),
    (OpenVinoOptions(nncf_preset="fast"), {}, "unknown NNCF preset 'fast'"),
    (OpenVinoOptions(int8=("nncf",)), {}, "nncf INT8 route needs calibration images"),
    (OpenVinoOptions(int8=("qdq",)), {}, "qdq INT8 route needs an existing QDQ ONNX model"),
    (OpenVinoOptions(), {"parity_images": torch.zeros(1, 1, 28, 28)}, "both module= and parity_images="),
])
def test_bad_options(tmp_path, onnx_pair, options, kwargs, match):
    with pytest.raises(ConfigError, match=match):
        export_openvino(onnx_pair[0], tmp_path / "out", options, **kwargs)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("blocked, options", [("openvino", OpenVinoOptions()),
                                              ("nncf", OpenVinoOptions(int8=("nncf",)))])
def test_missing_library_names_the_extra(monkeypatch, tmp_path, onnx_pair, calib_images, blocked, options):
    monkeypatch.setitem(sys.modules, blocked, None)  # makes `import <blocked>` raise ImportError
    with pytest.raises(MissingDependency, match=rf"'{blocked}' is not installed .*pip install 'compress-edge\[openvino\]'"):
        export_openvino(onnx_pair[0], tmp_path, options, calib_images)
