"""Type checks of the Python API's arguments, before any work: a wrong type is a ``ConfigError`` that names
the argument, what it must be and what was given (``epochs must be an int, got str '1'``), not an
AttributeError from deep inside, or a range message that hides the type (``got '1'``).

Values are checked further (ranges, names) where they are used; only their types are checked here.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping, Sequence
from typing import Any

from compress.errors import ConfigError

_MODEL = "a model name, a checkpoint path or an nn.Module"
_SIMPLE = {"int": ("an int", (int,)), "float": ("a number", (int, float)), "bool": ("a bool (True or False)", (bool,)),
           "str": ("a str", (str,))}


def _given(value: Any) -> str:
    return "None" if value is None else f"{type(value).__name__} {repr(value)[:40]}"


def _is(value: Any, types: tuple[type, ...]) -> bool:
    if isinstance(value, bool) and bool not in types:  # True is an int to Python, not an epoch count
        return False
    return isinstance(value, types)


def _expect(name: str, value: Any, what: str, types: tuple[type, ...]) -> None:
    if not _is(value, types):
        raise ConfigError(f"{name} must be {what}, got {_given(value)}")


MAX_PATH_BYTES, MAX_NAME_BYTES = 4096, 255  # Linux's PATH_MAX and NAME_MAX


def _paths(name: str, value: Any, optional: bool = False) -> None:
    if optional and value is None:
        return
    _expect(name, value, "a path (str or pathlib.Path)" + (" or None" if optional else ""), (str, os.PathLike))
    try:
        raw = os.fsencode(value)
    except (TypeError, UnicodeEncodeError):
        raise ConfigError(f"{name} must be a path, got {_given(value)}") from None
    if len(raw) > MAX_PATH_BYTES or any(len(part) > MAX_NAME_BYTES for part in raw.split(b"/")):
        raise ConfigError(f"{name} is a path of {len(raw)} bytes, longer than a file system allows: "
                          f"{raw[:60].decode(errors='replace')}...")


def _list(name: str, value: Any, items: str, item: str, types: tuple[type, ...]) -> None:
    """A list/tuple (not one str) of ``items``, each ``item`` (of ``types``)."""
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence):
        raise ConfigError(f"{name} must be a list of {items}, got {_given(value)}")
    for i, entry in enumerate(value):
        _expect(f"{name}[{i}]", entry, item, types)


def _model_types() -> tuple[type, ...]:
    from torch import nn  # imported on use: this module is imported with compress.api, torch is not

    return (str, os.PathLike, nn.Module)


def _settings(settings: Mapping[str, Any], *configs: type) -> None:
    """``**settings`` whose field in one of ``configs`` has a plain type (int, float, bool, str, maybe None)."""
    types = {f.name: str(f.type) for config in configs for f in dataclasses.fields(config)}
    for key, value in settings.items():
        annotation = types.get(key, "")
        optional = annotation.endswith(" | None")
        simple = _SIMPLE.get(annotation.removesuffix(" | None"))
        if simple is None or (optional and value is None):
            continue
        what, allowed = simple
        _expect(key, value, what + (" or None" if optional else ""), allowed)


def check_distill(student: Any, teachers: Any, method: Any, out: Any, teacher_weights: Any, preset: Any,
                  settings: Mapping[str, Any]) -> None:
    from compress.data import DataConfig
    from compress.train import TrainConfig

    _expect("student", student, _MODEL, _model_types())
    _list("teachers", teachers, "model names, checkpoint paths or nn.Modules", _MODEL, _model_types())
    _expect("method", method, "a str (atsc, simkd, kd, none)", (str,))
    _paths("out", out)
    _list("teacher_weights", teacher_weights, "str", "a str", (str,))
    if preset is not None:
        _expect("preset", preset, "a str or None", (str,))
    _settings(settings, TrainConfig, DataConfig)


def check_factories(model_factory: Any) -> None:
    """None, a factory (a callable or 'module:function') or a list of them; what each may be, model() checks."""
    entries = model_factory if isinstance(model_factory, (list, tuple)) else [model_factory]
    for entry in entries:
        if entry is not None and not isinstance(entry, str) and not callable(entry):
            raise ConfigError(f"model_factory must be a callable, a 'module:function' str or a list of them, "
                              f"got {_given(entry)}")


def check_export(checkpoint: Any, out: Any, build: Any, options: Any, target: Any = None,
                 model_factory: Any = None) -> None:
    from compress.export.target import TargetOptions

    _paths("checkpoint", checkpoint)
    if target is not None and not isinstance(target, TargetOptions):
        raise ConfigError(f"target must be a compress.export.target.TargetOptions or None, got {_given(target)}")
    check_factories(model_factory)
    _paths("out", out, optional=True)
    _list("build", build, "backend names (str)", "a backend name (str)", (str,))
    if options is not None and not isinstance(options, Mapping):
        raise ConfigError(f"options must be a dict of backend options or None, got {_given(options)}")


def check_validate(artifacts: Any, reference: Any, batch_sizes: Any, threads: Any, duration_s: Any,
                   model_factory: Any = None, gates: Any = None, providers: Any = None) -> None:
    from compress.validate.gates import GateSpec

    check_factories(model_factory)
    if gates is not None and not isinstance(gates, GateSpec) and not (
            isinstance(gates, Mapping) and all(isinstance(v, GateSpec) for v in gates.values())):
        raise ConfigError(f"gates must be a GateSpec, a dict of stage name -> GateSpec or None, got {_given(gates)}")
    if providers is not None and not (isinstance(providers, Mapping) and all(
            isinstance(k, str) and isinstance(v, str) for k, v in providers.items())):
        raise ConfigError(f"providers must be a dict of stage name -> provider (str) or None, got {_given(providers)}")
    if not isinstance(artifacts, Mapping):
        raise ConfigError(f"artifacts must be a dict of stage name -> path, got {_given(artifacts)}")
    for name, path in artifacts.items():
        _expect("artifact name", name, "a str", (str,))
        _paths(f"artifacts[{name!r}]", path)
    if reference is not None:
        _expect("reference", reference, "a stage name (str) or None", (str,))
    _list("batch_sizes", batch_sizes, "ints", "an int", (int,))
    _list("threads", threads, "ints", "an int", (int,))
    _expect("duration_s", duration_s, "a number", (int, float))


__all__ = ["check_distill", "check_export", "check_factories", "check_validate"]
