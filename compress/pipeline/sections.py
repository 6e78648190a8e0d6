"""The ``export``, ``validate`` and ``report`` sections of a recipe.

The ``export`` section has one key per export backend (``compress.export.backends.BACKENDS``), each
holding that backend's own typed options; ``validate`` names the artifacts it measures after the same
backends, with "student" (the fp32 PyTorch model) as the reference.

    export: {onnx: {exporter: dynamo}, int8: {calibration: 512}}
    export: {target: cpu}   # every CPU backend installed here, the fastest within the gate chosen
    validate: {val_limit: 2000, gates: {onnx: {min_agreement: 99.9}}}
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from typing import Any, Mapping

from compress.bounds import MAX_COUNT, span, within
from compress.errors import ConfigError
from compress.export.backends import BACKENDS, built_from_message
from compress.export.target import TargetOptions, gated_options, target_backends
from compress.pipeline.fields import checked, convert, join, mapping, plain, read_fields, unknown_keys
from compress.validate.gates import Gates, check_requested, parse_gates, uses_baseline
from compress.validate.latency import LatencyConfig

REFERENCE = "student"  # the fp32 PyTorch student: what every exported artifact is compared with
VALIDATED = (REFERENCE, *BACKENDS)  # the names the validate stage gives the artifacts it measures


@dataclass
class ExportSpec:
    """What the recipe exports: backend name -> that backend's options, for the backends it builds."""

    options: dict[str, Any] = field(default_factory=dict)
    target: TargetOptions | None = None  # `target: cpu`: every CPU backend built, the fastest chosen (target stage)

    def of(self, backend: str) -> Any | None:
        """The options of ``backend``, or None when the recipe does not build it."""
        return self.options.get(backend)

    @classmethod
    def parse(cls, raw: Any, path: str) -> "ExportSpec":
        data = mapping(raw, path)
        unknown_keys(data, [*BACKENDS, "target"], path)
        target = _target(data.pop("target", None), join(path, "target"))
        if target is not None:  # every backend the target can choose from, with defaults where not given
            data = {**{name: {} for name in target_backends(target)[0]}, **data}
        options: dict[str, Any] = {}
        for name, backend in BACKENDS.items():
            if name not in data or data[name] is False:
                continue
            where = join(path, name)
            value = {} if data[name] is True else data[name]  # `int8: true` means the defaults
            part = backend.options(**read_fields(backend.options, mapping(value, where), where))
            checked(where, part.validate)
            options[name] = part
        for name in options:
            missing = [source for source in BACKENDS[name].built_from if source not in options]
            if missing:
                raise ConfigError(f"{path}: {built_from_message(missing[0])}")
        if target is not None:
            options = {name: value for name, value in gated_options(options, target).items() if name in options}
        return cls(options, target)

    def to_dict(self) -> dict[str, Any]:
        return {**{name: plain(self.options.get(name)) for name in BACKENDS}, "target": plain(self.target)}


def _target(raw: Any, path: str) -> TargetOptions | None:
    """``target: cpu``, or a mapping of ``TargetOptions`` fields (``{device: cpu, batch_sizes: [1, 32]}``)."""
    if raw is None or raw is False:
        return None
    given = {"device": raw} if isinstance(raw, str) else read_fields(TargetOptions, mapping(raw, path), path)
    target = TargetOptions(**given)
    checked(path, target.validate)
    return target


@dataclass
class ValidationSpec:
    """The ``validate`` section: what the validate stage measures and the gates the report judges."""

    val_limit: int | None = None  # validation images (default: the data section's val_limit, else all)
    batch_sizes: tuple[int, ...] = (1, 32)
    threads: tuple[int, ...] = (2,)
    duration_s: float = 2.0  # timed seconds per backend and (batch, threads) point
    providers: dict[str, str] = field(default_factory=dict)  # ONNX Runtime provider per stage (onnx: cuda)
    gates: dict[str, Any] = field(default_factory=dict)  # as written; parsed into `parsed_gates`
    baseline: str | None = None  # a stored report.json that the baseline gates compare with
    parsed_gates: Gates | None = None

    @classmethod
    def parse(cls, raw: Any, path: str, built: tuple[str, ...]) -> "ValidationSpec":
        data = mapping(raw, path)
        given = read_fields(cls, data, path, exclude=("parsed_gates",), extra=("gates", "providers"))
        gates = mapping(given.pop("gates", None), join(path, "gates"))
        providers = mapping(given.pop("providers", None), join(path, "providers"))
        spec = cls(**given, providers={k: convert(v, str, f"{path}.providers.{k}") for k, v in providers.items()},
                   gates=gates)
        if spec.val_limit is not None and not within(spec.val_limit, 1, MAX_COUNT):
            raise ConfigError(f"{path}.val_limit: must be {span(1, MAX_COUNT)}, got {spec.val_limit}")
        checked(path, LatencyConfig(spec.batch_sizes, spec.threads, spec.duration_s).validate)  # the same bounds
        for stage in providers:
            if stage not in built:
                raise ConfigError(f"{path}.providers.{stage}: this recipe validates {', '.join(built)}")
        spec.parsed_gates = parse_gates(gates, join(path, "gates"))
        if uses_baseline(spec.parsed_gates) and not spec.baseline:
            raise ConfigError(f"{path}.gates: baseline gates need {path}.baseline: the report.json to compare with")
        if isinstance(spec.parsed_gates, Mapping):
            for stage in spec.parsed_gates:
                if stage not in built:
                    close = difflib.get_close_matches(stage, list(VALIDATED), n=1)
                    hint = f"did you mean '{close[0]}'? " if close and close[0] != stage else ""
                    raise ConfigError(f"{path}.gates.{stage}: not a stage this recipe validates ({hint}"
                                      f"it validates {', '.join(built)})")
        # a gate the recipe asks for must be judgeable on what it validates and times
        checked(join(path, "gates"), lambda: check_requested(spec.parsed_gates, list(built), REFERENCE,
                                                             batch_sizes=spec.batch_sizes, threads=spec.threads,
                                                             baseline=bool(spec.baseline)))
        return spec

    def to_dict(self) -> dict[str, Any]:
        return {"val_limit": self.val_limit, "batch_sizes": list(self.batch_sizes), "threads": list(self.threads),
                "duration_s": self.duration_s, "providers": dict(self.providers), "gates": plain(self.gates),
                "baseline": self.baseline}


@dataclass
class ReportSpec:
    """The ``report`` section: how the report (report.md, report.json, report.png) is written."""

    png: bool = True  # also draw report.png (accuracy vs latency, the methods, training curves); needs matplotlib
    title: str | None = None  # the report's heading (default: the recipe's name)
