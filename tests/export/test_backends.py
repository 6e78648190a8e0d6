"""The export backend table: every place that names backends (recipe keys, pipeline stages, CLI flags, the
suffixes `compress validate` and `deploy.load` recognise) agrees with it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from compress.errors import ConfigError
from compress.export.backends import BACKENDS, all_suffixes, backend_for_file, with_sources
from compress.pipeline import STAGES, parse_recipe
from compress.pipeline.sections import VALIDATED

RECIPE: dict[str, Any] = {"teachers": [{"model": "resnet8", "train": {"epochs": 1}}],
                          "distill": {"student": "resnet8", "methods": ["kd"]}}


def test_suffixes_name_their_backend_longest_match_first() -> None:
    assert backend_for_file("runs/x/model.onnx").name == "onnx"
    assert backend_for_file("runs/x/model.int8.onnx").name == "int8"
    assert backend_for_file("model.trt-int8.onnx").name == "onnx"  # TensorRT's Q/DQ input is an ONNX model
    assert [backend_for_file(f"m{s}").name for s in (".plan", ".engine", ".trt")] == ["tensorrt"] * 3
    assert backend_for_file("runs/x/model.xml").name == "openvino"
    assert [backend_for_file(f"model{s}").name for s in (".int8.xml", ".int8-nncf.xml", ".int8-qdq.xml")] == \
        ["openvino_int8"] * 3  # export_openvino's per-route file names are INT8 IRs too
    assert backend_for_file("model.safetensors") is None and backend_for_file("model.pt") is None
    assert set(all_suffixes()) == {".onnx", ".int8.onnx", ".xml", ".int8.xml", ".int8-nncf.xml", ".int8-qdq.xml",
                                   ".plan", ".engine", ".trt"}


def test_an_artifact_travels_with_its_companions_and_its_hash_covers_them(tmp_path: Path) -> None:
    from compress.artifacts import sha256_file
    from compress.export.backends import artifact_files, artifact_sha256

    assert artifact_files(tmp_path / "model.onnx") == [tmp_path / "model.onnx", tmp_path / "model.onnx.json"]
    assert artifact_files(tmp_path / "model.int8.xml") == [tmp_path / "model.int8.bin", tmp_path / "model.int8.xml",
                                                           tmp_path / "model.int8.xml.json"]
    (tmp_path / "model.onnx").write_bytes(b"graph")
    assert artifact_sha256(tmp_path / "model.onnx") == sha256_file(tmp_path / "model.onnx")
    (tmp_path / "model.xml").write_bytes(b"graph")
    (tmp_path / "model.bin").write_bytes(b"weights")
    before = artifact_sha256(tmp_path / "model.xml")
    (tmp_path / "model.bin").write_bytes(b"retrained weights")  # same graph, new weights: a different artifact
    assert artifact_sha256(tmp_path / "model.xml") != before


def test_every_backend_is_a_pipeline_stage_in_table_order() -> None:
    export_stages = [backend.stage for backend in BACKENDS.values()]
    assert STAGES == ("teacher", "distill", *export_stages, "target", "validate", "report")
    assert VALIDATED == ("student", *BACKENDS)
    for backend in BACKENDS.values():  # a backend is built after what it is built from
        assert all(list(BACKENDS).index(source) < list(BACKENDS).index(backend.name) for source in backend.built_from)


@pytest.mark.parametrize("name", list(BACKENDS), ids=[f"backend-{n}" for n in BACKENDS])  # "tensorrt" is a marker
def test_every_backend_is_a_recipe_key_with_its_typed_options(name: str) -> None:
    backend = BACKENDS[name]
    defaults = backend.options()
    defaults.validate()
    assert all(isinstance(n, int) and n >= 0 for n in defaults.images_needed())
    spec = parse_recipe({**RECIPE, "export": {n: {} for n in with_sources([name])}})
    assert isinstance(spec.export.of(name), backend.options) and spec.export.of(name) == defaults
    assert name in spec.validated_stages and spec.export.to_dict()[name] is not None


def test_a_backend_without_what_it_is_built_from_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"^export: int8, openvino, openvino_int8 and tensorrt are built from the "
                                          r"ONNX model: add onnx: \{\}"):
        parse_recipe({**RECIPE, "export": {"tensorrt": {}}})
    with pytest.raises(ConfigError, match=r"^export: openvino_int8 is built from the INT8 model: add int8: \{\}"):
        parse_recipe({**RECIPE, "export": {"onnx": {}, "openvino_int8": {}}})
    assert with_sources(["tensorrt"]) == ["onnx", "tensorrt"] and with_sources(["int8", "onnx"]) == ["onnx", "int8"]
    assert with_sources(["openvino_int8"]) == ["onnx", "int8", "openvino_int8"]
    with pytest.raises(ConfigError, match=r"unknown export backend 'tflite': choose from onnx, int8, openvino, "
                                          r"openvino_int8, tensorrt"):
        with_sources(["tflite"])


def test_every_backend_has_its_flag_on_compress_export() -> None:
    from compress.cli import app

    result = CliRunner().invoke(app, ["export", "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0
    for backend in BACKENDS.values():
        assert f"--{backend.flag}" in result.output and backend.help in result.output


@pytest.mark.parametrize("suffix", all_suffixes())
def test_deploy_loads_each_suffix_with_the_runner_of_its_engine(suffix: str, tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """deploy cannot import compress, so it keeps its own suffix list: it must agree with the table."""
    import deploy

    # the engine names the deploy runner
    runners = {"onnxruntime": "OnnxRunner", "openvino": "OpenVinoRunner", "tensorrt": "TensorRTRunner"}
    for runner in runners.values():
        monkeypatch.setattr(deploy, runner, type(runner, (), {"__init__": lambda self, *args, **kwargs: None}))
    path = tmp_path / f"model{suffix}"
    path.write_bytes(b"model bytes")
    loaded = deploy.load(path, trust=True)
    assert type(loaded).__name__ == runners[backend_for_file(path).engine]
