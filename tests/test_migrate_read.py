"""How a migration reads the old store under its writer lock: recovery with ``stable``.

No writer can rewrite a slot while the lock is held, so recovery checks each slot's crc once in
place and copies and decodes only the slot it starts from. These tests demand that it finds
what ordinary recovery finds, that it decodes and copies no more than it needs, and that a
forged slot still costs no copy.
"""

from __future__ import annotations

import tracemalloc
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Annotated

import attrs
import pytest

import journalstate as js
from journalstate._format import SLOT_CRC_OFFSET, SLOT_HEAD_SIZE, SlotHead
from journalstate._header import Header
from journalstate._reason import Reason
from journalstate._recovery import Recovered, RecoveryMode, recover
from journalstate._schema import Schema
from journalstate._slots import read_base_slot
from tests import test_slots as slots
from tests.damage import fix_slot_crc, flip_byte, zero
from tests.test_recovery import PATH, SALVAGE, Image, Writer, accept, history, reject_when

Validate = Callable[[bytes | bytearray], None]


def both(
    image: Image, mode: RecoveryMode = RecoveryMode.TOLERATE_TAIL, validate: Validate = accept
) -> tuple[Recovered, Recovered]:
    """Recovery of ``image`` without and with ``stable``."""
    results = []
    for stable in (False, True):
        slots, ring = bytes(image.slots), bytes(image.ring)
        results.append(
            recover(PATH, image.header, slots, ring, mode=mode, validate=validate, stable=stable)
        )
        assert (slots, ring) == (bytes(image.slots), bytes(image.ring))
    return results[0], results[1]


def same_outcome(plain: Recovered, stable: Recovered) -> None:
    """Both found the same state, from the same slot, with the same damage."""
    assert stable.image == plain.image
    assert attrs.evolve(stable.report, slots=plain.report.slots) == plain.report
    assert stable.max_generation == plain.max_generation


def test_stable_recovery_of_a_clean_history_is_ordinary_recovery() -> None:
    """Commits 1-9 around a checkpoint: the same state, seq and slot either way."""
    image, writer = history()
    plain, stable = both(image)
    same_outcome(plain, stable)
    assert stable.image == writer.state
    assert stable.report.slots == plain.report.slots


def test_stable_recovery_falls_back_from_a_damaged_newer_slot() -> None:
    """The newer slot's crc fails: both start from the older one and report the loss alike."""
    image, writer = history()
    image.damage_slot(0)
    plain, stable = both(image)
    same_outcome(plain, stable)
    assert stable.report.slots[0].reason is Reason.BAD_CHECKSUM
    assert stable.image == writer.state


def test_stable_recovery_falls_back_from_a_newer_slot_that_does_not_decode() -> None:
    """A checksummed newer slot whose state does not decode is BAD_VALUE; the older is used."""
    image, writer = history()
    validate = reject_when(lambda s: s == writer.written[5].state)  # slot 0: the state at seq 6
    plain, stable = both(image, validate=validate)
    same_outcome(plain, stable)
    assert (stable.report.slots[0].valid, stable.report.slots[0].reason) == (
        False,
        Reason.BAD_VALUE,
    )
    assert stable.report.slot == 1


def test_stable_salvage_replays_again_from_the_slot_not_from_the_replayed_copy() -> None:
    """Salvage after a replayed state that does not decode starts over from the slot's bytes."""
    image, writer = history()
    validate = reject_when(lambda s: s[27:31] == b"\x09" * 4)  # only the fully replayed state
    plain, stable = both(image, SALVAGE, validate)
    same_outcome(plain, stable)
    assert stable.report.seq == 8
    assert stable.image == writer.written[7].state


def test_read_base_slot_decodes_only_the_slot_it_chooses() -> None:
    """validate sees the newer slot's state once; the older slot is checked by its crc only."""
    image, writer = history()
    seen: list[bytes | bytearray] = []
    statuses, images = read_base_slot(bytes(image.slots), image.header, lambda s: seen.append(s))
    assert seen == [writer.written[5].state]
    assert images == [writer.written[5].state, None]
    assert [s.valid for s in statuses] == [True, True]
    assert isinstance(images[0], bytearray)


def test_read_base_slot_with_no_valid_slot_copies_nothing() -> None:
    """Both crcs fail: no slot is chosen, validate is never called."""
    image, _ = history()
    image.damage_slot(0)
    image.damage_slot(1)
    seen: list[bytes | bytearray] = []
    statuses, images = read_base_slot(bytes(image.slots), image.header, lambda s: seen.append(s))
    assert (seen, images) == ([], [None, None])
    assert [s.reason for s in statuses] == [Reason.BAD_CHECKSUM] * 2


def test_a_history_continued_after_stable_recovery_recovers_alike() -> None:
    """A writer that reopens from stable recovery's result and commits leaves a ring that both
    recoveries read alike."""
    image, _ = history()
    _, stable = both(image)
    writer = Writer.open_after(image, stable)
    writer.commit([(0, b"next")])
    plain, stable = both(image)
    same_outcome(plain, stable)


