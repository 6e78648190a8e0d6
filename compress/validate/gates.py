"""Gates: typed thresholds on a validation result, each judged pass / fail / skipped.

A gate on a stage that could not run here (TensorRT without a GPU) is ``skipped`` with the reason,
never ``pass``: a CI that wants every gate to have run uses ``check_gates(strict=True)``. This module is
what gates exist, what each reads and which are asked for; ``compress.validate.verdicts`` judges a result
with them.
Relative gates compare with the reference stage (the fp32 PyTorch student): top-1 drop in absolute
points, agreement in percent, speed-up as a ratio of p50 latencies measured in the same run.
Baseline gates compare a stage with the stage of the same name in a stored report (``--baseline``):
top-1 drop in points, and the share of its speed-up over the reference that was lost, in percent;
a speed-up is a ratio within one run, so a baseline from another machine still compares.

``GATES`` is the table of gate kinds; recipe keys, ``GateSpec`` keywords and the ``compress validate``
options come from it, so a new gate is one entry there (its unit, direction and how it reads a result).

Gates mean something or say why not:
- a gate with a ``default`` (``min_above_chance``: the model must beat guessing) is judged on every stage
  that ran, the reference included, unless a spec sets it; a threshold of 0 turns it off;
- a speed-up measured on timings too dispersed to compare (``compress.export.timing.unreliable``) fails
  with the reason instead of passing on noise;
- a gate that cannot be judged on what was asked (a relative gate with only the reference, a latency gate
  at a batch size not timed or without timing, a baseline gate without a baseline) is refused before the
  work by ``check_requested``, with one line naming the gate and what it needs.
"""

from __future__ import annotations

import difflib
import math
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence

from compress.errors import ConfigError, UsageError
from compress.export.timing import unreliable
from compress.validate.results import StageResult

@dataclass(frozen=True)
class LatencyPoint:
    """The (batch size, thread count) a latency gate looks at."""

    batch_size: int
    threads: int | None

    def __str__(self) -> str:
        return f"batch {self.batch_size}" + (f", {self.threads} threads" if self.threads is not None else "")


Reading = tuple[float | None, str]  # the value a gate looks at, or (None, why it cannot be judged)


@dataclass(frozen=True)
class GateInputs:
    """What a gate can read: the stage judged, the run's reference, the latency point, and the stage of the
    same name in a stored baseline report (None: no baseline given, or it has no such stage)."""

    stage: StageResult
    reference: StageResult
    point: LatencyPoint
    baseline: StageResult | None = None
    baseline_missing: str = ""  # why ``baseline`` is None
    num_classes: int | None = None  # of the validation data: chance is 100 / num_classes percent
    teacher_top1: float | None = None  # the (best) teacher's recorded top-1, when known


def _top1(x: GateInputs) -> Reading:
    return (x.stage.accuracy.top1, "") if x.stage.accuracy is not None else (None, "accuracy was not measured")


def _above_chance(x: GateInputs) -> Reading:
    if x.num_classes is None:
        return None, "the number of classes was not recorded"
    top1 = _top1(x)
    return (top1[0] - 100.0 / x.num_classes, "") if top1[0] is not None else top1


def _chance_note(x: GateInputs) -> str:
    """Chance, and how far below its teacher the stage is when the teacher's top-1 is known."""
    if x.num_classes is None or x.stage.accuracy is None:
        return ""
    note = f"chance {100.0 / x.num_classes:.2f}%"
    if x.teacher_top1 is not None:
        gap = x.teacher_top1 - x.stage.accuracy.top1
        note += f"; {abs(gap):.2f} pt {'below' if gap >= 0 else 'above'} the teacher ({x.teacher_top1:.2f}%)"
    return note


def _top1_drop(x: GateInputs) -> Reading:
    if x.stage.accuracy is None or x.reference.accuracy is None:
        return None, "accuracy was not measured"
    return x.reference.accuracy.top1 - x.stage.accuracy.top1, ""


