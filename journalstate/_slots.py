"""The two state slots: validating each and choosing which one recovery starts from.

A slot holds a complete state image stamped with a generation (at both its ends), the epoch of
the session that wrote it, and the journal position and sequence number it covers. A checkpoint
always writes the slot that recovery does *not* start from, so one slot is intact at any instant.
"""

from __future__ import annotations

import struct
from collections.abc import Callable

import attrs

from journalstate._checksums import Buffer, crc_region, mask
from journalstate._format import (
    SLOT_CRC_OFFSET,
    SLOT_HEAD_FMT,
    SLOT_HEAD_SIZE,
    SLOT_TAIL_SIZE,
    SlotHead,
    slot_crc,
)
from journalstate._header import Header
from journalstate._reason import Reason


@attrs.frozen
class SlotStatus:
    """What recovery found in one slot."""

    index: int
    """0 or 1."""
    offset: int
    """File offset of the slot."""
    valid: bool
    reason: Reason | None
    """Why the slot is not valid (None when it is)."""
    head: SlotHead | None
    """The slot's fields when it is valid."""

    @property
    def generation(self) -> int | None:
        """The slot's generation, or None for an invalid slot."""
        return None if self.head is None else self.head.generation


def _checked_in_place(buf: Buffer, at: int, state_size: int) -> SlotHead | Reason:
    """The head of the slot at ``at`` if its checksum, computed over ``buf`` itself, holds.

    Nothing of the state is copied: a zeroed, mis-sized or forged slot (a sparse one included)
    costs a chunk of memory, never the state's size. The head returned comes from a read
    separate from the checksummed one, so only a caller that holds the writer lock may trust
    the pair without checking a copy again.
    """
    head_bytes = bytes(buf[at : at + SLOT_HEAD_SIZE])
    if head_bytes.count(0) == SLOT_HEAD_SIZE:
        return Reason.ZEROED
    generation, epoch, flags, seq, position, size, stored_crc, reserved = struct.unpack_from(
        SLOT_HEAD_FMT, head_bytes
    )
    if size != state_size:
        return Reason.BAD_SIZE
    end = at + SLOT_HEAD_SIZE + state_size + SLOT_TAIL_SIZE
    in_place = crc_region(
        buf, at + SLOT_CRC_OFFSET + 4, end, crc_region(buf, at, at + SLOT_CRC_OFFSET)
    )
    if mask(in_place) != stored_crc:
        return Reason.BAD_CHECKSUM
    (tail_generation,) = struct.unpack_from("<Q", buf, end - SLOT_TAIL_SIZE)
    if tail_generation != generation:
        return Reason.GENERATION_MISMATCH
    if flags != 0 or reserved != 0:
        return Reason.BAD_KIND
    return SlotHead(generation, epoch, seq, position, size)


def read_slot(
    buf: Buffer, at: int, *, index: int, file_offset: int, state_size: int
) -> tuple[SlotStatus, bytes | None]:
    """Validate the slot starting at ``at`` in ``buf``; return its status and state bytes."""

    def bad(reason: Reason) -> tuple[SlotStatus, None]:
        return SlotStatus(index, file_offset, False, reason, None), None

    # The checksum in place first: a slot that fails it costs no copy of its state.
    checked = _checked_in_place(buf, at, state_size)
    if isinstance(checked, Reason):
        return bad(checked)
    # Then one copy of the whole slot (at most MAX_STATE_SIZE plus 56 bytes), checked again:
    # fields and checksummed bytes must come from the same read, as a live writer may be
    # rewriting the slot.
    end = at + SLOT_HEAD_SIZE + state_size + SLOT_TAIL_SIZE
    whole = bytes(buf[at:end])
    generation, epoch, flags, seq, position, size, stored_crc, reserved = struct.unpack_from(
        SLOT_HEAD_FMT, whole
    )
    if size != state_size:  # rewritten between the two reads
        return bad(Reason.BAD_SIZE)
    if slot_crc(whole, state_size) != stored_crc:
        return bad(Reason.BAD_CHECKSUM)
    (tail_generation,) = struct.unpack_from("<Q", whole, SLOT_HEAD_SIZE + state_size)
    if tail_generation != generation or flags != 0 or reserved != 0:
        return bad(Reason.GENERATION_MISMATCH if tail_generation != generation else Reason.BAD_KIND)
    head = SlotHead(generation, epoch, seq, position, size)
    state = whole[SLOT_HEAD_SIZE : SLOT_HEAD_SIZE + state_size]
    return SlotStatus(index, file_offset, True, None, head), state


def read_slots(
    buf: Buffer, header: Header
) -> tuple[tuple[SlotStatus, bytes | None], tuple[SlotStatus, bytes | None]]:
    """Both slots of a store with this header (slot 1 starts ``header.slot_size`` bytes in)."""
    first, second = (
        read_slot(
            buf,
            index * header.slot_size,
            index=index,
            file_offset=header.slot_offsets[index],
            state_size=header.state_size,
        )
        for index in (0, 1)
    )
    return first, second


def read_base_slot(
    buf: Buffer, header: Header, validate: Callable[[bytes | bytearray], None]
) -> tuple[tuple[SlotStatus, SlotStatus], list[bytes | bytearray | None]]:
    """Both slots' statuses, and the state of the one recovery starts from only.

    For a caller that holds the store's writer lock, so that no writer rewrites a slot while it
    is read: each slot's checksum is computed once, over ``buf`` in place, and only the slot
    chosen is copied (once) and given to ``validate``. A chosen slot whose state does not
    decode counts as BAD_VALUE and the other one is tried. The slot not chosen is valid when
    its checksum holds; its state is neither copied nor decoded. Returns the statuses and the
    state bytes (None but for the chosen slot), as :func:`read_slots` pairs them.
    """
    statuses: list[SlotStatus] = []
    for index in (0, 1):
        at, offset = index * header.slot_size, header.slot_offsets[index]
        checked = _checked_in_place(buf, at, header.state_size)
        if isinstance(checked, Reason):
            statuses.append(SlotStatus(index, offset, False, checked, None))
        else:
            statuses.append(SlotStatus(index, offset, True, None, checked))
    images: list[bytes | bytearray | None] = [None, None]
    while (chosen := choose_slot((statuses[0], statuses[1]), previous=False)) is not None:
        image = slot_state(buf, header, chosen)
        try:
            validate(image)
        except ValueError:
            status = statuses[chosen]
            statuses[chosen] = SlotStatus(chosen, status.offset, False, Reason.BAD_VALUE, None)
            continue
        images[chosen] = image
        break
    return (statuses[0], statuses[1]), images


def slot_state(buf: Buffer, header: Header, index: int) -> bytearray:
    """A copy of the state bytes of slot ``index`` in ``buf``, unchecked."""
    start = index * header.slot_size + SLOT_HEAD_SIZE
    with memoryview(buf) as view, view[start : start + header.state_size] as state:
        return bytearray(state)


def choose_slot(statuses: tuple[SlotStatus, SlotStatus], *, previous: bool) -> int | None:
    """Index of the slot recovery starts from, or None when none qualifies.

    Normally the valid slot with the highest generation. With ``previous``, the valid slot with
    the *lower* generation, which requires both slots to be valid.
    """
    valid = [s for s in statuses if s.valid and s.head is not None]
    if previous:
        if len(valid) < 2:
            return None
        return min(valid, key=lambda s: (s.generation or 0, -s.index)).index
    if not valid:
        return None
    return max(valid, key=lambda s: (s.generation or 0, -s.index)).index
