"""Reading a recipe's values: typed fields of dataclasses, with errors that name their dotted path.

An unknown key gets the closest valid key ("did you mean"), a value of the wrong type says what was
expected. Values are only ever converted to plain types, never turned into Python code or imports.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import re
import types
import typing
from dataclasses import fields
from typing import Any, Callable, Mapping, TypeVar

from compress.bounds import shown
from compress.errors import ConfigError

T = TypeVar("T")

MAX_INT = 2**63 - 1  # the largest whole number a recipe may hold
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")  # what may become a folder name


def unknown_keys(raw: Mapping[str, Any], known: list[str], path: str) -> None:
    for key in raw:
        if key not in known:
            close = difflib.get_close_matches(str(key), known, n=1, cutoff=0.6)
            hint = f"did you mean '{close[0]}'?" if close else f"valid keys: {', '.join(known)}"
            raise ConfigError(f"{join(path, str(key))}: unknown key ({hint})")


def join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def mapping(value: Any, path: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ConfigError(f"{path}: expected a mapping (key: value lines), got {kind_of(value)}")
    return dict(value)


def kind_of(value: Any) -> str:
    """What a YAML value is, in words: ``text 'two'``, ``a list``, ``true``."""
    if value is None:
        return "nothing (null)"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, (list, tuple)):
        return "a list"
    if isinstance(value, Mapping):
        return "a mapping"
    if isinstance(value, int) and value.bit_length() > 64:
        return shown(value)  # "a 25-digit number"
    names = {int: "a whole number", float: "a number", str: "text"}
    return f"{names.get(type(value), type(value).__name__)} {shown(value)}"


def describe_type(hint: Any) -> str:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        return " or ".join("null" if a is type(None) else describe_type(a) for a in args)
    if origin is tuple:
        if len(args) == 2 and args[1] is Ellipsis:
            return f"a list of {describe_type(args[0])}s"
        return f"a list of {len(args)} {describe_type(args[0])}s"
    if origin is list:
        return f"a list of {describe_type(args[0])}s"
    return {bool: "true/false", int: "whole number", float: "number", str: "text"}.get(hint, str(hint))


def convert(value: Any, hint: Any, path: str) -> Any:
    """``value`` as type ``hint`` (bool, int, float, str, X | None, tuple[...], list[...]), or a ConfigError."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        for arg in (a for a in args if a is not type(None)):
            try:
                return convert(value, arg, path)
            except ConfigError:
                continue
        raise ConfigError(f"{path}: expected {describe_type(hint)}, got {kind_of(value)}")
    if origin in (tuple, list):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{path}: expected {describe_type(hint)}, got {kind_of(value)}")
        if origin is tuple and not (len(args) == 2 and args[1] is Ellipsis):
            if len(value) != len(args):
                raise ConfigError(f"{path}: expected {describe_type(hint)}, got {len(value)} values")
            return tuple(convert(v, a, f"{path}[{i}]") for i, (v, a) in enumerate(zip(value, args)))
        items = [convert(v, args[0], f"{path}[{i}]") for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    ok = False
    if hint is bool:
        ok = isinstance(value, bool)
    elif hint is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif hint is float:
        if isinstance(value, str):
            # YAML 1.1 reads "5e-4" (no dot) as text; accept what is unambiguously a number
            try:
                value = float(value)
            except ValueError:
                pass
        ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
        value = float(value) if ok else value
    elif hint is str:
        ok = isinstance(value, str)
    if not ok:
        raise ConfigError(f"{path}: expected {describe_type(hint)}, got {kind_of(value)}")
    if hint is int and not -MAX_INT <= value <= MAX_INT:  # no setting means more; numpy and torch overflow beyond
        raise ConfigError(f"{path}: {shown(value)} is far too large for any setting")
    return value


def read_fields(cls: type, raw: Mapping[str, Any], path: str, exclude: tuple[str, ...] = (),
                extra: tuple[str, ...] = ()) -> dict[str, Any]:
    """The keys of ``raw`` that are fields of dataclass ``cls``, converted to their declared types.

    ``extra`` keys are allowed but left to the caller (returned unconverted)."""
    hints = typing.get_type_hints(cls)
    known = [f.name for f in fields(cls) if f.name not in exclude]
    unknown_keys(raw, known + list(extra), path)
    return {key: (value if key in extra else convert(value, hints[key], join(path, key))) for key, value in raw.items()}


def checked(path: str, build: Callable[[], T]) -> T:
    """Run a config's own validation and prefix its message with the recipe path."""
    try:
        return build()
    except ConfigError as exc:
        raise type(exc)(f"{path}: {exc}") from None


def plain(obj: Any) -> Any:
    """A JSON-ready copy (dataclasses -> dicts, tuples -> lists): what stage hashes are taken of."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: plain(getattr(obj, f.name)) for f in fields(obj)}
    if isinstance(obj, Mapping):
        return {str(k): plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [plain(v) for v in obj]
    return obj
