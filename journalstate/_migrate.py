"""Schema migration, the pure part: compare two layouts, plan the change, apply it to bytes.

What belongs here: matching the fields of a file's layout (read from its descriptor) with those
of a new class by name (nested classes by path), deciding for each whether it is kept, widened,
added, dropped or refused, and turning an old state image into a new one. No I/O: executing a
migration (locks, temporary file, rename) is in ``_migrate_run``. ``docs/schema.md`` ("Changing
the schema") lists the rules.
"""

from __future__ import annotations

import abc
import struct
from collections.abc import Collection
from typing import Any

import attrs

from journalstate._format import ValueEnum
from journalstate._layout import (
    KIND_FLOAT,
    KIND_INT,
    KIND_STR,
    KIND_UINT,
    ArrayNode,
    BadValue,
    BlobNode,
    Node,
    ScalarNode,
    StructNode,
)
from journalstate._schema import Schema

_U32 = struct.Struct("<I")


class Change(ValueEnum):
    """What a migration does to one field."""

    KEPT = "kept"
    """Same name, same type: the bytes are copied unchanged."""
    WIDENED = "widened"
    """Same name, a type that holds every old value (a wider int, f32 to f64, more capacity,
    a longer array); the value is unchanged."""
    ADDED = "added"
    """Only in the new class: it takes its attrs default (see ``FieldChange.value``)."""
    DROPPED = "dropped"
    """Only in the file, and listed in ``drop`` (or the migration has a ``convert``)."""
    CONVERTED = "converted"
    """The value comes from the ``convert`` function."""


@attrs.frozen
class FieldChange:
    """One field of a migration. Paths are dotted; ``[]`` stands for every array element."""

    path: str
    change: Change
    old_type: str | None
    """The field's type in the file ("u32", "str[16]"), None when added."""
    new_type: str | None
    """The field's type in the new class, None when dropped."""
    value: Any = None
    """The value an added field takes (None for the other changes)."""


# --- steps: how the bytes of one node of the new layout are made ---------------------------------


class _Step(abc.ABC):
    """Writes one node of the new image at ``dst[d:]`` from the old image at ``src[s:]``."""

    @abc.abstractmethod
    def apply(self, src: memoryview, s: int, dst: bytearray, d: int) -> None:
        """Fill the node's bytes; ``dst`` starts zero-filled."""


class _Copy(_Step):
    def __init__(self, size: int) -> None:
        self.size = size

    def apply(self, src: memoryview, s: int, dst: bytearray, d: int) -> None:
        dst[d : d + self.size] = src[s : s + self.size]


class _Fill(_Step):
    """A constant: the encoded default of an added field (zeros need no writing)."""

    def __init__(self, data: bytes) -> None:
        self.data = data if any(data) else b""

    def apply(self, src: memoryview, s: int, dst: bytearray, d: int) -> None:
        if self.data:
            dst[d : d + len(self.data)] = self.data


class _WidenScalar(_Step):
    def __init__(self, old: ScalarNode, new: ScalarNode) -> None:
        self.unpack, self.pack = old.st.unpack_from, new.st.pack_into

    def apply(self, src: memoryview, s: int, dst: bytearray, d: int) -> None:
        self.pack(dst, d, self.unpack(src, s)[0])


class _WidenBlob(_Step):
    """A larger capacity: the length and the data move as they are; the new fill is zeros."""

    def __init__(self, old: BlobNode) -> None:
        self.capacity = old.param

    def apply(self, src: memoryview, s: int, dst: bytearray, d: int) -> None:
        n = 4 + min(_U32.unpack_from(src, s)[0], self.capacity)
        dst[d : d + n] = src[s : s + n]


class _MapStruct(_Step):
    def __init__(self, parts: list[tuple[int, int, _Step]]) -> None:
        self.parts = parts  # (offset in the new struct, offset in the old one, step)

    def apply(self, src: memoryview, s: int, dst: bytearray, d: int) -> None:
        for new_at, old_at, step in self.parts:
            step.apply(src, s + old_at, dst, d + new_at)


class _MapArray(_Step):
    def __init__(self, old: ArrayNode, new: ArrayNode, element: _Step, fill: bytes) -> None:
        self.count, self.length = old.param, new.param
        self.old_size, self.new_size = old.element.size, new.element.size
        self.element = element
        self.fill = fill if any(fill) else b""  # the encoded default of a new element

    def apply(self, src: memoryview, s: int, dst: bytearray, d: int) -> None:
        if isinstance(self.element, _Copy) and self.old_size == self.new_size:
            n = self.count * self.old_size
            dst[d : d + n] = src[s : s + n]
        else:
            for i in range(self.count):
                self.element.apply(src, s + i * self.old_size, dst, d + i * self.new_size)
        if self.fill and self.length > self.count:
            start = d + self.count * self.new_size
            dst[start : d + self.length * self.new_size] = self.fill * (self.length - self.count)


