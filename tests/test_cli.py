"""The `journalstate` command end to end: the installed command run on real files.

Every test runs ``python -m journalstate`` as a subprocess on stores made in ``tmp_path``:
healthy ones, process-death and OS-crash images, and files damaged region by region. It checks
the exit code, key phrases of the text output, and the shape of the ``--json`` documents.
"""

from __future__ import annotations

import ast
import base64
import itertools
import json
import math
import os
import random
import re
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any

import attrs
import pytest

import journalstate as js
from journalstate import _cli
from journalstate._format import RECORD_HEADER_SIZE
from journalstate._header import HEADER_FIXED_SIZE
from journalstate.testing import SimStorage
from tests.conftest import Progress, crash_copy
from tests.damage import flip_byte
from tests.test_store import last_record_offset

pytestmark = pytest.mark.slow  # every test runs the command in a new interpreter

ROOT = Path(__file__).resolve().parent.parent
COMMANDS = ("recover", "check", "dump", "info", "log")
"""The commands that take a store path."""


# --- running the command --------------------------------------------------------------------------


@attrs.frozen
class Run:
    """One finished run of the command."""

    code: int
    out: str
    err: str

    def json(self) -> Any:
        """stdout parsed as one JSON document."""
        return json.loads(self.out)


def cli(*args: str | Path, exe: str | None = None) -> Run:
    """Run the command with ``args`` and wait for it."""
    argv = [sys.executable, "-m", "journalstate"] if exe is None else [exe]
    proc = subprocess.run(
        [*argv, *map(str, args)], capture_output=True, text=True, timeout=300, check=False
    )
    assert "Traceback" not in proc.stderr, proc.stderr
    return Run(proc.returncode, proc.stdout, proc.stderr)


def ok(*args: str | Path, code: int = 0) -> Run:
    """Run the command and demand exit ``code`` with nothing on stderr."""
    run = cli(*args)
    assert run.code == code, (run.out, run.err)
    assert run.err == ""
    return run


def fails(run: Run, code: int, *phrases: str) -> None:
    """Demand a failure: exit ``code``, no output, one stderr line naming each phrase."""
    assert run.code == code, (run.out, run.err)
    assert run.out == ""
    lines = run.err.splitlines()
    assert len(lines) == 1, run.err
    assert lines[0].startswith("journalstate:")
    assert "Traceback" not in run.err
    for phrase in phrases:
        assert phrase in lines[0]


# --- stores ---------------------------------------------------------------------------------------


def at_step(step: int) -> Progress:
    """The state committed at ``step``; every field derives from it."""
    return Progress(step=step, loss=step / 4, label=f"step {step}", blob=bytes([step]) * 10)


def make_store(path: Path, steps: int, **kwargs: Any) -> Path:
    """A store closed cleanly after committing ``at_step(1..steps)``."""
    with js.open(path, Progress, **kwargs) as store:
        for i in range(1, steps + 1):
            store.commit(at_step(i))
    return path


def crashed_store(tmp_path: Path, steps: int, *, durability: str = "process") -> Path:
    """The file a process death leaves after committing ``at_step(1..steps)``."""
    live = tmp_path / "live.jst"
    with js.open(live, Progress, durability=durability) as store:
        for i in range(1, steps + 1):
            store.commit(at_step(i))
        copy = crash_copy(live, tmp_path / "crashed.jst")
    return copy


def damage(path: Path, offset: int) -> None:
    """Flip every bit of the byte at file offset ``offset``."""
    data = bytearray(path.read_bytes())
    flip_byte(data, offset)
    path.write_bytes(bytes(data))


def tear_last_record(path: Path) -> int:
    """Damage the payload of the newest record, as a crash mid-write does; returns its offset."""
    at = last_record_offset(path)
    damage(path, at + RECORD_HEADER_SIZE + 2)
    return at


def state_of(run: Run) -> dict[str, Any]:
    """The state in a `dump --json` document, decoded back to Python values."""
    state: dict[str, Any] = from_json(run.json()["state"])
    return state


def from_json(value: Any) -> Any:
    """Undo `_inspect.jsonable`: {"$bytes": ...} and {"$float": ...} back to values."""
    if isinstance(value, dict):
        if set(value) == {"$bytes"}:
            return base64.b64decode(value["$bytes"], validate=True)
        if set(value) == {"$float"}:
            return float(value["$float"])
        return {k: from_json(v) for k, v in value.items()}
    if isinstance(value, list):
        return tuple(from_json(v) for v in value)
    return value


def as_dict(state: Progress) -> dict[str, Any]:
    """A Progress as the dict `dump --json` shows."""
    return attrs.asdict(state)


# --- JSON shapes ----------------------------------------------------------------------------------

