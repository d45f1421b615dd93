"""Following a live writer: from a position in a store's history to its newest commit. Pure.

What belongs here is :class:`Follower`, which holds a place in the history of a store (the
session's epoch, the seq of the last commit read, the journal position after it) and the state
image there, and moves both forward by reading the slots and the ring that a writer, in this
process or another one, may be writing at the same moment. The store's ``refresh``, ``wait``
and ``changes`` (``_live``) are built on it; why it can never show a torn or mixed state is in
docs/design.md, "Readers that follow a live writer".

Every read is of a copy, checked after it was copied: a record through the chain reader with
``copy_first``, a slot through :func:`read_slot`. What passes is exactly the bytes one commit or
one checkpoint wrote. What does not pass is a write in progress, bytes of another lap, or
damage, and which one it is is decided only from evidence observed *before* those bytes were
read: a writer writes record n completely before record n + 1, and a checkpoint only after
the records its seq covers.
"""

from __future__ import annotations

import bisect
import struct
from collections.abc import Iterator, Sequence
from typing import NamedTuple

from journalstate._checksums import Buffer
from journalstate._errors import StoreCorrupt, StoreRewound
from journalstate._format import END_MARKER_SIZE, SLOT_HEAD_FMT, SLOT_HEAD_SIZE, SlotHead
from journalstate._header import Header
from journalstate._journal import ring_read
from journalstate._reader import ChainReader, ChainRecord, apply_patches
from journalstate._reason import Reason
from journalstate._slots import read_slot

_SLOT_HEAD = struct.Struct(SLOT_HEAD_FMT)


class Cursor(NamedTuple):
    """A place in a store's history: the last commit read and where the next record goes."""

    epoch: int
    """The writing session whose records continue the chain."""
    seq: int
    """Sequence number of the last commit the image includes."""
    position: int
    """Logical journal position where the record of commit ``seq + 1`` starts."""
    generation: int
    """The newest checkpoint the cursor's history is known to include: a slot of another
    session with a generation up to this one is an earlier session's, not news."""


class Gap(Exception):
    """A newer state exists, but the records from the cursor to it are no longer readable.

    A checkpoint released their space and the writer wrote over it (or a new session started
    from a state this follower cannot reach record by record). ``head`` is the newest slot's.
    """

    def __init__(self, head: SlotHead) -> None:
        super().__init__(f"no records from the cursor to seq {head.seq}")
        self.head = head


def slot_heads(slots: Buffer, header: Header) -> tuple[bytes, bytes]:
    """The raw head bytes of both slots: cheap, unchecked, for noticing that one changed."""
    second = header.slot_size
    return bytes(slots[0:SLOT_HEAD_SIZE]), bytes(slots[second : second + SLOT_HEAD_SIZE])


def probe(slots: Buffer, ring: Buffer, header: Header, position: int) -> bytes:
    """Bytes that change when a commit or a checkpoint lands after ``position``.

    The first bytes at ``position`` (where the next record goes: an end marker of zeros until
    the writer appends) and both slot heads (a checkpoint, a new session). A waiter compares
    successive probes and reads the chain only when they differ.
    """
    heads = slot_heads(slots, header)
    return ring_read(ring, header.journal_size, position, 16) + heads[0] + heads[1]


def valid_slots(slots: Buffer, header: Header) -> list[tuple[SlotHead, bytes]]:
    """The slots valid now, each with a checked copy of its state.

    Each slot is copied whole and checked on the copy, so a slot the writer is rewriting
    fails its crc.
    """
    valid: list[tuple[SlotHead, bytes]] = []
    for index in (0, 1):
        status, state = read_slot(
            slots,
            index * header.slot_size,
            index=index,
            file_offset=header.slot_offsets[index],
            state_size=header.state_size,
        )
        if status.head is not None and state is not None:
            valid.append((status.head, state))
    return valid


def newest_slot(slots: Buffer, header: Header) -> tuple[SlotHead, bytes] | None:
    """The valid slot with the highest generation and a copy of its state, or None."""
    valid = valid_slots(slots, header)
    return max(valid, key=lambda v: v[0].generation) if valid else None


def _unchecked(raw: bytes, state_size: int) -> SlotHead | None:
    """The fields of a slot head, unchecked; None when they cannot be a slot of this store."""
    generation, epoch, _, seq, position, size, _, _ = _SLOT_HEAD.unpack(raw)
    if size != state_size or raw.count(0) == SLOT_HEAD_SIZE:
        return None
    return SlotHead(generation, epoch, seq, position, size)