# --- the plan -------------------------------------------------------------------------------------


@attrs.frozen
class Plan:
    """What migrating a layout to a class does, field by field.

    ``problems`` is empty when the migration may run; then ``apply`` builds the new image
    (without a ``convert``; with one, the new state comes from it instead).
    """

    changes: tuple[FieldChange, ...]
    problems: tuple[str, ...]
    identical: bool
    """The layouts are the same (struct names aside): nothing to migrate."""
    new_size: int
    _step: _Step | None = attrs.field(default=None, repr=False, alias="step")

    def apply(self, old_image: bytes | bytearray | memoryview) -> bytearray:
        """The new state image built from ``old_image`` (a valid image of the old layout)."""
        assert self._step is not None, "no image without a valid plan"
        out = bytearray(self.new_size)
        with memoryview(old_image) as view, view.cast("B") as src:
            self._step.apply(src, 0, out, 0)
        return out


def plan_migration(
    old: StructNode, new: Schema, *, drop: Collection[str] = (), convert: bool = False
) -> Plan:
    """Plan the migration of a file whose layout is ``old`` to the class ``new`` describes.

    Args:
        old: the root of the file's layout (``decode_descriptor(header.schema).root``).
        new: the compiled new class.
        drop: paths of fields of the file that may disappear ("total", "inner.x", "a[].b");
            a path the file does not have is ignored (so a rerun after the migration passes).
        convert: a ``convert`` function will make the new state: no field is refused.

    Returns:
        The plan; its ``problems`` name every field that refuses, and why.
    """
    planner = _Planner(set(drop), convert)
    step = planner.node(old, new.root, "")
    identical = isinstance(step, _Copy) and step.size == old.size == new.size
    return Plan(
        tuple(planner.changes),
        tuple(planner.problems),
        identical,
        new.size,
        step=None if convert or planner.problems else step,
    )