OPT_INT = (int, type(None))
SLOT_KEYS: dict[str, Any] = {
    "index": int,
    "offset": int,
    "valid": bool,
    "reason": (str, type(None)),
    "generation": OPT_INT,
    "epoch": OPT_INT,
    "seq": OPT_INT,
    "position": OPT_INT,
}
DAMAGE_KEYS: dict[str, Any] = {
    "region": str,
    "offset": int,
    "reason": str,
    "bytes_dropped": int,
    "detail": str,
}
REPORT_KEYS: dict[str, Any] = {
    "mode": str,
    "previous_generation": bool,
    "slot": int,
    "generation": int,
    "epoch": int,
    "base_seq": int,
    "seq": int,
    "records_replayed": int,
    "bytes_replayed": int,
    "torn_tail": bool,
    "torn_tail_offset": OPT_INT,
    "torn_tail_bytes": int,
    "corruption": list,
    "slots": list,
    "clean": bool,
}


def has_shape(doc: Any, keys: dict[str, Any]) -> None:
    """Demand a JSON object with exactly ``keys``, each value of the given type(s)."""
    assert isinstance(doc, dict)
    assert set(doc) == set(keys)
    for key, kind in keys.items():
        assert isinstance(doc[key], kind), (key, doc[key])


def is_report(doc: dict[str, Any]) -> None:
    """Demand the recovery report's keys (and nested slot and damage objects) in ``doc``."""
    has_shape({k: doc[k] for k in REPORT_KEYS}, REPORT_KEYS)
    assert len(doc["slots"]) == 2
    for slot in doc["slots"]:
        has_shape(slot, SLOT_KEYS)
    for item in doc["corruption"]:
        has_shape(item, DAMAGE_KEYS)


# --- help, version, usage -------------------------------------------------------------------------


def test_console_script_prints_version() -> None:
    """The `journalstate` console script sits next to the interpreter and prints the version."""
    script = Path(sys.executable).parent / "journalstate"
    assert script.exists()
    run = cli("--version", exe=str(script))
    assert run.code == 0
    assert run.out.strip() == f"journalstate {js.__version__}"


@pytest.mark.parametrize("command", [None, *COMMANDS, "demo"])
def test_help_shows_an_example_and_exit_codes(command: str | None) -> None:
    """--help of the command and of each subcommand exits 0 with an example and the codes."""
    run = ok(*([] if command is None else [command]), "--help")
    assert "example" in run.out
    assert "journalstate " in run.out.split("example", 1)[1]
    assert "exit codes:" in run.out
    assert "5  locked by a live writer" in run.out


@pytest.mark.parametrize(
    "argv",
    [
        ["frobnicate"],
        ["check"],
        ["dump", "--generation", "x", "s.jst"],
        ["recover", "s.jst", "--mode", "lenient"],
        ["log", "s.jst", "--bogus"],
        ["log", "s.jst", "--limit", "-3"],
    ],
)
def test_usage_errors_are_one_line(argv: list[str]) -> None:
    """Bad arguments exit 2 with one `journalstate:` line on stderr."""
    fails(cli(*argv), 2, "--help")


def test_closed_stdout_exits_quietly(tmp_path: Path) -> None:
    """When the reader of stdout is gone (`| head`), the command exits 141 and says nothing."""
    path = make_store(tmp_path / "s.jst", 2)
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "journalstate", "info", str(path), "--json"],
            stdout=write_end,
            stderr=subprocess.PIPE,
            text=True,
            timeout=300,
            check=False,
        )
    finally:
        os.close(write_end)
    assert (proc.returncode, proc.stderr) == (141, "")


def test_no_command_prints_help_to_stderr() -> None:
    """Without a command the help goes to stderr and the exit code is 2."""
    run = cli()
    assert run.code == 2
    assert run.out == ""
    assert "COMMAND" in run.err


# --- healthy stores -------------------------------------------------------------------------------


def test_check_healthy_store(tmp_path: Path) -> None:
    """A cleanly closed store checks clean, in text and in JSON."""
    path = make_store(tmp_path / "s.jst", 3)
    text = ok("check", path).out
    assert text.startswith(f"{path}: clean\n")
    assert "torn tail         none" in text
    assert "corruption        none" in text
    assert re.search(r"slot 0 +valid, generation \d+", text)
    doc = ok("check", path, "--json").json()
    is_report(doc)
    assert set(doc) == {"path", "verdict", "exit_code", *REPORT_KEYS}
    assert (doc["path"], doc["verdict"], doc["exit_code"]) == (str(path), "clean", 0)
    assert doc["clean"] is True
    assert doc["seq"] == 3
    assert doc["mode"] == "salvage"
    assert all(s["valid"] and s["reason"] is None for s in doc["slots"])


