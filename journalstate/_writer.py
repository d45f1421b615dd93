"""The journal's writer: commit records as bytes, and where they, their end markers and
their msyncs go in the ring.

What belongs here is every write to the chain of records (``docs/format.md``, "Journal"):
building a record from its patches, placing bytes at a logical journal position (split in
two where they straddle the ring's end), the zero end marker after the last record, and the
ranges an msync of part of the chain covers (split the same way). The store decides *when*
each happens and keeps the chain's bookkeeping; recovery and inspection only read.

Everything here is pure but for the :class:`Ring` it is handed: a mapped region's write
and sync. Nothing is imported that does I/O.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from typing import TYPE_CHECKING, Final, Protocol

from journalstate._checksums import crc, crc32c, mask
from journalstate._format import (
    END_MARKER_SIZE,
    KIND_COMMIT,
    PATCH_HEAD_FMT,
    PATCH_HEAD_SIZE,
    RECORD_ALIGN,
    RECORD_HEADER_FMT,
    RECORD_HEADER_SIZE,
    record_size,
)

if TYPE_CHECKING:
    from journalstate._storage import Buffer

END_MARKER: Final = bytes(END_MARKER_SIZE)
"""The zeros written after the last record: a clean end of the chain."""

_RECORD_REST = struct.Struct(RECORD_HEADER_FMT[0] + RECORD_HEADER_FMT[2:])  # minus the crc
_PATCH_HEAD = struct.Struct(PATCH_HEAD_FMT)
_RECORD_REST_PATCH_HEAD = struct.Struct(_RECORD_REST.format + PATCH_HEAD_FMT[1:])
"""A record's header (minus the crc) and its first patch's head, packed in one call."""
assert _RECORD_REST_PATCH_HEAD.size == _RECORD_REST.size + PATCH_HEAD_SIZE
_CRC_FIELD = struct.Struct("<I")
_PADDINGS = tuple(bytes(record_size(n) - RECORD_HEADER_SIZE - n) for n in range(RECORD_ALIGN))
"""The zero padding after a payload of ``n`` bytes, by ``n % RECORD_ALIGN`` (from record_size)."""
_MASK_DELTA: Final = 0xA282EAD8
"""The constant of :func:`mask`, which :func:`build_record` applies inline."""
assert all(
    mask(v) == ((((v >> 15) | (v << 17)) & 0xFFFFFFFF) + _MASK_DELTA) & 0xFFFFFFFF
    for v in (0, 1, 0xFFFFFFFF, 0x12345678)
)
assert all(
    len(_PADDINGS[n % RECORD_ALIGN]) == record_size(n) - RECORD_HEADER_SIZE - n for n in range(64)
)


class Ring(Protocol):
    """The journal ring as the writer needs it: a mapped region's write."""

    def write(self, offset: int, data: bytes | bytearray) -> None:
        """Copy ``data`` into the region at ``offset``."""
        ...


# --- records ---------------------------------------------------------------------------------


def encode_patches(patches: list[tuple[int, bytes]]) -> bytes:
    """A record payload from (state offset, new bytes) pairs."""
    parts: list[bytes] = []
    pack = _PATCH_HEAD.pack
    for offset, data in patches:
        parts.append(pack(offset, len(data)))
        parts.append(data)
    return b"".join(parts)


def encode_record(
    *,
    epoch: int,
    seq: int,
    position: int,
    durable_seq: int,
    generation: int,
    payload: bytes,
) -> bytes:
    """A whole record: header, any payload and zero padding to the record alignment.

    The careful encoder, for tests and tools; the commit path uses :func:`build_record`,
    which a differential test holds to the same bytes.
    """
    length = len(payload)
    head = struct.pack(
        RECORD_HEADER_FMT, 0, length, epoch, KIND_COMMIT, 0, seq, position, durable_seq, generation
    )
    pad = record_size(length) - RECORD_HEADER_SIZE - length
    body = head[4:] + payload + bytes(pad)
    return struct.pack("<I", mask(crc(body))) + body


