"""The fixed-size structures of _format: checksums, golden bytes, and hostile headers."""

from __future__ import annotations

import contextlib
import struct
from typing import Any

import attrs
import pytest
from hypothesis import given
from hypothesis import strategies as st

from journalstate._checksums import align, crc, mask, unmask
from journalstate._errors import (
    JournalStateError,
    NotAStore,
    TruncatedStore,
    Unrecoverable,
    UnsupportedVersion,
)
from journalstate._format import (
    END_MARKER_SIZE,
    KIND_COMMIT,
    RECORD_ANCHOR_OFFSET,
    RECORD_HEADER_SIZE,
    SLOT_HEAD_SIZE,
    SlotHead,
    decode_record_header,
    encode_slot,
    record_anchor,
    record_crc,
    record_size,
    slot_crc,
    slot_size_for,
)
from journalstate._header import (
    FORMAT_VERSION,
    HEADER_CRC_OFFSET,
    HEADER_FIXED_SIZE,
    HEADER_FMT,
    MAGIC,
    MAX_SCHEMA_LENGTH,
    Header,
    decode_header,
    encode_header,
    header_crc,
)
from journalstate._reader import read_record
from journalstate._reason import Reason
from journalstate._slots import read_slot
from journalstate._writer import build_record, encode_patches, encode_record
from tests.damage import fix_record_crc, flip_byte, truncate

u32 = st.integers(0, 0xFFFF_FFFF)
HEADER_ERRORS = (NotAStore, TruncatedStore, UnsupportedVersion, Unrecoverable)

# Distinct values, so that each field is recognisable in the golden bytes below.
GOLDEN_HEADER = Header(
    header_size=512,
    page_size=512,
    file_id=bytes(range(0xA0, 0xB0)),
    slot_size=512,
    slot0_offset=512,
    slot1_offset=1024,
    journal_offset=1536,
    journal_size=1024,
    state_size=16,
    schema=b"SCHEMA",
)


def reference_crc32c(data: bytes) -> int:
    """Bit-by-bit crc32c (reflected polynomial 0x82F63B78): an independent reference."""
    value = 0xFFFF_FFFF
    for byte in data:
        value ^= byte
        for _ in range(8):
            value = (value >> 1) ^ (0x82F6_3B78 if value & 1 else 0)
    return value ^ 0xFFFF_FFFF


# --- checksums ------------------------------------------------------------------------------------


def test_crc_is_castagnoli() -> None:
    """crc() is crc32c: the standard check value of b"123456789" is 0xE3069283."""
    assert crc(b"123456789") == 0xE306_9283
    assert crc(b"") == 0


@given(st.binary(max_size=300))
def test_crc_matches_reference(data: bytes) -> None:
    """crc() agrees with a bit-by-bit crc32c on any bytes."""
    assert crc(data) == reference_crc32c(data)


@given(st.binary(max_size=100), st.binary(max_size=100))
def test_crc_continues(first: bytes, second: bytes) -> None:
    """crc(b, crc(a)) is the crc of a + b, which header_crc and slot_crc rely on."""
    assert crc(second, crc(first)) == crc(first + second)


@given(u32)
def test_unmask_inverts_mask(value: int) -> None:
    """unmask(mask(v)) == v and mask(unmask(v)) == v for every u32."""
    assert unmask(mask(value)) == value
    assert mask(unmask(value)) == value
    assert 0 <= mask(value) <= 0xFFFF_FFFF


def test_mask_known_values() -> None:
    """mask rotates right by 15 bits and adds 0xA282EAD8, like LevelDB."""
    assert mask(crc(b"")) == 0xA282_EAD8
    assert mask(1) == (1 << 17) + 0xA282_EAD8
    assert mask(0xFFFF_FFFF) == (0xFFFF_FFFF + 0xA282_EAD8) & 0xFFFF_FFFF
    assert mask(crc(b"123456789")) == ((0xE306_9283 >> 15 | 0xE306_9283 << 17) + 0xA282_EAD8) & (
        0xFFFF_FFFF
    )


def test_align_and_sizes() -> None:
    """align rounds up; record and slot sizes include their header, padding and tail."""
    assert [align(n, 8) for n in (0, 1, 7, 8, 9)] == [0, 8, 8, 8, 16]
    assert record_size(0) == RECORD_HEADER_SIZE
    assert record_size(1) == RECORD_HEADER_SIZE + 8
    assert record_size(8) == RECORD_HEADER_SIZE + 8
    assert slot_size_for(16, 512) == 512
    assert slot_size_for(512 - SLOT_HEAD_SIZE - 8, 512) == 512
    assert slot_size_for(512 - SLOT_HEAD_SIZE - 7, 512) == 1024


