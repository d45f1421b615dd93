"""The compiled paths (journalstate._speedups) against the pure Python ones they stand in for.

The pure Python paths are the reference. For random inputs, valid or not, each compiled
function must give exactly what its original gives: the crc32c package's checksums,
``_writer.build_record``'s bytes, the generated diff's patches and errors, and
``_reader._replay_run``'s results and image over random and damaged journals. Then whole
stores: random schemas and histories written on both paths leave identical slots and
journal bytes, and recover (whole, or after a process death) to identical states. The
Hypothesis profile (``JOURNALSTATE_PROFILE``) sets how many examples.

The module runs in both suite runs (``JOURNALSTATE_PURE=1`` only turns the store's use of
the compiled paths off, not the module): it is skipped only where the module is not built.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any

import attrs
import pytest
from hypothesis import given
from hypothesis import strategies as st

import journalstate as js
from journalstate import _accel, _chain, _checkpoint, _reader, _writer
from journalstate._checksums import crc32c
from journalstate._codegen import flat_fields
from journalstate._format import RECORD_HEADER_SIZE
from journalstate._header import decode_header
from journalstate._journal import max_payload
from journalstate._schema import Schema, compile_schema
from tests import strategies as jst
from tests.test_codegen import _changed, _mixed, _outcome

speedups: Any = pytest.importorskip("journalstate._speedups")


@contextlib.contextmanager
def _bound(
    build_record: object, commit_diff: object, replay_run: object, chunks: object
) -> Iterator[None]:
    """Within: the commit, checkpoint and replay paths bind these functions."""
    places = (
        (_chain, "build_record"),
        (_accel, "commit_diff"),
        (_reader, "compiled_run"),
        (_chain, "compiled_chunks"),
    )
    saved = [getattr(module, name) for module, name in places]
    values = (build_record, commit_diff, replay_run, chunks)
    for (module, name), value in zip(places, values, strict=True):
        setattr(module, name, value)
    try:
        yield
    finally:
        for (module, name), value in zip(places, saved, strict=True):
            setattr(module, name, value)


def pure_paths() -> contextlib.AbstractContextManager[None]:
    """Within: stores opened and replays run on the pure Python paths, whatever _accel chose."""
    return _bound(_writer.build_record, lambda schema: schema.diff, None, None)


def _compiled_diff(schema: Schema) -> Any:
    fields = flat_fields(schema.root)
    return schema.diff if fields is None else speedups.FlatDiff(schema.cls, fields, schema.diff)


def compiled_paths() -> contextlib.AbstractContextManager[None]:
    """Within: stores opened and replays run on the compiled paths (even under PURE)."""
    return _bound(speedups.build_record, _compiled_diff, speedups.replay_run, speedups.dirty_chunks)


# --- crc32c and records -----------------------------------------------------------------------


@given(data=st.binary(max_size=300), value=st.integers(0, 0xFFFFFFFF), skip=st.integers(0, 7))
def test_crc32c_matches_the_package(data: bytes, value: int, skip: int) -> None:
    """The compiled crc32c equals the crc32c package's, from any start value and alignment."""
    assert speedups.crc32c(data, value) == crc32c(data, value)
    with memoryview(data) as view:
        assert speedups.crc32c(view[skip:]) == crc32c(data[skip:])


def test_crc32c_of_a_large_buffer_matches_the_package() -> None:
    """A buffer above the size that releases the GIL checksums the same."""
    data = os.urandom(200_000)
    assert speedups.crc32c(data, 7) == crc32c(data, 7)


_U64 = st.integers(0, (1 << 64) - 1)
_PATCHES = st.lists(st.tuples(st.integers(0, 0xFFFFFFFF), st.binary(max_size=40)), max_size=6)


@given(
    epoch=st.integers(0, 0xFFFFFFFF),
    seq=_U64,
    position=_U64,
    durable=_U64,
    generation=_U64,
    patches=_PATCHES,
)
def test_build_record_writes_the_same_bytes(
    epoch: int, seq: int, position: int, durable: int, generation: int, patches: Any
) -> None:
    """The compiled build_record returns _writer.build_record's bytes and size."""
    args = (epoch, seq, position, durable, generation, patches)
    assert speedups.build_record(*args) == _writer.build_record(*args)


