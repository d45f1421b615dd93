"""The journal reader: records in a ring, their patches, and the scan for later records."""

from __future__ import annotations

import mmap
from typing import Any

import pytest
from hypothesis import assume, example, given
from hypothesis import strategies as st

from journalstate._format import (
    END_MARKER_SIZE,
    RECORD_HEADER_SIZE,
    RecordHeader,
    decode_record_header,
    record_size,
)
from journalstate._journal import (
    check_patches,
    iter_patches,
    max_epoch_in_ring,
    max_payload,
    ring_read,
    scan_later_records,
    scan_records,
)
from journalstate._reader import ChainStop, next_record, next_record_fast, read_record
from journalstate._reason import Reason
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

JS = 4096  # journal size of the rings built here
LAP = 3 * JS  # logical positions start a few laps in, so that position != ring offset
PAYLOAD = encode_patches([(0, b"abc"), (10, b"de")])  # 21 bytes: a 72-byte record, 3 padding


def write_record(
    ring: bytearray,
    position: int,
    *,
    epoch: int = 1,
    seq: int = 1,
    durable_seq: int = 0,
    generation: int = 1,
    payload: bytes = PAYLOAD,
    stamped_position: int | None = None,
) -> bytes:
    """Write a record and its zero end marker at ``position``, wrapping as the store does.

    ``stamped_position`` is the position written in the header (default: ``position``).
    """
    record = encode_record(
        epoch=epoch,
        seq=seq,
        position=position if stamped_position is None else stamped_position,
        durable_seq=durable_seq,
        generation=generation,
        payload=payload,
    )
    put(ring, position, record + bytes(END_MARKER_SIZE), len(ring))
    return record


# --- ring_read ------------------------------------------------------------------------------------


def test_ring_read_wraps_at_the_end() -> None:
    """ring_read returns logical bytes: the end of the ring followed by its start."""
    ring = bytes(range(256)) * 16
    assert ring_read(ring, JS, LAP + 10, 4) == bytes([10, 11, 12, 13])
    assert ring_read(ring, JS, LAP + JS - 2, 4) == bytes([254, 255, 0, 1])
    assert ring_read(ring, JS, JS - 1, 1) == bytes([255])
    assert ring_read(ring, JS, 7, JS) == ring[7:] + ring[:7]
    assert ring_read(ring, JS, 5, 0) == b""


def test_max_payload_leaves_room_for_header_and_end_marker() -> None:
    """The largest record plus its end marker fills the ring exactly."""
    assert record_size(max_payload(JS)) + END_MARKER_SIZE == JS


# --- read_record ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "offset",
    [0, 1000, JS - 72, JS - 48, JS - 40, JS - 8],
    ids=["start", "middle", "ends-at-end", "payload-wraps", "header-wraps", "8-bytes-before-end"],
)
def test_read_record_ok(offset: int) -> None:
    """A record reads back with its header and payload, wherever it sits in the ring."""
    ring = bytearray(JS)
    position = LAP + offset
    write_record(ring, position, epoch=4, seq=9, durable_seq=7, generation=2)
    record, reason, head = read_record(ring, JS, position, epoch=4, seq=9)
    assert reason is None
    assert record is not None
    assert record.payload == PAYLOAD
    assert record.size == 72
    assert head == record.header
    assert (head.epoch, head.seq, head.position) == (4, 9, position)
    assert (head.durable_seq, head.generation, head.length) == (7, 2, len(PAYLOAD))


def test_read_record_largest_record() -> None:
    """A record with the largest payload, straddling the ring's end, reads back."""
    ring = bytearray(JS)
    payload = encode_patches([(0, bytes(range(256)) * 15)])
    payload += bytes(max_payload(JS) - len(payload))
    assert len(payload) == max_payload(JS)
    position = LAP + JS - 100
    write_record(ring, position, payload=payload)
    record, reason, _ = read_record(ring, JS, position, epoch=1, seq=1)
    assert reason is None
    assert record is not None
    assert record.payload == payload


