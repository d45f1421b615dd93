"""Tests of journalstate._schema: encoding, validation, diffs and the descriptor."""

from __future__ import annotations

import contextlib
import math
import struct
from typing import Annotated, Any, Optional

import attrs
import pytest
from hypothesis import given
from hypothesis import strategies as st

from journalstate import _descriptor as ds
from journalstate import _layout as lay
from journalstate import _markers as mk
from journalstate import _schema as s
from journalstate._errors import InvalidValue, SchemaError
from tests import strategies as jst

# Module-level classes use string annotations (``from __future__ import annotations``), so these
# tests also cover resolving them; the generated classes of tests/strategies.py use real objects.


@attrs.frozen
class Inner:
    x: mk.I32 = 0
    ok: bool = False


@attrs.frozen
class Progress:
    step: mk.U64 = 0
    loss: mk.F64 = 0.0
    label: Annotated[str, mk.Str(32)] = ""
    blob: Annotated[bytes, mk.Bytes(3000)] = b""
    hist: Annotated[tuple[int, ...], mk.Array(mk.U16, 4)] = (0, 0, 0, 0)
    inner: Inner = Inner()
    pts: Annotated[tuple[Inner, ...], mk.Array(Inner, 2)] = (Inner(), Inner())
    ratio: mk.F32 = 0.0


@attrs.frozen
class Golden:
    a: mk.U16 = 0
    b: mk.I8 = 0
    ok: bool = False
    name: Annotated[str, mk.Str(4)] = ""
    pair: Annotated[tuple[int, ...], mk.Array(mk.U8, 2)] = (0, 0)


GOLDEN_VALUE = Golden(a=0x1234, b=-2, ok=True, name="hi", pair=(1, 2))
GOLDEN_IMAGE = "3412 fe 01 02000000 68690000 0102"
GOLDEN_DESCRIPTOR = (
    "08 00 0600 00000000 0e000000 05000000 476f6c64656e"  # struct "Golden", 14 bytes, 5 fields
    "02 00 0100 00000000 02000000 00000000 61"  # uint "a" at 0, 2 bytes
    "01 00 0100 02000000 01000000 00000000 62"  # int "b" at 2, 1 byte
    "04 00 0200 03000000 01000000 00000000 6f6b"  # bool "ok" at 3
    "06 00 0400 04000000 08000000 04000000 6e616d65"  # str "name" at 4, capacity 4
    "07 00 0400 0c000000 02000000 02000000 70616972"  # array "pair" at 12, length 2
    "02 00 0000 00000000 01000000 00000000"  # its element: uint, 1 byte, no name
)

PROGRESS = s.compile_schema(Progress)


def field(**kwargs: Any) -> Any:
    """attrs.field, accepting an Annotated ``type`` (the stubs want a class)."""
    return attrs.field(**kwargs)


def apply(image: bytes, patches: list[tuple[int, bytes]]) -> bytes:
    """``image`` with ``patches`` written over it."""
    out = bytearray(image)
    for offset, data in patches:
        out[offset : offset + len(data)] = data
    return bytes(out)


def as_plain(value: Any) -> object:
    """A decoded value as decode_dict gives it: dicts for structs, tuples kept."""
    if attrs.has(type(value)):
        return {f.name: as_plain(getattr(value, f.name)) for f in attrs.fields(type(value))}
    if isinstance(value, tuple):
        return tuple(as_plain(item) for item in value)
    return value


def invalid(call: Any, *args: object) -> InvalidValue:
    """The InvalidValue that ``call(*args)`` raises."""
    with pytest.raises(InvalidValue) as info:
        call(*args)
    return info.value


# --- golden bytes --------------------------------------------------------------------------------


def test_golden_encoding() -> None:
    """The encoding of one small class is pinned byte for byte."""
    schema = s.compile_schema(Golden)
    assert schema.encode(GOLDEN_VALUE) == bytes.fromhex(GOLDEN_IMAGE)
    assert schema.decode(bytes.fromhex(GOLDEN_IMAGE)) == GOLDEN_VALUE
    assert schema.size == 14
    assert repr(schema) == "<Schema Golden: 14 bytes>"


