"""Reports in a run folder: ``report.json`` (every number), ``report.md`` (tables), ``report.png`` (plots).

The picture has accuracy against p90 latency for every stage/backend (up and to the left is better),
when given, the student's top-1 for every distillation run against its teachers and the student trained
alone, and training curves from per-epoch metrics (JSON lines). Every accuracy axis spans at least a
couple of points (``accuracy_limits``), so a 0.01-point difference never fills a plot. matplotlib is
optional and is imported only here, with the Agg backend (no display on a server or in CI).
"""

from __future__ import annotations

import contextlib
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Mapping, Sequence

from compress.artifacts import atomic_path, json_text, output_folder, sweep_litter
from compress.errors import CheckpointError, MissingDependency
from compress.validate.verdicts import describe, format_value
from compress.validate.latency import MAX_DRIFT, LatencyStats
from compress.validate.regime import LabelCounts, TeacherFacts, describe_regime, label_counts  # noqa: F401 (re-exported)
from compress.validate.results import StageResult, ValidationResult

if TYPE_CHECKING:
    from matplotlib.figure import Figure

Curves = Mapping[str, Sequence[Mapping[str, Any]]]  # run name (method) -> per-epoch metric dicts

# Columns of the distillation table that the pipeline writes (compress.pipeline.stages) and the picture
# reads back; other columns are shown as they come.
RUN, ROLE, TOP1 = "run", "role", "top-1 (%)"
TEACHER_AFTER = "teacher after (%)"  # an adapting teacher's (ATSC) top-1 after the last epoch
DELTA_ALONE = "Δ vs alone (pt)"  # student top-1 minus that of the student trained alone (method none)
TEACHER_ROLE = "teacher"
# With a validation split held out of training (data.holdout_per_class), these two replace top-1 (%):
VAL_SELECTED = "val top-1 (selected on)"  # the held-out split, at the epoch chosen on it
TEST_ONCE = "test top-1 (read once)"  # the test split, read once with that epoch's weights


def headline_top1(row: Mapping[str, Any]) -> Any:
    """A row's top-1 that the picture shows: the test split's read once when there is one."""
    return row.get(TEST_ONCE) if TEST_ONCE in row else row.get(TOP1)


def student_role(deployed: bool = False, alone: bool = False) -> str:
    """The role of a student run: "student", "student (deployed)", "student (alone)", "student (alone, deployed)".

    "alone" marks the run the Δ column is measured against, so a reader sees which it is."""
    marks = [mark for mark, on in (("alone", alone), ("deployed", deployed)) if on]
    return "student" + (f" ({', '.join(marks)})" if marks else "")


@dataclass
class ReportPaths:
    json: Path
    markdown: Path
    png: Path | None


def read_metrics_jsonl(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """Per-epoch metrics, one JSON object per line (blank lines ignored)."""
    from compress.structured import parse_json, read_text

    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"metrics file '{path}' does not exist")
    # through the one reader: regular file, size, depth, digits, finite numbers, unique keys
    lines = read_text(path, "metrics file").splitlines()
    return [parse_json(line, f"metrics file '{path}' line {number}") for number, line in enumerate(lines, 1)
            if line.strip()]


# ---------------------------------------------------------------- markdown

def _drift_cell(stats: LatencyStats) -> str:
    """``1.12x``, or ``1.12x (2 attempts)`` when the point drifted and was timed again."""
    cell = _num(stats.drift, ".2f", "x")
    return cell + (f" ({stats.attempts} attempts)" if stats.attempts > 1 else "")


def _num(value: float | int | None, fmt: str = ".2f", suffix: str = "") -> str:
    if value is None:
        return "–"
    return f"{value:{fmt}}{suffix}"


def _size(n: int | None) -> str:
    if n is None:
        return "–"
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024  # type: ignore[assignment]
    return str(n)


def _params(n: int | None) -> str:
    if n is None:
        return "–"
    return f"{n / 1e6:.2f} M" if n >= 1e6 else f"{n / 1e3:.1f} k" if n >= 1e3 else str(n)


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def _stage_label(stage: StageResult) -> str:
    if stage.engine == "onnxruntime":
        return f"ONNX Runtime ({stage.provider})"
    return {"pytorch": "PyTorch eager", "tensorrt": "TensorRT", "openvino": "OpenVINO"}.get(stage.engine,
                                                                                           stage.engine or "–")


