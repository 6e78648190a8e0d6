"""The stage runner on a tiny real pipeline: runs end to end, re-runs nothing when nothing changed, re-runs
exactly the stages downstream of a change, honours --from/--until, skips TensorRT here, and resumes a
pipeline killed mid-training."""

from __future__ import annotations

import copy
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from compress.errors import ConfigError, GateFailed
from compress.export.backends import BACKENDS
from compress.pipeline import STAGES, parse_recipe, run_pipeline

TINY: dict[str, Any] = {
    "name": "tiny",
    # 16 (teacher) and 32 (student) steps of a high learning rate: ~30% and ~45% top-1 in seconds, so
    # agreement is not that of a constant
    "data": {"name": "fashion-mnist", "train_limit": 512, "val_limit": 200, "workers": 0},
    "teachers": [{"model": "resnet8", "train": {"epochs": 1, "batch_size": 32, "lr": 0.2}}],
    "distill": {"student": "resnet8", "methods": ["kd", "atsc"], "deploy": "atsc",
                "train": {"epochs": 2, "batch_size": 32, "lr": 0.2}},
    "export": {"onnx": {"exporter": "torchscript", "parity_images": 64},
               "int8": {"calibration": 64, "eval_images": 200},
               "tensorrt": {"precision": "fp16"}},
    "validate": {"batch_sizes": [1], "threads": [1], "duration_s": 0.1,
                 "gates": {"onnx": {"min_agreement": 99.9}, "int8": {"max_top1_drop": 50.0},
                           "tensorrt": {"min_agreement": 99.0}}},
}


# the stages of backends the tiny recipe does not build, and the target stage: skipped, "not in the recipe"
UNUSED = (*(b.stage for b in BACKENDS.values() if b.name not in TINY["export"]), "target")


def at(stage: str) -> str:
    """A stage's log prefix, ``[3/7] export-onnx``."""
    return f"[{STAGES.index(stage) + 1}/{len(STAGES)}] {stage}"


def tiny(**changes: Any) -> Any:
    """The tiny recipe with dotted-path changes, parsed."""
    data = copy.deepcopy(TINY)
    for dotted, value in changes.items():
        *parents, last = dotted.split(".")
        node = data
        for part in parents:
            node = node[int(part)] if isinstance(node, list) else node[part]
        node[last] = value
    return parse_recipe(data)


def records(run_dir: Path) -> dict[str, dict[str, Any]]:
    return {stage: json.loads((run_dir / stage / "stage.json").read_text())
            for stage in STAGES if (run_dir / stage / "stage.json").exists()}


def mtimes(run_dir: Path) -> dict[str, int]:
    return {str(p.relative_to(run_dir)): p.stat().st_mtime_ns for p in run_dir.rglob("*")
            if p.is_file() and p.name != "recipe.json"}


def statuses(result: Any) -> dict[str, str]:
    return {s.name: s.status for s in result.stages}


