"""The public view of a schema: its fields with their kinds, offsets and sizes, as frozen values.

What belongs here: :func:`schema_info` and the values it returns. It reads a schema descriptor
(a compiled class's, or the one stored in a file's header) back into the layout tree
(``_descriptor``, ``_layout``) and copies that into public attrs values, so callers never see
the node classes, and every source of the same schema gives equal values. Nothing here writes.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from typing import Any

import attrs

from journalstate._descriptor import decode_descriptor
from journalstate._errors import NoSuchField, Unrecoverable
from journalstate._format import ValueEnum
from journalstate._header import (
    HEADER_CRC_OFFSET,
    HEADER_FIXED_SIZE,
    MAX_SCHEMA_LENGTH,
    decode_header,
)
from journalstate._io import OsStorage
from journalstate._layout import (
    KIND_ARRAY,
    KIND_BOOL,
    KIND_BYTES,
    KIND_FLOAT,
    KIND_INT,
    KIND_STR,
    KIND_STRUCT,
    KIND_UINT,
    ArrayNode,
    Node,
    StructNode,
)
from journalstate._schema import compile_schema
from journalstate._store import Store


class FieldKind(ValueEnum):
    """What a field holds; the same kinds as the descriptor's (docs/format.md)."""

    INT = "int"
    """A signed (two's complement) little-endian integer of ``size`` bytes."""
    UINT = "uint"
    """An unsigned little-endian integer of ``size`` bytes."""
    FLOAT = "float"
    """An IEEE 754 float: f32 (``size`` 4) or f64 (``size`` 8)."""
    BOOL = "bool"
    """One byte, 0 or 1."""
    STR = "str"
    """A u32 length, then ``capacity`` bytes: UTF-8 text and zero fill."""
    BYTES = "bytes"
    """A u32 length, then ``capacity`` bytes: data and zero fill."""
    ARRAY = "array"
    """``length`` elements back to back, each laid out as ``element``."""
    STRUCT = "struct"
    """A nested attrs class: its ``fields`` inline, in declaration order."""


_KINDS = {
    KIND_INT: FieldKind.INT,
    KIND_UINT: FieldKind.UINT,
    KIND_FLOAT: FieldKind.FLOAT,
    KIND_BOOL: FieldKind.BOOL,
    KIND_STR: FieldKind.STR,
    KIND_BYTES: FieldKind.BYTES,
    KIND_ARRAY: FieldKind.ARRAY,
    KIND_STRUCT: FieldKind.STRUCT,
}


@attrs.frozen
class FieldLayout:
    """One field of a schema and where its bytes are in the state image.

    The state image is the ``size``-byte encoding of a whole state, as a slot stores it after
    its head (docs/format.md); ``offset`` counts from its first byte.
    """

    name: str
    """The attribute name; ``"[i]"`` for element ``i`` of an array."""
    path: str
    """The dotted path from the root: ``"step"``, ``"inner.points[0].x"``."""
    kind: FieldKind
    type_name: str
    """The type as ``journalstate info`` shows it: ``"u64"``, ``"str[32]"``, ``"u16[4]"``,
    ``"Point[3]"``. The file stores the class name of an array's elements but not of a nested
    class field, so such a field's type is ``"struct"``."""
    offset: int
    """First byte in the state image."""
    size: int
    """Bytes in the state image (for str and bytes: the 4-byte length plus the capacity)."""
    capacity: int | None = None
    """For str and bytes: the most data bytes the field holds (UTF-8 bytes for str)."""
    length: int | None = None
    """For an array: the number of elements."""
    element: FieldLayout | None = None
    """For an array: the layout of its first element (element ``i`` is ``i * element.size``
    bytes further; see :meth:`item`)."""
    fields: tuple[FieldLayout, ...] = ()
    """For a nested class: its fields, in declaration (and offset) order."""

    def item(self, index: int) -> FieldLayout:
        """The layout of element ``index`` of this array (negative indexes count from the end).

        Raises:
            NoSuchField: this is not an array, or ``index`` is out of range.
        """
        if self.element is None or self.length is None:
            where = f"{self.path}[{index}]"
            raise NoSuchField(where, f"{self.path} is {self.type_name}, not an array")
        if not -self.length <= index < self.length:
            raise NoSuchField(
                f"{self.path}[{index}]", f"index out of range for {self.length} elements"
            )
        index %= self.length
        moved = _moved(self.element, index * self.element.size, f"{self.path}[{index}]")
        return attrs.evolve(moved, name=f"[{index}]")

    def walk(self) -> Iterator[FieldLayout]:
        """This field, then every field inside it, in pre-order (an array's element once)."""
        yield self
        if self.element is not None:
            yield from self.element.walk()
        for child in self.fields:
            yield from child.walk()