# Where a point's number goes, in points from it: stages close in latency and accuracy (int8 and
# openvino_int8 often sit on top of each other) get different corners, so their labels never cover each other.
LABEL_OFFSETS = ((6, 5), (6, -12), (-13, 5), (-13, -12))


def render_markdown(result: ValidationResult, distillation: Sequence[Mapping[str, Any]] | None = None,
                    title: str = "Validation report", regime: str | None = None) -> str:
    """The report as Markdown. ``regime``: a sentence on the training data (``describe_regime``), shown
    above the distillation table (or under the data line when there is none)."""
    env = result.environment
    versions = env.get("versions", {})
    lib = ", ".join(f"{k} {versions[k]}" for k in ("torch", "onnxruntime", "tensorrt", "compress") if k in versions)
    out = [f"# {title}", ""]
    data = result.data
    out.append(f"Data: **{data.get('name', '?')}**, {data.get('samples', '?')} validation images. "
               f"Reference: **{result.reference}**. CPU: {env.get('cpu', '?')} ({env.get('cpu_count', '?')} cores); "
               f"GPU: {env.get('gpu') or 'none'}. {lib}.")
    if regime and not distillation:
        out += ["", regime]
    out += ["", "## Stages", ""]
    rows = []
    for s in result.stages.values():
        acc = s.accuracy
        if s.skipped:
            rows.append([s.name, _stage_label(s), f"skipped: {s.reason}", "–", "–", "–", _size(s.size_bytes), "–"])
            continue
        rows.append([s.name, _stage_label(s), _num(acc.top1 if acc else None, suffix="%"),
                     _num(acc.top5 if acc else None, suffix="%"), _num(acc.agreement if acc else None, suffix="%"),
                     _num(acc.max_abs_logit_diff if acc else None, ".2e"), _size(s.size_bytes), _params(s.parameters)])
    out.append(_table(["stage", "backend", "top-1", "top-5", f"agreement vs {result.reference}", "max abs Δlogit",
                       "size", "parameters"], rows))

    lat_rows = []
    for s in result.stages.values():
        for st in s.latency:
            speed = s.speedup_at(st.batch_size, st.threads)
            lat_rows.append([s.name, str(st.batch_size), "–" if st.threads is None else str(st.threads),
                             _num(st.mean_ms, ".3f"), _num(st.p50_ms, ".3f"), _num(st.p90_ms, ".3f"),
                             _num(st.p99_ms, ".3f"), _num(st.spread, ".2f"), _drift_cell(st),
                             _num(st.throughput, ".1f"), _num(speed, ".2f", "x"), str(st.runs)])
    if lat_rows:
        out += ["", "## Latency (ms) and throughput (images/s)", "",
                f"Measured in one run, engines interleaved in blocks; speed-up = {result.reference} p50 / stage p50 "
                f"(a stage is {result.reference}'s latency divided by its own times faster). Drift: slowest over "
                f"fastest block p50; a point above {MAX_DRIFT:g}x is timed again (the steadiest attempt kept), and "
                f"one still above it gives no trusted speed-up.", ""]
        out.append(_table(["stage", "batch", "threads", "mean", "p50", "p90", "p99", "p90/p50", "drift", "img/s",
                           f"speed-up vs {result.reference}", "runs"], lat_rows))

    if distillation:
        keys: list[str] = []
        for row in distillation:
            keys += [k for k in row if k not in keys]
        out += ["", "## Distillation methods", ""] + ([regime, ""] if regime else [])
        out.append(_table(keys, [[_cell(row.get(k), k) for k in keys] for row in distillation]))

    if result.gates:
        out += ["", "## Gates", ""]
        gate_rows = []
        for g in result.gates:
            status = {"pass": "✅ pass", "fail": "❌ fail"}.get(g.status, "⏭ skipped")
            status += "".join(f": {text}" for text in (g.reason, g.note) if text).replace("|", "/")
            gate_rows.append([g.stage, g.gate, _gate_value(g.value, g.unit), _gate_value(g.threshold, g.unit),
                              "–" if g.margin is None else f"{g.margin:+.3g}", status])
        out.append(_table(["stage", "gate", "value", "threshold", "margin", "status"], gate_rows))
        verdict = "all gates passed" if result.passed else f"{len(result.failures)} gate(s) failed"
        out += ["", f"**{verdict}**" + (": " + "; ".join(describe(g) for g in result.failures) if result.failures else "")]
    return "\n".join(out) + "\n"