def test_build_record_refuses_what_cannot_be_packed() -> None:
    """Out-of-range fields and patches that are not (int, bytes) raise, as packing would."""
    with pytest.raises(OverflowError):
        speedups.build_record(1 << 32, 1, 0, 0, 0, [(0, b"x")])
    with pytest.raises(OverflowError):
        speedups.build_record(1, 1, 0, 0, 0, [(1 << 32, b"x")])
    with pytest.raises(TypeError):
        speedups.build_record(1, 1, 0, 0, 0, [(0, "x")])
    with pytest.raises(TypeError):
        speedups.build_record(1, 1, 0, 0, 0, ((0, b"x"),))


_LOG = st.lists(
    st.lists(st.tuples(st.integers(0, 20_000), st.binary(max_size=9000)), max_size=4), max_size=6
)


@given(_LOG, st.integers(0, 20_000), st.sampled_from([1, 7, 4096]))
def test_dirty_chunks_match_the_checkpoints(logged: Any, state_size: int, chunk: int) -> None:
    """The compiled dirty_chunks names the chunks _checkpoint.dirty_chunks names, in order."""
    saved = _checkpoint.CHUNK
    _checkpoint.CHUNK = chunk
    try:
        expected = _checkpoint.dirty_chunks(logged, state_size)
    finally:
        _checkpoint.CHUNK = saved
    assert speedups.dirty_chunks(logged, state_size, chunk) == expected
    assert speedups.dirty_chunks(tuple(logged), state_size, chunk) == expected


# --- the diff of a flat schema ------------------------------------------------------------------


def _flat(schema: Schema) -> bool:
    return flat_fields(schema.root) is not None


@st.composite
def _flat_pairs(draw: st.DrawFn) -> tuple[Schema, object, object]:
    schema = draw(jst.schemas(depth=0).filter(_flat))
    old = draw(st.one_of(jst.values_for(schema), _mixed(schema.root)))
    new = draw(_changed(schema.root, old))
    return schema, old, new


@given(_flat_pairs())
def test_flat_diff_gives_the_generated_diffs_patches_and_errors(
    case: tuple[Schema, object, object],
) -> None:
    """For flat schemas, FlatDiff returns the generated diff's patches or raises its error."""
    schema, old, new = case
    diff = _accel_diff(schema)
    expected = _outcome(schema.diff, old, new)
    assert _outcome(diff, old, new) == expected
    assert _outcome(diff, old, new) == _outcome(schema.walk_diff, old, new)
    assert _outcome(diff, new, old) == _outcome(schema.diff, new, old)


def _accel_diff(schema: Schema) -> Any:
    fields = flat_fields(schema.root)
    assert fields is not None
    return speedups.FlatDiff(schema.cls, fields, schema.diff)


@attrs.frozen
class _Flat:
    """A flat schema: every kind FlatDiff takes."""

    a: js.U8 = 0
    b: js.I64 = 0
    c: js.Bool = False
    d: js.F64 = 0.0
    e: Annotated[bytes, js.Bytes(5)] = b""
    f: Annotated[str, js.Str(5)] = ""


@attrs.frozen
class _WithF32:
    """An f32 field: the generated diff serves it."""

    a: js.U8 = 0
    x: js.F32 = 0.0


@attrs.frozen
class _Nested:
    """A nested struct: the generated diff serves it."""

    inner: _Flat = _Flat()


def test_flat_fields_leave_out_nested_and_f32_schemas() -> None:
    """A flat schema gets the compiled diff; a nested struct, an array or an f32 does not."""
    assert flat_fields(compile_schema(_Flat).root) is not None
    assert flat_fields(compile_schema(_WithF32).root) is None
    assert flat_fields(compile_schema(_Nested).root) is None
    with _compiled_paths_on():
        assert type(_accel.commit_diff(compile_schema(_Flat))) is speedups.FlatDiff


@contextlib.contextmanager
def _compiled_paths_on() -> Iterator[None]:
    if _accel.speedups is None:
        with compiled_paths():
            yield
    else:
        yield


def test_flat_diff_packs_each_kind_and_joins_adjacent_patches() -> None:
    """Every field changed: one patch over the whole image; bad values raise InvalidValue."""
    schema = compile_schema(_Flat)
    diff = _accel_diff(schema)
    old = _Flat()
    new = _Flat(a=255, b=-2, c=True, d=-0.0, e=b"xyzab", f="\u00e9")
    assert diff(old, new) == schema.walk_diff(old, new)
    assert len(diff(old, new)) == 1
    assert diff(old, _Flat(a=1, c=True)) == [(0, b"\x01"), (9, b"\x01")]
    for bad in (
        {"a": 256},
        {"a": True},
        {"b": 1 << 63},
        {"c": 1},
        {"d": 1},
        {"e": b"toolong"},
        {"e": "s"},
        {"f": "\ud800"},
        {"f": "\u00e9\u00e9\u00e9"},
    ):
        value = attrs.evolve(old, **bad)
        assert _outcome(diff, old, value) == _outcome(schema.walk_diff, old, value)
        assert isinstance(_outcome(diff, old, value), tuple)


