"""The journal ring: reading records and patches back, pure functions over mapped bytes.

The writer's side is two lines in the store (encode a record, write it at the tail); everything
that decides whether bytes in the ring form a record of the current chain lives here, so the
same code serves recovery, the CLI and the tests. Positions are *logical*: they grow forever,
and a position's place in the ring is ``position % journal_size``.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator

import attrs
import crc32c

from journalstate._format import (
    KIND_COMMIT,
    PATCH_HEAD_FMT,
    PATCH_HEAD_SIZE,
    RECORD_ALIGN,
    RECORD_ANCHOR_OFFSET,
    RECORD_HEADER_FMT,
    RECORD_HEADER_SIZE,
    RecordHeader,
    ValueEnum,
    crc_region,
    decode_record_header,
    mask,
    record_anchor,
    record_size,
    release_pages,
)
from journalstate._io import Buffer

_crc32c = crc32c.crc32c


class Reason(ValueEnum):
    """Why bytes in a slot or in the journal were not accepted."""

    ZEROED = "zeroed"
    """All-zero record header: the clean end of the journal."""
    BAD_CHECKSUM = "bad-checksum"
    """The stored crc does not match the bytes: a torn or damaged write."""
    BAD_LENGTH = "bad-length"
    """A length field points past what the ring or slot can hold."""
    BAD_KIND = "bad-kind"
    """A checksummed record with an unknown kind or non-zero reserved field."""
    STALE_EPOCH = "stale-epoch"
    """A valid record written before the last recovery (another epoch)."""
    STALE_POSITION = "stale-position"
    """A valid record from an earlier lap of the ring."""
    SEQUENCE_GAP = "sequence-gap"
    """A valid record of this epoch and position with an unexpected sequence number."""
    BAD_PATCH = "bad-patch"
    """A valid record whose patches fall outside the state."""
    GENERATION_MISMATCH = "generation-mismatch"
    """A slot whose leading and trailing generations differ: torn."""
    BAD_SIZE = "bad-size"
    """A slot whose state size is not the header's."""
    BAD_VALUE = "bad-value"
    """Checksummed state bytes that do not decode with the schema."""
    DURABLE_RECORD_LOST = "durable-record-lost"
    """A record that a later record vouches was durable is damaged: corruption, not a torn tail."""
    SLOT_LOST = "slot-lost"
    """A damaged slot that records prove had been completely written: corruption."""


@attrs.frozen
class Record:
    """A record read from the ring: its header and payload."""

    header: RecordHeader
    payload: bytes

    @property
    def size(self) -> int:
        """Bytes the record takes in the ring."""
        return record_size(self.header.length)


def ring_read(ring: Buffer, journal_size: int, position: int, length: int) -> bytes:
    """``length`` bytes of the ring starting at logical ``position``, wrapping at its end."""
    assert 0 <= length <= journal_size
    start = position % journal_size
    end = start + length
    if end <= journal_size:
        return bytes(ring[start:end])
    return bytes(ring[start:journal_size]) + bytes(ring[0 : end - journal_size])


def max_payload(journal_size: int, state_size: int | None = None) -> int:
    """The largest payload one record can carry in a ring of this size (and for this state).

    A writer's patches are non-empty and do not overlap, so a record for a ``state_size``-byte
    state carries at most ``state_size`` patches: ``9 * state_size`` bytes of payload. The
    bound keeps what a reader copies and parses proportional to the state, whatever a hostile
    length field says (at least 64 KiB, so hand-built test records with empty patches pass).
    """
    limit = journal_size - RECORD_HEADER_SIZE * 2  # the record's header and the end marker
    if state_size is not None:
        limit = min(limit, max(9 * state_size, 1 << 16))
    return limit


def ring_crc(ring: Buffer, journal_size: int, position: int, length: int, value: int = 0) -> int:
    """Plain crc32c of ``length`` ring bytes from logical ``position``, wrapping, never copied."""
    assert 0 <= length <= journal_size
    start = position % journal_size
    end = start + length
    if end <= journal_size:
        return crc_region(ring, start, end, value)
    return crc_region(ring, 0, end - journal_size, crc_region(ring, start, journal_size, value))