def _agreement(x: GateInputs) -> Reading:
    if x.stage.accuracy is None:
        return None, "accuracy was not measured"
    agreement = x.stage.accuracy.agreement
    return (agreement, "") if agreement is not None else (None, "agreement was not measured")


def _p90_ms(x: GateInputs) -> Reading:
    stats = x.stage.latency_at(x.point.batch_size, x.point.threads)
    return (stats.p90_ms, "") if stats else (None, f"no latency measured at {x.point}")


def _speedup(x: GateInputs) -> Reading:
    speedup = x.stage.speedup_at(x.point.batch_size, x.point.threads)
    return (speedup, "") if speedup is not None else (None, f"no speed-up measured at {x.point}")


def _speedup_trust(x: GateInputs) -> str:
    """Why this speed-up cannot be trusted (the stage's or the reference's p50 unstable), or ""."""
    for side in (x.reference, x.stage):
        why = unreliable(side.name, side.latency, x.point.batch_size, x.point.threads)
        if why:
            return f"not meaningful: {why}; rerun on a quieter machine or with a longer duration"
    return ""


def _top1_drop_vs_baseline(x: GateInputs) -> Reading:
    if x.baseline is None:
        return None, x.baseline_missing
    if x.stage.accuracy is None or x.baseline.accuracy is None:
        return None, "accuracy was not measured" + (" in the baseline" if x.stage.accuracy is not None else "")
    return x.baseline.accuracy.top1 - x.stage.accuracy.top1, ""


def _speedup_loss_vs_baseline(x: GateInputs) -> Reading:
    """How much of the baseline's speed-up over eager PyTorch is lost, in percent of it. Both speed-ups are
    ratios measured within their own run, so the comparison holds across machines."""
    if x.baseline is None:
        return None, x.baseline_missing
    now, before = _speedup(x)[0], x.baseline.speedup_at(x.point.batch_size, x.point.threads)
    if now is None or before is None:
        return None, f"no speed-up measured at {x.point}" + (" in the baseline" if now is not None else "")
    return 100.0 * (1.0 - now / before), ""


@dataclass(frozen=True)
class Gate:
    """One kind of gate: a threshold on one number of a stage's result."""

    name: str  # recipe key, GateSpec keyword and `compress validate --<name>` option
    unit: str  # "%", "pt" (percent points), "ms" or "x"
    at_least: bool  # passes when the value is >= the threshold; False: when it is <= the threshold
    percent: bool  # the threshold is in percent points (0..100); otherwise it must be positive
    read: Callable[[GateInputs], Reading]  # the value judged, or why there is none
    help: str  # the command-line option's help
    relative: bool = False  # compares with the reference stage: not judged on the reference itself
    baseline: bool = False  # compares with a stored report (``--baseline``)
    latency: bool = False  # reads the timings at the spec's (batch size, threads)
    default: float | None = None  # judged on every stage at this threshold unless set; 0 turns it off
    trust: Callable[[GateInputs], str] | None = None  # why a value read cannot be trusted (the gate fails)
    note: Callable[[GateInputs], str] | None = None  # context shown next to the verdict


