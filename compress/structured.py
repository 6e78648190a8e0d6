"""The one reader for structured files a user or a file hands us: JSON reports, baselines, sidecars, run
records, metadata carried inside a model, and the bytes of a recipe (``pipeline.yaml_io`` parses YAML
with the same limits).

``json.loads`` alone blocks forever on a FIFO, reads a 69 MB file whole, recurses once per nesting level
(200,000 ``[`` end in a RecursionError), raises a bare ValueError on a 5,000-digit number, takes
``NaN``/``Infinity`` as numbers and keeps the last of two equal keys. Here a file is refused unless:

- it is a regular file (a FIFO, a folder or a device is refused without being opened for a blocking read);
- it is at most ``max_bytes`` (16 MiB unless the caller says less) of UTF-8 text;
- it nests at most ``MAX_DEPTH`` levels (counted without recursing, before the parser runs);
- each whole number has at most ``MAX_DIGITS`` digits, each number is finite, each key appears once per object.

Every refusal is one ``StructuredFileError`` line naming the file and, inside it, the key path
(``stages.student.latency[0]``).
"""

from __future__ import annotations

import json
import math
import os
import re
import stat
from pathlib import Path
from typing import Any

from compress.errors import StructuredFileError

MAX_BYTES = 16 << 20  # reports and sidecars are KB; a baseline of 16 MiB is already not one of ours
MAX_DEPTH = 64  # what we write nests about 6 levels
MAX_DIGITS = 30  # the largest number we write (a byte count) has 20
_STRINGS = re.compile(r'"(?:[^"\\]|\\.)*"', re.DOTALL)
_BRACKETS = re.compile(r"[\[\]{}]")


def _size(n: int) -> str:
    return f"{n / 2**20:.1f} MiB" if n >= 2**20 else f"{n / 2**10:.1f} KiB" if n >= 2**10 else f"{n} bytes"


def _refuse(what: str, problem: str, fix: str, key: str = "") -> StructuredFileError:
    where = f"{what} at {key}:" if key else what
    return StructuredFileError(f"{where} {problem}" + (f"; {fix}" if fix else ""))


def read_bytes(path: str | os.PathLike[str], what: str, *, max_bytes: int = MAX_BYTES, fix: str = "") -> bytes:
    """The bytes of the regular file at ``path``, at most ``max_bytes``; ``what`` names it in errors
    (e.g. ``baseline 'r.json'``). A FIFO or device is refused before anything blocks on it."""
    try:
        # O_NONBLOCK: opening a FIFO with no writer returns at once instead of waiting for one
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        raise _refuse(what, "does not exist", fix or "check the path") from None
    except IsADirectoryError:
        raise _refuse(what, "is a folder, not a file", fix or "pass the file itself") from None
    except OSError as exc:
        raise _refuse(what, f"cannot be read ({exc.strerror})", fix) from None
    try:
        info = os.fstat(fd)
        if stat.S_ISDIR(info.st_mode):
            raise _refuse(what, "is a folder, not a file", fix or "pass the file itself")
        if not stat.S_ISREG(info.st_mode):
            raise _refuse(what, "is not a regular file (a pipe, socket or device)", fix or "pass a file")
        if info.st_size > max_bytes:
            raise _refuse(what, f"is {_size(info.st_size)}, more than the {_size(max_bytes)} such a file holds",
                          fix or "is it the right file?")
        os.set_blocking(fd, True)
        with os.fdopen(os.dup(fd), "rb") as file:
            data = file.read(max_bytes + 1)
    except OSError as exc:
        raise _refuse(what, f"cannot be read ({exc.strerror})", fix) from None
    finally:
        os.close(fd)
    if len(data) > max_bytes:  # it grew after the check
        raise _refuse(what, f"is more than the {_size(max_bytes)} such a file holds", fix or "is it the right file?")
    return data


def read_text(path: str | os.PathLike[str], what: str, *, max_bytes: int = MAX_BYTES, fix: str = "") -> str:
    """``read_bytes`` decoded as UTF-8 (a byte-order mark is fine)."""
    data = read_bytes(path, what, max_bytes=max_bytes, fix=fix)
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise _refuse(what, f"is not UTF-8 text (byte {exc.start})", fix) from None


