"""The golden store: a file made once by journalstate 0.1.0 must open in every later release.

tests/data/golden-v1.jst was written by tests/data/make_golden.py and is never regenerated (a
regenerated file would only show that a release reads its own files). It ends as a process
death left it: a checkpoint at seq 3 and three committed records after it, which every open
replays. The file itself is never written to: writable opens work on a copy.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import shutil
import struct
from pathlib import Path
from typing import Annotated, Any

import attrs
import pytest

import journalstate as js
from journalstate import _cli

GOLDEN = Path(__file__).resolve().parent / "data" / "golden-v1.jst"
GOLDEN_SHA256 = "7664d451cba7bfdec401a393d7a45021395c34cba9018b0822e08b6f654a3fb1"
NAN_BITS = 0x7FF8_0000_DEAD_BEEF


@attrs.frozen
class Reading:
    """The nested class of the golden schema."""

    sensor: js.U16 = 0
    value: js.F32 = 0.0
    ok: bool = False


@attrs.frozen
class Golden:
    """The golden schema, written out again here: the file must match it field for field."""

    count: js.U64 = 0
    small: js.U8 = 0
    delta: js.I32 = 0
    tiny: js.I8 = 0
    ratio: js.F64 = 0.0
    odd: js.F64 = 0.0
    half: js.F32 = 0.0
    flag: bool = False
    name: Annotated[str, js.Str(16)] = ""
    blob: Annotated[bytes, js.Bytes(8)] = b""
    hist: Annotated[tuple[int, ...], js.Array(js.I16, 4)] = (0, 0, 0, 0)
    latest: Reading = Reading()
    readings: Annotated[tuple[Reading, ...], js.Array(Reading, 2)] = (Reading(), Reading())


EXPECTED = Golden(
    count=6,
    small=255,
    delta=-(2**31),
    tiny=-128,
    ratio=0.1,
    odd=0.0,  # the NaN, checked by its bits
    half=-0.0,
    flag=True,
    name="häll\u00f6 \u2713",
    blob=b"\x00\x01\xfe\xff",
    hist=(32767, -2, -32768, 5),
    latest=Reading(sensor=7, value=21.5),
    readings=(Reading(sensor=65535), Reading(value=float("-inf"), ok=True)),
)
"""The state after seq 6, the last commit before the writer died."""


def check_state(state: Golden) -> None:
    """Demand EXPECTED exactly: the NaN's payload and the sign of -0.0 included."""
    assert struct.pack("<d", state.odd) == struct.pack("<Q", NAN_BITS)
    assert math.copysign(1.0, state.half) == -1.0
    assert attrs.evolve(state, odd=0.0) == EXPECTED


def golden_copy(tmp_path: Path) -> Path:
    """A copy of the golden file that a test may write to."""
    dest = tmp_path / "golden.jst"
    shutil.copyfile(GOLDEN, dest)
    return dest


@pytest.fixture(autouse=True)
def golden_unchanged() -> Any:
    """After every test, the golden file still has the bytes it was committed with."""
    yield
    assert hashlib.sha256(GOLDEN.read_bytes()).hexdigest() == GOLDEN_SHA256


def test_header_says_format_version_1() -> None:
    """The file starts with the magic and format version 1, and is 16 KiB."""
    data = GOLDEN.read_bytes()
    assert data[:8] == b"\x89JSTATE\n"
    assert struct.unpack_from("<I", data, 8)[0] == 1
    assert len(data) == 16384


def test_read_only_open_recovers_the_exact_state() -> None:
    """A read-only open replays the three records after the checkpoint: seq 6, exactly."""
    with js.open(GOLDEN, Golden, readonly=True) as store:
        check_state(store.state)
        assert store.seq == 6
        report = store.recovery
        assert (report.generation, report.base_seq, report.seq) == (3, 3, 6)
        assert report.records_replayed == 3
        assert report.clean
        assert store.header.format_version == 1


def test_every_recovery_mode_agrees() -> None:
    """strict, tolerate-tail and salvage all accept the file and give the same state."""
    for mode in js.RecoveryMode:
        with js.open(GOLDEN, Golden, readonly=True, recovery=mode) as store:
            check_state(store.state)


def test_previous_generation_is_the_checkpoint_before() -> None:
    """The older slot holds the state the writing session began with (seq 0)."""
    with js.open(GOLDEN, Golden, readonly=True, previous_generation=True) as store:
        assert store.state == Golden()
        assert store.seq == 0


def test_writable_open_of_a_copy_keeps_the_state_and_commits(tmp_path: Path) -> None:
    """A copy opens for writing, recovers seq 6, takes a commit, and reopens with it."""
    path = golden_copy(tmp_path)
    with js.open(path, Golden) as store:
        check_state(store.state)
        assert store.commit(attrs.evolve(store.state, count=7)) == 7
    with js.open(path, Golden, readonly=True) as store:
        check_state(attrs.evolve(store.state, count=6))
        assert store.state.count == 7
        assert store.recovery.clean


