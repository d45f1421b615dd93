"""Schema migration and journal resize on real files: the plan, the API, readers, the command."""

from __future__ import annotations

import errno
import fcntl
import io
import json
import math
import os
import struct
import sys
import textwrap
from pathlib import Path
from typing import Annotated, Any

import attrs
import pytest

import journalstate as js
from journalstate._cli import main
from journalstate._descriptor import decode_descriptor
from journalstate._io import OsStorage
from journalstate._migrate import Change, plan_migration
from journalstate._schema import compile_schema
from journalstate._tempfiles import temporary_path
from tests.migrate_schemas import (
    DROP,
    NEW_STATE,
    OLD_STATE,
    Inner,
    New,
    Old,
    make_store,
    migrate_copy,
)


def plan(old: type, new: type, **kwargs: Any) -> Any:
    """The plan for migrating a store of class ``old`` to class ``new``."""
    root = decode_descriptor(compile_schema(old).descriptor).root
    return plan_migration(root, compile_schema(new), **kwargs)


@pytest.fixture
def old_store(tmp_path: Path) -> tuple[Path, int]:
    """A store of class Old holding OLD_STATE, and that state's seq."""
    path = tmp_path / "state.jst"
    return path, make_store(path, Old, OLD_STATE)


# --- the plan ------------------------------------------------------------------------------------


def test_plan_lists_every_field() -> None:
    """The plan lists each field as kept, widened, added (with its value) or dropped."""
    p = plan(Old, New, drop=DROP)
    assert p.problems == ()
    changes = {c.path: (c.change, c.old_type, c.new_type, c.value) for c in p.changes}
    assert changes == {
        "count": (Change.WIDENED, "u32", "u64", None),
        "name": (Change.WIDENED, "str[16]", "str[64]", None),
        "inner.a": (Change.WIDENED, "u16", "i32", None),
        "inner.f": (Change.WIDENED, "f32", "f64", None),
        "inner.z": (Change.ADDED, None, "u8", 7),
        "hist": (Change.WIDENED, "u8[3]", "u16[5]", None),
        "extra": (Change.ADDED, None, "f64", 1.5),
        "gone": (Change.DROPPED, "i8", None, None),
    }


def test_same_class_plan_is_identical_and_copies_bytes() -> None:
    """A class against its own layout: every field kept, and the image copied unchanged."""
    p = plan(Old, Old)
    assert p.identical
    assert {c.change for c in p.changes} == {Change.KEPT}
    image = compile_schema(Old).encode(OLD_STATE)
    assert bytes(p.apply(image)) == image


@attrs.frozen
class Narrow:
    """Every field of Old narrowed or changed in kind."""

    count: js.U16 = 0
    name: Annotated[str, js.Str(8)] = ""
    inner: js.U32 = 0
    hist: Annotated[tuple[int, ...], js.Array(js.U8, 2)] = (0, 0)
    gone: js.U8 = 0


def test_lossy_changes_are_refused_naming_every_field() -> None:
    """Narrowing, a change of kind and a signed-to-unsigned change are each named with why."""
    problems = plan(Old, Narrow).problems
    assert len(problems) == 5
    text = " ".join(problems)
    for field, why in [
        ("count", "narrowing: u32 to u16"),
        ("name", "narrowing: str[16] to str[8]"),
        ("inner", "the kind changes from struct to u32"),
        ("hist", "drops 1 elements"),
        ("gone", "i8 to u8 loses negative values"),
    ]:
        assert f"field {field!r}: " in text
        assert why in text


def test_a_disappearing_field_needs_drop() -> None:
    """A field missing from the new class is refused unless drop lists it."""
    problems = plan(Old, New).problems
    assert problems == (
        "field 'gone': in the file, not in the new class (list it in drop to discard it)",
    )


@attrs.frozen
class NoDefault:
    """A new field without a default."""

    count: js.U32
    needed: js.U8