@pytest.fixture(scope="module")
def base_run(fmnist_available: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One complete tiny run; tests work on copies of it."""
    out = tmp_path_factory.mktemp("pipeline") / "run"
    result = run_pipeline(tiny(), out=out, progress=False, log=lambda _: None)
    assert statuses(result) == {**{s: "ran" for s in STAGES}, **{s: "skipped" for s in UNUSED}, "tensorrt": "skipped"}
    return out


@pytest.fixture
def run_dir(base_run: Path, tmp_path: Path) -> Path:
    copy_dir = tmp_path / "run"
    shutil.copytree(base_run, copy_dir)  # copy2 keeps mtimes
    return copy_dir


def test_end_to_end_artifacts_records_and_report(base_run: Path) -> None:
    recs = records(base_run)
    assert set(recs) == set(STAGES)
    assert recs["tensorrt"]["status"] == "skipped"
    assert recs["tensorrt"]["reason"] == "TensorRT needs an NVIDIA GPU and none is visible here"
    for stage in ("teacher", "distill", "export-onnx", "int8", "validate", "report"):
        assert recs[stage]["status"] == "done" and recs[stage]["outputs"], stage
    # downstream inputs carry the upstream outputs' hashes
    assert recs["int8"]["inputs"]["onnx"] == recs["export-onnx"]["outputs"]
    assert recs["distill"]["info"]["student"] == "distill/atsc/model.safetensors"
    for name in ("export-onnx/model.onnx", "int8/model.int8.onnx", "report.json", "report.md", "report.png"):
        assert (base_run / name).is_file(), name

    report = json.loads((base_run / "report.json").read_text())
    assert list(report["stages"]) == ["student", "onnx", "int8", "tensorrt"]
    assert report["stages"]["student"]["accuracy"]["top1"] > 20  # better than chance (10%)
    assert report["stages"]["onnx"]["accuracy"]["agreement"] >= 99.9
    assert [row["run"] for row in report["distillation"]] == ["teacher resnet8", "kd", "atsc"]
    assert report["distillation"][2]["role"] == "student (deployed)"
    assert set(report["training_curves"]) == {"teacher resnet8", "kd", "atsc"}
    gates = {(g["stage"], g["gate"]): g for g in report["gates"]}
    assert gates[("onnx", "min_agreement")]["status"] == "pass"
    # the TensorRT gate could not be judged here: skipped with the reason, never passed
    trt = gates[("tensorrt", "min_agreement")]
    assert trt["status"] == "skipped" and "NVIDIA GPU" in trt["reason"] and trt["value"] is None
    assert "skipped: TensorRT needs an NVIDIA GPU" in (base_run / "report.md").read_text()


def test_compress_export_builds_the_pipeline_s_files_bit_for_bit(base_run: Path, tmp_path: Path) -> None:
    """Both call the backends' step functions: the same student and options give the same bytes."""
    from compress.export import export_command

    student = base_run / "distill" / "atsc" / "model.safetensors"
    summary = export_command(student, tmp_path / "export", ["onnx", "int8"], tiny().export.options, progress=False)
    for name, stage in (("model.onnx", "export-onnx"), ("model.int8.onnx", "int8")):
        assert (tmp_path / "export" / name).read_bytes() == (base_run / stage / name).read_bytes(), name
    assert summary["int8"]["n"] == json.loads((base_run / "int8" / "int8.json").read_text())["n"] == 200


def test_rerunning_an_unchanged_pipeline_reruns_nothing(run_dir: Path) -> None:
    before = mtimes(run_dir)
    lines: list[str] = []
    result = run_pipeline(tiny(), out=run_dir, progress=False, log=lines.append)
    assert set(statuses(result).values()) == {"unchanged"}
    assert mtimes(run_dir) == before  # not one file rewritten, records included
    assert f"{at('export-onnx')}: model.onnx, parity" in "\n".join(lines)
    assert any(line.startswith(f"{at('export-onnx')}:") and line.endswith("(skipped: unchanged)") for line in lines)
    assert any(line.startswith(f"{at('tensorrt')}: skipped: TensorRT needs an NVIDIA GPU") for line in lines)


def test_a_changed_setting_reruns_its_stage_and_what_depends_on_it(run_dir: Path) -> None:
    before = records(run_dir)
    result = run_pipeline(tiny(**{"export.int8.calibration": 32}), out=run_dir, progress=False, log=lambda _: None)
    # tensorrt is built from the ONNX model, not from the INT8 one: it stays as it was
    assert statuses(result) == {"teacher": "unchanged", "distill": "unchanged", "export-onnx": "unchanged",
                                "int8": "ran", "tensorrt": "unchanged", "validate": "ran", "report": "ran",
                                **{s: "unchanged" for s in UNUSED}}
    after = records(run_dir)
    assert after["int8"]["inputs"]["int8"]["calibration"] == 32
    assert after["int8"]["outputs"] != before["int8"]["outputs"]
    assert after["export-onnx"] == before["export-onnx"]


def test_a_changed_gate_rejudges_without_remeasuring_and_a_failed_gate_raises_after_the_report(run_dir: Path) -> None:
    report_before = (run_dir / "report.md").stat().st_mtime_ns
    lines: list[str] = []
    spec = tiny(**{"validate.gates": {"student": {"min_top1": 99.5}, "onnx": {"min_agreement": 99.9}}})
    with pytest.raises(GateFailed, match=r"student min_top1 \d+\.\d\d% < 99\.50%"):
        run_pipeline(spec, out=run_dir, progress=False, log=lines.append)
    recs = records(run_dir)
    assert recs["validate"]["status"] == "done"
    assert (run_dir / "report.md").stat().st_mtime_ns != report_before  # the report was still written
    assert "❌ fail" in (run_dir / "report.md").read_text()
    assert any("(skipped: unchanged)" in line for line in lines if line.startswith(at("validate")))
    # the table of what failed, by how much
    assert re.search(r"^student\s+min_top1\s+\d+\.\d\d%\s+99\.50%\s+-\d+\.\d\d%\s+fail$", "\n".join(lines), re.M)


def test_from_and_until(run_dir: Path) -> None:
    before = records(run_dir)
    result = run_pipeline(tiny(), out=run_dir, from_stage="export-onnx", until_stage="int8", progress=False,
                          log=lambda _: None)
    assert statuses(result) == {"teacher": "kept", "distill": "kept", "export-onnx": "ran", "int8": "ran"}
    after = records(run_dir)
    assert after["distill"] == before["distill"]
    assert after["export-onnx"]["finished"] >= before["export-onnx"]["finished"]
    assert after["validate"] == before["validate"]  # after --until: untouched
    assert result.validation is None  # not validated in this run: no gate verdict on stale numbers

    with pytest.raises(ConfigError, match="--from distill comes after --until teacher"):
        run_pipeline(tiny(), out=run_dir, from_stage="distill", until_stage="teacher", log=lambda _: None)


def test_from_needs_the_earlier_stages(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="--from: stage 'teacher' has no complete result"):
        run_pipeline(tiny(), out=tmp_path / "fresh", from_stage="distill", log=lambda _: None)


def test_a_modified_output_is_rebuilt(run_dir: Path) -> None:
    onnx = run_dir / "export-onnx" / "model.onnx"
    onnx.write_bytes(onnx.read_bytes() + b"\0")
    result = run_pipeline(tiny(), out=run_dir, until_stage="export-onnx", progress=False, log=lambda _: None)
    assert statuses(result) == {"teacher": "unchanged", "distill": "unchanged", "export-onnx": "ran"}


KILL_SCRIPT = """
import sys, torch
torch.set_num_threads(1)
from compress.pipeline import run_pipeline
run_pipeline(sys.argv[1], out=sys.argv[2], until_stage="teacher", progress=False)
"""


def test_a_pipeline_killed_mid_training_resumes_and_finishes(fmnist_available: Path, tmp_path: Path,
                                                             capfd: pytest.CaptureFixture[str]) -> None:
    recipe = copy.deepcopy(TINY)
    recipe["teachers"][0]["train"]["epochs"] = 4
    path = tmp_path / "kill.yaml"
    path.write_text(yaml.safe_dump(recipe))
    out = tmp_path / "run"
    unit = out / "teacher" / "1-resnet8"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-c", KILL_SCRIPT, str(path), str(out)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 120
        # the state's sidecar is written last: once it exists, an epoch is saved and training goes on
        while not (unit / "state.safetensors.json").exists():
            assert proc.poll() is None, proc.stderr.read().decode()[-2000:] if proc.stderr else ""
            assert time.monotonic() < deadline, "training never saved an epoch"
            time.sleep(0.02)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == -signal.SIGKILL
    # killed mid-stage: nothing claims to be done
    assert not (out / "teacher" / "stage.json").exists()
    assert json.loads((unit / "unit.json").read_text())["done"] is False
    saved = len((unit / "metrics.jsonl").read_text().splitlines())
    assert 1 <= saved < 4

    result = run_pipeline(path, out=out, until_stage="teacher", progress=False)
    assert statuses(result) == {"teacher": "ran"}
    # fit writes metrics before the resume state: a kill between the two resumes one epoch earlier
    resumed = re.search(r"resuming from epoch (\d+)", capfd.readouterr().err)
    assert resumed is not None and int(resumed.group(1)) in (saved - 1, saved)
    rows = [json.loads(line) for line in (unit / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [1, 2, 3, 4]  # the saved epochs kept, the rest trained once
    assert json.loads((unit / "unit.json").read_text())["done"] is True
    assert records(out)["teacher"]["status"] == "done"


def test_a_resume_state_that_cannot_be_trusted_is_trained_again(run_dir: Path) -> None:
    """A resume state that cannot be read (damaged on disk): the model starts over instead of failing forever."""
    unit = run_dir / "teacher" / "1-resnet8"
    record = json.loads((unit / "unit.json").read_text())
    (unit / "unit.json").write_text(json.dumps({**record, "done": False}))
    (unit / "metrics.jsonl").write_text("")  # no epoch finished
    state = unit / "state.safetensors"
    state.write_bytes(state.read_bytes()[:100])  # truncated: safetensors refuses it
    lines: list[str] = []
    result = run_pipeline(tiny(), out=run_dir, until_stage="teacher", progress=False, log=lines.append)
    assert statuses(result) == {"teacher": "ran"}
    assert any("cannot resume" in line and "training it again from the start" in line for line in lines)
    assert len((unit / "metrics.jsonl").read_text().splitlines()) == 1
    assert json.loads((unit / "unit.json").read_text())["done"] is True


def test_a_few_label_pipeline_runs_through_export_and_reports_its_regime(fmnist_available: Path, tmp_path: Path) -> None:
    """Labels hidden for training do not reach export or validation (a 64-image calibration subset has too
    few images per class to split), and the report says which regime it was."""
    recipe = tiny(**{"data.labels_per_class": 5, "distill.methods": ["none", "atsc"], "export.tensorrt": False,
                     "validate.gates": {"onnx": {"min_agreement": 99.9}}})
    result = run_pipeline(recipe, out=tmp_path / "run", progress=False, log=lambda _: None)
    assert statuses(result)["report"] == "ran" and statuses(result)["int8"] == "ran"
    report = json.loads((tmp_path / "run" / "report.json").read_text())
    assert report["regime"].startswith("Regime: 50 labelled training images (5 per class) and 462 unlabelled ones")
    rows = {row["run"]: row for row in report["distillation"]}
    assert rows["none"]["role"] == "student (alone)" and rows["atsc"]["role"] == "student (deployed)"
    summary = json.loads((tmp_path / "run" / "distill" / "atsc" / "summary.json").read_text())
    assert summary["data"]["labels_per_class"] == 5  # part of the resume fingerprint


def test_a_holdout_pipeline_chooses_on_validation_and_judges_the_deployed_model_on_the_test_split(
        fmnist_available: Path, tmp_path: Path) -> None:
    """With data.holdout_per_class the table shows the held-out top-1 each epoch was chosen on and the test
    split's, read once; validation after training (and export) reads the test split, shifted like training."""
    from compress.data import load_data
    from compress.deployable import load_deployable
    from compress.train import evaluate
    from compress.validate.report import TEST_ONCE, VAL_SELECTED

    recipe = tiny(**{"data.labels_per_class": 8, "data.holdout_per_class": 3, "data.shift": "camera",
                     "distill.methods": ["none", "atsc"], "distill.deploy": "best-val", "export.tensorrt": False,
                     "validate.gates": {"onnx": {"min_agreement": 99.9}}})
    result = run_pipeline(recipe, out=tmp_path / "run", progress=False, log=lambda _: None)
    assert statuses(result)["report"] == "ran" and statuses(result)["int8"] == "ran"
    report = json.loads((tmp_path / "run" / "report.json").read_text())
    assert report["regime"].startswith("Regime: 80 labelled training images (8 per class)")
    assert report["regime"].endswith(" Validation: 3 labelled training images per class held out of training (the "
                                     "best epoch is chosen on them); the test split is read once, at the end. Images: "
                                     "the camera shift (seed 0), training and test alike.")
    rows = {row["run"]: row for row in report["distillation"]}
    for method in ("none", "atsc"):
        summary = json.loads((tmp_path / "run" / "distill" / method / "summary.json").read_text())
        assert summary["validation"] == "holdout" and summary["data"]["shift"] == "camera"
        assert rows[method][VAL_SELECTED] == summary["best_top1"] and rows[method][TEST_ONCE] == summary["test_top1"]
        assert "top-1 (%)" not in rows[method]
    assert rows["atsc"]["Δ vs alone (pt)"] == pytest.approx(rows["atsc"][TEST_ONCE] - rows["none"][TEST_ONCE])
    validation = json.loads((tmp_path / "run" / "validate" / "validation.json").read_text())
    assert validation["data"]["samples"] == 200  # the test split (val_limit), not the 30 held-out images
    # deploy: best-val ships the run whose best epoch scored highest on the held-out images (first on a tie)
    best_val = {m: json.loads((tmp_path / "run" / "distill" / m / "summary.json").read_text())["best_top1"]
                for m in ("none", "atsc")}
    deployed = "atsc" if best_val["atsc"] > best_val["none"] else "none"
    assert [row["run"] for row in report["distillation"] if "deployed" in str(row.get("role", ""))] == [deployed]
    student, _, _ = load_deployable(tmp_path / "run" / "distill" / deployed / "best.safetensors")
    test = load_data(recipe.data).test
    assert test is not None and validation["data"]["shift"] == "camera"
    assert validation["stages"]["student"]["accuracy"]["top1"] == pytest.approx(evaluate(student, test)["top1"])
