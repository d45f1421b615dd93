"""The chain reader: the records it yields, where it stops and why, and its two paths agreeing."""

from __future__ import annotations

import itertools

from hypothesis import given
from hypothesis import strategies as st

from journalstate._format import END_MARKER_SIZE
from journalstate._reader import ChainReader, ChainRecord, ChainStop, next_record
from journalstate._reason import Reason
from journalstate._writer import encode_patches
from tests.damage import fix_record_crc, flip_byte, set_record_field, torn_write
from tests.test_journal import write_record

JS = 4096  # journal size of the rings built here
LAP = 3 * JS  # logical positions a few laps in, so that position != ring offset
STATE = 128


def chain(
    ring: bytearray, start: int, count: int, *, epoch: int = 1, first_seq: int = 1
) -> list[int]:
    """Write ``count`` records of ``epoch`` from ``start``; return their positions."""
    positions = []
    position = start
    for i in range(count):
        payload = encode_patches([(i, bytes([i + 1]) * (i + 1))])
        positions.append(position)
        position += len(
            write_record(ring, position, epoch=epoch, seq=first_seq + i, payload=payload)
        )
    positions.append(position)
    return positions


def read(
    ring: bytearray, start: int, *, end: int | None = None, seq: int = 0, epoch: int = 1
) -> tuple[list[ChainRecord], ChainStop]:
    """All records the reader yields from ``start`` (last seq ``seq``) and its stop."""
    reader = ChainReader(
        ring,
        JS,
        epoch=epoch,
        position=start,
        seq=seq,
        end=start + JS - END_MARKER_SIZE if end is None else end,
        state_size=STATE,
    )
    records = list(reader)
    assert reader.stop is not None
    return records, reader.stop


def test_reads_a_chain_to_its_clean_end() -> None:
    """Every record is yielded with its fields and patches; the end marker is a ZEROED stop."""
    ring = bytearray(JS)
    positions = chain(ring, LAP + 8, 3)
    records, stop = read(ring, LAP + 8)
    assert [r.seq for r in records] == [1, 2, 3]
    assert [r.position for r in records] == positions[:3]
    assert [r.size for r in records] == [b - a for a, b in itertools.pairwise(positions)]
    assert records[2].patches == [(2, b"\x03\x03\x03")]
    assert (stop.position, stop.seq, stop.reason, stop.header) == (
        positions[3],
        3,
        Reason.ZEROED,
        None,
    )


def test_chain_across_the_ring_end() -> None:
    """Records that straddle the ring's end are read like any other."""
    ring = bytearray(JS)
    start = LAP + JS - 100
    positions = chain(ring, start, 4)
    records, stop = read(ring, start)
    assert [r.position for r in records] == positions[:4]
    assert stop.reason is Reason.ZEROED


def test_torn_last_record_stops_with_bad_checksum() -> None:
    """A record written only in part stops the chain at its start with BAD_CHECKSUM."""
    ring = bytearray(JS)
    positions = chain(ring, LAP, 2)
    record = write_record(ring, positions[2], seq=3)
    torn_write(ring, positions[2], bytes(len(record)), 20, JS)
    records, stop = read(ring, LAP)
    assert len(records) == 2
    assert (stop.position, stop.seq, stop.reason) == (positions[2], 2, Reason.BAD_CHECKSUM)


def test_window_end_stops_without_a_reason() -> None:
    """When no record header fits before the window's end, the stop has no reason."""
    ring = bytearray(JS)
    positions = chain(ring, LAP, 3)
    records, stop = read(ring, LAP, end=positions[2] + 47)
    assert len(records) == 2
    assert (stop.position, stop.reason) == (positions[2], None)


def test_record_past_the_window_is_bad_length_with_its_header() -> None:
    """A whole record that ends past the window stops the chain as BAD_LENGTH."""
    ring = bytearray(JS)
    positions = chain(ring, LAP, 3)
    records, stop = read(ring, LAP, end=positions[3] - 1)
    assert len(records) == 2
    assert stop.reason is Reason.BAD_LENGTH
    assert stop.header is not None
    assert stop.header.seq == 3
    assert stop.size == positions[3] - positions[2]


def test_other_epoch_and_sequence_gap_name_the_record_found() -> None:
    """A checksummed record of another epoch or seq stops the chain with its header."""
    ring = bytearray(JS)
    positions = chain(ring, LAP, 2)
    write_record(ring, positions[2], epoch=7, seq=3)
    _, stop = read(ring, LAP)
    assert stop.reason is Reason.STALE_EPOCH
    assert stop.header is not None
    assert stop.header.epoch == 7
    write_record(ring, positions[2], seq=5)
    _, stop = read(ring, LAP)
    assert (stop.reason, stop.seq) == (Reason.SEQUENCE_GAP, 2)


def test_bad_patch_stops_with_the_record_size_and_the_parser_message() -> None:
    """A checksummed record with a patch outside the state is a BAD_PATCH stop."""
    ring = bytearray(JS)
    positions = chain(ring, LAP, 1)
    record = write_record(ring, positions[1], seq=2, payload=encode_patches([(STATE, b"x")]))
    records, stop = read(ring, LAP)
    assert len(records) == 1
    assert (stop.reason, stop.size) == (Reason.BAD_PATCH, len(record))
    assert "outside the 128-byte state" in stop.detail


def careful_walk(ring: bytearray, start: int, end: int) -> tuple[list[ChainRecord], ChainStop]:
    """The chain read with the careful path only."""
    records: list[ChainRecord] = []
    position, seq = start, 0
    while position + 48 <= end:
        found = next_record(ring, JS, position, epoch=1, seq=seq, end=end, state_size=STATE)
        if isinstance(found, ChainStop):
            return records, found
        records.append(found)
        position, seq = position + found.size, seq + 1
    return records, ChainStop(position, seq, None)


@given(
    offset=st.integers(0, JS // 8 - 1),
    count=st.integers(0, 12),
    damage=st.lists(st.tuples(st.integers(0, 1500), st.integers(1, 255)), max_size=3),
    fields=st.lists(st.sampled_from(["seq", "epoch", "position", "kind"]), max_size=2),
    shorter=st.integers(0, 300),
)
def test_reader_equals_the_careful_path(
    offset: int, count: int, damage: list[tuple[int, int]], fields: list[str], shorter: int
) -> None:
    """Over damaged chains the reader (fast path first) yields and stops as the careful path."""
    ring = bytearray(JS)
    start = LAP + offset * 8
    positions = chain(ring, start, count)
    for at, bits in damage:
        flip_byte(ring, start + at, bits, JS)
    for i, name in enumerate(fields):
        if count:
            victim = positions[i % count]
            set_record_field(ring, victim, name, 9, JS)
            fix_record_crc(ring, victim, JS)
    end = start + JS - END_MARKER_SIZE - shorter
    assert read(ring, start, end=end) == careful_walk(ring, start, end)
