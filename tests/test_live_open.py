"""Read-only opens beside a live writer: an append or a checkpoint in progress is never damage.

Two halves. The deterministic tests run recovery over buffers that change between two reads,
the way a live writer's ring and slots do (a record torn when first read and whole later, a
slot torn while a checkpoint writes it), and show that a read-only open reads again instead of
reporting damage, while damage in a file that no writer touches is still reported. The process
tests run read-only opens in a loop beside a real writer process committing at full speed to a
16 KiB journal, in "commit" and "process" durability, in the default and "salvage" recovery
modes: no ``StoreCorrupt``, no damage in any report, every state one the writer committed.
``JOURNALSTATE_LIVE_OPENS`` sets the opens per mode (300 by default).
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Annotated, Any

import attrs
import pytest

import journalstate as js
import journalstate._opening as opening
import journalstate._recovery as recovery
from journalstate._checksums import Buffer
from journalstate._format import SLOT_HEAD_SIZE
from journalstate._header import Header, decode_header
from journalstate._journal import scan_records
from journalstate._reader import ChainReader
from journalstate._reason import Reason
from journalstate._recovery import Recovered, RecoveryMode, recover
from journalstate._schema import compile_schema

ROOT = Path(__file__).resolve().parent.parent
LIVE_OPENS = int(os.environ.get("JOURNALSTATE_LIVE_OPENS", "300"))
LIVE_JOURNAL = 16 * 1024


@attrs.frozen
class Pair:
    """A state with an internal invariant: ``a == b`` and ``tag`` names them, so a mix shows."""

    a: js.U64 = 0
    b: js.U64 = 0
    tag: Annotated[str, js.Str(24)] = ""
    blob: Annotated[bytes, js.Bytes(600)] = b""


def pair(step: int) -> Pair:
    """The state the writer commits at ``step`` (records of varying size)."""
    return Pair(a=step, b=step, tag=f"p{step}", blob=bytes([step % 251]) * (step * 37 % 600))


def consistent(state: Pair) -> bool:
    """Whether ``state`` is one the writer committed (or the initial one)."""
    return state == (pair(state.a) if state.a else Pair())


# --- deterministic: buffers that change between two reads ------------------------------------


@attrs.frozen
class Image:
    """The header, slots and ring of a store file, as bytes taken at one instant."""

    header: Header
    slots: bytearray
    ring: bytearray

    def copy(self) -> Image:
        """An independent copy, to damage or to change."""
        return Image(self.header, bytearray(self.slots), bytearray(self.ring))


def image_of(path: Path) -> Image:
    """The store file at ``path`` as it is now (a writer's mapping shares the page cache)."""
    data = path.read_bytes()
    header = decode_header(str(path), data, len(data))
    slots = data[header.slot0_offset : header.slot0_offset + 2 * header.slot_size]
    ring = data[header.journal_offset : header.journal_offset + header.journal_size]
    return Image(header, bytearray(slots), bytearray(ring))


class Mapped:
    """A read-only stand-in for a mapped region: the bytes a test changes under recovery."""

    def __init__(self, buffer: bytearray) -> None:
        self._buffer = buffer

    @property
    def buffer(self) -> Buffer:
        """The bytes, changed in place by the test."""
        return self._buffer

    def write(self, offset: int, data: bytes | bytearray) -> None:
        """Never called: recovery only reads."""
        raise AssertionError("recovery wrote to a read-only region")

    def sync(self, offset: int, length: int) -> None:
        """Never called: recovery only reads."""
        raise AssertionError("recovery synced a read-only region")

    def close(self) -> None:
        """Nothing to unmap."""


COMPILED = compile_schema(Pair)


def validate(data: bytes | bytearray) -> None:
    """The schema check recovery runs on every state it starts from or ends with."""
    COMPILED.decode(data)


def live_open(image: Image, mode: RecoveryMode = RecoveryMode.TOLERATE_TAIL) -> Recovered:
    """Recovery as a read-only open runs it, beside a writer, over ``image``'s buffers."""
    return opening._recover(
        "live.jst",
        image.header,
        Mapped(image.slots),
        Mapped(image.ring),
        mode=mode,
        previous_generation=False,
        validate=validate,
        concurrent_writer=True,
    )


def one_recovery(image: Image, mode: RecoveryMode = RecoveryMode.TOLERATE_TAIL) -> Recovered:
    """A single recovery of ``image``, reading through copies, judged at once."""
    return recover(
        "live.jst", image.header, image.slots, image.ring, mode=mode, validate=validate, live=True
    )


def writer_moves_at_scan(monkeypatch: pytest.MonkeyPatch, image: Image, *later: Image) -> list[int]:
    """Make the writer move while recovery reads: each time recovery starts its scan of the
    ring after the chain stopped, ``image`` becomes the next of ``later`` (once each).

    The scan runs after the slots and the chain were read, so what the chain found torn is
    whole when the scan looks for later records, as when a writer finishes a write meanwhile.
    Returns the list of scan calls made so far (one entry per scan).
    """
    real = scan_records
    pending = list(later)
    calls: list[int] = []

    def scan(*args: Any, **kwargs: Any) -> Any:
        calls.append(len(calls))
        if pending:
            step = pending.pop(0)
            image.slots[:] = step.slots
            image.ring[:] = step.ring
        return real(*args, **kwargs)

    monkeypatch.setattr(recovery, "scan_records", scan)
    return calls


def count_recoveries(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Count the recoveries an open runs: one entry per run."""
    real = recover
    runs: list[int] = []

    def counted(*args: Any, **kwargs: Any) -> Recovered:
        runs.append(len(runs))
        return real(*args, **kwargs)

    monkeypatch.setattr(opening, "recover", counted)
    return runs


def physical(image: Image, position: int) -> int:
    """Where the logical journal ``position`` lies in the ring."""
    return position % image.header.journal_size


@pytest.fixture
def appends(tmp_path: Path) -> tuple[Image, Image, dict[int, int]]:
    """A store in "commit" durability after commits 1-5 and after commits 1-8 (no checkpoint
    between), and the logical position of each record from 6 on."""
    path = tmp_path / "appends.jst"
    positions: dict[int, int] = {}
    with js.open(path, Pair, journal_size=1 << 16) as store:
        for step in range(1, 6):
            store.commit(pair(step))
        early = image_of(path)
        for step in range(6, 9):
            positions[step] = store.position
            store.commit(pair(step))
        late = image_of(path)
        generation = store.generation
        assert late.header.journal_size > store.position + 4096  # no lap, no checkpoint
    assert generation == one_recovery(late).report.generation
    return early, late, positions


def torn_record(early: Image, late: Image, position: int, written: int) -> Image:
    """``early`` while the writer was appending record 6: its first ``written`` bytes only."""
    torn = early.copy()
    at = physical(early, position)
    torn.ring[at : at + written] = late.ring[at : at + written]
    return torn


def test_record_torn_when_read_and_whole_later_is_no_damage(
    appends: tuple[Image, Image, dict[int, int]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Record 6 torn at the chain's read, whole (7 and 8 after it) at the scan: no damage."""
    early, late, positions = appends
    position = positions[6]
    torn = torn_record(early, late, position, written=60)
    # One recovery alone takes record 8's durable_seq as proof that the torn record 6 was
    # durable: the false corruption a read-only open used to report.
    image = torn.copy()
    writer_moves_at_scan(monkeypatch, image, late)
    with pytest.raises(js.StoreCorrupt) as info:
        one_recovery(image)
    assert info.value.reason is Reason.DURABLE_RECORD_LOST
    image = torn.copy()
    scans = writer_moves_at_scan(monkeypatch, image, late)
    recovered = live_open(image)
    assert recovered.report.corruption == ()
    assert recovered.report.seq == 8
    assert COMPILED.decode(recovered.image) == pair(8)
    assert len(scans) == 2  # the damage was read again, after the evidence, and was gone


def test_record_torn_when_read_and_whole_later_in_salvage_mode(
    appends: tuple[Image, Image, dict[int, int]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """In salvage mode the same race left a DURABLE_RECORD_LOST in the report; no longer."""
    early, late, positions = appends
    position = positions[6]
    image = torn_record(early, late, position, written=60)
    writer_moves_at_scan(monkeypatch, image, late)
    report = one_recovery(image, RecoveryMode.SALVAGE).report
    assert [d.reason for d in report.corruption] == [Reason.DURABLE_RECORD_LOST]
    image = torn_record(early, late, position, written=60)
    writer_moves_at_scan(monkeypatch, image, late)
    recovered = live_open(image, RecoveryMode.SALVAGE)
    assert recovered.report.corruption == ()
    assert recovered.report.seq == 8


@pytest.fixture
def checkpointed(tmp_path: Path) -> tuple[Image, Image, int]:
    """A store after commits 1-3, and after a checkpoint then commits 4-5 (records of the new
    generation); and the index of the slot that checkpoint wrote."""
    path = tmp_path / "checkpointed.jst"
    with js.open(path, Pair, journal_size=1 << 16) as store:
        for step in range(1, 4):
            store.commit(pair(step))
        before = image_of(path)
        store.checkpoint()
        for step in range(4, 6):
            store.commit(pair(step))
        after = image_of(path)
    slot = one_recovery(after).report.slot
    assert one_recovery(before).report.slot == 1 - slot
    return before, after, slot


def torn_slot(before: Image, after: Image, slot: int) -> Image:
    """``before`` while the checkpoint was copying the new slot: its head and the first bytes
    of its state are new, the rest still the old slot's."""
    torn = before.copy()
    start = slot * before.header.slot_size
    torn.slots[start : start + SLOT_HEAD_SIZE + 8] = after.slots[start : start + SLOT_HEAD_SIZE + 8]
    return torn


def test_slot_torn_when_read_and_whole_later_is_no_damage(
    checkpointed: tuple[Image, Image, int], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A slot read mid-checkpoint, then whole, with records of its generation: no SLOT_LOST."""
    before, after, slot = checkpointed
    # One recovery alone falls back to the older slot, then finds records of the checkpoint's
    # generation and calls the slot it read torn lost: what read-only opens used to report.
    image = torn_slot(before, after, slot)
    writer_moves_at_scan(monkeypatch, image, after)
    report = one_recovery(image).report
    assert Reason.SLOT_LOST in [d.reason for d in report.corruption]
    image = torn_slot(before, after, slot)
    scans = writer_moves_at_scan(monkeypatch, image, after)
    recovered = live_open(image)
    assert recovered.report.corruption == ()
    assert all(s.valid for s in recovered.report.slots)
    assert (recovered.report.slot, recovered.report.seq) == (slot, 5)
    assert len(scans) == 2


def test_slot_torn_at_both_reads_without_evidence_claims_no_loss(
    checkpointed: tuple[Image, Image, int],
) -> None:
    """A checkpoint still being copied at both reads: the older slot's state, no SLOT_LOST."""
    before, after, slot = checkpointed
    recovered = live_open(torn_slot(before, after, slot))
    assert recovered.report.corruption == ()
    assert recovered.report.slots[slot].reason is Reason.BAD_CHECKSUM
    assert recovered.report.seq == 3


def test_a_writer_moving_during_every_recovery_cannot_hang_an_open(
    checkpointed: tuple[Image, Image, int], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Slot heads that change during every recovery: a bounded number of recoveries, then the
    last one that claimed no damage."""
    before, after, _ = checkpointed
    image = before.copy()
    runs = count_recoveries(monkeypatch)

    def scan(*args: Any, **kwargs: Any) -> Any:
        # Each scan swaps the two moments: the heads never read the same twice in a row.
        swap = after if image.slots == before.slots else before
        image.slots[:] = swap.slots
        image.ring[:] = swap.ring
        return scan_records(*args, **kwargs)

    monkeypatch.setattr(recovery, "scan_records", scan)
    recovered = live_open(image)
    assert len(runs) == opening._LIVE_ATTEMPTS
    assert recovered.report.corruption == ()
    assert COMPILED.decode(recovered.image) == pair(recovered.report.seq)


# --- damage in a file no writer changes is reported as before ---------------------------------


def damaged_record(late: Image, position: int) -> Image:
    """``late`` with a payload byte of record 6 flipped: a durable record damaged."""
    damaged = late.copy()
    damaged.ring[physical(late, position) + 60] ^= 0xFF
    return damaged


def test_damaged_durable_record_is_reported_by_a_readonly_recovery(
    appends: tuple[Image, Image, dict[int, int]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A damaged record that later ones vouch for raises, or is reported in salvage mode, once
    a second recovery has read it again."""
    _, late, positions = appends
    position = positions[6]
    runs = count_recoveries(monkeypatch)
    with pytest.raises(js.StoreCorrupt) as info:
        live_open(damaged_record(late, position))
    assert info.value.reason is Reason.DURABLE_RECORD_LOST
    assert info.value.offset == late.header.journal_offset + physical(late, position)
    assert len(runs) == 2
    report = live_open(damaged_record(late, position), RecoveryMode.SALVAGE).report
    assert [d.reason for d in report.corruption] == [Reason.DURABLE_RECORD_LOST]
    assert report.seq == 5
    assert len(runs) == 4


def test_damage_is_reported_while_a_writer_appends_after_it(
    appends: tuple[Image, Image, dict[int, int]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Records appended after a damaged one between two reads do not hide the damage."""
    early, late, positions = appends
    position = positions[6]
    shorter = damaged_record(late, position)
    # The same damage with record 8 not yet written: the first read sees less after it.
    tail = physical(late, positions[8])
    shorter.ring[tail:] = early.ring[tail:]
    assert (
        one_recovery(damaged_record(late, position), RecoveryMode.SALVAGE)
        .report.corruption[0]
        .bytes_dropped
        != one_recovery(shorter, RecoveryMode.SALVAGE).report.corruption[0].bytes_dropped
    )
    writer_moves_at_scan(monkeypatch, shorter, damaged_record(late, position))
    with pytest.raises(js.StoreCorrupt) as info:
        live_open(shorter)
    assert info.value.reason is Reason.DURABLE_RECORD_LOST


def test_lost_slot_is_reported_by_a_readonly_recovery(
    checkpointed: tuple[Image, Image, int], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A damaged slot whose generation records carry is SLOT_LOST for a read-only open too."""
    _, after, slot = checkpointed
    damaged = after.copy()
    damaged.slots[slot * after.header.slot_size + SLOT_HEAD_SIZE + 2] ^= 0xFF
    runs = count_recoveries(monkeypatch)
    report = live_open(damaged).report
    assert len(runs) == 2
    assert [(d.region, d.reason) for d in report.corruption] == [(f"slot{slot}", Reason.SLOT_LOST)]
    assert report.slot == 1 - slot


def test_readonly_open_of_a_damaged_file_reports_the_damage(tmp_path: Path) -> None:
    """On a real file with no writer, js.open(readonly=True) reports a lost record and slot."""
    live = tmp_path / "live.jst"
    with js.open(live, Pair, journal_size=1 << 16) as store:
        for step in range(1, 4):
            store.commit(pair(step))
        store.checkpoint()
        position = store.position
        for step in range(4, 9):
            store.commit(pair(step))
        clean, data = image_of(live), live.read_bytes()  # as a process death leaves it
    header, slot = clean.header, one_recovery(clean).report.slot
    record = header.journal_offset + physical(clean, position) + 60  # in record 4
    path = tmp_path / "damaged.jst"
    path.write_bytes(data[:record] + bytes([data[record] ^ 0xFF]) + data[record + 1 :])
    with pytest.raises(js.StoreCorrupt) as info:
        js.open(path, Pair, readonly=True)
    assert info.value.reason is Reason.DURABLE_RECORD_LOST
    with js.open(path, Pair, readonly=True, recovery="salvage") as reader:
        assert [d.reason for d in reader.recovery.corruption] == [Reason.DURABLE_RECORD_LOST]
        assert reader.state == pair(3)
    at = header.slot_offsets[slot] + SLOT_HEAD_SIZE + 2  # in the newest slot's state
    path.write_bytes(data[:at] + bytes([data[at] ^ 0xFF]) + data[at + 1 :])
    with js.open(path, Pair, readonly=True) as reader:
        reasons = [(d.region, d.reason) for d in reader.recovery.corruption]
        assert reasons == [(f"slot{slot}", Reason.SLOT_LOST)]
        assert consistent(reader.state)


def test_readonly_open_reads_records_through_a_copy(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A read-only open walks the chain with copy_first; the writer's own recovery need not."""
    path = tmp_path / "copy.jst"
    with js.open(path, Pair) as store:
        store.commit(pair(1))
    seen: list[bool] = []

    class Spy(ChainReader):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            seen.append(self.copy_first)

    monkeypatch.setattr(recovery, "ChainReader", Spy)
    with js.open(path, Pair, readonly=True, recovery="salvage") as reader:
        assert reader.state == pair(1)
    assert seen
    assert all(seen)
    seen.clear()
    with js.open(path, Pair) as store:
        assert store.state == pair(1)
    assert seen == [False]


# --- real processes: read-only opens beside a writer at full speed ------------------------------


WRITER = textwrap.dedent(
    """
    import sys
    sys.path.insert(0, {root!r})
    import journalstate as js
    from tests.test_live_open import pair, Pair
    path, mode, journal = sys.argv[1], sys.argv[2], int(sys.argv[3])
    store = js.open(path, Pair, durability=mode, journal_size=journal)
    print("ready", flush=True)
    step = store.state.a
    while True:
        step += 1
        store.commit(pair(step))
    """
).format(root=str(ROOT))


@attrs.define
class Tally:
    """What the read-only opens beside one writer saw."""

    opens: int = 0
    errors: list[str] = attrs.Factory(list)
    damage: list[str] = attrs.Factory(list)
    mixed: list[str] = attrs.Factory(list)
    torn_slots: int = 0
    """Reports with an invalid slot: a checkpoint in progress that held still across two
    recoveries (a writer paused mid-copy); no damage is claimed for it."""
    steps: set[int] = attrs.Factory(set)

    def read(self, path: Path, recovery: str) -> None:
        """One read-only open in ``recovery`` mode; what it saw goes into the tally."""
        self.opens += 1
        try:
            reader = js.open(path, Pair, readonly=True, recovery=recovery)
        except js.StoreCorrupt as e:
            self.errors.append(f"{recovery}: {e}")
            return
        with reader:
            report = reader.recovery
            self.damage.extend(
                f"{recovery}: {d.reason.value}: {d.detail}" for d in report.corruption
            )
            self.torn_slots += not all(s.valid for s in report.slots)
            if not consistent(reader.state):
                self.mixed.append(f"{recovery}: {reader.state!r}")
            self.steps.add(reader.state.a)


def opens_beside_a_writer(path: Path, durability: str, per_mode: int) -> Tally:
    """``per_mode`` read-only opens in each recovery mode beside a writer committing flat out."""
    proc = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(path), durability, str(LIVE_JOURNAL)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    tally = Tally()
    try:
        line = proc.stdout.readline()
        assert line.startswith("ready"), proc.stderr.read() if proc.stderr else ""
        # However slowly a busy machine runs the writer, the opens go on until it has moved at
        # least 20 times; the deadline only guards against a hang.
        deadline = time.monotonic() + 900
        modes = ("tolerate-tail", "salvage")
        while tally.opens < per_mode * len(modes) or len(tally.steps) < 20:
            assert time.monotonic() < deadline, f"the writer is stuck: {sorted(tally.steps)}"
            tally.read(path, modes[tally.opens % len(modes)])
            assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
    finally:
        proc.kill()
        proc.communicate()
    return tally


@pytest.mark.slow
@pytest.mark.parametrize("durability", ["commit", "process"])
def test_readonly_opens_beside_a_live_writer_report_no_damage(
    tmp_path: Path, durability: str
) -> None:
    """Read-only opens beside a writer at full speed: no StoreCorrupt, no damage, no mixed state."""
    tally = opens_beside_a_writer(tmp_path / "live.jst", durability, LIVE_OPENS)
    print(
        f"{durability}: {tally.opens} opens, {len(tally.errors)} StoreCorrupt, "
        f"{len(tally.damage)} damage entries, {len(tally.mixed)} mixed states, "
        f"{tally.torn_slots} reports with a slot being written, "
        f"{len(tally.steps)} distinct states"
    )
    assert tally.errors == []
    assert tally.damage == []
    assert tally.mixed == []
