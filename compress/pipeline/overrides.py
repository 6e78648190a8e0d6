"""``compress run RECIPE --set distill.train.epochs=4``: a recipe key changed from the command line.

An override is applied to the recipe's raw mapping before it is parsed, so its value goes through the
same validation as the file's and a mistake names the key path as it would in the file (an unknown key
gets "did you mean"). The value is read as YAML, a scalar or a flow collection: ``epochs=4`` is a
number, ``batch_sizes=[1,8]`` a list, ``onnx={exporter: torchscript}`` a mapping, ``val_limit=null``
nothing; quote text that would read as something else (``name='007'``).

Keys are dotted paths with list indexes as the error messages write them: ``teachers[0].train.epochs``.
"""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

from compress.bounds import shown
from compress.errors import ConfigError, UsageError
from compress.pipeline.fields import join, kind_of
from compress.pipeline.yaml_io import parse_yaml, shorten

_PART = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*)((?:\[\d+\])*)$")  # "teachers[0]", "epochs"
_EXAMPLE = "e.g. --set distill.train.epochs=4"
MAX_VALUE_CHARS = 16_384  # characters of one --set value: a recipe value is a word, a number or a short list


@dataclass(frozen=True)
class Override:
    """One ``--set KEY=VALUE``: the key's path (names and list indexes) and the value read as YAML."""

    text: str  # as given, for messages
    key: str  # the dotted path, as the error messages write it
    steps: tuple[str | int, ...]  # mapping keys and list indexes, from the top of the recipe
    value: Any

    @classmethod
    def parse(cls, text: str) -> "Override":
        key, equals, value_text = text.partition("=")
        key = key.strip()
        if not equals or not key:  # the command line itself is wrong: a usage error, as for click's own
            raise UsageError(shorten(f"--set '{text}': expected KEY=VALUE, {_EXAMPLE}"))
        if len(value_text) > MAX_VALUE_CHARS:  # not quoted back: a recipe value is a word, a number or a short list
            raise ConfigError(f"--set {shown(key, 80)}: a value of {len(value_text):,} characters, more than the "
                              f"{MAX_VALUE_CHARS:,} a setting needs; put long values in the recipe file")
        steps: list[str | int] = []
        for part in key.split("."):
            match = _PART.match(part)
            if match is None:
                raise ConfigError(shorten(f"--set '{text}': '{key}' is not a key path: names joined by '.', list "
                                          "items as [N], e.g. distill.train.epochs or teachers[0].train.epochs"))
            steps.append(match.group(1))
            steps += [int(index) for index in re.findall(r"\[(\d+)\]", match.group(2))]
        # the parser and limits of a recipe file: depth, digits, finite numbers, duplicate keys
        value = parse_yaml(value_text, f"--set {key}", lines=False)
        return cls(text, key, tuple(steps), value)

    def covers(self, path: str) -> bool:
        """Whether an error at ``path`` (e.g. ``distill.train``) concerns this key: one is inside the other."""
        return any(a == b or a.startswith(b + ".") or a.startswith(b + "[") for a, b in ((self.key, path),
                                                                                           (path, self.key)))


def _child(node: Any, step: str | int, where: str, override: Override) -> Any:
    """The value under ``step`` of ``node`` (at recipe path ``where``), made a mapping when it is missing."""
    if isinstance(step, int):
        if not isinstance(node, list):
            raise ConfigError(f"--set {override.key}: '{where}' is {kind_of(node)}, not a list: drop [{step}]")
        if step >= len(node):
            raise ConfigError(f"--set {override.key}: '{where}' has {len(node)} item(s), the last is "
                              f"{where}[{len(node) - 1}]" if node else f"--set {override.key}: '{where}' is empty")
        return node[step]
    if isinstance(node, list):
        raise ConfigError(f"--set {override.key}: '{where}' is a list: name an item, e.g. {where}[0].{step}")
    if not isinstance(node, dict):
        raise ConfigError(f"--set {override.key}: '{where}' is {kind_of(node)}, not a mapping: set '{where}' "
                          "itself, e.g. --set " + where + "={key: value}")
    if node.get(step) is None:  # absent or empty (`report:`): the sections' keys are all optional
        node[step] = {}
    return node[step]


def _apply(raw: dict[str, Any], override: Override) -> None:
    node: Any = raw
    where = ""
    for step in override.steps[:-1]:
        node = _child(node, step, where, override)
        where = f"{where}[{step}]" if isinstance(step, int) else join(where, step)
    last = override.steps[-1]
    if isinstance(last, int) or not isinstance(node, dict):
        _child(node, last, where, override)  # a list item must exist; a key needs a mapping (raises otherwise)
    node[last] = copy.deepcopy(override.value)


def apply_overrides(raw: Any, overrides: Sequence[Override]) -> Any:
    """A copy of the recipe's parsed YAML with every override applied, in order (the last one wins)."""
    if not overrides:
        return raw
    if raw is None:
        raw = {}
    if not isinstance(raw, Mapping):
        return raw  # the parser says what the recipe should be
    changed = copy.deepcopy(dict(raw))
    for override in overrides:
        _apply(changed, override)
    return changed


def parse_overrides(texts: Sequence[str]) -> list[Override]:
    return [Override.parse(text) for text in texts]


__all__ = ["Override", "apply_overrides", "parse_overrides"]
