"""The file header (page 0 and following): its fields, encoding and validating decoder.

Pure, and mirrors the header section of ``docs/format.md`` name for name. The header is written
once at creation; :func:`decode_header` checks every field before it is trusted, so a hostile
header can neither cause a large allocation nor a mapping outside the file.
"""

from __future__ import annotations

import struct
from typing import Any, Final, NoReturn

import attrs

from journalstate._checksums import align, crc, mask
from journalstate._errors import NotAStore, TruncatedStore, Unrecoverable, UnsupportedVersion
from journalstate._format import slot_size_for
from journalstate._schema import MAX_STATE_SIZE

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


def layout_header(
    descriptor: bytes, state_size: int, journal_size: int, page_size: int, file_id: bytes
) -> Header:
    """The header of a new store file: the header pages, both slots, then the journal ring."""
    header_size = align(HEADER_FIXED_SIZE + len(descriptor), page_size)
    slot_size = slot_size_for(state_size, page_size)
    return Header(
        header_size=header_size,
        page_size=page_size,
        file_id=file_id,
        slot_size=slot_size,
        slot0_offset=header_size,
        slot1_offset=header_size + slot_size,
        journal_offset=header_size + 2 * slot_size,
        journal_size=journal_size,
        state_size=state_size,
        schema=descriptor,
    )


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
    version, header_size, schema_length, stored_crc = fields[1], fields[2], fields[12], fields[13]
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
    header = _header_of(fields, schema)
    if file_size < header.file_size:
        raise TruncatedStore(
            path, f"the file is {file_size} bytes but its header says {header.file_size}"
        )
    return header


def _header_of(fields: tuple[Any, ...], schema: bytes) -> Header:
    """The :class:`Header` of checked header ``fields`` and the descriptor they frame."""
    (_, version, header_size, page_size, flags, file_id, slot_size, slot0, slot1) = fields[:9]
    (journal_offset, journal_size, state_size, _, _) = fields[9:]
    return Header(
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