@pytest.mark.parametrize("offset", [1000, JS - 40], ids=["inside", "straddling"])
@pytest.mark.parametrize("bits", [0x01, 0x80, 0xFF])
def test_read_record_any_damaged_byte_is_rejected(offset: int, bits: int) -> None:
    """Changing any byte of header, payload or padding fails the crc (or the length bound)."""
    position = LAP + offset
    clean = bytearray(JS)
    record = write_record(clean, position)
    assert record[-3:] == bytes(3)  # the last bytes are padding
    for i in range(len(record)):
        ring = bytearray(clean)
        flip_byte(ring, position + i, bits, JS)
        length = decode_record_header(get(ring, position, RECORD_HEADER_SIZE, JS)).length
        expected = Reason.BAD_LENGTH if length > max_payload(JS) else Reason.BAD_CHECKSUM
        assert read_record(ring, JS, position, epoch=1, seq=1) == (None, expected, None), i


@pytest.mark.parametrize("background", ["zeros", "older-record"])
def test_read_record_torn_writes(background: str) -> None:
    """A record whose write stopped after any number of bytes is never read as valid."""
    position = LAP + JS - 40
    record = encode_record(
        epoch=2, seq=1, position=position, durable_seq=0, generation=1, payload=PAYLOAD
    )
    clean = bytearray(JS)
    if background == "older-record":  # the same ring offset, one lap and one epoch earlier
        write_record(clean, position - JS, epoch=1, payload=bytes(range(100)))
    for keep in range(len(record)):
        ring = bytearray(clean)
        torn_write(ring, position, record, keep, JS)
        _, reason, _ = read_record(ring, JS, position, epoch=2, seq=1)
        if get(ring, position, len(record), JS) == record:
            expected = None  # only zero padding was missing, and zeros were there already
        elif keep == 0:
            expected = Reason.ZEROED if background == "zeros" else Reason.STALE_EPOCH
        else:
            expected = Reason.BAD_CHECKSUM
        assert reason is expected, keep


def test_read_record_bad_length() -> None:
    """A length past what the ring can hold is BAD_LENGTH, before any crc is computed."""
    for n in (max_payload(JS) + 1, JS, 0xFFFF_FFFF):
        ring = bytearray(JS)
        write_record(ring, LAP)
        set_length(ring, LAP, n, JS)
        assert read_record(ring, JS, LAP, epoch=1, seq=1) == (None, Reason.BAD_LENGTH, None)


def test_read_record_longest_possible_length_is_checked_by_crc() -> None:
    """A wrong length that still fits the ring reads the bytes it claims and fails the crc."""
    ring = bytearray(JS)
    write_record(ring, LAP + JS - 40)
    set_length(ring, LAP + JS - 40, max_payload(JS), JS)
    assert read_record(ring, JS, LAP + JS - 40, epoch=1, seq=1) == (
        None,
        Reason.BAD_CHECKSUM,
        None,
    )


def test_read_record_stale_epoch() -> None:
    """A valid record of another epoch is STALE_EPOCH, and its header is returned."""
    ring = bytearray(JS)
    write_record(ring, LAP, epoch=3, seq=1)
    record, reason, head = read_record(ring, JS, LAP, epoch=4, seq=1)
    assert (record, reason) == (None, Reason.STALE_EPOCH)
    assert head is not None
    assert (head.epoch, head.position, head.seq) == (3, LAP, 1)


@pytest.mark.parametrize("lap", [-1, 1], ids=["earlier-lap", "later-lap"])
def test_read_record_stale_position(lap: int) -> None:
    """A valid record stamped with the same ring offset in another lap is STALE_POSITION."""
    ring = bytearray(JS)
    position = LAP + JS - 40
    write_record(ring, position, stamped_position=position + lap * JS)
    record, reason, head = read_record(ring, JS, position, epoch=1, seq=1)
    assert (record, reason) == (None, Reason.STALE_POSITION)
    assert head is not None
    assert head.position == position + lap * JS


