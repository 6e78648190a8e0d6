"""One small generic registry: name -> factory, with aliases and "did you mean"."""

from __future__ import annotations

import difflib
from typing import Callable, Generic, Iterator, TypeVar

from compress.errors import UnknownNameError

T = TypeVar("T")


def normalize(name: str) -> str:
    """Names as users type them: case, '-' and '_' do not matter (mobilenetv2 == mobilenet_v2)."""
    return name.strip().lower().replace("-", "").replace("_", "")


class Registry(Generic[T]):
    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, T] = {}
        self._canonical: dict[str, str] = {}  # normalized key -> canonical name
        self._aliases: dict[str, tuple[str, ...]] = {}  # canonical name -> its aliases, as registered

    def register(self, name: str, *aliases: str) -> Callable[[T], T]:
        def decorator(obj: T) -> T:
            self.add(name, obj, *aliases)
            return obj

        return decorator

    def add(self, name: str, obj: T, *aliases: str) -> None:
        if name in self._entries:
            raise ValueError(f"{self.kind} '{name}' is registered twice")
        for key in (name, *aliases):
            norm = normalize(key)
            if norm in self._canonical and self._canonical[norm] != name:
                raise ValueError(f"{self.kind} name '{key}' clashes with '{self._canonical[norm]}'")
            self._canonical[norm] = name
        self._entries[name] = obj
        self._aliases[name] = aliases

    def canonical(self, name: str) -> str:
        norm = normalize(name)
        if norm not in self._canonical:
            close = difflib.get_close_matches(norm, list(self._canonical), n=1, cutoff=0.6)
            hint = f"did you mean '{self._canonical[close[0]]}'? " if close else ""
            raise UnknownNameError(
                f"unknown {self.kind} '{name}': {hint}see `compress list {self.kind}s` for the choices"
            )
        return self._canonical[norm]

    def get(self, name: str) -> T:
        return self._entries[self.canonical(name)]

    def aliases(self, name: str) -> tuple[str, ...]:
        """The other names ``name`` was registered with (for listings; any spelling that differs only in
        case, '-' and '_' is accepted too)."""
        return self._aliases.get(self.canonical(name), ())

    def names(self) -> list[str]:
        return sorted(self._entries)

    def name_of(self, obj: T) -> str | None:
        """The name ``obj`` itself is registered under, if any."""
        return next((name for name, entry in self._entries.items() if entry is obj), None)

    def __contains__(self, name: str) -> bool:
        return normalize(name) in self._canonical

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())
