"""Tests of journalstate._codegen: the generated diff gives what the generic walk gives.

The generic walk (``Schema.walk_diff``, the layout tree's ``Node.diff``) is the reference. For
random schemas and random pairs of values, valid or not, the generated ``Schema.diff`` must
return the same patches (offsets, bytes, merging) or raise the same ``InvalidValue`` (message
and field path). The Hypothesis profile (``JOURNALSTATE_PROFILE``) sets how many pairs.
"""

from __future__ import annotations

import linecache
from typing import Annotated, Any

import attrs
import pytest
from hypothesis import given
from hypothesis import strategies as st

from journalstate import _codegen as cg
from journalstate import _layout as lay
from journalstate import _markers as mk
from journalstate import _schema as s
from journalstate._errors import InvalidValue
from tests import strategies as jst


@attrs.frozen
class _Other:
    """A class no schema field has: a wrong struct value."""

    a: int = 0


_JUNK = st.sampled_from(
    [
        None,
        0,
        -1,
        1 << 70,
        1.5,
        0.1,
        1e300,
        float("nan"),
        -0.0,
        True,
        "x",
        "\ud800",
        b"x",
        (),
        (0,),
        [0],
        _Other(),
    ]
)
"""Values of the wrong type, out of range, too long or not encodable, for any field."""


def _wrong(node: lay.Node) -> st.SearchStrategy[Any]:
    """Values that ``node`` refuses (or, for some, happens to accept)."""
    if isinstance(node, lay.ScalarNode):
        if node.kind == lay.KIND_FLOAT:
            return st.one_of(_JUNK, st.floats(width=64))  # f32: too large or not representable
        return st.one_of(_JUNK, st.integers(node.lo - 300, node.lo - 1),
                         st.integers(node.hi + 1, node.hi + 300))  # fmt: skip
    if isinstance(node, lay.BlobNode):
        too_long = node.param + 1
        if node.kind == lay.KIND_BYTES:
            return st.one_of(_JUNK, st.binary(min_size=too_long, max_size=too_long + 3))
        return st.one_of(_JUNK, st.text(min_size=too_long, max_size=too_long + 3))
    if isinstance(node, lay.ArrayNode):
        return st.one_of(_JUNK, st.lists(_mixed(node.element), max_size=node.param + 1).map(tuple))
    assert isinstance(node, lay.StructNode)
    return st.one_of(_JUNK, _struct_of(node))  # an instance with some wrong fields


def _mixed(node: lay.Node) -> st.SearchStrategy[Any]:
    """Mostly valid values of ``node``, sometimes a wrong one anywhere inside."""
    if isinstance(node, lay.ArrayNode):
        items = st.lists(_mixed(node.element), min_size=node.param, max_size=node.param)
        valid: st.SearchStrategy[Any] = items.map(tuple)
    elif isinstance(node, lay.StructNode):
        valid = _struct_of(node)
    else:
        valid = jst._values(node, True)
    return st.one_of(valid, valid, valid, _wrong(node))


def _deferred(node: lay.Node) -> st.SearchStrategy[Any]:
    return st.deferred(lambda: _mixed(node))


def _struct_of(node: lay.StructNode) -> st.SearchStrategy[Any]:
    assert node.cls is not None
    members = {alias: _deferred(child) for _, alias, _, child in node.members}
    return st.fixed_dictionaries(members).map(lambda kw: node.cls(**kw))  # type: ignore[misc]


@st.composite
def _changed(draw: st.DrawFn, node: lay.Node, old: Any) -> Any:
    """A new value made from ``old``: parts kept by reference, redrawn, wrong, or changed inside."""
    how = draw(st.sampled_from(["keep", "redraw", "inside", "inside"]))
    if how == "keep":
        return old
    if how == "redraw":
        return draw(_mixed(node))
    if isinstance(node, lay.ArrayNode) and type(old) is tuple:
        return tuple(draw(_changed(node.element, item)) for item in old)
    if isinstance(node, lay.StructNode) and type(old) is node.cls:
        assert node.cls is not None
        kw = {a: draw(_changed(c, getattr(old, n))) for n, a, _, c in node.members}
        return node.cls(**kw)
    return draw(_mixed(node))


