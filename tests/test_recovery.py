"""Recovery over in-memory images: what is replayed, what is a torn tail, what is corruption.

Images are built by :class:`Writer`, which writes slots and records exactly as the store does
(record plus zero end marker at the tail, a checkpoint into the other slot when a record would
not fit, a new epoch on every writable open), and keeps a plain model of the state.
"""

from __future__ import annotations

import random
import struct
from collections.abc import Callable

import attrs
import pytest
from hypothesis import given
from hypothesis import strategies as st

from journalstate._errors import NoPreviousGeneration, StoreCorrupt, Unrecoverable
from journalstate._format import (
    END_MARKER_SIZE,
    RECORD_HEADER_SIZE,
    SlotHead,
    encode_slot,
    record_size,
    slot_size_for,
)
from journalstate._header import Header
from journalstate._reason import Reason
from journalstate._recovery import Damage, Recovered, RecoveryMode, recover
from journalstate._writer import encode_patches, encode_record
from tests.damage import (
    fix_record_crc,
    flip_byte,
    get,
    put,
    set_length,
    set_record_field,
    torn_write,
    zero,
)

STATE_SIZE = 64
PAGE = 512
SLOT_SIZE = slot_size_for(STATE_SIZE, PAGE)
JS = 4096
LAP = 3 * JS
PATH = "mem.jst"
TOLERATE, STRICT, SALVAGE = RecoveryMode.TOLERATE_TAIL, RecoveryMode.STRICT, RecoveryMode.SALVAGE

Patches = list[tuple[int, bytes]]


def make_header(journal_size: int = JS) -> Header:
    """A header for the images built here: 512-byte pages, a 64-byte state."""
    return Header(
        header_size=PAGE,
        page_size=PAGE,
        file_id=bytes(16),
        slot_size=SLOT_SIZE,
        slot0_offset=PAGE,
        slot1_offset=PAGE + SLOT_SIZE,
        journal_offset=PAGE + 2 * SLOT_SIZE,
        journal_size=journal_size,
        state_size=STATE_SIZE,
        schema=b"",
    )


def accept(image: bytes | bytearray) -> None:
    """A validate that accepts every state."""


def reject_when(bad: Callable[[bytes], bool]) -> Callable[[bytes | bytearray], None]:
    """A validate that raises ValueError for the states ``bad`` picks."""

    def validate(image: bytes | bytearray) -> None:
        if bad(bytes(image)):
            raise ValueError("does not decode")

    return validate


@attrs.define
class Image:
    """One store's slots and journal ring, in memory."""

    header: Header = attrs.field(factory=make_header)
    slots: bytearray = attrs.field(init=False)
    ring: bytearray = attrs.field(init=False)

    def __attrs_post_init__(self) -> None:
        self.slots = bytearray(2 * self.header.slot_size)
        self.ring = bytearray(self.header.journal_size)

    @property
    def js(self) -> int:
        """The journal size."""
        return self.header.journal_size

    def file_offset(self, position: int) -> int:
        """File offset of a logical journal position."""
        return self.header.journal_offset + position % self.js

    def put_slot(self, index: int, head: SlotHead, state: bytes) -> None:
        """Write a slot's meaningful bytes."""
        put(self.slots, index * self.header.slot_size, encode_slot(head, state))

    def damage_slot(self, index: int) -> None:
        """Flip a state byte of a slot: its crc no longer holds."""
        flip_byte(self.slots, index * self.header.slot_size + 50)

    def put_record(self, at: int, **fields: int) -> bytes:
        """Write a record and its end marker at position ``at``; ``fields`` set its header.

        By default the header is that of record 10 of the standard history.
        """
        values = {"epoch": 1, "seq": 10, "position": at, "durable_seq": 0, "generation": 3}
        values.update(fields)
        record = encode_record(payload=encode_patches([(0, b"stale!")]), **values)
        put(self.ring, at, record + bytes(END_MARKER_SIZE), self.js)
        return record

    def recover(
        self,
        mode: RecoveryMode = TOLERATE,
        *,
        previous: bool = False,
        validate: Callable[[bytes | bytearray], None] = accept,
    ) -> Recovered:
        """recover() over copies of the bytes, checking that it changed nothing."""
        slots, ring = bytes(self.slots), bytes(self.ring)
        result = recover(
            PATH,
            self.header,
            slots,
            ring,
            mode=mode,
            previous_generation=previous,
            validate=validate,
        )
        assert slots == bytes(self.slots)
        assert ring == bytes(self.ring)
        return result

    def corrupt(
        self,
        mode: RecoveryMode = TOLERATE,
        *,
        validate: Callable[[bytes | bytearray], None] = accept,
    ) -> StoreCorrupt:
        """The StoreCorrupt that recovery raises in ``mode``."""
        with pytest.raises(StoreCorrupt) as info:
            self.recover(mode, validate=validate)
        return info.value


