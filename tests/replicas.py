"""Replicas built by hand from a real store's journal records, for restore's tests.

:func:`record_history` commits states into a real store and copies each commit's record bytes
out of its ring right after the commit (before any later lap can overwrite them), with the
state image at every seq. :func:`ship` encodes a generation of that history (manifest,
snapshots, segments cut where the test says) into an object store, as a shipper would.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import attrs

import journalstate as js
from journalstate._checksums import crc
from journalstate._format import decode_record_header
from journalstate._journal import ring_read
from journalstate.replicate._objects import ObjectStore
from journalstate.replicate._objformat import (
    encode_manifest,
    encode_segment,
    encode_snapshot,
    manifest_key,
    segment_key,
    snapshot_key,
)


@attrs.frozen
class Rec:
    """One commit's record as the ring held it."""

    seq: int
    position: int
    epoch: int
    raw: bytes


@attrs.frozen
class History:
    """A store's commits: every record, and the state image and epoch at every seq."""

    file_id: bytes
    descriptor: bytes
    journal_size: int
    images: dict[int, bytes]
    epochs: dict[int, int]
    """The epoch of the state at each seq (the record's; the store's at its first seq)."""
    records: dict[int, Rec]

    @property
    def first_seq(self) -> int:
        return min(self.images)

    @property
    def last_seq(self) -> int:
        return max(self.images)

    def state_crc(self, seq: int) -> int:
        return crc(self.images[seq])


def record_history(
    path: Path,
    cls: type[Any],
    states: Iterable[Any],
    *,
    journal_size: int = 8192,
    reopen_at: Sequence[int] = (),
) -> History:
    """Commit ``states`` into a new store at ``path``, copying every record as it is written.

    The store is closed and opened again (a new epoch) before the commits whose index is in
    ``reopen_at``. A state equal to the current one commits nothing (no record, no seq).
    """
    store: js.Store[Any] = js.open(path, cls, journal_size=journal_size)
    try:
        images = {store.seq: bytes(store.state_image())}
        epochs = {store.seq: store.epoch}
        records: dict[int, Rec] = {}
        file_id, descriptor = store.header.file_id, store.header.schema
        for i, state in enumerate(states):
            if i in reopen_at:
                store.close()
                store = js.open(path, cls)
            before = store.position
            seq = store.commit(state)
            if seq in images:
                continue
            raw = ring_read(store.ring_buffer(), journal_size, before, store.position - before)
            head = decode_record_header(raw)
            assert head.seq == seq
            assert head.position == before
            records[seq] = Rec(seq, before, head.epoch, raw)
            images[seq] = bytes(store.state_image())
            epochs[seq] = head.epoch
    finally:
        store.close()
    return History(file_id, descriptor, journal_size, images, epochs, records)


def segment_bytes(
    h: History, generation: str, first: int, last: int, *, written_at: float | None = None
) -> bytes:
    """The segment object of records ``first..last`` of ``h``."""
    recs = [h.records[s] for s in range(first, last + 1)]
    return encode_segment(
        file_id=h.file_id,
        generation=generation,
        first_seq=first,
        last_seq=last,
        first_position=recs[0].position,
        prev_state_crc=h.state_crc(first - 1),
        state_crc=h.state_crc(last),
        epochs=(min(r.epoch for r in recs), max(r.epoch for r in recs)),
        records=b"".join(r.raw for r in recs),
        written_at=written_at,
    )


def snapshot_bytes(
    h: History, generation: str, seq: int, *, written_at: float | None = None
) -> bytes:
    """The snapshot object of the state at ``seq`` of ``h``."""
    return encode_snapshot(
        file_id=h.file_id,
        generation=generation,
        seq=seq,
        epoch=h.epochs[seq],
        descriptor=h.descriptor,
        image=h.images[seq],
        journal_size=h.journal_size,
        written_at=written_at,
    )


def manifest_bytes(
    h: History, generation: str, base_seq: int, *, written_at: float | None = None
) -> bytes:
    """The manifest of a generation of ``h`` starting at ``base_seq``."""
    return encode_manifest(
        file_id=h.file_id,
        generation=generation,
        host="test",
        pid=1,
        source="writer",
        reason="start",
        previous=None,
        base_seq=base_seq,
        state_size=len(h.images[base_seq]),
        journal_size=h.journal_size,
        written_at=written_at,
    )


def ship(
    store: ObjectStore,
    h: History,
    generation: str,
    *,
    base: int | None = None,
    cuts: Iterable[int] = (),
    snapshots: Iterable[int] = (),
    upto: int | None = None,
    clock: itertools.count[int] | None = None,
) -> list[str]:
    """Write a generation of ``h`` from ``base`` to ``upto`` as a shipper would; its keys.

    A snapshot at ``base`` and at each seq of ``snapshots``; segments end at each seq of
    ``cuts`` (and at ``upto``). ``written_at`` values come from ``clock`` (increasing).
    """
    clock = clock if clock is not None else itertools.count(1)
    base = h.first_seq if base is None else base
    upto = h.last_seq if upto is None else upto
    keys: list[str] = []

    def put(key: str, data: bytes) -> None:
        assert store.put_new(key, data)
        keys.append(key)

    put(manifest_key(generation), manifest_bytes(h, generation, base, written_at=next(clock)))
    put(snapshot_key(generation, base), snapshot_bytes(h, generation, base, written_at=next(clock)))
    ends = sorted({c for c in cuts if base < c < upto} | {upto}) if upto > base else []
    extra = sorted(s for s in set(snapshots) if base < s <= upto)
    first = base + 1
    for end in ends:
        put(
            segment_key(generation, first, end),
            segment_bytes(h, generation, first, end, written_at=next(clock)),
        )
        for s in extra:
            if first <= s <= end:
                put(
                    snapshot_key(generation, s),
                    snapshot_bytes(h, generation, s, written_at=next(clock)),
                )
        first = end + 1
    return keys