GATES: dict[str, Gate] = {gate.name: gate for gate in (
    Gate("min_top1", "%", at_least=True, percent=True, read=_top1, help="top-1 floor, percent."),
    # Chance + 10 points, not a multiple of chance: 2x chance is out of reach with 2 classes (100 %) and
    # means nothing with 1,000 (0.2 %), while 10 points above guessing is what any trained model clears and
    # a collapsed or mis-exported one does not. On small validation sets it stays clear of luck: a model
    # that guesses among 3 classes on 300 images scores 33.3 +- 2.7 %, so 43.3 % is nearly 4 standard
    # deviations away (10 classes on 100 images: 10 +- 3 %).
    Gate("min_above_chance", "pt", at_least=True, percent=True, read=_above_chance, default=10.0,
         note=_chance_note, help="top-1 points above chance (100 / classes); judged on every stage at 10 unless "
                                 "set, 0 turns it off."),
    Gate("max_top1_drop", "pt", at_least=False, percent=True, read=_top1_drop, relative=True,
         help="top-1 drop vs the reference, points."),
    Gate("min_agreement", "%", at_least=True, percent=True, read=_agreement, relative=True,
         help="top-1 agreement with the reference, percent."),
    Gate("max_p90_ms", "ms", at_least=False, percent=False, read=_p90_ms, latency=True,
         help="p90 latency at batch 1, ms."),
    Gate("min_speedup", "x", at_least=True, percent=False, read=_speedup, relative=True, latency=True,
         trust=_speedup_trust, help="speed-up vs the reference at batch 1, measured in the same run; fails when "
                                    "either side's p50 moved more than 2x between timing blocks (in each attempt: a drifted point "
                                    "is timed again up to twice)."),
    Gate("max_top1_drop_vs_baseline", "pt", at_least=False, percent=True, read=_top1_drop_vs_baseline,
         baseline=True, help="top-1 drop vs the same stage in the --baseline report, points (default 1.0 "
                             "with --baseline)."),
    Gate("max_speedup_loss_vs_baseline", "%", at_least=False, percent=True, read=_speedup_loss_vs_baseline,
         relative=True, baseline=True, latency=True, trust=_speedup_trust, help="share of the --baseline report's speed-up over the reference that "
                                            "may be lost, percent (default 10 with --baseline)."),
)}
# The baseline gates judged when a baseline is given and no baseline gate is set.
BASELINE_DEFAULTS = {"max_top1_drop_vs_baseline": 1.0, "max_speedup_loss_vs_baseline": 10.0}
_POINT_KEYS = ("batch_size", "threads")  # GateSpec keys that choose the latency point, not a threshold


@dataclass(frozen=True, init=False)
class GateSpec:
    """The gates of one stage: ``GateSpec(min_agreement=99.9, max_p90_ms=3.0, batch_size=1)``."""

    values: tuple[tuple[str, float], ...]  # (gate name, threshold), in table order
    batch_size: int = 1  # the latency point the latency gates look at
    threads: int | None = None  # None: the largest thread count measured

    def __init__(self, batch_size: int = 1, threads: int | None = None, **thresholds: float | None) -> None:
        for name in thresholds:
            if name not in GATES:
                raise ConfigError(f"unknown gate '{name}': gates are {', '.join(GATES)}")
        values = tuple((name, float(value)) for name in GATES if (value := thresholds.get(name)) is not None)
        object.__setattr__(self, "values", values)
        object.__setattr__(self, "batch_size", batch_size)
        object.__setattr__(self, "threads", threads)
        self.validate()

    def validate(self) -> None:
        for name, value in self.values:
            if GATES[name].percent and not 0 <= value <= 100:
                raise ConfigError(f"gate {name} is in percent points (0..100), got {value}")
            if not GATES[name].percent and not 0 < value < math.inf:  # a finite threshold: NaN or inf gates nothing
                raise ConfigError(f"gate {name} must be positive, got {value}")
        if self.batch_size < 1:
            raise ConfigError(f"gate batch_size must be at least 1, got {self.batch_size}")
        if self.threads is not None and self.threads < 1:
            raise ConfigError(f"gate threads must be at least 1, got {self.threads}")

    @property
    def thresholds(self) -> dict[str, float]:
        """Gate name -> threshold, for the gates this spec sets."""
        return dict(self.values)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], where: str = "gates") -> "GateSpec":
        """From a recipe/CLI mapping; an unknown key names its path and the closest valid key."""
        known = [*GATES, *_POINT_KEYS]
        for key in data:
            if key not in known:
                close = difflib.get_close_matches(str(key), known, n=1)
                hint = f" (did you mean '{close[0]}'?)" if close else f" (valid: {', '.join(known)})"
                raise ConfigError(f"{where}.{key}: unknown gate{hint}")
        try:
            return cls(**{k: (None if v is None else int(v) if k in _POINT_KEYS else float(v)) for k, v in data.items()})
        except (TypeError, ValueError, OverflowError) as exc:  # OverflowError: int(.inf) for batch_size/threads
            raise ConfigError(f"{where}: gate values must be finite numbers ({exc})") from None