def _crc_matches(ring: Buffer, journal_size: int, position: int, head: RecordHeader) -> bool:
    """Whether the record at ``position`` with this (length-checked) header passes its crc."""
    size = record_size(head.length)
    return mask(ring_crc(ring, journal_size, position + 4, size - 4)) == head.crc


SCAN_CHUNK = 8 << 20  # bytes a whole-ring scan searches at a time


def find_all(buf: Buffer | bytes, needles: tuple[bytes, ...], lo: int, hi: int) -> Iterator[int]:
    """Every index in ``buf[lo:hi]`` where one of ``needles`` starts, chunk by chunk.

    All needles are searched in a chunk while its pages are in memory, so the scan reads
    ``buf`` once. For a mapping, the pages of each chunk are released (``MADV_DONTNEED``, which
    keeps their contents in the file) once it is searched, so a scan of a large ring, even a
    sparse one, never holds more than a chunk of it in memory. Indexes come in order of chunk,
    and within a chunk in order of needle.
    """
    overlap = max(len(n) for n in needles) - 1
    at = lo
    while at < hi:
        stop = min(hi, at + SCAN_CHUNK)
        for needle in needles:
            found = buf.find(needle, at, min(hi, stop + overlap))
            while 0 <= found < stop:
                yield found
                found = buf.find(needle, found + 1, min(hi, stop + overlap))
        release_pages(buf, at, stop)
        at = stop


def read_record(
    ring: Buffer,
    journal_size: int,
    position: int,
    *,
    epoch: int,
    seq: int,
    state_size: int | None = None,
) -> tuple[Record | None, Reason | None, RecordHeader | None]:
    """Read the record at ``position`` if it is the next one of the chain.

    Returns ``(record, None, header)`` when the bytes at ``position`` are the record with
    sequence ``seq`` of ``epoch``; otherwise ``(None, reason, header)`` where ``header`` is the
    unpacked header when its checksum held (so the caller can tell stale data from a torn write).
    The checksum is computed over the ring in place; the payload is copied only once it held.
    With ``state_size``, a length beyond ``max_payload(journal_size, state_size)`` is
    ``BAD_LENGTH``.
    """
    raw = ring_read(ring, journal_size, position, RECORD_HEADER_SIZE)
    if raw.count(0) == RECORD_HEADER_SIZE:
        return None, Reason.ZEROED, None
    head = decode_record_header(raw)
    if head.length > max_payload(journal_size, state_size):
        return None, Reason.BAD_LENGTH, None
    if not _crc_matches(ring, journal_size, position, head):
        return None, Reason.BAD_CHECKSUM, None
    if head.epoch != epoch:
        return None, Reason.STALE_EPOCH, head
    if head.position != position:
        return None, Reason.STALE_POSITION, head
    if head.kind != KIND_COMMIT or head.reserved != 0:
        return None, Reason.BAD_KIND, head
    if head.seq != seq:
        return None, Reason.SEQUENCE_GAP, head
    payload = ring_read(ring, journal_size, position + RECORD_HEADER_SIZE, head.length)
    return Record(head, payload), None, head


_PATCH_HEAD = struct.Struct(PATCH_HEAD_FMT)
_RECORD_HEADER = struct.Struct(RECORD_HEADER_FMT)
_POSITION = struct.Struct("<Q")
_POSITION_OFFSET = 24  # of the position field in a record header
_MASK_DELTA = 0xA282EAD8
_COPY_FIRST = 1 << 16  # records up to this size are copied, then checksummed
RECORD_ANCHOR_SIZE = 8  # epoch, kind and reserved: see record_anchor


