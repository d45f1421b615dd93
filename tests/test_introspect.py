"""journalstate.schema_info: the public layout of a schema, from a class, a store or a file."""

from __future__ import annotations

import math
import struct
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import attrs
import pytest

import journalstate as js
from journalstate._format import SLOT_HEAD_SIZE


@attrs.frozen
class Point:
    """An array element that is a nested class."""

    x: js.I32 = 0
    y: js.F32 = 0.0


@attrs.frozen
class Inner:
    """A nested class holding an array of nested classes."""

    flag: bool = False
    points: Annotated[tuple[Point, ...], js.Array(Point, 3)] = (Point(),) * 3


@attrs.frozen
class Shape:
    """Every kind of field, nested two levels deep."""

    step: js.U64 = 0
    delta: js.I16 = 0
    loss: js.F64 = 0.0
    label: Annotated[str, js.Str(8)] = ""
    blob: Annotated[bytes, js.Bytes(5)] = b""
    hist: Annotated[tuple[int, ...], js.Array(js.U16, 4)] = (0, 0, 0, 0)
    grid: Annotated[tuple[tuple[int, ...], ...], js.Array(js.Array(js.U8, 2), 3)] = ((0, 0),) * 3
    inner: Inner = Inner()


def slot_image(path: Path) -> bytes:
    """The state image in the newest slot of a closed store (its checkpoint covers every commit)."""
    with js.open(path, Shape, readonly=True) as store:
        assert store.recovery.records_replayed == 0
        at = store.header.slot_offsets[store.recovery.slot] + SLOT_HEAD_SIZE
        size = store.header.state_size
    return path.read_bytes()[at : at + size]


def test_from_a_class() -> None:
    """A class gives its name, size and each field's kind, type, offset, size and parameters."""
    info = js.schema_info(Shape)
    assert (info.name, info.size) == ("Shape", 8 + 2 + 8 + 12 + 9 + 8 + 6 + 1 + 24)
    assert [f.name for f in info.fields] == [a.name for a in attrs.fields(Shape)]
    assert info.field("step") == js.FieldLayout("step", "step", js.FieldKind.UINT, "u64", 0, 8)
    assert info.field("delta") == js.FieldLayout("delta", "delta", js.FieldKind.INT, "i16", 8, 2)
    assert info.field("loss").kind is js.FieldKind.FLOAT
    label = info.field("label")
    assert (label.kind, label.type_name, label.offset, label.size, label.capacity) == (
        js.FieldKind.STR,
        "str[8]",
        18,
        12,
        8,
    )
    assert info.field("blob").capacity == 5
    hist = info.field("hist")
    assert (hist.kind, hist.type_name, hist.length, hist.size) == (
        js.FieldKind.ARRAY,
        "u16[4]",
        4,
        8,
    )
    assert hist.element == js.FieldLayout("[0]", "hist[0]", js.FieldKind.UINT, "u16", 39, 2)
    inner = info.field("inner")
    assert (inner.kind, inner.type_name, inner.offset, inner.size) == (
        js.FieldKind.STRUCT,
        "struct",  # the file keeps no class name for a nested field
        53,
        25,
    )
    assert [f.path for f in inner.fields] == ["inner.flag", "inner.points"]
    assert info.field("inner.flag").kind is js.FieldKind.BOOL


def test_nested_paths_and_array_items() -> None:
    """Paths reach into nested classes and arrays; item i lies i element sizes further on."""
    info = js.schema_info(Shape)
    points = info.field("inner.points")
    assert (points.offset, points.length, points.type_name) == (54, 3, "Point[3]")
    y2 = info.field("inner.points[2].y")
    assert (y2.name, y2.path, y2.offset, y2.size) == ("y", "inner.points[2].y", 54 + 2 * 8 + 4, 4)
    assert info.field("inner.points[-1].y") == y2
    assert points.item(2).fields[1] == y2
    assert points.item(1).name == "[1]"
    cell = info.field("grid[2][1]")
    assert (cell.path, cell.offset, cell.type_name) == ("grid[2][1]", 47 + 2 * 2 + 1, "u8")
    assert info.field("grid[1]").type_name == "u8[2]"


def test_walk_visits_every_field_once_in_pre_order() -> None:
    """walk() lists every field, each array's element once, in increasing offset order."""
    info = js.schema_info(Shape)
    paths = [f.path for f in info.walk()]
    assert paths == [
        "step",
        "delta",
        "loss",
        "label",
        "blob",
        "hist",
        "hist[0]",
        "grid",
        "grid[0]",
        "grid[0][0]",
        "inner",
        "inner.flag",
        "inner.points",
        "inner.points[0]",
        "inner.points[0].x",
        "inner.points[0].y",
    ]
    offsets = [f.offset for f in info.walk()]
    assert offsets == sorted(offsets)
    leaves = [f for f in info.walk() if f.kind not in (js.FieldKind.ARRAY, js.FieldKind.STRUCT)]
    assert all(info.field(f.path) == f for f in leaves)


