"""The 224 px story, small: ``scripts/make_imagefolder_224.py`` builds the ImageFolder from the Debian
Fashion-MNIST package (seeded, complete or absent, reused or refused on a re-run), and
``pipelines/imagefolder_224.yaml`` runs on it end to end through ``compress run`` with ``--set`` overrides
that shrink it (2 classes x 8 images at 32 px): teacher, ATSC student, ONNX, INT8, validation, report."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType

import pytest
from PIL import Image

from tests.cli_helpers import run_cli

ROOT = Path(__file__).resolve().parents[2]
RECIPE = ROOT / "pipelines" / "imagefolder_224.yaml"
SMALL = ["--classes", "2", "--train", "8", "--val", "4", "--unlabeled", "10", "--size", "32"]


def _script() -> ModuleType:  # scripts/ is not a package: load the file as a module
    spec = importlib.util.spec_from_file_location("make_imagefolder_224", ROOT / "scripts" / "make_imagefolder_224.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the file executes
    spec.loader.exec_module(module)
    return module


SCRIPT = _script()


def digests(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(root.rglob("*"))
            if p.is_file()}


@pytest.fixture(scope="module")
def folder(fmnist_available: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("data") / "fmnist"
    assert SCRIPT.main([str(out), *SMALL]) == 0
    return out


def test_the_folder_has_the_layout_sizes_and_seeded_images_asked_for(folder: Path, tmp_path: Path) -> None:
    classes = ["0-t-shirt-top", "1-trouser"]
    assert sorted(p.name for p in (folder / "train").iterdir()) == classes
    assert sorted(p.name for p in (folder / "val").iterdir()) == classes
    train = {c: sorted(p.name for p in (folder / "train" / c).iterdir()) for c in classes}
    val = {c: sorted(p.name for p in (folder / "val" / c).iterdir()) for c in classes}
    unlabeled = sorted(p.name for p in (folder / "unlabeled").iterdir())
    assert [len(v) for v in train.values()] == [8, 8] and [len(v) for v in val.values()] == [4, 4]
    assert len(unlabeled) == 10
    # file names are the source indices: training images from the training split, validation from the test split
    assert all(n.startswith("train-") for names in train.values() for n in names) and unlabeled[0].startswith("train-")
    assert all(n.startswith("test-") for names in val.values() for n in names)
    assert not set(unlabeled) & {n for names in train.values() for n in names}  # unlabelled means not in train/
    with Image.open(folder / "train" / classes[1] / train[classes[1]][0]) as image:
        assert (image.size, image.mode) == ((32, 32), "RGB")
    manifest = json.loads((folder / SCRIPT.MANIFEST).read_text())
    assert manifest["spec"] == {"classes": 2, "train": 8, "val": 4, "unlabeled": 10, "size": 32, "seed": 0}
    assert manifest["counts"] == {"train": 16, "val": 8, "unlabeled": 10} and manifest["classes"] == classes

    # the seed fixes the images, byte for byte; another seed draws others
    assert SCRIPT.main([str(tmp_path / "again"), *SMALL]) == 0
    assert digests(tmp_path / "again") == digests(folder)
    assert SCRIPT.main([str(tmp_path / "seed1"), *SMALL, "--seed", "1"]) == 0
    assert sorted((tmp_path / "seed1" / "unlabeled").iterdir()) != sorted((folder / "unlabeled").iterdir())


def test_a_complete_folder_is_reused_and_any_other_refused(folder: Path, tmp_path: Path,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    copy = tmp_path / "fmnist"
    assert SCRIPT.main([str(copy), *SMALL]) == 0
    before = {str(p): p.stat().st_mtime_ns for p in copy.rglob("*")}
    capsys.readouterr()
    assert SCRIPT.main([str(copy), *SMALL]) == 0
    assert f"{copy}: complete (16 train, 8 val, 10 unlabelled images), reused" in capsys.readouterr().out
    assert {str(p): p.stat().st_mtime_ns for p in copy.rglob("*")} == before  # nothing rewritten

    assert SCRIPT.main([str(copy), *SMALL[:-1], "48"]) == 1
    assert capsys.readouterr().err == (f"error: '{copy}' was built with other arguments: size 32 (asked 48); "
                                       "remove it or choose another folder\n")
    next((copy / "unlabeled").iterdir()).unlink()
    assert SCRIPT.main([str(copy), *SMALL]) == 1
    assert "has {'train': 16, 'val': 8, 'unlabeled': 9} images but its manifest says" in capsys.readouterr().err
    (tmp_path / "mine").mkdir()
    assert SCRIPT.main([str(tmp_path / "mine"), *SMALL]) == 1
    assert "exists but is not a folder this script built" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fmnist", "mine"]  # no temporary folder left


def test_an_interrupted_build_leaves_no_folder(fmnist_available: Path, tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    written = []

    def write_then_stop(*args: object) -> None:
        written.append(args)
        if len(written) == 3:  # two class folders of train/ and val/ are on disk
            raise KeyboardInterrupt

    monkeypatch.setattr(SCRIPT, "_write", write_then_stop)
    with pytest.raises(KeyboardInterrupt):
        SCRIPT.main([str(tmp_path / "fmnist"), *SMALL])
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("args, message", [
    (["--classes", "11"], "error: --classes must be 1 to 10, got 11\n"),
    (["--classes", "1", "--train", "5000", "--unlabeled", "1001"],
     "error: --train 5000 per class and --unlabeled 1001 need more than the 6000 training images per class of "
     "1 classes: ask for fewer\n"),
    (["--val", "1001"], "error: --val must be at most 1000 per class (the test split), got 1001\n"),
])
def test_impossible_sizes_are_usage_errors(fmnist_available: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                           args: list[str], message: str) -> None:
    assert SCRIPT.main([str(tmp_path / "fmnist"), *args]) == 2
    assert capsys.readouterr().err == message
    assert list(tmp_path.iterdir()) == []


def test_export_reads_fewer_images_than_a_batch_from_a_folder(folder: Path) -> None:
    """Calibration asks for train_limit=N images at the default batch of 128: one short batch, not none."""
    from compress.data import DataConfig, load_data
    from compress.data.loaders import take

    data = load_data(DataConfig(name="imagefolder", data_dir=str(folder), image_size=32, train_limit=5, workers=0,
                                augment=False))
    images, labels = take(data.train, 5)
    assert len(data.train) == 1 and images.shape == (5, 3, 32, 32) and labels.shape == (5,)


SMALL_RUN = ["data.image_size=32", "data.eval_batch_size=8", "teachers[0].train.batch_size=8",
             "teachers[0].train.epochs=1", "distill.train.batch_size=8", "export.onnx.exporter=torchscript",
             "validate.duration_s=0.05", "validate.batch_sizes=[1]", "validate.threads=[1]", "report.png=false",
             # 8 validation images of a barely trained student: chance-level accuracy and INT8 flips are expected
             "validate.gates.student.min_top1=0", "validate.gates.int8.max_top1_drop=100",
             *(f"validate.gates.{stage}.min_above_chance=0" for stage in ("student", "onnx", "int8"))]


def test_the_recipe_runs_end_to_end_on_a_small_folder(folder: Path, tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    run = tmp_path / "run"
    sets = [f"data.data_dir={folder}", f"data.unlabeled_dir={folder / 'unlabeled'}", *SMALL_RUN]
    code, err = run_cli(["run", str(RECIPE), "--out", str(run), "--no-progress",
                         *(arg for key in sets for arg in ("--set", key))], capsys)
    assert code == 0, err
    for name in ("teacher/1-resnet18/model.safetensors", "distill/atsc/model.safetensors", "export-onnx/model.onnx",
                 "int8/model.int8.onnx", "report.json", "report.md"):
        assert (run / name).is_file(), name
    report = json.loads((run / "report.json").read_text())
    assert report["passed"] is True
    assert report["data"]["name"] == "imagefolder" and report["data"]["samples"] == 8
    assert report["data"]["preprocessing"]["class_names"] == ["0-t-shirt-top", "1-trouser"]
    assert report["data"]["preprocessing"]["image_size"] == 32
    assert report["regime"].startswith("Regime: 16 labelled training images and 10 unlabelled ones; teacher resnet18")
    assert [(row["run"], row["model"], row["epochs"]) for row in report["distillation"]] == [
        ("teacher resnet18", "resnet18", 1), ("atsc", "mobilenet_v2", 1)]
    assert list(report["stages"]) == ["student", "onnx", "int8"]
    for stage in report["stages"].values():
        assert stage["status"] == "ok" and stage["accuracy"]["samples"] == 8
        assert stage["accuracy"]["top1"] in (0.0, 12.5, 25.0, 37.5, 50.0, 62.5, 75.0, 87.5, 100.0)
    assert report["stages"]["onnx"]["accuracy"]["agreement"] >= 99.0
    assert {(g["stage"], g["gate"]): g["status"] for g in report["gates"]} == {
        ("student", "min_top1"): "pass", ("onnx", "min_agreement"): "pass", ("int8", "max_top1_drop"): "pass"}
    int8 = json.loads((run / "int8" / "int8.json").read_text())
    assert int8["n"] == 8  # eval_images 300, bounded by the 8 validation images
