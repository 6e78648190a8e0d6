"""``validate_artifacts``: the one call behind ``compress validate`` and the pipeline's validate stage.

Every artifact (a PyTorch checkpoint, an ONNX model, a TensorRT engine) is opened as a backend, run
over the same validation batches (accuracy, agreement with the reference) and timed in the same
interleaved benchmark as the reference (speed-ups are ratios from one run). Stages the machine cannot
run are recorded as skipped with the reason. Gates are judged but not raised here: the caller writes
the report first, then calls ``check_gates(result.gates)``.
"""

from __future__ import annotations

import dataclasses
import difflib
import os
from pathlib import Path
from typing import Any, Mapping, Sequence

import torch

from compress.data import DataConfig, load_data
from compress.errors import ConfigError, DeviceError
from compress.export.backends import backend_for_file
from compress.validate.accuracy import evaluate_backends
from compress.validate.backends import Backend, RunnerFactory, StageSkipped, deploy_load, open_backend
from compress.validate.gates import Gates, check_requested, gates_by_stage
from compress.validate.verdicts import evaluate_gates
from compress.validate.latency import LatencyConfig, benchmark, environment_record, speedups
from compress.validate.results import StageResult, ValidationResult

_PRE_TOLERANCE = 1e-4


def _check_preprocessing(stage: str, record: Mapping[str, Any] | None, expected: Mapping[str, Any]) -> None:
    """Refuse a model whose recorded preprocessing differs from the data's: its numbers would be wrong."""
    if not record:
        return
    for key in ("image_size", "channels"):
        if key in record and record[key] is not None and int(record[key]) != int(expected[key]):
            raise ConfigError(f"stage '{stage}' expects {key} {record[key]} but the data gives {expected[key]}: "
                              "validate it on the data it was trained for")
    for key in ("mean", "std"):
        if key in record and record[key] is not None:
            have, want = [float(v) for v in record[key]], [float(v) for v in expected[key]]
            if len(have) != len(want) or any(abs(a - b) > _PRE_TOLERANCE for a, b in zip(have, want)):
                raise ConfigError(f"stage '{stage}' was built with {key} {have} but the data uses {want}: "
                                  "validate it on the data it was trained for")


def artifact_names(paths: Sequence[Path], reference: Path | None = None) -> tuple[dict[str, Path], str]:
    """Names for artifacts given as files (``compress validate``): their export backend's name (``onnx``,
    ``int8``, ``tensorrt``), "pytorch" for a checkpoint, else the file's; a repeated name gets a number.
    Returns (name -> path, the reference's name: ``reference``, else the first checkpoint, else the first)."""
    names: dict[str, Path] = {}
    for path in list(paths) + ([reference] if reference is not None and reference not in paths else []):
        backend = backend_for_file(path)
        name = "pytorch" if path.suffix == ".safetensors" else backend.name if backend is not None else path.stem
        base, i = name, 2
        while name in names:
            name, i = f"{base}{i}", i + 1
        names[name] = path
    if reference is not None:
        return names, next(n for n, p in names.items() if p == reference)
    return names, next((n for n, p in names.items() if p.suffix == ".safetensors"), next(iter(names)))


def _check_names(artifacts: Mapping[str, Any], reference: str, providers: Mapping[str, str],
                 gates: Gates | None) -> None:
    """Every stage named in the arguments exists: a typo fails before minutes of work."""
    if not artifacts:
        raise ConfigError("nothing to validate: pass at least one artifact")
    names = list(artifacts)
    if reference not in artifacts:
        close = difflib.get_close_matches(reference, names, n=1)
        hint = f"did you mean '{close[0]}'? " if close else ""
        raise ConfigError(f"reference stage '{reference}' is not among the artifacts: {hint}"
                          f"stages are {', '.join(names)}")
    for name in providers:
        if name not in artifacts:
            raise ConfigError(f"provider given for unknown stage '{name}': stages are {', '.join(names)}")
    gates_by_stage(gates, names, reference)


