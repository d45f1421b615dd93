"""The compiler: an attrs class in, a ``Schema`` (its layout tree and descriptor) out.

What belongs here: ``compile_schema`` (reading a class's fields and markers into layout nodes,
with an error naming the field and the fix for anything that cannot be stored), ``Schema``
(encoding, decoding and diffing the class's instances with that tree) and ``check_frozen``.
The markers are in ``_markers``, the nodes in ``_layout``, the descriptor in ``_descriptor``.
Everything is pure: bytes in, values out. ``docs/schema.md`` is the spec; names match it.
"""

from __future__ import annotations

import typing
from typing import Annotated, Any

import attrs

from journalstate._codegen import DiffFunction, diff_function
from journalstate._descriptor import encode_descriptor
from journalstate._errors import SchemaError
from journalstate._layout import (
    KIND_BOOL,
    KIND_BYTES,
    KIND_FLOAT,
    KIND_INT,
    KIND_STR,
    KIND_UINT,
    MAX_COUNT,
    MAX_DEPTH,
    MAX_NAME_LENGTH,
    MAX_NODES,
    MAX_STATE_SIZE,
    ArrayNode,
    BadValue,
    BlobNode,
    Layout,
    Member,
    Node,
    Patches,
    ScalarNode,
    StructNode,
    invalid_value,
    merge_patches,
)
from journalstate._markers import MARKED, MARKERS, Array, Boolean, Bytes, Float, Int, Str

# MAX_STATE_SIZE: the header reader (_header) bounds a file's state size by it too.
__all__ = ["MAX_STATE_SIZE", "Schema", "check_frozen", "compile_schema"]

# --- schemas -----------------------------------------------------------------------------------


class Schema(Layout):
    """A compiled attrs class: encodes, decodes and diffs its instances. See compile_schema()."""

    diff: DiffFunction
    """``diff(old, new)``: patches (state offset, bytes), in offset order, turning encode(old)
    into encode(new).

    The commit hot path: O(changed). Fields are compared by identity first and only the
    leaves that changed are validated, so ``old`` must be a value this schema encoded or
    decoded. Adjacent patches are merged; ``diff(x, x) == []``. Generated for the class
    (``_codegen``); :meth:`walk_diff` is the generic walk it is held to.

    Raises:
        InvalidValue: a changed leaf does not fit, or ``new`` is not exactly a ``cls``.
    """

    def __init__(self, cls: type, root: StructNode) -> None:
        super().__init__(root, encode_descriptor(root))
        self.cls: type = cls
        self.diff = diff_function(root, self.walk_diff)

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
            self.root.encode_into(value, buf, 0)
        except BadValue as exc:
            raise invalid_value(exc) from None
        return bytes(buf)

    def decode(self, data: bytes | bytearray | memoryview) -> object:
        """An instance of ``cls`` from a state image of exactly ``size`` bytes.

        Raises:
            InvalidValue: the bytes form no valid value ("stored value is invalid: ...").
        """
        return self._decode(data, False)

    def walk_diff(self, old: object, new: object) -> Patches:
        """What :attr:`diff` returns, by the generic walk of the layout tree (the reference).

        Raises:
            InvalidValue: a changed leaf does not fit, or ``new`` is not exactly a ``cls``.
        """
        out: Patches = []
        try:
            self.root.diff(old, new, 0, out)
        except BadValue as exc:
            raise invalid_value(exc) from None
        return merge_patches(out)


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
    pending: list[tuple[Node, str]] = [(schema.root, "")]
    while pending:
        node, path = pending.pop()
        if isinstance(node, ArrayNode):
            pending.append((node.element, path + "[]"))
        elif isinstance(node, StructNode) and node.cls is not None:
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


def _count_nodes(node: Node) -> int:
    """Nodes of the descriptor ``node`` is written as: itself and everything below it."""
    if isinstance(node, StructNode):
        return 1 + sum(_count_nodes(m[3]) for m in node.members)
    if isinstance(node, ArrayNode):
        return 1 + _count_nodes(node.element)
    return 1


def _struct_node(cls: type, path: str, depth: int, seen: tuple[type, ...]) -> StructNode:
    where = f"field {path!r}: " if path else ""
    if cls in seen:
        raise SchemaError(f"{where}{cls.__qualname__} contains itself; it has no fixed size")
    try:
        hints = typing.get_type_hints(cls, include_extras=True)
    except Exception as exc:  # NameError and friends, from string annotations
        msg = f"{where}cannot resolve the annotations of {cls.__qualname__}: {exc}"
        raise SchemaError(msg) from exc
    members: list[Member] = []
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
    return StructNode(cls, label, members)


def _count(value: object, what: str, where: str) -> int:
    if type(value) is not int or not 1 <= value <= MAX_COUNT:
        raise SchemaError(f"{where}: {what} must be an int from 1 to 2**31, not {value!r}")
    return value


def _node_for(ann: Any, path: str, depth: int, seen: tuple[type, ...]) -> Node:
    where = f"field {path!r}"
    if depth > MAX_DEPTH:
        raise SchemaError(f"{where}: nested deeper than {MAX_DEPTH} levels")
    base, marks = ann, []
    if isinstance(ann, MARKERS):  # a bare marker, handy for elements: Array(Str(8), 4)
        base, marks = MARKED[type(ann)], [ann]
    elif typing.get_origin(ann) is Annotated:
        base, *meta = typing.get_args(ann)
        marks = [m for m in meta if isinstance(m, MARKERS)]
    if len(marks) > 1:
        raise SchemaError(f"{where}: several journalstate markers ({marks}); keep one")
    if not marks:
        if base is bool:
            return ScalarNode(KIND_BOOL, 1)
        if typing.get_origin(base) is None and isinstance(base, type) and attrs.has(base):
            return _struct_node(base, path, depth, seen)
        raise SchemaError(f"{where}: {_advice(base)}")
    mark, wanted = marks[0], MARKED[type(marks[0])]
    if (typing.get_origin(base) or base) is not wanted:
        raise SchemaError(f"{where}: {type(mark).__name__} marks a {wanted.__name__} field")
    if isinstance(mark, Int) and mark.width in (1, 2, 4, 8) and type(mark.signed) is bool:
        return ScalarNode(KIND_INT if mark.signed else KIND_UINT, mark.width)
    if isinstance(mark, Float) and mark.width in (4, 8):
        return ScalarNode(KIND_FLOAT, mark.width)
    if isinstance(mark, Boolean):
        return ScalarNode(KIND_BOOL, 1)
    if isinstance(mark, Str | Bytes):
        kind = KIND_STR if isinstance(mark, Str) else KIND_BYTES
        return BlobNode(kind, _count(mark.capacity, "the capacity", where))
    if isinstance(mark, Array):
        length = _count(mark.length, "the array length", where)
        return ArrayNode(_node_for(mark.element, path + "[]", depth + 1, seen), length)
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
