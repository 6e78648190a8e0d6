from __future__ import annotations


import pytest
import torch

from compress.artifacts import read_sidecar, sha256_file
from compress.deployable import architecture_of
from compress.errors import CheckpointError, ConfigError, ExportError
from compress.export.onnx import check_parity, export_onnx, ort_session, read_metadata
from compress.models import create_model

STUDENTS = ["resnet8", "resnet8x4", "mobilenet_v2", "mobilenet_v3_small", "shufflenet_v2_x1_0", "efficientnet_b0",
            "wrn_16_2", "vgg8"]


@pytest.mark.parametrize("name", STUDENTS)
def test_parity_every_student_family_at_batch_1_3_17(name, tmp_path, val_images, preprocessing, calibrate_bn):
    torch.manual_seed(0)
    images = val_images[0][:21]
    model = calibrate_bn(create_model(name, num_classes=10, in_channels=1, image_size=28), val_images[0][:64])
    path = export_onnx(model, preprocessing, tmp_path / "m.onnx")
    report = check_parity(model, path, images, batch_sizes=(1, 3, 17))
    assert report.n == 21 and report.batch_sizes == (1, 3, 17)
    with torch.no_grad():
        scale = float(model(images).abs().max())
    assert scale > 0.5, "calibrated logits should be O(1)"
    assert report.max_abs_diff <= 1e-4 + 1e-4 * scale
    assert report.real_disagreements == 0 and report.top1_agreement >= 0.95


def test_metadata_and_sidecar_round_trip(tmp_path, trained_tiny, preprocessing):
    path = export_onnx(trained_tiny, preprocessing, tmp_path / "m.onnx", inputs={"checkpoint": "abc"})
    meta = read_metadata(path)
    assert meta["compress.preprocessing"] == preprocessing.to_dict()
    assert meta["compress.preprocessing"]["class_names"][0] == "T-shirt/top"
    assert meta["compress.architecture"] == architecture_of(trained_tiny)
    assert meta["compress.version"] == "0.1.0"
    side = read_sidecar(path)
    assert side["kind"] == "onnx" and side["sha256"] == sha256_file(path) and side["inputs"] == {"checkpoint": "abc"}
    session = ort_session(path)
    (inp,), (out,) = session.get_inputs(), session.get_outputs()
    assert (inp.name, out.name, inp.type) == ("input", "logits", "tensor(float)")
    assert inp.shape[1:] == [1, 28, 28] and not isinstance(inp.shape[0], int)  # dynamic batch
    assert not list(tmp_path.glob(".*.tmp"))  # atomic write left nothing behind


def test_torchscript_exporter_also_passes_parity(tmp_path, trained_tiny, preprocessing, val_images):
    path = export_onnx(trained_tiny, preprocessing, tmp_path / "m.onnx", exporter="torchscript")
    report = check_parity(trained_tiny, path, val_images[0][:40])
    assert report.ok and report.top1_agreement == 1.0


def test_parity_catches_a_wrong_model(tmp_path, trained_tiny, preprocessing, val_images):
    path = export_onnx(trained_tiny, preprocessing, tmp_path / "m.onnx")
    other = type(trained_tiny)()
    other.load_state_dict(trained_tiny.state_dict())
    with torch.no_grad():
        other.net[-1].bias += 0.5  # what a silently wrong export would look like
    with pytest.raises(ExportError, match=r"disagrees with PyTorch: max \|Δlogit\| 0.5"):
        check_parity(other.eval(), path, val_images[0][:20])
    report = check_parity(other.eval(), path, val_images[0][:20], raise_on_failure=False)
    assert not report.ok and abs(report.max_abs_diff - 0.5) < 1e-4


def test_corrupt_onnx_is_a_clear_error(tmp_path):
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"\x08\x07garbage" * 10)
    with pytest.raises(CheckpointError, match="not a readable ONNX model"):
        read_metadata(bad)
    with pytest.raises(CheckpointError, match="ONNX Runtime cannot load"):
        ort_session(bad)


@pytest.mark.parametrize("kwargs, message", [({"exporter": "tflite"}, "unknown exporter 'tflite'"),
                                             ({"opset": 13}, "opset must be at least 18"),
                                             ({"example_batch": 1}, "example batch must be at least 2")])
def test_bad_export_options(tmp_path, trained_tiny, preprocessing, kwargs, message):
    with pytest.raises(ConfigError, match=message):
        export_onnx(trained_tiny, preprocessing, tmp_path / "m.onnx", **kwargs)
    assert not (tmp_path / "m.onnx").exists()