# --- golden bytes ---------------------------------------------------------------------------------


def test_golden_header_bytes() -> None:
    """encode_header writes every field at its documented offset, little-endian."""
    encoded = encode_header(GOLDEN_HEADER)
    expected = bytes.fromhex(
        "894a53544154450a"  # 0   magic
        "01000000"  # 8   format_version 1
        "00020000"  # 12  header_size 512
        "00020000"  # 16  page_size 512
        "00000000"  # 20  flags
        "a0a1a2a3a4a5a6a7a8a9aaabacadaeaf"  # 24  file_id
        "0002000000000000"  # 40  slot_size 512
        "0002000000000000"  # 48  slot0_offset 512
        "0004000000000000"  # 56  slot1_offset 1024
        "0006000000000000"  # 64  journal_offset 1536
        "0004000000000000"  # 72  journal_size 1024
        "1000000000000000"  # 80  state_size 16
        "06000000"  # 88  schema_length 6
        "fee4b255"  # 92  header_crc
        "534348454d41"  # 96  schema descriptor "SCHEMA"
    )
    assert len(expected) == HEADER_FIXED_SIZE + 6
    assert encoded[: len(expected)] == expected
    assert encoded[len(expected) :] == bytes(512 - len(expected))
    (stored,) = struct.unpack_from("<I", encoded, HEADER_CRC_OFFSET)
    assert stored == header_crc(encoded[:HEADER_FIXED_SIZE], b"SCHEMA")


def test_golden_slot_bytes() -> None:
    """encode_slot writes head, state and the trailing generation at their offsets."""
    head = SlotHead(
        generation=0x0102_0304_0506_0708,
        epoch=0x1122_3344,
        seq=0x2122_2324_2526_2728,
        position=0x3132_3334_3536_3738,
        state_size=8,
    )
    expected = bytes.fromhex(
        "0807060504030201"  # 0   generation
        "44332211"  # 8   epoch
        "00000000"  # 12  flags
        "2827262524232221"  # 16  seq
        "3837363534333231"  # 24  position
        "0800000000000000"  # 32  state_size 8
        "fa73ad23"  # 40  slot_crc
        "00000000"  # 44  reserved
        "5354415445212121"  # 48  state "STATE!!!"
        "0807060504030201"  # 56  generation again
    )
    encoded = encode_slot(head, b"STATE!!!")
    assert encoded == expected
    assert struct.unpack_from("<I", encoded, 40)[0] == slot_crc(encoded, 8)


def test_golden_record_bytes() -> None:
    """encode_record writes header, payload and zero padding at their offsets."""
    encoded = encode_record(
        epoch=0x4433_2211,
        seq=0x0A0B,
        position=0x1234,
        durable_seq=0x0A0A,
        generation=3,
        payload=encode_patches([(2, b"hi")]),
    )
    expected = bytes.fromhex(
        "5fdcf829"  # 0   crc
        "0a000000"  # 4   length 10
        "11223344"  # 8   epoch
        "0100"  # 12  kind 1 (commit)
        "0000"  # 14  reserved
        "0b0a000000000000"  # 16  seq
        "3412000000000000"  # 24  position
        "0a0a000000000000"  # 32  durable_seq
        "0300000000000000"  # 40  generation
        "0200000002000000"  # 48  patch: state offset 2, length 2
        "6869"  # 56  patch bytes "hi"
        "000000000000"  # 58  padding to a multiple of 8
    )
    assert encoded == expected
    assert struct.unpack_from("<I", encoded)[0] == record_crc(encoded)
    assert encoded[RECORD_ANCHOR_OFFSET : RECORD_ANCHOR_OFFSET + 8] == record_anchor(0x4433_2211)


def test_decode_record_header_reads_every_field() -> None:
    """decode_record_header returns the fields encode_record wrote."""
    encoded = encode_record(epoch=9, seq=8, position=7, durable_seq=6, generation=5, payload=b"abc")
    head = decode_record_header(encoded)
    assert (head.length, head.epoch, head.kind, head.reserved) == (3, 9, KIND_COMMIT, 0)
    assert (head.seq, head.position, head.durable_seq, head.generation) == (8, 7, 6, 5)
    assert head.crc == record_crc(encoded)