def test_dump_healthy_store(tmp_path: Path) -> None:
    """dump prints one `field = value` line per leaf, and JSON holds the same state."""
    path = make_store(tmp_path / "s.jst", 3)
    text = ok("dump", path).out
    assert re.match(rf"# {re.escape(str(path))}: generation \d+, seq 3\n", text)
    assert "step = 3\n" in text
    assert "loss = 0.75\n" in text
    assert "label = 'step 3'\n" in text
    assert f"blob = {bytes([3]) * 10!r}\n" in text
    run = ok("dump", path, "--json")
    has_shape(run.json(), {"path": str, "generation": int, "seq": int, "state": dict})
    assert run.json()["seq"] == 3
    assert state_of(run) == as_dict(at_step(3))


@attrs.frozen
class Point:
    """A nested struct of the rich schema."""

    x: js.I32 = 0
    y: js.F32 = 0.0


@attrs.frozen
class Rich:
    """Every kind of field, to check the JSON encoding of each."""

    big: js.U64 = 0
    small: js.I64 = 0
    exact: js.F64 = 0.0
    nan: js.F64 = 0.0
    inf: js.F64 = 0.0
    ninf: js.F64 = 0.0
    single: js.F32 = 0.0
    flag: bool = False
    text: Annotated[str, js.Str(40)] = ""
    data: Annotated[bytes, js.Bytes(300)] = b""
    hist: Annotated[tuple[int, ...], js.Array(js.U16, 3)] = (0, 0, 0)
    origin: Point = Point()
    pts: Annotated[tuple[Point, ...], js.Array(Point, 2)] = (Point(), Point())


RICH = Rich(
    big=2**64 - 1,
    small=-(2**63),
    exact=0.1,
    nan=math.nan,
    inf=math.inf,
    ninf=-math.inf,
    single=js.f32_round(1 / 3),
    flag=True,
    text="héllo ✓",
    data=bytes(range(256)),
    hist=(1, 65535, 7),
    origin=Point(-5, js.f32_round(2.5)),
    pts=(Point(1, js.f32_round(0.1)), Point(2, -0.0)),
)


def test_dump_json_is_lossless(tmp_path: Path) -> None:
    """Bytes come back as {"$bytes": base64} and non-finite floats as {"$float": ...}, exactly."""
    path = tmp_path / "rich.jst"
    with js.open(path, Rich) as store:
        store.commit(RICH)
    doc = ok("dump", path, "--json").json()["state"]
    assert doc["data"] == {"$bytes": base64.b64encode(bytes(range(256))).decode("ascii")}
    assert doc["inf"] == {"$float": "inf"}
    assert doc["ninf"] == {"$float": "-inf"}
    assert doc["nan"] == {"$float": "nan"}
    assert doc["origin"] == {"x": -5, "y": 2.5}
    state = from_json(doc)
    assert math.isnan(state.pop("nan"))
    expected = attrs.asdict(RICH)  # nested structs as dicts, arrays as tuples
    del expected["nan"]
    assert state == expected
    assert math.copysign(1.0, state["pts"][1]["y"]) == -1.0  # -0.0 survives too


def test_dump_generation_shows_each_slot(tmp_path: Path) -> None:
    """--generation N dumps the slot of that generation; any other generation exits 2."""
    path = tmp_path / "s.jst"
    with js.open(path, Progress) as store:
        store.commit(at_step(1))
        store.checkpoint()
        older = store.generation
        store.commit(at_step(2))
    newer = older + 1  # the checkpoint close() wrote
    for generation, step in ((older, 1), (newer, 2)):
        run = ok("dump", path, "--generation", str(generation), "--json")
        assert run.json()["generation"] == generation
        assert run.json()["seq"] == step
        assert state_of(run) == as_dict(at_step(step))
        text = ok("dump", path, "--generation", str(generation)).out
        assert text.startswith(f"# {path}: generation {generation}, seq {step}\n")
    run = cli("dump", path, "--generation", str(older - 1))
    fails(run, 2, f"generation {older - 1} is not reachable")
    held = re.search(r"valid slots hold generations \[(\d+), (\d+)\]", run.err)
    assert held
    assert {int(held[1]), int(held[2])} == {older, newer}


