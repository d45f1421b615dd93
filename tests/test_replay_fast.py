"""Recovery's fast paths against their definitions, over random and damaged rings.

The batch replay (ChainReader.replay) against the careful path; the evidence scan
(scan_records) against a look at every position of its window.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from journalstate import _journal as journal
from journalstate._format import (
    END_MARKER_SIZE,
    KIND_COMMIT,
    RECORD_ANCHOR_OFFSET,
    RECORD_HEADER_SIZE,
    RecordHeader,
    decode_record_header,
    record_size,
)
from journalstate._journal import header_fault, max_payload, ring_read, scan_records
from journalstate._reader import (
    REPLAY_CHUNK,
    ChainReader,
    ChainRecord,
    ChainStop,
    apply_patches,
    next_record,
)
from journalstate._reason import Reason
from journalstate._writer import encode_patches
from tests.damage import fix_record_crc, flip_byte, set_record_field, torn_write
from tests.test_journal import write_record

JS = 4096  # journal size of the rings built here
LAP = 5 * JS  # logical positions a few laps in, so that position != ring offset
STATE = 64
EPOCH = 3
GENERATION = 7
BASE_IMAGE = bytes(range(STATE))

# At least 300 rings in every run (each costs about a millisecond); the soak profile's count
# when it is larger (JOURNALSTATE_PROFILE=soak: 10,000).
EXAMPLES = max(100, settings().max_examples)  # about 0.3 s each: more under the soak profile

# A few spans, so that records often patch exactly the state bytes the one before patched.
SPANS = [(0, 8), (8, 16), (0, 24), (40, 24), (60, 4), (63, 1), (64, 0), (60, 8), (65, 1)]


@st.composite
def payloads(draw: st.DrawFn) -> bytes:
    """A record payload: one patch, several, none, or raw bytes (possibly not patches)."""
    kind = draw(st.sampled_from(["one", "one", "one", "many", "empty", "raw"]))
    if kind == "raw":
        return draw(st.binary(min_size=1, max_size=24))
    if kind == "empty":
        return b""
    count = 1 if kind == "one" else draw(st.integers(2, 3))
    patches = []
    for _ in range(count):
        offset, n = draw(st.sampled_from(SPANS))
        patches.append((offset, bytes([draw(st.integers(0, 255))]) * n))
    return encode_patches(patches)


def build_ring(
    start: int, payloads: list[bytes], generations: list[bool], old_lap: list[bytes]
) -> tuple[bytearray, list[int]]:
    """A ring holding an older lap of records (``old_lap``), then the chain from ``start``.

    The chain's records are seq 1, 2, ... of EPOCH; a True in ``generations`` gives the record
    a newer generation. Returns the ring and the chain's record positions (and the end).
    """
    ring = bytearray(JS)
    position = start - JS + 8
    for i, payload in enumerate(old_lap):  # the lap before: stale records the scan may meet
        if position + record_size(len(payload)) + END_MARKER_SIZE > start:
            break
        record = write_record(
            ring, position, epoch=EPOCH, seq=100 + i, generation=GENERATION, payload=payload
        )
        position += len(record)
    positions = []
    position = start
    for i, payload in enumerate(payloads):
        if position + record_size(len(payload)) + END_MARKER_SIZE > start + JS:
            break
        positions.append(position)
        record = write_record(
            ring,
            position,
            epoch=EPOCH,
            seq=i + 1,
            generation=GENERATION + generations[i % len(generations)],
            payload=payload,
        )
        position += len(record)
    positions.append(position)
    return ring, positions


def careful(
    ring: bytearray, start: int, end: int, copy_first: bool
) -> tuple[bytearray, ChainStop, bool]:
    """The image, stop and newer-generation flag of the chain read by the careful path alone."""
    image = bytearray(BASE_IMAGE)
    position, seq, newer = start, 0, False
    while position + RECORD_HEADER_SIZE <= end:
        found = next_record(
            ring,
            JS,
            position,
            epoch=EPOCH,
            seq=seq,
            end=end,
            state_size=STATE,
            copy_first=copy_first,
        )
        if isinstance(found, ChainStop):
            return image, found, newer
        assert isinstance(found, ChainRecord)
        apply_patches(image, found.patches)
        newer = newer or found.generation > GENERATION
        position, seq = position + found.size, seq + 1
    return image, ChainStop(position, seq, None), newer


def batch(
    ring: bytearray, start: int, end: int, copy_first: bool, chunk: int = REPLAY_CHUNK
) -> tuple[bytearray, ChainStop, bool]:
    """The same, read by ChainReader.replay."""
    image = bytearray(BASE_IMAGE)
    reader = ChainReader(
        ring,
        JS,
        epoch=EPOCH,
        position=start,
        seq=0,
        end=end,
        state_size=STATE,
        copy_first=copy_first,
    )
    newer = reader.replay(image, GENERATION, chunk=chunk)
    assert reader.stop is not None
    return image, reader.stop, newer


FIELDS = ["seq", "epoch", "position", "kind", "reserved", "length", "generation"]


@settings(max_examples=EXAMPLES)
@given(
    offset=st.integers(0, JS // 8 - 1),
    records=st.lists(payloads(), max_size=40),
    generations=st.lists(st.booleans(), min_size=1, max_size=4),
    old_lap=st.lists(payloads(), max_size=40),
    flips=st.lists(st.tuples(st.integers(0, 3000), st.integers(1, 255)), max_size=3),
    forged=st.lists(st.tuples(st.integers(0, 39), st.sampled_from(FIELDS), st.integers(0, 9))),
    torn=st.one_of(st.none(), st.tuples(st.integers(0, 39), st.integers(0, 200))),
    shorter=st.integers(0, 400),
    chunk=st.sampled_from([1, 56, 64, 100, 200, 512, 1024, JS, REPLAY_CHUNK]),
    copy_first=st.booleans(),
)
def test_batch_replay_equals_the_careful_path(
    offset: int,
    records: list[bytes],
    generations: list[bool],
    old_lap: list[bytes],
    flips: list[tuple[int, int]],
    forged: list[tuple[int, str, int]],
    torn: tuple[int, int] | None,
    shorter: int,
    chunk: int,
    copy_first: bool,
) -> None:
    """Over random rings, damaged or not, replay gives the careful path's image, stop, flag."""
    start = LAP + offset * 8
    ring, positions = build_ring(start, records, generations, old_lap)
    count = len(positions) - 1
    for at, bits in flips:
        flip_byte(ring, start + at, bits, JS)
    for index, name, value in forged:  # a record that passes its crc but is not the next
        if count:
            victim = positions[index % count]
            set_record_field(ring, victim, name, value, JS)
            fix_record_crc(ring, victim, JS)
    if torn is not None and count:
        at = positions[torn[0] % count]  # the record and what follows, rewritten in part
        size = min(JS, positions[torn[0] % count + 1] - at)
        torn_write(ring, at, bytes(size), min(torn[1], size), JS)
    end = start + JS - END_MARKER_SIZE - shorter
    expected = careful(ring, start, end, copy_first)
    assert batch(ring, start, end, copy_first, chunk) == expected
    # The iteration (its own fast path) agrees too: the three paths accept the same records.
    reader = ChainReader(ring, JS, epoch=EPOCH, position=start, seq=0, end=end, state_size=STATE)
    image = bytearray(BASE_IMAGE)
    for record in reader:
        apply_patches(image, record.patches)
    assert (image, reader.stop) == expected[:2]