def test_golden_descriptor() -> None:
    """The descriptor of one small class is pinned byte for byte."""
    assert s.compile_schema(Golden).descriptor == bytes.fromhex(GOLDEN_DESCRIPTOR)


def test_fields_of_nested_class() -> None:
    """fields() lists leaves with absolute offsets; arrays are one entry each."""
    listed = [(f.path, f.type_name, f.offset, f.size) for f in PROGRESS.fields()]
    assert listed == [
        ("step", "u64", 0, 8),
        ("loss", "f64", 8, 8),
        ("label", "str[32]", 16, 36),
        ("blob", "bytes[3000]", 52, 3004),
        ("hist", "u16[4]", 3056, 8),
        ("inner.x", "i32", 3064, 4),
        ("inner.ok", "bool", 3068, 1),
        ("pts", "Inner[2]", 3069, 10),
        ("ratio", "f32", 3079, 4),
    ]
    assert PROGRESS.size == 3083


def test_nested_array_type_name() -> None:
    """Array suffixes read left to right: u16[2][3] is 3 arrays of 2 u16."""
    cls = attrs.make_class(
        "Grid", {"g": field(type=Annotated[tuple[Any, ...], mk.Array(mk.Array(mk.U16, 2), 3)])}
    )
    assert [f.type_name for f in s.compile_schema(cls).fields()] == ["u16[2][3]"]


# --- round trips ---------------------------------------------------------------------------------


@given(st.data())
def test_round_trip(data: st.DataObject) -> None:
    """decode(encode(v)) gives v back, and the image is exactly size bytes."""
    schema = data.draw(jst.schemas())
    value = data.draw(jst.values_for(schema, allow_nan=False))
    image = schema.encode(value)
    assert len(image) == schema.size
    assert schema.decode(image) == value
    assert schema.decode(memoryview(image)) == value


@given(st.data())
def test_round_trip_keeps_float_bits(data: st.DataObject) -> None:
    """Every float, NaNs and -0.0 included, comes back with the same bits."""
    schema = data.draw(jst.schemas())
    image = schema.encode(data.draw(jst.values_for(schema)))
    assert schema.encode(schema.decode(image)) == image


@given(st.binary(min_size=PROGRESS.size, max_size=PROGRESS.size))
def test_decode_accepts_only_canonical_images(image: bytes) -> None:
    """Any bytes either decode to a value that encodes back to them, or raise InvalidValue."""
    try:
        value = PROGRESS.decode(image)
    except InvalidValue as exc:
        error = str(exc)
    else:
        assert PROGRESS.encode(value) == image
        return
    assert "stored value is invalid" in error


def test_decode_releases_the_buffer() -> None:
    """decode keeps no view on its input, even when it fails: a bytearray can be resized."""
    buf = bytearray(PROGRESS.encode(Progress()))
    PROGRESS.decode(buf)
    buf.append(0)
    with pytest.raises(InvalidValue) as info:
        PROGRESS.decode(buf)
    buf.append(0)  # `info` keeps the traceback, and decode's frame, alive
    assert info.value.field == "<root>"


def test_private_attribute_uses_init_alias() -> None:
    """A private attribute (``_x``) is rebuilt through its __init__ name."""

    @attrs.frozen
    class Private:
        _x: Annotated[int, mk.Int(2, False)] = 0

    schema = s.compile_schema(Private)
    assert schema.decode(schema.encode(Private(x=7))) == Private(x=7)
    assert schema.fields()[0].path == "_x"
    assert schema.decode_dict(schema.encode(Private(x=7))) == {"_x": 7}


def test_compile_is_cached() -> None:
    """compile_schema returns the same Schema for the same class."""
    assert s.compile_schema(Progress) is PROGRESS


def test_default() -> None:
    """default() is cls(); a field without a default is a SchemaError asking for initial=."""
    assert PROGRESS.default() == Progress()

    @attrs.frozen
    class NoDefault:
        x: mk.U8

    with pytest.raises(SchemaError, match=r"\(x\).*initial="):
        s.compile_schema(NoDefault).default()


# --- diff ----------------------------------------------------------------------------------------


