"""On-disk constants and the fixed-size structures: header, slot, record header.

Everything here is pure (bytes in, values out) and mirrors ``docs/format.md`` name for name.
All integers are little-endian. Sizes are checked against their struct formats at import.
"""

from __future__ import annotations

import enum
import struct
import sys
from typing import TYPE_CHECKING, Any, Final, NoReturn, TypeAlias

import attrs
import crc32c as _crc32c

from journalstate._errors import (
    CounterExhausted,
    NotAStore,
    TruncatedStore,
    Unrecoverable,
    UnsupportedVersion,
)
from journalstate._schema import MAX_STATE_SIZE

if TYPE_CHECKING:  # only for the annotation: importing this module loads no I/O module
    import mmap

Buffer: TypeAlias = "bytes | bytearray | mmap.mmap"
"""Read access to mapped bytes: slicing and ``find`` work the same on all three."""


class ValueEnum(str, enum.Enum):
    """An enum of strings that prints as its value ("zeroed", not "Reason.ZEROED")."""

    def __str__(self) -> str:
        return str(self.value)

    def __format__(self, spec: str) -> str:
        return format(str(self.value), spec)


# --- checksums -----------------------------------------------------------------------------------

_MASK_DELTA: Final = 0xA282EAD8


def crc(data: bytes | bytearray | memoryview, value: int = 0) -> int:
    """Plain crc32c (Castagnoli) of ``data``, continuing from ``value``."""
    return int(_crc32c.crc32c(data, value))


CRC_CHUNK: Final = 1 << 20  # bytes checksummed per step over a mapping: no region is copied


def crc_region(buf: Buffer | memoryview, start: int, end: int, value: int = 0) -> int:
    """Plain crc32c of ``buf[start:end]``, continuing from ``value``, without copying the range.

    The bytes are read through memoryview slices of at most :data:`CRC_CHUNK` bytes, so a
    checksum over a large region of a mapping never materialises the region in memory.
    """
    with memoryview(buf) as view:
        for at in range(start, end, CRC_CHUNK):
            stop = min(end, at + CRC_CHUNK)
            with view[at:stop] as chunk:
                value = int(_crc32c.crc32c(chunk, value))
            if stop - start > CRC_CHUNK:
                release_pages(buf, at, stop)
    return value


