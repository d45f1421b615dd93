"""The two state slots: validating one slot, and choosing the slot recovery starts from."""

from __future__ import annotations

import struct

import pytest

from journalstate._format import (
    SLOT_CRC_OFFSET,
    SLOT_HEAD_SIZE,
    SLOT_TAIL_SIZE,
    SlotHead,
    encode_slot,
    slot_size_for,
)
from journalstate._reason import Reason
from journalstate._slots import SlotStatus, choose_slot, read_slot
from tests.damage import fix_slot_crc, flip_byte, put, zero

STATE_SIZE = 40
STATE = bytes(range(100, 100 + STATE_SIZE))
SLOT_SIZE = slot_size_for(STATE_SIZE, 512)
HEAD = SlotHead(generation=7, epoch=3, seq=42, position=9000, state_size=STATE_SIZE)
MEANINGFUL = SLOT_HEAD_SIZE + STATE_SIZE + SLOT_TAIL_SIZE  # bytes the crc covers (and its field)


def slots_buffer(head: SlotHead = HEAD, state: bytes = STATE, *, index: int = 1) -> bytearray:
    """Both slots' bytes with ``head``/``state`` written into slot ``index``, the other zero."""
    buf = bytearray(2 * SLOT_SIZE)
    put(buf, index * SLOT_SIZE, encode_slot(head, state))
    return buf


def read(buf: bytes | bytearray, index: int = 1) -> tuple[SlotStatus, bytes | None]:
    """read_slot on slot ``index`` of a two-slot buffer."""
    return read_slot(
        buf,
        index * SLOT_SIZE,
        index=index,
        file_offset=512 + index * SLOT_SIZE,
        state_size=STATE_SIZE,
    )


def status(index: int, generation: int | None) -> SlotStatus:
    """A SlotStatus: valid with ``generation``, or invalid (BAD_CHECKSUM) when it is None."""
    if generation is None:
        return SlotStatus(index, 512 * (index + 1), False, Reason.BAD_CHECKSUM, None)
    head = SlotHead(generation, 1, 0, 0, STATE_SIZE)
    return SlotStatus(index, 512 * (index + 1), True, None, head)


# --- read_slot ------------------------------------------------------------------------------------


def test_read_slot_valid() -> None:
    """An encoded slot reads back valid, with its head, state and file offset."""
    st, state = read(slots_buffer())
    assert st == SlotStatus(1, 512 + SLOT_SIZE, True, None, HEAD)
    assert st.generation == 7
    assert state == STATE


def test_read_slot_ignores_the_rest_of_its_pages() -> None:
    """Bytes after the tail generation are not part of the slot."""
    buf = slots_buffer()
    for offset in range(SLOT_SIZE + MEANINGFUL, 2 * SLOT_SIZE):
        buf[offset] = 0xA5
    assert read(buf) == (SlotStatus(1, 512 + SLOT_SIZE, True, None, HEAD), STATE)


def test_read_slot_generation_zero_and_empty_state() -> None:
    """Generation 0 and a zero-byte state are valid slots (a new store's older slot)."""
    head = SlotHead(0, 0, 0, 0, 0)
    buf = bytearray(512)
    put(buf, 0, encode_slot(head, b""))
    st, state = read_slot(buf, 0, index=0, file_offset=512, state_size=0)
    assert (st.valid, st.generation, state) == (True, 0, b"")


def test_read_slot_zeroed() -> None:
    """A slot whose head is all zeros is ZEROED, whatever follows it."""
    buf = slots_buffer()
    zero(buf, SLOT_SIZE, SLOT_HEAD_SIZE)
    st, state = read(buf)
    assert (st.valid, st.reason, st.head, st.generation, state) == (
        False,
        Reason.ZEROED,
        None,
        None,
        None,
    )


def test_read_slot_bad_size() -> None:
    """A slot written for another state size is BAD_SIZE, even with a valid crc."""
    other = SlotHead(7, 3, 42, 9000, STATE_SIZE - 8)
    st, state = read(slots_buffer(other, STATE[:-8]))
    assert (st.valid, st.reason, state) == (False, Reason.BAD_SIZE, None)


