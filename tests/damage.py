"""Named ways to damage store bytes in tests, after LevelDB's log_test helpers.

Every helper changes a ``bytearray`` in place and touches only the bytes its docstring names.
Offsets index ``buf`` directly, unless ``journal_size`` is given: then ``buf`` is the journal
ring, the offset is a logical position, and bytes wrap at the ring's end exactly as the store's
``_writer.write`` writes a record that straddles it.

The ``fix_*`` helpers recompute a checksum after a deliberate change, to build hostile records
and slots that pass their crc and must be rejected by a later check.
"""

from __future__ import annotations

import struct

from journalstate._checksums import align, crc, mask
from journalstate._descriptor import NODE_HEAD_FMT
from journalstate._format import (
    RECORD_HEADER_FMT,
    RECORD_HEADER_SIZE,
    SLOT_CRC_OFFSET,
    SLOT_HEAD_FMT,
    SLOT_HEAD_SIZE,
    SLOT_TAIL_SIZE,
    SlotHead,
    encode_slot,
    record_crc,
    record_size,
    slot_crc,
    slot_size_for,
)
from journalstate._header import HEADER_FIXED_SIZE, Header, encode_header
from journalstate._layout import KIND_BYTES, KIND_STRUCT, KIND_UINT

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


def descriptor_node(
    kind: int, name: bytes = b"", offset: int = 0, size: int = 1, param: int = 0
) -> bytes:
    """One schema descriptor node: its 16-byte head and name (see docs/schema.md)."""
    return struct.pack(NODE_HEAD_FMT, kind, 0, len(name), offset, size, param) + name


def flat_descriptor(fields: int) -> bytes:
    """A root struct of ``fields`` u8 fields named f0, f1, ...: a ``fields``-byte state."""
    nodes = [descriptor_node(KIND_STRUCT, b"Flat", 0, fields, fields)]
    nodes += [descriptor_node(KIND_UINT, b"f%d" % i, i, 1) for i in range(fields)]
    return b"".join(nodes)


def blob_descriptor(capacity: int) -> bytes:
    """A root struct with one Bytes(``capacity``) field ``blob``: a ``capacity + 4``-byte state."""
    return descriptor_node(KIND_STRUCT, b"Blob", 0, capacity + 4, 1) + descriptor_node(
        KIND_BYTES, b"blob", 0, capacity + 4, capacity
    )


def forge_store(
    path: str,
    *,
    descriptor: bytes,
    state_size: int,
    journal_size: int,
    heads: tuple[SlotHead | None, SlotHead | None] | None = None,
    state: bytes | None = None,
    page_size: int = 4096,
) -> Header:
    """Write a store file byte by byte, sparse: only the header and the slot heads are written.

    ``heads`` are the two slots (None: left zero); by default generations 1 and 0 of epoch 0 at
    position 0, as a new store has. The slots hold ``state`` (default zeros), crc-valid. Any
    size may be declared: the file is extended with a hole, so nothing large is written.
    """
    header_size = align(HEADER_FIXED_SIZE + len(descriptor), page_size)
    slot_size = slot_size_for(state_size, page_size)
    header = Header(
        header_size=header_size,
        page_size=page_size,
        file_id=bytes(16),
        slot_size=slot_size,
        slot0_offset=header_size,
        slot1_offset=header_size + slot_size,
        journal_offset=header_size + 2 * slot_size,
        journal_size=journal_size,
        state_size=state_size,
        schema=descriptor,
    )
    if heads is None:
        heads = (SlotHead(1, 0, 0, 0, state_size), SlotHead(0, 0, 0, 0, state_size))
    with open(path, "wb") as f:
        f.truncate(header.file_size)
        f.write(encode_header(header))
        for offset, head in zip(header.slot_offsets, heads, strict=True):
            if head is None:
                continue
            f.seek(offset)
            if state is not None:
                f.write(encode_slot(head, state))
                continue
            # A zero state, left as a hole: the crc runs over the head, the zeros and the tail.
            fields = (head.generation, head.epoch, 0, head.seq, head.position, head.state_size)
            slot = bytearray(struct.pack(SLOT_HEAD_FMT, *fields, 0, 0))
            tail = struct.pack("<Q", head.generation)
            value = crc(slot[SLOT_CRC_OFFSET + 4 :], crc(slot[:SLOT_CRC_OFFSET]))
            value = crc(tail, zeros_crc(head.state_size, value))
            struct.pack_into("<I", slot, SLOT_CRC_OFFSET, mask(value))
            f.write(slot)
            f.seek(offset + SLOT_HEAD_SIZE + head.state_size)
            f.write(tail)
    return header


def zeros_crc(n: int, value: int = 0) -> int:
    """crc32c continued over ``n`` zero bytes, a MiB at a time."""
    block = bytes(min(n, 1 << 20))
    while n:
        step = min(n, len(block))
        value = crc(block[:step], value)
        n -= step
    return value
