"""The state schema: attrs class <-> fixed-size bytes, and the descriptor that describes it.

What belongs here: the field markers (``U64``, ``Str(32)``, ``Array(...)``...), compiling an attrs
class into a tree of layout nodes, encoding, decoding and diffing values with that tree, and the
descriptor (the same tree as bytes, stored in the file header) with its hostile-input decoder.
Everything is pure: bytes in, values out. ``docs/schema.md`` is the spec; names match it.
"""

from __future__ import annotations

import abc
import itertools
import operator
import struct
import typing
from typing import Annotated, Any, Final, NoReturn, TypeAlias

import attrs

from journalstate._errors import InvalidValue, SchemaError

# --- descriptor format -------------------------------------------------------------------------

# kind u8, reserved u8 (0), name_len u16, offset u32 (within the enclosing struct), size u32
# (encoded bytes), param u32 (capacity, array length or field count); then name_len name bytes.
NODE_HEAD_FMT: Final = "<BBHIII"
NODE_HEAD_SIZE: Final = 16
assert struct.calcsize(NODE_HEAD_FMT) == NODE_HEAD_SIZE
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

_HEAD: Final = struct.Struct(NODE_HEAD_FMT)
_U32: Final = struct.Struct("<I")
_F32: Final = struct.Struct("<f")
_F64: Final = struct.Struct("<d")
_ZERO_PAGE: Final = memoryview(bytes(4096))

# --- markers (eq=False: typing caches Annotated[...] by ==, and Str(1) == Str(True)) -----------


@attrs.frozen(eq=False)
class Int:
    """Marks an int field stored in ``width`` bytes (1, 2, 4 or 8), two's complement if signed."""

    width: int
    signed: bool


@attrs.frozen(eq=False)
class Float:
    """Marks a float field stored as IEEE f32 (``width`` 4) or f64 (``width`` 8)."""

    width: int


@attrs.frozen(eq=False)
class Boolean:
    """Marks a bool field: one byte, 0 or 1. A plain ``bool`` annotation means the same."""


@attrs.frozen(eq=False)
class Str:
    """Marks a str field holding at most ``capacity`` bytes of UTF-8."""

    capacity: int


@attrs.frozen(eq=False)
class Bytes:
    """Marks a bytes field holding at most ``capacity`` bytes."""

    capacity: int


@attrs.frozen(eq=False)
class Array:
    """Marks a tuple field of exactly ``length`` elements, each as ``element`` says."""

    element: Any
    length: int


U8: TypeAlias = Annotated[int, Int(1, False)]
U16: TypeAlias = Annotated[int, Int(2, False)]
U32: TypeAlias = Annotated[int, Int(4, False)]
U64: TypeAlias = Annotated[int, Int(8, False)]
I8: TypeAlias = Annotated[int, Int(1, True)]
I16: TypeAlias = Annotated[int, Int(2, True)]
I32: TypeAlias = Annotated[int, Int(4, True)]
I64: TypeAlias = Annotated[int, Int(8, True)]
F32: TypeAlias = Annotated[float, Float(4)]
F64: TypeAlias = Annotated[float, Float(8)]
Bool: TypeAlias = Annotated[bool, Boolean()]
_MARKERS: Final = (Int, Float, Boolean, Str, Bytes, Array)
_MARKED: Final[dict[type, type]] = {
    Int: int,
    Float: float,
    Boolean: bool,
    Str: str,
    Bytes: bytes,
    Array: tuple,
}


def f32_round(x: float) -> float:
    """The f32 value nearest ``x``: what an F32 field can hold. OverflowError beyond f32 range."""
    return float(_F32.unpack(_F32.pack(x))[0])


@attrs.frozen
class FieldInfo:
    """One leaf of a schema (an array is one leaf), with its offset in the encoded state."""

    path: str
    type_name: str
    offset: int
    size: int


# --- the layout tree ---------------------------------------------------------------------------

Patches: TypeAlias = list[tuple[int, bytes]]  # (state offset, new bytes), in offset order