@attrs.frozen
class Written:
    """One record the Writer wrote."""

    seq: int
    position: int
    record: bytes
    before: bytes
    """The ring bytes the record and its end marker replaced."""
    state: bytes
    """The state after this commit."""

    @property
    def size(self) -> int:
        """Bytes the record takes."""
        return len(self.record)


class Writer:
    """Writes an Image as the store would, keeping a plain model of the state.

    Starts like a new store (slot 0 generation 1, slot 1 generation 0, epoch 0, both at
    ``start``); call :meth:`reopen` before the first commit, as opening for writing does.
    """

    def __init__(
        self, image: Image, start: int, state: bytes = bytes(STATE_SIZE), *, new: bool = True
    ) -> None:
        self.image = image
        self.state = bytearray(state)
        self.seq = 0
        self.tail = self.base_position = start
        self.epoch = 0
        self.generation = 1
        self.base_slot = 0
        self.durable_seq = 0
        self.written: list[Written] = []
        if new:
            image.put_slot(0, SlotHead(1, 0, 0, start, STATE_SIZE), bytes(state))
            image.put_slot(1, SlotHead(0, 0, 0, start, STATE_SIZE), bytes(state))

    @classmethod
    def open_after(cls, image: Image, recovered: Recovered) -> Writer:
        """The writer of a writable open that recovered ``recovered``, session begun."""
        report = recovered.report
        writer = cls(image, report.position, bytes(recovered.image), new=False)
        writer.seq = writer.durable_seq = report.seq
        writer.base_slot = report.slot
        writer.generation, writer.epoch = recovered.max_generation, recovered.max_epoch
        writer.reopen()
        return writer

    def checkpoint(self, *, epoch: int | None = None) -> None:
        """Write the state into the other slot with the next generation."""
        target = 1 - self.base_slot
        self.generation += 1
        self.epoch = self.epoch if epoch is None else epoch
        head = SlotHead(self.generation, self.epoch, self.seq, self.tail, STATE_SIZE)
        self.image.put_slot(target, head, bytes(self.state))
        self.base_slot = target
        self.base_position = self.tail
        self.durable_seq = self.seq

    def reopen(self) -> None:
        """What a writable open does after recovery: zero the end marker, new-epoch checkpoint."""
        zero(self.image.ring, self.tail, END_MARKER_SIZE, self.image.js)
        self.checkpoint(epoch=self.epoch + 1)

    def commit(self, patches: Patches, *, sync: bool = False) -> Written:
        """Write one record (checkpointing first if it would not fit) and apply it."""
        payload = encode_patches(patches)
        size = record_size(len(payload))
        if self.tail + size + END_MARKER_SIZE - self.base_position > self.image.js:
            self.checkpoint()
        record = encode_record(
            epoch=self.epoch,
            seq=self.seq + 1,
            position=self.tail,
            durable_seq=self.durable_seq,
            generation=self.generation,
            payload=payload,
        )
        before = get(self.image.ring, self.tail, size + END_MARKER_SIZE, self.image.js)
        put(self.image.ring, self.tail, record + bytes(END_MARKER_SIZE), self.image.js)
        for offset, data in patches:
            self.state[offset : offset + len(data)] = data
        self.seq += 1
        written = Written(self.seq, self.tail, record, before, bytes(self.state))
        self.written.append(written)
        self.tail += size
        if sync:
            self.durable_seq = self.seq
        return written