@given(st.data())
def test_diff_applied_gives_new_image(data: st.DataObject) -> None:
    """Applying diff(old, new) to encode(old) gives encode(new), with ordered disjoint patches."""
    schema = data.draw(jst.schemas())
    old = data.draw(jst.values_for(schema))
    new = data.draw(st.one_of(jst.evolved(schema, old), jst.values_for(schema)))
    patches = schema.diff(old, new)
    assert apply(schema.encode(old), patches) == schema.encode(new)
    ends = [0] + [offset + len(chunk) for offset, chunk in patches]
    assert all(ends[i] < offset for i, (offset, _) in enumerate(patches) if i > 0)
    assert all(ends[i] <= offset for i, (offset, _) in enumerate(patches))


@given(st.data())
def test_diff_of_same_value_is_empty(data: st.DataObject) -> None:
    """diff(x, x) is empty, and so is diff of x and an equal decoded copy (NaNs aside)."""
    schema = data.draw(jst.schemas())
    value = data.draw(jst.values_for(schema))
    assert schema.diff(value, value) == []
    assert schema.diff(value, schema.decode(schema.encode(value))) == []


@given(st.data())
def test_diff_touches_only_changed_leaves(data: st.DataObject) -> None:
    """Every patched byte lies in a leaf (array element) whose encoded bytes changed."""
    schema = data.draw(jst.schemas())
    old = data.draw(jst.values_for(schema))
    new = data.draw(jst.evolved(schema, old))
    before, after = schema.encode(old), schema.encode(new)
    changed = [(a, b) for a, b in jst.leaf_ranges(schema) if before[a:b] != after[a:b]]
    for offset, chunk in schema.diff(old, new):
        for byte in range(offset, offset + len(chunk)):
            assert any(a <= byte < b for a, b in changed)


def test_diff_of_one_field() -> None:
    """Changing one int field gives one patch of its bytes."""
    old = Progress()
    assert PROGRESS.diff(old, attrs.evolve(old, step=5)) == [(0, struct.pack("<Q", 5))]


def test_diff_shorter_text_zeroes_the_old_tail() -> None:
    """A shorter str writes its length, its data, and zeros over the rest of the old data."""
    old = Progress(label="hello")
    patches = PROGRESS.diff(old, attrs.evolve(old, label="hi"))
    assert patches == [(16, b"\x02\x00\x00\x00hi\x00\x00\x00")]


def test_diff_merges_adjacent_patches() -> None:
    """Patches of adjacent leaves are merged into one."""
    old = Progress()
    patches = PROGRESS.diff(old, attrs.evolve(old, step=1, loss=2.0))
    assert patches == [(0, struct.pack("<Qd", 1, 2.0))]


def test_diff_floats_compare_by_bits() -> None:
    """0.0 -> -0.0 is a change; NaN -> another NaN object with the same bits is not."""
    old = Progress(loss=0.0)
    assert PROGRESS.diff(old, attrs.evolve(old, loss=-0.0)) == [(8, struct.pack("<d", -0.0))]
    nan = Progress(loss=float("nan"))
    assert PROGRESS.diff(nan, attrs.evolve(nan, loss=float("nan"))) == []


def test_diff_array_element_patch() -> None:
    """Changing one array element patches only that element."""
    old = Progress()
    assert PROGRESS.diff(old, attrs.evolve(old, hist=(0, 0, 9, 0))) == [(3060, b"\x09\x00")]


class Bomb:
    """Fails any comparison: proves a value was never looked at."""

    def __eq__(self, other: object) -> bool:
        raise AssertionError("compared")

    __hash__ = object.__hash__


def test_diff_validates_and_compares_only_changed_fields() -> None:
    """Fields shared by reference are neither compared nor validated."""
    old = Progress(step=-1, hist=(Bomb(),) * 4)  # type: ignore[arg-type]
    assert PROGRESS.diff(old, attrs.evolve(old, loss=1.0)) == [(8, struct.pack("<d", 1.0))]


def test_diff_from_an_invalid_old_value_rewrites_those_fields() -> None:
    """Where the old value is not valid, the patches rewrite the whole field."""
    bad = attrs.evolve(Progress(), step=-1, label=3, hist=[1, 2, 3, 4], inner="x")  # type: ignore[arg-type]
    new = attrs.evolve(bad, step=5, label="hi", hist=(1, 2, 3, 4), inner=Inner(x=1))
    image, wanted = apply(b"\xff" * PROGRESS.size, PROGRESS.diff(bad, new)), PROGRESS.encode(new)
    for f in PROGRESS.fields():
        if f.path.split(".")[0] in ("step", "label", "hist", "inner"):
            assert image[f.offset : f.offset + f.size] == wanted[f.offset : f.offset + f.size]