def test_info_matches_the_schema_and_layout(tmp_path: Path) -> None:
    """info lists the header, the regions, every schema field, both slots and the journal fill."""
    copy = crashed_store(tmp_path, 4)
    with js.open(copy, Progress, readonly=True) as store:
        fields = store.schema.fields()
        header = store.header
        report = store.recovery
    doc = ok("info", copy, "--json").json()
    has_shape(
        doc,
        {
            "path": str,
            "header": dict,
            "schema": dict,
            "slots": list,
            "journal": dict,
            "recovery": dict,
        },
    )
    has_shape(
        doc["header"],
        {
            "format_version": int,
            "page_size": int,
            "file_id": str,
            "file_size": int,
            "state_size": int,
            "regions": list,
        },
    )
    assert doc["header"]["file_size"] == os.path.getsize(copy) == header.file_size
    assert doc["header"]["file_id"] == header.file_id.hex()
    assert doc["header"]["state_size"] == header.state_size
    assert doc["header"]["regions"] == [
        {"name": "header", "offset": 0, "size": header.header_size},
        {"name": "slot0", "offset": header.slot0_offset, "size": header.slot_size},
        {"name": "slot1", "offset": header.slot1_offset, "size": header.slot_size},
        {"name": "journal", "offset": header.journal_offset, "size": header.journal_size},
    ]
    assert doc["schema"] == {
        "name": "Progress",
        "fields": [
            {"name": f.path, "type": f.type_name, "offset": f.offset, "size": f.size}
            for f in fields
        ],
    }
    assert [f["name"] for f in doc["schema"]["fields"]] == ["step", "loss", "label", "blob"]
    for slot in doc["slots"]:
        has_shape(slot, SLOT_KEYS)
    has_shape(
        doc["journal"],
        {"size": int, "live_bytes": int, "fill": float, "records": int, "next_seq": int},
    )
    journal = doc["journal"]
    assert journal["records"] == report.records_replayed == 4
    assert journal["live_bytes"] == report.bytes_replayed
    assert journal["fill"] == journal["live_bytes"] / header.journal_size
    assert journal["next_seq"] == 5
    is_report(doc["recovery"])
    text = ok("info", copy).out
    for f in fields:
        assert re.search(rf"{f.offset} +{f.size}  {re.escape(f.type_name)} +{f.path}\n", text)
    assert re.search(rf"journal +{header.journal_offset} +{header.journal_size}\n", text)
    assert "4 records after the newest slot, next seq 5" in text


def test_log_shows_changes_in_seq_order(tmp_path: Path) -> None:
    """log lists changed fields old -> new, oldest first; --limit keeps the newest N."""
    path = tmp_path / "s.jst"
    with js.open(path, Progress) as store:
        store.commit(Progress(step=1))
        store.commit(Progress(step=1, label="a"))
        store.commit(Progress(step=2, label="b"))
        store.commit(Progress(step=2, label="b", blob=b"\x00\xff"))
    doc = ok("log", path, "--json").json()
    has_shape(doc, {"path": str, "transactions": list})
    txns = doc["transactions"]
    for t in txns:
        has_shape(
            t,
            {
                "seq": int,
                "generation": int,
                "epoch": int,
                "offset": int,
                "size": int,
                "changes": list,
            },
        )
    assert [t["seq"] for t in txns] == [1, 2, 3, 4]
    assert [[(c["field"], c["old"], c["new"]) for c in t["changes"]] for t in txns[:3]] == [
        [("step", 0, 1)],
        [("label", "", "a")],
        [("step", 1, 2), ("label", "a", "b")],
    ]
    assert txns[3]["changes"] == [
        {"field": "blob", "old": {"$bytes": ""}, "new": {"$bytes": "AP8="}},
    ]
    offsets = [t["offset"] for t in txns]
    assert offsets == sorted(offsets)
    text = ok("log", path).out
    assert "    step: 0 -> 1\n" in text
    assert "    label: 'a' -> 'b'\n" in text
    assert "    blob: b'' -> b'\\x00\\xff'\n" in text
    assert [int(s) for s in re.findall(r"^seq (\d+)", text, re.M)] == [1, 2, 3, 4]
    last_two = ok("log", path, "--limit", "2", "--json").json()["transactions"]
    assert [t["seq"] for t in last_two] == [3, 4]
    assert ok("log", path, "--limit", "0").out == "no transactions in the journal\n"


# --- recover --------------------------------------------------------------------------------------


def test_recover_healthy_store_in_place(tmp_path: Path) -> None:
    """recover on a clean store exits 0, writes a fresh checkpoint and keeps the state."""
    path = make_store(tmp_path / "s.jst", 3)
    run = ok("recover", path)
    assert run.out.startswith(f"{path}: recovered\n")
    assert re.search(r"wrote a fresh checkpoint \(generation \d+\)\n", run.out)
    assert "cut the torn tail" not in run.out
    doc = ok("recover", path, "--json").json()
    is_report(doc)
    assert set(doc) == {"path", "output", "dry_run", *REPORT_KEYS}
    assert (doc["path"], doc["output"], doc["dry_run"]) == (str(path), None, False)
    assert state_of(ok("dump", path, "--json")) == as_dict(at_step(3))


