"""The shipped teacher: package data, addressable by name from any folder, listed with its accuracy."""

from __future__ import annotations

import fnmatch
import json
import tomllib
from pathlib import Path

import pytest

from compress.record import CheckpointRecord, resolve_checkpoint
from compress.weights import SHIPPED, shipped_path

ROOT = Path(__file__).resolve().parents[2]
NAME = "fashion-mnist-resnet20"


def test_the_shipped_files_are_package_data() -> None:
    """pyproject.toml declares every shipped file and its sidecar as package data of compress.weights, so a
    wheel (and a pip install) carries them."""
    patterns = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]
    declared = patterns["compress.weights"]
    for entry in SHIPPED.values():
        for file in (entry.file, entry.file + ".json"):
            assert (ROOT / "compress" / "weights" / file).is_file()
            assert any(fnmatch.fnmatch(file, pattern) for pattern in declared), file
    assert not list(ROOT.glob("pipelines/**/*.safetensors"))  # one copy only


def test_a_name_resolves_to_the_packaged_file_from_any_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    path = resolve_checkpoint(NAME)
    assert path == ROOT / "compress" / "weights" / "fashion-mnist-resnet20.safetensors"
    assert resolve_checkpoint(NAME.upper()) == path
    record = CheckpointRecord.read(NAME)  # verified: the packaged file matches its sidecar's hash
    assert record.metrics is not None and record.metrics.top1 == 93.55
    assert shipped_path("resnet20") is None and resolve_checkpoint("resnet20") == Path("resnet20")


def test_a_local_file_of_that_name_wins(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / NAME).mkdir()  # a user's run folder that happens to share the name
    assert resolve_checkpoint(NAME) == Path(NAME) / "model.safetensors"


def test_list_models_shows_the_shipped_teacher_and_the_aliases() -> None:
    from compress.models.zoo import model_listing

    rows = {name: (source, note) for name, source, note in model_listing()}
    assert rows[NAME][0] == "shipped" and rows[NAME][1].endswith("93.55 % top-1")
    assert rows["mobilenet_v2"][1] == "mobilenet (also: mobilenetv2)"
    assert rows["shufflenet_v2_x1_0"][1] == "shufflenet (also: shufflenetv2)"


def test_a_recipe_names_the_shipped_teacher_and_runs_from_any_folder(tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    from compress.pipeline.runner import _preflight
    from compress.pipeline.spec import load_recipe
    from compress.pipeline.stages import teacher_checkpoint

    recipe = tmp_path / "copied.yaml"
    recipe.write_text((ROOT / "pipelines" / "fashion_mnist_ci.yaml").read_text())
    monkeypatch.chdir(tmp_path)
    spec = load_recipe(recipe)
    assert spec.teachers[0].checkpoint == NAME and spec.teachers[0].label == NAME
    _preflight(spec)  # the teacher is found although nothing of the clone is here
    assert teacher_checkpoint(NAME) == shipped_path(NAME)


def test_no_shipped_recipe_example_or_doc_names_the_old_path() -> None:
    places = [*ROOT.glob("pipelines/*.yaml"), *ROOT.glob("examples/**/*"), ROOT / "README.md", ROOT / "Dockerfile"]
    for place in places:
        if place.is_file():
            assert "pipelines/weights" not in place.read_text(), place
    recipes = [p for p in ROOT.glob("pipelines/*.yaml") if NAME in p.read_text()]
    assert {p.name for p in recipes} >= {"fashion_mnist.yaml", "fashion_mnist_ci.yaml"}
    assert json.loads((ROOT / "compress" / "weights" / f"{NAME}.safetensors.json").read_text())["file"] == \
        f"{NAME}.safetensors"


def test_the_name_used_as_an_architecture_says_how_to_use_it() -> None:
    from compress.errors import ConfigError
    from compress.pipeline.spec import parse_recipe

    raw = {"data": {"name": "fashion-mnist"}, "teachers": [{"model": NAME, "train": {"epochs": 1}}],
           "distill": {"student": "resnet8"}}
    with pytest.raises(ConfigError, match=r"^teachers\[0\]\.model: 'fashion-mnist-resnet20' is a trained checkpoint "
                                          r"shipped with compress, not an architecture: use it as a teacher "
                                          r"\(--teacher fashion-mnist-resnet20, or \{checkpoint: "
                                          r"fashion-mnist-resnet20\} in a recipe\)$"):
        parse_recipe(raw)