def test_opens_without_the_class(tmp_path: Path) -> None:
    """The stored schema alone rebuilds the class, with the same field names and values."""
    store: js.Store[Any] = js.open(GOLDEN, None, readonly=True)
    with store:
        names = [f.name for f in attrs.fields(store.state_class)]
        assert names == [f.name for f in attrs.fields(Golden)]
        assert store.state.name == EXPECTED.name
        assert store.state.readings[1].value == float("-inf")


def test_command_line_reports_it_clean_and_recovers_a_copy(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """check exits 0 (clean) on the file; recover on a copy exits 0; dump shows seq 6."""
    out = io.StringIO()
    assert _cli.main(["check", str(GOLDEN)], out) == 0
    assert out.getvalue().startswith(f"{GOLDEN}: clean\n")
    path = golden_copy(tmp_path)
    out = io.StringIO()
    assert _cli.main(["recover", str(path)], out) == 0
    assert "records replayed  3" in out.getvalue()
    out = io.StringIO()
    assert _cli.main(["check", "--json", str(path)], out) == 0
    doc = json.loads(out.getvalue())
    assert (doc["clean"], doc["records_replayed"], doc["seq"]) == (True, 0, 6)
    out = io.StringIO()
    assert _cli.main(["dump", "--json", str(path)], out) == 0
    doc = json.loads(out.getvalue())
    assert doc["seq"] == 6
    assert doc["state"]["hist"] == [32767, -2, -32768, 5]
    assert doc["state"]["odd"] == {"$float": "nan"}
    assert capsys.readouterr().err == ""
    with js.open(path, Golden, readonly=True) as store:
        check_state(store.state)


def test_schema_info_of_the_file() -> None:
    """The file's stored schema has the layout of the class, byte for byte."""
    info = js.schema_info(GOLDEN)
    assert info == js.schema_info(Golden)
    assert (info.name, info.size) == ("Golden", 96)
    assert [(f.name, f.offset, f.size) for f in info.fields][-3:] == [
        ("hist", 67, 8),
        ("latest", 75, 7),
        ("readings", 82, 14),
    ]


@attrs.frozen
class GoldenWide:
    """The golden schema made wider: larger ints, a longer Str and Array, and one new field."""

    count: js.U64 = 0
    small: js.U16 = 0
    delta: js.I64 = 0
    tiny: js.I8 = 0
    ratio: js.F64 = 0.0
    odd: js.F64 = 0.0
    half: js.F32 = 0.0
    flag: bool = False
    name: Annotated[str, js.Str(40)] = ""
    blob: Annotated[bytes, js.Bytes(8)] = b""
    hist: Annotated[tuple[int, ...], js.Array(js.I16, 6)] = (0,) * 6
    latest: Reading = Reading()
    readings: Annotated[tuple[Reading, ...], js.Array(Reading, 2)] = (Reading(), Reading())
    added: js.U32 = 77


def check_wide(state: GoldenWide) -> None:
    """Demand every value of EXPECTED in the wider class, and the added field's default."""
    assert struct.pack("<d", state.odd) == struct.pack("<Q", NAN_BITS)
    assert math.copysign(1.0, state.half) == -1.0
    skip = ("hist", "odd")
    kept = {f.name: getattr(state, f.name) for f in attrs.fields(Golden) if f.name not in skip}
    assert state.hist == (*EXPECTED.hist, 0, 0)
    assert Golden(**kept, hist=state.hist[:4], odd=0.0) == EXPECTED
    assert state.added == 77


def test_migrate_a_copy_to_a_wider_class(tmp_path: Path) -> None:
    """A copy migrates to GoldenWide: every value kept exactly, seq 6 kept, and it opens clean."""
    path = golden_copy(tmp_path)
    report = js.migrate(path, GoldenWide)
    assert report.migrated
    assert report.seq == 6
    assert set(report.by_change(js.Change.WIDENED)) == {"small", "delta", "name", "hist"}
    assert report.by_change(js.Change.ADDED) == ["added"]
    for readonly in (True, False):
        with js.open(path, GoldenWide, readonly=readonly) as store:
            check_wide(store.state)
            assert store.seq == 6
            assert store.recovery.clean
            assert store.recovery.records_replayed == 0
    with pytest.raises(js.SchemaMismatch):
        js.open(path, Golden, readonly=True)


def test_command_line_migrates_a_copy(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`journalstate migrate` of a copy to GoldenWide exits 0; check then reports it clean."""
    path = golden_copy(tmp_path)
    root = str(Path(__file__).resolve().parent.parent)
    out = io.StringIO()
    code = _cli.main(["migrate", str(path), "tests.test_golden:GoldenWide", "--path", root], out)
    assert code == 0
    assert "migrated to GoldenWide" in out.getvalue()
    out = io.StringIO()
    assert _cli.main(["check", "--json", str(path)], out) == 0
    doc = json.loads(out.getvalue())
    assert (doc["clean"], doc["seq"]) == (True, 6)
    assert capsys.readouterr().err == ""
    with js.open(path, GoldenWide, readonly=True) as store:
        check_wide(store.state)
        assert store.seq == 6