def test_read_slot_any_damaged_byte_is_bad_checksum() -> None:
    """Changing any byte of head, state or tail fails the crc (the size field: BAD_SIZE)."""
    clean = slots_buffer()
    for i in range(MEANINGFUL):
        for bits in (0x01, 0x80):
            buf = bytearray(clean)
            flip_byte(buf, SLOT_SIZE + i, bits)
            st, state = read(buf)
            expected = Reason.BAD_SIZE if i in range(32, 40) else Reason.BAD_CHECKSUM
            assert (st.valid, st.reason, state) == (False, expected, None), i


def test_read_slot_torn_write() -> None:
    """A slot write that stopped early, over an older slot's bytes, is never valid."""
    older = slots_buffer(SlotHead(5, 3, 30, 7000, STATE_SIZE), bytes(STATE_SIZE))
    newer = encode_slot(HEAD, STATE)
    for keep in range(1, len(newer)):
        buf = bytearray(older)
        put(buf, SLOT_SIZE, newer[:keep])
        st, _ = read(buf)
        if buf[SLOT_SIZE : SLOT_SIZE + len(newer)] == newer:
            assert st.head == HEAD, keep  # the bytes left out were equal already
        else:
            assert not st.valid, keep
            assert st.reason in (Reason.BAD_CHECKSUM, Reason.BAD_SIZE), keep


def test_read_slot_generation_mismatch() -> None:
    """A checksummed slot whose tail generation differs from its head is GENERATION_MISMATCH."""
    buf = slots_buffer()
    put(buf, SLOT_SIZE + SLOT_HEAD_SIZE + STATE_SIZE, struct.pack("<Q", 6))
    assert read(buf)[0].reason is Reason.BAD_CHECKSUM
    fix_slot_crc(buf, SLOT_SIZE, STATE_SIZE)
    st, state = read(buf)
    assert (st.valid, st.reason, state) == (False, Reason.GENERATION_MISMATCH, None)


@pytest.mark.parametrize(("offset", "name"), [(12, "flags"), (44, "reserved")])
def test_read_slot_nonzero_flags_or_reserved(offset: int, name: str) -> None:
    """A checksummed slot with non-zero flags or reserved field is rejected as BAD_KIND."""
    buf = slots_buffer()
    put(buf, SLOT_SIZE + offset, struct.pack("<I", 1))
    fix_slot_crc(buf, SLOT_SIZE, STATE_SIZE)
    st, _ = read(buf)
    assert (st.valid, st.reason) == (False, Reason.BAD_KIND), name


def test_read_slot_crc_field_position() -> None:
    """The crc sits at SLOT_CRC_OFFSET: fix_slot_crc restores a slot whose crc was zeroed."""
    buf = slots_buffer()
    zero(buf, SLOT_SIZE + SLOT_CRC_OFFSET, 4)
    assert read(buf)[0].reason is Reason.BAD_CHECKSUM
    fix_slot_crc(buf, SLOT_SIZE, STATE_SIZE)
    assert read(buf)[0].valid


# --- choose_slot ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("generations", "newest", "older"),
    [
        ((4, 5), 1, 0),
        ((5, 4), 0, 1),
        ((0, 1), 1, 0),
        ((1, 0), 0, 1),
        ((9, None), 0, None),
        ((None, 9), 1, None),
        ((None, 0), 1, None),
        ((None, None), None, None),
    ],
)
def test_choose_slot(
    generations: tuple[int | None, int | None], newest: int | None, older: int | None
) -> None:
    """Newest valid slot wins; previous=True picks the older one and needs both valid."""
    statuses = (status(0, generations[0]), status(1, generations[1]))
    assert choose_slot(statuses, previous=False) == newest
    assert choose_slot(statuses, previous=True) == older


def test_choose_slot_equal_generations_is_deterministic() -> None:
    """With equal generations slot 0 is the newest and slot 1 the previous: never the same."""
    statuses = (status(0, 3), status(1, 3))
    assert choose_slot(statuses, previous=False) == 0
    assert choose_slot(statuses, previous=True) == 1
    assert choose_slot(statuses, previous=False) == 0