@pytest.mark.parametrize(
    ("path", "phrase"),
    [
        ("nope", "Shape has no field 'nope' (it has step, delta,"),
        ("inner.nope", "inner has no field 'nope'"),
        ("hist[4]", "index out of range for 4 elements"),
        ("hist[-5]", "index out of range"),
        ("step[0]", "step is u64, not an array"),
        ("step.x", "step is u64, which has no fields"),
        ("hist.x", "hist is u16[4], which has no fields"),
        ("", "is not a field name"),
        ("inner..flag", "is not a field name"),
        ("hist[x]", "is not a field name"),
    ],
)
def test_a_bad_path_raises_no_such_field(path: str, phrase: str) -> None:
    """A path that names no field raises NoSuchField (a LookupError) saying why."""
    info = js.schema_info(Shape)
    with pytest.raises(js.NoSuchField) as raised:
        info.field(path)
    assert isinstance(raised.value, LookupError)
    assert raised.value.path in (path, path.split(".")[0])
    assert str(raised.value).startswith("no field ")
    assert phrase in str(raised.value)


def test_class_store_and_file_give_the_same_info(tmp_path: Path) -> None:
    """The class, an open store, a closed store and the file path (no class) agree exactly."""
    path = tmp_path / "s.jst"
    expected = js.schema_info(Shape)
    with js.open(path, Shape) as store:
        assert js.schema_info(store) == expected
        assert js.schema_info(path) == expected  # beside the live writer: no lock needed
        assert js.schema_info(str(path)) == expected
    assert js.schema_info(store) == expected
    rebuilt: js.Store[Any] = js.open(path, None, readonly=True)
    with rebuilt:
        assert js.schema_info(rebuilt) == expected
        assert js.schema_info(rebuilt.state_class) == expected


def test_file_errors_are_typed(tmp_path: Path) -> None:
    """A missing path, a file that is not a store and a directory raise the open() errors."""
    with pytest.raises(js.StoreNotFound):
        js.schema_info(tmp_path / "missing.jst")
    text = tmp_path / "text.txt"
    text.write_bytes(b"hello\n" * 100)
    with pytest.raises(js.NotAStore):
        js.schema_info(text)
    with pytest.raises(js.UnsafePath):
        js.schema_info(tmp_path)


def test_a_class_that_is_not_a_schema_raises_schema_error() -> None:
    """A plain class or a non-class raises SchemaError, as open() does."""

    class Plain:
        """Not an attrs class."""

    with pytest.raises(js.SchemaError):
        js.schema_info(Plain)
    with pytest.raises(js.SchemaError):
        js.schema_info(42)  # type: ignore[arg-type]


CHANGES: list[tuple[str, Callable[[Shape], Shape]]] = [
    ("step", lambda s: attrs.evolve(s, step=2**64 - 1)),
    ("delta", lambda s: attrs.evolve(s, delta=-2)),
    ("loss", lambda s: attrs.evolve(s, loss=math.pi)),
    ("label", lambda s: attrs.evolve(s, label="héllo")),
    ("blob", lambda s: attrs.evolve(s, blob=b"\xff" * 5)),
    ("hist[2]", lambda s: attrs.evolve(s, hist=(0, 0, 0xBEEF, 0))),
    ("grid[2][1]", lambda s: attrs.evolve(s, grid=((0, 0), (0, 0), (0, 7)))),
    ("inner.flag", lambda s: attrs.evolve(s, inner=attrs.evolve(s.inner, flag=True))),
    (
        "inner.points[1].x",
        lambda s: attrs.evolve(
            s, inner=attrs.evolve(s.inner, points=(Point(), Point(x=-1), Point()))
        ),
    ),
    (
        "inner.points[2].y",
        lambda s: attrs.evolve(
            s, inner=attrs.evolve(s.inner, points=(Point(), Point(x=-1), Point(y=-0.5)))
        ),
    ),
]


def test_offsets_and_sizes_match_the_bytes_in_the_slot(tmp_path: Path) -> None:
    """Committing one field changes bytes only inside that field's [offset, offset + size)."""
    path = tmp_path / "s.jst"
    info = js.schema_info(Shape)
    js.open(path, Shape).close()
    before = slot_image(path)
    assert len(before) == info.size
    for field_path, change in CHANGES:
        with js.open(path, Shape) as store:
            store.commit(change(store.state))
        after = slot_image(path)
        field = info.field(field_path)
        changed = [i for i in range(info.size) if before[i] != after[i]]
        assert changed, field_path
        assert all(field.offset <= i < field.offset + field.size for i in changed), field_path
        before = after
    image = slot_image(path)
    assert struct.unpack_from("<Q", image, info.field("step").offset)[0] == 2**64 - 1
    assert struct.unpack_from("<h", image, info.field("delta").offset)[0] == -2
    assert struct.unpack_from("<d", image, info.field("loss").offset)[0] == math.pi
    label = info.field("label")
    length = struct.unpack_from("<I", image, label.offset)[0]
    assert image[label.offset + 4 : label.offset + 4 + length] == "héllo".encode()
    assert struct.unpack_from("<H", image, info.field("hist[2]").offset)[0] == 0xBEEF
    assert struct.unpack_from("<f", image, info.field("inner.points[2].y").offset)[0] == -0.5


def test_values_are_frozen() -> None:
    """The returned values cannot be changed."""
    info: Any = js.schema_info(Shape)
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        info.size = 1
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        info.fields[0].offset = 1
