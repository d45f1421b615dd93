"""Properties of migration over random schema pairs.

Widening pairs: every kept value survives exactly (bytes, NaN bits and all), every widened one
keeps its value, every new field and array element takes its default. Lossy pairs: the refusal
names every offending field, and the file is untouched.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from typing import Annotated, Any

import attrs
import pytest
from hypothesis import given, note
from hypothesis import strategies as st

import journalstate as js
from journalstate._markers import Array, Boolean, Bytes, Float, Int, Str
from journalstate._schema import compile_schema
from journalstate.testing import SimStorage

PATH = "/data/state.jst"
NAMES = [f"f{i}" for i in range(6)]

# A spec is plain data: ("int", width, signed), ("float", width), ("bool",), ("str", capacity),
# ("bytes", capacity), ("array", element, length), ("struct", ((name, spec, default), ...)).
Spec = tuple[Any, ...]

scalars = st.one_of(
    st.tuples(st.just("int"), st.sampled_from([1, 2, 4, 8]), st.booleans()),
    st.tuples(st.just("float"), st.sampled_from([4, 8])),
    st.tuples(st.just("bool")),
    st.tuples(st.sampled_from(["str", "bytes"]), st.integers(1, 8)),
)


def _structs(children: st.SearchStrategy[Spec]) -> st.SearchStrategy[Spec]:
    fields = st.lists(st.tuples(st.sampled_from(NAMES), children), min_size=1, max_size=4,
                      unique_by=lambda f: f[0])  # fmt: skip
    return fields.map(lambda fs: ("struct", tuple((n, s, None) for n, s in fs)))


leaves = st.one_of(
    scalars,
    st.tuples(st.just("array"), scalars, st.integers(1, 4)),
)
nested = _structs(leaves)
members = st.one_of(leaves, nested, st.tuples(st.just("array"), nested, st.integers(1, 3)))
roots = _structs(members)


def _int_range(width: int, signed: bool) -> tuple[int, int]:
    bits = 8 * width
    return (-(1 << bits - 1), (1 << bits - 1) - 1) if signed else (0, (1 << bits) - 1)


def zero(spec: Spec, classes: dict[int, type]) -> Any:
    """The default value of a spec (zero, empty, or the class's defaults)."""
    kind = spec[0]
    if kind == "struct":
        return classes[id(spec)]()
    if kind == "array":
        return (zero(spec[1], classes),) * spec[2]
    return {"int": 0, "float": 0.0, "bool": False, "str": "", "bytes": b""}[kind]


def annotation(spec: Spec, classes: dict[int, type], element: bool = False) -> Any:
    """The annotation (or, for array elements, the marker or class) of a spec."""
    kind = spec[0]
    marker: Any
    if kind == "struct":
        return build(spec, classes)
    if kind == "array":
        return Annotated[tuple[Any, ...], Array(annotation(spec[1], classes, True), spec[2])]
    base: type
    if kind == "int":
        marker, base = Int(spec[1], spec[2]), int
    elif kind == "float":
        marker, base = Float(spec[1]), float
    elif kind == "bool":
        marker, base = Boolean(), bool
    elif kind == "str":
        marker, base = Str(spec[1]), str
    else:
        marker, base = Bytes(spec[1]), bytes
    return marker if element else Annotated[base, marker]


def _zero_factory(spec: Spec, classes: dict[int, type]) -> Callable[[], Any]:
    return lambda: zero(spec, classes)


def build(spec: Spec, classes: dict[int, type]) -> type:
    """The attrs class of a struct spec (defaults: the field's own, else zero)."""
    if id(spec) in classes:
        return classes[id(spec)]
    fields: dict[str, Any] = {}
    for name, child, default in spec[1]:
        ann = annotation(child, classes)
        if default is not None:
            fields[name] = attrs.field(type=ann, default=default)
        else:
            fields[name] = attrs.field(
                type=ann, default=attrs.Factory(_zero_factory(child, classes))
            )
    cls = attrs.make_class(f"S{len(classes)}", fields, frozen=True)
    classes[id(spec)] = cls
    return cls


def values(spec: Spec, classes: dict[int, type]) -> st.SearchStrategy[Any]:
    """Values of a spec; floats from raw bits, so NaNs with payloads and -0.0 appear."""
    kind = spec[0]
    if kind == "int":
        return st.integers(*_int_range(spec[1], spec[2]))
    if kind == "float":
        fmt = "<f" if spec[1] == 4 else "<d"
        return st.binary(min_size=spec[1], max_size=spec[1]).map(lambda b: struct.unpack(fmt, b)[0])
    if kind == "bool":
        return st.booleans()
    if kind == "str":
        cap = spec[1]
        return st.text(max_size=cap).filter(lambda s: len(s.encode()) <= cap)
    if kind == "bytes":
        return st.binary(max_size=spec[1])
    if kind == "array":
        return st.tuples(*[values(spec[1], classes)] * spec[2])
    cls = classes[id(spec)]
    return st.builds(cls, **{name: values(child, classes) for name, child, _ in spec[1]})


# --- widening ------------------------------------------------------------------------------------


@st.composite
def widened(draw: st.DrawFn, spec: Spec, path: str, drops: list[str]) -> Spec:
    """A spec every value of ``spec`` fits, possibly with fields added, dropped, reordered."""
    kind = spec[0]
    if kind == "int":
        width = draw(st.sampled_from([w for w in (1, 2, 4, 8) if w >= spec[1]]))
        if not spec[2] and width > spec[1] and draw(st.booleans()):
            return ("int", width, True)
        return ("int", width, spec[2])
    if kind == "float":
        return ("float", draw(st.sampled_from([spec[1], 8])))
    if kind in ("str", "bytes"):
        return (kind, spec[1] + draw(st.integers(0, 4)))
    if kind == "array":
        element = draw(widened(spec[1], path + "[]", drops))
        return ("array", element, spec[2] + draw(st.integers(0, 2)))
    if kind == "bool":
        return spec
    fields = []
    for name, child, _ in spec[1]:
        sub = f"{path}.{name}" if path else name
        if len(spec[1]) > 1 and draw(st.integers(0, 5)) == 0:
            drops.append(sub)
            continue
        now = draw(widened(child, sub, drops))
        default = None  # a kept field's default is never used, except by new array elements
        if now[0] == "int" and draw(st.booleans()):
            default = draw(st.integers(*_int_range(now[1], now[2])))
        fields.append((name, now, default))
    taken = {f[0] for f in spec[1]}
    for name in draw(st.lists(st.sampled_from([n for n in NAMES if n not in taken]), unique=True,
                              max_size=2)):  # fmt: skip
        new: Spec = draw(leaves)
        default = None
        if new[0] == "int" and draw(st.booleans()):
            default = draw(st.integers(*_int_range(new[1], new[2])))
        fields.append((name, new, default))
    if not fields:  # a class needs a field: keep the first one after all
        name, child, _ = spec[1][0]
        drops.remove(f"{path}.{name}" if path else name)
        fields.append((name, draw(widened(child, name, drops)), None))
    fields = draw(st.permutations(fields))
    return ("struct", tuple(fields))


def same_value(old: Any, new: Any) -> bool:
    """Equal values; floats compared by their f64 bits."""
    if isinstance(old, float):
        return isinstance(new, float) and struct.pack("<d", old) == struct.pack("<d", new)
    return bool(old == new)


def check(old_spec: Spec, new_spec: Spec, old: Any, new: Any, classes: dict[int, type]) -> None:
    """Every kept or widened value survived; every new one is its default."""
    if old_spec[0] == "struct":
        defaults = {f.name: f.default for f in attrs.fields(type(new))}
        old_fields = {n: s for n, s, _ in old_spec[1]}
        for name, child, default in new_spec[1]:
            if name in old_fields:
                check(old_fields[name], child, getattr(old, name), getattr(new, name), classes)
            else:
                expected = default if default is not None else defaults[name].factory()
                assert same_value(expected, getattr(new, name)), name
    elif old_spec[0] == "array":
        for o, n in zip(old, new, strict=False):
            check(old_spec[1], new_spec[1], o, n, classes)
        for n in new[len(old) :]:
            assert same_value(zero(new_spec[1], classes), n)
    else:
        assert same_value(old, new), (old, new)


@given(data=st.data(), old_spec=roots)
def test_widening_keeps_every_value_and_defaults_new_fields(
    data: st.DataObject, old_spec: Spec
) -> None:
    """A random widening pair migrates: kept bytes exact, values kept, new fields defaulted."""
    drops: list[str] = []
    new_spec = data.draw(widened(old_spec, "", drops), label="new schema")
    note(f"old {old_spec}\nnew {new_spec}\ndrop {drops}")
    classes: dict[int, type] = {}
    old_cls, new_cls = build(old_spec, classes), build(new_spec, classes)
    state = data.draw(values(old_spec, classes), label="state")
    disk = SimStorage()
    with js.open(PATH, old_cls, storage=disk, initial=state) as store:
        old_image = store.schema.encode(state)
    report = js.migrate(PATH, new_cls, drop=drops, storage=disk)
    store2: js.Store[Any]
    with js.open(PATH, new_cls, storage=disk) as store2:
        migrated: Any = store2.state
        new_image = store2.schema.encode(migrated)
    check(old_spec, new_spec, state, migrated, classes)
    old_leaves = {f.path: f for f in compile_schema(old_cls).fields()}
    for leaf in compile_schema(new_cls).fields():
        kept = [c for c in report.changes if c.path == leaf.path and c.change is js.Change.KEPT]
        if kept and leaf.path in old_leaves:
            was = old_leaves[leaf.path]
            assert (
                old_image[was.offset : was.offset + was.size]
                == (new_image[leaf.offset : leaf.offset + leaf.size])
            ), leaf.path
    assert sorted(report.by_change(js.Change.DROPPED)) == sorted(
        c.path for c in report.changes if c.change is js.Change.DROPPED
    )


# --- lossy changes -------------------------------------------------------------------------------


@st.composite
def lossy(draw: st.DrawFn, spec: Spec, path: str, bad: set[str], top: bool) -> Spec:
    """``spec`` with some leaves narrowed, changed in kind or removed; ``bad`` gets their paths."""
    kind = spec[0]
    if kind == "struct":
        fields = []
        for name, child, _ in spec[1]:
            sub = f"{path}.{name}" if path else name
            if len(spec[1]) > 1 and draw(st.integers(0, 6)) == 0:
                bad.add(sub)  # removed, and not listed in drop
                continue
            fields.append((name, draw(lossy(child, sub, bad, False)), None))
        if not fields:  # a class needs a field: keep the first one, unchanged
            name, child, _ = spec[1][0]
            bad.discard(f"{path}.{name}" if path else name)
            fields.append((name, child, None))
        return ("struct", tuple(fields))
    if kind == "array":
        if spec[2] > 1 and draw(st.integers(0, 3)) == 0:
            bad.add(path)
            return ("array", spec[1], spec[2] - 1)
        return ("array", draw(lossy(spec[1], path + "[]", bad, False)), spec[2])
    if draw(st.integers(0, 2)):
        return spec  # unchanged
    options: list[Spec] = [("bool",) if kind != "bool" else ("str", 4)]
    if kind == "int":
        options += [("int", w, spec[2]) for w in (1, 2, 4) if w < spec[1]]
        options.append(("int", spec[1], not spec[2]))
    if kind == "float" and spec[1] == 8:
        options.append(("float", 4))
    if kind in ("str", "bytes") and spec[1] > 1:
        options.append((kind, spec[1] - 1))
    bad.add(path)
    return draw(st.sampled_from(options))


@given(data=st.data(), old_spec=roots)
def test_lossy_changes_are_refused_naming_every_field(data: st.DataObject, old_spec: Spec) -> None:
    """A random lossy pair is refused; every offending field is named; the file is untouched."""
    bad: set[str] = set()
    new_spec = data.draw(lossy(old_spec, "", bad, True), label="new schema")
    note(f"old {old_spec}\nnew {new_spec}\nbad {sorted(bad)}")
    classes: dict[int, type] = {}
    old_cls, new_cls = build(old_spec, classes), build(new_spec, classes)
    state = data.draw(values(old_spec, classes), label="state")
    disk = SimStorage()
    with js.open(PATH, old_cls, storage=disk, initial=state):
        pass
    before = (disk.cache_image(PATH), disk.durable_image(PATH), disk.names())
    if not bad:
        js.migrate(PATH, new_cls, storage=disk)
        return
    with pytest.raises(js.MigrationRefused) as info:
        js.migrate(PATH, new_cls, storage=disk)
    named = {p.split("'")[1] for p in info.value.problems}
    assert bad <= named, info.value.problems
    assert named <= bad | {n.split("[]")[0] for n in bad}, info.value.problems
    assert (disk.cache_image(PATH), disk.durable_image(PATH), disk.names()) == before