def _join(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


def _leaves(node: Node, path: str) -> list[tuple[str, Node]]:
    """The fields a report lists: struct members recursively, array-of-struct elements too."""
    if isinstance(node, StructNode):
        return [leaf for name, _, _, c in node.members for leaf in _leaves(c, _join(path, name))]
    if isinstance(node, ArrayNode) and isinstance(node.element, StructNode):
        return _leaves(node.element, path + "[]")
    return [(path, node)]


def _refusal(old: Node, new: Node) -> str | None:
    """Why a leaf of type ``old`` cannot become ``new`` without a convert; None when it can."""
    was, now = old.type_name(), new.type_name()
    if isinstance(old, ScalarNode) and isinstance(new, ScalarNode):
        if old.kind == new.kind and old.size <= new.size:
            return None
        if (old.kind, new.kind) == (KIND_UINT, KIND_INT) and old.size < new.size:
            return None
        if old.kind == new.kind or {old.kind, new.kind} <= {KIND_INT, KIND_UINT}:
            if new.kind == KIND_UINT and old.kind == KIND_INT:
                return f"narrowing: {was} to {now} loses negative values"
            lose = "precision and range" if old.kind == KIND_FLOAT else "values"
            return f"narrowing: {was} to {now} can lose {lose}"
    elif isinstance(old, BlobNode) and isinstance(new, BlobNode) and old.kind == new.kind:
        if old.param <= new.param:
            return None
        return f"narrowing: {was} to {now} can lose data"
    return f"the kind changes from {was} to {now}"


class _Planner:
    def __init__(self, drop: set[str], convert: bool) -> None:
        self.drop, self.convert = drop, convert
        self.dropped: set[str] = set()
        self.changes: list[FieldChange] = []
        self.problems: list[str] = []

    def refuse(self, path: str, why: str) -> None:
        self.problems.append(f"field {path!r}: {why}")

    def node(self, old: Node, new: Node, path: str) -> _Step:
        """The step making ``new`` from ``old``; records changes and problems on the way."""
        if isinstance(old, StructNode) and isinstance(new, StructNode):
            return self.struct(old, new, path)
        if isinstance(old, ArrayNode) and isinstance(new, ArrayNode):
            if self.convert and not isinstance(new.element, StructNode):
                return self.leaf(old, new, path)
            return self.array(old, new, path)
        if isinstance(old, ScalarNode | BlobNode) and isinstance(new, ScalarNode | BlobNode):
            return self.leaf(old, new, path)
        if self.convert:
            self.leaf(old, new, path)
        else:
            self.refuse(path, f"the kind changes from {old.type_name()} to {new.type_name()}")
        return _Copy(0)

    def leaf(self, old: Node, new: Node, path: str) -> _Step:
        was, now = old.type_name(), new.type_name()
        if self.convert:
            self.changes.append(FieldChange(path, Change.CONVERTED, was, now))
            return _Copy(0)
        if (old.kind, old.size, old.param) == (new.kind, new.size, new.param):
            if not isinstance(new, ArrayNode):
                self.changes.append(FieldChange(path, Change.KEPT, was, now))
            return _Copy(new.size)
        why = _refusal(old, new)
        if why is not None:
            self.refuse(path, why)
            return _Copy(0)
        if not isinstance(new, ArrayNode):
            self.changes.append(FieldChange(path, Change.WIDENED, was, now))
        if isinstance(old, ScalarNode) and isinstance(new, ScalarNode):
            return _WidenScalar(old, new)
        assert isinstance(old, BlobNode)
        return _WidenBlob(old)

    def array(self, old: ArrayNode, new: ArrayNode, path: str) -> _Step:
        changes = len(self.changes)
        if old.param > new.param and not self.convert:
            lost = old.param - new.param
            why = f"narrowing: {old.type_name()} to {new.type_name()} drops {lost} elements"
            self.refuse(path, why)
        element = self.node(old.element, new.element, path + "[]")
        fill = b""
        if new.param > old.param and not self.convert:
            try:
                fill = new.element.to_bytes(_element_default(new.element))
            except (BadValue, _NoDefault) as exc:
                self.refuse(path, f"new elements have no default value ({_message(exc)})")
        if not isinstance(new.element, StructNode):  # one leaf for the whole array
            same = old.param == new.param and all(
                c.change is Change.KEPT for c in self.changes[changes:]
            )
            del self.changes[changes:]
            kind = Change.KEPT if same else Change.WIDENED
            self.changes.append(FieldChange(path, kind, old.type_name(), new.type_name()))
        elif new.param != old.param:
            kind = Change.CONVERTED if self.convert else Change.WIDENED
            change = FieldChange(path, kind, old.type_name(), new.type_name())
            self.changes.insert(changes, change)
        if (
            old.param == new.param
            and isinstance(element, _Copy)
            and element.size == new.element.size
        ):
            return _Copy(new.size)
        return _MapArray(old, new, element, fill)

    def struct(self, old: StructNode, new: StructNode, path: str) -> _Step:
        theirs = {m[0]: m for m in old.members}
        ours = {m[0] for m in new.members}
        defaults = {f.name: f for f in attrs.fields(new.cls)} if new.cls is not None else {}
        parts: list[tuple[int, int, _Step]] = []
        for name, _, offset, child in new.members:
            sub = _join(path, name)
            if name in theirs:
                parts.append((offset, theirs[name][2], self.node(theirs[name][3], child, sub)))
                continue
            if self.convert:
                for leaf, node in _leaves(child, sub):
                    self.changes.append(FieldChange(leaf, Change.CONVERTED, None, node.type_name()))
                continue
            try:
                value = _default(defaults.get(name), sub)
                data = child.to_bytes(value)
            except (BadValue, _NoDefault) as exc:
                self.refuse(sub, f"new, and {_message(exc)}")
                continue
            self.changes.append(FieldChange(sub, Change.ADDED, None, child.type_name(), value))
            parts.append((offset, 0, _Fill(data)))
        for name, _, _, child in old.members:
            if name in ours:
                continue
            sub = _join(path, name)
            if sub in self.drop or self.convert:
                self.dropped.add(sub)
                for leaf, node in _leaves(child, sub):
                    self.changes.append(FieldChange(leaf, Change.DROPPED, node.type_name(), None))
            else:
                self.refuse(
                    sub, "in the file, not in the new class (list it in drop to discard it)"
                )
        if all(isinstance(p[2], _Copy) and p[0] == p[1] for p in parts) and (
            sum(p[2].size for p in parts if isinstance(p[2], _Copy)) == new.size == old.size
        ):
            return _Copy(new.size)
        return _MapStruct(parts)


class _NoDefault(Exception):
    """A new field, or a new array element, has no default value."""


def _message(exc: Exception) -> str:
    if isinstance(exc, BadValue):
        return f"its default does not fit: {exc.message}"
    return str(exc)


def _default(field: attrs.Attribute[Any] | None, path: str) -> Any:
    """The value an attrs field's default gives."""
    default = attrs.NOTHING if field is None else field.default
    if default is attrs.NOTHING:
        raise _NoDefault("it has no default; give it one, or migrate with convert")
    if isinstance(default, attrs.Factory):  # type: ignore[arg-type]
        factory: Any = default
        if factory.takes_self:
            raise _NoDefault("its default factory takes self; migrate with convert")
        return factory.factory()
    return default


def _element_default(node: Node) -> Any:
    """The default value of a new array element: zero for leaves, the class's defaults."""
    if isinstance(node, StructNode):
        assert node.cls is not None
        try:
            return node.cls()
        except TypeError as exc:
            raise _NoDefault(f"{node.type_name()}() fails: {exc}") from None
    if isinstance(node, ArrayNode):
        return (_element_default(node.element),) * node.param
    if isinstance(node, BlobNode):
        return "" if node.kind == KIND_STR else b""
    assert isinstance(node, ScalarNode)
    return node.pytype(0)