def test_read_record_sequence_gap() -> None:
    """A valid record of this epoch and position with another seq is SEQUENCE_GAP."""
    ring = bytearray(JS)
    write_record(ring, LAP, seq=5)
    for seq in (4, 6):
        record, reason, head = read_record(ring, JS, LAP, epoch=1, seq=seq)
        assert (record, reason) == (None, Reason.SEQUENCE_GAP)
        assert head is not None
        assert head.seq == 5


@pytest.mark.parametrize(("field", "value"), [("kind", 2), ("kind", 0), ("reserved", 1)])
def test_read_record_bad_kind(field: str, value: int) -> None:
    """A checksummed record with an unknown kind or non-zero reserved field is BAD_KIND."""
    ring = bytearray(JS)
    position = LAP + JS - 8  # the header straddles the end: fields and crc are written wrapped
    write_record(ring, position)
    set_record_field(ring, position, field, value, JS)
    assert read_record(ring, JS, position, epoch=1, seq=1)[1] is Reason.BAD_CHECKSUM
    fix_record_crc(ring, position, JS)
    record, reason, head = read_record(ring, JS, position, epoch=1, seq=1)
    assert (record, reason) == (None, Reason.BAD_KIND)
    assert head is not None
    assert getattr(head, field) == value


def test_read_record_zeroed() -> None:
    """An all-zero header is ZEROED even when payload bytes follow it."""
    ring = bytearray(JS)
    write_record(ring, LAP)
    zero(ring, LAP, RECORD_HEADER_SIZE, JS)
    assert read_record(ring, JS, LAP, epoch=1, seq=1) == (None, Reason.ZEROED, None)


def test_read_record_checks_epoch_before_position_kind_and_seq() -> None:
    """A record wrong in every way reports the first check: epoch, then position, kind, seq."""
    ring = bytearray(JS)
    write_record(ring, LAP, epoch=2, seq=7, stamped_position=LAP - JS)
    set_record_field(ring, LAP, "kind", 9, JS)
    fix_record_crc(ring, LAP, JS)
    assert read_record(ring, JS, LAP, epoch=1, seq=1)[1] is Reason.STALE_EPOCH
    assert read_record(ring, JS, LAP, epoch=2, seq=1)[1] is Reason.STALE_POSITION
    set_record_field(ring, LAP, "position", LAP, JS)
    fix_record_crc(ring, LAP, JS)
    assert read_record(ring, JS, LAP, epoch=2, seq=1)[1] is Reason.BAD_KIND


def test_read_record_on_mmap() -> None:
    """read_record works the same over an mmap as over bytes."""
    ring = bytearray(JS)
    write_record(ring, LAP + JS - 40, seq=3)
    with mmap.mmap(-1, JS) as mapped:
        mapped[:] = ring
        assert read_record(mapped, JS, LAP + JS - 40, epoch=1, seq=3) == read_record(
            bytes(ring), JS, LAP + JS - 40, epoch=1, seq=3
        )


# --- patches --------------------------------------------------------------------------------------


STATE_SIZE = 64


@st.composite
def patch_lists(draw: st.DrawFn, state_size: int = STATE_SIZE) -> list[tuple[int, bytes]]:
    """Lists of (offset, bytes) that fit a state of ``state_size`` bytes."""
    out: list[tuple[int, bytes]] = []
    for _ in range(draw(st.integers(0, 6))):
        offset = draw(st.integers(0, state_size))
        out.append((offset, draw(st.binary(max_size=state_size - offset))))
    return out


@given(patch_lists())
def test_patches_round_trip(patches: list[tuple[int, bytes]]) -> None:
    """check_patches(encode_patches(p)) == p for patches inside the state."""
    payload = encode_patches(patches)
    assert check_patches(payload, STATE_SIZE) == patches
    assert list(iter_patches(payload, STATE_SIZE)) == patches
    assert len(payload) == sum(8 + len(data) for _, data in patches)