def _cell(value: Any, key: str = "") -> str:
    if isinstance(value, (int, float)) and not isinstance(value, bool) and key.endswith("(pt)"):
        return f"{value:+.2f}"  # a difference in points: its sign is the news
    if isinstance(value, float):
        return f"{value:.2f}"
    return "–" if value is None else str(value)


def _gate_value(value: float | None, unit: str) -> str:
    return format_value(value, unit, missing="–")


# ---------------------------------------------------------------- picture

def accuracy_limits(values: Iterable[float | None], min_span: float = 2.0, margin: float = 0.1) -> tuple[float, float]:
    """(low, high) of a top-1 (%) axis: every value inside, at least ``min_span`` points tall, within [0, 100].

    Autoscaling fills an axis with whatever spread there is, so two stages 0.01 point apart would look a
    cliff apart. The span is the values' spread plus ``margin`` of it on each side, widened about their
    centre to ``min_span``; at 0 or 100 it is shifted inwards rather than cut. None and NaN are ignored."""
    finite = [float(v) for v in values if v is not None and math.isfinite(v)]
    if not finite:
        return 0.0, 100.0
    low, high = min(finite), max(finite)
    pad = margin * (high - low)
    low, high = low - pad, high + pad
    if high - low < min_span:
        centre = (low + high) / 2
        low, high = centre - min_span / 2, centre + min_span / 2
    if low < 0:
        low, high = 0.0, min(100.0, high - low)
    if high > 100:
        low, high = max(0.0, low - (high - 100)), 100.0
    return low, high


def _plot_point(stage: StageResult, batch_size: int | None) -> LatencyStats | None:
    """The stage's point for the scatter: the chosen batch, the most threads (GPU points have none)."""
    if not stage.latency or stage.accuracy is None:
        return None
    batch = batch_size if batch_size is not None else min(s.batch_size for s in stage.latency)
    candidates = [s for s in stage.latency if s.batch_size == batch]
    return max(candidates, key=lambda s: s.threads or 0) if candidates else None


def _pyplot() -> Any:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise MissingDependency("matplotlib", "report", "report.png") from None
    return plt


def _latency_panel(ax: Any, result: ValidationResult, batch_size: int | None) -> None:
    markers = {"pytorch": "o", "onnxruntime": "s", "tensorrt": "^"}
    plotted_batch = None
    latencies: list[float] = []
    top1: list[float] = []
    for i, stage in enumerate(result.stages.values()):
        point = _plot_point(stage, batch_size)
        if point is None or stage.accuracy is None:
            continue
        plotted_batch = point.batch_size
        latencies.append(point.p90_ms)
        top1.append(stage.accuracy.top1)
        # the point carries a number, the legend its name: long names next to close points would overlap
        number = str(len(top1))
        ax.scatter(point.p90_ms, stage.accuracy.top1, s=70, marker=markers.get(stage.engine, "o"),
                   color=f"C{i}", label=f"{number}: {stage.name}, {_stage_label(stage)}", zorder=3)
        ax.annotate(number, (point.p90_ms, stage.accuracy.top1), textcoords="offset points",
                    xytext=LABEL_OFFSETS[(len(top1) - 1) % len(LABEL_OFFSETS)], fontsize=8, fontweight="bold")
    threads = sorted({s.threads for st in result.stages.values() for s in st.latency if s.threads is not None})
    where = f"batch {plotted_batch}" + (f", CPU threads {threads[-1]}" if threads else "")
    ax.set_xlabel(f"p90 latency (ms, {where})")
    ax.set_ylabel("top-1 accuracy (%)")
    ax.set_title("Accuracy vs latency (up-left is better)")
    ax.grid(True, alpha=0.3)
    skipped = [s.name for s in result.stages.values() if s.skipped]
    if skipped:
        ax.text(0.01, 0.01, "skipped here: " + ", ".join(skipped), transform=ax.transAxes, fontsize=7, color="grey")
    if ax.collections:
        ax.legend(fontsize=7, loc="best")
        ax.margins(x=0.25)
        ax.set_ylim(*accuracy_limits(top1, margin=0.25))  # room for the labels above the points
        if min(latencies) > 0 and max(latencies) / min(latencies) > 10:
            ax.set_xscale("log")  # eager vs runtimes often differ by 10-100x: keep every point readable