class _Bad(Exception):
    """A value does not fit; ``parts`` collects the path, innermost first, as it propagates."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message
        self.parts: list[str] = []


def _got(value: object) -> str:
    return f"got {type(value).__qualname__}"


def _stored(message: str) -> NoReturn:
    raise _Bad(f"stored value is invalid: {message}")


class _Node(abc.ABC):
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


class _Scalar(_Node):
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
            raise _Bad(f"expected {self.pytype.__name__}, {_got(value)}{hint}")
        if self.kind != KIND_FLOAT:
            assert isinstance(value, int)
            if not self.lo <= value <= self.hi:
                raise _Bad(f"{value} is out of range for {self.type_name()} ({self.lo}..{self.hi})")
            return self.st.pack(value)
        try:
            packed = self.st.pack(value)
        except OverflowError:
            raise _Bad(f"{value!r} is too large for f32") from None
        if self.size == 4 and _F64.pack(self.st.unpack(packed)[0]) != _F64.pack(value):
            raise _Bad(f"{value!r} is not representable as f32; round it with js.f32_round(x)")
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


class _Blob(_Node):
    """Str or Bytes: u32 length, then ``param`` bytes of data and zero fill."""

    __slots__ = ()

    def __init__(self, kind: int, capacity: int) -> None:
        super().__init__(kind, 4 + capacity, capacity)

    def type_name(self) -> str:
        return f"{'str' if self.kind == KIND_STR else 'bytes'}[{self.param}]"

    def raw(self, value: object) -> bytes:
        if self.kind == KIND_BYTES:
            if type(value) is not bytes:
                raise _Bad(f"expected bytes, {_got(value)}")
            data, unit = value, "bytes"
        else:
            if type(value) is not str:
                raise _Bad(f"expected str, {_got(value)}")
            try:
                data, unit = value.encode(), "bytes of UTF-8"
            except UnicodeEncodeError as exc:
                raise _Bad(f"text cannot be encoded as UTF-8: {exc.reason}") from None
        if len(data) > self.param:
            raise _Bad(f"{len(data)} {unit} is more than the capacity of {self.param}")
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
        except _Bad:  # not a valid old value: clear the whole capacity
            old_length = self.param
        # The length, the data and zeros over the rest of the old data; the fill is still zero.
        zeros = bytes(max(old_length - len(data), 0))
        out.append((at, _U32.pack(len(data)) + data + zeros))


class _Array(_Node):
    __slots__ = ("element",)

    def __init__(self, element: _Node, length: int) -> None:
        super().__init__(KIND_ARRAY, length * element.size, length)
        self.element = element

    def type_name(self) -> str:
        return f"{self.element.type_name()}[{self.param}]"

    def check(self, value: object) -> tuple[object, ...]:
        if type(value) is not tuple or len(value) != self.param:
            got = f"a tuple of {len(value)}" if type(value) is tuple else type(value).__qualname__
            element = self.element.type_name()
            raise _Bad(f"expected a tuple of {self.param} {element}, got {got}")
        return value

    def encode_into(self, value: object, buf: bytearray, at: int) -> None:
        items, step, i = self.check(value), self.element.size, 0
        try:
            for i, item in enumerate(items):
                self.element.encode_into(item, buf, at + i * step)
        except _Bad as exc:
            exc.parts.append(f"[{i}]")
            raise

    def decode(self, mv: memoryview, at: int, as_dict: bool) -> object:
        step, items = self.element.size, []
        for i in range(self.param):
            try:
                items.append(self.element.decode(mv, at + i * step, as_dict))
            except _Bad as exc:
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
        except _Bad as exc:
            exc.parts.append(f"[{i}]")
            raise


_Member: TypeAlias = tuple[str, str, int, _Node]  # attribute name, __init__ name, offset, node


class _Struct(_Node):
    """Fields inline. ``cls`` is None when read from a descriptor; ``label`` names the type."""

    __slots__ = ("cls", "label", "members")

    def __init__(self, cls: type | None, label: str | None, members: list[_Member]) -> None:
        super().__init__(KIND_STRUCT, sum(m[3].size for m in members), len(members))
        self.cls, self.label, self.members = cls, label, tuple(members)

    def type_name(self) -> str:
        return self.label or "struct"

    def check(self, value: object) -> None:
        if type(value) is not self.cls:
            raise _Bad(f"expected {self.type_name()}, {_got(value)}")

    def encode_into(self, value: object, buf: bytearray, at: int) -> None:
        self.check(value)
        name = ""
        try:
            for name, _, offset, node in self.members:
                node.encode_into(getattr(value, name), buf, at + offset)
        except _Bad as exc:
            exc.parts.append(name)
            raise

    def decode(self, mv: memoryview, at: int, as_dict: bool) -> object:
        values: dict[str, object] = {}
        for name, alias, offset, node in self.members:
            try:
                values[name if as_dict else alias] = node.decode(mv, at + offset, as_dict)
            except _Bad as exc:
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
        except _Bad as exc:
            exc.parts.append(name)
            raise


def _invalid(exc: _Bad) -> InvalidValue:
    path = ""
    for part in reversed(exc.parts):
        path += part if part.startswith("[") or not path else "." + part
    return InvalidValue(path or "<root>", exc.message)


def _leaves(node: _Node, path: str, at: int, out: list[FieldInfo]) -> list[FieldInfo]:
    if isinstance(node, _Struct):
        for name, _, offset, child in node.members:
            _leaves(child, f"{path}.{name}" if path else name, at + offset, out)
    else:
        out.append(FieldInfo(path, node.type_name(), at, node.size))
    return out


def _emit(node: _Node, name: str, offset: int, out: list[bytes]) -> list[bytes]:
    raw = name.encode()
    out.append(_HEAD.pack(node.kind, 0, len(raw), offset, node.size, node.param) + raw)
    if isinstance(node, _Array):
        element = node.element
        _emit(element, (element.label or "") if isinstance(element, _Struct) else "", 0, out)
    elif isinstance(node, _Struct):
        for field_name, _, field_offset, child in node.members:
            _emit(child, field_name, field_offset, out)
    return out


# --- schemas -----------------------------------------------------------------------------------


class _Layout:
    """What a class schema and a schema read from a descriptor share."""

    def __init__(self, root: _Struct, descriptor: bytes) -> None:
        self._root = root
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
                return self._root.decode(mv, 0, as_dict)
            except _Bad as exc:
                raise _invalid(exc) from None

    def decode_dict(self, data: bytes | bytearray | memoryview) -> dict[str, object]:
        """Decode a state image of exactly ``size`` bytes into nested dicts, tuples and values.

        Raises:
            InvalidValue: the bytes form no valid value ("stored value is invalid: ...").
        """
        result = self._decode(data, True)
        assert isinstance(result, dict)
        return result


class Schema(_Layout):
    """A compiled attrs class: encodes, decodes and diffs its instances. See compile_schema()."""

    def __init__(self, cls: type, root: _Struct) -> None:
        super().__init__(root, b"".join(_emit(root, root.type_name(), 0, [])))
        self.cls: type = cls

    def default(self) -> object:
        """``cls()``, the initial state when none is given.

        Raises:
            SchemaError: some field has no default.
        """
        missing = [f.name for f in attrs.fields(self.cls) if f.default is attrs.NOTHING]
        if missing:
            raise SchemaError(
                f"{self.cls.__qualname__} has fields without a default ({', '.join(missing)}); "
                "give initial=... or add defaults"
            )
        return self.cls()

    def encode(self, value: object) -> bytes:
        """The full state image of ``value``, validating every field.

        Raises:
            InvalidValue: a field does not fit; ``field`` is its path ("inner.x", "hist[2]").
        """
        buf = bytearray(self.size)
        try:
            self._root.encode_into(value, buf, 0)
        except _Bad as exc:
            raise _invalid(exc) from None
        return bytes(buf)

    def decode(self, data: bytes | bytearray | memoryview) -> object:
        """An instance of ``cls`` from a state image of exactly ``size`` bytes.

        Raises:
            InvalidValue: the bytes form no valid value ("stored value is invalid: ...").
        """
        return self._decode(data, False)

    def diff(self, old: object, new: object) -> Patches:
        """Patches (state offset, bytes), in offset order, turning encode(old) into encode(new).

        The commit hot path: O(changed). Fields are compared by identity first and only the
        leaves that changed are validated, so ``old`` must be a value this schema encoded or
        decoded. Adjacent patches are merged; ``diff(x, x) == []``.

        Raises:
            InvalidValue: a changed leaf does not fit, or ``new`` is not exactly a ``cls``.
        """
        out: Patches = []
        try:
            self._root.diff(old, new, 0, out)
        except _Bad as exc:
            raise _invalid(exc) from None
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


class DynamicSchema(_Layout):
    """A schema read from a descriptor, without its class: decodes states into dicts."""


# --- compiling classes -------------------------------------------------------------------------

_compiled: dict[type, Schema] = {}


def compile_schema(cls: type) -> Schema:
    """The schema of an attrs class, compiled once and cached.

    Raises:
        SchemaError: the class cannot be stored; the message names the field and the fix.
    """
    if not (isinstance(cls, type) and attrs.has(cls)):
        raise SchemaError(f"{cls!r} is not an attrs class; decorate it with @attrs.frozen")
    schema = _compiled.get(cls)
    if schema is None:
        root = _struct_node(cls, "", 0, ())
        if root.size > MAX_STATE_SIZE:
            raise SchemaError(
                f"{cls.__qualname__} is {root.size} bytes; a state is at most 2**24 bytes"
            )
        nodes = _count_nodes(root)
        if nodes > MAX_NODES:
            raise SchemaError(
                f"{cls.__qualname__} has {nodes} fields (nested ones and array elements count); "
                f"a schema has at most {MAX_NODES}"
            )
        schema = _compiled[cls] = Schema(cls, root)
    return schema


def check_frozen(schema: Schema) -> None:
    """Refuse a schema whose class, or any class nested in it, is not frozen.

    A store keeps the state object it was given: an instance changed in place would change
    the store's current state too, so the next commit would see no difference and write
    nothing.

    Raises:
        SchemaError: names the first mutable class and its field path.
    """
    pending: list[tuple[_Node, str]] = [(schema._root, "")]
    while pending:
        node, path = pending.pop()
        if isinstance(node, _Array):
            pending.append((node.element, path + "[]"))
        elif isinstance(node, _Struct) and node.cls is not None:
            if not _is_frozen(node.cls):
                where = f" (field {path!r})" if path else ""
                raise SchemaError(
                    f"{node.cls.__qualname__}{where} is a mutable attrs class: a state changed "
                    "in place would never be committed; use @attrs.frozen"
                )
            pending.extend((m[3], f"{path}.{m[0]}" if path else m[0]) for m in node.members)


def _is_frozen(cls: type) -> bool:
    props = getattr(cls, "__attrs_props__", None)  # attrs 25.4 and later
    if props is not None:
        return bool(props.is_frozen)
    return getattr(cls.__setattr__, "__name__", "") == "_frozen_setattrs"


def _count_nodes(node: _Node) -> int:
    """Nodes of the descriptor ``node`` is written as: itself and everything below it."""
    if isinstance(node, _Struct):
        return 1 + sum(_count_nodes(m[3]) for m in node.members)
    if isinstance(node, _Array):
        return 1 + _count_nodes(node.element)
    return 1


def _struct_node(cls: type, path: str, depth: int, seen: tuple[type, ...]) -> _Struct:
    where = f"field {path!r}: " if path else ""
    if cls in seen:
        raise SchemaError(f"{where}{cls.__qualname__} contains itself; it has no fixed size")
    try:
        hints = typing.get_type_hints(cls, include_extras=True)
    except Exception as exc:  # NameError and friends, from string annotations
        msg = f"{where}cannot resolve the annotations of {cls.__qualname__}: {exc}"
        raise SchemaError(msg) from exc
    members: list[_Member] = []
    offset = 0
    for f in attrs.fields(cls):
        sub = f"{path}.{f.name}" if path else f.name
        if not f.init:
            raise SchemaError(f"field {sub!r}: init=False fields cannot be rebuilt when decoding")
        if len(f.name.encode()) > MAX_NAME_LENGTH:
            raise SchemaError(f"field {sub!r}: names are limited to {MAX_NAME_LENGTH} bytes")
        node = _node_for(hints.get(f.name, f.type), sub, depth + 1, (*seen, cls))
        members.append((f.name, f.alias or f.name, offset, node))
        offset += node.size
    if not members:
        raise SchemaError(f"{where}{cls.__qualname__} has no fields; a state needs at least one")
    label = cls.__qualname__.encode()[:MAX_NAME_LENGTH].decode(errors="ignore")
    return _Struct(cls, label, members)


def _count(value: object, what: str, where: str) -> int:
    if type(value) is not int or not 1 <= value <= MAX_COUNT:
        raise SchemaError(f"{where}: {what} must be an int from 1 to 2**31, not {value!r}")
    return value


def _node_for(ann: Any, path: str, depth: int, seen: tuple[type, ...]) -> _Node:
    where = f"field {path!r}"
    if depth > MAX_DEPTH:
        raise SchemaError(f"{where}: nested deeper than {MAX_DEPTH} levels")
    base, marks = ann, []
    if isinstance(ann, _MARKERS):  # a bare marker, handy for elements: Array(Str(8), 4)
        base, marks = _MARKED[type(ann)], [ann]
    elif typing.get_origin(ann) is Annotated:
        base, *meta = typing.get_args(ann)
        marks = [m for m in meta if isinstance(m, _MARKERS)]
    if len(marks) > 1:
        raise SchemaError(f"{where}: several journalstate markers ({marks}); keep one")
    if not marks:
        if base is bool:
            return _Scalar(KIND_BOOL, 1)
        if typing.get_origin(base) is None and isinstance(base, type) and attrs.has(base):
            return _struct_node(base, path, depth, seen)
        raise SchemaError(f"{where}: {_advice(base)}")
    mark, wanted = marks[0], _MARKED[type(marks[0])]
    if (typing.get_origin(base) or base) is not wanted:
        raise SchemaError(f"{where}: {type(mark).__name__} marks a {wanted.__name__} field")
    if isinstance(mark, Int) and mark.width in (1, 2, 4, 8) and type(mark.signed) is bool:
        return _Scalar(KIND_INT if mark.signed else KIND_UINT, mark.width)
    if isinstance(mark, Float) and mark.width in (4, 8):
        return _Scalar(KIND_FLOAT, mark.width)
    if isinstance(mark, Boolean):
        return _Scalar(KIND_BOOL, 1)
    if isinstance(mark, Str | Bytes):
        kind = KIND_STR if isinstance(mark, Str) else KIND_BYTES
        return _Blob(kind, _count(mark.capacity, "the capacity", where))
    if isinstance(mark, Array):
        length = _count(mark.length, "the array length", where)
        return _Array(_node_for(mark.element, path + "[]", depth + 1, seen), length)
    raise SchemaError(f"{where}: invalid marker {mark!r}; use js.U8 ... js.I64, js.F32, js.F64")


def _advice(base: Any) -> str:
    if base is None:
        return "no type annotation; annotate it, e.g. js.U64"
    if base is int:
        return "plain int has no fixed size; use js.U64, js.I64, js.U32, js.I32, ... js.U8, js.I8"
    if base is float:
        return "plain float has no fixed size; use js.F64 or js.F32"
    if base is str:
        return "str needs a capacity; use Annotated[str, js.Str(capacity_in_utf8_bytes)]"
    if base is bytes:
        return "bytes needs a capacity; use Annotated[bytes, js.Bytes(capacity)]"
    if (typing.get_origin(base) or base) in (tuple, list):
        return "arrays are fixed-length tuples; use Annotated[tuple[T, ...], js.Array(T, length)]"
    if isinstance(base, type):
        return f"{base.__qualname__} is not an attrs class; decorate it with @attrs.frozen"
    return f"unsupported annotation {base!r}; use js.U64, js.F64, js.Bool, Str, Bytes, Array"