def read_json(path: str | os.PathLike[str], what: str, *, max_bytes: int = MAX_BYTES, fix: str = "") -> Any:
    """The JSON value in the file at ``path``, within every limit of this module."""
    return parse_json(read_text(path, what, max_bytes=max_bytes, fix=fix), what, fix=fix)


class _Refused:
    """What a parser hook met and refused; the walk reports it with its key path."""

    __slots__ = ("problem",)

    def __init__(self, problem: str) -> None:
        self.problem = problem


class _Pairs(list):  # type: ignore[type-arg]
    """An object's (key, value) pairs as parsed, duplicates kept, so the walk can name a duplicate's path."""


def _parse_int(text: str) -> int | _Refused:
    digits = len(text.lstrip("-"))
    if digits > MAX_DIGITS:
        return _Refused(f"a whole number of {digits:,} digits (no value of ours has more than {MAX_DIGITS})")
    return int(text)


def _parse_float(text: str) -> float | _Refused:
    if len(text) > 2 * MAX_DIGITS + 10:
        return _Refused(f"a number written with {len(text):,} characters")
    value = float(text)
    return value if math.isfinite(value) else _Refused(f"{text} overflows to infinity: numbers must be finite")


def _parse_constant(text: str) -> _Refused:
    return _Refused(f"{text} is not a finite number")


def depth_of(text: str) -> int:
    """How deep ``text``'s brackets nest outside strings, counted without recursion."""
    depth = deepest = 0
    for match in _BRACKETS.finditer(_STRINGS.sub('""', text)):
        depth += 1 if match.group() in "[{" else -1
        deepest = max(deepest, depth)
    return deepest


def key_path(parent: str, key: str | int) -> str:
    if isinstance(key, int):
        return f"{parent}[{key}]"
    shown = key if re.fullmatch(r"[A-Za-z0-9_\-]{1,60}", key) else repr(key[:60])
    return f"{parent}.{shown}" if parent else shown


def _clean(value: Any, where: str, what: str, fix: str) -> Any:
    """``value`` with objects made dicts, after refusing duplicates and what the hooks marked."""
    if isinstance(value, _Refused):
        raise _refuse(what, value.problem, fix, where or "the top level")
    if isinstance(value, _Pairs):
        out: dict[str, Any] = {}
        for key, item in value:
            inner = key_path(where, key)
            if key in out:
                raise _refuse(what, "the key appears twice in one object (JSON readers disagree on which counts)", fix,
                              inner)
            out[key] = _clean(item, inner, what, fix)
        return out
    if isinstance(value, list):
        return [_clean(item, key_path(where, i), what, fix) for i, item in enumerate(value)]
    return value


def parse_json(text: str, what: str, *, fix: str = "", max_chars: int = MAX_BYTES) -> Any:
    """``text`` decoded as JSON within this module's limits (``what`` names where it came from)."""
    if len(text) > max_chars:
        raise _refuse(what, f"is {len(text):,} characters, more than the {max_chars:,} such a value holds", fix)
    depth = depth_of(text)
    if depth > MAX_DEPTH:
        raise _refuse(what, f"nests {depth:,} levels deep, more than the {MAX_DEPTH} any file of ours does", fix)
    try:
        value = json.loads(text, object_pairs_hook=_Pairs, parse_int=_parse_int, parse_float=_parse_float,
                           parse_constant=_parse_constant)
    except json.JSONDecodeError as exc:
        raise _refuse(what, f"is not valid JSON ({exc.msg}: line {exc.lineno} column {exc.colno})", fix) from None
    except (ValueError, RecursionError) as exc:  # the limits above make these unreachable; one line all the same
        raise _refuse(what, f"is not valid JSON ({type(exc).__name__})", fix) from None
    return _clean(value, "", what, fix)


__all__ = ["MAX_BYTES", "MAX_DEPTH", "MAX_DIGITS", "StructuredFileError", "depth_of", "key_path", "parse_json",
           "read_bytes", "read_json", "read_text"]