def _student_runs(distillation: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    return [r for r in distillation if str(r.get(ROLE, "")).startswith("student") and headline_top1(r) is not None]


def _methods_panel(ax: Any, distillation: Sequence[Mapping[str, Any]]) -> None:
    """One bar per student run, the deployed one highlighted, against lines at each teacher's top-1 and
    the student trained alone's: how much each method bought over training without a teacher."""
    students = _student_runs(distillation)
    teachers = [r for r in distillation if r.get(ROLE) == TEACHER_ROLE and headline_top1(r) is not None]
    alone = next((r for r in students if "alone" in str(r[ROLE])), None)
    values = [float(headline_top1(r)) for r in students]
    deployed = ["deployed" in str(r[ROLE]) for r in students]
    positions = list(range(len(students)))
    bars = ax.bar(positions, values, width=0.6, color=["C1" if d else "C0" for d in deployed],
                  edgecolor=["black" if d else "none" for d in deployed], zorder=2)
    ax.bar_label(bars, labels=[f"{v:.2f}" for v in values], fontsize=7, padding=2)
    names = [f"{r[RUN]}\n(deployed)" if d else str(r[RUN]) for r, d in zip(students, deployed)]
    ax.set_xticks(positions, names, fontsize=8, rotation=30 if len(students) > 4 else 0,
                  ha="right" if len(students) > 4 else "center")
    lines = []
    for i, teacher in enumerate(teachers):
        lines.append(float(headline_top1(teacher)))
        ax.axhline(lines[-1], color=f"C{i + 2}", linestyle="--", linewidth=1.2,
                   label=f"{teacher.get(RUN, 'teacher')}: {lines[-1]:.2f}%")
    if alone is not None:
        lines.append(float(headline_top1(alone)))
        ax.axhline(lines[-1], color="black", linestyle=":", linewidth=1.2,
                   label=f"student alone ({alone[RUN]}): {lines[-1]:.2f}%")
    # bars start below the axis: their labels carry the numbers, the axis the differences
    ax.set_ylim(*accuracy_limits(values + lines, margin=0.15))
    ax.set_ylabel("student top-1 (%)")
    ax.set_title("Student top-1 by method")
    ax.grid(True, axis="y", alpha=0.3)
    if lines:
        ax.legend(fontsize=7, loc="best")


def _curves_panel(ax: Any, curves: Curves) -> None:
    from matplotlib.ticker import MaxNLocator

    loss_ax = ax.twinx()
    top1_values: list[float] = []
    for i, (run, rows) in enumerate(curves.items()):
        epochs = [r.get("epoch", n + 1) for n, r in enumerate(rows)]
        top1 = [(e, r["val_top1"]) for e, r in zip(epochs, rows) if r.get("val_top1") is not None]
        loss = [(e, r["train_loss"]) for e, r in zip(epochs, rows) if r.get("train_loss") is not None]
        if top1:
            ax.plot(*zip(*top1), color=f"C{i}", marker=".", label=f"{run} val top-1")
            top1_values += [v for _, v in top1]
        if loss:
            loss_ax.plot(*zip(*loss), color=f"C{i}", linestyle="--", alpha=0.6, label=f"{run} train loss")
    if top1_values:
        ax.set_ylim(*accuracy_limits(top1_values))
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("epoch")
    ax.set_ylabel("validation top-1 (%), solid")
    loss_ax.set_ylabel("training loss, dashed")
    ax.set_title("Training curves")
    ax.grid(True, alpha=0.3)
    handles = ax.get_legend_handles_labels()[0] + loss_ax.get_legend_handles_labels()[0]
    labels = ax.get_legend_handles_labels()[1] + loss_ax.get_legend_handles_labels()[1]
    if handles:
        ax.legend(handles, labels, fontsize=7, loc="center right")


def report_figure(result: ValidationResult, curves: Curves | None = None,
                  distillation: Sequence[Mapping[str, Any]] | None = None, batch_size: int | None = None) -> Figure:
    """The picture of ``render_png``, side by side: accuracy vs latency; student top-1 by method (when the
    table has student runs with a top-1); training curves (when given). Close it with
    ``matplotlib.pyplot.close`` when done."""
    plt = _pyplot()
    # A curve needs two epochs: single-epoch runs (the main job's) are dots the bar panel already shows.
    curves = {k: v for k, v in (curves or {}).items() if len(v) >= 2}
    with_methods = bool(_student_runs(distillation or ()))
    ncols = 1 + with_methods + bool(curves)
    fig, axes = plt.subplots(1, ncols, figsize=(6.5 * ncols, 4.6), squeeze=False)
    panels = iter(axes[0])
    _latency_panel(next(panels), result, batch_size)
    if with_methods:
        _methods_panel(next(panels), distillation or ())
    if curves:
        _curves_panel(next(panels), curves)
    fig.tight_layout()
    return fig


def render_png(result: ValidationResult, path: str | os.PathLike[str], curves: Curves | None = None,
               batch_size: int | None = None, distillation: Sequence[Mapping[str, Any]] | None = None) -> Path:
    """Write ``report_figure`` to ``path`` (PNG); returns the path."""
    path = Path(path)
    with atomic_path(path) as tmp:
        _save_png(result, tmp, curves, distillation, batch_size)
    return path


def _save_png(result: ValidationResult, path: Path, curves: Curves | None = None,
              distillation: Sequence[Mapping[str, Any]] | None = None, batch_size: int | None = None) -> None:
    fig = report_figure(result, curves, distillation, batch_size)
    try:
        fig.savefig(path, dpi=120, format="png")
    finally:
        _pyplot().close(fig)


def write_report(result: ValidationResult, out_dir: str | os.PathLike[str], *,
                 distillation: Sequence[Mapping[str, Any]] | None = None, curves: Curves | None = None,
                 png: bool = True, title: str = "Validation report", regime: str | None = None) -> ReportPaths:
    """Write report.json, report.md and (with ``png``) report.png into ``out_dir``.

    ``distillation``: one dict per distillation run or teacher (run, role, top-1 (%), ...), shown as a
    table when given; rows with a ``role`` of "teacher"/"student ..." and a ``top-1 (%)`` are also
    plotted. ``curves``: run name -> per-epoch metric dicts (see ``read_metrics_jsonl``). ``regime``: a
    sentence on the training data (``describe_regime``).

    The three files are all written under temporary names before any replaces an earlier report, so a
    failure (a full disk, say) leaves the previous report whole, and a folder created here is removed.
    """
    data = result.to_dict()
    if regime:
        data["regime"] = regime
    if distillation:
        data["distillation"] = [dict(row) for row in distillation]
    if curves:
        data["training_curves"] = {name: [dict(r) for r in rows] for name, rows in curves.items()}
    if png:
        _pyplot()  # a missing matplotlib is reported before anything is written
    with output_folder(out_dir) as out, contextlib.ExitStack() as files:
        sweep_litter(out)  # temporary files of a killed report writer
        paths = ReportPaths(out / "report.json", out / "report.md", out / "report.png" if png else None)
        files.enter_context(atomic_path(paths.json)).write_text(json_text(data))
        files.enter_context(atomic_path(paths.markdown)).write_text(render_markdown(result, distillation, title,
                                                                                    regime))
        if paths.png is not None:
            _save_png(result, files.enter_context(atomic_path(paths.png)), curves, distillation)
    return paths


__all__ = ["DELTA_ALONE", "LabelCounts", "ROLE", "RUN", "ReportPaths", "TEACHER_AFTER", "TEACHER_ROLE", "TEST_ONCE", "TOP1",
           "TeacherFacts", "VAL_SELECTED", "accuracy_limits", "describe_regime", "headline_top1", "label_counts",
           "read_metrics_jsonl", "render_markdown", "render_png", "report_figure", "student_role", "write_report"]