def build_record(
    epoch: int,
    seq: int,
    position: int,
    durable_seq: int,
    generation: int,
    patches: list[tuple[int, bytes]],
) -> tuple[bytes, int]:
    """A commit record for ``patches``, followed by the zero end marker, built in one pass.

    The same bytes as :func:`encode_record` of :func:`encode_patches` plus
    :data:`END_MARKER`. Returns the bytes and the record's size in the ring.
    """
    if len(patches) == 1:  # the usual commit: one field, or adjacent ones merged
        ((offset, data),) = patches
        length = PATCH_HEAD_SIZE + len(data)
        padding = _PADDINGS[length % RECORD_ALIGN]
        head = _RECORD_REST_PATCH_HEAD.pack(
            length, epoch, KIND_COMMIT, 0, seq, position, durable_seq, generation, offset, len(data)
        )
        body = b"".join((head, data, padding))
    else:
        parts: list[bytes] = [b""]
        pack = _PATCH_HEAD.pack
        length = 0
        for offset, data in patches:
            parts.append(pack(offset, len(data)))
            parts.append(data)
            length += PATCH_HEAD_SIZE + len(data)
        parts[0] = _RECORD_REST.pack(
            length, epoch, KIND_COMMIT, 0, seq, position, durable_seq, generation
        )
        padding = _PADDINGS[length % RECORD_ALIGN]
        parts.append(padding)
        body = b"".join(parts)
    value = crc32c(body)
    # mask(value), written out: this runs once per commit.
    masked = ((((value >> 15) | (value << 17)) & 0xFFFFFFFF) + _MASK_DELTA) & 0xFFFFFFFF
    return b"".join((_CRC_FIELD.pack(masked), body, END_MARKER)), (
        RECORD_HEADER_SIZE + length + len(padding)
    )


# --- placement in the ring ---------------------------------------------------------------------


def spans(position: int, length: int, ring_size: int) -> tuple[tuple[int, int], ...]:
    """The ring ranges ``(offset, length)`` that ``length`` bytes at logical ``position`` use.

    One range, or two when the bytes straddle the ring's end: its last bytes, then its first.
    """
    start = position % ring_size
    first = ring_size - start
    if length <= first:
        return ((start, length),)
    return ((start, first), (0, length - first))


def write(ring: Ring, ring_size: int, position: int, data: bytes | bytearray) -> None:
    """Write ``data`` at logical journal ``position`` (in two parts when it straddles the end).

    Crash window: straddling bytes are written in two copies, the part at the ring's end
    first. A record cut between them (or inside either) is torn, which its crc rejects.
    """
    start = position % ring_size
    if start + len(data) <= ring_size:
        ring.write(start, data)
        return
    at = 0
    for offset, length in spans(position, len(data), ring_size):
        ring.write(offset, data[at : at + length])
        at += length


def holds(
    buffer: Buffer,
    ring_size: int,
    position: int,
    data: bytes,
) -> bool:
    """Whether the ring's bytes ``buffer`` hold ``data`` at logical ``position``."""
    at = 0
    for offset, length in spans(position, len(data), ring_size):
        if buffer[offset : offset + length] != data[at : at + length]:
            return False
        at += length
    return True


def write_end_marker(ring: Ring, ring_size: int, position: int) -> None:
    """Write the zero end marker at logical ``position``: the chain ends cleanly there."""
    write(ring, ring_size, position, END_MARKER)


def sync(sync_range: Callable[[int, int], None], ring_size: int, start: int, tail: int) -> None:
    """msync the ring from logical ``start`` through the end marker after ``tail``.

    The end marker after the last record is synced too, so a clean end stays clean after an
    OS crash. ``sync_range(offset, length)`` is called once per ring range (twice when the
    range wraps the ring's end).
    """
    for offset, length in spans(start, tail + END_MARKER_SIZE - start, ring_size):
        sync_range(offset, length)


def sync_end_marker(sync_range: Callable[[int, int], None], ring_size: int, position: int) -> None:
    """msync the end marker at logical ``position`` (two ranges when it wraps the ring's end)."""
    for offset, length in spans(position, END_MARKER_SIZE, ring_size):
        sync_range(offset, length)
