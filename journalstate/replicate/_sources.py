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

from journalstate._errors import StoreClosed, StoreReplaced, StoreRewound
from journalstate._follow import Cursor, Follower, Gap
from journalstate._format import RECORD_HEADER_FMT, RECORD_HEADER_SIZE, record_size
from journalstate._journal import check_patches
from journalstate._writer import encode_patches, encode_record

MAX_SEGMENT_BYTES: Final = 16 << 20
"""Record bytes one segment holds at most (a larger batch is cut into several)."""

_RECORD_HEADER = struct.Struct(RECORD_HEADER_FMT)


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


class Record(NamedTuple):
    """One record as the journal holds it, with its patches parsed."""

    seq: int
    epoch: int
    position: int
    data: bytes
    """The whole record: header, payload and padding."""
    patches: list[tuple[int, bytes]]


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

    def read(self, position: int, seq: int, limit: int) -> list[Record]:
        """The records after commit ``seq`` (starting at ``position``), oldest first, about
        ``limit`` bytes of them at most (one record at least); empty when there is none yet."""
        ...

    def current_seq(self) -> int:
        """The newest seq the source knows of (cheap, no lock)."""
        ...

    def shipped(self, position: int | None) -> None:
        """Every record before ``position`` is in the object store (None: shipping stopped)."""
        ...


def parse_records(data: bytes, position: int, seq: int, state_size: int) -> list[Record]:
    """The whole records in ``data`` (ring bytes from logical ``position``), which must follow
    commit ``seq``: consecutive seqs and positions. A record cut off at the end is left out.

    Raises:
        NewGeneration: the bytes are not the records that follow ``seq`` (they were
            overwritten while being copied: cannot happen under the writer's lock).
    """
    records: list[Record] = []
    at, end = 0, len(data)
    unpack = _RECORD_HEADER.unpack_from
    while end - at >= RECORD_HEADER_SIZE:
        _, length, epoch, _, _, rseq, rposition, _, _ = unpack(data, at)
        size = record_size(length)
        if rseq != seq + 1 or rposition != position + at:
            raise NewGeneration(
                "lapped",
                f"the journal at position {position + at} holds seq {rseq} at {rposition}, "
                f"not seq {seq + 1}",
            )
        if size > end - at:
            break
        payload = data[at + RECORD_HEADER_SIZE : at + RECORD_HEADER_SIZE + length]
        try:
            patches = check_patches(payload, state_size)
        except ValueError as e:
            raise NewGeneration("lapped", f"record {rseq}: {e}") from e
        records.append(Record(rseq, epoch, rposition, data[at : at + size], patches))
        at += size
        seq = rseq
    return records


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

    def read(self, position: int, seq: int, limit: int = MAX_SEGMENT_BYTES) -> list[Record]:
        try:
            found = self._store.replication_read(position, limit)
        except StoreClosed as e:
            raise SourceClosed(str(e)) from e
        if found is None:
            raise NewGeneration(
                "lapped",
                f"the writer overwrote the records after seq {seq} (position {position}, "
                f"journal {self.journal_size} bytes) before they were shipped",
            )
        last, data = found
        if last == seq:
            return []
        return parse_records(data, position, seq, self.state_size)

    def current_seq(self) -> int:
        seq: int = self._store.seq
        return seq

    def shipped(self, position: int | None) -> None:
        self._store.mark_shipped(position)


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

    def read(self, position: int, seq: int, limit: int = MAX_SEGMENT_BYTES) -> list[Record]:
        follower, store = self._follower, self._store
        assert follower is not None, "snapshot() first"
        assert (follower.cursor.seq, follower.cursor.position) == (seq, position)
        if self._broken is not None:
            raise self._broken
        if store.replaced:
            self._reopen = True
            raise NewGeneration("replaced", f"another store file replaced {self._path}")
        records: list[Record] = []
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
                records.append(Record(r.seq, epoch, r.position, data, r.patches))
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
        if not records and self._broken is not None:
            raise self._broken
        return records

    def current_seq(self) -> int:
        follower = self._follower
        seq: int = self._store.seq if follower is None else follower.cursor.seq
        return seq

    def shipped(self, position: int | None) -> None:
        pass  # another process's writer: nothing to tell it
