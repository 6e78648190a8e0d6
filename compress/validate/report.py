"""Reports in a run folder: ``report.json`` (every number), ``report.md`` (tables), ``report.png`` (plots).

The picture has accuracy against p90 latency for every stage/backend (up and to the left is better)
and, when given, training curves from per-epoch metrics (JSON lines). matplotlib is optional and is
imported only here, with the Agg backend (no display on a server or in CI).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

from compress.artifacts import atomic_path, atomic_write_text, ensure_writable_dir, write_json
from compress.errors import CheckpointError, MissingDependency
from compress.validate.gates import describe
from compress.validate.latency import LatencyStats
from compress.validate.results import StageResult, ValidationResult

Curves = Mapping[str, Sequence[Mapping[str, Any]]]  # run name (method) -> per-epoch metric dicts


@dataclass
class ReportPaths:
    json: Path
    markdown: Path
    png: Path | None


def read_metrics_jsonl(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """Per-epoch metrics, one JSON object per line (blank lines ignored)."""
    path = Path(path)
    rows = []
    try:
        lines = path.read_text().splitlines()
    except FileNotFoundError:
        raise CheckpointError(f"metrics file '{path}' does not exist") from None
    for number, line in enumerate(lines, 1):
        if line.strip():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as exc:
                raise CheckpointError(f"'{path}' line {number} is not JSON ({exc.msg})") from None
    return rows


# ---------------------------------------------------------------- markdown

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
    return {"pytorch": "PyTorch eager", "tensorrt": "TensorRT"}.get(stage.engine, stage.engine or "–")


def render_markdown(result: ValidationResult, distillation: Sequence[Mapping[str, Any]] | None = None,
                    title: str = "Validation report") -> str:
    env = result.environment
    versions = env.get("versions", {})
    lib = ", ".join(f"{k} {versions[k]}" for k in ("torch", "onnxruntime", "tensorrt", "compress") if k in versions)
    out = [f"# {title}", ""]
    data = result.data
    out.append(f"Data: **{data.get('name', '?')}**, {data.get('samples', '?')} validation images. "
               f"Reference: **{result.reference}**. CPU: {env.get('cpu', '?')} ({env.get('cpu_count', '?')} cores); "
               f"GPU: {env.get('gpu') or 'none'}. {lib}.")
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
                             _num(st.p99_ms, ".3f"), _num(st.throughput, ".1f"), _num(speed, ".2f", "x"), str(st.runs)])
    if lat_rows:
        out += ["", "## Latency (ms) and throughput (images/s)", "",
                f"Measured in one run, engines interleaved; speed-up = {result.reference} p50 / stage p50.", ""]
        out.append(_table(["stage", "batch", "threads", "mean", "p50", "p90", "p99", "img/s",
                           f"speed-up vs {result.reference}", "runs"], lat_rows))

    if distillation:
        keys: list[str] = []
        for row in distillation:
            keys += [k for k in row if k not in keys]
        out += ["", "## Distillation methods", ""]
        out.append(_table(keys, [[_cell(row.get(k)) for k in keys] for row in distillation]))

    if result.gates:
        out += ["", "## Gates", ""]
        gate_rows = []
        for g in result.gates:
            status = {"pass": "✅ pass", "fail": "❌ fail"}.get(g.status, f"⏭ skipped: {g.reason}")
            gate_rows.append([g.stage, g.gate, _gate_value(g.value, g.unit), _gate_value(g.threshold, g.unit),
                              "–" if g.margin is None else f"{g.margin:+.3g}", status])
        out.append(_table(["stage", "gate", "value", "threshold", "margin", "status"], gate_rows))
        verdict = "all gates passed" if result.passed else f"{len(result.failures)} gate(s) failed"
        out += ["", f"**{verdict}**" + (": " + "; ".join(describe(g) for g in result.failures) if result.failures else "")]
    return "\n".join(out) + "\n"


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.2f}"
    return "–" if value is None else str(value)


def _gate_value(value: float | None, unit: str) -> str:
    if value is None:
        return "–"
    return {"%": f"{value:.2f}%", "pt": f"{value:.2f} pt", "ms": f"{value:.3f} ms", "x": f"{value:.2f}x"}[unit]


# ---------------------------------------------------------------- picture

def _plot_point(stage: StageResult, batch_size: int | None) -> LatencyStats | None:
    """The stage's point for the scatter: the chosen batch, the most threads (GPU points have none)."""
    if not stage.latency or stage.accuracy is None:
        return None
    batch = batch_size if batch_size is not None else min(s.batch_size for s in stage.latency)
    candidates = [s for s in stage.latency if s.batch_size == batch]
    return max(candidates, key=lambda s: s.threads or 0) if candidates else None


