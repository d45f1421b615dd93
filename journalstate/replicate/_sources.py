"""What a shipper reads: a store's state at a seq, and its records after a journal position.

What belongs here are the two sources a :class:`~journalstate.replicate._shipper.Shipper`
reads, and the parsing of raw records they share:

* :class:`WriterSource`, inside the writer's process. Under the store's lock it only reads the
  head (tail and seq) and copies the ring bytes since the last shipped position (or, for a
  snapshot, the state image); parsing happens after the lock is released.
* :class:`FollowerSource`, for the sidecar: a read-only store of another process's file, read
  through the follower of ``_follow`` (every record copied before it is checked), each record
  re-encoded into the bytes the writer wrote (the same bytes: restore checks them anyway).

A source that cannot continue without a gap raises :class:`NewGeneration` with the reason the
generation manifest records: ``"lapped"`` (the records after the shipped position were
overwritten), ``"rewound"`` (the store went back) or ``"replaced"`` (another file at the path).
"""

from __future__ import annotations

import struct
from typing import Any, Final, NamedTuple, Protocol

from journalstate._checksums import crc
from journalstate._errors import StoreClosed, StoreReplaced, StoreRewound
from journalstate._follow import Cursor, Follower, Gap
from journalstate._format import (
    PATCH_HEAD_FMT,
    PATCH_HEAD_SIZE,
    RECORD_HEADER_FMT,
    RECORD_HEADER_SIZE,
)
from journalstate._writer import encode_patches, encode_record

COPY_IMAGE_MAX = 1 << 20
"""States up to this size are copied from the writer with the records (under its lock, once a
pass): the shipper then reads no record but the first. Larger ones are followed by applying
each record's patches to the shipper's own image."""

MAX_SEGMENT_BYTES: Final = 16 << 20
"""Record bytes one segment holds at most (a larger batch is cut into several)."""

_RECORD_HEADER = struct.Struct(RECORD_HEADER_FMT)
_PATCH_HEAD = struct.Struct(PATCH_HEAD_FMT)


class NewGeneration(Exception):
    """The source cannot continue the shipped history without a gap: start a new generation."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason


class SourceClosed(Exception):
    """The store was closed (or this is a forked child): nothing more can be read."""


class Snapshot(NamedTuple):
    """The store's state at one commit, copied under its lock."""

    seq: int
    epoch: int
    position: int
    """Where the record of commit ``seq + 1`` starts in the journal."""
    image: bytes


class Segment(NamedTuple):
    """Records ready to ship as one segment object, and the state after them."""

    first_seq: int
    last_seq: int
    first_position: int
    end_position: int
    """The journal position after the last record."""
    epochs: tuple[int, int]
    """The lowest and highest epoch of its records."""
    data: bytes
    """The records, contiguous, exactly as the journal holds them."""
    state_crc: int
    """crc32c of the state image after ``last_seq``."""


class Source(Protocol):
    """What a shipper reads from. ``kind`` is the manifest's ``"source"``."""

    kind: str
    file_id: str
    descriptor: bytes
    state_size: int
    journal_size: int

    def snapshot(self) -> Snapshot:
        """The newest committed state, consistent with the records read after it."""
        ...

    def read(self, position: int, seq: int, limit: int, image: bytearray) -> list[Segment]:
        """The records after commit ``seq`` (starting at ``position``), oldest first, as
        segments of at most ``limit`` bytes (one record at least), each record's patches
        applied to ``image`` (the state at ``seq``); empty when there is none yet."""
        ...

    def current_seq(self) -> int:
        """The newest seq the source knows of (cheap, no lock)."""
        ...

    def shipped(self, position: int | None) -> None:
        """Every record before ``position`` is in the object store (None: shipping stopped)."""
        ...

    def unshipped(self, position: int) -> int:
        """Bytes of records after ``position`` (0 when the source cannot tell cheaply)."""
        ...


