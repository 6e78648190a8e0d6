"""report.md / report.json from fixed numbers, and report.png."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from compress.data import DataConfig
from compress.errors import CheckpointError
from compress.validate.gates import GateSpec
from compress.validate.verdicts import evaluate_gates
from compress.validate.report import (TeacherFacts, accuracy_limits, describe_regime, read_metrics_jsonl,
                                      render_markdown, render_png, report_figure, write_report)
from compress.validate.results import ValidationResult

CURVES = {
    "atsc": [{"epoch": e, "train_loss": 2.0 / e, "val_top1": 80 + 2 * e} for e in range(1, 6)],
    "kd": [{"epoch": e, "train_loss": 2.2 / e, "val_top1": 78 + 2 * e} for e in range(1, 6)],
}
METHODS = [{"method": "atsc", "teacher": "resnet32x4", "student": "resnet8x4", "top1": 90.0},
           {"method": "kd", "teacher": "resnet32x4", "student": "resnet8x4", "top1": 88.25}]


def test_markdown_tables_from_fixed_numbers(fixed_result):
    fixed_result.gates = evaluate_gates(fixed_result, GateSpec(max_top1_drop=1.0))
    text = render_markdown(fixed_result, METHODS)
    assert "Data: **fashion-mnist**, 1000 validation images. Reference: **student**. CPU: Test CPU (2 cores)" in text
    assert "| student | PyTorch eager | 90.00% | 99.50% | 100.00% | 0.00e+00 | 390.6 KB | 98.0 k |" in text
    assert "| onnx | ONNX Runtime (cpu) | 89.90% | 99.50% | 99.95% | 3.00e-05 | 380.9 KB | 98.0 k |" in text
    assert "| trt | – | skipped: TensorRT engine needs an NVIDIA GPU and none is visible here |" in text
    assert "| onnx | 32 | 2 | 16.000 | 16.000 | 18.000 | 19.800 | – | – | 2000.0 | 2.50x | 20 |" in text
    assert "| method | teacher | student | top1 |" in text and "| kd | resnet32x4 | resnet8x4 | 88.25 |" in text
    assert "| int8 | max_top1_drop | 1.50 pt | 1.00 pt | -0.5 | ❌ fail |" in text
    assert "| trt | max_top1_drop | – | 1.00 pt | – | ⏭ skipped: TensorRT engine needs" in text
    assert text.rstrip().endswith("**1 gate(s) failed**: int8 max_top1_drop 1.50 pt > 1.00 pt (by 0.50 pt)")


def test_no_methods_table_for_a_single_run(fixed_result):
    assert "Distillation methods" not in render_markdown(fixed_result)


def test_write_report_json_md_png(fixed_result, tmp_path):
    fixed_result.gates = evaluate_gates(fixed_result, GateSpec(min_agreement=99.0))
    paths = write_report(fixed_result, tmp_path / "run", distillation=METHODS, curves=CURVES)
    data = json.loads(paths.json.read_text())
    assert data["passed"] is False
    assert data["stages"]["int8"]["accuracy"]["agreement"] == 97.0
    assert data["stages"]["onnx"]["latency"][1]["p99_ms"] == pytest.approx(19.8)
    assert data["distillation"][1]["top1"] == 88.25
    assert data["training_curves"]["atsc"][4] == {"epoch": 5, "train_loss": 0.4, "val_top1": 90}
    assert ValidationResult.from_dict(data).to_dict() == fixed_result.to_dict()
    assert paths.markdown.read_text() == render_markdown(fixed_result, METHODS)
    png = paths.png.read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 20_000
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == ["report.json", "report.md", "report.png"]


def test_metrics_jsonl(tmp_path):
    path = tmp_path / "metrics.jsonl"
    path.write_text('{"epoch": 1, "train_loss": 1.5, "val_top1": 70.0}\n\n{"epoch": 2, "train_loss": 1.0}\n')
    assert read_metrics_jsonl(path) == [{"epoch": 1, "train_loss": 1.5, "val_top1": 70.0},
                                        {"epoch": 2, "train_loss": 1.0}]
    path.write_text('{"epoch": 1}\n{oops\n')
    with pytest.raises(CheckpointError, match="line 2 is not valid JSON"):
        read_metrics_jsonl(path)
    path.write_text('{"epoch": 1, "val_top1": NaN}\n')  # through the one reader: finite numbers only
    with pytest.raises(CheckpointError, match="line 1 at val_top1: NaN is not a finite number"):
        read_metrics_jsonl(path)


# ---------------------------------------------------------------- accuracy axes

def test_accuracy_limits_give_nearly_equal_values_a_minimum_span_centred_on_them():
    low, high = accuracy_limits([90.00, 90.01])
    assert high - low >= 2.0
    assert (low + high) / 2 == pytest.approx(90.005)
    low, high = accuracy_limits([88.0], min_span=5.0)
    assert (low, high) == pytest.approx((85.5, 90.5))


def test_accuracy_limits_keep_spread_values_inside_and_stay_within_0_and_100():
    values = [12.5, 85.0, 91.25]
    low, high = accuracy_limits(values)
    assert low < min(values) and high > max(values)  # a margin: no point sits on the frame
    assert high - low < 100  # ... but not the whole 0-100 range
    # near the ends the span is shifted inwards, not cut
    assert accuracy_limits([99.9, 100.0]) == pytest.approx((98.0, 100.0))
    assert accuracy_limits([0.2]) == pytest.approx((0.0, 2.0))
    assert accuracy_limits([None, float("nan")]) == (0.0, 100.0)


# ---------------------------------------------------------------- regime sentence

RESNET20 = TeacherFacts("resnet20", 93.12, {"name": "fashion-mnist", "train_limit": None})


def test_regime_with_a_few_labels():
    assert describe_regime(DataConfig(labels_per_class=100), [RESNET20]) == (
        "Regime: 1,000 labelled training images (100 per class) and 59,000 unlabelled ones; "
        "teacher resnet20 (93.12 % top-1, trained on all 60,000 labels).")
    assert describe_regime(DataConfig(label_fraction=0.02)) == (
        "Regime: 1,200 labelled training images (2 % of each class) and 58,800 unlabelled ones.")


def test_regime_with_every_label_and_several_teachers():
    few = TeacherFacts("resnet8", 81.0, {"name": "fmnist", "labels_per_class": 10})
    zoo = TeacherFacts("resnet18", None, None, "imagenet")
    assert describe_regime(DataConfig(train_limit=512), [few, zoo]) == (
        "Regime: all 512 training images labelled; teachers resnet8 (81.00 % top-1, trained on 100 labels, "
        "10 per class) and resnet18 (imagenet weights).")
    assert describe_regime(DataConfig(name="cifar100")) == "Regime: all 50,000 training images labelled."


# ---------------------------------------------------------------- the pipeline's table

def _metrics(path: Path, top1: list[float], **last: float) -> None:
    path.mkdir(parents=True, exist_ok=True)
    rows: list[dict[str, Any]] = [{"epoch": e + 1, "train_loss": 1.0 / (e + 1), "val_top1": v} for e, v in enumerate(top1)]
    rows[-1].update(last)
    path.joinpath("metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))


@pytest.fixture
def pipeline_run(tmp_path: Path) -> Any:
    """A run folder as the teacher and distill stages leave it: a teacher trained here, a given checkpoint
    (numbers in its sidecar only) and four student runs, one of them the student alone."""
    from compress.pipeline import parse_recipe
    from compress.pipeline.context import RunContext

    given = tmp_path / "given" / "cifar-run" / "model.safetensors"
    given.parent.mkdir(parents=True)
    given.write_bytes(b"weights")
    given.with_name("model.safetensors.json").write_text(json.dumps(  # the record train-teacher writes
        {"architecture": {"type": "classifier", "model": {"name": "resnet20"}},
         "preprocessing": {"mean": [0.286], "std": [0.353], "image_size": 28, "channels": 1, "source_channels": 1},
         "role": "teacher", "model": {"name": "resnet20"}, "data": {"name": "fashion-mnist", "train_limit": None},
         "method": {"name": "none"}, "epoch": 200,
         "metrics": {"top1": 93.12, "top5": 99.8, "best_top1": 93.2, "best_epoch": 190}}))
    spec = parse_recipe({
        "name": "few-labels", "data": {"name": "fashion-mnist", "labels_per_class": 100},
        "teachers": [{"model": "resnet8", "train": {"epochs": 2}}, {"checkpoint": str(given)}],
        "distill": {"student": "resnet8", "deploy": "atsc",
                    "methods": ["none", {"name": "none-ls", "method": "none", "label_smoothing": 0.1}, "kd", "atsc"]},
    })
    run_dir = tmp_path / "run"
    _metrics(run_dir / "teacher" / "1-resnet8", [85.0, 91.5])
    top1 = {"none": 80.0, "none-ls": 80.5, "kd": 82.25}
    for name, value in top1.items():
        _metrics(run_dir / "distill" / name, [70.0, value])
    _metrics(run_dir / "distill" / "atsc", [70.0, 83.0], teacher_top1=91.0, teacher_top1_start=91.5, teacher_kept=0.99)
    run = RunContext(spec, run_dir, force=False, progress=False, log=lambda _: None)
    run.records = {
        "teacher": {"info": {"teachers": [
            {"name": "teacher/1-resnet8/model.safetensors", "weights": None, "label": "resnet8", "dir": "teacher/1-resnet8"},
            {"name": str(given), "weights": None, "label": "cifar-run", "dir": None}]}},
        "distill": {"info": {"deploy": "atsc", "student": "distill/atsc/model.safetensors",
                             "methods": {name: f"distill/{name}" for name in ["none", "none-ls", "kd", "atsc"]}}},
    }
    return run


def test_the_table_has_every_teacher_and_each_run_against_the_student_alone(pipeline_run, fixed_result):
    from compress.pipeline.distill_table import report_rows

    rows, curves, regime = report_rows(pipeline_run)
    assert regime == ("Regime: 1,000 labelled training images (100 per class) and 59,000 unlabelled ones; teachers "
                      "resnet8 (91.50 % top-1, trained on 1,000 labels, 100 per class) and resnet20 (93.12 % top-1, "
                      "trained on all 60,000 labels).")
    text = render_markdown(fixed_result, rows, regime=regime)
    assert "## Distillation methods\n\n" + regime + "\n\n| run | model | role | epochs | top-1 (%) | Δ vs alone (pt) | " \
        "teacher after (%) | best top-1 (%) | top-5 (%) | train img/s | wall (s) |" in text
    assert "| teacher resnet8 | resnet8 | teacher | 2 | 91.50 | – | – | 91.50 | – | – | – |" in text
    # a given checkpoint: its numbers (and model) come from its sidecar
    assert "| teacher cifar-run | resnet20 | teacher | 200 | 93.12 | – | – | 93.20 | 99.80 | – | – |" in text
    assert "| none | resnet8 | student (alone) | 2 | 80.00 | +0.00 | – |" in text
    # label smoothing is a method of its own: measured against the plain run, not the reference
    assert "| none-ls | resnet8 | student | 2 | 80.50 | +0.50 | – |" in text
    assert "| kd | resnet8 | student | 2 | 82.25 | +2.25 | – |" in text
    assert "| atsc | resnet8 | student (deployed) | 2 | 83.00 | +3.00 | 91.00 |" in text
    assert list(curves) == ["teacher resnet8", "none", "none-ls", "kd", "atsc"]


def test_without_a_student_alone_there_is_no_difference_to_show(pipeline_run, fixed_result):
    from compress.pipeline.distill_table import report_rows

    pipeline_run.records["distill"]["info"]["methods"] = {"kd": "distill/kd", "atsc": "distill/atsc"}
    rows, _, _ = report_rows(pipeline_run)
    assert [r["Δ vs alone (pt)"] for r in rows] == [None] * 4
    assert "| kd | resnet8 | student | 2 | 82.25 | – | – |" in render_markdown(fixed_result, rows)


# ---------------------------------------------------------------- picture

STUDENTS = [{"run": "teacher resnet20", "role": "teacher", "top-1 (%)": 93.12},
            {"run": "none", "role": "student (alone)", "top-1 (%)": 80.0},
            {"run": "kd", "role": "student", "top-1 (%)": 82.25},
            {"run": "atsc", "role": "student (deployed)", "top-1 (%)": 83.0}]


def test_png_has_three_panels_and_accuracy_axes_of_at_least_two_points(fixed_result, tmp_path):
    import dataclasses

    import matplotlib.pyplot as plt

    # 0.01 point apart: an autoscaled axis would show it as a cliff
    for name, top1 in (("onnx", 90.01), ("int8", 89.99)):
        stage = fixed_result.stages[name]
        stage.accuracy = dataclasses.replace(stage.accuracy, top1=top1)
    fig = report_figure(fixed_result, CURVES, STUDENTS)
    try:
        panels = {ax.get_title(): ax for ax in fig.axes if ax.get_title()}  # the loss axis is a twin, untitled
        assert list(panels) == ["Accuracy vs latency (up-left is better)", "Student top-1 by method", "Training curves"]
        for title, ax in panels.items():
            low, high = ax.get_ylim()
            assert high - low >= 2.0 - 1e-9, title
            assert 0 <= low and high <= 100, title
        scatter_low, scatter_high = panels["Accuracy vs latency (up-left is better)"].get_ylim()
        assert scatter_low < 89.99 and 90.01 < scatter_high and scatter_high - scatter_low < 5
        bars = panels["Student top-1 by method"]
        assert [t.get_text() for t in bars.get_xticklabels()] == ["none", "kd", "atsc\n(deployed)"]
        assert [t.get_text() for t in bars.texts] == ["80.00", "82.25", "83.00"]  # the value on every bar
        assert sorted(line.get_ydata()[0] for line in bars.get_lines()) == [80.0, 93.12]  # teacher, student alone
        low, high = bars.get_ylim()
        assert low < 80.0 and 93.12 < high
        colours = [tuple(patch.get_facecolor()) for patch in bars.patches]
        assert colours[0] == colours[1] != colours[2]  # the deployed run stands out
    finally:
        plt.close(fig)

    path = render_png(fixed_result, tmp_path / "report.png", CURVES, distillation=STUDENTS)
    assert path == tmp_path / "report.png" and path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    single = {name: rows[:1] for name, rows in CURVES.items()}  # one-epoch runs: no curve to draw
    fig = report_figure(fixed_result, single, STUDENTS)
    try:
        assert [ax.get_title() for ax in fig.axes] == ["Accuracy vs latency (up-left is better)", "Student top-1 by method"]
    finally:
        plt.close(fig)


def test_regime_in_markdown_and_json(fixed_result, tmp_path):
    regime = describe_regime(DataConfig(labels_per_class=100), [RESNET20])
    paths = write_report(fixed_result, tmp_path, distillation=STUDENTS, regime=regime)
    assert json.loads(paths.json.read_text())["regime"] == regime
    assert "## Distillation methods\n\n" + regime + "\n\n| run |" in paths.markdown.read_text()
    # a report without a comparison still says it, under the data line
    assert "\n\n" + regime + "\n\n## Stages" in render_markdown(fixed_result, regime=regime)


def test_png_labels_of_close_stages_do_not_overlap(fixed_result):
    """int8 and openvino_int8 often sit at the same latency and accuracy: each point gets a number in its own
    corner, and the legend names it."""
    import matplotlib.pyplot as plt

    from compress.validate.results import StageResult

    twin = fixed_result.stages["int8"]
    fixed_result.stages["openvino_int8"] = StageResult("openvino_int8", "model.int8.xml", "openvino",
                                                       accuracy=twin.accuracy, latency=twin.latency)
    fig = report_figure(fixed_result)
    try:
        ax = fig.axes[0]
        fig.canvas.draw()
        labels = [t for t in ax.texts if t.get_text().isdigit()]
        assert [t.get_text() for t in labels] == ["1", "2", "3", "4"]
        boxes = [t.get_window_extent() for t in labels]
        assert not boxes[2].overlaps(boxes[3])  # int8 and openvino_int8, on the same point
        legend = [t.get_text() for t in ax.get_legend().get_texts()]
        assert legend[2:] == ["3: int8, ONNX Runtime (cpu)", "4: openvino_int8, OpenVINO"]
    finally:
        plt.close(fig)
