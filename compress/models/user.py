"""Models from user code, recorded so a checkpoint can rebuild them without running code it names.

A user model is recorded as ``python:module:factory`` with the factory's keyword arguments and the
split; ``factory(**kwargs)`` rebuilds it. Loading a checkpoint never imports a name read from the file:
it rebuilds the model only with a factory the caller allowed (``allow_factories``), which the CLI does
for ``--model-factory module:factory`` and the Python API for its ``model_factory`` argument.

Naming the factory is the user's choice, but its arguments come from the checkpoint, which may be
crafted: ``--model-factory os:system`` would run a recorded string. So a factory must be a class or a
function of the user's own code (not the standard library, not compress), a class must be an
``nn.Module``, what it returns must be one, and a recorded argument may only be a number, a boolean,
None or a short name (``check_factory``, ``check_arguments``).
"""

from __future__ import annotations

import contextlib
import importlib
import inspect
import math
import re
import sys
from typing import Any, Callable, Iterator, Mapping, Union

from torch import nn

from compress.errors import CheckpointError, ConfigError
from compress.models.base import ClassifierModel, ModelSpec
from compress.models.split import SplitArg
from compress.models.wrapped import input_channels, wrap_module

PREFIX = "python:"
Factory = Callable[..., nn.Module]
FactoryArg = Union[str, Factory]

_allowed: dict[str, Factory] = {}  # reference -> factory, filled only inside allow_factories()

PROJECT_PACKAGES = ("compress", "deploy")  # their functions do work of their own, not build a user's model
MAX_NAME_ARGUMENT = 64  # characters: a variant name ("small", "resnet_18"), never a path or a command
MAX_INT_ARGUMENT = 1 << 62
_NAME_ARGUMENT = re.compile(r"[A-Za-z_][A-Za-z0-9_-]*")
ARGUMENT_RULE = ("recorded model arguments may only be numbers, booleans, None and short names (letters, digits, "
                 f"_ and -, at most {MAX_NAME_ARGUMENT} characters)")


def _origin(module: str) -> str | None:
    """Why a factory from ``module`` is refused (the standard library, compress), or None for user code."""
    top = module.split(".")[0]
    if top in sys.stdlib_module_names or top in ("builtins", "_frozen_importlib"):
        return "the Python standard library"
    if top in PROJECT_PACKAGES:
        return f"{top} itself"
    return None


def check_factory(reference: str, factory: Any) -> None:
    """Refuse a factory that is not a class or a plain function of the user's own code (see the module docstring)."""
    fix = "name the function or nn.Module class in your code that builds the model"
    if inspect.isclass(factory):
        if not issubclass(factory, nn.Module):
            raise ConfigError(f"model factory '{reference}' is a class but not an nn.Module: {fix}")
    elif not inspect.isfunction(factory) or factory.__name__ == "<lambda>":
        kind = "lambda" if inspect.isfunction(factory) else type(factory).__name__
        raise ConfigError(f"model factory '{reference}' is a {kind}, not a class or a function defined in a module: "
                          f"{fix}")
    origin = _origin(str(getattr(factory, "__module__", None) or ""))
    if origin is not None:
        raise ConfigError(f"model factory '{reference}' comes from {origin}, which does not build models: {fix}")


def _allowed_argument(value: Any) -> bool:
    if value is None or type(value) is bool:
        return True
    if type(value) is int:
        return abs(value) <= MAX_INT_ARGUMENT
    if type(value) is float:
        return math.isfinite(value)
    return type(value) is str and len(value) <= MAX_NAME_ARGUMENT and _NAME_ARGUMENT.fullmatch(value) is not None


def check_arguments(reference: str, kwargs: Any, error: type[Exception] = ConfigError) -> dict[str, Any]:
    """``kwargs`` if every recorded argument is a number, boolean, None or short name; else ``error`` naming it."""
    if not isinstance(kwargs, Mapping):
        raise error(f"the arguments of model factory '{reference}' are a {type(kwargs).__name__}, not names and "
                    f"values; {ARGUMENT_RULE}")
    for key, value in kwargs.items():
        if not isinstance(key, str) or not key.isidentifier() or len(key) > MAX_NAME_ARGUMENT:
            raise error(f"model factory '{reference}' has an argument named {str(key)[:40]!r}, not a Python name")
        if not _allowed_argument(value):
            raise error(f"model factory argument '{key}' of '{reference}' is a {type(value).__name__} "
                        f"({repr(value)[:40]}), which compress does not pass to code: {ARGUMENT_RULE}")
    return dict(kwargs)


def reference_of(factory: Factory) -> str:
    """``module:qualname``, the name a factory is recorded under."""
    # a partial or another callable object has no qualified name: it is then refused by check_factory
    return f"{getattr(factory, '__module__', None)}:{getattr(factory, '__qualname__', type(factory).__name__)}"


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
        reference, fn = factory, import_factory(factory)
    elif not callable(factory):
        raise ConfigError(f"model factory must be a callable or 'module:function', got {type(factory).__name__}")
    else:
        reference, fn = reference_of(factory), factory
    check_factory(reference, fn)
    return reference, fn


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
    module = fn(**check_arguments(reference, kwargs))
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
    kwargs = check_arguments(reference, spec.kwargs or {}, CheckpointError)  # the file's, possibly crafted
    try:
        module = factory(**kwargs)
    except TypeError as exc:  # the recorded names do not fit the factory's signature
        raise CheckpointError(f"model factory '{reference}' cannot take the checkpoint's arguments "
                              f"({', '.join(kwargs) or 'none'}): {str(exc)[:120]}") from None
    if not isinstance(module, nn.Module):
        raise CheckpointError(f"model factory '{reference}' returned a {type(module).__name__}, not an nn.Module: "
                              "pass the factory that built this checkpoint's model")
    return wrap_module(module, spec, spec.split)


__all__ = ["PREFIX", "allow_factories", "build_user_model", "check_arguments", "check_factory", "import_factory",
           "reference_of", "resolve_factory", "user_model"]