def _outcome(diff: Any, old: object, new: object) -> object:
    """What ``diff(old, new)`` gives: its patches, or the error's type, field and message."""
    try:
        return diff(old, new)
    except InvalidValue as exc:
        return (type(exc), exc.field, str(exc))


@st.composite
def _pairs(draw: st.DrawFn) -> tuple[s.Schema, object, object]:
    schema = draw(jst.schemas(depth=draw(st.integers(0, 3))))
    old = draw(st.one_of(jst.values_for(schema), jst.values_for(schema), _mixed(schema.root)))
    new = draw(_changed(schema.root, old))
    return schema, old, new


@given(_pairs())
def test_generated_diff_matches_the_walk(pair: tuple[s.Schema, object, object]) -> None:
    """Random schemas and value pairs, valid or not: the same patches or the same error."""
    schema, old, new = pair
    assert _outcome(schema.diff, old, new) == _outcome(schema.walk_diff, old, new)


@given(st.data())
def test_generated_diff_of_valid_values_matches_the_walk(data: st.DataObject) -> None:
    """Valid old values and evolved new ones, as commits see them: the same patches."""
    schema = data.draw(jst.schemas())
    old = data.draw(jst.values_for(schema))
    new = data.draw(jst.evolved(schema, old))
    patches = schema.diff(old, new)
    assert patches == schema.walk_diff(old, new)
    image = bytearray(schema.encode(old))
    for offset, chunk in patches:
        image[offset : offset + len(chunk)] = chunk
    assert bytes(image) == schema.encode(new)


def _nested(depth: int, arrays: bool = True) -> type:
    """A class nesting ``depth`` levels of structs (and arrays of them), a leaf of each kind."""
    field: Any = attrs.field  # its overloads want a class as type=, not an Annotated
    cls = attrs.make_class(
        "Leaf",
        {
            "i": field(type=mk.I16, default=0),
            "f": field(type=mk.F32, default=0.0),
            "s": field(type=Annotated[str, mk.Str(3)], default=""),
        },
        frozen=True,
    )
    for level in range(depth):
        array: Any = Annotated[tuple[Any, ...], mk.Array(cls, 2)]
        field_type: Any = cls if level % 2 or not arrays else array
        default = cls() if level % 2 or not arrays else (cls(), cls())
        fields = {"x": attrs.field(type=field_type, default=default),
                  "b": attrs.field(type=bool, default=False)}  # fmt: skip
        cls = attrs.make_class(f"L{level}", fields, frozen=True)
    return cls


def _deep_change(node: lay.Node, old: Any, name: str, value: object) -> Any:
    """``old`` with field ``name`` of its innermost struct (through element 1 of arrays) set."""
    if isinstance(node, lay.ArrayNode):
        return (old[0], _deep_change(node.element, old[1], name, value))
    assert isinstance(node, lay.StructNode)
    if node.members[0][0] != "x":
        return attrs.evolve(old, **{name: value})
    return attrs.evolve(old, x=_deep_change(node.members[0][3], old.x, name, value))


@pytest.mark.parametrize(
    ("depth", "arrays"),
    [(1, True), (cg._INLINE_DEPTH, False), (lay.MAX_DEPTH - 1, False), (20, True)],
)
def test_deep_schemas_compile_and_match(depth: int, arrays: bool) -> None:
    """Schemas nested to the deepest level allowed get a diff that matches the walk."""
    schema = s.compile_schema(_nested(depth, arrays))
    old: Any = schema.default()
    changes = [("i", 5), ("i", 1 << 20), ("i", 1.0), ("f", 0.5), ("f", 0.1), ("s", "abc"),
               ("s", "abcd"), ("s", b"a")]  # fmt: skip
    for name, value in changes:
        new = _deep_change(schema.root, old, name, value)
        assert _outcome(schema.diff, old, new) == _outcome(schema.walk_diff, old, new)
        newer = attrs.evolve(new, b=True)  # a second change beside the first, at the top
        assert _outcome(schema.diff, new, newer) == _outcome(schema.walk_diff, new, newer)
    wrong = attrs.evolve(old, x=None)
    assert _outcome(schema.diff, old, wrong) == _outcome(schema.walk_diff, old, wrong)


