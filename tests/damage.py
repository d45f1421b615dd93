"""Named ways to damage store bytes in tests, after LevelDB's log_test helpers.

Every helper changes a ``bytearray`` in place and touches only the bytes its docstring names.
Offsets index ``buf`` directly, unless ``journal_size`` is given: then ``buf`` is the journal
ring, the offset is a logical position, and bytes wrap at the ring's end exactly as the store's
``_ring_write`` writes a record that straddles it.

The ``fix_*`` helpers recompute a checksum after a deliberate change, to build hostile records
and slots that pass their crc and must be rejected by a later check.
"""

from __future__ import annotations

import struct

from journalstate._format import (
    RECORD_HEADER_FMT,
    RECORD_HEADER_SIZE,
    SLOT_CRC_OFFSET,
    SLOT_HEAD_SIZE,
    SLOT_TAIL_SIZE,
    record_crc,
    record_size,
    slot_crc,
)

# Name and struct code of each record header field, in order (see RECORD_HEADER_FMT).
_RECORD_FIELDS = (
    "crc",
    "length",
    "epoch",
    "kind",
    "reserved",
    "seq",
    "position",
    "durable_seq",
    "generation",
)
_RECORD_CODES = RECORD_HEADER_FMT[1:]
assert len(_RECORD_FIELDS) == len(_RECORD_CODES)


def record_field_offset(name: str) -> int:
    """Byte offset of a record header field, computed from RECORD_HEADER_FMT."""
    index = _RECORD_FIELDS.index(name)
    return struct.calcsize("<" + _RECORD_CODES[:index])


def put(buf: bytearray, offset: int, data: bytes, journal_size: int | None = None) -> None:
    """Write ``data`` at ``offset``; with ``journal_size``, wrap at the ring's end."""
    if journal_size is None:
        assert offset >= 0
        assert offset + len(data) <= len(buf)
        buf[offset : offset + len(data)] = data
        return
    assert len(data) <= journal_size == len(buf)
    start = offset % journal_size
    first = min(len(data), journal_size - start)
    buf[start : start + first] = data[:first]
    buf[0 : len(data) - first] = data[first:]


def get(buf: bytes | bytearray, offset: int, n: int, journal_size: int | None = None) -> bytes:
    """The ``n`` bytes at ``offset``; with ``journal_size``, wrapping at the ring's end."""
    if journal_size is None:
        return bytes(buf[offset : offset + n])
    return bytes(buf[(offset + i) % journal_size] for i in range(n))


def flip_byte(
    buf: bytearray, offset: int, bits: int = 0xFF, journal_size: int | None = None
) -> None:
    """XOR the byte at ``offset`` with ``bits`` (all eight by default): a damaged byte."""
    assert 0 < bits <= 0xFF
    put(buf, offset, bytes([get(buf, offset, 1, journal_size)[0] ^ bits]), journal_size)


def zero(buf: bytearray, start: int, n: int, journal_size: int | None = None) -> None:
    """Zero ``n`` bytes from ``start``: sectors that never reached the disk of a fresh file."""
    put(buf, start, bytes(n), journal_size)


def torn_write(
    buf: bytearray, offset: int, data: bytes, keep: int, journal_size: int | None = None
) -> None:
    """Write only the first ``keep`` bytes of ``data``: a write cut short by a crash.

    The bytes after them keep whatever they held before.
    """
    assert 0 <= keep <= len(data)
    put(buf, offset, data[:keep], journal_size)


def truncate(data: bytes, size: int) -> bytes:
    """The first ``size`` bytes of ``data``: a file cut short."""
    assert 0 <= size <= len(data)
    return data[:size]


def set_record_field(
    buf: bytearray, record_offset: int, name: str, value: int, journal_size: int | None = None
) -> None:
    """Overwrite one header field of the record at ``record_offset`` (its crc is not fixed)."""
    code = _RECORD_CODES[_RECORD_FIELDS.index(name)]
    put(
        buf,
        record_offset + record_field_offset(name),
        struct.pack("<" + code, value),
        journal_size,
    )


def set_length(buf: bytearray, record_offset: int, n: int, journal_size: int | None = None) -> None:
    """Set the payload length of the record at ``record_offset`` to ``n`` (crc not fixed)."""
    set_record_field(buf, record_offset, "length", n, journal_size)


def fix_record_crc(buf: bytearray, record_offset: int, journal_size: int | None = None) -> None:
    """Store the right masked crc for the record at ``record_offset``, as its length says.

    After this the record passes its checksum whatever else was changed in it.
    """
    head = get(buf, record_offset, RECORD_HEADER_SIZE, journal_size)
    (length,) = struct.unpack_from("<I", head, record_field_offset("length"))
    whole = get(buf, record_offset, record_size(length), journal_size)
    put(buf, record_offset, struct.pack("<I", record_crc(whole)), journal_size)


def fix_slot_crc(buf: bytearray, at: int, state_size: int) -> None:
    """Store the right masked crc for the slot starting at ``at`` holding ``state_size`` bytes."""
    end = at + SLOT_HEAD_SIZE + state_size + SLOT_TAIL_SIZE
    checksum = slot_crc(bytes(buf[at:end]), state_size)
    put(buf, at + SLOT_CRC_OFFSET, struct.pack("<I", checksum))