def test_recover_dry_run_changes_nothing(tmp_path: Path) -> None:
    """--dry-run reports what recovery would do and leaves the file byte-identical."""
    copy = crashed_store(tmp_path, 3)
    tear_last_record(copy)
    before = copy.read_bytes()
    run = ok("recover", copy, "--dry-run", code=1)
    assert run.out.startswith(f"{copy}: would recover\n")
    assert "wrote" not in run.out
    doc = ok("recover", copy, "--dry-run", "--json", code=1).json()
    assert doc["dry_run"] is True
    assert doc["torn_tail"] is True
    assert copy.read_bytes() == before


def test_recover_output_leaves_the_original_untouched(tmp_path: Path) -> None:
    """--output writes the recovered state into a new store; the original stays byte-identical."""
    copy = crashed_store(tmp_path, 3)
    tear_last_record(copy)
    before = copy.read_bytes()
    new = tmp_path / "repaired.jst"
    run = ok("recover", copy, "--output", new, code=1)
    assert run.out.startswith(f"{copy}: recovered into {new}\n")
    assert "torn tail         " in run.out  # the source's report: what recovery dropped
    assert f"wrote a fresh store holding the state at seq 2 (generation 4); {copy} is" in run.out
    assert copy.read_bytes() == before
    assert ok("check", new).out.startswith(f"{new}: clean\n")
    assert state_of(ok("dump", new, "--json")) == as_dict(at_step(2))
    new2 = tmp_path / "repaired2.jst"
    doc = ok("recover", copy, "--output", new2, "--json", code=1).json()
    assert (doc["output"], doc["dry_run"]) == (str(new2), False)


def test_recover_output_refuses_an_existing_path(tmp_path: Path) -> None:
    """--output never overwrites: an existing path exits 2 and stays as it was."""
    path = make_store(tmp_path / "s.jst", 1)
    other = tmp_path / "other"
    other.write_bytes(b"keep me")
    fails(cli("recover", path, "--output", other), 2, "already exists")
    assert other.read_bytes() == b"keep me"
    nowhere = tmp_path / "no" / "such" / "dir.jst"
    fails(cli("recover", path, "--output", nowhere), 2, "does not exist")
    assert not (tmp_path / "no").exists()


def test_recover_output_failure_leaves_no_copy(tmp_path: Path) -> None:
    """When the source cannot be recovered, --output leaves nothing behind and names the source."""
    bad = tmp_path / "bad.jst"
    bad.write_bytes(b"not a store at all" * 100)
    new = tmp_path / "new.jst"
    fails(cli("recover", bad, "--output", new), 2, f"{bad}: not a journalstate store")
    assert not new.exists()
    truncated = tmp_path / "cut.jst"
    truncated.write_bytes(make_store(tmp_path / "s.jst", 1).read_bytes()[:-4096])
    fails(cli("recover", truncated, "--output", new), 4, str(truncated))
    assert not new.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.jst", "cut.jst", "s.jst"]


def test_recover_previous_generation_rolls_back(tmp_path: Path) -> None:
    """--previous-generation rolls back to the older slot, durably: dump shows the older state."""
    path = tmp_path / "s.jst"
    with js.open(path, Progress) as store:
        store.commit(at_step(1))
        store.checkpoint()
        store.commit(at_step(2))
    before = path.read_bytes()
    dry = ok("recover", path, "--previous-generation", "--dry-run", "--json").json()
    assert dry["previous_generation"] is True
    assert path.read_bytes() == before
    run = ok("recover", path, "--previous-generation")
    assert "rolled back to the previous generation" in run.out
    assert state_of(ok("dump", path, "--json")) == as_dict(at_step(1))
    assert ok("check", path).out.startswith(f"{path}: clean\n")


def test_previous_generation_needs_two_valid_slots(tmp_path: Path) -> None:
    """With one slot damaged there is no previous generation: exit 2, file unchanged."""
    path = make_store(tmp_path / "s.jst", 2)
    with js.open(path, Progress, readonly=True) as store:
        older = 1 - store.recovery.slot
        damage(path, store.header.slot_offsets[older] + 60)
    before = path.read_bytes()
    fails(cli("recover", path, "--previous-generation"), 2, "no previous generation")
    assert path.read_bytes() == before


# --- process death --------------------------------------------------------------------------------


def test_process_death_loses_nothing(tmp_path: Path) -> None:
    """A process-death image replays the journal to the last commit and checks clean."""
    copy = crashed_store(tmp_path, 5)
    doc = ok("check", copy, "--json").json()
    assert doc["verdict"] == "clean"
    assert doc["records_replayed"] == 5
    assert doc["seq"] == 5
    assert state_of(ok("dump", copy, "--json")) == as_dict(at_step(5))
    assert ok("recover", copy).out.startswith(f"{copy}: recovered\n")
    assert ok("check", copy, "--json").json()["records_replayed"] == 0