def chain_of(payloads: list[bytes], start: int = LAP + 16) -> tuple[bytearray, int]:
    """A ring with a clean chain of ``payloads`` from ``start``; returns it and the window end."""
    ring, _ = build_ring(start, payloads, [False], [])
    return ring, start + JS - END_MARKER_SIZE


def test_a_row_of_the_same_patch_keeps_the_last_and_the_order_of_overlaps() -> None:
    """Records patching the same bytes, then overlapping ones, apply as written, in order."""
    rows = [
        [(0, b"\x01" * 8)],
        [(0, b"\x02" * 8)],
        [(4, b"\x03" * 8)],
        [(0, b"\x04" * 8)],
        [(0, b"\x05" * 8)],
        [(2, b"\x06" * 2), (20, b"\x07")],
        [(0, b"\x08" * 2)],
    ]
    ring, end = chain_of([encode_patches(p) for p in rows])
    expected = bytearray(BASE_IMAGE)
    for patches in rows:
        apply_patches(expected, patches)
    for copy_first in (False, True):
        image, stop, newer = batch(ring, LAP + 16, end, copy_first)
        assert image == expected
        assert (stop.seq, stop.reason, newer) == (len(rows), Reason.ZEROED, False)


def test_a_bad_patch_after_good_ones_leaves_the_image_before_that_record() -> None:
    """A record whose second patch falls outside the state changes nothing of the image."""
    good = encode_patches([(0, b"\x09" * 8)])
    bad = encode_patches([(8, b"\x0a" * 8), (STATE, b"\x0b")])
    ring, end = chain_of([good, good, bad])
    image, stop, _ = batch(ring, LAP + 16, end, copy_first=False)
    assert image == b"\x09" * 8 + BASE_IMAGE[8:]
    assert (stop.seq, stop.reason) == (2, Reason.BAD_PATCH)
    assert "outside the 64-byte state" in stop.detail


@pytest.mark.parametrize("chunk", [1, 100, 300, REPLAY_CHUNK])
def test_records_across_copies_and_the_ring_end_are_replayed(chunk: int) -> None:
    """A chain that crosses the ring's end and several copies replays whole, any chunk size."""
    payloads = [encode_patches([(i % 8 * 8, bytes([i]) * 8)]) for i in range(60)]
    start = LAP + JS - 200  # the third record straddles the ring's end
    ring, _ = build_ring(start, payloads, [False, False, True], [])
    end = start + JS - END_MARKER_SIZE
    image, stop, newer = batch(ring, start, end, copy_first=True, chunk=chunk)
    assert (image, stop, newer) == careful(ring, start, end, copy_first=True)
    assert stop.seq == 60
    assert newer


