"""The layout tree: the nodes a schema is made of, and what they do with values.

What belongs here: the descriptor's node kinds and limits (``docs/schema.md``), one node class per
kind (scalar, blob, array, struct) that encodes, decodes and diffs values at an offset, and
``Layout``, what a compiled schema and a schema read from a descriptor share. A node knows a
layout, never a value. Everything is pure: bytes in, values out. Compiling a class into nodes is
in ``_schema``; writing and reading the nodes as a descriptor is in ``_descriptor``.
"""

from __future__ import annotations

import abc
import itertools
import operator
import struct
from typing import Final, NoReturn, TypeAlias

import attrs

from journalstate._errors import InvalidValue

# --- node kinds and limits (the descriptor's, docs/schema.md) ----------------------------------

KIND_INT: Final = 1  # signed integer, size = width (1, 2, 4, 8)
KIND_UINT: Final = 2  # unsigned integer, size = width
KIND_FLOAT: Final = 3  # IEEE float, size 4 or 8
KIND_BOOL: Final = 4  # one byte, 0 or 1
KIND_BYTES: Final = 5  # u32 length + param bytes; size = 4 + param
KIND_STR: Final = 6  # as BYTES, holding UTF-8
KIND_ARRAY: Final = 7  # param elements; one element node follows
KIND_STRUCT: Final = 8  # param fields; their nodes follow in order
MAX_DEPTH: Final = 32  # deepest node below the root
MAX_NAME_LENGTH: Final = 255  # UTF-8 bytes in a node name
MAX_STATE_SIZE: Final = 1 << 28  # encoded bytes of a whole state (256 MiB): bounds every copy
MAX_NODES: Final = 4096  # nodes in a descriptor (fields, array elements, the root)
MAX_COUNT: Final = 1 << 31  # largest Str/Bytes capacity or array length

_U32: Final = struct.Struct("<I")
_F64: Final = struct.Struct("<d")
_ZERO_PAGE: Final = memoryview(bytes(4096))


@attrs.frozen
class FieldInfo:
    """One leaf of a schema (an array is one leaf), with its offset in the encoded state."""

    path: str
    type_name: str
    offset: int
    size: int


# --- the layout tree ---------------------------------------------------------------------------

Patches: TypeAlias = list[tuple[int, bytes]]  # (state offset, new bytes), in offset order


