"""The typed checkpoint record reads and writes exactly the JSON earlier versions did."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from compress.errors import CheckpointError
from compress.record import (MODEL_FILE, CheckpointRecord, RunInfo, RunSummary, Scores, resolve_checkpoint,
                             training_fields)

SHIPPED = Path(__file__).resolve().parents[1] / "compress" / "weights" / "fashion-mnist-resnet20.safetensors"


def test_the_shipped_teachers_record_reads_typed_and_writes_back_byte_for_byte() -> None:
    raw = json.loads(SHIPPED.with_name(SHIPPED.name + ".json").read_text())
    record = CheckpointRecord.read(SHIPPED)  # verified: the file matches its recorded hash
    assert record.architecture["type"] == "classifier" and record.parameters == 272186
    assert record.preprocessing.channels == 1 and record.preprocessing.class_names[9] == "Ankle boot"
    assert record.run is not None and record.run.role == "teacher" and record.run.teachers is None
    assert record.run.model["name"] == "resnet20" and record.dataset == "fashion-mnist"
    assert record.metrics == Scores(top1=93.55, top5=99.96, best_top1=93.55, best_epoch=15) and record.epoch == 15
    assert record.sha256 == raw["sha256"] and list(record.extra) == ["provenance"]  # a key added by hand survives
    written = record.to_dict()
    assert written == raw and list(written) == list(raw)  # same keys in the same order
    assert json.dumps(written, indent=2) == json.dumps(raw, indent=2)


def test_a_folder_stands_for_its_model_file(tmp_path: Path) -> None:
    assert resolve_checkpoint(tmp_path) == tmp_path / MODEL_FILE
    assert resolve_checkpoint(tmp_path / "best.safetensors") == tmp_path / "best.safetensors"
    assert resolve_checkpoint(str(SHIPPED)) == SHIPPED


def test_the_fields_fit_writes_keep_the_order_earlier_versions_wrote() -> None:
    """The record also goes into the safetensors header: its key order is part of the file's bytes."""
    scores = Scores(80.0, 99.0, 81.0, 1)
    teacher = RunInfo(role="teacher", model={"name": "resnet20"}, method={"name": "none"}, data={"name": "x"})
    assert list(training_fields(teacher, {"lr": 0.1}, 2, scores)) == [
        "role", "model", "data", "method", "train_config", "epoch", "metrics"]
    student = RunInfo(role="student", model={"name": "resnet8"}, method={"name": "atsc"}, data={"name": "x"},
                      teachers=[{"name": "resnet20"}], cost={"student": {}})
    fields = training_fields(student, {"lr": 0.1}, 2, scores, role="teacher")
    assert list(fields) == ["role", "model", "teachers", "method", "data", "cost", "train_config", "epoch", "metrics"]
    assert fields["role"] == "teacher" and fields["metrics"] == {"top1": 80.0, "top5": 99.0, "best_top1": 81.0,
                                                                   "best_epoch": 1}
    assert list(training_fields(None, {}, 1, scores)) == ["train_config", "epoch", "metrics"]
    assert student.fingerprint() == {"model": {"name": "resnet8"}, "method": {"name": "atsc"},
                                     "teachers": [{"name": "resnet20"}], "data": {"name": "x"}}
    assert "teachers" not in teacher.fingerprint()


def test_a_record_without_architecture_is_refused_in_one_line() -> None:
    with pytest.raises(CheckpointError, match=r"'x.safetensors' is not a deployable checkpoint \(no architecture in"):
        CheckpointRecord.from_dict({"preprocessing": {}}, "x.safetensors")
    with pytest.raises(CheckpointError, match=r"'x.safetensors' has a malformed record \(bad or missing 'mean'"):
        CheckpointRecord.from_dict({"architecture": {}, "preprocessing": {}}, "x.safetensors")


def test_a_run_summary_round_trips_and_a_broken_one_says_so(tmp_path: Path) -> None:
    info = RunInfo(role="teacher", model={"name": "resnet8"}, method={"name": "none"}, data={"name": "x"})
    summary = RunSummary(90.0, 3, 89.5, 99.0, 3, 1234.5, 60.0, "ab" * 32, info, {"lr": 0.1})
    data = summary.to_dict()
    assert list(data)[:8] == ["best_top1", "best_epoch", "last_top1", "last_top5", "epochs", "train_images_per_s",
                              "wall_seconds", "model_sha256"]
    (tmp_path / "summary.json").write_text(json.dumps(data))
    assert RunSummary.read(tmp_path) == summary
    (tmp_path / "summary.json").write_text(json.dumps({"best_top1": 1.0}))
    with pytest.raises(CheckpointError, match="is not a run summary .*best_epoch"):
        RunSummary.read(tmp_path)