def release_pages(buf: object, start: int, end: int) -> None:
    """Drop the whole pages of ``buf[start:end]`` from this process when ``buf`` is a mapping.

    ``MADV_DONTNEED`` on a shared file mapping only unmaps: the contents stay in the file and
    the page cache (dirty pages included) and are read back on the next access. Scans over
    large regions call this on what they have read, so their memory stays one chunk.

    Only a mapping has ``madvise``, and a mapping exists only once its module is loaded, so the
    module is looked up, never imported: this module stays free of I/O imports.
    """
    madvise = getattr(buf, "madvise", None)
    mmap_module = sys.modules.get("mmap")
    advice = getattr(mmap_module, "MADV_DONTNEED", None)
    if madvise is None or advice is None:
        return
    page: int = mmap_module.PAGESIZE  # type: ignore[union-attr]
    first, last = -(-start // page) * page, end // page * page
    if last > first:
        madvise(advice, first, last - first)


def mask(value: int) -> int:
    """Mask a crc before storing it.

    A crc computed over bytes that themselves contain crcs (a record stored inside a region that
    is checksummed again, a file copied into a store) is weak; rotating and adding a constant
    breaks that relation. Same transform as LevelDB's stored checksums.
    """
    return ((((value >> 15) | (value << 17)) & 0xFFFFFFFF) + _MASK_DELTA) & 0xFFFFFFFF


def unmask(masked: int) -> int:
    """Inverse of :func:`mask`."""
    rot = (masked - _MASK_DELTA) & 0xFFFFFFFF
    return ((rot >> 17) | (rot << 15)) & 0xFFFFFFFF


def align(n: int, to: int) -> int:
    """Round ``n`` up to a multiple of ``to``."""
    return -(-n // to) * to


# --- header (page 0 and following) ---------------------------------------------------------------

MAGIC: Final = b"\x89JSTATE\n"  # high bit catches 7-bit transfers, \n catches newline rewriting
FORMAT_VERSION: Final = 1

# magic, format_version, header_size, page_size, flags, file_id, slot_size, slot0_offset,
# slot1_offset, journal_offset, journal_size, state_size, schema_length, header_crc
HEADER_FMT: Final = "<8sIIII16sQQQQQQII"
HEADER_FIXED_SIZE: Final = 96
assert struct.calcsize(HEADER_FMT) == HEADER_FIXED_SIZE
HEADER_SIZE_OFFSET: Final = 12  # the header_size field (u32)
SCHEMA_LENGTH_OFFSET: Final = 88  # the schema_length field (u32)
HEADER_CRC_OFFSET: Final = 92  # the header_crc field: last 4 bytes of the fixed part
MAX_SCHEMA_LENGTH: Final = 1 << 24  # a longer descriptor is hostile, never allocated
MAX_JOURNAL_SIZE: Final = 1 << 30  # the largest ring a writer creates and a reader accepts


@attrs.frozen
class Header:
    """The file header: written once at creation, never modified."""

    header_size: int
    page_size: int
    file_id: bytes
    slot_size: int
    slot0_offset: int
    slot1_offset: int
    journal_offset: int
    journal_size: int
    state_size: int
    schema: bytes
    flags: int = 0
    format_version: int = FORMAT_VERSION

    @property
    def file_size(self) -> int:
        """Total size of a store file with this header."""
        return self.journal_offset + self.journal_size

    @property
    def slot_offsets(self) -> tuple[int, int]:
        """File offsets of slot 0 and slot 1."""
        return (self.slot0_offset, self.slot1_offset)


def header_crc(fixed: bytes | memoryview, schema: bytes | memoryview) -> int:
    """Masked crc over the fixed header (minus its crc field) and the schema descriptor."""
    return mask(crc(schema, crc(fixed[:HEADER_CRC_OFFSET])))


def encode_header(h: Header) -> bytes:
    """The header region's bytes, zero-padded to ``h.header_size``."""
    fixed = struct.pack(
        HEADER_FMT,
        MAGIC,
        h.format_version,
        h.header_size,
        h.page_size,
        h.flags,
        h.file_id,
        h.slot_size,
        h.slot0_offset,
        h.slot1_offset,
        h.journal_offset,
        h.journal_size,
        h.state_size,
        len(h.schema),
        0,
    )
    checksum = header_crc(fixed, h.schema)
    out = fixed[:HEADER_CRC_OFFSET] + struct.pack("<I", checksum) + h.schema
    return out + bytes(h.header_size - len(out))


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


def encode_slot(head: SlotHead, state: bytes | bytearray | memoryview) -> bytes:
    """A slot's meaningful bytes (head, state, tail); the rest of its pages is left alone."""
    assert len(state) == head.state_size
    packed = struct.pack(
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
    body = bytearray(packed)
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


MAX_PAGE_SIZE: Final = 1 << 20


def header_read_size(fixed: bytes, file_size: int) -> int:
    """How many bytes from the file's start :func:`decode_header` needs, given its first 96.

    The descriptor and the padding up to ``header_size``, bounded whatever the fields say (at
    most the largest descriptor plus the largest page) and by the file's size.
    """
    if len(fixed) < HEADER_FIXED_SIZE:
        return len(fixed)
    header_size = int.from_bytes(fixed[HEADER_SIZE_OFFSET : HEADER_SIZE_OFFSET + 4], "little")
    schema_length = int.from_bytes(fixed[SCHEMA_LENGTH_OFFSET : SCHEMA_LENGTH_OFFSET + 4], "little")
    wanted = max(
        HEADER_FIXED_SIZE + min(schema_length, MAX_SCHEMA_LENGTH),
        min(header_size, HEADER_FIXED_SIZE + MAX_SCHEMA_LENGTH + MAX_PAGE_SIZE),
    )
    return min(wanted, file_size)


def decode_header(path: str, data: bytes, file_size: int) -> Header:
    """Parse and validate the header region read from the start of a file.

    ``data`` is the first bytes of the file (at least the fixed part plus the descriptor when
    the file has them; the padding up to ``header_size`` is checked as far as ``data`` holds
    it). Every field is checked before it is trusted, so a hostile header can neither cause a
    large allocation nor a mapping outside the file, and the sizes it declares are within the
    limits a writer creates (journal at most ``MAX_JOURNAL_SIZE``, state at most
    ``MAX_STATE_SIZE``).

    Raises:
        NotAStore: the magic is wrong.
        TruncatedStore: the file is shorter than its header says.
        UnsupportedVersion: a newer format version.
        Unrecoverable: the header's checksum or layout is damaged.
    """
    if len(data) < len(MAGIC) or data[: len(MAGIC)] != MAGIC:
        raise NotAStore(path, "not a journalstate store (wrong magic)")
    if len(data) < HEADER_FIXED_SIZE:
        raise TruncatedStore(path, f"the file is {file_size} bytes, shorter than a header")
    fields = struct.unpack_from(HEADER_FMT, data)
    (_, version, header_size, page_size, flags, file_id, slot_size, slot0, slot1) = fields[:9]
    (journal_offset, journal_size, state_size, schema_length, stored_crc) = fields[9:]
    if version > FORMAT_VERSION:
        _refuse_newer_version(path, data, version, schema_length, stored_crc)

    def damaged(what: str) -> Unrecoverable:
        return Unrecoverable(path, f"the header is damaged: {what}", offset=0)

    if version == 0:
        raise damaged("format version 0")
    if schema_length > MAX_SCHEMA_LENGTH or HEADER_FIXED_SIZE + schema_length > len(data):
        if HEADER_FIXED_SIZE + schema_length > file_size and schema_length <= MAX_SCHEMA_LENGTH:
            raise TruncatedStore(path, "the file ends inside its header")
        raise damaged(f"schema descriptor length {schema_length}")
    schema = bytes(data[HEADER_FIXED_SIZE : HEADER_FIXED_SIZE + schema_length])
    if header_crc(data[:HEADER_FIXED_SIZE], schema) != stored_crc:
        raise damaged("checksum mismatch")
    problem = _layout_problem(fields)
    if problem:
        raise damaged(problem)
    # The padding after the descriptor is not covered by the crc; it must be zeros. Whatever
    # part of it ``data`` holds is checked (the opener passes the whole header region).
    padding = memoryview(data)[HEADER_FIXED_SIZE + schema_length : header_size]
    if padding.nbytes != padding.tobytes().count(0):
        raise damaged("non-zero bytes in the padding after the schema descriptor")
    header = Header(
        header_size=header_size,
        page_size=page_size,
        file_id=file_id,
        slot_size=slot_size,
        slot0_offset=slot0,
        slot1_offset=slot1,
        journal_offset=journal_offset,
        journal_size=journal_size,
        state_size=state_size,
        schema=schema,
        flags=flags,
        format_version=version,
    )
    if file_size < header.file_size:
        raise TruncatedStore(
            path, f"the file is {file_size} bytes but its header says {header.file_size}"
        )
    return header


def _refuse_newer_version(
    path: str, data: bytes, version: int, schema_length: int, stored_crc: int
) -> NoReturn:
    """Raise for a header whose version is newer than this reader's.

    Every version keeps the fixed header and its crc rule, so a newer file still has a valid
    crc here; without one, the version field itself is more likely damaged.

    Raises:
        UnsupportedVersion: the crc holds: a newer format.
        Unrecoverable: it does not: a damaged version field.
    """
    fits = schema_length <= MAX_SCHEMA_LENGTH and HEADER_FIXED_SIZE + schema_length <= len(data)
    end = HEADER_FIXED_SIZE + schema_length if fits else HEADER_FIXED_SIZE
    if header_crc(data[:HEADER_FIXED_SIZE], data[HEADER_FIXED_SIZE:end]) == stored_crc:
        raise UnsupportedVersion(path, version, FORMAT_VERSION)
    raise Unrecoverable(
        path, f"the header is damaged (its version field reads {version})", offset=0
    )


def _layout_problem(fields: tuple[Any, ...]) -> str | None:
    """What is wrong with the sizes and offsets of checksummed header ``fields``, if anything.

    The sizes must be within the limits a writer creates (journal at most ``MAX_JOURNAL_SIZE``,
    state at most ``MAX_STATE_SIZE``) and the regions must follow each other as a writer lays
    them out.
    """
    (_, _, header_size, page_size, flags, _, slot_size, slot0, slot1) = fields[:9]
    (journal_offset, journal_size, state_size, schema_length, _) = fields[9:]
    if page_size == 0 or page_size & (page_size - 1) or not 512 <= page_size <= MAX_PAGE_SIZE:
        return f"page size {page_size}"
    if journal_size > MAX_JOURNAL_SIZE:
        return f"journal size {journal_size} is more than {MAX_JOURNAL_SIZE}"
    if state_size > MAX_STATE_SIZE:
        return f"state size {state_size} is more than {MAX_STATE_SIZE}"
    if (
        header_size != align(HEADER_FIXED_SIZE + schema_length, page_size)
        or slot_size != slot_size_for(state_size, page_size)
        or slot0 != header_size
        or slot1 != slot0 + slot_size
        or journal_offset != slot1 + slot_size
        or journal_size % page_size
        or journal_size < page_size
        or flags != 0
    ):
        return "inconsistent layout"
    return None
