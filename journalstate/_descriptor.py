"""The schema descriptor: the layout tree as bytes, written for the file header and read back.

What belongs here: the descriptor's node head (``docs/schema.md``), writing a layout tree as a
descriptor, the parser that reads one back from a file that may be damaged or hostile (every
field checked before it is trusted, nothing allocated beyond the input's size), the schema it
gives (``DynamicSchema``, without a class) and the comparison that names the fields two layouts
differ in. The nodes themselves are in ``_layout``.
"""

from __future__ import annotations

import struct
from typing import Final, NoReturn

from journalstate._layout import (
    KIND_ARRAY,
    KIND_BOOL,
    KIND_BYTES,
    KIND_FLOAT,
    KIND_INT,
    KIND_STR,
    KIND_STRUCT,
    KIND_UINT,
    MAX_DEPTH,
    MAX_NAME_LENGTH,
    MAX_NODES,
    MAX_STATE_SIZE,
    ArrayNode,
    BlobNode,
    Layout,
    Member,
    Node,
    ScalarNode,
    StructNode,
)

# kind u8, reserved u8 (0), name_len u16, offset u32 (within the enclosing struct), size u32
# (encoded bytes), param u32 (capacity, array length or field count); then name_len name bytes.
NODE_HEAD_FMT: Final = "<BBHIII"
NODE_HEAD_SIZE: Final = 16
assert struct.calcsize(NODE_HEAD_FMT) == NODE_HEAD_SIZE

_HEAD: Final = struct.Struct(NODE_HEAD_FMT)


class DynamicSchema(Layout):
    """A schema read from a descriptor, without its class: decodes states into dicts."""


# --- writing descriptors -----------------------------------------------------------------------


def encode_descriptor(root: StructNode) -> bytes:
    """The descriptor of the layout tree ``root``: its nodes, depth first, in field order."""
    return b"".join(_emit(root, root.type_name(), 0, []))


def _emit(node: Node, name: str, offset: int, out: list[bytes]) -> list[bytes]:
    raw = name.encode()
    out.append(_HEAD.pack(node.kind, 0, len(raw), offset, node.size, node.param) + raw)
    if isinstance(node, ArrayNode):
        element = node.element
        _emit(element, (element.label or "") if isinstance(element, StructNode) else "", 0, out)
    elif isinstance(node, StructNode):
        for field_name, _, field_offset, child in node.members:
            _emit(child, field_name, field_offset, out)
    return out


# --- reading descriptors -----------------------------------------------------------------------


class _Parser:
    """Reads a descriptor that may be hostile: every length and count is checked before use."""

    def __init__(self, data: bytes) -> None:
        self.data, self.pos, self.nodes = data, 0, 0

    def fail(self, at: int, message: str) -> NoReturn:
        raise ValueError(f"schema descriptor: node at byte {at}: {message}")

    def node(self, depth: int, role: str) -> tuple[str, int, Node]:
        """The node at ``pos`` as (name, offset, node); ``role``: "root", "field", "element"."""
        at, data = self.pos, self.data
        if depth > MAX_DEPTH:
            self.fail(at, f"nested deeper than {MAX_DEPTH} levels")
        self.nodes += 1
        if self.nodes > MAX_NODES:  # bounds the cost of everything built from the descriptor
            self.fail(at, f"more than {MAX_NODES} nodes (fields and array elements)")
        if at + NODE_HEAD_SIZE > len(data):
            self.fail(at, "truncated node head")
        kind, reserved, name_len, offset, size, param = _HEAD.unpack_from(data, at)
        self.pos = end = at + NODE_HEAD_SIZE + name_len
        if reserved or name_len > MAX_NAME_LENGTH:
            self.fail(at, f"reserved byte is {reserved}, name length is {name_len} (at most 255)")
        if end > len(data):
            self.fail(at, "truncated: the name runs past the end")
        try:
            name = data[at + NODE_HEAD_SIZE : end].decode()
        except UnicodeDecodeError:
            self.fail(at, "name is not UTF-8")
        if role == "field" and not name.isidentifier():
            self.fail(at, f"field name {name!r} is not an identifier")
        if role != "field" and (offset or (name and kind != KIND_STRUCT)):
            self.fail(at, f"{role} node must have offset 0 and, unless a struct, no name")
        if size > MAX_STATE_SIZE:
            self.fail(at, f"size {size} is more than 2**24")
        if kind in (KIND_INT, KIND_UINT, KIND_FLOAT, KIND_BOOL):
            widths = {KIND_FLOAT: (4, 8), KIND_BOOL: (1,)}.get(kind, (1, 2, 4, 8))
            if size not in widths or param:
                self.fail(at, f"kind {kind} with size {size} and param {param}")
            return name, offset, ScalarNode(kind, size)
        if kind in (KIND_BYTES, KIND_STR):
            if param < 1 or size != 4 + param:
                self.fail(at, f"capacity {param} with size {size}")
            return name, offset, BlobNode(kind, param)
        if kind == KIND_ARRAY:
            if param < 1:
                self.fail(at, "array of length 0")
            element = self.node(depth + 1, "element")[2]
            if size != param * element.size:
                self.fail(at, f"size {size} is not {param} x {element.size}")
            return name, offset, ArrayNode(element, param)
        if kind != KIND_STRUCT:
            self.fail(at, f"unknown kind {kind}")
        label = None if role == "field" else name
        return name, offset, self.struct(at, depth, label, size, param)

    def struct(self, at: int, depth: int, label: str | None, size: int, param: int) -> StructNode:
        """The fields of the struct node whose head is at ``at``; ``pos`` is after that head."""
        data = self.data
        if not 1 <= param <= (len(data) - self.pos) // NODE_HEAD_SIZE:
            self.fail(at, f"struct of {param} fields in {len(data) - self.pos} bytes")
        members: list[Member] = []
        names: set[str] = set()
        expected = 0  # fields are packed in order: each starts where the previous one ends
        for _ in range(param):
            field_at = self.pos
            field_name, field_offset, child = self.node(depth + 1, "field")
            if field_name in names or field_offset != expected:
                self.fail(field_at, f"field {field_name!r} repeated or not at offset {expected}")
            names.add(field_name)
            members.append((field_name, field_name, field_offset, child))
            expected += child.size
        if size != expected:
            self.fail(at, f"struct size {size} is not the sum of its fields, {expected}")
        return StructNode(None, label, members)