def patches_for(seq: int) -> Patches:
    """The patches of commit ``seq`` in the standard history: 64-byte records for odd seqs,
    72-byte ones for even seqs."""
    patches = [(seq * 3 % 56, bytes([seq]) * 4)]
    if seq % 2 == 0:
        patches.append((60, b"ab"))
    return patches


START = LAP + JS - 600


def history(*, sync: tuple[int, ...] = ()) -> tuple[Image, Writer]:
    """The standard history: commits 1-6, a checkpoint, commits 7-9.

    Slot 1: generation 2, epoch 1, seq 0 at START. Slot 0: generation 3, epoch 1, seq 6 at
    START + 408. Record 9 straddles the ring's end; the tail is LAP + JS + 8.
    """
    image = Image()
    writer = Writer(image, START)
    writer.reopen()
    for seq in range(1, 10):
        if seq == 7:
            writer.checkpoint()
        writer.commit(patches_for(seq), sync=seq in sync)
    return image, writer


def state_after(writer: Writer, seq: int) -> bytes:
    """The model's state after commit ``seq``."""
    return writer.written[seq - 1].state


# --- clean replay ---------------------------------------------------------------------------------


def test_standard_history_layout() -> None:
    """The standard history is laid out as its docstring says (the other tests rely on it)."""
    _, writer = history()
    assert [(w.seq, w.position % JS, w.size) for w in writer.written[6:]] == [
        (7, 3904, 64),
        (8, 3968, 72),
        (9, 4040, 64),
    ]
    assert writer.tail == LAP + JS + 8
    assert (writer.base_slot, writer.generation, writer.epoch) == (0, 3, 1)


def test_clean_replay() -> None:
    """Records after the newest slot are replayed in order, across the ring's end."""
    image, writer = history()
    result = image.recover()
    r = result.report
    assert (r.mode, r.previous_generation, r.slot, r.generation, r.epoch) == (
        TOLERATE,
        False,
        0,
        3,
        1,
    )
    assert (r.base_seq, r.seq, r.position) == (6, 9, 16392)
    assert (r.records_replayed, r.bytes_replayed) == (3, 200)
    assert (r.torn_tail, r.torn_tail_offset, r.torn_tail_bytes) == (False, None, 0)
    assert r.corruption == ()
    assert r.clean
    assert [s.generation for s in r.slots] == [3, 2]
    assert result.image == writer.state
    assert result.image[21:31] == b"\x07" * 3 + b"\x08" * 3 + b"\x09" * 4
    assert result.image[60:62] == b"ab"
    assert (result.max_generation, result.max_epoch) == (3, 1)


@pytest.mark.parametrize("mode", list(RecoveryMode))
def test_clean_store_recovers_in_every_mode(mode: RecoveryMode) -> None:
    """A store without damage recovers the same way in strict, tolerate-tail and salvage."""
    image, writer = history()
    result = image.recover(mode)
    assert result.image == writer.state
    assert result.report.clean
    assert result.report.mode is mode


def test_zero_header_ends_the_journal_cleanly() -> None:
    """An all-zero record header is the clean end, even with payload bytes after it."""
    image, writer = history()
    image.put_record(writer.tail, seq=10)
    zero(image.ring, writer.tail, RECORD_HEADER_SIZE, JS)
    result = image.recover()
    assert result.report.clean
    assert (result.report.seq, result.report.records_replayed) == (9, 3)
    assert result.image == writer.state


# --- torn tail ------------------------------------------------------------------------------------

TORN_AT = PAGE + 2 * SLOT_SIZE + 4040  # file offset of record 9


