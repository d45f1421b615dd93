"""Shared Hypothesis strategies: random schema classes, values for a schema, evolved values.

``schema_classes()`` builds attrs classes with ``attrs.make_class`` and the real markers (nested
classes and arrays included), every field with a default. ``values_for(schema)`` walks the
schema's layout tree, so it fits any schema, including hand-written ones. ``evolved(schema, old)``
makes a new value that keeps some of ``old``'s parts by reference, as ``attrs.evolve`` does.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import attrs
from hypothesis import strategies as st

from journalstate import _layout as lay
from journalstate import _markers as mk
from journalstate import _schema as s

_SCALARS: list[tuple[Any, object]] = [
    (mk.U8, 0),
    (mk.U16, 0),
    (mk.U32, 0),
    (mk.U64, 0),
    (mk.I8, 0),
    (mk.I16, 0),
    (mk.I32, 0),
    (mk.I64, 0),
    (mk.F32, 0.0),
    (mk.F64, 0.0),
    (mk.Bool, False),
    (bool, False),
]

Field = tuple[Any, object]  # (annotation, default)


def field_types(depth: int = 2) -> st.SearchStrategy[Field]:
    """An annotation and a default for it; arrays and nested classes down to ``depth`` levels."""
    leaves = st.one_of(
        st.sampled_from(_SCALARS),
        st.integers(1, 12).map(lambda n: (Annotated[str, mk.Str(n)], "")),
        st.integers(1, 12).map(lambda n: (Annotated[bytes, mk.Bytes(n)], b"")),
    )
    if depth == 0:
        return leaves
    inner = field_types(depth - 1)
    arrays = st.tuples(inner, st.integers(1, 4)).map(_array_field)
    structs = schema_classes(depth - 1).map(lambda cls: (cls, cls()))
    return st.one_of(leaves, arrays, structs)


def _array_field(arg: tuple[Field, int]) -> Field:
    (annotation, default), length = arg
    return Annotated[tuple[Any, ...], mk.Array(annotation, length)], (default,) * length


def schema_classes(depth: int = 2) -> st.SearchStrategy[type]:
    """Frozen attrs classes with 1 to 5 fields of random supported types."""
    return st.lists(field_types(depth), min_size=1, max_size=5).map(_make_class)


def _make_class(fields: list[Field]) -> type:
    attributes = {
        f"f{i}": attrs.field(type=annotation, default=default)
        for i, (annotation, default) in enumerate(fields)
    }
    # One name for every class: the root's name is part of the descriptor, and a changing name
    # would change the descriptor's length between runs of the same example.
    return attrs.make_class("Gen", attributes, frozen=True)


def schemas(depth: int = 2) -> st.SearchStrategy[s.Schema]:
    """Compiled schemas of random classes."""
    return schema_classes(depth).map(s.compile_schema)


def values_for(schema: s.Schema, *, allow_nan: bool = True) -> st.SearchStrategy[object]:
    """Valid values of ``schema``: instances of its class, every leaf anywhere in its range."""
    return _values(schema.root, allow_nan)


def _values(node: lay.Node, allow_nan: bool) -> st.SearchStrategy[Any]:
    if isinstance(node, lay.ScalarNode):
        if node.kind == lay.KIND_BOOL:
            return st.booleans()
        if node.kind != lay.KIND_FLOAT:
            return st.integers(node.lo, node.hi)
        width: Literal[32, 64] = 32 if node.size == 4 else 64
        return st.floats(width=width, allow_nan=allow_nan).map(
            mk.f32_round if width == 32 else float
        )
    if isinstance(node, lay.BlobNode):
        capacity = node.param
        if node.kind == lay.KIND_BYTES:
            return st.binary(max_size=capacity)
        # Cut at `capacity` UTF-8 bytes, dropping a character split by the cut.
        return st.text(max_size=capacity).map(
            lambda t: t.encode()[:capacity].decode(errors="ignore")
        )
    if isinstance(node, lay.ArrayNode):
        return st.lists(
            _values(node.element, allow_nan), min_size=node.param, max_size=node.param
        ).map(tuple)
    assert isinstance(node, lay.StructNode)
    members = {alias: _values(child, allow_nan) for _, alias, _, child in node.members}
    if node.cls is None:
        return st.fixed_dictionaries(members)
    return st.fixed_dictionaries(members).map(lambda kw: node.cls(**kw))  # type: ignore[misc]


def evolved(schema: s.Schema, old: object) -> st.SearchStrategy[object]:
    """New values made from ``old``: each part kept by reference, redrawn, or evolved inside."""
    return _evolved(schema.root, old)


@st.composite
def _evolved(draw: st.DrawFn, node: lay.Node, old: Any) -> Any:
    how = draw(st.sampled_from(["keep", "redraw", "inside"]))
    if how == "keep":
        return old
    if how == "redraw" or not isinstance(node, lay.ArrayNode | lay.StructNode):
        return draw(_values(node, allow_nan=True))
    if isinstance(node, lay.ArrayNode):
        return tuple(draw(_evolved(node.element, item)) for item in old)
    assert node.cls is not None
    return node.cls(
        **{
            alias: draw(_evolved(child, getattr(old, name)))
            for name, alias, _, child in node.members
        }
    )


def leaf_ranges(schema: s.Schema) -> list[tuple[int, int]]:
    """(start, end) of every leaf, with each array element a leaf of its own."""
    out: list[tuple[int, int]] = []

    def walk(node: lay.Node, at: int) -> None:
        if isinstance(node, lay.StructNode):
            for _, _, offset, child in node.members:
                walk(child, at + offset)
        elif isinstance(node, lay.ArrayNode):
            for i in range(node.param):
                walk(node.element, at + i * node.element.size)
        else:
            out.append((at, at + node.size))

    walk(schema.root, 0)
    return out