def test_diff_rejects_invalid_changes_with_path() -> None:
    """An invalid changed leaf raises InvalidValue naming its path; nothing is returned."""
    old = Progress()
    cases: list[tuple[object, str]] = [
        (attrs.evolve(old, step=-1), "step"),
        (attrs.evolve(old, inner=Inner(x=2**31)), "inner.x"),
        (attrs.evolve(old, hist=(0, 0, -1, 0)), "hist[2]"),
        (attrs.evolve(old, hist=[0, 0, 0, 0]), "hist"),  # type: ignore[arg-type]
        (attrs.evolve(old, pts=(Inner(), Golden())), "pts[1]"),  # type: ignore[arg-type]
        (Golden(), "<root>"),
    ]
    for new, path in cases:
        assert invalid(PROGRESS.diff, old, new).field == path


# --- validation ----------------------------------------------------------------------------------

_F32_INEXACT = 0.1
INVALID_VALUES: list[tuple[dict[str, Any], str, str]] = [
    ({"step": -1}, "step", "out of range"),
    ({"step": 2**64}, "step", "out of range"),
    ({"inner": Inner(x=-(2**31) - 1)}, "inner.x", "out of range"),
    ({"inner": Inner(x=2**31)}, "inner.x", "out of range"),
    ({"step": True}, "step", "expected int, got bool"),
    ({"step": 1.0}, "step", "expected int, got float"),
    ({"loss": 1}, "loss", "expected float, got int"),
    ({"loss": True}, "loss", "expected float, got bool"),
    ({"ratio": _F32_INEXACT}, "ratio", "not representable as f32"),
    ({"ratio": 1e300}, "ratio", "too large for f32"),
    ({"inner": Inner(ok=1)}, "inner.ok", "expected bool, got int"),  # type: ignore[arg-type]
    ({"label": "é" * 17}, "label", "34 bytes of UTF-8 is more than the capacity of 32"),
    ({"label": "\ud800"}, "label", "cannot be encoded as UTF-8"),
    ({"label": b"x"}, "label", "expected str, got bytes"),
    ({"blob": bytearray(b"x")}, "blob", "expected bytes, got bytearray"),
    ({"blob": bytes(3001)}, "blob", "3001 bytes is more than the capacity of 3000"),
    ({"hist": [0, 0, 0, 0]}, "hist", "expected a tuple of 4 u16, got list"),
    ({"hist": (0, 0, 0)}, "hist", "expected a tuple of 4 u16, got a tuple of 3"),
    ({"hist": (0, 0, 0, 70000)}, "hist[3]", "out of range for u16"),
    ({"inner": Golden()}, "inner", "expected Inner, got Golden"),
    ({"pts": (Inner(), Inner(x=1.5))}, "pts[1].x", "expected int, got float"),  # type: ignore[arg-type]
]


@pytest.mark.parametrize(("change", "path", "message"), INVALID_VALUES)
def test_invalid_values_name_their_field(change: dict[str, Any], path: str, message: str) -> None:
    """encode rejects a value that does not fit, naming the field path; so does diff."""
    value = attrs.evolve(Progress(), **change)
    error = invalid(PROGRESS.encode, value)
    assert error.field == path
    assert message in str(error)
    assert invalid(PROGRESS.diff, Progress(), value).field == path


def test_wrong_root_type() -> None:
    """A value that is not exactly the schema's class is rejected at the root."""

    @attrs.frozen
    class Sub(Inner):
        pass

    schema = s.compile_schema(Inner)
    assert invalid(schema.encode, {"x": 1}).field == "<root>"
    assert invalid(schema.encode, Sub()).field == "<root>"