def _slots_header() -> Header:
    """A header for tests.test_slots' two-slot buffers."""
    return Header(
        header_size=512,
        page_size=512,
        file_id=bytes(16),
        slot_size=slots.SLOT_SIZE,
        slot0_offset=512,
        slot1_offset=512 + slots.SLOT_SIZE,
        journal_offset=512 + 2 * slots.SLOT_SIZE,
        journal_size=4096,
        state_size=slots.STATE_SIZE,
        schema=b"",
    )


def _damaged_slot_buffers() -> Iterator[tuple[str, bytearray]]:
    """Slot 1 of tests.test_slots' buffer, valid and damaged in each way read_slot tells."""
    yield "valid", slots.slots_buffer()
    buf = slots.slots_buffer()
    zero(buf, slots.SLOT_SIZE, SLOT_HEAD_SIZE)
    yield "zeroed", buf
    other = SlotHead(7, 3, 42, 9000, slots.STATE_SIZE - 8)
    yield "size", slots.slots_buffer(other, slots.STATE[:-8])
    buf = slots.slots_buffer()
    flip_byte(buf, slots.SLOT_SIZE + SLOT_HEAD_SIZE + 3)
    yield "crc", buf
    for name, at in (("tail", SLOT_HEAD_SIZE + slots.STATE_SIZE), ("flags", 12), ("reserved", 44)):
        buf = slots.slots_buffer()
        flip_byte(buf, slots.SLOT_SIZE + at)
        fix_slot_crc(buf, slots.SLOT_SIZE, slots.STATE_SIZE)
        yield name, buf


def test_read_base_slot_judges_each_slot_as_read_slot_does() -> None:
    """Zeroed, mis-sized, damaged, tail-mismatched and flagged slots get read_slot's reason."""
    for name, buf in _damaged_slot_buffers():
        statuses, images = read_base_slot(bytes(buf), _slots_header(), accept)
        expected, state = slots.read(bytes(buf))
        assert statuses[1] == expected, name
        assert images[1] == state, name
        assert (statuses[0].valid, statuses[0].reason) == (False, Reason.ZEROED), name


# --- migrate -------------------------------------------------------------------------------------


@attrs.frozen
class Small:
    """A small old class."""

    n: js.U16 = 0
    text: Annotated[str, js.Str(8)] = ""


@attrs.frozen
class Wider:
    """Small, widened, with a new field."""

    n: js.U32 = 0
    text: Annotated[str, js.Str(12)] = ""
    more: js.U8 = 3


@pytest.fixture
def decodes(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The size of every state image Schema.decode is given while the test runs."""
    sizes: list[int] = []
    original = Schema.decode

    def counting(self: Schema, data: bytes | bytearray | memoryview) -> object:
        sizes.append(len(data))
        return original(self, data)

    monkeypatch.setattr(Schema, "decode", counting)
    return sizes


def test_migration_decodes_the_old_state_once(tmp_path: Path, decodes: list[int]) -> None:
    """Without convert or validators, a migration decodes one slot's state, once."""
    path = tmp_path / "s.jst"
    with js.open(path, Small) as store:
        store.commit(Small(n=9, text="nine"))
    old_size = js.schema_info(Small).size
    decodes.clear()
    report = js.migrate(path, Wider)
    assert (report.migrated, report.seq) == (True, 1)
    assert decodes == [old_size]
    with js.open(path, Wider, readonly=True) as store:
        assert store.state == Wider(n=9, text="nine")


def test_migration_with_convert_decodes_the_old_state_for_it(
    tmp_path: Path, decodes: list[int]
) -> None:
    """With convert, the old state is decoded once more: for the function."""
    path = tmp_path / "s.jst"
    with js.open(path, Small) as store:
        store.commit(Small(n=4, text="four"))
    decodes.clear()
    js.migrate(path, Wider, convert=lambda old: Wider(n=old.n * 2, text=old.text))
    assert len(decodes) == 2
    with js.open(path, Wider, readonly=True) as store:
        assert store.state == Wider(n=8, text="four")


@attrs.frozen
class Blob:
    """A store whose state is large enough that a copy of it shows in memory."""

    data: Annotated[bytes, js.Bytes(8 << 20)] = b""


@attrs.frozen
class BlobWider:
    """Blob with one more field."""

    data: Annotated[bytes, js.Bytes(8 << 20)] = b""
    more: js.U8 = 1


def test_migration_of_forged_slots_copies_neither(tmp_path: Path) -> None:
    """Both slots' crcs fail: the migration is refused as Unrecoverable before any copy."""
    path = tmp_path / "s.jst"
    with js.open(path, Blob, initial=Blob(b"x" * 1000)) as store:
        offsets = store.header.slot_offsets
    with open(path, "r+b") as f:
        for offset in offsets:
            f.seek(offset + SLOT_CRC_OFFSET)
            f.write(b"\xde\xad\xbe\xef")
    before = path.read_bytes()
    tracemalloc.start()
    try:
        with pytest.raises(js.Unrecoverable):
            js.migrate(path, BlobWider)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 2 << 20  # a copy of either slot's state alone would be 8 MiB
    assert path.read_bytes() == before