def next_record_fast(
    ring: Buffer,
    journal_size: int,
    position: int,
    *,
    epoch: int,
    seq: int,
    limit: int,
    state_size: int,
) -> tuple[int, int, list[tuple[int, bytes]]] | None:
    """The replay loop's fast path: ``(size, generation, patches)`` of the next record.

    Accepts only what :func:`read_record` plus :func:`check_patches` accept (a record of
    ``epoch`` with sequence ``seq`` at ``position``, ending by ``limit``, with valid patches),
    and only when the record does not straddle the ring's end; None means "ask the slow path",
    which also tells why the chain stops.
    """
    start = position % journal_size
    if start + RECORD_HEADER_SIZE > journal_size:
        return None
    stored, length, ep, kind, reserved, s, pos, _, generation = _RECORD_HEADER.unpack_from(
        ring, start
    )
    if ep != epoch or s != seq or pos != position or kind != KIND_COMMIT or reserved:
        return None
    size = (RECORD_HEADER_SIZE + length + RECORD_ALIGN - 1) & -RECORD_ALIGN
    if position + size > limit or start + size > journal_size:
        return None
    if length > max_payload(journal_size, state_size):
        return None
    if size > _COPY_FIRST:  # a large record: its crc in place first, so no hostile copy
        value = crc_region(ring, start + 4, start + size)
        if ((((value >> 15) | (value << 17)) & 0xFFFFFFFF) + _MASK_DELTA) & 0xFFFFFFFF != stored:
            return None
    record = bytes(ring[start : start + size])
    with memoryview(record) as view:
        value = int(_crc32c(view[4:]))
    if ((((value >> 15) | (value << 17)) & 0xFFFFFFFF) + _MASK_DELTA) & 0xFFFFFFFF != stored:
        return None
    patches: list[tuple[int, bytes]] = []
    at, end = RECORD_HEADER_SIZE, RECORD_HEADER_SIZE + length
    unpack = _PATCH_HEAD.unpack_from
    while at < end:
        if end - at < PATCH_HEAD_SIZE:
            return None
        offset, n = unpack(record, at)
        at += PATCH_HEAD_SIZE
        if n > end - at or offset + n > state_size:
            return None
        patches.append((offset, record[at : at + n]))
        at += n
    return size, generation, patches


def iter_patches(payload: bytes, state_size: int) -> Iterator[tuple[int, bytes]]:
    """The (offset, data) patches of a record payload.

    Raises:
        ValueError: a patch is cut short or falls outside the state.
    """
    at = 0
    end = len(payload)
    while at < end:
        if end - at < PATCH_HEAD_SIZE:
            raise ValueError(f"patch header cut short at payload byte {at}")
        offset, length = _PATCH_HEAD.unpack_from(payload, at)
        at += PATCH_HEAD_SIZE
        if length > end - at or offset + length > state_size:
            raise ValueError(
                f"patch at payload byte {at - PATCH_HEAD_SIZE} covers state bytes "
                f"[{offset}, {offset + length}) outside the {state_size}-byte state"
            )
        yield offset, payload[at : at + length]
        at += length


def check_patches(payload: bytes, state_size: int) -> list[tuple[int, bytes]]:
    """All patches of ``payload``, validated before any is applied (see :func:`iter_patches`)."""
    return list(iter_patches(payload, state_size))


def scan_later_records(
    ring: Buffer, journal_size: int, start: int, end: int, *, epoch: int, after_seq: int
) -> list[RecordHeader]:
    """Valid records of ``epoch`` with seq > ``after_seq`` at logical positions in (start, end).

    Used after the chain stops, to find records written after the stopping point: their
    ``durable_seq`` tells a torn tail (nothing durable lost) from corruption. See
    :func:`scan_records`, which searches for several epochs in one pass.
    """
    return scan_records(ring, journal_size, start, end, {epoch: after_seq})[epoch]