@given(patch_lists().filter(bool), st.data())
def test_patches_cut_short_raise(patches: list[tuple[int, bytes]], data: st.DataObject) -> None:
    """A payload cut anywhere but between two patches raises ValueError."""
    payload = encode_patches(patches)
    boundaries = {0}
    at = 0
    for _, chunk in patches:
        at += 8 + len(chunk)
        boundaries.add(at)
    cut = data.draw(st.integers(0, len(payload) - 1))
    assume(cut not in boundaries)
    with pytest.raises(ValueError, match="patch"):
        check_patches(payload[:cut], STATE_SIZE)


@given(patch_lists(), st.integers(0, 200), st.integers(0, 100), patch_lists())
def test_patches_outside_the_state_raise(
    before: list[tuple[int, bytes]], offset: int, length: int, after: list[tuple[int, bytes]]
) -> None:
    """A patch reaching past the state raises ValueError, whatever patches surround it."""
    assume(offset + length > STATE_SIZE)
    payload = encode_patches([*before, (offset, bytes(length)), *after])
    with pytest.raises(ValueError, match="outside"):
        check_patches(payload, STATE_SIZE)


def test_iter_patches_is_lazy_and_check_patches_is_not() -> None:
    """iter_patches yields good patches before a bad one; check_patches yields none."""
    payload = encode_patches([(0, b"ok"), (STATE_SIZE - 1, b"xx")])
    patches = iter_patches(payload, STATE_SIZE)
    assert next(patches) == (0, b"ok")
    with pytest.raises(ValueError, match="outside the 64-byte state"):
        next(patches)
    with pytest.raises(ValueError, match="outside"):
        check_patches(payload, STATE_SIZE)


def test_patch_edges() -> None:
    """An empty payload has no patches; a patch may end exactly at the state's end."""
    assert check_patches(b"", STATE_SIZE) == []
    assert check_patches(encode_patches([(STATE_SIZE, b"")]), STATE_SIZE) == [(STATE_SIZE, b"")]
    assert check_patches(encode_patches([(60, b"1234")]), STATE_SIZE) == [(60, b"1234")]
    with pytest.raises(ValueError, match="cut short"):
        check_patches(bytes(7), STATE_SIZE)
    with pytest.raises(ValueError, match="outside"):
        check_patches(encode_patches([(STATE_SIZE + 1, b"")]), STATE_SIZE)


# --- max_epoch_in_ring ----------------------------------------------------------------------------


def test_max_epoch_in_ring_empty() -> None:
    """A ring without records has max epoch 0."""
    assert max_epoch_in_ring(bytes(JS), JS) == 0


def test_max_epoch_in_ring_finds_the_highest_checksummed_epoch() -> None:
    """The highest epoch of any valid record, wherever it is and whatever lap it is from."""
    ring = bytearray(JS)
    write_record(ring, LAP + 80, epoch=3)
    write_record(ring, LAP + 400, epoch=5, stamped_position=LAP + 400 - 2 * JS)
    write_record(ring, LAP + JS - 40, epoch=4)  # header straddles the end
    assert max_epoch_in_ring(ring, JS) == 5
    write_record(ring, LAP + 800, epoch=9)
    flip_byte(ring, LAP + 800 + 60, 0x01, JS)  # damaged: not counted
    write_record(ring, LAP + 1000, epoch=11)
    set_length(ring, LAP + 1000, JS, JS)  # impossible length: not counted
    write_record(ring, LAP + 1200, epoch=12, stamped_position=LAP + 1208)  # wrong place
    write_record(ring, LAP + 1400, epoch=13)
    set_record_field(ring, LAP + 1400, "kind", 2, JS)
    fix_record_crc(ring, LAP + 1400, JS)  # not a commit record
    assert max_epoch_in_ring(ring, JS) == 5
    write_record(ring, LAP + JS - 16, epoch=6)
    assert max_epoch_in_ring(ring, JS) == 6
    with mmap.mmap(-1, JS) as mapped:
        mapped[:] = ring
        assert max_epoch_in_ring(mapped, JS) == 6