def test_a_new_field_without_default_is_refused() -> None:
    """An added field with no attrs default is named."""

    @attrs.frozen
    class Small:
        count: js.U32 = 0

    (problem,) = plan(Small, NoDefault).problems
    assert problem.startswith("field 'needed': new, and it has no default")


def test_unsigned_to_same_width_signed_is_narrowing() -> None:
    """u32 to i32 can lose values, u32 to i64 cannot."""

    @attrs.frozen
    class A:
        x: js.U32 = 0

    @attrs.frozen
    class B:
        x: js.I32 = 0

    @attrs.frozen
    class C:
        x: js.I64 = 0

    assert plan(A, B).problems == ("field 'x': narrowing: u32 to i32 can lose values",)
    assert plan(A, C).problems == ()


def test_convert_plans_every_field_as_converted() -> None:
    """With convert nothing is refused: new fields are converted, vanished ones dropped."""
    p = plan(Old, Narrow, convert=True)
    assert p.problems == ()
    kinds = {c.path: c.change for c in p.changes}
    assert kinds["count"] is Change.CONVERTED
    assert kinds["inner"] is Change.CONVERTED
    kinds = {c.path: c.change for c in plan(Old, New, convert=True).changes}
    assert kinds["gone"] is Change.DROPPED
    assert kinds["inner.z"] is Change.CONVERTED


def test_kept_floats_keep_their_nan_bits() -> None:
    """A kept f32 holding a signalling NaN with a payload keeps its exact bytes."""

    @attrs.frozen
    class F:
        x: js.F32 = 0.0
        y: js.U8 = 0

    @attrs.frozen
    class G:
        x: js.F32 = 0.0
        y: js.U16 = 0

    image = bytearray(compile_schema(F).encode(F(0.0, 1)))
    image[0:4] = struct.pack("<I", 0x7F800001)  # a signalling NaN
    new = plan(F, G).apply(image)
    assert bytes(new[0:4]) == struct.pack("<I", 0x7F800001)
    assert math.isnan(compile_schema(G).decode(new).x)  # type: ignore[attr-defined]


# --- migrate() -----------------------------------------------------------------------------------


def test_migrate_keeps_the_state_and_its_seq(old_store: tuple[Path, int]) -> None:
    """After migrate(), the path opens with the new class, the migrated state and the same seq."""
    path, seq = old_store
    report = js.migrate(path, New, drop=DROP)
    assert report.migrated
    assert report.seq == seq
    assert sorted(report.by_change(js.Change.ADDED)) == ["extra", "inner.z"]
    with js.open(path, New) as store:
        assert store.state == NEW_STATE
        assert store.seq == seq
        store.commit(attrs.evolve(store.state, count=1 << 40))
    with js.open(path, New, readonly=True) as store:
        assert store.state.count == 1 << 40
        assert store.seq == seq + 1
    assert os.listdir(path.parent) == ["state.jst"]


def test_refused_migration_leaves_the_file_untouched(old_store: tuple[Path, int]) -> None:
    """A refused migration changes no byte of the file."""
    path, _ = old_store
    before = path.read_bytes()
    with pytest.raises(js.MigrationRefused) as info:
        js.migrate(path, Narrow)
    assert len(info.value.problems) == 5
    assert isinstance(info.value, ValueError)
    assert path.read_bytes() == before


def test_migrate_gives_the_new_file_a_new_id(old_store: tuple[Path, int]) -> None:
    """The new store has its own file id, and generations continue the old file's."""
    path, _ = old_store
    with js.open(path, Old, readonly=True) as store:
        file_id, generation = store.header.file_id, store.generation
    js.migrate(path, New, drop=DROP)
    with js.open(path, New, readonly=True) as store:
        assert store.header.file_id != file_id
        assert store.generation > generation