@pytest.mark.parametrize(
    ("damage", "dropped"),
    [
        ("flip-header", 64),
        ("flip-crc", 64),
        ("flip-payload", 64),
        ("flip-padding", 64),
        ("partial-write", 64),
        ("length-too-long", 1048),
        ("length-past-ring", RECORD_HEADER_SIZE),
    ],
)
def test_torn_last_record(damage: str, dropped: int) -> None:
    """A damaged last record is a torn tail: dropped, reported with its offset, not corruption."""
    image, writer = history()
    last = writer.written[-1]
    at = last.position
    if damage == "flip-header":
        flip_byte(image.ring, at + 20, 0x01, JS)
    elif damage == "flip-crc":
        flip_byte(image.ring, at, 0x80, JS)
    elif damage == "flip-payload":
        flip_byte(image.ring, at + RECORD_HEADER_SIZE + 9, 0x01, JS)
    elif damage == "flip-padding":
        flip_byte(image.ring, at + last.size - 1, 0x01, JS)
    elif damage == "partial-write":
        put(image.ring, at, last.before, JS)
        torn_write(image.ring, at, last.record, 30, JS)
    elif damage == "length-too-long":
        set_length(image.ring, at, 1000, JS)
    else:
        set_length(image.ring, at, JS, JS)
    result = image.recover()
    r = result.report
    assert (r.seq, r.position, r.records_replayed, r.bytes_replayed) == (8, at, 2, 136)
    assert (r.torn_tail, r.torn_tail_offset, r.torn_tail_bytes) == (True, TORN_AT, dropped)
    assert r.corruption == ()
    assert not r.clean
    assert result.image == state_after(writer, 8)
    assert image.file_offset(at) == TORN_AT


def test_torn_tail_in_strict_mode_raises() -> None:
    """Strict recovery turns a torn tail into StoreCorrupt carrying the offset and report."""
    image, writer = history()
    flip_byte(image.ring, writer.written[-1].position + 50, 0x01, JS)
    error = image.corrupt(STRICT)
    assert (error.offset, error.reason, error.path) == (TORN_AT, Reason.BAD_CHECKSUM, PATH)
    assert error.report is not None
    assert (error.report.torn_tail, error.report.torn_tail_offset) == (True, TORN_AT)
    assert error.report.seq == 8


def test_damaged_record_not_vouched_for_is_a_torn_tail() -> None:
    """A damaged record followed by a later one that vouches for nothing newer is a torn tail."""
    image, writer = history(sync=(7,))  # record 9 says records up to 7 are durable, no more
    rec8, rec9 = writer.written[7], writer.written[8]
    assert struct.unpack_from("<Q", rec9.record, 32)[0] == 7
    flip_byte(image.ring, rec8.position + 60, 0x01, JS)
    result = image.recover()
    r = result.report
    assert (r.seq, r.records_replayed, r.position) == (7, 1, rec8.position)
    assert (r.torn_tail, r.torn_tail_offset) == (True, image.file_offset(rec8.position))
    assert r.torn_tail_bytes == rec8.size + rec9.size
    assert r.corruption == ()
    assert result.image == state_after(writer, 7)


# --- stale records after the end of the chain -----------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "reason"),
    [
        ({"epoch": 0}, "older epoch"),
        ({"position": LAP + 8}, "earlier lap"),
        ({"position": LAP + 2 * JS + 8}, "later lap"),
    ],
)
def test_stale_record_after_the_end_is_not_replayed(fields: dict[str, int], reason: str) -> None:
    """A checksummed record of another epoch or lap where the next one belongs ends the chain."""
    image, writer = history()
    assert writer.tail == LAP + JS + 8
    image.put_record(writer.tail, **fields)
    result = image.recover()
    assert result.report.clean, reason
    assert (result.report.seq, result.report.records_replayed) == (9, 3)
    assert result.image == writer.state