def test_max_epoch_in_ring_counts_a_record_at_the_last_8_bytes() -> None:
    """A record starting 8 bytes before the ring's end (header wrapping) is counted."""
    ring = bytearray(JS)
    write_record(ring, LAP + 400, epoch=3)
    write_record(ring, LAP + JS - 8, epoch=7)
    assert read_record(ring, JS, LAP + JS - 8, epoch=7, seq=1)[1] is None
    assert max_epoch_in_ring(ring, JS) == 7


# --- scan_later_records ---------------------------------------------------------------------------


def scan(
    ring: bytes | bytearray, start: int, end: int, *, epoch: int = 1, after_seq: int = 0
) -> list[RecordHeader]:
    """scan_later_records over a JS-byte ring."""
    return scan_later_records(ring, JS, start, end, epoch=epoch, after_seq=after_seq)


def test_scan_finds_later_records_in_order() -> None:
    """Valid later records of the epoch are returned by position, with their headers."""
    ring = bytearray(JS)
    start = LAP + 200
    positions = [start + 72, start + 400, start + 1000]
    for i, pos in enumerate(reversed(positions)):
        write_record(ring, pos, seq=10 - i, durable_seq=3)
    found = scan(ring, start, start + JS - 48, after_seq=1)
    assert [h.position for h in found] == positions
    assert [h.seq for h in found] == [8, 9, 10]
    assert all(h.durable_seq == 3 and h.epoch == 1 for h in found)


def test_scan_ignores_other_epochs_stale_laps_old_seqs_and_damage() -> None:
    """Other epochs, stale lap records, seq <= after_seq and bad crcs are not returned."""
    ring = bytearray(JS)
    start = LAP
    write_record(ring, start + 80, epoch=2, seq=5)
    write_record(ring, start + 240, seq=6, stamped_position=start + 240 - JS)
    write_record(ring, start + 400, seq=4)
    write_record(ring, start + 560, seq=5)
    write_record(ring, start + 720, seq=9)
    flip_byte(ring, start + 720 + 60, 0x01, JS)
    write_record(ring, start + 880, seq=7)
    found = scan(ring, start, start + 2000, after_seq=4)
    assert [(h.position, h.seq) for h in found] == [(start + 560, 5), (start + 880, 7)]
    assert [h.seq for h in scan(ring, start, start + 2000, epoch=2, after_seq=0)] == [5]


@pytest.mark.parametrize(
    "offset",
    [JS - 8, JS - 12, JS - 16, JS - 40, JS - 48, JS],
    ids=[
        "anchor-after-end",
        "anchor-straddles-end",
        "anchor-ends-at-end",
        "header-straddles-end",
        "payload-straddles-end",
        "next-lap-start",
    ],
)
@pytest.mark.parametrize("window", ["wide", "tight"])
def test_scan_across_the_ring_end(offset: int, window: str) -> None:
    """A record near the ring's end is found wherever its anchor and header fall."""
    position = LAP + offset
    ring = bytearray(JS)
    write_record(ring, position, seq=2)
    if window == "wide":
        start, end = LAP + JS - 300, LAP + JS + 200
    else:
        start, end = position - 1, position + 72
    assert [(h.position, h.seq) for h in scan(ring, start, end)] == [(position, 2)]