def decode_descriptor(data: bytes | bytearray | memoryview) -> DynamicSchema:
    """Read a descriptor, from a file that may be damaged, into a schema without a class.

    Raises:
        ValueError: the descriptor is malformed; the message gives the byte offset.
    """
    raw = bytes(data)
    parser = _Parser(raw)
    _, _, root = parser.node(0, "root")
    if not isinstance(root, StructNode):
        parser.fail(0, f"the root is kind {root.kind}, not a struct")
    if parser.pos != len(raw):
        parser.fail(parser.pos, f"{len(raw) - parser.pos} trailing bytes after the root")
    return DynamicSchema(root, raw)


def compare_descriptors(expected: bytes, found: bytes) -> list[str]:
    """How the layout ``found`` (the file's) differs from ``expected`` (the schema's), by field.

    Empty means identical layouts; struct names (so class renames) are ignored.

    Raises:
        ValueError: ``expected`` itself is malformed.
    """
    want = decode_descriptor(expected).root
    try:
        have = decode_descriptor(found).root
    except ValueError as exc:
        return [f"root: the file's schema descriptor cannot be read ({exc})"]
    out: list[str] = []
    _compare(want, have, "", out)
    return out


def _compare(want: Node, have: Node, path: str, out: list[str]) -> None:
    if isinstance(want, StructNode) and isinstance(have, StructNode):
        ours = {m[0]: m for m in want.members}
        theirs = {m[0]: m for m in have.members}
        sub = {name: f"{path}.{name}" if path else name for name in {*ours, *theirs}}
        before = len(out)
        out += [
            f"field {sub[n]!r}: in the schema, not in the file" for n in ours if n not in theirs
        ]
        out += [
            f"field {sub[n]!r}: in the file, not in the schema" for n in theirs if n not in ours
        ]
        for name, _, _, node in want.members:
            if name in theirs:
                _compare(node, theirs[name][3], sub[name], out)
        if len(out) == before:  # same fields, same types: only their order can differ
            out += [
                f"field {sub[n]!r}: at offset {theirs[n][2]} in the file, {m[2]} in the schema"
                for n, m in ours.items()
                if theirs[n][2] != m[2]
            ]
    elif isinstance(want, ArrayNode) and isinstance(have, ArrayNode) and want.param == have.param:
        _compare(want.element, have.element, path + "[]", out)
    elif (want.kind, want.size, want.param) != (have.kind, have.size, have.param):
        label = f"field {path!r}" if path else "root"
        out.append(f"{label}: file has {have.type_name()}, schema has {want.type_name()}")
