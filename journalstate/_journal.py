"""The journal ring as bytes: geometry, the one record-validity check, patches and scans.

Pure functions over mapped bytes, shared by the chain reader (:mod:`journalstate._reader`),
recovery, the command line and the tests. What decides whether a record *continues the chain*
is the reader's; what decides whether bytes at a position are *a whole checksummed record* is
:func:`header_fault`, here, and nothing else. Positions are *logical*: they grow forever, and a
position's place in the ring is ``position % journal_size``.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator

from journalstate._checksums import Buffer, crc_region, mask, release_pages
from journalstate._format import (
    KIND_COMMIT,
    PATCH_HEAD_FMT,
    PATCH_HEAD_SIZE,
    RECORD_ALIGN,
    RECORD_ANCHOR_OFFSET,
    RECORD_HEADER_FMT,
    RECORD_HEADER_SIZE,
    RecordHeader,
    decode_record_header,
    record_anchor,
    record_size,
)
from journalstate._reason import Reason

_RECORD_HEADER = struct.Struct(RECORD_HEADER_FMT)
_PATCH_HEAD = struct.Struct(PATCH_HEAD_FMT)
_POSITION = struct.Struct("<Q")
_POSITION_OFFSET = 24  # of the position field in a record header
RECORD_ANCHOR_SIZE = 8  # epoch, kind and reserved: see record_anchor
SCAN_CHUNK = 8 << 20  # bytes a whole-ring scan searches at a time


def ring_read(ring: Buffer, journal_size: int, position: int, length: int) -> bytes:
    """``length`` bytes of the ring starting at logical ``position``, wrapping at its end."""
    assert 0 <= length <= journal_size
    start = position % journal_size
    end = start + length
    if end <= journal_size:
        return bytes(ring[start:end])
    return bytes(ring[start:journal_size]) + bytes(ring[0 : end - journal_size])


def ring_crc(ring: Buffer, journal_size: int, position: int, length: int, value: int = 0) -> int:
    """Plain crc32c of ``length`` ring bytes from logical ``position``, wrapping, never copied."""
    assert 0 <= length <= journal_size
    start = position % journal_size
    end = start + length
    if end <= journal_size:
        return crc_region(ring, start, end, value)
    return crc_region(ring, 0, end - journal_size, crc_region(ring, start, journal_size, value))


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


def header_at(ring: Buffer, journal_size: int, position: int) -> RecordHeader:
    """The record header fields at logical ``position``, unchecked (it may straddle the end)."""
    start = position % journal_size
    if start + RECORD_HEADER_SIZE <= journal_size:
        return RecordHeader(*_RECORD_HEADER.unpack_from(ring, start))
    return decode_record_header(ring_read(ring, journal_size, position, RECORD_HEADER_SIZE))


def header_fault(
    ring: Buffer, journal_size: int, position: int, head: RecordHeader, max_length: int
) -> Reason | None:
    """Why ``head``, read at ``position``, does not start a whole checksummed record, or None.

    The one validity check of a record's bytes: its length fits (``max_length``, see
    :func:`max_payload`: BAD_LENGTH otherwise), then its masked crc over the ring in place,
    padding included, matches (BAD_CHECKSUM otherwise). Whether the record belongs where it
    was found (epoch, position, kind, seq) is the caller's question.
    """
    if head.length > max_length:
        return Reason.BAD_LENGTH
    size = record_size(head.length)
    if mask(ring_crc(ring, journal_size, position + 4, size - 4)) != head.crc:
        return Reason.BAD_CHECKSUM
    return None


def parse_patches(
    data: bytes, start: int, end: int, state_size: int, *, origin: int | None = None
) -> list[tuple[int, bytes]]:
    """The (offset, bytes) patches of the payload ``data[start:end]``, all checked first.

    The one patch parser: every patch must be whole and fall inside the state. Messages count
    payload bytes from ``origin`` (default ``start``).

    Raises:
        ValueError: a patch is cut short or falls outside the state.
    """
    base = start if origin is None else origin
    patches: list[tuple[int, bytes]] = []
    unpack = _PATCH_HEAD.unpack_from
    at = start
    while at < end:
        if end - at < PATCH_HEAD_SIZE:
            raise ValueError(f"patch header cut short at payload byte {at - base}")
        offset, length = unpack(data, at)
        at += PATCH_HEAD_SIZE
        if length > end - at or offset + length > state_size:
            raise ValueError(
                f"patch at payload byte {at - base - PATCH_HEAD_SIZE} covers state bytes "
                f"[{offset}, {offset + length}) outside the {state_size}-byte state"
            )
        patches.append((offset, data[at : at + length]))
        at += length
    return patches


def check_patches(payload: bytes, state_size: int) -> list[tuple[int, bytes]]:
    """All patches of ``payload``, validated before any is applied (see :func:`parse_patches`)."""
    return parse_patches(payload, 0, len(payload), state_size)


def iter_patches(payload: bytes, state_size: int) -> Iterator[tuple[int, bytes]]:
    """The patches of ``payload`` one at a time, each parsed (:func:`parse_patches`) when asked.

    Raises:
        ValueError: a patch is cut short or falls outside the state.
    """
    at, end = 0, len(payload)
    while at < end:
        length = _PATCH_HEAD.unpack_from(payload, at)[1] if end - at >= PATCH_HEAD_SIZE else 0
        stop = min(end, at + PATCH_HEAD_SIZE + length)
        yield from parse_patches(payload, at, stop, state_size, origin=0)
        at = stop


def find_all(
    buf: Buffer | bytes, needles: tuple[bytes, ...], lo: int, hi: int
) -> Iterator[tuple[int, bytes]]:
    """Every ``(index, needle)`` where one of ``needles`` starts in ``buf[lo:hi]``, chunk by chunk.

    The needle is yielded with its index because ``buf`` may be a mapping a live writer is
    writing: the bytes at the index may already be others when the caller looks again.

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
                yield found, needle
                found = buf.find(needle, found + 1, min(hi, stop + overlap))
        release_pages(buf, at, stop)
        at = stop


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
    costs one chunked pass over the window (as :func:`find_all` makes it), a look at the
    position field of each candidate, and a crc (of at most ``max_payload(journal_size,
    state_size)`` bytes) for each candidate stamped with the position where it was found.
    """
    found: dict[int, list[RecordHeader]] = {epoch: [] for epoch in wanted}
    span = end - start
    if span <= RECORD_HEADER_SIZE:
        return found
    anchors = {record_anchor(epoch): epoch for epoch in wanted}
    max_length = max_payload(journal_size, state_size)
    seen: set[int] = set()
    base = start % journal_size
    fits = journal_size - RECORD_HEADER_SIZE  # a header starting here or before fits whole
    # (find_all's loop, inline: in a full ring of this epoch's old records every record is a
    # hit, almost all of a lap before, and the check that rejects them, their position field,
    # costs about what the search and a generator step would cost on top.)
    for buf, lo, hi, shift in _anchor_segments(ring, journal_size, base, span):
        for at in range(lo, hi, SCAN_CHUNK):
            stop = min(hi, at + SCAN_CHUNK)
            reach = min(hi, stop + RECORD_ANCHOR_SIZE - 1)  # an anchor starting before stop
            for needle, epoch in anchors.items():  # epoch: not read again (see find_all)
                hit = buf.find(needle, at, reach)
                while 0 <= hit < stop:
                    phys = (hit + shift - RECORD_ANCHOR_OFFSET) % journal_size
                    position = start + (phys - base) % journal_size
                    if (
                        start < position < end
                        and (
                            phys > fits
                            or _POSITION.unpack_from(ring, phys + _POSITION_OFFSET)[0] == position
                        )
                        and position not in seen
                    ):
                        head = _valid_header_at(ring, journal_size, position, epoch, max_length)
                        if head is not None and head.seq > wanted[epoch]:
                            seen.add(position)
                            found[epoch].append(head)
                    hit = buf.find(needle, hit + 1, reach)
            release_pages(buf, at, stop)
    for heads in found.values():
        heads.sort(key=lambda h: h.position)
    return found


def _anchor_segments(
    ring: Buffer, journal_size: int, base: int, span: int
) -> list[tuple[Buffer, int, int, int]]:
    """``(buffer, lo, hi, shift)``: where to search for the anchors of a logical window of
    ``span`` bytes starting at ring offset ``base``.

    The physical byte ranges of the ring holding the window, then a 16-byte copy of the seam
    across the ring's end (``shift`` turns an index in it into a ring offset).
    """
    first = min(journal_size, base + span)
    segments: list[tuple[Buffer, int, int, int]] = [(ring, base, first, 0)]
    if base + span > journal_size:
        segments.append((ring, 0, base + span - journal_size, 0))
    seam = bytes(ring[journal_size - 8 : journal_size]) + bytes(ring[0:8])
    segments.append((seam, 0, 16, journal_size - 8))
    return segments


def _valid_header_at(
    ring: Buffer, journal_size: int, position: int, epoch: int, max_length: int
) -> RecordHeader | None:
    """The header at ``position`` if it is a valid record of ``epoch`` stamped there."""
    at = position % journal_size
    # Cheap first: most hits are records of this epoch from earlier laps.
    if (
        at + RECORD_HEADER_SIZE <= journal_size
        and _POSITION.unpack_from(ring, at + _POSITION_OFFSET)[0] != position
    ):
        return None
    head = header_at(ring, journal_size, position)
    if head.epoch != epoch or head.position != position:
        return None
    return None if header_fault(ring, journal_size, position, head, max_length) else head


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
    max_length = max_payload(journal_size, state_size)
    best = 0
    for at, _ in find_all(ring, (_KIND_ANCHOR,), 0, journal_size):
        start = at - 12  # the kind field sits at offset 12 of a header
        if start % RECORD_ALIGN:
            continue
        start %= journal_size
        head = header_at(ring, journal_size, start)
        if head.epoch <= best or head.position % journal_size != start:
            continue
        if header_fault(ring, journal_size, start, head, max_length) is None:
            best = head.epoch
    return best