def test_f32_round_makes_values_representable() -> None:
    """f32_round gives a value F32 accepts; inf and NaN are accepted as they are."""
    rounded = mk.f32_round(_F32_INEXACT)
    assert rounded != _F32_INEXACT
    for ratio in (rounded, math.inf, -math.inf, math.nan, -0.0):
        value = Progress(ratio=ratio)
        assert PROGRESS.encode(PROGRESS.decode(PROGRESS.encode(value))) == PROGRESS.encode(value)
    with pytest.raises(OverflowError):
        mk.f32_round(1e300)


# --- invalid stored bytes ------------------------------------------------------------------------


def damaged(offset: int, data: bytes) -> bytes:
    """The image of Progress() with ``data`` written at ``offset``."""
    return apply(PROGRESS.encode(Progress()), [(offset, data)])


@pytest.mark.parametrize(
    ("image", "path", "message"),
    [
        (damaged(16, struct.pack("<I", 33)), "label", "length 33 is more than the capacity 32"),
        (damaged(16, b"\x01\x00\x00\x00\xff"), "label", "not UTF-8"),
        (damaged(16, b"\x00\x00\x00\x00\x00\x01"), "label", "nonzero bytes after the data"),
        (damaged(52 + 3003, b"\x01"), "blob", "nonzero bytes after the data"),
        (damaged(3068, b"\x02"), "inner.ok", "bool byte is 2"),
        (damaged(3069 + 5 + 4, b"\xff"), "pts[1].ok", "bool byte is 255"),
        (PROGRESS.encode(Progress())[:-1], "<root>", "expected 3083 bytes, got 3082"),
    ],
)
def test_decode_rejects_invalid_stored_bytes(image: bytes, path: str, message: str) -> None:
    """Bytes that form no valid value raise InvalidValue with the path, never anything else."""
    error = invalid(PROGRESS.decode, image)
    assert error.field == path
    assert f"stored value is invalid: {message}" in str(error)
    assert invalid(ds.decode_descriptor(PROGRESS.descriptor).decode_dict, image).field == path


def test_decode_reports_a_rejecting_validator() -> None:
    """A class validator that rejects stored fields becomes InvalidValue, not its own error."""

    @attrs.frozen
    class Even:
        n: mk.U8 = attrs.field(default=0, validator=lambda _, __, v: v % 2 == 0 or 1 / 0)

    schema = s.compile_schema(Even)
    assert "rejected" in str(invalid(schema.decode, b"\x03"))


# --- descriptors ---------------------------------------------------------------------------------


@given(st.data())
def test_descriptor_round_trip(data: st.DataObject) -> None:
    """A decoded descriptor lists the same fields and decodes states into matching dicts."""
    schema = data.draw(jst.schemas())
    dynamic = ds.decode_descriptor(schema.descriptor)
    assert dynamic.fields() == schema.fields()
    assert (dynamic.size, dynamic.descriptor) == (schema.size, schema.descriptor)
    assert dynamic.root_name == schema.cls.__qualname__
    assert ds.compare_descriptors(schema.descriptor, schema.descriptor) == []
    image = schema.encode(data.draw(jst.values_for(schema, allow_nan=False)))
    assert dynamic.decode_dict(image) == as_plain(schema.decode(image))
    assert schema.decode_dict(image) == as_plain(schema.decode(image))


def descriptor_survives(data: bytes) -> None:
    """Decode ``data`` as a descriptor: only ValueError may come out; a success is canonical."""
    try:
        dynamic = ds.decode_descriptor(data)
    except ValueError as exc:
        error = str(exc)
    else:
        error = ""
    if error:
        assert error.startswith("schema descriptor: ")
        return
    assert ds.encode_descriptor(dynamic.root) == data
    dynamic.fields()
    if dynamic.size <= 1 << 16:
        with contextlib.suppress(InvalidValue):
            dynamic.decode_dict(bytes(dynamic.size))


@given(st.binary(max_size=200))
def test_random_descriptor_bytes_only_raise_value_error(data: bytes) -> None:
    """Random bytes as a descriptor raise ValueError or decode canonically."""
    descriptor_survives(data)


def test_truncated_descriptors_raise_value_error() -> None:
    """Every proper prefix of a valid descriptor raises ValueError."""
    for end in range(len(PROGRESS.descriptor)):
        with pytest.raises(ValueError, match="schema descriptor"):
            ds.decode_descriptor(PROGRESS.descriptor[:end])