def test_convert_builds_the_new_state(old_store: tuple[Path, int]) -> None:
    """convert receives the old state and its result is what the new store holds."""
    path, seq = old_store

    def convert(old: Any) -> Narrow:
        return Narrow(count=old.count, name=old.name[:8], inner=old.inner.a, gone=1)

    report = js.migrate(path, Narrow, convert=convert)
    assert {c.change for c in report.changes} == {Change.CONVERTED}
    with js.open(path, Narrow) as store:
        assert store.state == Narrow(count=41, name="hello", inner=3, gone=1)
        assert store.seq == seq


def test_convert_result_is_checked(old_store: tuple[Path, int]) -> None:
    """A convert returning the wrong class, or a value that does not fit, changes nothing."""
    path, _ = old_store
    before = path.read_bytes()
    with pytest.raises(js.InvalidValue, match="convert returned a Old"):
        js.migrate(path, Narrow, convert=lambda old: OLD_STATE)
    with pytest.raises(js.InvalidValue, match="'count'"):
        js.migrate(path, Narrow, convert=lambda old: Narrow(count=1 << 20))
    assert path.read_bytes() == before
    assert os.listdir(path.parent) == ["state.jst"]


def test_dry_run_changes_nothing(old_store: tuple[Path, int]) -> None:
    """A dry run reports the plan and leaves the file as it was."""
    path, seq = old_store
    before = path.read_bytes()
    report = js.migrate(path, New, drop=DROP, dry_run=True)
    assert report.dry_run
    assert not report.migrated
    assert report.seq == seq
    assert path.read_bytes() == before


@pytest.mark.parametrize("size", [1 << 16, 1 << 22])
def test_resize_the_journal(old_store: tuple[Path, int], size: int) -> None:
    """journal_size makes the journal smaller or bigger, with the same class."""
    path, seq = old_store
    report = js.migrate(path, Old, journal_size=size)
    assert report.migrated
    assert report.journal_size == size
    with js.open(path, Old) as store:
        assert store.header.journal_size == size
        assert store.state == OLD_STATE
        assert store.seq == seq


def test_same_class_is_a_no_op(old_store: tuple[Path, int]) -> None:
    """Migrating to the class the file already has writes no new file."""
    path, _ = old_store
    with js.open(path, Old, readonly=True) as store:
        file_id = store.header.file_id
    assert not js.migrate(path, Old).migrated
    with js.open(path, Old, readonly=True) as store:
        assert store.header.file_id == file_id


def test_open_with_migrate(old_store: tuple[Path, int]) -> None:
    """open(..., migrate=True) migrates a differing layout first, then opens it."""
    path, seq = old_store

    @attrs.frozen
    class Wider:
        count: js.U64 = 0
        name: Annotated[str, js.Str(16)] = ""
        inner: Inner = attrs.Factory(Inner)
        hist: Annotated[tuple[int, ...], js.Array(js.U8, 3)] = (0, 0, 0)
        gone: js.I8 = 0

    with pytest.raises(js.SchemaMismatch):
        js.open(path, Wider)
    with js.open(path, Wider, migrate=True) as store:
        assert store.state == Wider(41, "hello", Inner(3, 1.5), (1, 2, 3), -1)
        assert store.seq == seq
    with js.open(path, Wider, migrate=True) as store:  # a plain open now
        assert store.seq == seq
    with pytest.raises(js.MigrationRefused):
        js.open(path, New, migrate=True)
    with pytest.raises(ValueError, match="writable"):
        js.open(path, Wider, migrate=True, readonly=True)


def test_migrate_needs_the_writer_lock(old_store: tuple[Path, int]) -> None:
    """A live writer's lock makes migrate() fail with StoreLocked, changing nothing."""
    path, _ = old_store
    with js.open(path, Old), pytest.raises(js.StoreLocked):
        js.migrate(path, New, drop=DROP)
    assert os.listdir(path.parent) == ["state.jst"]