@attrs.frozen
class SchemaInfo:
    """The layout of a schema: its root class name, state size and fields."""

    name: str
    """The root class's name (its ``__qualname__`` when the schema was written)."""
    size: int
    """Bytes of the state image."""
    fields: tuple[FieldLayout, ...]
    """The root class's fields, in declaration (and offset) order."""

    def field(self, path: str) -> FieldLayout:
        """The field at a dotted path: ``"step"``, ``"inner.x"``, ``"hist[2]"``, ``"a.b[1][0].c"``.

        Raises:
            NoSuchField: no field has that path, or an index is out of range.
        """
        node: FieldLayout | None = None
        for part in path.split("."):
            match = _PART.fullmatch(part)
            if match is None:
                raise NoSuchField(path, f"{part!r} is not a field name with optional [index]es")
            if node is not None and node.kind is not FieldKind.STRUCT:
                raise NoSuchField(path, f"{node.path} is {node.type_name}, which has no fields")
            fields = self.fields if node is None else node.fields
            found = next((f for f in fields if f.name == match[1]), None)
            if found is None:
                where = self.name if node is None else node.path
                have = ", ".join(f.name for f in fields)
                raise NoSuchField(path, f"{where} has no field {match[1]!r} (it has {have})")
            node = found
            for index in re.findall(r"\[(-?\d+)\]", match[2]):
                node = node.item(int(index))
        assert node is not None  # split() gives at least one part, and each one matched
        return node

    def walk(self) -> Iterator[FieldLayout]:
        """Every field in pre-order: each top-level field, then what it contains."""
        for child in self.fields:
            yield from child.walk()


_PART = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)((?:\[-?\d+\])*)")


def _moved(node: FieldLayout, delta: int, path: str) -> FieldLayout:
    """``node`` (and everything in it) ``delta`` bytes further, renamed to ``path``."""
    element = None if node.element is None else _moved(node.element, delta, f"{path}[0]")
    return attrs.evolve(
        node,
        path=path,
        offset=node.offset + delta,
        element=element,
        fields=tuple(_moved(f, delta, f"{path}.{f.name}") for f in node.fields),
    )


def _layout(node: Node, name: str, path: str, offset: int) -> FieldLayout:
    kind = _KINDS[node.kind]
    base = FieldLayout(name, path, kind, node.type_name(), offset, node.size)
    if isinstance(node, ArrayNode):
        element = _layout(node.element, "[0]", f"{path}[0]", offset)
        return attrs.evolve(base, length=node.param, element=element)
    if isinstance(node, StructNode):
        return attrs.evolve(base, fields=_members(node, path, offset))
    if kind in (FieldKind.STR, FieldKind.BYTES):
        return attrs.evolve(base, capacity=node.param)
    return base


def _members(node: StructNode, path: str, offset: int) -> tuple[FieldLayout, ...]:
    return tuple(
        _layout(child, name, f"{path}.{name}" if path else name, offset + at)
        for name, _, at, child in node.members
    )


def _info(root: StructNode) -> SchemaInfo:
    return SchemaInfo(root.type_name(), root.size, _members(root, "", 0))


def schema_info(source: type | Store[Any] | str | os.PathLike[str]) -> SchemaInfo:
    """The layout of a schema: from an attrs class, an open store, or a store file's header.

    A file is read without its class: only its header (the stored schema) is read, without
    the writer lock and without recovery, so this works beside a live writer and on a store
    whose slots or journal are damaged.

    Args:
        source: an attrs schema class, a :class:`Store` (open or closed), or the path of a
            store file.

    Returns:
        Frozen values; the same schema gives equal values whichever way it was reached.

    Raises:
        SchemaError: ``source`` is a class that cannot be a schema (or not a class at all).
        StoreNotFound, NotAStore, TruncatedStore, UnsupportedVersion, UnsafePath,
        StoreFileError: the path is not a readable store file.
        Unrecoverable: the file's header or stored schema is damaged.
    """
    if isinstance(source, (str, os.PathLike)):
        return _from_file(os.fspath(source))
    schema = source.schema if isinstance(source, Store) else compile_schema(source)
    # Read back from the descriptor, as for a file, so every source gives equal values.
    return _info(decode_descriptor(schema.descriptor).root)


def _from_file(path: str) -> SchemaInfo:
    file = OsStorage().open(path, writable=False)
    try:
        file_size = file.size
        head = file.read(0, HEADER_FIXED_SIZE)
        if len(head) >= HEADER_FIXED_SIZE:
            # The descriptor's length is the u32 before the header crc; a hostile one is capped.
            length = int.from_bytes(head[HEADER_CRC_OFFSET - 4 : HEADER_CRC_OFFSET], "little")
            head = file.read(0, HEADER_FIXED_SIZE + min(length, MAX_SCHEMA_LENGTH, file_size))
        header = decode_header(path, head, file_size)
    finally:
        file.close()
    try:
        layout = decode_descriptor(header.schema)
    except ValueError as e:
        raise Unrecoverable(path, f"the stored schema is unusable: {e}", offset=0) from e
    if layout.size != header.state_size:
        raise Unrecoverable(
            path,
            f"the stored schema describes {layout.size} bytes, the header says {header.state_size}",
            offset=0,
        )
    return _info(layout.root)