def test_every_byte_of_a_descriptor_mutated() -> None:
    """Each byte of a valid descriptor set to several values never raises anything else."""
    for at, original in enumerate(PROGRESS.descriptor):
        for byte in {0, 1, 2, 0x7F, 0x80, 0xFF, original ^ 1, (original + 1) % 256}:
            mutated = bytearray(PROGRESS.descriptor)
            mutated[at] = byte
            descriptor_survives(bytes(mutated))


@given(st.data())
def test_mutated_descriptors_only_raise_value_error(data: st.DataObject) -> None:
    """A random schema's descriptor, with bytes changed, cut or appended, raises only ValueError."""
    mutated = bytearray(data.draw(jst.schemas()).descriptor)
    for _ in range(data.draw(st.integers(1, 4))):
        mutated[data.draw(st.integers(0, len(mutated) - 1))] = data.draw(st.integers(0, 255))
    end = data.draw(st.integers(0, len(mutated)))
    descriptor_survives(bytes(mutated[:end]) + data.draw(st.binary(max_size=40)))


def node(kind: int, name: bytes = b"", offset: int = 0, size: int = 1, param: int = 0) -> bytes:
    """One descriptor node: head and name."""
    return struct.pack(ds.NODE_HEAD_FMT, kind, 0, len(name), offset, size, param) + name


def root(size: int, count: int, *fields: bytes) -> bytes:
    """A root struct node named R followed by ``fields``."""
    return node(lay.KIND_STRUCT, b"R", 0, size, count) + b"".join(fields)


U8_NODE = node(lay.KIND_UINT, b"a")
DEEP = (
    node(lay.KIND_STRUCT, b"R", 0, 1, 1)
    + node(lay.KIND_ARRAY, b"a", 0, 1, 1)
    + node(lay.KIND_ARRAY, b"", 0, 1, 1) * 31
    + node(lay.KIND_UINT)
)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (root(1, 1, node(9, b"a")), "node at byte 17: unknown kind 9"),
        (root(1, 1, U8_NODE)[:-1], "truncated"),
        (root(1, 1, U8_NODE) + b"\x00", "1 trailing bytes"),
        (node(lay.KIND_UINT), "not a struct"),
        (root(1, 1, U8_NODE).replace(b"\x02\x00", b"\x02\x01", 1), "reserved byte is 1"),
        (root(1, 1, node(lay.KIND_UINT, b"\xff")), "not UTF-8"),
        (root(1, 1, node(lay.KIND_UINT, b"a.b")), "not an identifier"),
        (root(2, 2, U8_NODE, U8_NODE), "repeated"),
        (root(2, 2, U8_NODE, node(lay.KIND_UINT, b"b", 2)), "not at offset 1"),
        (root(2, 1, U8_NODE), "not the sum"),
        (root(3, 1, node(lay.KIND_INT, b"a", 0, 3)), "size 3"),
        (root(2, 1, node(lay.KIND_BOOL, b"a", 0, 2)), "size 2"),
        (root(1, 1, node(lay.KIND_UINT, b"a", 0, 1, 5)), "param 5"),
        (root(4, 1, node(lay.KIND_STR, b"a", 0, 4, 0)), "capacity 0"),
        (root(9, 1, node(lay.KIND_BYTES, b"a", 0, 9, 4)), "capacity 4 with size 9"),
        (root(4, 1, node(lay.KIND_ARRAY, b"a", 0, 4, 3), node(lay.KIND_UINT)), "not 3 x 1"),
        (root(1, 1, node(lay.KIND_ARRAY, b"a", 0, 1, 1), node(lay.KIND_UINT, b"e")), "no name"),
        (root(1, 0xFFFFFFFF, U8_NODE), "4294967295 fields"),
        (root(0, 0), "0 fields"),
        (DEEP, "deeper than 32"),
        (
            root(2**31 + 1, 1, node(lay.KIND_BYTES, b"a", 0, 2**31 + 1, 2**31 - 3)),
            "more than 2**24",
        ),
    ],
)
def test_hostile_descriptors(data: bytes, message: str) -> None:
    """Each kind of malformed descriptor raises ValueError saying what is wrong."""
    with pytest.raises(ValueError, match="schema descriptor") as info:
        ds.decode_descriptor(data)
    assert message in str(info.value)