def test_scan_window_is_exclusive() -> None:
    """Records at the window's start or past its end are not returned."""
    ring = bytearray(JS)
    write_record(ring, LAP + 8, seq=2)
    write_record(ring, LAP + 80, seq=3)
    write_record(ring, LAP + 152, seq=4)
    assert [h.seq for h in scan(ring, LAP + 8, LAP + 152)] == [3]
    assert [h.seq for h in scan(ring, LAP + 7, LAP + 153)] == [2, 3]
    assert [h.seq for h in scan(ring, LAP + 7, LAP + 152 + 72)] == [2, 3, 4]
    assert scan(ring, LAP + 8, LAP + 8 + RECORD_HEADER_SIZE) == []


def test_scan_on_mmap_matches_bytes() -> None:
    """scan_later_records finds the same records in an mmap as in bytes."""
    ring = bytearray(JS)
    for i, pos in enumerate((LAP + 500, LAP + JS - 40, LAP + JS + 32)):
        write_record(ring, pos, seq=i + 2)
    with mmap.mmap(-1, JS) as mapped:
        mapped[:] = ring
        from_map = scan_later_records(
            mapped, JS, LAP + 100, LAP + JS + 100 - 48, epoch=1, after_seq=0
        )
    assert from_map == scan(bytes(ring), LAP + 100, LAP + JS + 100 - 48)
    assert [h.seq for h in from_map] == [2, 3, 4]


@st.composite
def ring_layouts(draw: st.DrawFn) -> tuple[bytearray, list[RecordHeader], int]:
    """A ring of records laid out one after another from near ``start``; and ``start``.

    Records carry epoch 1 or 2 and are stamped with the position they were written at, or one
    lap before or after it. Records never overlap, and the last end marker stays clear of the
    first record.
    """
    start = draw(st.integers(LAP, LAP + JS))
    cursor = start + draw(st.integers(-80, 80))
    first = cursor
    ring = bytearray(JS)
    records: list[RecordHeader] = []
    for _ in range(draw(st.integers(0, 12))):
        cursor += draw(st.one_of(st.just(0), st.integers(0, 200)))
        payload = draw(st.binary(max_size=300))
        if cursor + record_size(len(payload)) + END_MARKER_SIZE > first + JS:
            break
        record = write_record(
            ring,
            cursor,
            epoch=draw(st.sampled_from([1, 1, 2])),
            seq=draw(st.integers(0, 20)),
            payload=payload,
            stamped_position=cursor + draw(st.sampled_from([0, 0, -JS, JS])),
        )
        records.append(decode_record_header(record))
        cursor += len(record)
    return ring, records, start


@given(ring_layouts(), st.integers(0, JS), st.integers(0, 20))
def test_scan_returns_exactly_the_genuine_records_in_the_window(
    layout: tuple[bytearray, list[RecordHeader], int], span: int, after_seq: int
) -> None:
    """Every genuine record wholly in the window is found; nothing outside (start, end) is.

    Genuine: epoch 1, seq > after_seq, and stamped with the logical position that its ring
    offset has in the lap starting at ``start`` (so a record written one lap earlier or later
    than the window is stale).
    """
    ring, records, start = layout
    end = start + span
    found = scan(ring, start, end, after_seq=after_seq)
    genuine = [
        h
        for h in records
        if h.epoch == 1 and h.seq > after_seq and start <= h.position < start + JS
    ]
    inside = [
        h for h in genuine if start < h.position and h.position + record_size(h.length) <= end
    ]
    allowed = [h for h in genuine if start < h.position < end]
    assert all(h in allowed for h in found)
    assert all(h in found for h in inside)
    assert [h.position for h in found] == sorted(h.position for h in found)