def test_torn_last_record_is_a_torn_tail(tmp_path: Path) -> None:
    """A torn newest record exits 1 everywhere; recover cuts it and the store checks clean."""
    copy = crashed_store(tmp_path, 3)
    at = tear_last_record(copy)
    run = ok("check", copy, code=1)
    assert run.out.startswith(f"{copy}: recoverable after a crash")
    assert re.search(rf"torn tail +\d+ bytes dropped at offset {at}\n", run.out)
    assert "corruption        none" in run.out
    doc = ok("check", copy, "--json", code=1).json()
    assert (doc["torn_tail"], doc["torn_tail_offset"], doc["exit_code"]) == (True, at, 1)
    assert doc["torn_tail_bytes"] > 0
    assert doc["corruption"] == []
    assert state_of(ok("dump", copy, "--json", code=1)) == as_dict(at_step(2))
    for command in ("info", "log"):
        ok(command, copy, code=1)
    fails(cli("dump", copy, "--mode", "strict"), 3, "torn tail")
    run = ok("recover", copy, code=1)
    written = re.search(
        r"wrote a fresh checkpoint \(generation (\d+)\) and cut the torn tail", run.out
    )
    assert written
    after = ok("check", copy, "--json").json()
    assert (after["verdict"], after["generation"]) == ("clean", int(written[1]))
    assert state_of(ok("dump", copy, "--json")) == as_dict(at_step(2))


# --- OS crash (simulated) -------------------------------------------------------------------------


def os_crash_file(tmp_path: Path, image: bytes, name: str) -> Path:
    """Write a simulated disk image to a real file."""
    path = tmp_path / name
    path.write_bytes(image)
    return path


@pytest.mark.parametrize(("durability", "kept"), [("process", 0), ("commit", 6)])
def test_os_crash_losing_every_unsynced_page(tmp_path: Path, durability: str, kept: int) -> None:
    """The durable image keeps every msync'ed commit: none in process mode, all in commit mode."""
    disk = SimStorage()
    store = js.open("sim.jst", Progress, storage=disk, durability=durability)
    for i in range(1, 7):
        store.commit(at_step(i))
    path = os_crash_file(tmp_path, disk.durable_image("sim.jst"), "durable.jst")
    assert ok("check", path, "--json").json()["verdict"] == "clean"
    assert state_of(ok("dump", path, "--json")) == as_dict(at_step(kept) if kept else Progress())


def test_os_crash_images_recover_a_committed_state(tmp_path: Path) -> None:
    """OS-crash images with torn sectors recover a committed state no older than the last msync."""
    disk = SimStorage()
    store = js.open("sim.jst", Progress, storage=disk, durability="commit")
    for i in range(1, 6):
        store.commit(at_step(i))
    for i in range(6, 16):
        store.commit(at_step(i), durability="process")
    committed = {i: as_dict(at_step(i)) for i in range(5, 16)}
    codes: set[int] = set()
    for seed in range(12):  # until both a clean and a torn image were seen
        image = disk.crash_image("sim.jst", random.Random(seed).randrange)
        path = os_crash_file(tmp_path, image, f"crash{seed}.jst")
        check = cli("check", path, "--json")
        assert check.code in (0, 1), check.err
        assert check.json()["corruption"] == []
        run = ok("dump", path, "--json", code=check.code)
        step = run.json()["state"]["step"]
        assert state_of(run) == committed[step]
        codes.add(check.code)
        ok("recover", path, code=check.code)
        assert ok("check", path, "--json").json()["clean"] is True
        assert state_of(ok("dump", path, "--json")) == committed[step]
        if codes == {0, 1}:
            break
    assert codes == {0, 1}


# --- damage in each region ------------------------------------------------------------------------


def test_damaged_header_is_unrecoverable(tmp_path: Path) -> None:
    """A flipped byte in the header: every command exits 4 with one line naming the damage."""
    path = make_store(tmp_path / "s.jst", 2)
    damage(path, HEADER_FIXED_SIZE + 3)
    before = path.read_bytes()
    for command in COMMANDS:
        fails(cli(command, path), 4, str(path), "header is damaged")
    fails(cli("check", path, "--json"), 4, "header is damaged")
    assert path.read_bytes() == before