def test_deepest_allowed_descriptor() -> None:
    """Nesting exactly 32 levels below the root is accepted."""
    ok = DEEP.replace(node(lay.KIND_ARRAY, b"", 0, 1, 1), b"", 1)
    assert ds.decode_descriptor(ok).fields()[0].type_name == "u8" + "[1]" * 31


@attrs.frozen
class Renamed:
    a: mk.U16 = 0
    b: mk.I8 = 0
    ok: bool = False
    name: Annotated[str, mk.Str(4)] = ""
    pair: Annotated[tuple[int, ...], mk.Array(mk.U8, 2)] = (0, 0)


@attrs.frozen
class Changed:
    b: mk.I8 = 0
    a: mk.U32 = 0
    name: Annotated[str, mk.Str(4)] = ""
    pair: Annotated[tuple[int, ...], mk.Array(mk.U8, 3)] = (0, 0, 0)
    extra: bool = False


@attrs.frozen
class Reordered:
    b: mk.I8 = 0
    a: mk.U16 = 0
    ok: bool = False
    name: Annotated[str, mk.Str(4)] = ""
    pair: Annotated[tuple[int, ...], mk.Array(mk.U8, 2)] = (0, 0)


def test_compare_descriptors() -> None:
    """Differences are named by field; renamed classes and identical layouts compare equal."""
    golden = s.compile_schema(Golden).descriptor
    assert ds.compare_descriptors(golden, s.compile_schema(Renamed).descriptor) == []
    assert ds.compare_descriptors(s.compile_schema(Changed).descriptor, golden) == [
        "field 'extra': in the schema, not in the file",
        "field 'ok': in the file, not in the schema",
        "field 'a': file has u16, schema has u32",
        "field 'pair': file has u8[2], schema has u8[3]",
    ]
    assert ds.compare_descriptors(golden, s.compile_schema(Reordered).descriptor) == [
        "field 'a': at offset 1 in the file, 0 in the schema",
        "field 'b': at offset 0 in the file, 2 in the schema",
    ]


def test_compare_nested_paths() -> None:
    """Nested differences give the path, with [] for an array's elements."""
    wider = attrs.make_class(
        "Inner", {"x": field(type=mk.I64, default=0), "ok": field(type=bool, default=False)}
    )
    outer = attrs.make_class(
        "Outer",
        {
            "inner": field(type=wider),
            "pts": field(type=Annotated[tuple[Any, ...], mk.Array(wider, 2)]),
        },
    )
    base = attrs.make_class(
        "Outer",
        {
            "inner": field(type=Inner),
            "pts": field(type=Annotated[tuple[Any, ...], mk.Array(Inner, 2)]),
        },
    )
    found = s.compile_schema(base).descriptor
    assert ds.compare_descriptors(s.compile_schema(outer).descriptor, found) == [
        "field 'inner.x': file has i32, schema has i64",
        "field 'pts[].x': file has i32, schema has i64",
    ]


def test_compare_with_unreadable_descriptor() -> None:
    """A found descriptor that cannot be decoded gives one difference saying so."""
    (difference,) = ds.compare_descriptors(PROGRESS.descriptor, b"\x09" * 16)
    assert difference.startswith("root: the file's schema descriptor cannot be read")


# --- schema errors -------------------------------------------------------------------------------


@attrs.frozen
class Recursive:
    child: Recursive


@attrs.frozen
class RecursiveArray:
    kids: Annotated[tuple[RecursiveArray, ...], mk.Array(RecursiveArray, 2)]


@attrs.frozen
class Unresolvable:
    x: NotDefinedAnywhere  # type: ignore[name-defined]  # noqa: F821


class NotAttrs:
    pass


def one_field(annotation: object) -> type:
    """An attrs class with one field ``step`` of type ``annotation``."""
    return attrs.make_class("One", {"step": field(type=annotation)})


def nested_arrays(levels: int) -> object:
    """``levels`` nested Array(…, 1) around U8."""
    annotation: object = mk.U8
    for _ in range(levels):
        annotation = Annotated[tuple[Any, ...], mk.Array(annotation, 1)]
    return annotation