@given(
    offset=st.integers(0, JS // 8 - 1),
    patches=st.lists(st.tuples(st.integers(0, 120), st.binary(max_size=16)), max_size=4),
    damage=st.one_of(st.none(), st.integers(0, 200)),
    seq=st.sampled_from([1, 2]),
    epoch=st.sampled_from([1, 2]),
)
# A damaged payload byte, crc field, generation and padding, each in a record that the header
# checks alone would accept: only the crc tells the fast path to defer.
@example(offset=0, patches=[(0, b"abc"), (10, b"de")], damage=57, seq=1, epoch=1)
@example(offset=5, patches=[(3, b"x" * 16)], damage=1, seq=1, epoch=1)
@example(offset=9, patches=[(0, b"")], damage=40, seq=1, epoch=1)
@example(offset=JS // 8 - 9, patches=[(7, b"y")], damage=60, seq=1, epoch=1)
def test_fast_path_accepts_exactly_what_the_slow_path_accepts(
    offset: int, patches: list[tuple[int, bytes]], damage: int | None, seq: int, epoch: int
) -> None:
    """next_record_fast returns the careful path's record and patches, or defers (None)."""
    ring = bytearray(JS)
    position = LAP + offset * 8
    record = write_record(ring, position, payload=encode_patches(patches))
    if damage is not None and damage < len(record):
        flip_byte(ring, position + damage, 0x40, JS)
    fast = next_record_fast(
        ring, JS, position, epoch=epoch, seq=seq, limit=position + JS, state_size=128
    )
    slow, _, _ = read_record(ring, JS, position, epoch=epoch, seq=seq)
    careful = next_record(
        ring, JS, position, epoch=epoch, seq=seq - 1, end=position + JS, state_size=128
    )
    if fast is None:
        straddles = position % JS + len(record) > JS
        bad_patches = slow is not None and any(o + len(d) > 128 for o, d in patches)
        assert slow is None or straddles or bad_patches
        assert isinstance(careful, ChainStop) or straddles
        return
    assert slow is not None
    assert (fast.size, fast.generation) == (slow.size, slow.header.generation)
    assert fast.patches == check_patches(slow.payload, 128)
    assert fast == careful


@pytest.mark.parametrize("end", ["inside", "at-the-end"])
def test_fast_path_defers_on_every_damaged_byte(end: str) -> None:
    """Any one damaged byte of a record makes the slow path refuse it and the fast path defer."""
    payload = encode_patches([(0, b"abc"), (10, b"de")])
    size = record_size(len(payload))
    position = LAP + (JS - size if end == "at-the-end" else 8 * 40)
    clean = bytearray(JS)
    write_record(clean, position, payload=payload)
    fast = next_record_fast(
        clean, JS, position, epoch=1, seq=1, limit=position + size, state_size=128
    )
    assert fast is not None
    assert (fast.size, fast.generation, fast.patches) == (size, 1, check_patches(payload, 128))
    for at in range(size):
        for mask in (0x01, 0x80):
            ring = bytearray(clean)
            flip_byte(ring, position + at, mask, JS)
            slow, reason, _ = read_record(ring, JS, position, epoch=1, seq=1)
            assert slow is None, f"byte {at} ^ {mask:#x}: the slow path accepted it"
            fast = next_record_fast(
                ring, JS, position, epoch=1, seq=1, limit=position + JS, state_size=128
            )
            assert fast is None, f"byte {at} ^ {mask:#x} ({reason}): the fast path accepted it"


class OverwrittenAfterFind(bytearray):
    """A ring that a live writer overwrites right after each search finds something in it."""

    def find(self, sub: Any, *args: Any) -> int:
        """Find ``sub``, then scribble over what was found, as a concurrent append would."""
        found = super().find(sub, *args)
        if found >= 0:
            self[found : found + len(sub)] = b":" * len(sub)
        return found


def test_scan_does_not_read_a_found_anchor_again() -> None:
    """A later-record scan beside a live writer never trips over bytes changed since the find.

    The anchor found is the one searched for; reading it back from a ring a writer is writing
    could give other bytes (a read-only open beside a live writer raised KeyError).
    """
    js_ = 4096
    ring = OverwrittenAfterFind(js_)
    write_record(ring, 512, epoch=7, seq=3)
    found = scan_records(ring, js_, 0, js_, {7: 0, 8: 0})
    assert found == {7: [], 8: []}  # the overwritten record no longer checks out