def scan_records(
    ring: Buffer,
    journal_size: int,
    start: int,
    end: int,
    wanted: dict[int, int],
    *,
    state_size: int | None = None,
) -> dict[int, list[RecordHeader]]:
    """For each ``epoch: after_seq`` of ``wanted``, its valid records with a later seq.

    Records at logical positions in (start, end), sorted by position. Candidates are found by
    searching for the 8-byte anchor every record of an epoch carries at offset 8, so the scan
    costs one chunked pass over the window (:func:`find_all`) plus a crc per candidate (of at
    most ``max_payload(journal_size, state_size)`` bytes).
    """
    found: dict[int, list[RecordHeader]] = {epoch: [] for epoch in wanted}
    span = end - start
    if span <= RECORD_HEADER_SIZE:
        return found
    anchors = {record_anchor(epoch): epoch for epoch in wanted}
    needles = tuple(anchors)
    base = start % journal_size
    # Physical byte ranges holding the logical window, then the seam across the ring's end.
    first = min(journal_size, base + span)
    segments: list[tuple[bytes | Buffer, int, int, int]] = [(ring, base, first, 0)]
    if base + span > journal_size:
        segments.append((ring, 0, base + span - journal_size, 0))
    seam = bytes(ring[journal_size - 8 : journal_size]) + bytes(ring[0:8])
    segments.append((seam, 0, 16, journal_size - 8))
    seen: set[int] = set()
    for buf, lo, hi, shift in segments:
        for at in find_all(buf, needles, lo, hi):
            phys = (at + shift - RECORD_ANCHOR_OFFSET) % journal_size
            position = start + (phys - base) % journal_size
            if start < position < end and position not in seen:
                epoch = anchors[bytes(buf[at : at + RECORD_ANCHOR_SIZE])]
                head = _valid_header_at(ring, journal_size, position, epoch, state_size)
                if head is not None and head.seq > wanted[epoch]:
                    seen.add(position)
                    found[epoch].append(head)
    for heads in found.values():
        heads.sort(key=lambda h: h.position)
    return found


def _valid_header_at(
    ring: Buffer, journal_size: int, position: int, epoch: int, state_size: int | None
) -> RecordHeader | None:
    at = position % journal_size
    # Cheap first: most hits are records of this epoch from earlier laps.
    if (
        at + RECORD_HEADER_SIZE <= journal_size
        and _POSITION.unpack_from(ring, at + _POSITION_OFFSET)[0] != position
    ):
        return None
    raw = ring_read(ring, journal_size, position, RECORD_HEADER_SIZE)
    head = decode_record_header(raw)
    if head.epoch != epoch or head.position != position:
        return None
    if head.length > max_payload(journal_size, state_size):
        return None
    return head if _crc_matches(ring, journal_size, position, head) else None


_KIND_ANCHOR = struct.pack("<HH", KIND_COMMIT, 0)


def max_epoch_in_ring(ring: Buffer, journal_size: int, state_size: int | None = None) -> int:
    """The highest epoch of any checksummed record anywhere in the ring (0 if none).

    Used when a slot is damaged: the damaged slot may have held the highest epoch ever used,
    and a new session must never reuse an epoch whose records may still be in the ring.

    Records start at multiples of 8 and ``journal_size`` is a multiple of 8, so the 4-byte
    kind and reserved fields (offsets 12 to 15 of a header) lie inside one aligned 8-byte
    block and never straddle the ring's end, even when the header itself does: one search of
    ``[0, journal_size)`` finds every record.
    """
    assert journal_size % RECORD_ALIGN == 0
    best = 0
    for at in find_all(ring, (_KIND_ANCHOR,), 0, journal_size):
        start = at - 12  # the kind field sits at offset 12 of a header
        if start % RECORD_ALIGN:
            continue
        start %= journal_size
        head = decode_record_header(ring_read(ring, journal_size, start, RECORD_HEADER_SIZE))
        if head.epoch <= best or head.position % journal_size != start:
            continue
        if head.length > max_payload(journal_size, state_size):
            continue
        if _crc_matches(ring, journal_size, start, head):
            best = head.epoch
    return best