def test_readers_learn_the_file_was_replaced(old_store: tuple[Path, int]) -> None:
    """A reader of the old file keeps its state and learns of the replacement, typed."""
    path, _ = old_store
    with js.open(path, Old, readonly=True) as reader:
        assert not reader.replaced
        reader.check_replaced()
        js.migrate(path, New, drop=DROP)
        assert reader.replaced
        with pytest.raises(js.StoreReplaced):
            reader.check_replaced()
        assert reader.state == OLD_STATE


def test_writable_open_rechecks_the_path_after_the_lock(old_store: tuple[Path, int]) -> None:
    """A writer whose lock came on a file that was renamed over opens the new file instead."""
    path, _ = old_store
    stale = OsStorage().open(str(path), writable=True)
    js.migrate(path, New, drop=DROP)
    calls: list[str] = []

    class Racing(OsStorage):
        def open(self, p: str, *, writable: bool) -> Any:
            calls.append(p)
            return stale if len(calls) == 1 else super().open(p, writable=writable)

    with js.open(path, New, storage=Racing()) as store:
        assert store.state == NEW_STATE
    assert len(calls) == 2


def test_stray_temporaries_are_removed_unless_locked(old_store: tuple[Path, int]) -> None:
    """migrate() removes temporary files nobody holds locked, and only those."""
    path, _ = old_store
    stray = Path(temporary_path(str(path.parent)))
    stray.write_bytes(b"half a store")
    live = Path(temporary_path(str(path.parent)))
    live.write_bytes(b"being written")
    lookalike = path.parent / ".jst-not-ours.tmp"
    lookalike.write_bytes(b"x")
    fd = os.open(live, os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        js.migrate(path, New, drop=DROP)
        assert sorted(os.listdir(path.parent)) == sorted([lookalike.name, live.name, "state.jst"])
    finally:
        os.close(fd)


def test_migrate_without_fallocate(
    old_store: tuple[Path, int], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Where the file system cannot preallocate, zeros fill only the gaps between the data."""
    path, seq = old_store

    def unsupported(fd: int, offset: int, length: int) -> None:
        raise OSError(errno.EOPNOTSUPP, "not supported")

    monkeypatch.setattr(os, "posix_fallocate", unsupported)
    js.migrate(path, New, drop=DROP)
    with js.open(path, New) as store:
        assert store.state == NEW_STATE
        assert store.seq == seq
    assert path.stat().st_blocks * 512 >= path.stat().st_size


def test_migrate_copy(old_store: tuple[Path, int], tmp_path: Path) -> None:
    """migrate_copy migrates a copy of a file (what the golden-store test uses)."""
    path, _ = old_store
    assert migrate_copy(path, tmp_path / "copy.jst", New, drop=DROP) == NEW_STATE
    with js.open(path, Old, readonly=True) as store:
        assert store.state == OLD_STATE


# --- the command ---------------------------------------------------------------------------------

SCHEMA_MODULE = textwrap.dedent(
    """
    from typing import Annotated
    import attrs
    import journalstate as js
    from tests.migrate_schemas import New, Old

    @attrs.frozen
    class Narrow:
        count: js.U16 = 0

    def shrink(old):
        return Narrow(count=old.count)

    def broken(old):
        raise RuntimeError("no")

    not_a_class = 3
    """
)


def run(*argv: str) -> tuple[int, str, str]:
    """Run the command; returns the exit code, stdout and stderr."""
    out, err = io.StringIO(), io.StringIO()
    saved = sys.stderr
    sys.stderr = err
    try:
        code = main(list(argv), out)
    finally:
        sys.stderr = saved
    return code, out.getvalue(), err.getvalue()


@pytest.fixture
def cli_store(
    old_store: tuple[Path, int], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> tuple[str, str]:
    """A store and a directory holding the module `userschema` (given with --path)."""
    modules = tmp_path / "mods"
    modules.mkdir()
    (modules / "userschema.py").write_text(SCHEMA_MODULE)
    monkeypatch.setattr(sys, "path", list(sys.path))
    monkeypatch.delitem(sys.modules, "userschema", raising=False)
    return str(old_store[0]), str(modules)


def test_cli_migrate(cli_store: tuple[str, str]) -> None:
    """`migrate --dry-run` lists every field and changes nothing; `migrate` migrates."""
    path, mods = cli_store
    code, out, _ = run("migrate", path, "userschema:New", "--drop", "gone", "--dry-run",
                       "--path", mods)  # fmt: skip
    assert code == 0
    assert "would migrate to New" in out
    assert "added     extra" in out
    assert "dropped   gone" in out
    with js.open(path, Old, readonly=True):
        pass
    code, out, _ = run("migrate", path, "userschema:New", "--drop", "gone", "--json",
                       "--path", mods)  # fmt: skip
    assert code == 0
    data = json.loads(out)
    assert data["migrated"]
    assert {c["path"]: c["change"] for c in data["changes"]}["extra"] == "added"
    with js.open(path, New, readonly=True) as store:
        assert store.state == NEW_STATE


def test_cli_migrate_convert_and_resize(cli_store: tuple[str, str]) -> None:
    """--convert names a function; --journal-size resizes."""
    path, mods = cli_store
    code, _, err = run("migrate", path, "userschema:Narrow", "--convert", "userschema:shrink",
                       "--journal-size", "65536", "--path", mods)  # fmt: skip
    assert (code, err) == (0, "")
    store: js.Store[Any]
    with js.open(path, None, readonly=True) as store:
        assert store.state.count == 41
        assert store.header.journal_size == 65536


@pytest.mark.parametrize(
    ("spec", "extra", "message"),
    [
        ("userschema:Missing", [], "has no 'Missing'"),
        ("nosuchmodule:New", [], "cannot import 'nosuchmodule'"),
        ("userschema", [], "expected module:attribute"),
        ("userschema:not_a_class", [], "not an attrs class"),
        ("userschema:New", [], "list it in drop"),
        ("userschema:Narrow", ["--convert", "userschema:broken"], "raised RuntimeError: no"),
    ],
)
def test_cli_migrate_usage_errors(
    cli_store: tuple[str, str], spec: str, extra: list[str], message: str
) -> None:
    """Bad classes, refusals and failing converts are one line on stderr, exit 2; no byte of
    the file changes."""
    path, mods = cli_store
    before = Path(path).read_bytes()
    code, _, err = run("migrate", path, spec, *extra, "--path", mods)
    assert code == 2
    assert message in err
    assert err.count("\n") == 1
    assert "Traceback" not in err
    assert Path(path).read_bytes() == before


def test_slot_pieces_are_the_encoded_slot() -> None:
    """The slot a migration writes in pieces is byte for byte what encode_slot makes."""
    from journalstate._format import SlotHead, encode_slot
    from journalstate._migrate_run import slot_chunks

    image = compile_schema(Old).encode(OLD_STATE)
    head = SlotHead(7, 3, 41, 0, len(image))
    pieces = slot_chunks(100, head, image)
    joined = bytearray(len(encode_slot(head, image)))
    for offset, data in pieces:
        joined[offset - 100 : offset - 100 + len(data)] = data
    assert bytes(joined) == encode_slot(head, image)


def test_the_new_class_validators_see_the_migrated_state(old_store: tuple[Path, int]) -> None:
    """A validator of the new class that rejects the migrated state stops the migration."""
    path, _ = old_store

    def no_hello(instance: Any, attribute: Any, value: str) -> None:
        if value == "hello":
            raise ValueError("no hello")

    @attrs.frozen
    class Strict:
        count: js.U64 = 0
        name: Annotated[str, js.Str(16)] = attrs.field(default="", validator=no_hello)
        inner: Inner = attrs.Factory(Inner)
        hist: Annotated[tuple[int, ...], js.Array(js.U8, 3)] = (0, 0, 0)
        gone: js.I8 = 0

    before = path.read_bytes()
    with pytest.raises(js.InvalidValue, match="no hello"):
        js.migrate(path, Strict)
    assert path.read_bytes() == before