class Follower:
    """A place in a store's history and the state image there, moved forward by reading.

    ``image`` is changed in place, one commit's patches at a time; a caller that must survive
    an exception between two of them keeps its own account (see ``_live``).
    """

    def __init__(self, path: str, header: Header, cursor: Cursor, image: bytearray) -> None:
        self.path, self.header = path, header
        self.cursor = cursor
        self.image = image
        self.quiet: bytes | None = None
        """A :func:`probe` taken before a reading that found nothing newer, where the next
        record goes was an end marker: while the probe reads the same, nothing is newer (the
        next record's length is not zero, and a checkpoint rewrites a slot head). Set and
        cleared by the caller."""

    def records(self, slots: Buffer, ring: Buffer) -> Iterator[ChainRecord]:
        """Apply and yield each commit after the cursor, in order, until there is no newer one.

        After each record is yielded, ``image`` and ``cursor`` include it. Where the session
        the cursor follows ended and a new one (a writer that reopened) continues from exactly
        this state, the records of the new session follow.

        Raises:
            Gap: a newer state exists that the records cannot reach (see :class:`Gap`).
            StoreRewound: a new session started from an earlier state than the cursor's, or a
                different one with the same seq (a roll-back).
            StoreCorrupt: a whole, checksummed record whose patches do not fit the state.
        """
        header = self.header
        journal_size = header.journal_size
        while True:
            # Read before the chain: what they show is evidence about the bytes read after.
            heads = slot_heads(slots, header)
            while True:
                cursor = self.cursor
                reader = ChainReader(
                    ring,
                    journal_size,
                    epoch=cursor.epoch,
                    position=cursor.position,
                    seq=cursor.seq,
                    end=cursor.position + journal_size - END_MARKER_SIZE,
                    state_size=header.state_size,
                    copy_first=True,
                )
                image, epoch, generation = self.image, cursor.epoch, cursor.generation
                for record in reader:
                    apply_patches(image, record.patches)
                    generation = max(generation, record.generation)
                    self.cursor = Cursor(
                        epoch, record.seq, record.position + record.size, generation
                    )
                    yield record
                stop = reader.stop
                assert stop is not None
                if stop.reason is None:
                    continue  # a lap's worth read: read on
                if stop.reason is Reason.BAD_PATCH:
                    raise StoreCorrupt(
                        self.path,
                        f"record {stop.seq + 1} is whole but its patches do not fit the state "
                        f"({stop.detail})",
                        offset=header.journal_offset + stop.position % journal_size,
                        reason=stop.reason,
                    )
                break
            if not self._ahead(heads):
                if not self._ahead(slot_heads(slots, header)):
                    return  # nothing newer than the cursor: caught up
                continue  # a checkpoint landed after the chain was read: read it again
            # A slot written before the chain was read is ahead of where the chain stopped.
            if not self._continue_session(slots):
                return

    def _ahead(self, heads: Sequence[bytes]) -> bool:
        """Whether a slot head shows a state past the cursor: a checkpoint newer than any the
        cursor's history includes, of a later seq or of another session."""
        cursor, state_size = self.cursor, self.header.state_size
        for raw in heads:
            head = _unchecked(raw, state_size)
            if (
                head is not None
                and head.generation > cursor.generation
                and (head.epoch != cursor.epoch or head.seq > cursor.seq)
            ):
                return True
        return False

    def _continue_session(self, slots: Buffer) -> bool:
        """Cross into a session a slot starts, when that slot continues the cursor's state.

        Called when a slot head read before the chain showed a state past where the chain
        stopped: the writer had finished every record up to that slot's seq before writing
        it, so a record the chain could not read then is gone, not in progress. A slot of
        another session at the cursor's seq with the cursor's state (the open checkpoint of a
        writer that reopened) continues the history, also when a newer checkpoint followed it.
        Returns False when the slots show nothing to act on after all (a slot being rewritten,
        a forged head). A slot that fails its check is read again at the next call: a
        checkpoint may be copying it (and its head bytes are already the final ones).

        Raises:
            Gap: the newest slot is past the cursor and nothing continues the cursor to it.
            StoreRewound: the newest slot is of another session and before the cursor, or at
                its seq with another state.
        """
        cursor = self.cursor
        valid = valid_slots(slots, self.header)
        news = sorted(
            (v for v in valid if v[0].generation > cursor.generation),
            key=lambda v: v[0].generation,
        )
        if not news:
            return False
        for head, state in news:
            if head.epoch != cursor.epoch and head.seq == cursor.seq and state == self.image:
                self.cursor = Cursor(head.epoch, head.seq, head.position, head.generation)
                return True
        head, state = news[-1]
        if head.epoch == cursor.epoch:
            if head.seq > cursor.seq:
                raise Gap(head)
            return False
        if head.seq <= cursor.seq:  # at the cursor's seq, its state differs (checked above)
            raise StoreRewound(
                self.path,
                f"the store went back to seq {head.seq} (epoch {head.epoch}), before the "
                f"state at seq {cursor.seq} this reader showed; a writer rolled it back. "
                "Open the path again",
            )
        raise Gap(head)

    def jump(self, slots: Buffer) -> bool:
        """Move to the newest valid slot when it is past the cursor; True if it moved.

        For a reader that wants the newest state and may skip commits (``refresh``), after a
        :class:`Gap`.

        Raises:
            StoreRewound: the newest slot is of another session and before the cursor, or at
                the cursor's seq with another state.
        """
        found = newest_slot(slots, self.header)
        if found is None:
            return False
        head, state = found
        cursor = self.cursor
        if head.epoch == cursor.epoch and head.seq <= cursor.seq:
            return False
        if head.seq < cursor.seq or (head.seq == cursor.seq and state != self.image):
            raise StoreRewound(
                self.path,
                f"the store went back to seq {head.seq} (epoch {head.epoch}), before the "
                f"state at seq {cursor.seq} this reader showed; a writer rolled it back. "
                "Open the path again",
            )
        self.image[:] = state
        self.cursor = Cursor(head.epoch, head.seq, head.position, head.generation)
        return True


class FieldIndex:
    """Which field paths a record's patches touch, by the fields' byte ranges in the image."""

    def __init__(self, fields: Sequence[tuple[int, int, str]]) -> None:
        ordered = sorted(fields)
        self._starts = [offset for offset, _, _ in ordered]
        self._fields = ordered

    def changed(self, patches: Sequence[tuple[int, bytes]]) -> tuple[str, ...]:
        """The paths of the fields that ``patches`` overlap, in the order of the image."""
        hit: set[int] = set()
        starts, fields = self._starts, self._fields
        for offset, data in patches:
            end = offset + len(data)
            i = max(bisect.bisect_right(starts, offset) - 1, 0)
            while i < len(fields) and fields[i][0] < end:
                start, size, _ = fields[i]
                if start + size > offset:
                    hit.add(i)
                i += 1
        return tuple(fields[i][2] for i in sorted(hit))