@pytest.mark.parametrize("which", ["older", "newer"])
def test_damaged_slot_is_reported_and_the_store_opens(tmp_path: Path, which: str) -> None:
    """A flipped byte in one slot: check names the invalid slot and exits 1; the state survives."""
    path = make_store(tmp_path / "s.jst", 3)
    with js.open(path, Progress, readonly=True) as store:
        newest = store.recovery.slot
        offsets = store.header.slot_offsets
    index = newest if which == "newer" else 1 - newest
    damage(path, offsets[index] + 60)
    run = ok("check", path, code=1)
    assert run.out.startswith(f"{path}: recoverable after a crash")
    assert re.search(rf"slot {index} +INVALID \(bad-checksum\)", run.out)
    doc = ok("check", path, "--json", code=1).json()
    assert doc["slots"][index]["valid"] is False
    assert doc["slots"][index]["reason"] == "bad-checksum"
    assert doc["slots"][index]["generation"] is None
    assert doc["slots"][1 - index]["valid"] is True
    assert doc["slot"] == 1 - index
    assert doc["corruption"] == []
    assert state_of(ok("dump", path, "--json", code=1)) == as_dict(at_step(3))
    info = ok("info", path, "--json", code=1).json()
    assert info["slots"][index]["valid"] is False
    assert re.search(rf"slot {index} +INVALID \(bad-checksum\)", ok("info", path, code=1).out)
    with js.open(path, Progress) as store:  # the library opens it too, and repairs the slot
        assert store.state == at_step(3)
    assert ok("check", path, "--json").json()["clean"] is True


def test_damaged_vouched_record_is_corruption(tmp_path: Path) -> None:
    """A damaged middle record that a later one vouches for exits 3; salvage repairs it."""
    copy = crashed_store(tmp_path, 3, durability="commit")
    damage(copy, last_record_offset(copy) - 4)  # the payload of record 2
    run = ok("check", copy, code=3)
    assert run.out.startswith(f"{copy}: CORRUPTION found\n")
    assert re.search(r"CORRUPTION +journal at offset \d+: durable-record-lost\n", run.out)
    doc = ok("check", copy, "--json", code=3).json()
    assert doc["exit_code"] == 3
    assert [d["reason"] for d in doc["corruption"]] == ["durable-record-lost"]
    assert doc["corruption"][0]["region"] == "journal"
    assert doc["corruption"][0]["bytes_dropped"] > 0
    assert doc["seq"] == 1
    before = copy.read_bytes()
    for command in ("dump", "recover"):
        run = cli(command, copy)
        fails(run, 3, "durable-record-lost", f"at offset {doc['corruption'][0]['offset']}")
        assert run.err.count("--mode salvage") == 1  # the hint is given once
    assert copy.read_bytes() == before  # a refused recovery writes nothing
    assert state_of(ok("dump", copy, "--mode", "salvage", "--json", code=3)) == as_dict(at_step(1))
    run = ok("recover", copy, "--mode", "salvage", code=3)
    assert "CORRUPTION        journal" in run.out
    assert "and cut the journal after the damage" in run.out
    assert ok("check", copy).out.startswith(f"{copy}: clean\n")
    assert state_of(ok("dump", copy, "--json")) == as_dict(at_step(1))