@pytest.mark.parametrize(
    ("cls", "message"),
    [
        (one_field(int), "field 'step': plain int has no fixed size; use js.U64"),
        (one_field(float), "field 'step': plain float has no fixed size; use js.F64"),
        (one_field(str), "field 'step': str needs a capacity; use Annotated[str, js.Str("),
        (one_field(bytes), "field 'step': bytes needs a capacity"),
        (one_field(tuple[int, ...]), "field 'step': arrays are fixed-length tuples"),
        (one_field(list[int]), "field 'step': arrays are fixed-length tuples"),
        (one_field(Optional[int]), "field 'step': unsupported annotation"),  # noqa: UP045
        (one_field(dict), "field 'step': dict is not an attrs class"),
        (one_field(NotAttrs), "field 'step': NotAttrs is not an attrs class"),
        (one_field(None), "field 'step': no type annotation"),
        (one_field(Annotated[str, mk.Str(0)]), "field 'step': the capacity must be an int"),
        (one_field(Annotated[str, mk.Str(2**31 + 1)]), "the capacity must be an int from 1"),
        (one_field(Annotated[str, mk.Str(True)]), "the capacity must be an int"),
        (one_field(Annotated[bytes, mk.Bytes(-1)]), "the capacity must be an int"),
        (one_field(Annotated[tuple[int, ...], mk.Array(mk.U8, 0)]), "the array length must be"),
        (one_field(Annotated[tuple[int, ...], mk.Array(int, 2)]), "field 'step[]': plain int"),
        (one_field(Annotated[str, mk.Bytes(3)]), "Bytes marks a bytes field"),
        (one_field(Annotated[list[int], mk.Array(mk.U8, 2)]), "Array marks a tuple field"),
        (one_field(Annotated[int, mk.Int(3, False)]), "invalid marker"),
        (one_field(Annotated[float, mk.Float(2)]), "invalid marker"),
        (one_field(Annotated[int, mk.Int(1, False), mk.Int(2, False)]), "several"),
        (one_field(Annotated[bytes, mk.Bytes(2**31)]), "at most 2**24"),
        (one_field(nested_arrays(32)), "field 'step[][][]"),
        (attrs.make_class("Empty", {}), "Empty has no fields"),
        (attrs.make_class("Long", {"x" * 256: field(type=mk.U8)}), "limited to 255 bytes"),
        (attrs.make_class("Hidden", {"x": field(type=mk.U8, init=False)}), "init=False"),
        (Recursive, "field 'child': Recursive contains itself"),
        (RecursiveArray, "field 'kids[]': RecursiveArray contains itself"),
        (Unresolvable, "cannot resolve the annotations of Unresolvable"),
        (NotAttrs, "is not an attrs class; decorate it with @attrs.frozen"),
    ],
)
def test_schema_errors(cls: type, message: str) -> None:
    """A class that cannot be stored raises SchemaError naming the field and the fix."""
    with pytest.raises(SchemaError) as info:
        s.compile_schema(cls)
    assert message in str(info.value)


def test_deepest_class_nesting_compiles() -> None:
    """31 nested arrays inside a field (32 levels below the root) are accepted."""
    schema = s.compile_schema(one_field(nested_arrays(31)))
    assert ds.decode_descriptor(schema.descriptor).fields() == schema.fields()


def shape(node: lay.Node) -> object:
    """A layout tree without struct names: what compare_descriptors compares."""
    if isinstance(node, lay.StructNode):
        return tuple((name, offset, shape(child)) for name, _, offset, child in node.members)
    if isinstance(node, lay.ArrayNode):
        return ("array", node.param, shape(node.element))
    return (node.kind, node.size, node.param)


@given(jst.schema_classes(depth=1), jst.schema_classes(depth=1))
def test_compare_is_empty_only_for_equal_layouts(a: type, b: type) -> None:
    """compare_descriptors finds no difference exactly when the two layouts are the same."""
    da, db = s.compile_schema(a).descriptor, s.compile_schema(b).descriptor
    same_shape = shape(ds.decode_descriptor(da).root) == shape(ds.decode_descriptor(db).root)
    assert (ds.compare_descriptors(da, db) == []) == same_shape
