"""On-disk constants and the fixed-size structures of slots and journal records, and counters.

Everything here is pure (bytes in, values out) and mirrors ``docs/format.md`` name for name.
All integers are little-endian. Sizes are checked against their struct formats at import. The
header is in ``_header``; checksums and their masking in ``_checksums``.
"""

from __future__ import annotations

import enum
import struct
from typing import Final

import attrs

from journalstate._checksums import Buffer, align, crc, crc_region, mask
from journalstate._errors import CounterExhausted


class ValueEnum(str, enum.Enum):
    """An enum of strings that prints as its value ("zeroed", not "Reason.ZEROED")."""

    def __str__(self) -> str:
        return str(self.value)

    def __format__(self, spec: str) -> str:
        return format(str(self.value), spec)


# --- slots ---------------------------------------------------------------------------------------

# generation, epoch, flags, seq, position, state_size, slot_crc, reserved
SLOT_HEAD_FMT: Final = "<QIIQQQII"
SLOT_HEAD_SIZE: Final = 48
assert struct.calcsize(SLOT_HEAD_FMT) == SLOT_HEAD_SIZE
SLOT_CRC_OFFSET: Final = 40
SLOT_TAIL_SIZE: Final = 8  # the generation again, after the state bytes


def slot_size_for(state_size: int, page_size: int) -> int:
    """Bytes a slot takes in the file: head, state, tail, rounded up to whole pages."""
    return align(SLOT_HEAD_SIZE + state_size + SLOT_TAIL_SIZE, page_size)


@attrs.frozen
class SlotHead:
    """The fixed fields of a state slot (the state bytes follow it)."""

    generation: int
    epoch: int
    seq: int
    position: int
    state_size: int


def slot_crc(slot: Buffer | memoryview, state_size: int) -> int:
    """Masked crc over a slot's head (minus the crc field), state bytes and tail generation."""
    end = SLOT_HEAD_SIZE + state_size + SLOT_TAIL_SIZE
    return mask(crc_region(slot, SLOT_CRC_OFFSET + 4, end, crc_region(slot, 0, SLOT_CRC_OFFSET)))


def encode_slot_head(head: SlotHead) -> bytes:
    """A slot's 48 head bytes with a zero ``slot_crc`` (flags and reserved are zero)."""
    return struct.pack(
        SLOT_HEAD_FMT,
        head.generation,
        head.epoch,
        0,
        head.seq,
        head.position,
        head.state_size,
        0,
        0,
    )


def encode_slot(head: SlotHead, state: bytes | bytearray | memoryview) -> bytes:
    """A slot's meaningful bytes (head, state, tail); the rest of its pages is left alone."""
    assert len(state) == head.state_size
    body = bytearray(encode_slot_head(head))
    body += state
    body += struct.pack("<Q", head.generation)
    struct.pack_into("<I", body, SLOT_CRC_OFFSET, slot_crc(body, head.state_size))
    return bytes(body)


# --- counters ------------------------------------------------------------------------------------

MAX_EPOCH: Final = 0xFFFF_FFFF  # u32 in slots and records; never wraps
MAX_GENERATION: Final = 0xFFFF_FFFF_FFFF_FFFF  # u64 in slots and records; never wraps
MAX_SEQ: Final = 0xFFFF_FFFF_FFFF_FFFF  # u64 in slots and records; never wraps
# A writing session starts only while generation and seq are below this: a session would need
# 2^63 checkpoints or commits to reach a field's end, so no arithmetic in it can overflow.
WRITER_COUNTER_LIMIT: Final = 1 << 63


def check_counters(path: str, *, max_epoch: int, max_generation: int, seq: int) -> None:
    """Refuse to start a writing session that could need a counter past its end.

    A writable open takes the next epoch (``max_epoch + 1``), and the session's checkpoints and
    commits count generations and sequence numbers up from the recovered ones. Counters never
    wrap, so a store whose counters are at (or, for the u64 ones, past half of) their end can
    be opened read-only only.

    Raises:
        CounterExhausted: a counter has no room for a writing session.
    """
    if max_epoch >= MAX_EPOCH:
        raise CounterExhausted(path, "epoch", max_epoch)
    if max_generation >= WRITER_COUNTER_LIMIT:
        raise CounterExhausted(path, "generation", max_generation)
    if seq >= WRITER_COUNTER_LIMIT:
        raise CounterExhausted(path, "seq", seq)


# --- journal records ------------------------------------------------------------------------------

# crc, length, epoch, kind, reserved, seq, position, durable_seq, generation
RECORD_HEADER_FMT: Final = "<IIIHHQQQQ"
RECORD_HEADER_SIZE: Final = 48
assert struct.calcsize(RECORD_HEADER_FMT) == RECORD_HEADER_SIZE
RECORD_ALIGN: Final = 8
KIND_COMMIT: Final = 1
# epoch, kind and reserved sit together at offset 8: an 8-byte anchor that the tail scan searches.
RECORD_ANCHOR_OFFSET: Final = 8
END_MARKER_SIZE: Final = RECORD_HEADER_SIZE  # zeros written after every record

# A patch in a record's payload: offset, length, then `length` bytes.
PATCH_HEAD_FMT: Final = "<II"
PATCH_HEAD_SIZE: Final = 8
assert struct.calcsize(PATCH_HEAD_FMT) == PATCH_HEAD_SIZE


def record_size(payload_length: int) -> int:
    """Bytes a record with this payload takes in the ring, padding included."""
    # align(RECORD_HEADER_SIZE + payload_length, RECORD_ALIGN), for a power-of-two alignment
    # in one expression: the replay loop calls this once per record.
    return (RECORD_HEADER_SIZE + payload_length + RECORD_ALIGN - 1) & -RECORD_ALIGN


def record_anchor(epoch: int) -> bytes:
    """The 8 bytes at offset 8 of every commit record written in ``epoch``."""
    return struct.pack("<IHH", epoch, KIND_COMMIT, 0)


@attrs.frozen
class RecordHeader:
    """The fixed fields of a journal record (its payload follows it)."""

    crc: int
    length: int
    epoch: int
    kind: int
    reserved: int
    seq: int
    position: int
    durable_seq: int
    generation: int


def decode_record_header(data: bytes | bytearray | memoryview) -> RecordHeader:
    """Unpack a record header (no validation)."""
    return RecordHeader(*struct.unpack_from(RECORD_HEADER_FMT, data))


def record_crc(record: bytes | bytearray | memoryview) -> int:
    """Masked crc of a whole record (everything after the crc field, padding included)."""
    return mask(crc(record[4:]))