class BadValue(Exception):
    """A value does not fit; ``parts`` collects the path, innermost first, as it propagates."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message
        self.parts: list[str] = []


def _got(value: object) -> str:
    return f"got {type(value).__qualname__}"


def _stored(message: str) -> NoReturn:
    raise BadValue(f"stored value is invalid: {message}")


class Node(abc.ABC):
    """A node of the layout tree; it knows a layout, never a value."""

    __slots__ = ("kind", "param", "size")

    def __init__(self, kind: int, size: int, param: int = 0) -> None:
        self.kind, self.size, self.param = kind, size, param

    @abc.abstractmethod
    def type_name(self) -> str:
        """The type as ``info`` shows it ("u64", "str[32]", "u16[4]", a class name)."""

    def encode_into(self, value: object, buf: bytearray, at: int) -> None:
        """Validate ``value`` and write it at ``buf[at:]``, a zero-filled buffer."""
        buf[at : at + self.size] = self.to_bytes(value)

    def to_bytes(self, value: object) -> bytes:
        buf = bytearray(self.size)
        self.encode_into(value, buf, 0)
        return bytes(buf)

    @abc.abstractmethod
    def decode(self, mv: memoryview, at: int, as_dict: bool) -> object:
        """The value stored at ``mv[at:]`` (dicts for structs when ``as_dict``)."""

    @abc.abstractmethod
    def diff(self, old: object, new: object, at: int, out: Patches) -> None:
        """Append patches turning the image of ``old`` into that of ``new`` (``new is not old``).

        Validates ``new`` only where it differs; where ``old`` is not valid, rewrites it all.
        """


class ScalarNode(Node):
    """An int, float or bool leaf: one struct format, one Python type, a range for ints."""

    __slots__ = ("hi", "lo", "pytype", "st")
    pytype: type

    def __init__(self, kind: int, size: int) -> None:
        super().__init__(kind, size)
        bits = 8 * size
        self.lo, self.hi = (-(1 << bits - 1), (1 << bits - 1) - 1) if kind == KIND_INT else (0, 0)
        if kind == KIND_FLOAT:
            code, self.pytype = ("f" if size == 4 else "d"), float
        elif kind == KIND_BOOL:
            code, self.pytype, self.hi = "B", bool, 1
        else:
            code, self.pytype = {1: "b", 2: "h", 4: "i", 8: "q"}[size], int
            if kind == KIND_UINT:
                code, self.hi = code.upper(), (1 << bits) - 1
        self.st = struct.Struct("<" + code)

    def type_name(self) -> str:
        prefix = {KIND_INT: "i", KIND_UINT: "u", KIND_FLOAT: "f"}.get(self.kind)
        return f"{prefix}{8 * self.size}" if prefix else "bool"

    def to_bytes(self, value: object) -> bytes:
        if type(value) is not self.pytype:
            hint = " (write 1.0, not 1)" if self.pytype is float and type(value) is int else ""
            raise BadValue(f"expected {self.pytype.__name__}, {_got(value)}{hint}")
        if self.kind != KIND_FLOAT:
            assert isinstance(value, int)
            if not self.lo <= value <= self.hi:
                limits = f"{self.lo}..{self.hi}"
                raise BadValue(f"{value} is out of range for {self.type_name()} ({limits})")
            return self.st.pack(value)
        try:
            packed = self.st.pack(value)
        except OverflowError:
            raise BadValue(f"{value!r} is too large for f32") from None
        if self.size == 4 and _F64.pack(self.st.unpack(packed)[0]) != _F64.pack(value):
            raise BadValue(f"{value!r} is not representable as f32; round it with js.f32_round(x)")
        return packed

    def decode(self, mv: memoryview, at: int, as_dict: bool) -> object:
        value = self.st.unpack_from(mv, at)[0]
        if self.kind != KIND_BOOL:
            return value
        if value > 1:
            _stored(f"bool byte is {value}, not 0 or 1")
        return value == 1

    def diff(self, old: object, new: object, at: int, out: Patches) -> None:
        if self.kind != KIND_FLOAT:  # for ints and bools of one type, == is equal images
            if type(old) is type(new) and old == new:
                return
            out.append((at, self.to_bytes(new)))
            return
        packed = self.to_bytes(new)
        if type(old) is type(new):  # equal images, not ==: 0.0 vs -0.0 differ, a NaN is itself
            try:
                if self.st.pack(old) == packed:
                    return
            except (OverflowError, struct.error):
                pass
        out.append((at, packed))


class BlobNode(Node):
    """Str or Bytes: u32 length, then ``param`` bytes of data and zero fill."""

    __slots__ = ()

    def __init__(self, kind: int, capacity: int) -> None:
        super().__init__(kind, 4 + capacity, capacity)

    def type_name(self) -> str:
        return f"{'str' if self.kind == KIND_STR else 'bytes'}[{self.param}]"

    def raw(self, value: object) -> bytes:
        if self.kind == KIND_BYTES:
            if type(value) is not bytes:
                raise BadValue(f"expected bytes, {_got(value)}")
            data, unit = value, "bytes"
        else:
            if type(value) is not str:
                raise BadValue(f"expected str, {_got(value)}")
            try:
                data, unit = value.encode(), "bytes of UTF-8"
            except UnicodeEncodeError as exc:
                raise BadValue(f"text cannot be encoded as UTF-8: {exc.reason}") from None
        if len(data) > self.param:
            raise BadValue(f"{len(data)} {unit} is more than the capacity of {self.param}")
        return data

    def encode_into(self, value: object, buf: bytearray, at: int) -> None:
        data = self.raw(value)
        _U32.pack_into(buf, at, len(data))
        buf[at + 4 : at + 4 + len(data)] = data

    def decode(self, mv: memoryview, at: int, as_dict: bool) -> object:
        (n,) = _U32.unpack_from(mv, at)
        if n > self.param:
            _stored(f"length {n} is more than the capacity {self.param}")
        start, end = at + 4 + n, at + self.size
        while start < end:  # zero fill only: then every valid image is exactly encode(value)
            step = min(end - start, len(_ZERO_PAGE))
            if mv[start : start + step] != _ZERO_PAGE[:step]:
                _stored("nonzero bytes after the data")
            start += step
        if self.kind == KIND_BYTES:
            return mv[at + 4 : at + 4 + n].tobytes()
        try:
            return str(mv[at + 4 : at + 4 + n], "utf-8")
        except UnicodeDecodeError as exc:
            _stored(f"not UTF-8 ({exc.reason} at byte {exc.start})")

    def diff(self, old: object, new: object, at: int, out: Patches) -> None:
        if type(new) is type(old) and new == old:
            return
        data = self.raw(new)
        try:
            old_length = len(self.raw(old))
        except BadValue:  # not a valid old value: clear the whole capacity
            old_length = self.param
        # The length, the data and zeros over the rest of the old data; the fill is still zero.
        zeros = bytes(max(old_length - len(data), 0))
        out.append((at, _U32.pack(len(data)) + data + zeros))


class ArrayNode(Node):
    """A tuple of exactly ``param`` elements, each laid out as ``element``, back to back."""

    __slots__ = ("element",)

    def __init__(self, element: Node, length: int) -> None:
        super().__init__(KIND_ARRAY, length * element.size, length)
        self.element = element

    def type_name(self) -> str:
        return f"{self.element.type_name()}[{self.param}]"

    def check(self, value: object) -> tuple[object, ...]:
        if type(value) is not tuple or len(value) != self.param:
            got = f"a tuple of {len(value)}" if type(value) is tuple else type(value).__qualname__
            element = self.element.type_name()
            raise BadValue(f"expected a tuple of {self.param} {element}, got {got}")
        return value

    def encode_into(self, value: object, buf: bytearray, at: int) -> None:
        items, step, i = self.check(value), self.element.size, 0
        try:
            for i, item in enumerate(items):
                self.element.encode_into(item, buf, at + i * step)
        except BadValue as exc:
            exc.parts.append(f"[{i}]")
            raise

    def decode(self, mv: memoryview, at: int, as_dict: bool) -> object:
        step, items = self.element.size, []
        for i in range(self.param):
            try:
                items.append(self.element.decode(mv, at + i * step, as_dict))
            except BadValue as exc:
                exc.parts.append(f"[{i}]")
                raise
        return tuple(items)

    def diff(self, old: object, new: object, at: int, out: Patches) -> None:
        items = self.check(new)
        if type(old) is not tuple or len(old) != self.param:
            out.append((at, self.to_bytes(new)))
            return
        step, i = self.element.size, 0
        try:  # the scan for replaced elements runs in C; only those are looked at
            for i in itertools.compress(itertools.count(), map(operator.is_not, old, items)):
                self.element.diff(old[i], items[i], at + i * step, out)
        except BadValue as exc:
            exc.parts.append(f"[{i}]")
            raise


Member: TypeAlias = tuple[str, str, int, Node]  # attribute name, __init__ name, offset, node


class StructNode(Node):
    """Fields inline. ``cls`` is None when read from a descriptor; ``label`` names the type."""

    __slots__ = ("cls", "label", "members")

    def __init__(self, cls: type | None, label: str | None, members: list[Member]) -> None:
        super().__init__(KIND_STRUCT, sum(m[3].size for m in members), len(members))
        self.cls, self.label, self.members = cls, label, tuple(members)

    def type_name(self) -> str:
        return self.label or "struct"

    def check(self, value: object) -> None:
        if type(value) is not self.cls:
            raise BadValue(f"expected {self.type_name()}, {_got(value)}")

    def encode_into(self, value: object, buf: bytearray, at: int) -> None:
        self.check(value)
        name = ""
        try:
            for name, _, offset, node in self.members:
                node.encode_into(getattr(value, name), buf, at + offset)
        except BadValue as exc:
            exc.parts.append(name)
            raise

    def decode(self, mv: memoryview, at: int, as_dict: bool) -> object:
        values: dict[str, object] = {}
        for name, alias, offset, node in self.members:
            try:
                values[name if as_dict else alias] = node.decode(mv, at + offset, as_dict)
            except BadValue as exc:
                exc.parts.append(name)
                raise
        if as_dict or self.cls is None:
            return values
        try:
            return self.cls(**values)
        except Exception as exc:  # the class's own validators: report it like any damage
            _stored(f"{self.type_name()} rejected the stored fields: {exc}")

    def diff(self, old: object, new: object, at: int, out: Patches) -> None:
        if new is old:
            return
        self.check(new)
        if type(old) is not self.cls:
            out.append((at, self.to_bytes(new)))
            return
        name = ""
        try:
            for name, _, offset, node in self.members:
                was, value = getattr(old, name), getattr(new, name)
                if was is not value:  # attrs.evolve keeps unchanged fields by reference
                    node.diff(was, value, at + offset, out)
        except BadValue as exc:
            exc.parts.append(name)
            raise


def merge_patches(out: Patches) -> Patches:
    """``out`` (in offset order) with adjacent patches joined into one."""
    if len(out) < 2:
        return out
    merged: Patches = []
    start, first = out[0]
    run = [first]
    end = start + len(first)
    for offset, data in out[1:]:
        if offset == end:
            run.append(data)
        else:
            merged.append((start, run[0] if len(run) == 1 else b"".join(run)))
            start, run = offset, [data]
        end = offset + len(data)
    merged.append((start, run[0] if len(run) == 1 else b"".join(run)))
    return merged


def invalid_value(exc: BadValue) -> InvalidValue:
    """The public error for ``exc``, its field path joined ("inner.x", "hist[2]")."""
    path = ""
    for part in reversed(exc.parts):
        path += part if part.startswith("[") or not path else "." + part
    return InvalidValue(path or "<root>", exc.message)


def _leaves(node: Node, path: str, at: int, out: list[FieldInfo]) -> list[FieldInfo]:
    if isinstance(node, StructNode):
        for name, _, offset, child in node.members:
            _leaves(child, f"{path}.{name}" if path else name, at + offset, out)
    else:
        out.append(FieldInfo(path, node.type_name(), at, node.size))
    return out


# --- what every schema shares ------------------------------------------------------------------


class Layout:
    """What a class schema and a schema read from a descriptor share: ``root`` is the tree."""

    def __init__(self, root: StructNode, descriptor: bytes) -> None:
        self.root: StructNode = root
        self._fields = _leaves(root, "", 0, [])
        self.size: int = root.size
        self.descriptor: bytes = descriptor
        self.root_name: str = root.type_name()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.root_name}: {self.size} bytes>"

    def fields(self) -> list[FieldInfo]:
        """The leaves in offset order; an array is one leaf, nested structs are flattened."""
        return list(self._fields)

    def _decode(self, data: bytes | bytearray | memoryview, as_dict: bool) -> object:
        with memoryview(data) as view, view.cast("B") as mv:  # released: no export outlives us
            try:
                if mv.nbytes != self.size:
                    _stored(f"expected {self.size} bytes, got {mv.nbytes}")
                return self.root.decode(mv, 0, as_dict)
            except BadValue as exc:
                raise invalid_value(exc) from None

    def decode_dict(self, data: bytes | bytearray | memoryview) -> dict[str, object]:
        """Decode a state image of exactly ``size`` bytes into nested dicts, tuples and values.

        Raises:
            InvalidValue: the bytes form no valid value ("stored value is invalid: ...").
        """
        result = self._decode(data, True)
        assert isinstance(result, dict)
        return result