def full_payload(size: int) -> bytes:
    """A valid payload that makes a record of exactly ``size`` bytes."""
    length = size - RECORD_HEADER_SIZE
    full, rest = divmod(length, 8 + STATE_SIZE)
    assert rest % 8 == 0
    return encode_patches([(0, bytes([7]) * STATE_SIZE)] * full + [(0, b"")] * (rest // 8))


@pytest.mark.parametrize("overrun", [0, 8])
def test_record_must_end_before_the_last_end_marker(overrun: int) -> None:
    """A record may end where the journal is full (base + size - 48), not one byte later."""
    image, writer = history()
    window_end = writer.base_position + JS - END_MARKER_SIZE
    size = window_end - writer.tail + overrun
    payload = full_payload(size)
    record = encode_record(
        epoch=1, seq=10, position=writer.tail, durable_seq=6, generation=3, payload=payload
    )
    assert len(record) == size
    put(image.ring, writer.tail, record, JS)
    r = image.recover().report
    if overrun:
        assert (r.seq, r.torn_tail, r.torn_tail_bytes) == (9, True, size - overrun)
        assert r.torn_tail_offset == image.file_offset(writer.tail)
    else:
        assert (r.seq, r.position, r.torn_tail) == (10, window_end, False)


# --- journal corruption ---------------------------------------------------------------------------


def test_damaged_durable_record_is_corruption() -> None:
    """A damaged record that a later record vouches for is DURABLE_RECORD_LOST."""
    image, writer = history(sync=(8,))
    rec8, rec9 = writer.written[7], writer.written[8]
    assert struct.unpack_from("<Q", rec9.record, 32)[0] == 8
    flip_byte(image.ring, rec8.position + 60, 0x01, JS)
    offset = image.file_offset(rec8.position)
    expected_damage = Damage(
        "journal",
        offset,
        Reason.DURABLE_RECORD_LOST,
        rec8.size + rec9.size,
        "record 8 is damaged but record 9 says records up to 8 were durable",
    )
    for mode in (TOLERATE, STRICT):
        error = image.corrupt(mode)
        assert (error.offset, error.reason) == (offset, Reason.DURABLE_RECORD_LOST)
        assert error.report is not None
        assert error.report.corruption == (expected_damage,)
        assert (error.report.seq, error.report.torn_tail) == (7, False)
    result = image.recover(SALVAGE)
    r = result.report
    assert (r.seq, r.records_replayed, r.bytes_replayed, r.position) == (7, 1, 64, rec8.position)
    assert (r.torn_tail, r.torn_tail_offset, r.torn_tail_bytes) == (False, None, 0)
    assert r.corruption == (expected_damage,)
    assert result.image == state_after(writer, 7)


def test_zeroed_durable_record_is_corruption() -> None:
    """A durable record whose bytes became zeros is lost, not the end of the journal."""
    image, writer = history(sync=(8,))
    zero(image.ring, writer.written[7].position, RECORD_HEADER_SIZE, JS)
    error = image.corrupt()
    assert error.reason is Reason.DURABLE_RECORD_LOST
    assert image.recover(SALVAGE).image == state_after(writer, 7)


def test_out_of_range_patch_is_corruption() -> None:
    """A checksummed record whose patch falls outside the state is BAD_PATCH corruption."""
    image, writer = history()
    rec8 = writer.written[7]
    put(image.ring, rec8.position + RECORD_HEADER_SIZE, struct.pack("<I", 1000), JS)
    fix_record_crc(image.ring, rec8.position, JS)
    offset = image.file_offset(rec8.position)
    error = image.corrupt()
    assert (error.offset, error.reason) == (offset, Reason.BAD_PATCH)
    result = image.recover(SALVAGE)
    r = result.report
    assert (r.seq, r.records_replayed, r.torn_tail) == (7, 1, False)
    assert [(d.region, d.offset, d.reason, d.bytes_dropped) for d in r.corruption] == [
        ("journal", offset, Reason.BAD_PATCH, rec8.size)
    ]
    assert "outside the 64-byte state" in r.corruption[0].detail
    assert result.image == state_after(writer, 7)


@pytest.mark.parametrize(
    ("fields", "reason"),
    [({"seq": 12}, Reason.SEQUENCE_GAP), ({"kind": 2}, Reason.BAD_KIND)],
)
def test_hostile_record_where_the_next_belongs_is_corruption(
    fields: dict[str, int], reason: Reason
) -> None:
    """A checksummed record of this epoch and position but a wrong seq or kind is corruption."""
    image, writer = history()
    image.put_record(writer.tail, seq=fields.get("seq", 10))
    if "kind" in fields:
        set_record_field(image.ring, writer.tail, "kind", fields["kind"], JS)
        fix_record_crc(image.ring, writer.tail, JS)
    offset = image.file_offset(writer.tail)
    error = image.corrupt()
    assert (error.offset, error.reason) == (offset, reason)
    result = image.recover(SALVAGE)
    assert [(d.offset, d.reason, d.bytes_dropped) for d in result.report.corruption] == [
        (offset, reason, RECORD_HEADER_SIZE)
    ]
    assert (result.report.seq, result.report.torn_tail) == (9, False)
    assert result.image == writer.state


# --- slots ----------------------------------------------------------------------------------------


def test_damaged_older_slot_is_reported_not_corruption() -> None:
    """A torn older slot (a checkpoint cut short) changes nothing but strict mode raises."""
    image, writer = history()
    image.damage_slot(1)
    result = image.recover()
    r = result.report
    assert (r.slot, r.seq, r.corruption, r.torn_tail) == (0, 9, (), False)
    assert (r.slots[1].valid, r.slots[1].reason) == (False, Reason.BAD_CHECKSUM)
    assert not r.clean
    assert result.image == writer.state
    assert (result.max_generation, result.max_epoch) == (3, 1)
    error = image.corrupt(STRICT)
    assert (error.offset, error.reason) == (PAGE + SLOT_SIZE, Reason.BAD_CHECKSUM)


def test_lost_newer_slot_falls_back_and_reports_slot_lost() -> None:
    """A damaged newest slot: replay from the older one, and SLOT_LOST since records prove it."""
    image, writer = history()
    image.damage_slot(0)
    result = image.recover()
    r = result.report
    assert (r.slot, r.generation, r.base_seq, r.seq, r.records_replayed) == (1, 2, 0, 9, 9)
    assert (r.position, r.torn_tail) == (writer.tail, False)
    [lost] = r.corruption
    assert (lost.region, lost.offset, lost.reason, lost.bytes_dropped) == (
        "slot0",
        PAGE,
        Reason.SLOT_LOST,
        SLOT_SIZE,
    )
    assert "slot 0 is damaged" in lost.detail
    assert result.image == writer.state
    assert (result.max_generation, result.max_epoch) == (2, 1)
    error = image.corrupt(STRICT)
    assert (error.offset, error.reason) == (PAGE, Reason.SLOT_LOST)


def test_slot_lost_is_found_past_a_torn_tail() -> None:
    """Newer-generation records found after the chain stops also prove the lost checkpoint."""
    image, writer = history()
    image.damage_slot(0)
    rec7 = writer.written[6]  # the first record of generation 3
    flip_byte(image.ring, rec7.position + 60, 0x01, JS)
    result = image.recover()
    r = result.report
    assert (r.slot, r.seq, r.records_replayed) == (1, 6, 6)
    assert (r.torn_tail, r.torn_tail_offset) == (True, image.file_offset(rec7.position))
    assert r.torn_tail_bytes == sum(w.size for w in writer.written[6:])
    assert [(d.region, d.reason) for d in r.corruption] == [("slot0", Reason.SLOT_LOST)]
    assert result.image == state_after(writer, 6)


def test_lost_open_checkpoint_is_slot_lost() -> None:
    """Records of the next epoch after the chain prove the damaged slot's checkpoint completed."""
    image, writer = history()
    writer.reopen()  # slot 1: generation 4, epoch 2, at the tail
    lost = writer.commit([(0, b"lost")])
    image.damage_slot(1)
    result = image.recover()
    r = result.report
    assert (r.slot, r.epoch, r.seq, r.position, r.torn_tail) == (0, 1, 9, lost.position, False)
    assert [(d.region, d.offset, d.reason) for d in r.corruption] == [
        ("slot1", PAGE + SLOT_SIZE, Reason.SLOT_LOST)
    ]
    assert result.image == state_after(writer, 9)


def test_previous_generation_replays_nothing() -> None:
    """previous_generation starts from the older slot and ignores every record."""
    image, _ = history()
    result = image.recover(previous=True)
    r = result.report
    assert (r.previous_generation, r.slot, r.generation, r.epoch) == (True, 1, 2, 1)
    assert (r.base_seq, r.seq, r.position) == (0, 0, START)
    assert (r.records_replayed, r.bytes_replayed, r.torn_tail, r.corruption) == (0, 0, False, ())
    assert result.image == bytes(STATE_SIZE)
    assert (result.max_generation, result.max_epoch) == (3, 1)


def test_next_generation_and_epoch_come_from_both_slots() -> None:
    """max_generation and max_epoch cover the newer slot when recovery starts from the older."""
    image, writer = history()
    writer.reopen()  # slot 1: generation 4, epoch 2
    result = image.recover(previous=True)
    assert (result.report.slot, result.report.generation, result.report.epoch) == (0, 3, 1)
    assert (result.max_generation, result.max_epoch) == (4, 2)


def test_previous_generation_needs_both_slots() -> None:
    """previous_generation with one valid slot is NoPreviousGeneration; with none Unrecoverable."""
    image, _ = history()
    image.damage_slot(1)
    with pytest.raises(NoPreviousGeneration) as info:
        image.recover(previous=True)
    assert info.value.path == PATH
    image.damage_slot(0)
    with pytest.raises(Unrecoverable):
        image.recover(previous=True)


def test_no_valid_slot_is_unrecoverable() -> None:
    """With both slots invalid recovery raises Unrecoverable, in every mode."""
    image, _ = history()
    zero(image.slots, 0, SLOT_SIZE)
    image.damage_slot(1)
    for mode in RecoveryMode:
        with pytest.raises(Unrecoverable) as info:
            image.recover(mode)
        assert (info.value.offset, info.value.reason) == (PAGE, Reason.ZEROED)
        assert "slot 0: " in str(info.value)
        assert "slot 1: " in str(info.value)


# --- states that do not decode --------------------------------------------------------------------


def test_replayed_state_that_does_not_decode() -> None:
    """Salvage keeps the records before the one that breaks decoding; other modes raise."""
    image, writer = history()
    validate = reject_when(lambda s: s[27:31] == b"\x09" * 4)  # only the fully replayed state
    base = writer.written[6].position
    ninth = writer.written[8]
    error = image.corrupt(validate=validate)
    assert (error.offset, error.reason) == (image.file_offset(base), Reason.BAD_VALUE)
    result = image.recover(SALVAGE, validate=validate)
    r = result.report
    kept = ninth.position - base
    assert (r.slot, r.seq, r.position, r.records_replayed, r.bytes_replayed) == (
        0,
        8,
        ninth.position,
        2,
        kept,
    )
    assert [(d.region, d.offset, d.reason, d.bytes_dropped) for d in r.corruption] == [
        ("journal", image.file_offset(ninth.position), Reason.BAD_VALUE, ninth.size)
    ]
    assert result.image == state_after(writer, 8)


def test_slot_that_does_not_decode_is_invalid() -> None:
    """A checksummed slot whose state does not decode is BAD_VALUE; the other slot is used."""
    image, writer = history()
    validate = reject_when(lambda s: s == state_after(writer, 6))
    result = image.recover(validate=validate)
    r = result.report
    assert (r.slots[0].valid, r.slots[0].reason) == (False, Reason.BAD_VALUE)
    assert (r.slot, r.seq, r.records_replayed) == (1, 9, 9)
    assert [d.reason for d in r.corruption] == [Reason.SLOT_LOST]
    assert result.image == writer.state


# --- epochs are never reused ----------------------------------------------------------------------


def test_max_epoch_covers_epochs_found_in_the_journal() -> None:
    """After SLOT_LOST proven by records of epoch E+1, max_epoch is E+1, not the slots' E."""
    image, writer = history()
    writer.reopen()
    writer.commit([(0, b"lost")])
    image.damage_slot(1)
    result = image.recover()
    assert [d.reason for d in result.report.corruption] == [Reason.SLOT_LOST]
    assert result.report.epoch == 1
    assert result.max_epoch == 2


def test_max_epoch_ignores_the_ring_when_both_slots_are_valid() -> None:
    """With both slots valid the next epoch comes from the slots alone."""
    image, writer = history()
    image.put_record(writer.tail + 200, epoch=40)
    assert image.recover().max_epoch == 1
    image.damage_slot(1)
    assert image.recover().max_epoch == 40


@pytest.mark.parametrize("crash", ["process-death", "end-marker-lost"])
def test_next_session_never_sees_the_lost_sessions_records(crash: str) -> None:
    """A session opened after a SLOT_LOST recovers its own commits, never the lost session's."""
    image, writer = history()
    writer.reopen()  # session of epoch 2, its checkpoint in slot 1
    for seq in (10, 11, 12):
        writer.commit([(0, bytes([seq]) * 8)], sync=True)
    image.damage_slot(1)  # that checkpoint is lost: recovery reports SLOT_LOST
    first = image.recover()
    assert [d.reason for d in first.report.corruption] == [Reason.SLOT_LOST]
    # The next writable open, as the store does it: a new epoch from max_epoch, a checkpoint
    # into the damaged slot, then one commit of the same size as the lost session's first.
    after = Writer.open_after(image, first)
    new = after.commit([(0, b"NEW-0010")])
    if crash == "end-marker-lost":  # an OS crash kept the record's page, not the marker's
        put(image.ring, new.position + new.size, new.before[new.size :], JS)
    second = image.recover()
    assert second.report.corruption == ()
    assert second.report.seq == 10
    assert second.image == new.state


# --- the property ---------------------------------------------------------------------------------


@st.composite
def operations(draw: st.DrawFn) -> list[tuple[str, Patches, bool]]:
    """Commits (patches, synced or not), checkpoints and reopens, ending with a commit."""
    ops: list[tuple[str, Patches, bool]] = []
    for _ in range(draw(st.integers(1, 40))):
        op = draw(st.sampled_from(["commit"] * 8 + ["checkpoint", "reopen"]))
        patches: Patches = []
        if op == "commit":
            for _ in range(draw(st.integers(1, 3))):
                offset = draw(st.integers(0, STATE_SIZE - 1))
                patches.append((offset, draw(st.binary(min_size=1, max_size=STATE_SIZE - offset))))
        ops.append((op, patches, draw(st.booleans())))
    if ops[-1][0] != "commit":
        ops.append(("commit", [(0, b"last")], False))
    return ops


@given(
    ops=operations(),
    start=st.integers(0, 4 * 1024 // 8).map(lambda n: n * 8),
    background=st.sampled_from(["zeros", "garbage"]),
    damage=st.sampled_from(["none", "flip", "torn"]),
    where=st.integers(0, 10_000),
    bits=st.integers(1, 255),
)
def test_recovery_returns_a_prefix_of_the_commits(
    ops: list[tuple[str, Patches, bool]],
    start: int,
    background: str,
    damage: str,
    where: int,
    bits: int,
) -> None:
    """Recovery returns the state after all commits, or after all but a damaged last one."""
    image = Image(make_header(1024))
    if background == "garbage":
        image.ring[:] = random.Random(start).randbytes(1024)
    writer = Writer(image, start, bytes(range(STATE_SIZE)))
    writer.reopen()
    for op, patches, sync in ops:
        if op == "commit":
            writer.commit(patches, sync=sync)
        elif op == "checkpoint":
            writer.checkpoint()
        else:
            writer.reopen()
    last = writer.written[-1]
    if damage == "flip":
        flip_byte(image.ring, last.position + where % last.size, bits, image.js)
    elif damage == "torn":
        put(image.ring, last.position, last.before, image.js)
        torn_write(image.ring, last.position, last.record, where % last.size, image.js)
    intact = get(image.ring, last.position, last.size, image.js) == last.record
    result = image.recover()
    r = result.report
    assert r.corruption == ()
    if intact:  # the damage changed no byte of the record (its end marker may be gone)
        assert (r.seq, r.position) == (writer.seq, writer.tail)
        assert result.image == writer.state
        assert r.clean or damage == "torn"
    else:
        previous = writer.written[-2].state if len(writer.written) > 1 else bytes(range(STATE_SIZE))
        assert (r.seq, r.position) == (last.seq - 1, last.position)
        assert result.image == previous
        if damage == "flip":
            assert (r.torn_tail, r.torn_tail_offset) == (True, image.file_offset(last.position))
        if r.torn_tail:
            assert r.torn_tail_offset == image.file_offset(last.position)