def render_png(result: ValidationResult, path: str | os.PathLike[str], curves: Curves | None = None,
               batch_size: int | None = None) -> Path:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise MissingDependency("matplotlib", "report", "report.png") from None
    curves = {k: v for k, v in (curves or {}).items() if v}
    ncols = 2 if curves else 1
    fig, axes = plt.subplots(1, ncols, figsize=(6.5 * ncols, 4.6), squeeze=False)
    ax = axes[0][0]
    markers = {"pytorch": "o", "onnxruntime": "s", "tensorrt": "^"}
    plotted_batch = None
    latencies: list[float] = []
    for i, stage in enumerate(result.stages.values()):
        point = _plot_point(stage, batch_size)
        if point is None:
            continue
        plotted_batch = point.batch_size
        latencies.append(point.p90_ms)
        ax.scatter(point.p90_ms, stage.accuracy.top1, s=70, marker=markers.get(stage.engine, "o"),  # type: ignore[union-attr]
                   color=f"C{i}", label=f"{stage.name} ({_stage_label(stage)})", zorder=3)
        ax.annotate(stage.name, (point.p90_ms, stage.accuracy.top1), textcoords="offset points", xytext=(6, 5),  # type: ignore[union-attr]
                    fontsize=8)
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
        ax.margins(x=0.25, y=0.25)
        if min(latencies) > 0 and max(latencies) / min(latencies) > 10:
            ax.set_xscale("log")  # eager vs runtimes often differ by 10-100x: keep every point readable

    if curves:
        cax = axes[0][1]
        loss_ax = cax.twinx()
        for i, (run, rows) in enumerate(curves.items()):
            epochs = [r.get("epoch", n + 1) for n, r in enumerate(rows)]
            top1 = [(e, r["val_top1"]) for e, r in zip(epochs, rows) if r.get("val_top1") is not None]
            loss = [(e, r["train_loss"]) for e, r in zip(epochs, rows) if r.get("train_loss") is not None]
            if top1:
                cax.plot(*zip(*top1), color=f"C{i}", marker=".", label=f"{run} val top-1")
            if loss:
                loss_ax.plot(*zip(*loss), color=f"C{i}", linestyle="--", alpha=0.6, label=f"{run} train loss")
        from matplotlib.ticker import MaxNLocator

        cax.xaxis.set_major_locator(MaxNLocator(integer=True))
        cax.set_xlabel("epoch")
        cax.set_ylabel("validation top-1 (%), solid")
        loss_ax.set_ylabel("training loss, dashed")
        cax.set_title("Training curves")
        cax.grid(True, alpha=0.3)
        handles = cax.get_legend_handles_labels()[0] + loss_ax.get_legend_handles_labels()[0]
        labels = cax.get_legend_handles_labels()[1] + loss_ax.get_legend_handles_labels()[1]
        if handles:
            cax.legend(handles, labels, fontsize=7, loc="center right")
    fig.tight_layout()
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=120, format="png")
    plt.close(fig)
    return path


def write_report(result: ValidationResult, out_dir: str | os.PathLike[str], *,
                 distillation: Sequence[Mapping[str, Any]] | None = None, curves: Curves | None = None,
                 png: bool = True, title: str = "Validation report") -> ReportPaths:
    """Write report.json, report.md and (with ``png``) report.png into ``out_dir``.

    ``distillation``: one dict per distillation method run (method, teacher, student, top1, ...), shown as
    a table when given. ``curves``: run name -> per-epoch metric dicts (see ``read_metrics_jsonl``).
    """
    out = ensure_writable_dir(out_dir)
    data = result.to_dict()
    if distillation:
        data["distillation"] = [dict(row) for row in distillation]
    if curves:
        data["training_curves"] = {name: [dict(r) for r in rows] for name, rows in curves.items()}
    write_json(out / "report.json", data)
    atomic_write_text(out / "report.md", render_markdown(result, distillation, title))
    picture = render_png(result, out / "report.png", curves) if png else None
    return ReportPaths(out / "report.json", out / "report.md", picture)


__all__ = ["ReportPaths", "read_metrics_jsonl", "render_markdown", "render_png", "write_report"]