def test_truncated_file_is_unrecoverable(tmp_path: Path) -> None:
    """A store cut short exits 4 for every command."""
    data = make_store(tmp_path / "s.jst", 2).read_bytes()
    path = tmp_path / "cut.jst"
    path.write_bytes(data[: len(data) // 2])
    for command in COMMANDS:
        fails(cli(command, path), 4, f"{path}: the file is {len(data) // 2} bytes")
    assert path.read_bytes() == data[: len(data) // 2]
    for size in (HEADER_FIXED_SIZE - 8, len(data) - 1):
        path.write_bytes(data[:size])
        fails(cli("check", path), 4, str(path))
        fails(cli("recover", path), 4, str(path))
        assert path.read_bytes() == data[:size]


@pytest.mark.parametrize(
    ("content", "name"), [(b"", "empty.jst"), (b"hello world\n" * 500, "text.txt")]
)
def test_not_a_store_exits_2(tmp_path: Path, content: bytes, name: str) -> None:
    """An empty file or one that is not a store exits 2 for every command, untouched."""
    path = tmp_path / name
    path.write_bytes(content)
    for command in COMMANDS:
        fails(cli(command, path), 2, f"{path}: not a journalstate store")
    fails(cli("dump", path, "--json"), 2, "not a journalstate store")
    assert path.read_bytes() == content


def test_missing_path_and_directory_exit_2(tmp_path: Path) -> None:
    """A missing path or a directory exits 2 for every command, also with --output."""
    missing = tmp_path / "nope.jst"
    for command in COMMANDS:
        fails(cli(command, missing), 2, f"{missing}: no such file")
    for command in ("check", "recover"):
        fails(cli(command, tmp_path), 2, f"{tmp_path}: is a directory")
    fails(cli("recover", missing, "--output", tmp_path / "new.jst"), 2, "no such file")
    fails(cli("recover", tmp_path, "--output", tmp_path / "new.jst"), 2, "is a directory")
    assert list(tmp_path.iterdir()) == []


# --- locks and permissions ------------------------------------------------------------------------

HOLDER = textwrap.dedent(
    """
    import sys
    sys.path.insert(0, {root!r})
    import journalstate as js
    from tests.conftest import Progress
    with js.open(sys.argv[1], Progress) as store:
        store.commit(Progress(step=7, label="live"))
        print("ready", flush=True)
        sys.stdin.read()  # hold the lock until the test closes our stdin
    """
).format(root=str(ROOT))


@pytest.fixture
def live_writer(tmp_path: Path) -> Iterator[tuple[Path, int]]:
    """A store held open for writing by a child process; yields its path and the child's pid."""
    path = make_store(tmp_path / "live.jst", 2)
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(path)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    try:
        line = proc.stdout.readline()
        assert line == "ready\n", proc.stderr.read() if proc.stderr else ""
        yield path, proc.pid
    finally:
        proc.communicate(timeout=300)
    assert proc.returncode == 0


def test_live_writer_blocks_recover_in_place(live_writer: tuple[Path, int]) -> None:
    """recover in place on a store with a live writer exits 5, names its pid, changes nothing."""
    path, pid = live_writer
    before = path.read_bytes()
    fails(cli("recover", path), 5, "locked by a live writer", f"pid {pid}", "stop it")
    fails(cli("recover", path, "--mode", "salvage", "--json"), 5, f"pid {pid}")
    assert path.read_bytes() == before


def test_live_writer_allows_readers_and_output(
    live_writer: tuple[Path, int], tmp_path: Path
) -> None:
    """check, dump, info, log and recover --output need no lock and work beside a live writer."""
    path, _ = live_writer
    live = Progress(step=7, label="live")
    assert ok("check", path).out.startswith(f"{path}: clean\n")
    assert state_of(ok("dump", path, "--json")) == as_dict(live)
    assert ok("info", path, "--json").json()["journal"]["records"] == 1
    changes = ok("log", path, "--json").json()["transactions"][-1]["changes"]
    assert {"field": "label", "old": "step 2", "new": "live"} in changes
    new = tmp_path / "copy.jst"
    ok("recover", path, "--output", new)
    assert state_of(ok("dump", new, "--json")) == as_dict(live)
    ok("recover", new)  # the copy carries no lock of its own


@pytest.mark.skipif(os.geteuid() == 0, reason="root ignores file permissions")
def test_no_permission_exits_5(tmp_path: Path) -> None:
    """A store the user may not read exits 5 for every command."""
    path = make_store(tmp_path / "s.jst", 1)
    path.chmod(0)
    try:
        for command in COMMANDS:
            fails(cli(command, path), 5, "no permission")
        fails(cli("recover", path, "--output", tmp_path / "new.jst"), 5, "no permission")
        assert not (tmp_path / "new.jst").exists()
    finally:
        path.chmod(0o600)


# --- docs ---------------------------------------------------------------------------------------


def test_docs_exit_code_table_matches_the_constants() -> None:
    """docs/cli.md lists exactly the EXIT_* constants, with their values and docstrings."""
    source = (ROOT / "journalstate" / "_commands.py").read_text(encoding="utf-8")
    body = ast.parse(source).body
    constants: dict[str, tuple[object, object]] = {}
    for node, after in itertools.pairwise(body):
        if (
            isinstance(node, ast.Assign)
            and isinstance(node.targets[0], ast.Name)
            and node.targets[0].id.startswith("EXIT_")
            and isinstance(node.value, ast.Constant)
            and isinstance(after, ast.Expr)
            and isinstance(after.value, ast.Constant)
        ):
            constants[node.targets[0].id] = (node.value.value, after.value.value)
    codes = {n for n, v in vars(_cli).items() if n.startswith("EXIT_") and isinstance(v, int)}
    assert set(constants) == codes
    assert all(getattr(_cli, name) == value for name, (value, _) in constants.items())
    docs = (ROOT / "docs" / "cli.md").read_text(encoding="utf-8")
    rows = re.findall(r"^\| (\d+) \| `(EXIT_\w+)` \| (.+) \|$", docs, re.M)
    documented = {name: (int(code), meaning.replace("`", "")) for code, name, meaning in rows}
    assert documented == constants


# --- demo -----------------------------------------------------------------------------------------


def test_demo_explains_sigkill_and_every_mode() -> None:
    """The demo exits 0 and names SIGKILL and each durability mode."""
    run = ok("demo", "--seed", "1")
    assert "SIGKILL" in run.out
    assert "FAILED" not in run.out
    for mode in ("commit", "interval", "process"):
        assert re.search(rf"^ +{mode} +200 +\d+ +\d+  ", run.out, re.M), mode


def test_demo_json() -> None:
    """demo --json prints {"ok": true, "lines": [...]}: the same text as lines."""
    doc = ok("demo", "--seed", "2", "--json").json()
    has_shape(doc, {"ok": bool, "lines": list})
    assert doc["ok"] is True
    assert all(isinstance(line, str) for line in doc["lines"])
    assert any("SIGKILL" in line for line in doc["lines"])