class _Cutter:
    """Collects records into segments of at most ``limit`` bytes (one record at least), cut
    also where the positions do not follow on; ``image`` already includes each record added."""

    def __init__(self, image: bytearray, limit: int) -> None:
        self.image, self.limit = image, limit
        self.segments: list[Segment] = []
        self._parts: list[bytes] = []
        self._size = 0
        self._first = self._last = self._position = self._end = 0
        self._epochs = (0, 0)

    def fits(self, position: int, size: int) -> bool:
        """Whether a record at ``position`` of ``size`` bytes joins the open segment."""
        return not self._parts or (position == self._end and self._size + size <= self.limit)

    def cut(self) -> None:
        """Close the open segment (the image is the state after its last record)."""
        if self._parts:
            data = b"".join(self._parts) if len(self._parts) > 1 else self._parts[0]
            self.segments.append(
                Segment(
                    self._first,
                    self._last,
                    self._position,
                    self._end,
                    self._epochs,
                    data,
                    crc(self.image),
                )
            )
            self._parts, self._size = [], 0

    def add(self, seq: int, epoch: int, position: int, data: bytes) -> None:
        """Add a record whose patches are not applied yet (call :meth:`fits` first)."""
        if not self._parts:
            self._first, self._position, self._epochs = seq, position, (epoch, epoch)
        else:
            low, high = self._epochs
            self._epochs = (min(low, epoch), max(high, epoch))
        self._parts.append(data)
        self._size += len(data)
        self._last, self._end = seq, position + len(data)


def scan_records(
    data: bytes, position: int, seq: int, image: bytearray, limit: int
) -> list[Segment]:
    """Cut the whole records in ``data`` (ring bytes from logical ``position``, following
    commit ``seq``) into segments, applying each record's patches to ``image``. A record cut
    off at the end of ``data`` is left out. One pass, no copy of a record: the writer's
    shipper runs it on every record.

    Raises:
        NewGeneration: the bytes are not the records that follow ``seq`` (cannot happen for
            bytes copied under the writer's lock), or a patch falls outside the state.
    """
    cutter = _Cutter(image, limit)
    view = memoryview(data)
    at, end = 0, len(data)
    start = 0  # where the open segment's bytes start in data
    unpack, patch_head = _RECORD_HEADER.unpack_from, _PATCH_HEAD.unpack_from
    state_size = len(image)
    first = seq + 1
    epochs: tuple[int, int] | None = None
    while end - at >= RECORD_HEADER_SIZE:
        _, length, epoch, _, _, rseq, rposition, _, _ = unpack(data, at)
        size = (RECORD_HEADER_SIZE + length + 7) & -8  # record_size(length), inline
        if rseq != seq + 1 or rposition != position + at:
            raise NewGeneration(
                "lapped",
                f"the journal at position {position + at} holds seq {rseq} at {rposition}, "
                f"not seq {seq + 1}",
            )
        if size > end - at:
            break
        if at > start and at + size - start > limit:
            _close(cutter, view, start, at, first, seq, position, epochs)
            start, first, epochs = at, rseq, None
        p, stop = at + RECORD_HEADER_SIZE, at + RECORD_HEADER_SIZE + length
        while p < stop:
            offset, n = patch_head(data, p)
            p += PATCH_HEAD_SIZE
            if offset + n > state_size or p + n > stop:
                raise NewGeneration("lapped", f"record {rseq}: a patch outside the state")
            image[offset : offset + n] = view[p : p + n]
            p += n
        epochs = (
            (epoch, epoch) if epochs is None else (min(epochs[0], epoch), max(epochs[1], epoch))
        )
        seq = rseq
        at += size
    if at > start:
        _close(cutter, view, start, at, first, seq, position, epochs)
    return cutter.segments


def _close(
    cutter: _Cutter,
    view: memoryview,
    start: int,
    end: int,
    first: int,
    last: int,
    position: int,
    epochs: tuple[int, int] | None,
) -> None:
    assert epochs is not None
    cutter.segments.append(
        Segment(
            first,
            last,
            position + start,
            position + end,
            epochs,
            bytes(view[start:end]),
            crc(cutter.image),
        )
    )


