"""Issue 23, item 1: the sidecar's hash covers the bytes each runtime reads, not a file the sidecar names.

OpenVINO reads ``<stem>.bin`` beside the ``.xml``; ONNX Runtime reads external data files the model
names; a TensorRT runner deserialises the plan. Each is given the very bytes that were hashed.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import onnx
import pytest
from hostile import assert_error, pooled_onnx, run_cli, write_sidecar
from PIL import Image

import deploy
from deploy import DeployError


@pytest.fixture()
def image(tmp_path, raw_images) -> Path:
    path = tmp_path / "img.png"
    Image.fromarray(raw_images[0]).save(path)
    return path


@pytest.fixture(scope="module")
def ir_model(onnx_model, tmp_path_factory) -> Path:
    pytest.importorskip("openvino")
    from compress.export.openvino import export_openvino

    return export_openvino(onnx_model[0], tmp_path_factory.mktemp("ir")).files["fp32"]


@pytest.fixture()
def ir_copy(ir_model, tmp_path) -> Path:
    folder = tmp_path / "ir"
    folder.mkdir()
    for name in (ir_model.name, ir_model.with_suffix(".bin").name, ir_model.name + ".json"):
        shutil.copy(ir_model.with_name(name), folder / name)
    return folder / ir_model.name


def _name_weights(xml: Path, name: str) -> None:
    side = Path(f"{xml}.json")
    record = json.loads(side.read_text())
    record["weights"]["file"] = name
    side.write_text(json.dumps(record))


def test_sidecar_naming_an_untouched_copy_of_the_weights_is_refused(ir_copy, raw_images):
    """The attack of the issue: keep a pristine copy, name it in the sidecar, modify model.bin."""
    bin_path = ir_copy.with_suffix(".bin")
    shutil.copy(bin_path, bin_path.with_name("pristine.bin"))
    data = bytearray(bin_path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    bin_path.write_bytes(bytes(data))
    _name_weights(ir_copy, "pristine.bin")
    with pytest.raises(DeployError, match=r"names weights file 'pristine.bin', but OpenVINO reads 'model.bin' "
                                          r"beside the .xml"):
        deploy.load(ir_copy)
    # the name is refused even when the file it names is the very .bin OpenVINO reads
    _name_weights(ir_copy, "./model.bin")
    with pytest.raises(DeployError, match="names weights file './model.bin'"):
        deploy.load(ir_copy)
    assert deploy.load(ir_copy, trust=True).predict(raw_images[:1])[0].shape == (1, 10)  # --trust: the user's call


@pytest.mark.parametrize("name", ["../../../etc/passwd", "/etc/passwd", "", "model.bin\n", 7, None, ["model.bin"]])
def test_hostile_weights_names_are_one_line(ir_copy, image, name):
    _name_weights(ir_copy, name)
    assert_error(run_cli("classify", ir_copy, image), 1, r"names weights file .* but OpenVINO reads 'model.bin'")


def test_a_weights_hash_of_the_wrong_type_is_refused(ir_copy):
    side = Path(f"{ir_copy}.json")
    record = json.loads(side.read_text())
    record["weights"]["sha256"] = ["not", "a", "hash"]
    side.write_text(json.dumps(record))
    with pytest.raises(DeployError, match="records no hash for its weights"):
        deploy.load(ir_copy)


def test_openvino_loads_the_bytes_that_were_hashed(ir_copy, monkeypatch, raw_images):
    """The .xml and .bin reach OpenVINO as the verified bytes: nothing is re-read by path afterwards."""
    import openvino

    seen: list[tuple[object, ...]] = []
    read_model = openvino.Core.read_model

    class Core(openvino.Core):
        def read_model(self, *args, **kwargs):  # type: ignore[override]
            seen.append(args)
            return read_model(self, *args, **kwargs)

    monkeypatch.setattr(openvino, "Core", Core)
    deploy.load(ir_copy)
    assert seen == [(ir_copy.read_bytes(), ir_copy.with_suffix(".bin").read_bytes())]


def test_garbage_xml_gives_one_line_without_frontend_noise(tmp_path, image):
    pytest.importorskip("openvino")
    xml = tmp_path / "model.xml"
    xml.write_bytes(b"garbage\x00\x01 not an IR")
    run = run_cli("classify", xml, image, "--trust")
    assert_error(run, 1, r"cannot load OpenVINO model .*Unable to read the model")
    assert "Exception from src" not in run.stderr and "tensorflow" not in run.stderr


def _external_data_model(folder: Path) -> Path:
    """A tiny classifier whose weight lives in ``weights.data`` beside it, with a sidecar hashing the .onnx."""
    folder.mkdir(exist_ok=True)
    path = pooled_onnx(folder / "plain.onnx")
    model = onnx.load(str(path))
    onnx.save_model(model, str(folder / "model.onnx"), save_as_external_data=True, all_tensors_to_one_file=True,
                    location="weights.data", size_threshold=64)  # the weight, not the axes (sizes as sys.getsizeof counts)
    return write_sidecar(folder / "model.onnx")


def test_onnx_external_data_is_refused_unless_trusted(tmp_path, monkeypatch, raw_images):
    model = _external_data_model(tmp_path / "m")
    monkeypatch.chdir(tmp_path / "m")  # ONNX Runtime given bytes would look here: the data file is right there
    with pytest.raises(DeployError, match=r"keeps weights in external data files, which its sidecar's hash does "
                                          r"not cover"):
        deploy.load(model)
    x = np.ones((2, 1, 28, 28), np.float32)
    assert deploy.load(model, trust=True).predict_logits(x).shape == (2, 10)


def test_onnx_external_data_outside_the_folder_is_refused_even_trusted(tmp_path):
    model = _external_data_model(tmp_path / "m")
    proto = onnx.load(str(model), load_external_data=False)
    for init in proto.graph.initializer:
        for entry in init.external_data:
            if entry.key == "location":
                entry.value = "../../../etc/passwd"
    onnx.save(proto, str(model))
    write_sidecar(model)
    for trust in (False, True):
        with pytest.raises(DeployError, match="external data|cannot load ONNX model"):
            deploy.load(model, trust=trust)


def test_onnx_runtime_gets_the_hashed_bytes(tmp_path, monkeypatch):
    import onnxruntime as ort

    model = pooled_onnx(tmp_path / "model.onnx")
    given: list[object] = []
    session = ort.InferenceSession

    def spy(source, *args, **kwargs):
        given.append(source)
        return session(source, *args, **kwargs)

    monkeypatch.setattr(ort, "InferenceSession", spy)
    deploy.load(model)
    assert given == [model.read_bytes()]


def test_tensorrt_plan_hash_covers_the_bytes_deserialised(tmp_path, monkeypatch):
    """No GPU needed: the runner is replaced by one that records what it was handed."""
    plan = tmp_path / "model.plan"
    plan.write_bytes(b"serialized engine " * 10)
    write_sidecar(plan)
    handed: list[bytes] = []

    class Recorder:
        def __init__(self, path, record, content):
            handed.append(content)

    monkeypatch.setattr(deploy, "TensorRTRunner", Recorder)
    deploy.load(plan)
    assert handed == [plan.read_bytes()]
    plan.write_bytes(b"another engine")
    with pytest.raises(DeployError, match="does not match the SHA-256"):
        deploy.load(plan)
    assert hashlib.sha256(handed[0]).hexdigest() == json.loads(Path(f"{plan}.json").read_text())["sha256"]