def test_flat_diff_of_a_value_of_another_class_raises_the_typed_error() -> None:
    """A state of another class goes to the generated diff, which raises InvalidValue."""
    schema = compile_schema(_Flat)
    diff = _accel_diff(schema)
    old = _Flat()
    assert _outcome(diff, old, 5) == _outcome(schema.diff, old, 5)
    assert isinstance(_outcome(diff, old, 5), tuple)
    assert diff(old, old) == []
    with pytest.raises(TypeError):
        diff(old)


# --- replay ---------------------------------------------------------------------------------------


class _Ring:
    """A bytearray as the writer's Ring."""

    def __init__(self, data: bytearray) -> None:
        self.data = data

    def write(self, offset: int, data: bytes | bytearray) -> None:
        """Copy ``data`` in at ``offset``."""
        self.data[offset : offset + len(data)] = data


@st.composite
def _journals(draw: st.DrawFn) -> dict[str, Any]:
    """A ring of records of one epoch after a start, then damage: random bytes overwritten."""
    journal_size = draw(st.integers(4, 64)) * 64
    state_size = draw(st.integers(1, 200))
    epoch = draw(st.integers(1, 5))
    laps = draw(st.integers(0, 3))
    start = laps * journal_size + draw(st.integers(0, journal_size // 8 - 1)) * 8
    seq = draw(st.integers(0, 1000))
    ring = bytearray(draw(st.binary(min_size=journal_size, max_size=journal_size)))
    position, s = start, seq
    for _ in range(draw(st.integers(0, 12))):
        patches = draw(
            st.lists(
                st.integers(0, state_size - 1).flatmap(
                    lambda o: st.tuples(st.just(o), st.binary(min_size=1, max_size=state_size - o))
                ),
                max_size=3,
            )
        )
        record, size = _writer.build_record(
            epoch + draw(st.sampled_from([0] * 15 + [1])),
            s + draw(st.sampled_from([1] * 15 + [2])),
            position + draw(st.sampled_from([0] * 15 + [8])),
            0,
            draw(st.integers(0, 4)),
            patches,
        )
        if position + size + RECORD_HEADER_SIZE - start > journal_size:
            break
        _writer.write(_Ring(ring), journal_size, position, record)
        position, s = position + size, s + 1
    for _ in range(draw(st.sampled_from([0, 0, 1, 3]))):  # damage
        at = draw(st.integers(0, journal_size - 1))
        ring[at] = draw(st.integers(0, 255))
    end = draw(st.sampled_from([position, start + journal_size, start + journal_size // 2]))
    return {
        "ring": bytes(ring),
        "journal_size": journal_size,
        "state_size": state_size,
        "epoch": epoch,
        "position": start,
        "seq": seq,
        "end": end,
        "image": draw(st.binary(min_size=state_size, max_size=state_size)),
        "generation": draw(st.integers(0, 4)),
        "chunk": draw(st.sampled_from([64, 200, 1 << 20])),
    }


@given(_journals())
def test_replay_run_matches_the_batch_path(j: dict[str, Any]) -> None:
    """The compiled replay loop returns what _replay_run returns and leaves the same image."""
    images = [bytearray(j["image"]), bytearray(j["image"])]
    args = [
        j["journal_size"],
        None,
        j["epoch"],
        j["position"],
        j["seq"],
        j["end"],
        j["state_size"],
        max_payload(j["journal_size"], j["state_size"]),
        j["generation"],
        j["chunk"],
    ]
    results = []
    for run, image in zip((_reader._replay_run, speedups.replay_run), images, strict=True):
        args[1] = image
        results.append(run(j["ring"], *args))
    assert results[0] == results[1]
    assert images[0] == images[1]


@given(_journals(), st.booleans())
def test_replay_gives_the_same_image_stop_and_generation(j: dict[str, Any], copy: bool) -> None:
    """ChainReader.replay on the compiled path equals it on the pure path, stop included."""
    outcomes = []
    for paths in (pure_paths, compiled_paths):
        image = bytearray(j["image"])
        reader = _reader.ChainReader(
            j["ring"],
            j["journal_size"],
            epoch=j["epoch"],
            position=j["position"],
            seq=j["seq"],
            end=j["end"],
            state_size=j["state_size"],
            copy_first=copy,
        )
        with paths():
            newer = reader.replay(image, j["generation"], chunk=j["chunk"])
        outcomes.append((newer, reader.stop, bytes(image)))
    assert outcomes[0] == outcomes[1]
    # And the iteration (the careful and fast paths) applies the same records.
    image = bytearray(j["image"])
    reader = _reader.ChainReader(
        j["ring"],
        j["journal_size"],
        epoch=j["epoch"],
        position=j["position"],
        seq=j["seq"],
        end=j["end"],
        state_size=j["state_size"],
    )
    for record in reader:
        _reader.apply_patches(image, record.patches)
    assert (reader.stop, bytes(image)) == outcomes[0][1:]


def test_replay_run_refuses_a_wrong_image() -> None:
    """An image that is not state_size bytes, or not writable, raises instead of writing."""
    ring = bytes(256)
    with pytest.raises(ValueError, match="state_size"):
        speedups.replay_run(ring, 256, bytearray(3), 1, 0, 0, 256, 4, 1000, 0, 1 << 20)
    with pytest.raises(BufferError):
        speedups.replay_run(ring, 256, bytes(4), 1, 0, 0, 256, 4, 1000, 0, 1 << 20)


# --- whole stores ---------------------------------------------------------------------------------


def _regions(path: Path) -> bytes:
    """The slots and the journal of a store file (the header holds a random file id)."""
    data = path.read_bytes()
    header = decode_header(str(path), data, len(data))
    return data[header.slot0_offset :]


@st.composite
def _histories(draw: st.DrawFn) -> tuple[Schema, list[object], int]:
    schema = draw(jst.schemas(depth=draw(st.sampled_from([0, 0, 1]))))
    values = [draw(jst.values_for(schema, allow_nan=False))]
    for _ in range(draw(st.integers(1, 25))):
        values.append(draw(jst.evolved(schema, values[-1])))
    return schema, values, draw(st.sampled_from([4096, 8192]))


@given(_histories(), st.sampled_from(["process", "commit"]))
def test_both_paths_write_identical_stores_and_recover_identical_states(
    history: tuple[Schema, list[object], int], durability: str
) -> None:
    """A history committed on either path leaves the same bytes; both recover the same state."""
    schema, values, journal_size = history
    with tempfile.TemporaryDirectory() as directory:
        stores = {}
        for name, paths in (("pure", pure_paths), ("compiled", compiled_paths)):
            path = Path(directory, f"{name}.jst")
            with paths():
                store: js.Store[Any] = js.open(
                    path, schema.cls, durability=durability, journal_size=journal_size
                )
                try:
                    seqs = [store.commit(value) for value in values]
                    died = Path(directory, f"{name}.died")
                    died.write_bytes(path.read_bytes())  # what a process death leaves
                finally:
                    store.close()
            stores[name] = (path, died, seqs)
        (pure, pure_died, pure_seqs), (fast, fast_died, fast_seqs) = stores.values()
        assert pure_seqs == fast_seqs
        assert _regions(pure_died) == _regions(fast_died)
        assert _regions(pure) == _regions(fast)
        states: list[tuple[object, int, int]] = []
        for paths in (pure_paths, compiled_paths):
            with paths(), js.open(pure_died, schema.cls, readonly=True) as store:
                states.append((store.state, store.seq, store.recovery.records_replayed))
        assert states[0] == states[1]
        assert states[0][:2] == (values[-1], pure_seqs[-1])


def test_accelerated_says_which_path_runs() -> None:
    """journalstate.accelerated is on when built, and JOURNALSTATE_PURE=1 turns it off."""
    code = (
        "import journalstate as js, journalstate._accel as a; print(js.accelerated, a.describe())"
    )
    for value, expected in (("1", "False"), ("0", "True"), ("", "True")):
        env = {**os.environ, _accel.PURE_ENV: value}
        out = subprocess.run(
            [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True,
            timeout=300,
        ).stdout  # fmt: skip
        assert out.split()[0] == expected, out
        assert ("pure Python" in out) == (expected == "False")
    assert js.accelerated == (os.environ.get(_accel.PURE_ENV, "") in ("", "0"))