# --- decode_header --------------------------------------------------------------------------------


def test_decode_header_round_trip() -> None:
    """decode_header(encode_header(h)) == h when the file is as long as the header says."""
    data = encode_header(GOLDEN_HEADER)
    assert decode_header("f", data, GOLDEN_HEADER.file_size) == GOLDEN_HEADER
    assert decode_header("f", data[: HEADER_FIXED_SIZE + 6], 1 << 30) == GOLDEN_HEADER


@given(
    page_shift=st.integers(9, 20),
    state_size=st.integers(0, 100_000),
    journal_pages=st.integers(1, 64),
    schema=st.binary(max_size=600),
    file_id=st.binary(min_size=16, max_size=16),
)
def test_decode_header_round_trip_any_layout(
    page_shift: int, state_size: int, journal_pages: int, schema: bytes, file_id: bytes
) -> None:
    """Every consistent layout round-trips through encode_header and decode_header."""
    page = 1 << page_shift
    header_size = align(HEADER_FIXED_SIZE + len(schema), page)
    slot_size = slot_size_for(state_size, page)
    header = Header(
        header_size=header_size,
        page_size=page,
        file_id=file_id,
        slot_size=slot_size,
        slot0_offset=header_size,
        slot1_offset=header_size + slot_size,
        journal_offset=header_size + 2 * slot_size,
        journal_size=journal_pages * page,
        state_size=state_size,
        schema=schema,
    )
    data = encode_header(header)
    assert decode_header("f", data, header.file_size) == header


def test_decode_header_wrong_magic_and_short_files() -> None:
    """No magic is NotAStore; a file cut inside the header is TruncatedStore."""
    data = encode_header(GOLDEN_HEADER)
    with pytest.raises(NotAStore):
        decode_header("f", b"", 0)
    with pytest.raises(NotAStore):
        decode_header("f", b"\x89JSTATE\r" + data[8:], len(data))
    with pytest.raises(TruncatedStore):
        decode_header("f", data[:50], 50)


def test_decode_header_newer_and_zero_version() -> None:
    """A newer version is UnsupportedVersion (with both versions); version 0 is damage."""
    data = bytearray(encode_header(GOLDEN_HEADER))
    data[8:12] = struct.pack("<I", FORMAT_VERSION + 1)
    with pytest.raises(Unrecoverable, match="version field reads"):  # crc not matching: damage
        decode_header("f", bytes(data), GOLDEN_HEADER.file_size)
    newer = attrs.evolve(GOLDEN_HEADER, format_version=FORMAT_VERSION + 1)
    with pytest.raises(UnsupportedVersion) as info:  # a real newer file keeps the crc rule
        decode_header("f", encode_header(newer), GOLDEN_HEADER.file_size)
    assert (info.value.version, info.value.supported) == (FORMAT_VERSION + 1, FORMAT_VERSION)
    data[8:12] = bytes(4)
    with pytest.raises(Unrecoverable, match="version 0"):
        decode_header("f", bytes(data), GOLDEN_HEADER.file_size)


def test_decode_header_file_one_byte_short() -> None:
    """A file one byte shorter than the header's layout is TruncatedStore."""
    data = encode_header(GOLDEN_HEADER)
    with pytest.raises(TruncatedStore, match=str(GOLDEN_HEADER.file_size)):
        decode_header("f", data, GOLDEN_HEADER.file_size - 1)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("flags", 1),
        ("page_size", 256),
        ("page_size", 768),
        ("header_size", 500),
        ("slot_size", 1024),
        ("slot1_offset", 1025),
        ("journal_offset", 2048),
        ("journal_size", 1000),
        ("journal_size", 0),
    ],
)
def test_decode_header_inconsistent_layout(field: str, value: int) -> None:
    """A checksummed header whose layout does not add up is Unrecoverable."""
    changes: dict[str, Any] = {field: value}
    header = attrs.evolve(GOLDEN_HEADER, **changes)
    with pytest.raises(Unrecoverable, match="damaged"):
        decode_header("f", encode_header(header), 1 << 20)


def test_decode_header_every_truncation() -> None:
    """Cut at every length, a header raises NotAStore (inside the magic) or TruncatedStore."""
    data = encode_header(GOLDEN_HEADER)
    full = GOLDEN_HEADER.file_size
    for size in range(len(data) + 1):
        cut = truncate(data, size)
        expected = NotAStore if size < len(MAGIC) else TruncatedStore
        with pytest.raises(expected):
            decode_header("f", cut, size)
    # Only what is past the header region can be missing from a file of the right size.
    for size in range(HEADER_FIXED_SIZE + 6, len(data) + 1):
        assert decode_header("f", truncate(data, size), full) == GOLDEN_HEADER


