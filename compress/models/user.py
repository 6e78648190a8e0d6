"""Models from user code, recorded so a checkpoint can rebuild them without running code it names.

A user model is recorded as ``python:module:factory`` with the factory's keyword arguments and the
split; ``factory(**kwargs)`` rebuilds it. Loading a checkpoint never imports a name read from the file:
it rebuilds the model only with a factory the caller allowed (``allow_factories``), which the CLI does
for ``--model-factory module:factory`` and the Python API for its ``model_factory`` argument.
"""

from __future__ import annotations

import contextlib
import importlib
from typing import Any, Callable, Iterator, Union

from torch import nn

from compress.errors import CheckpointError, ConfigError
from compress.models.base import ClassifierModel, ModelSpec
from compress.models.split import SplitArg
from compress.models.wrapped import input_channels, wrap_module

PREFIX = "python:"
Factory = Callable[..., nn.Module]
FactoryArg = Union[str, Factory]

_allowed: dict[str, Factory] = {}  # reference -> factory, filled only inside allow_factories()


def reference_of(factory: Factory) -> str:
    """``module:qualname``, the name a factory is recorded under."""
    return f"{factory.__module__}:{factory.__qualname__}"


def import_factory(reference: str) -> Factory:
    """Import ``module:factory`` (a name the user typed, never one read from a file)."""
    module_name, _, attr = reference.partition(":")
    if not module_name or not attr:
        raise ConfigError(f"model factory '{reference}' must look like package.module:function")
    try:
        target: Any = importlib.import_module(module_name)
        for part in attr.split("."):
            target = getattr(target, part)
    except (ImportError, AttributeError) as exc:
        raise ConfigError(f"cannot import model factory '{reference}' ({exc}): check the name and that its "
                          "package is importable (PYTHONPATH)") from None
    if not callable(target):
        raise ConfigError(f"model factory '{reference}' is a {type(target).__name__}, not a callable")
    return target  # type: ignore[no-any-return]


def resolve_factory(factory: FactoryArg) -> tuple[str, Factory]:
    """A factory given as a callable or a ``module:factory`` string, with its recorded reference."""
    if isinstance(factory, str):
        return factory, import_factory(factory)
    if not callable(factory):
        raise ConfigError(f"model factory must be a callable or 'module:function', got {type(factory).__name__}")
    return reference_of(factory), factory


@contextlib.contextmanager
def allow_factories(factories: list[FactoryArg]) -> Iterator[None]:
    """Within the block, checkpoints of models recorded under these factories' references can be rebuilt."""
    added = []
    for factory in factories:
        reference, fn = resolve_factory(factory)
        if reference not in _allowed:
            _allowed[reference] = fn
            added.append(reference)
    try:
        yield
    finally:
        for reference in added:
            _allowed.pop(reference, None)


def user_model(factory: FactoryArg, split: SplitArg = None, **kwargs: Any) -> ClassifierModel:
    """``factory(**kwargs)`` as a ``ClassifierModel`` that checkpoints can rebuild.

    ``split`` as a module name is recorded; a pair of callables cannot be, so such a model trains but a
    checkpoint of it cannot be rebuilt (give a module name to export it).
    """
    reference, fn = resolve_factory(factory)
    module = fn(**kwargs)
    if not isinstance(module, nn.Module):
        raise ConfigError(f"model factory '{reference}' returned a {type(module).__name__}, not an nn.Module")
    classifier = [m for m in module.modules() if isinstance(m, nn.Linear)]
    classes = classifier[-1].out_features if classifier else 0
    spec = ModelSpec(PREFIX + reference, classes, input_channels(module), kwargs=dict(kwargs),
                     split=split if isinstance(split, str) else None)
    model = wrap_module(module, spec, split)
    model.factory = fn  # lets this process rebuild checkpoints of it (see allow_factories)
    if split is not None and not isinstance(split, str):
        model.unrecordable = "its split was given as callables: pass split='module_name' to save and rebuild it"
    return model


def build_user_model(spec: ModelSpec) -> ClassifierModel:
    """Rebuild a recorded user model with a factory the caller allowed (see the module docstring)."""
    reference = spec.name[len(PREFIX):]
    factory = _allowed.get(reference)
    if factory is None:
        raise CheckpointError(f"this checkpoint's model comes from user code '{reference}', which compress never "
                              f"imports on its own: pass --model-factory {reference} (CLI) or model_factory=... "
                              "(Python) to rebuild it with that code")
    return wrap_module(factory(**(spec.kwargs or {})), spec, spec.split)


__all__ = ["PREFIX", "allow_factories", "build_user_model", "import_factory", "reference_of", "resolve_factory",
           "user_model"]
