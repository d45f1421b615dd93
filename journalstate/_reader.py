"""The chain reader: the records of one epoch, in order, from a position, and why they stop.

The one place that decides whether the bytes at a position continue the chain. Recovery, the
journal's history and the tests all walk the chain through :class:`ChainReader`: it yields each
valid record (header fields and patches parsed once and checked against the state) and, once
it stops, tells why through :class:`ChainStop`. What a stop *means* (a clean end, a torn tail,
corruption) is the caller's decision. Pure: bytes in, values out.

Two paths read a record. :func:`read_record` is the careful one and names every reason;
:func:`next_record_fast` is the iterator's fast path over one record that does not straddle
the ring's end, and accepts exactly what the careful path accepts (a differential test holds
them equal) or defers to it. Recovery's replay (:meth:`ChainReader.replay`) has a third, the
batch path (:func:`_replay_run`): one loop over the records in one copy of a stretch of the
ring that applies each record's patches into the state image straight from the copy, with no
generator, record tuple or patch list per record; it too accepts a subset of what the careful
path accepts, with the same result, and hands it every record it does not.

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

from journalstate import _accel
from journalstate._checksums import Buffer, crc32c, crc_region, mask
from journalstate._format import (
    KIND_COMMIT,
    PATCH_HEAD_FMT,
    PATCH_HEAD_SIZE,
    RECORD_ALIGN,
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
# A record header as the batch path reads it, with the patch head after it: crc, length, the
# anchor (epoch, kind and reserved as one u64: see record_anchor), seq, position, generation
# (durable_seq skipped), then a patch's state offset and length.
_REPLAY_HEAD = struct.Struct("<IIQQQ8xQII")
assert _REPLAY_HEAD.size == RECORD_HEADER_SIZE + PATCH_HEAD_SIZE
REPLAY_CHUNK = 1 << 20
"""Bytes of the ring the batch path copies at a time: one copy for many records."""
_MASK_DELTA = 0xA282EAD8  # mask()'s constant, for the inline mask of the batch path
assert all(
    mask(c) == ((c >> 15 | c << 17) + _MASK_DELTA) & 0xFFFFFFFF
    for c in (0, 1, 0x12345678, 0x5D7D1527, 0xFFFFFFFF)
)


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

    def replay(self, image: bytearray, generation: int, *, chunk: int = REPLAY_CHUNK) -> bool:
        """Apply every record the iteration would yield to ``image``, in order.

        Exactly ``for r in self: apply_patches(image, r.patches)``, and afterwards
        :attr:`stop` is the same; returns whether a record of a generation newer than
        ``generation`` was applied. Runs of records go through the batch path
        (:func:`_replay_run`), which reads a copy of up to ``chunk`` ring bytes at a time;
        each record it does not take is read by the careful path (:func:`next_record`),
        which either accepts it (a record across the ring's end, or across the end of a
        copy) or says why the chain stops. With ``copy_first`` every record is checked and
        applied from a copy of its bytes, as the iteration's are (the batch path reads its
        copies either way).
        """
        ring, journal_size, epoch, end = self.ring, self.journal_size, self.epoch, self.end
        state_size, copy_first = self.state_size, self.copy_first
        position, seq = self.position, self.seq
        max_length = max_payload(journal_size, state_size)
        assert len(image) == state_size
        newer = False
        run = compiled_run or _replay_run
        while position + RECORD_HEADER_SIZE <= end:
            position, seq, run_newer = run(
                ring,
                journal_size,
                image,
                epoch,
                position,
                seq,
                end,
                state_size,
                max_length,
                generation,
                chunk,
            )
            newer = newer or run_newer
            if position + RECORD_HEADER_SIZE > end:
                break
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
                return newer
            apply_patches(image, found.patches)
            newer = newer or found.generation > generation
            position += found.size
            seq += 1
        self.stop = ChainStop(position, seq, None)
        return newer


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

compiled_run = _accel.replay_run
"""The compiled twin of :func:`_replay_run` when the compiled paths are on, else None."""


def _replay_run(
    ring: Buffer,
    journal_size: int,
    image: bytearray,
    epoch: int,
    position: int,
    seq: int,
    end: int,
    state_size: int,
    max_length: int,
    generation: int,
    chunk: int,
) -> tuple[int, int, bool]:
    """The batch path: apply records after ``seq`` from ``position`` while they continue the
    chain; return the position and seq after the last one applied, and whether one was of a
    generation newer than ``generation``.

    The run reads one copy of up to ``chunk`` ring bytes from ``position``, made before
    anything of it is checked (so it keeps ``copy_first``'s guarantee, and a hostile length
    costs no copy beyond it). It takes a record only when :func:`next_record` would accept
    it, with the same checks on the same bytes, and stops at the first record it is not sure
    of, leaving it to the careful path: one that does not end inside the copy (across the
    ring's end, the window's end or the copy's), one whose first 56 bytes do not, or one
    that fails any check.

    A record's patches are checked before the first of them is applied: a record with a bad
    patch leaves ``image`` as it was. The usual record carries one patch over its whole
    payload, checked and applied without a loop.
    """
    start = position % journal_size
    # The copy: up to the ring's end, the window's end, ``chunk`` bytes.
    stop = min(journal_size, start + (end - position), start + chunk)
    buf = ring[start:stop]
    limit = stop - start
    last = limit - _REPLAY_HEAD.size  # the last index whose header and patch head fit
    unpack = _REPLAY_HEAD.unpack_from
    anchor = epoch | KIND_COMMIT << 32  # epoch, kind, reserved (0) as one little-endian u64
    header, patch_head, mask_delta = RECORD_HEADER_SIZE, PATCH_HEAD_SIZE, _MASK_DELTA
    pad = header + RECORD_ALIGN - 1  # record_size(length) is (length + pad) & -RECORD_ALIGN
    data = header + patch_head  # where a one-patch record's patch bytes start
    at, want, newer = 0, seq + 1, False
    # The one-patch record's patch is held back (state offset, length, index in buf) until a
    # record patches anything else: a patch of the same state bytes after it overwrites it
    # whole, so only the last of a row of them is written (most commits change the same
    # fields). What is held back is checked bytes of buf, written before returning.
    held, held_n, held_at = -1, 0, 0
    while at <= last:
        # The header and the first patch head in one unpack: bytes 48 to 56 are a patch head
        # only when the payload has one, and are looked at only then.
        stored, length, found, s, pos, gen, offset, n = unpack(buf, at)
        if found != anchor or s != want or pos - at != position or length > max_length:
            break
        after = at + ((length + pad) & -RECORD_ALIGN)
        if after > limit:
            break
        c = crc32c(buf[at + 4 : after])
        # mask(c), inline: the rotation's bits above 31 go with the final and.
        if ((c >> 15 | c << 17) + mask_delta) & 0xFFFFFFFF != stored:
            break
        if n + patch_head == length:  # one patch, the whole payload
            if offset != held or n != held_n:  # (the held patch's bounds were checked)
                if offset + n > state_size:
                    break
                if held >= 0:
                    image[held : held + held_n] = buf[held_at : held_at + held_n]
                held, held_n = offset, n
            held_at = at + data
        elif length:
            p = at + header
            spans = _patch_spans(buf, p, p + length, state_size)
            if spans is None:
                break
            if held >= 0:
                image[held : held + held_n] = buf[held_at : held_at + held_n]
                held = -1
            for offset, p, n in spans:
                image[offset : offset + n] = buf[p : p + n]
        if gen > generation:
            newer = True
        at = after
        want += 1
    if held >= 0:
        image[held : held + held_n] = buf[held_at : held_at + held_n]
    return position + at, want - 1, newer


def _patch_spans(
    buf: Buffer, at: int, stop: int, state_size: int
) -> list[tuple[int, int, int]] | None:
    """``(state offset, index in buf, length)`` of each patch in ``buf[at:stop]``, or None
    where :func:`parse_patches` would refuse the payload."""
    spans: list[tuple[int, int, int]] = []
    unpack = _PATCH_HEAD.unpack_from
    while at < stop:
        if stop - at < PATCH_HEAD_SIZE:
            return None
        offset, n = unpack(buf, at)
        at += PATCH_HEAD_SIZE
        if n > stop - at or offset + n > state_size:
            return None
        spans.append((offset, at, n))
        at += n
    return spans


def apply_patches(image: bytearray, patches: list[tuple[int, bytes]]) -> None:
    """Write a record's patches into a state image, in order."""
    for offset, data in patches:
        image[offset : offset + len(data)] = data