def schema_length(header: bytes | bytearray) -> int:
    """The schema_length field of a header."""
    return int(struct.unpack_from("<I", header, 88)[0])


def test_decode_header_every_bit_flip_is_detected() -> None:
    """Each single bit flip in the checksummed bytes raises the error its field calls for."""
    data = encode_header(GOLDEN_HEADER)
    covered = HEADER_FIXED_SIZE + len(GOLDEN_HEADER.schema)
    file_size = GOLDEN_HEADER.file_size
    for offset in range(covered):
        for bit in range(8):
            damaged = bytearray(data)
            flip_byte(damaged, offset, 1 << bit)
            if offset < len(MAGIC):
                expected: type[JournalStateError] = NotAStore
            elif (
                offset in range(88, 92)
                and schema_length(damaged) <= MAX_SCHEMA_LENGTH
                and HEADER_FIXED_SIZE + schema_length(damaged) > file_size
            ):
                # The schema length is read before the crc can be checked: a plausible length
                # past the end of the file is taken for a cut file, not for a damaged header.
                expected = TruncatedStore
            else:
                expected = Unrecoverable
            with pytest.raises(expected):
                decode_header("f", bytes(damaged), file_size)


@pytest.mark.parametrize("where", [0, -1])
def test_header_padding_must_be_zeros(where: int) -> None:
    """The padding after the descriptor is not in the crc, so a non-zero byte there is damage."""
    data = bytearray(encode_header(GOLDEN_HEADER))
    flip_byte(data, HEADER_FIXED_SIZE + len(GOLDEN_HEADER.schema) if where == 0 else len(data) - 1)
    with pytest.raises(Unrecoverable, match="padding"):
        decode_header("f", bytes(data), GOLDEN_HEADER.file_size)


@given(
    st.lists(st.tuples(st.integers(0, 101), st.integers(0, 7)), min_size=1, max_size=8),
    st.integers(0, 512),
    st.integers(0, 4096),
)
def test_decode_header_mutations_raise_only_store_errors(
    flips: list[tuple[int, int]], cut: int, file_size: int
) -> None:
    """Bit flips plus truncation of a real header raise only the four header errors."""
    damaged = bytearray(encode_header(GOLDEN_HEADER))
    for offset, bit in flips:
        flip_byte(damaged, offset, 1 << bit)
    with contextlib.suppress(*HEADER_ERRORS):
        decode_header("f", bytes(damaged[:cut]), file_size)


@given(st.binary(max_size=300), st.booleans(), st.integers(0, 1 << 40))
def test_decode_header_random_bytes_raise_only_store_errors(
    tail: bytes, with_magic: bool, file_size: int
) -> None:
    """Random bytes, with or without the magic in front, raise only the four header errors."""
    data = (MAGIC + tail) if with_magic else tail
    with contextlib.suppress(*HEADER_ERRORS):
        decode_header("f", data, file_size)


def _checksummed_header(fields: tuple[int | bytes, ...], schema: bytes) -> bytes:
    fixed = struct.pack(HEADER_FMT, *fields)
    checksum = header_crc(fixed, schema)
    return fixed[:HEADER_CRC_OFFSET] + struct.pack("<I", checksum) + schema


small_or_huge = st.one_of(
    st.sampled_from([0, 1, 96, 512, 1024, 1536, 4096, 8192]), st.integers(0, (1 << 64) - 1)
)