class WriterSource:
    """The writer's own store, read under its lock (see the module docstring)."""

    kind = "writer"

    def __init__(self, store: Any) -> None:
        self._store = store
        header = store.header
        self.file_id: str = header.file_id.hex()
        self.descriptor: bytes = header.schema
        self.state_size: int = header.state_size
        self.journal_size: int = header.journal_size

    def snapshot(self) -> Snapshot:
        try:
            return Snapshot(*self._store.replication_snapshot())
        except StoreClosed as e:
            raise SourceClosed(str(e)) from e

    def read(self, position: int, seq: int, limit: int, image: bytearray) -> list[Segment]:
        try:
            found = self._store.replication_read(
                position, limit, image=self.state_size <= COPY_IMAGE_MAX
            )
        except StoreClosed as e:
            raise SourceClosed(str(e)) from e
        if found is None:
            raise NewGeneration(
                "lapped",
                f"the writer overwrote the records after seq {seq} (position {position}, "
                f"journal {self.journal_size} bytes) before they were shipped",
            )
        last, data, state = found
        if last == seq:
            return []
        if state is None or len(data) > limit:
            return scan_records(data, position, seq, image, limit)
        # The bytes reach the tail and fit one segment, and the writer's image after them
        # came with them: no record needs reading beyond the first header. Every record of
        # this session carries its epoch; restore checks each one anyway.
        _, _, epoch, _, _, first, first_position, _, _ = _RECORD_HEADER.unpack_from(data, 0)
        if first != seq + 1 or first_position != position:
            raise NewGeneration(
                "lapped", f"the journal at position {position} holds seq {first}, not {seq + 1}"
            )
        image[:] = state
        end = position + len(data)
        return [Segment(first, last, position, end, (epoch, epoch), data, crc(state))]

    def current_seq(self) -> int:
        seq: int = self._store.seq
        return seq

    def shipped(self, position: int | None) -> None:
        self._store.mark_shipped(position)

    def unshipped(self, position: int) -> int:
        tail: int = self._store.position
        return tail - position


class FollowerSource:
    """Another process's store, followed through a read-only open (for the sidecar).

    It owns the read-only store and opens it again after the store was rewound or replaced.
    """

    kind = "sidecar"

    def __init__(self, path: str) -> None:
        self._path = path
        self._store: Any = None
        self._follower: Follower | None = None
        self._reopen = True
        self._broken: NewGeneration | None = None
        self._open()

    def _open(self) -> None:
        import journalstate as js  # the package imports this module only when replicating

        if self._store is not None:
            self._store.close()
            self._store = None
        store: Any = js.open(self._path, None, readonly=True)
        self._store = store
        header = store.header
        self.file_id: str = header.file_id.hex()
        self.descriptor: bytes = header.schema
        self.state_size: int = header.state_size
        self.journal_size: int = header.journal_size
        self._reopen = False

    @property
    def store(self) -> Any:
        """The read-only store followed now."""
        return self._store

    def close(self) -> None:
        """Close the read-only store."""
        if self._store is not None:
            self._store.close()

    def snapshot(self) -> Snapshot:
        if self._reopen:
            self._open()
        try:
            self._store.refresh()
        except (StoreRewound, StoreReplaced):
            self._open()
            self._store.refresh()
        store = self._store  # read-only: only refresh() moves what these read
        image = bytes(store.state_image())
        seq, epoch, position = store.seq, store.epoch, store.position
        cursor = Cursor(epoch, seq, position, store.generation)
        self._follower = Follower(self._path, store.header, cursor, bytearray(image))
        self._broken = None
        return Snapshot(seq, epoch, position, image)

    def read(self, position: int, seq: int, limit: int, image: bytearray) -> list[Segment]:
        follower, store = self._follower, self._store
        assert follower is not None, "snapshot() first"
        assert (follower.cursor.seq, follower.cursor.position) == (seq, position)
        if self._broken is not None:
            raise self._broken
        if store.replaced:
            self._reopen = True
            raise NewGeneration("replaced", f"another store file replaced {self._path}")
        cutter = _Cutter(image, limit)
        total = 0
        slots, ring = store.slot_buffer(), store.ring_buffer()
        try:
            for r in follower.records(slots, ring):
                epoch = follower.cursor.epoch
                data = encode_record(
                    epoch=epoch,
                    seq=r.seq,
                    position=r.position,
                    durable_seq=r.durable_seq,
                    generation=r.generation,
                    payload=encode_patches(r.patches),
                )
                if not cutter.fits(r.position, len(data)):
                    cutter.cut()
                for offset, patch in r.patches:
                    image[offset : offset + len(patch)] = patch
                cutter.add(r.seq, epoch, r.position, data)
                total += len(data)
                if total >= limit:
                    break
        except Gap as gap:
            self._broken = NewGeneration(
                "lapped", f"the records after seq {follower.cursor.seq} are gone ({gap})"
            )
        except StoreRewound as e:
            self._reopen = True
            self._broken = NewGeneration("rewound", str(e))
        cutter.cut()
        if not cutter.segments and self._broken is not None:
            raise self._broken
        return cutter.segments

    def current_seq(self) -> int:
        follower = self._follower
        seq: int = self._store.seq if follower is None else follower.cursor.seq
        return seq

    def shipped(self, position: int | None) -> None:
        pass  # another process's writer: nothing to tell it

    def unshipped(self, position: int) -> int:
        return 0  # reading it is the follower's work: the interval decides