@pytest.mark.parametrize("name", FIELDS)
@pytest.mark.parametrize("copy_first", [False, True])
def test_a_forged_field_with_a_good_crc_stops_both_paths_alike(name: str, copy_first: bool) -> None:
    """A checksummed record whose header field is not the chain's next stops replay there."""
    start = LAP + 16
    ring, positions = build_ring(start, [encode_patches([(0, b"\x0c" * 8)])] * 4, [False], [])
    set_record_field(ring, positions[2], name, GENERATION + 2 if name == "generation" else 5, JS)
    fix_record_crc(ring, positions[2], JS)
    end = start + JS - END_MARKER_SIZE
    image, stop, newer = batch(ring, start, end, copy_first)
    assert (image, stop, newer) == careful(ring, start, end, copy_first)
    # A newer generation is no stop: the record is replayed, and the flag says so.
    assert (stop.seq, newer) == ((4, True) if name == "generation" else (2, False))


# --- the evidence scan ---------------------------------------------------------------------------


def scan_by_brute_force(
    ring: bytearray, start: int, end: int, wanted: dict[int, int]
) -> dict[int, list[RecordHeader]]:
    """scan_records by its definition: every position of the window, looked at in turn.

    A record counts when it starts after ``start`` and its anchor (bytes 8 to 16) lies before
    ``end``: the window holds what the scan searches.
    """
    max_length = max_payload(JS, STATE)
    found: dict[int, list[RecordHeader]] = {epoch: [] for epoch in wanted}
    for position in range(start + 1, end - RECORD_ANCHOR_OFFSET - 8 + 1):
        head = decode_record_header(ring_read(ring, JS, position, RECORD_HEADER_SIZE))
        if (
            head.epoch in wanted
            and (head.kind, head.reserved, head.position) == (KIND_COMMIT, 0, position)
            and header_fault(ring, JS, position, head, max_length) is None
            and head.seq > wanted[head.epoch]
        ):
            found[head.epoch].append(head)
    return found


@given(
    offset=st.integers(0, JS - 1),
    records=st.lists(payloads(), max_size=30),
    old_lap=st.lists(payloads(), max_size=30),
    flips=st.lists(st.tuples(st.integers(0, JS - 1), st.integers(1, 255)), max_size=3),
    strays=st.lists(st.tuples(st.integers(0, JS - 1), st.integers(3, 4), st.integers(0, 9))),
    after=st.integers(0, 12),
    span=st.integers(0, JS),
    chunk=st.sampled_from([8, 24, 64, 1000, journal.SCAN_CHUNK]),
)
def test_the_evidence_scan_finds_what_looking_everywhere_finds(
    offset: int,
    records: list[bytes],
    old_lap: list[bytes],
    flips: list[tuple[int, int]],
    strays: list[tuple[int, int, int]],
    after: int,
    span: int,
    chunk: int,
) -> None:
    """scan_records, over rings of old laps, strays anywhere and damage, finds every record."""
    start = LAP + offset
    ring, _ = build_ring(start - start % 8, records, [False], old_lap)
    for at, epoch, seq in strays:  # records of this epoch or the next at any position
        write_record(ring, LAP + at, epoch=epoch, seq=seq, payload=b"")
    for at, bits in flips:
        flip_byte(ring, at, bits)
    wanted = {EPOCH: after, EPOCH + 1: 0}
    end = start + span
    expected = scan_by_brute_force(ring, start, end, wanted)
    with scan_chunk(chunk):  # anchors across the end of a searched chunk are found too
        assert scan_records(ring, JS, start, end, wanted, state_size=STATE) == expected


@contextlib.contextmanager
def scan_chunk(size: int) -> Iterator[None]:
    """Make the scans search ``size`` bytes at a time meanwhile."""
    saved = journal.SCAN_CHUNK
    journal.SCAN_CHUNK = size
    try:
        yield
    finally:
        journal.SCAN_CHUNK = saved


def test_an_anchor_overlapping_another_is_found() -> None:
    """In epoch 1 the anchor can overlap itself: a match 4 bytes after a false one counts."""
    ring = bytearray(JS)
    # Length 1: the record's bytes 4 to 16 read 01 00 00 00 01 00 00 00 01 00 00 00, so the
    # anchor of epoch 1 matches at byte 4 (no record there) and again at byte 8.
    write_record(ring, LAP + 64, epoch=1, seq=2, payload=b"x")
    for chunk in (8, journal.SCAN_CHUNK):
        with scan_chunk(chunk):
            found = scan_records(ring, JS, LAP, LAP + 1000, {1: 0}, state_size=STATE)
        assert [(h.position, h.seq) for h in found[1]] == [(LAP + 64, 2)]
