"""Drafts: the mutable stand-in for a frozen state inside ``with store.transaction()``.

A draft records assignments and builds a new frozen instance with ``attrs.evolve`` when the
transaction commits, so fields that were not touched keep their identity (the commit's diff
skips them at the cost of an ``is`` check). Nested attrs values become nested drafts and
tuples become lists on first access.
"""

from __future__ import annotations

from collections.abc import Container
from typing import Any, Final

import attrs

from journalstate._errors import TransactionError

_FIELDS: dict[type, dict[str, str] | None] = {}
"""Per class: each field's ``__init__`` name by attribute name, in order (None when some field
is not an ``__init__`` argument, and only ``attrs.evolve`` can rebuild an instance)."""


def _fields(cls: type) -> dict[str, str] | None:
    try:
        return _FIELDS[cls]
    except KeyError:
        fields = attrs.fields(cls)
        aliases = {f.name: f.alias or f.name for f in fields}
        found = _FIELDS[cls] = aliases if all(f.init for f in fields) else None
        return found


def _names(cls: type) -> Container[str]:
    aliases = _fields(cls)
    return aliases if aliases is not None else {f.name for f in attrs.fields(cls)}


class Draft:
    """A mutable view of one attrs instance; attribute names are checked at once."""

    __slots__ = ("_closed", "_names", "_original", "_values")

    _original: Any
    _values: dict[str, Any]
    _closed: bool
    _names: Container[str]

    def __init__(self, original: Any) -> None:
        object.__setattr__(self, "_original", original)
        object.__setattr__(self, "_values", {})
        object.__setattr__(self, "_closed", False)
        names = _FIELDS.get(type(original))
        object.__setattr__(self, "_names", names or _names(type(original)))

    def _check(self, name: str) -> None:
        if self._closed:
            raise TransactionError("the transaction has ended; its draft can no longer be used")
        if name not in self._names:
            cls = type(self._original).__name__
            raise AttributeError(f"{cls} has no field {name!r}")

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        self._check(name)
        values = self._values
        if name not in values:
            values[name] = _wrap(getattr(self._original, name))
        return values[name]

    def __setattr__(self, name: str, value: Any) -> None:
        if self._closed or name not in self._names:
            self._check(name)  # raises
        self._values[name] = value

    def __repr__(self) -> str:
        names = [f.name for f in attrs.fields(type(self._original))]
        shown = ", ".join(f"{n}={getattr(self, n)!r}" for n in names)
        return f"Draft[{type(self._original).__name__}]({shown})"

    def _build(self) -> Any:
        """The frozen instance with the draft's changes (the original itself if none)."""
        original = self._original
        changes: dict[str, Any] = {}
        for name, value in self._values.items():
            built = _unwrap(value) if isinstance(value, _WRAPPED) else value
            if built is not getattr(original, name):
                changes[name] = built
        if not changes:
            return original
        cls = type(original)
        aliases = _fields(cls)
        if aliases is None:
            fields = {f.name: f for f in attrs.fields(cls)}
            return attrs.evolve(original, **{fields[n].alias: v for n, v in changes.items()})
        # What attrs.evolve does, without looking the fields up again: every field is an
        # __init__ argument, the unchanged ones passed by reference.
        return cls(
            **{
                alias: changes[name] if name in changes else getattr(original, name)
                for name, alias in aliases.items()
            }
        )

    def _close(self) -> None:
        object.__setattr__(self, "_closed", True)
        for value in self._values.values():
            if isinstance(value, _WRAPPED):
                _close(value)


class DraftList(list[Any]):
    """A mutable copy of a tuple field; becomes a tuple again at commit."""

    def __init__(self, original: tuple[Any, ...]) -> None:
        super().__init__(_wrap(v) for v in original)
        self.original = original


_WRAPPED: Final = (Draft, list)
"""The types _unwrap and _close act on; every other value is kept as it is."""


def _wrap(value: Any) -> Any:
    if attrs.has(type(value)):
        return Draft(value)
    if type(value) is tuple:
        return DraftList(value)
    return value


def _unwrap(value: Any) -> Any:
    if isinstance(value, Draft):
        return value._build()
    if isinstance(value, list):
        built = tuple(_unwrap(v) for v in value)
        original = getattr(value, "original", None)
        if (
            original is not None
            and len(original) == len(built)
            and all(a is b for a, b in zip(original, built, strict=True))
        ):
            return original
        return built
    return value


def _close(value: Any) -> None:
    if isinstance(value, Draft):
        value._close()
    elif isinstance(value, list):
        for v in value:
            _close(v)


# The store's two calls, bound to the methods themselves: one call each on the commit path.
build: Final = Draft._build
"""``build(draft)``: the new state a draft describes."""
close: Final = Draft._close
"""``close(draft)``: end a draft; later use raises TransactionError."""