@given(
    version=st.integers(0, 3),
    header_size=small_or_huge,
    page_size=st.sampled_from([0, 1, 256, 512, 777, 4096, 1 << 21]),
    flags=st.sampled_from([0, 1]),
    slot_size=small_or_huge,
    slot0=small_or_huge,
    slot1=small_or_huge,
    journal_offset=small_or_huge,
    journal_size=small_or_huge,
    state_size=small_or_huge,
    schema=st.binary(max_size=40),
    schema_length=st.one_of(st.none(), st.integers(0, 0xFFFF_FFFF)),
    file_size=small_or_huge,
)
def test_decode_header_checksummed_hostile_fields(
    version: int,
    header_size: int,
    page_size: int,
    flags: int,
    slot_size: int,
    slot0: int,
    slot1: int,
    journal_offset: int,
    journal_size: int,
    state_size: int,
    schema: bytes,
    schema_length: int | None,
    file_size: int,
) -> None:
    """Hostile fields behind a valid crc are rejected, or decode to a self-consistent layout."""
    length = len(schema) if schema_length is None else schema_length
    fields = (
        MAGIC,
        version,
        header_size & 0xFFFF_FFFF,
        page_size,
        flags,
        bytes(16),
        slot_size,
        slot0,
        slot1,
        journal_offset,
        journal_size,
        state_size,
        length,
        0,
    )
    data = _checksummed_header(fields, schema)
    try:
        header = decode_header("f", data, file_size)
    except HEADER_ERRORS:
        return
    assert len(header.schema) <= MAX_SCHEMA_LENGTH
    assert header.header_size >= HEADER_FIXED_SIZE + len(header.schema)
    assert header.slot0_offset == header.header_size
    assert header.slot1_offset == header.slot0_offset + header.slot_size
    assert header.journal_offset == header.slot1_offset + header.slot_size
    assert header.slot_size >= SLOT_HEAD_SIZE + header.state_size + 8
    assert header.journal_size >= header.page_size
    assert header.file_size <= file_size
    assert header.flags == 0
    assert header.format_version == FORMAT_VERSION


# --- all-zero bytes never validate ----------------------------------------------------------------


def test_zero_record_header_is_the_end_not_a_record() -> None:
    """An all-zero ring reads as ZEROED at every position, for any epoch and sequence."""
    ring = bytes(4096)
    for position in (0, 8, 4096 - 8, 4096 * 5 + 24):
        for epoch, seq in ((0, 0), (1, 1)):
            assert read_record(ring, 4096, position, epoch=epoch, seq=seq) == (
                None,
                Reason.ZEROED,
                None,
            )


def test_zero_record_header_with_valid_crc_is_not_a_commit() -> None:
    """Zeros given a correct crc still fail: kind 0 is not a commit record."""
    ring = bytearray(4096)
    fix_record_crc(ring, 0)
    record, reason, head = read_record(ring, 4096, 0, epoch=0, seq=0)
    assert record is None
    assert reason is Reason.BAD_KIND
    assert head is not None
    assert head.kind == 0


def test_zero_slot_is_invalid() -> None:
    """An all-zero slot is ZEROED, never a valid state."""
    status, state = read_slot(bytes(512), 0, index=0, file_offset=512, state_size=16)
    assert not status.valid
    assert status.reason is Reason.ZEROED
    assert state is None


@given(
    patches=st.lists(st.tuples(st.integers(0, 2**32 - 1), st.binary(max_size=64)), max_size=5),
    fields=st.tuples(*[st.integers(0, 2**32 - 1)] * 5),
)
def test_build_record_equals_encode_record(
    patches: list[tuple[int, bytes]], fields: tuple[int, int, int, int, int]
) -> None:
    """The commit path's one-pass record is encode_record(encode_patches(...)) + end marker."""
    epoch, seq, position, durable_seq, generation = fields
    built, size = build_record(
        epoch=epoch,
        seq=seq,
        position=position,
        durable_seq=durable_seq,
        generation=generation,
        patches=patches,
    )
    expected = encode_record(
        epoch=epoch,
        seq=seq,
        position=position,
        durable_seq=durable_seq,
        generation=generation,
        payload=encode_patches(patches),
    )
    assert size == len(expected)
    assert built == expected + bytes(END_MARKER_SIZE)


def test_release_pages_drops_the_whole_pages_of_a_mapping_only() -> None:
    """release_pages advises MADV_DONTNEED on the whole pages inside a range of a mapping."""
    import mmap

    from journalstate._checksums import release_pages

    page = mmap.PAGESIZE
    calls: list[tuple[int, int, int]] = []

    class Mapping:
        def madvise(self, advice: int, start: int, length: int) -> None:
            calls.append((advice, start, length))

    release_pages(Mapping(), 1, 3 * page + 1)
    release_pages(Mapping(), 1, page)  # no whole page inside
    release_pages(bytearray(4 * page), 0, 4 * page)  # not a mapping: nothing to release
    assert calls == [(mmap.MADV_DONTNEED, page, 2 * page)]
    with mmap.mmap(-1, 4 * page) as real:
        real[:] = b"x" * (4 * page)
        release_pages(real, 0, 4 * page)
        assert real[page] == ord("x")  # a shared mapping's released pages keep their contents
