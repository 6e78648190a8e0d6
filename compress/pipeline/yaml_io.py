"""A recipe file as plain data: YAML read strictly, every problem one line naming the file and line.

``yaml.safe_load`` alone keeps the last of two equal keys (a corrected typo silently loses to the old
line), recurses once per nesting level (3,000 ``[`` end in a RecursionError), raises a bare ValueError
on a 5,000-digit number, expands aliases without limit ("billion laughs") and takes whatever bytes it
is given. Here a recipe is refused unless:

- it is a regular file (``compress.structured.read_bytes``: a FIFO is refused, not waited on) of at most
  1 MiB of UTF-8 (a byte-order mark is fine), or UTF-16/32 with a byte-order mark;
- it nests at most 32 levels, counting what aliases expand to, and expands to at most 100,000 values;
- each key appears once per mapping (merge keys, ``<<: *defaults``, still override as YAML says);
- each whole number has at most 30 digits (``.inf`` and ``.nan`` are left to each setting's range check,
  which names the key).

The same parser reads a ``compress run --set`` value (``parse_yaml``), with the same limits.

Values quoted back in messages are cut short (a 50 MB value is not echoed whole).
"""

from __future__ import annotations

import codecs
from pathlib import Path
from typing import Any

import yaml

from compress.bounds import shown
from compress.errors import StructuredFileError
from compress.structured import MAX_DIGITS, read_bytes

MAX_BYTES = 2**20
MAX_DEPTH = 32
MAX_VALUES = 100_000
MAX_MESSAGE = 400  # characters of an error message; longer ones lose their middle

# UTF-32's marks first: UTF-32-LE's begins with UTF-16-LE's
_BOMS = ((codecs.BOM_UTF32_LE, "utf-32"), (codecs.BOM_UTF32_BE, "utf-32"), (codecs.BOM_UTF8, "utf-8-sig"),
         (codecs.BOM_UTF16_LE, "utf-16"), (codecs.BOM_UTF16_BE, "utf-16"))
_MERGE = "tag:yaml.org,2002:merge"


class RecipeRefused(yaml.MarkedYAMLError):
    """Valid YAML that a recipe may not be (a duplicate key, too deep, a number too long)."""

    def __init__(self, problem: str, mark: yaml.Mark | None) -> None:
        super().__init__(problem=problem, problem_mark=mark)


class RecipeLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` (plain data only, never Python objects) with the limits above."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._open_anchors: list[str | None] = []  # the anchor of each node being composed, outermost first

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node:
        event = self.peek_event()
        if isinstance(event, yaml.AliasEvent):
            if event.anchor in self._open_anchors:
                raise RecipeRefused(f"alias *{event.anchor} sits inside the value it names: a recipe cannot contain "
                                    "itself", event.start_mark)
            return super().compose_node(parent, index)
        if len(self._open_anchors) >= MAX_DEPTH:  # refused before the composer's recursion runs out of stack
            raise RecipeRefused(f"values nested deeper than {MAX_DEPTH} levels: a recipe needs a handful",
                                event.start_mark)
        self._open_anchors.append(getattr(event, "anchor", None))
        try:
            return super().compose_node(parent, index)
        finally:
            self._open_anchors.pop()

    def get_single_node(self) -> yaml.Node | None:
        node = super().get_single_node()
        if node is not None:
            values, depth = _expanded(node, {})
            if depth > MAX_DEPTH:
                raise RecipeRefused(f"aliases expand to values nested deeper than {MAX_DEPTH} levels", node.start_mark)
            if values > MAX_VALUES:
                raise RecipeRefused(f"aliases expand to more than {MAX_VALUES:,} values: a recipe needs a few dozen",
                                    node.start_mark)
        return node

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, yaml.Mark] = {}
        for key_node, _ in node.value:
            if not isinstance(key_node, yaml.ScalarNode) or key_node.tag == _MERGE:
                continue  # merges may override; other non-text keys meet the constructor's own checks
            key = self.construct_object(key_node)
            if key in seen:
                raise RecipeRefused(f"key {shown(key)} appears twice in one mapping (first on line "
                                    f"{seen[key].line + 1}): YAML would silently keep the last; remove one",
                                    key_node.start_mark)
            seen[key] = key_node.start_mark
        return super().construct_mapping(node, deep)

    def construct_yaml_int(self, node: yaml.ScalarNode) -> int:
        digits = str(node.value).replace("_", "").lstrip("+-")
        if len(digits) > MAX_DIGITS:
            raise RecipeRefused(f"a whole number of {len(digits)} digits: no recipe value needs more than "
                                f"{MAX_DIGITS}", node.start_mark)
        return super().construct_yaml_int(node)  # type: ignore[no-any-return]


RecipeLoader.add_constructor("tag:yaml.org,2002:int", RecipeLoader.construct_yaml_int)


def _expanded(node: yaml.Node, memo: dict[int, tuple[int, int]]) -> tuple[int, int]:
    """(values, depth) of ``node`` with every alias expanded; ``memo`` keeps shared nodes linear to count.

    An alias names an earlier, complete node, so the walk meets it after having measured it: the
    recursion is no deeper than the document's own nesting (at most MAX_DEPTH)."""
    if id(node) not in memo:
        if isinstance(node, yaml.MappingNode):
            children = [part for pair in node.value for part in pair]
        else:
            children = list(node.value) if isinstance(node, yaml.SequenceNode) else []
        measured = [_expanded(child, memo) for child in children]
        memo[id(node)] = (1 + sum(v for v, _ in measured), 1 + max((d for _, d in measured), default=0))
    return memo[id(node)]


def shorten(message: str, limit: int = MAX_MESSAGE) -> str:
    """``message`` with its middle left out when longer than ``limit``: the path and the advice stay."""
    if len(message) <= limit:
        return message
    head, tail = limit * 2 // 3, limit // 3
    return f"{message[:head]} [... {len(message) - head - tail:,} characters left out ...] {message[-tail:]}"


def _read_bytes(path: Path) -> bytes:
    try:
        return read_bytes(path, f"recipe '{path}'", max_bytes=MAX_BYTES)
    except StructuredFileError as exc:
        if not path.exists():
            raise StructuredFileError(f"recipe '{path}' does not exist: see pipelines/ for examples") from None
        if path.is_file() and path.stat().st_size > MAX_BYTES:
            raise StructuredFileError(f"recipe '{path}' is larger than {MAX_BYTES // 2**20} MiB: a recipe is a few KB "
                                      "of settings; is it the right file?") from None
        raise exc from None


def _decode(data: bytes, path: Path) -> str:
    encoding = next((name for bom, name in _BOMS if data.startswith(bom)), "utf-8")
    if encoding == "utf-8" and b"\x00" in data:
        raise StructuredFileError(f"{path}: holds NUL bytes: it is UTF-16/32 without a byte-order mark, or not text; "
                          "save it as UTF-8")
    try:
        return data.decode(encoding)
    except UnicodeDecodeError as exc:
        raise StructuredFileError(f"{path}: not {encoding.removesuffix('-sig').upper()} text (byte {exc.start}: "
                          f"{data[exc.start:exc.start + 1]!r}): save the recipe as UTF-8") from None


def read_recipe_yaml(path: str | Path) -> Any:
    """The plain data (mappings, lists, text, numbers) of the recipe file at ``path``, or a one-line error."""
    path = Path(path)
    return parse_yaml(_decode(_read_bytes(path), path), str(path))


def parse_yaml(text: str, where: str, lines: bool = True) -> Any:
    """``text`` (a recipe, or one ``--set`` value) read as YAML within the limits above; errors start with
    ``where`` and, with ``lines``, the line."""
    try:
        loader = RecipeLoader(text)  # already reads the text: refuses control characters
        try:
            return loader.get_single_data()
        finally:
            loader.dispose()
    except RecipeRefused as exc:
        raise StructuredFileError(shorten(f"{where}{_line(exc) if lines else ''}: {exc.problem}")) from None
    except yaml.YAMLError as exc:
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        at = _line(exc) if lines else ""
        raise StructuredFileError(shorten(f"{where}{at}: not valid YAML ({problem})")) from None


def _line(exc: yaml.YAMLError) -> str:
    mark = getattr(exc, "problem_mark", None)
    return f": line {mark.line + 1}" if mark is not None else ""


__all__ = ["MAX_BYTES", "MAX_DEPTH", "MAX_DIGITS", "MAX_VALUES", "RecipeLoader", "parse_yaml", "read_recipe_yaml",
           "shorten"]
