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
from compress.validate.accuracy import evaluate_backends
from compress.validate.backends import Backend, RunnerFactory, StageSkipped, deploy_load, open_backend
from compress.validate.gates import Gates, evaluate_gates, gates_by_stage
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
) -> ValidationResult:
    """Validate ``artifacts`` (stage name -> path) against the stage named ``reference``.

    ``providers`` picks the ONNX Runtime execution provider per ONNX stage ("cpu" by default).
    ``latency`` overrides the timing settings (``batch_sizes``/``threads``/``duration_s`` fill it otherwise).
    """
    if not artifacts:
        raise ConfigError("nothing to validate: pass at least one artifact")
    names = list(artifacts)
    if reference not in artifacts:
        close = difflib.get_close_matches(reference, names, n=1)
        hint = f"did you mean '{close[0]}'? " if close else ""
        raise ConfigError(f"reference stage '{reference}' is not among the artifacts: {hint}stages are {', '.join(names)}")
    providers = dict(providers or {})
    for name in providers:
        if name not in artifacts:
            raise ConfigError(f"provider given for unknown stage '{name}': stages are {', '.join(names)}")
    gates_by_stage(gates, names, reference)  # a typo in a gate's stage fails before minutes of work
    cfg = latency or LatencyConfig(batch_sizes=tuple(batch_sizes), threads=tuple(threads), duration_s=duration_s)
    cfg.validate()

    # The reference first: it must run here, and it fixes the input channels when the data does not.
    try:
        ref_backend, ref_info, ref_pre = open_backend(reference, artifacts[reference],
                                                      provider=providers.get(reference, "cpu"), trust=trust, load=load)
    except StageSkipped as exc:
        raise DeviceError(f"reference stage '{reference}' cannot run here: {exc}") from None
    if data.channels is None and ref_pre and ref_pre.get("channels"):
        data = dataclasses.replace(data, channels=int(ref_pre["channels"]))
    bundle = load_data(data)
    expected = bundle.preprocessing.to_dict()

    backends: list[Backend] = []
    stages: dict[str, StageResult] = {}
    for name in names:
        path = Path(artifacts[name])
        provider = providers.get(name, "cpu")
        if name == reference:
            backend, info, pre = ref_backend, ref_info, ref_pre
        else:
            try:
                backend, info, pre = open_backend(name, path, provider=provider, trust=trust, load=load)
            except StageSkipped as exc:
                stages[name] = StageResult(name, str(path), "", provider, status="skipped", reason=str(exc),
                                           size_bytes=path.stat().st_size if path.is_file() else None)
                continue
        _check_preprocessing(name, pre, expected)
        backends.append(backend)
        stages[name] = StageResult(name, info.path, backend.engine, provider if backend.engine == "onnxruntime" else
                                   ("cuda" if backend.engine == "tensorrt" else "cpu"),
                                   size_bytes=info.size_bytes, parameters=info.parameters)

    for name, acc in evaluate_backends(backends, bundle.val, reference).items():
        stages[name].accuracy = acc
    if measure_latency:
        shape = (bundle.preprocessing.channels, bundle.preprocessing.image_size, bundle.preprocessing.image_size)
        torch_threads = torch.get_num_threads()
        try:
            timings = benchmark(backends, shape, cfg)
        finally:  # the PyTorch backend sets the process-wide pool; give the caller theirs back
            torch.set_num_threads(torch_threads)
        for name, stats in timings.items():
            stages[name].latency = stats
            stages[name].speedups = speedups(stats, timings[reference])

    result = ValidationResult(
        reference=reference,
        stages=stages,
        environment=environment_record().to_dict(),
        data={"name": bundle.info.name, "samples": bundle.val.num_samples, "preprocessing": expected},
        # lists, not tuples: the record reads back from JSON unchanged
        latency_config={k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(cfg).items()}
        if measure_latency else {},
    )
    result.gates = evaluate_gates(result, gates)
    return result