def test_an_error_names_the_field_as_the_walk_does() -> None:
    """A bad leaf deep inside: the generated diff raises the walk's message and path."""
    schema = s.compile_schema(_nested(3))
    old = schema.default()
    new = _deep_change(schema.root, old, "i", 1 << 20)
    with pytest.raises(InvalidValue) as caught:
        schema.diff(old, new)
    assert caught.value.field == "x[1].x.x[1].i"
    assert "out of range for i16" in str(caught.value)


def test_private_field_names() -> None:
    """A field whose attribute name is private (its __init__ name differs) diffs by attribute."""
    cls = attrs.make_class(
        "Priv",
        {"_n": attrs.field(type=mk.U8, default=0), "__m": attrs.field(type=mk.U8, default=0)},
        frozen=True,
    )
    schema = s.compile_schema(cls)
    old, new = cls(), cls(n=1, m=300)
    assert _outcome(schema.diff, old, new) == _outcome(schema.walk_diff, old, new)
    assert schema.diff(old, cls(n=1, m=2)) == [(0, b"\x01\x02")]


def test_generated_source_is_shown_in_tracebacks() -> None:
    """The generated lines are in linecache, under a file name inside the package."""
    schema = s.compile_schema(_nested(1))
    filename = schema.diff.__code__.co_filename
    assert filename.startswith(cg.__file__.rsplit("/", 1)[0])
    assert linecache.getline(filename, 1).startswith("def ")


@attrs.frozen
class _Long:
    """Adjacent fields whose patches join into runs longer than the generated joins make."""

    a: mk.U8 = 0
    big: Annotated[bytes, mk.Bytes(cg._JOIN_LIMIT)] = b""
    b: mk.U16 = 0
    text: Annotated[str, mk.Str(300)] = ""
    c: mk.F32 = 0.0
    arr: Annotated[tuple[int, ...], mk.Array(mk.U8, 3)] = (0, 0, 0)
    d: mk.I64 = 0
    e: mk.F64 = 0.0


@given(st.data())
def test_long_runs_of_adjacent_patches(data: st.DataObject) -> None:
    """Runs of changed fields longer than the joins made at once: the walk's merged patches."""
    schema = s.compile_schema(_Long)
    old = data.draw(st.one_of(jst.values_for(schema), _mixed(schema.root)))
    new = data.draw(st.one_of(_changed(schema.root, old), jst.values_for(schema)))
    if type(new) is _Long and data.draw(st.booleans()):  # a run through the whole of big
        new = attrs.evolve(new, big=b"\x01" * cg._JOIN_LIMIT, b=data.draw(st.integers(0, 9)))
    assert _outcome(schema.diff, old, new) == _outcome(schema.walk_diff, old, new)


def _wide() -> type:
    """More fields than the generated code writes out: the rest go through the walk's nodes."""
    field: Any = attrs.field  # its overloads want a class as type=, not an Annotated
    kinds: list[tuple[Any, object]] = [
        (mk.U16, 0),
        (Annotated[bytes, mk.Bytes(3)], b""),
        (_Long, _Long()),
        (Annotated[tuple[int, ...], mk.Array(mk.I8, 2)], (0, 0)),
        (mk.F32, 0.0),
    ]
    count = cg._SITE_BUDGET + 40
    fields = {f"f{i}": field(type=kinds[i % 5][0], default=kinds[i % 5][1]) for i in range(count)}
    return attrs.make_class("Wide", fields, frozen=True)


_WIDE = _wide()


@given(st.data())
def test_schemas_wider_than_the_generated_code(data: st.DataObject) -> None:
    """A schema with more nodes than are written out: the same patches or the same error."""
    schema = s.compile_schema(_WIDE)
    old: Any = schema.default()
    names = data.draw(st.lists(st.sampled_from(sorted(attrs.fields_dict(_WIDE))), max_size=8))
    changes = {n: data.draw(_mixed(schema.root.members[int(n[1:])][3])) for n in names}
    new = attrs.evolve(old, **changes)
    assert _outcome(schema.diff, old, new) == _outcome(schema.walk_diff, old, new)