Gates = GateSpec | Mapping[str, GateSpec]


def parse_gates(data: Mapping[str, Any] | None, where: str = "gates") -> Gates | None:
    """Gates from a recipe: either one spec (``{min_agreement: 99.9}``, for every stage but the reference)
    or one per stage (``{onnx: {min_agreement: 99.9}, int8: {max_top1_drop: 1.0}}``)."""
    if not data:
        return None
    known = {*GATES, *_POINT_KEYS}
    if all(isinstance(v, Mapping) for v in data.values()) and not known & set(data):
        return {str(stage): GateSpec.from_dict(spec, f"{where}.{stage}") for stage, spec in data.items()}
    return GateSpec.from_dict(data, where)


def gates_by_stage(gates: Gates | None, stages: list[str], reference: str) -> dict[str, GateSpec]:
    """One ``GateSpec`` applies to every stage but the reference (to the reference when it is the only stage);
    a mapping names stages explicitly."""
    if gates is None:
        return {}
    if isinstance(gates, GateSpec):  # with the reference alone, it is the one stage judged
        return {name: gates for name in stages if name != reference} or {reference: gates}
    unknown = [name for name in gates if name not in stages]
    if unknown:
        close = difflib.get_close_matches(unknown[0], stages, n=1)
        hint = f"did you mean '{close[0]}'? " if close else ""
        raise ConfigError(f"gates name stage '{unknown[0]}' which is not validated: {hint}stages are {', '.join(stages)}")
    return dict(gates)


def uses_baseline(gates: Gates | None) -> bool:
    """Whether any spec sets a baseline gate."""
    specs = [] if gates is None else [gates] if isinstance(gates, GateSpec) else list(gates.values())
    return any(GATES[name].baseline for spec in specs for name in spec.thresholds)


def check_requested(gates: Gates | None, stages: list[str], reference: str, *, batch_sizes: Sequence[int],
                    threads: Sequence[int], latency: bool = True, baseline: bool = False) -> None:
    """Refuse, before any work, a gate that could only be skipped: one line naming the gate and what it needs."""
    for stage, spec in gates_by_stage(gates, stages, reference).items():
        for name, _ in spec.values:
            gate, option = GATES[name], "--" + name.replace("_", "-")
            if gate.relative and stage == reference:
                if len(stages) == 1:
                    raise UsageError(f"gate {name} compares a model with a reference, but '{stage}' is the only one "
                                     f"validated: pass the reference too (the PyTorch checkpoint first, e.g. "
                                     f"compress validate model.safetensors model.onnx) or drop {option}")
                raise UsageError(f"gate {name} is set on '{stage}', which is the reference it compares with: set "
                                 "it on another stage")
            if gate.baseline and not baseline:
                raise UsageError(f"gate {name} compares with a stored report: give one (--baseline REPORT.json, "
                                 "validate.baseline in a recipe)")
            if gate.latency and not latency:
                raise UsageError(f"gate {name} needs latency measurements: drop --no-latency or {option}")
            if gate.latency and spec.batch_size not in batch_sizes:
                raise UsageError(f"gate {name} looks at batch {spec.batch_size}, which is not timed (batch sizes "
                                 f"{', '.join(map(str, batch_sizes))}): add it to the batch sizes")
            if gate.latency and spec.threads is not None and spec.threads not in threads:
                raise UsageError(f"gate {name} looks at {spec.threads} threads, which are not timed (threads "
                                 f"{', '.join(map(str, threads))}): add them to the thread counts")
