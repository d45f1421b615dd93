"""The chain reader: the records of one epoch, in order, from a position, and why they stop.

The one place that decides whether the bytes at a position continue the chain. Recovery, the
journal's history and the tests all walk the chain through :class:`ChainReader`: it yields each
valid record (header fields and patches parsed once and checked against the state) and, once
it stops, tells why through :class:`ChainStop`. What a stop *means* (a clean end, a torn tail,
corruption) is the caller's decision. Pure: bytes in, values out.

Two paths read a record. :func:`read_record` is the careful one and names every reason;
:func:`next_record_fast` is the replay loop's fast path over one record that does not straddle
the ring's end, and accepts exactly what the careful path accepts (a differential test holds
them equal) or defers to it.

Beside a live writer (a reader that follows one, a read-only open), the ring changes while it
is read. With ``copy_first`` every record is copied before anything of it is checked, and
every check runs on the copy: a record that passes is exactly the bytes one commit wrote,
never bytes of two laps or of a write in progress (their crc fails, as a torn write's does).
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from typing import NamedTuple

import attrs

from journalstate._checksums import Buffer, crc32c, crc_region, mask
from journalstate._format import (
    KIND_COMMIT,
    PATCH_HEAD_FMT,
    PATCH_HEAD_SIZE,
    RECORD_HEADER_FMT,
    RECORD_HEADER_SIZE,
    RecordHeader,
    decode_record_header,
    record_size,
)
from journalstate._journal import header_fault, max_payload, parse_patches, ring_read
from journalstate._reason import Reason

_RECORD_HEADER = struct.Struct(RECORD_HEADER_FMT)
_COPY_FIRST = 1 << 16  # records up to this size are copied, then checksummed
_PATCH_HEAD = struct.Struct(PATCH_HEAD_FMT)


class ChainRecord(NamedTuple):
    """One valid record of the chain, its patches parsed and inside the state."""

    position: int
    """Logical position of the record."""
    size: int
    """Bytes it takes in the ring, padding included."""
    seq: int
    generation: int
    durable_seq: int
    patches: list[tuple[int, bytes]]
    """(state offset, new bytes) pairs, in the order they apply."""


@attrs.frozen
class ChainStop:
    """Where and why the chain stopped."""

    position: int
    """Logical position after the last valid record: where the next one would start."""
    seq: int
    """Sequence number of the last valid record (the start's when none was read)."""
    reason: Reason | None
    """Why the bytes at ``position`` are not the next record; None when the window ended.

    ZEROED (a clean end), BAD_CHECKSUM or BAD_LENGTH (a torn write, or a record running past
    the window), STALE_EPOCH, STALE_POSITION, SEQUENCE_GAP, BAD_KIND or BAD_PATCH."""
    header: RecordHeader | None = None
    """The header found at ``position`` when its checksum held."""
    size: int = 0
    """Bytes of that checksummed record (for BAD_PATCH, what it drops)."""
    detail: str = ""
    """The patch parser's message for BAD_PATCH."""


@attrs.frozen
class Record:
    """A record read from the ring: its header and payload."""

    header: RecordHeader
    payload: bytes

    @property
    def size(self) -> int:
        """Bytes the record takes in the ring."""
        return record_size(self.header.length)


class ChainReader:
    """Walks the records of ``epoch`` after ``position`` (whose last seq is ``seq``).

    Iterating yields each :class:`ChainRecord` that continues the chain and ends within
    ``end`` (a logical position); afterwards :attr:`stop` says where and why it stopped. A
    caller that stops iterating early keeps its own count: :attr:`stop` stays None. With
    ``copy_first`` (a live writer may be writing the ring meanwhile) each record is copied
    before it is checked, whatever its size (see the module's docstring).
    """

    def __init__(
        self,
        ring: Buffer,
        journal_size: int,
        *,
        epoch: int,
        position: int,
        seq: int,
        end: int,
        state_size: int,
        copy_first: bool = False,
    ) -> None:
        self.ring, self.journal_size, self.state_size = ring, journal_size, state_size
        self.epoch, self.position, self.seq, self.end = epoch, position, seq, end
        self.copy_first = copy_first
        self.stop: ChainStop | None = None

    def __iter__(self) -> Iterator[ChainRecord]:
        ring, journal_size, epoch, end = self.ring, self.journal_size, self.epoch, self.end
        state_size = self.state_size
        position, seq, copy_first = self.position, self.seq, self.copy_first
        max_length = max_payload(journal_size, state_size)
        copy_above = 0 if copy_first else _COPY_FIRST
        while position + RECORD_HEADER_SIZE <= end:
            record = _next_fast(
                ring,
                journal_size,
                position,
                epoch,
                seq + 1,
                end,
                state_size,
                max_length,
                copy_above,
            )
            if record is None:
                found = next_record(
                    ring,
                    journal_size,
                    position,
                    epoch=epoch,
                    seq=seq,
                    end=end,
                    state_size=state_size,
                    copy_first=copy_first,
                )
                if isinstance(found, ChainStop):
                    self.stop = found
                    return
                record = found
            position += record.size
            seq += 1
            yield record
        self.stop = ChainStop(position, seq, None)


def next_record(
    ring: Buffer,
    journal_size: int,
    position: int,
    *,
    epoch: int,
    seq: int,
    end: int,
    state_size: int,
    copy_first: bool = False,
) -> ChainRecord | ChainStop:
    """The careful path: the record after ``seq`` at ``position``, or why there is none."""
    record, reason, head = read_record(
        ring,
        journal_size,
        position,
        epoch=epoch,
        seq=seq + 1,
        state_size=state_size,
        copy_first=copy_first,
    )
    if record is None:
        assert reason is not None
        return ChainStop(position, seq, reason, head)
    size = record.size
    if position + size > end:
        return ChainStop(position, seq, Reason.BAD_LENGTH, head, size)
    try:
        patches = parse_patches(record.payload, 0, len(record.payload), state_size)
    except ValueError as e:
        return ChainStop(position, seq, Reason.BAD_PATCH, head, size, str(e))
    h = record.header
    return ChainRecord(position, size, h.seq, h.generation, h.durable_seq, patches)


def read_record(
    ring: Buffer,
    journal_size: int,
    position: int,
    *,
    epoch: int,
    seq: int,
    state_size: int | None = None,
    copy_first: bool = False,
) -> tuple[Record | None, Reason | None, RecordHeader | None]:
    """Read the record at ``position`` if it is the record ``seq`` of ``epoch``.

    Returns ``(record, None, header)`` when it is; otherwise ``(None, reason, header)`` where
    ``header`` is the unpacked header when its checksum held (so the caller can tell stale data
    from a torn write). The checksum is computed over the ring in place (:func:`header_fault`);
    the payload is copied only once it held. With ``state_size``, a length beyond
    ``max_payload(journal_size, state_size)`` is ``BAD_LENGTH``. With ``copy_first`` the whole
    record is copied first and checked, header included, on the copy.
    """
    raw = ring_read(ring, journal_size, position, RECORD_HEADER_SIZE)
    if raw.count(0) == RECORD_HEADER_SIZE:
        return None, Reason.ZEROED, None
    head = decode_record_header(raw)
    max_length = max_payload(journal_size, state_size)
    if copy_first:
        return _read_copied(ring, journal_size, position, head.length, max_length, epoch, seq)
    fault = header_fault(ring, journal_size, position, head, max_length)
    if fault is not None:
        return None, fault, None
    reason = _misplaced(head, position, epoch, seq)
    if reason is not None:
        return None, reason, head
    payload = ring_read(ring, journal_size, position + RECORD_HEADER_SIZE, head.length)
    return Record(head, payload), None, head


def _read_copied(
    ring: Buffer,
    journal_size: int,
    position: int,
    length: int,
    max_length: int,
    epoch: int,
    seq: int,
) -> tuple[Record | None, Reason | None, RecordHeader | None]:
    """:func:`read_record`'s copy-first path: one copy of the record, every check on it."""
    if length > max_length:
        return None, Reason.BAD_LENGTH, None
    data = ring_read(ring, journal_size, position, record_size(length))
    head = decode_record_header(data[:RECORD_HEADER_SIZE])
    if head.length != length:  # the header changed between the two reads: a write in progress
        return None, Reason.BAD_CHECKSUM, None
    with memoryview(data) as view:
        if mask(int(crc32c(view[4:]))) != head.crc:
            return None, Reason.BAD_CHECKSUM, None
    reason = _misplaced(head, position, epoch, seq)
    if reason is not None:
        return None, reason, head
    return Record(head, data[RECORD_HEADER_SIZE : RECORD_HEADER_SIZE + length]), None, head


def _misplaced(head: RecordHeader, position: int, epoch: int, seq: int) -> Reason | None:
    """Why a checksummed record is not record ``seq`` of ``epoch`` at ``position``, or None."""
    if head.epoch != epoch:
        return Reason.STALE_EPOCH
    if head.position != position:
        return Reason.STALE_POSITION
    if head.kind != KIND_COMMIT or head.reserved != 0:
        return Reason.BAD_KIND
    if head.seq != seq:
        return Reason.SEQUENCE_GAP
    return None


def next_record_fast(
    ring: Buffer,
    journal_size: int,
    position: int,
    *,
    epoch: int,
    seq: int,
    limit: int,
    state_size: int,
) -> ChainRecord | None:
    """The fast path: record ``seq`` of ``epoch`` at ``position``, or None to ask the careful one.

    Accepts only what :func:`next_record` accepts (a record of ``epoch`` with sequence ``seq``
    at ``position``, ending by ``limit``, with valid patches), and only when the record does
    not straddle the ring's end.
    """
    max_length = max_payload(journal_size, state_size)
    return _next_fast(ring, journal_size, position, epoch, seq, limit, state_size, max_length)


def _next_fast(
    ring: Buffer,
    journal_size: int,
    position: int,
    epoch: int,
    seq: int,
    limit: int,
    state_size: int,
    max_length: int,
    copy_above: int = _COPY_FIRST,
) -> ChainRecord | None:
    """:func:`next_record_fast` with positional arguments and the length bound worked out.

    The same checks as :func:`read_record` and :func:`header_fault`, on one copy of the
    record: the checksummed bytes and the fields come from the same read. A record larger
    than ``copy_above`` bytes has its crc checked in place before it is copied (so a hostile
    length costs no copy); 0 copies every record first (a live writer may be writing it).
    """
    start = position % journal_size
    if start + RECORD_HEADER_SIZE > journal_size:
        return None
    stored, length, ep, kind, reserved, s, pos, durable, generation = _RECORD_HEADER.unpack_from(
        ring, start
    )
    if ep != epoch or s != seq or pos != position or kind != KIND_COMMIT or reserved:
        return None
    size = record_size(length)
    if position + size > limit or start + size > journal_size or length > max_length:
        return None
    # A large record: its crc in place first, so no hostile copy.
    if (
        copy_above
        and size > copy_above
        and mask(crc_region(ring, start + 4, start + size)) != stored
    ):
        return None
    record = bytes(ring[start : start + size])
    # The fields above were unpacked before the copy; the crc below covers them (bytes 4 to 48)
    # in the copy, so a header that changed in between fails it, as a torn write does.
    with memoryview(record) as view:
        if mask(int(crc32c(view[4:]))) != stored:
            return None
    # The patches, parsed as parse_patches does (anything it would refuse sends the record to
    # the careful path, which says why), inline: a function call per record is a tenth of
    # the replay's time.
    patches: list[tuple[int, bytes]] = []
    append, unpack = patches.append, _PATCH_HEAD.unpack_from
    at, stop = RECORD_HEADER_SIZE, RECORD_HEADER_SIZE + length
    while at < stop:
        if stop - at < PATCH_HEAD_SIZE:
            return None
        offset, n = unpack(record, at)
        at += PATCH_HEAD_SIZE
        if n > stop - at or offset + n > state_size:
            return None
        append((offset, record[at : at + n]))
        at += n
    # tuple.__new__ skips the named tuple's Python-level constructor: a third of a
    # microsecond per record on the replay path.
    return _new_tuple(ChainRecord, (position, size, s, generation, durable, patches))


_new_tuple = tuple.__new__


def apply_patches(image: bytearray, patches: list[tuple[int, bytes]]) -> None:
    """Write a record's patches into a state image, in order."""
    for offset, data in patches:
        image[offset : offset + len(data)] = data
