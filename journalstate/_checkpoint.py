"""Checkpoints that write only what changed: the pages of a slot and the patch log behind them.

What belongs here: knowing which parts of the state changed since a slot was last written
(:class:`PatchLog`), and rewriting only those parts of that slot, with its head, tail and a crc
updated in proportion to the change (:func:`write_changes`). When to checkpoint, and the crash
windows of a checkpoint, are ``_chain``'s (docs/design.md, "Checkpoint").

The slot's bytes stay exactly those format.md defines: after :func:`write_changes` the slot is
byte for byte what a full write of the same head and state would leave, and its crc is the same
number, so readers and recovery cannot tell the two apart.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Sequence

from journalstate._checksums import crc32c, crc_region
from journalstate._format import SLOT_CRC_OFFSET, SLOT_HEAD_SIZE, SlotHead, encode_slot_head
from journalstate._slotcrc import SlotCrc
from journalstate._storage import Region

CHUNK = 4096
"""Bytes of the state a checkpoint rewrites, or leaves, as one piece."""

Patches = list[tuple[int, bytes]]


class PatchLog:
    """The patches of every commit since some point, numbered by a count that only grows.

    A commit appends its patches before it changes the state image; a slot remembers the count
    when it was last written whole and right (its *mark*), and the patches logged since name
    every chunk where the image may differ from that slot. Replaced whole when trimmed, so that
    one assignment swaps it.
    """

    __slots__ = ("entries", "start")

    def __init__(self, start: int, entries: list[Patches]) -> None:
        self.start = start
        """The count of the first entry."""
        self.entries = entries

    @property
    def end(self) -> int:
        """The count after the last entry: a mark for the image as it is now."""
        return self.start + len(self.entries)

    def since(self, mark: int) -> Sequence[Patches]:
        """The patches logged since ``mark`` (a count at or after ``start``)."""
        assert mark >= self.start
        return self.entries[mark - self.start :]

    def trimmed(self, keep: int) -> PatchLog:
        """A log without the entries before ``keep``."""
        keep = max(keep, self.start)
        return PatchLog(keep, self.entries[keep - self.start :])


def dirty_chunks(logged: Iterable[Patches], state_size: int) -> list[int]:
    """The chunks of the state that the logged patches touch, in order."""
    chunks: set[int] = set()
    for patches in logged:
        for offset, data in patches:
            first, last = offset // CHUNK, (offset + len(data) - 1) // CHUNK
            chunks.update(range(first, last + 1))
    return sorted(c for c in chunks if c * CHUNK < state_size)


def write_changes(
    slots: Region,
    slot_offset: int,
    head: SlotHead,
    image: bytes | bytearray,
    chunks: Sequence[int],
    crc: SlotCrc,
) -> tuple[int, int]:
    """Rewrite the listed chunks, the tail and the head of the slot at ``slot_offset``.

    The slot must hold, outside the listed chunks, exactly ``image``'s bytes. Returns the range
    written, ``(offset, length)`` within ``slots``, for the msync.

    Crash window: until the head is written the slot's crc (old) does not match its bytes
    (new chunks); after it, the chunks are all written. Either way the slot is whole and valid
    only once every write landed, which the caller's msync makes durable; a slot cut short in
    between fails its crc, like a full write cut short.
    """
    buf = slots.buffer
    state_size = head.state_size
    changes: list[tuple[int, int, int, int]] = []
    with memoryview(image) as view:
        for chunk in chunks:
            lo, hi = chunk * CHUNK, min(state_size, (chunk + 1) * CHUNK)
            at = slot_offset + SLOT_HEAD_SIZE + lo
            old = crc_region(buf, at, at + hi - lo)
            with view[lo:hi] as new:
                changes.append((SLOT_HEAD_SIZE + lo, hi - lo, old, int(crc32c(new))))
                slots.write(at, bytes(new))
    tail_at = slot_offset + SLOT_HEAD_SIZE + state_size
    tail = struct.pack("<Q", head.generation)
    changes.append(
        (
            SLOT_HEAD_SIZE + state_size,
            len(tail),
            crc_region(buf, tail_at, tail_at + len(tail)),
            int(crc32c(tail)),
        )
    )
    packed = bytearray(encode_slot_head(head))
    old_head = crc_region(buf, slot_offset, slot_offset + SLOT_CRC_OFFSET)
    changes.append((0, SLOT_CRC_OFFSET, old_head, int(crc32c(bytes(packed[:SLOT_CRC_OFFSET])))))
    (stored,) = struct.unpack_from("<I", buf, slot_offset + SLOT_CRC_OFFSET)
    (reserved,) = struct.unpack_from("<I", buf, slot_offset + SLOT_CRC_OFFSET + 4)
    if reserved != 0:  # covered by the crc: a full write's zero, not whatever is there
        changes.append(
            (
                SLOT_CRC_OFFSET + 4,
                4,
                int(crc32c(struct.pack("<I", reserved))),
                int(crc32c(bytes(4))),
            )
        )
    struct.pack_into("<I", packed, SLOT_CRC_OFFSET, crc.updated(stored, changes))
    slots.write(tail_at, tail)
    slots.write(slot_offset, bytes(packed))
    return slot_offset, SLOT_HEAD_SIZE + state_size + len(tail)