def _open_stages(artifacts: Mapping[str, str | os.PathLike[str]], opened: dict[str, Any], expected: Mapping[str, Any],
                 providers: Mapping[str, str], trust: bool,
                 load: RunnerFactory) -> tuple[list[Backend], dict[str, StageResult]]:
    """Open every artifact (``opened`` has those already open): the backends to run, and a result per stage
    (a stage this machine cannot run is recorded as skipped)."""
    backends: list[Backend] = []
    stages: dict[str, StageResult] = {}
    for name, given in artifacts.items():
        path = Path(given)
        provider = providers.get(name, "cpu")
        try:
            backend, info, pre = opened.get(name) or open_backend(name, path, provider=provider, trust=trust, load=load)
        except StageSkipped as exc:
            stages[name] = StageResult(name, str(path), "", provider, status="skipped", reason=str(exc),
                                       size_bytes=path.stat().st_size if path.is_file() else None)
            continue
        _check_preprocessing(name, pre, expected)
        backends.append(backend)
        stages[name] = StageResult(name, info.path, backend.engine, provider if backend.engine == "onnxruntime" else
                                   ("cuda" if backend.engine == "tensorrt" else "cpu"),
                                   size_bytes=info.size_bytes, parameters=info.parameters)
    return backends, stages


def _measure_latency(backends: list[Backend], stages: dict[str, StageResult], bundle: Any, cfg: LatencyConfig,
                     reference: str) -> None:
    """Time every backend in one interleaved run; speed-ups are against the reference, from that same run."""
    shape = (bundle.preprocessing.channels, bundle.preprocessing.image_size, bundle.preprocessing.image_size)
    torch_threads = torch.get_num_threads()
    try:
        timings = benchmark(backends, shape, cfg)
    finally:  # the PyTorch backend sets the process-wide pool; give the caller theirs back
        torch.set_num_threads(torch_threads)
    for name, stats in timings.items():
        stages[name].latency = stats
        stages[name].speedups = speedups(stats, timings[reference])


def validate_artifacts(
    artifacts: Mapping[str, str | os.PathLike[str]],
    data: DataConfig,
    reference: str,
    batch_sizes: Sequence[int] = (1, 32),
    threads: Sequence[int] = (2,),
    duration_s: float = 2.0,
    gates: Gates | None = None,
    trust: bool = False,
    *,
    providers: Mapping[str, str] | None = None,
    latency: LatencyConfig | None = None,
    measure_latency: bool = True,
    load: RunnerFactory = deploy_load,
    baseline: ValidationResult | None = None,
) -> ValidationResult:
    """Validate ``artifacts`` (stage name -> path) against the stage named ``reference``.

    ``providers`` picks the ONNX Runtime execution provider per ONNX stage ("cpu" by default).
    ``latency`` overrides the timing settings (``batch_sizes``/``threads``/``duration_s`` fill it otherwise).
    ``baseline``: a stored result that the baseline gates compare with (``verdicts.evaluate_gates``).
    """
    providers = dict(providers or {})
    _check_names(artifacts, reference, providers, gates)
    cfg = latency or LatencyConfig(batch_sizes=tuple(batch_sizes), threads=tuple(threads), duration_s=duration_s)
    cfg.validate()
    # a gate asked for is judged, or refused now: never a run that "passes" with the gate skipped
    check_requested(gates, list(artifacts), reference, batch_sizes=cfg.batch_sizes, threads=cfg.threads,
                    latency=measure_latency, baseline=baseline is not None)

    # The reference first: it must run here, and it fixes the input channels when the data does not.
    try:
        opened = open_backend(reference, artifacts[reference], provider=providers.get(reference, "cpu"), trust=trust,
                              load=load)
    except StageSkipped as exc:
        raise DeviceError(f"reference stage '{reference}' cannot run here: {exc}") from None
    ref_pre = opened[2]
    if ref_pre:
        data = data.for_model(ref_pre)
    bundle = load_data(data)
    expected = bundle.preprocessing.to_dict()
    backends, stages = _open_stages(artifacts, {reference: opened}, expected, providers, trust, load)

    judged_on = bundle.final  # the test split, also when the data holds a validation split out of training
    for name, acc in evaluate_backends(backends, judged_on, reference).items():
        stages[name].accuracy = acc
    if measure_latency:
        _measure_latency(backends, stages, bundle, cfg, reference)
    result = ValidationResult(
        reference=reference,
        stages=stages,
        environment=environment_record().to_dict(),
        data={"name": bundle.info.name, "samples": judged_on.num_samples, "num_classes": bundle.num_classes,
              "preprocessing": expected, **({"shift": data.shift, "shift_seed": data.shift_seed} if data.shift else {})},
        # lists, not tuples: the record reads back from JSON unchanged
        latency_config={k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(cfg).items()}
        if measure_latency else {},
    )
    result.gates = evaluate_gates(result, gates, baseline)
    return result
