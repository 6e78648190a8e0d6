"""Typed method settings: ``MethodConfig``, the dataclass every method's config extends, and
``setting()``, the field that carries a setting's one-line doc and the values it accepts.

A setting is written once, as a field of its method's config: validation, the ``compress distill``
options and the recipe keys under ``distill:`` are all derived from the fields (see ``config.py``).
"""

from __future__ import annotations

import math
import types
import typing
from dataclasses import Field, asdict, dataclass, field, fields
from typing import Any

from compress.errors import ConfigError
from compress.registry import Registry


@dataclass(frozen=True)
class Rule:
    """What a setting means and accepts; kept in its field's metadata."""

    doc: str  # one line: the CLI option's help and the recipe key's meaning
    low: float | None = None  # numbers: the smallest value allowed
    high: float | None = None  # numbers: the largest value allowed
    above: bool = False  # numbers: ``low`` itself is not allowed (> low)
    choices: tuple[str, ...] = ()  # text: the values allowed
    names: Registry[Any] | None = None  # text: a registry whose names it takes (aliases resolve to canonical)
    # Not a CLI option: unless set explicitly, the value of this training setting (compress.train.TrainConfig).
    follows: str | None = None


def setting(default: Any, doc: str, **rule: Any) -> Any:
    """A config field with its rule, e.g. ``w: float = setting(1.0, "anchor weight", low=0.0)``."""
    return field(default=default, metadata={"rule": Rule(doc, **rule)})


def rule_of(f: Field[Any]) -> Rule:
    rule = f.metadata.get("rule")
    if not isinstance(rule, Rule):
        raise TypeError(f"config field '{f.name}' is not declared with setting(default, doc, ...)")
    return rule


def bare_type(hint: Any) -> Any:
    """``float`` for ``float | None``; the hint itself otherwise."""
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        if len(args) == 1:
            return args[0]
    return hint


def _bounds(rule: Rule) -> str:
    low = "" if rule.low is None else (f"> {rule.low}" if rule.above else f">= {rule.low}")
    high = "" if rule.high is None else f"<= {rule.high}"
    return " " + " and ".join(b for b in (low, high) if b) if low or high else ""


def checked_value(name: str, value: Any, hint: Any, rule: Rule) -> Any:
    """``value`` if the field ``name`` accepts it (registry names made canonical), else a ConfigError."""
    kind = bare_type(hint)
    if value is None and kind is not hint:  # an optional setting left unset
        return None
    if kind is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"distill setting '{name}' must be true or false, got {value!r}")
        return value
    if kind is str:
        if rule.choices and value not in rule.choices:
            raise ConfigError(f"distill setting '{name}' must be one of {', '.join(rule.choices)}; got {value!r}")
        if not isinstance(value, str):
            what = f"a {rule.names.kind} name" if rule.names is not None else "text"
            raise ConfigError(f"distill setting '{name}' must be {what}, got {value!r}")
        return value if rule.names is None else rule.names.canonical(value)
    if kind not in (int, float):
        raise TypeError(f"setting '{name}' has type {hint}: settings are bool, int, float or str (or None)")
    whole = kind is int
    number = not isinstance(value, bool) and (
        isinstance(value, int) if whole else isinstance(value, (int, float)) and math.isfinite(value))
    if not number or not _within(value, rule):
        what = "a whole number" if whole else "a number"
        raise ConfigError(f"distill setting '{name}' must be {what}{_bounds(rule)}, got {value!r}")
    return value


def _within(value: float, rule: Rule) -> bool:
    if rule.low is not None and (value < rule.low or (rule.above and value == rule.low)):
        return False
    return rule.high is None or value <= rule.high


@dataclass
class MethodConfig:
    """Base of every method's settings: each field is a ``setting()``, checked against its type and
    rule when the config is built (the error names the field)."""

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        hints = typing.get_type_hints(type(self))
        for f in fields(self):
            setattr(self, f.name, checked_value(f.name, getattr(self, f.name), hints[f.name], rule_of(f)))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def setting_fields(config_class: type[MethodConfig]) -> dict[str, tuple[Any, Rule, Any]]:
    """Name -> (type hint, rule, default) of every setting of ``config_class``, in field order."""
    hints = typing.get_type_hints(config_class)
    return {f.name: (hints[f.name], rule_of(f), f.default) for f in fields(config_class)}


__all__ = ["MethodConfig", "Rule", "bare_type", "checked_value", "rule_of", "setting", "setting_fields"]
