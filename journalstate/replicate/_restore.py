"""Restore: a new store file from a replica's objects.

What belongs here: :func:`restore` and its report, and the choice of a generation (the listing,
:func:`list_replicas`, is ``_listing``'s, re-exported here). A restore reads the newest
snapshot at or before the seq it wants, replays the segments after it with the journal's own
checks (``_replay``), and writes the state into a new store file the way ``_backup`` does (a
temporary name, synced, linked into place, the directory synced). The new file keeps the
replica's file id: it is the same store, continuing after the loss of its machine.
docs/replication.md describes the choice of generation and every check.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Mapping
from typing import Any

import attrs

from journalstate._backup import check_destination, create_store_file
from journalstate._dynamic import class_from_descriptor
from journalstate._errors import (
    JournalStateError,
    ReplicaAmbiguous,
    ReplicaCorrupt,
    ReplicaGap,
    ReplicaNotFound,
)
from journalstate._format import SlotHead, check_counters
from journalstate._header import MAX_JOURNAL_SIZE, encode_header, layout_header
from journalstate._io import OsStorage
from journalstate._migrate_run import slot_chunks
from journalstate._schema import compile_schema
from journalstate._storage import PAGE_SIZE
from journalstate.replicate._listing import (
    GenerationInfo,
    generations,
    list_replicas,
    reach,
    read_object,
)
from journalstate.replicate._objects import ObjectStore, open_url
from journalstate.replicate._objformat import segment_key, snapshot_key
from journalstate.replicate._replay import ReplayPoint, replay_segment

__all__ = ["GenerationInfo", "RestoreReport", "list_replicas", "restore"]


@attrs.frozen
class RestoreReport:
    """What :func:`restore` wrote."""

    url: str
    """The replica read."""
    path: str
    """The new store file."""
    generation: str
    """The replica generation restored from."""
    file_id: str
    """The store's file id (lowercase hex): the replica's, kept by the new file."""
    seq: int
    """The seq of the state written."""
    snapshot_seq: int
    """The seq of the snapshot the restore started from."""
    segments: int
    """Segments replayed onto the snapshot."""
    records: int
    """Records applied (``seq - snapshot_seq``)."""
    file_size: int
    """The new file's size in bytes."""
    generations: tuple[str, ...]
    """Every generation found at the URL, oldest first."""


def restore(
    url: str,
    path: str | os.PathLike[str],
    *,
    seq: int | None = None,
    generation: str | None = None,
    options: Mapping[str, str] | None = None,
) -> RestoreReport:
    """Build a new store file at ``path`` from the replica at ``url``.

    The state is that of the newest seq the chosen generation holds without a gap (or, with
    ``seq``, exactly the state at ``seq``: point-in-time). The chosen generation is the newest
    one (by name) that holds a snapshot, or with ``seq`` the newest that holds a snapshot at or
    before ``seq``; ``generation`` chooses one by its id. Every object read is checked (its
    checksum and meta), every record with the journal's own checks, and the state's crc after
    each segment against the segment's rolling checksum. The new file keeps the replica's file
    id; both its slots hold the state, its journal is empty. Nothing is written to the replica.

    Args:
        url: the replica (``s3://bucket/prefix``, ``file:///dir``...; see :func:`open_url`).
        path: the new file; nothing may exist there, and its directory must.
        seq: the seq to restore (default: the newest).
        generation: the generation to restore from (default: chosen as above).
        options: object store options (see :func:`open_url`).

    Returns:
        The report. When it returns, the file is durable at ``path``.

    Raises:
        DestinationExists, BadDestination: as for :func:`journalstate.backup`.
        ReplicaNotFound: no generation at ``url``, ``generation`` is not there, or no snapshot
            at or before ``seq`` and no object reaching it.
        ReplicaAmbiguous: the URL holds generations of more than one store, or two generations
            shipped at the same time, and ``generation`` was not given.
        ReplicaGap: the history from the snapshot to the seq wanted has a missing part (with no
            ``seq``: objects exist after a gap, so the newest state cannot be reached).
        ReplicaCorrupt: an object on the way fails a check.
        ReplicationError: the store failed. On any error nothing is left at ``path``.
    """
    dest = os.fspath(path)
    storage = OsStorage()
    check_destination(storage, dest)
    if seq is not None and (not isinstance(seq, int) or isinstance(seq, bool) or seq < 0):
        raise ReplicaNotFound(url, f"seq must be a whole number >= 0, got {seq!r}")
    store = open_url(url, options=options)
    infos = generations(store)
    if not infos:
        raise ReplicaNotFound(url, "holds no generation: nothing was ever shipped here", seq=seq)
    info = _choose(store, infos, seq, generation)
    state = _rebuild(store, info, seq)
    return _write(storage, dest, url, info, state, infos)


def _choose(
    store: ObjectStore, infos: list[GenerationInfo], seq: int | None, generation: str | None
) -> GenerationInfo:
    """The generation to restore from (see :func:`restore`)."""
    url = store.url
    if generation is not None:
        for info in infos:
            if info.generation == generation:
                if info.manifest is None:
                    raise ReplicaCorrupt(url, f"generation {generation}: {info.problem}")
                return info
        raise ReplicaNotFound(
            url, f"no generation {generation}; there are {', '.join(i.generation for i in infos)}"
        )
    damaged = [i for i in infos if i.manifest is None]
    if damaged:
        raise ReplicaCorrupt(
            url,
            f"generation {damaged[-1].generation} has no readable manifest "
            f"({damaged[-1].problem}); restore a generation by name with generation= "
            "(--generation)",
        )
    file_ids = {i.file_id for i in infos}
    if len(file_ids) > 1:
        raise ReplicaAmbiguous(
            url,
            f"the prefix holds {len(file_ids)} different stores",
            generations=[i.generation for i in infos],
        )
    _refuse_concurrent(store, infos)
    if seq is None:
        holding = [i for i in infos if i.first_seq is not None]
        if not holding:
            raise ReplicaNotFound(url, "no generation holds a snapshot yet")
        return holding[-1]
    covering = [i for i in infos if i.first_seq is not None and i.first_seq <= seq]
    reaching = [i for i in covering if i.newest_seq is not None and i.newest_seq >= seq]
    if reaching:
        return reaching[-1]
    newest = max((i.newest_seq for i in infos if i.newest_seq is not None), default=None)
    raise ReplicaNotFound(
        url,
        f"no generation holds seq {seq} (the objects reach seq {newest})"
        if newest is not None
        else f"no generation holds seq {seq}: no snapshot was shipped yet",
        seq=seq,
    )


def _refuse_concurrent(store: ObjectStore, infos: list[GenerationInfo]) -> None:
    """ReplicaAmbiguous when a generation started before the previous one stopped shipping.

    Generations are one shipper each, one after another; a newer generation whose manifest was
    written before the older one's newest object means two shippers wrote at once.
    """
    for older, newer in itertools.pairwise(infos):
        assert older.manifest is not None
        assert newer.manifest is not None
        started = float(newer.manifest["written_at"])
        ended = _last_written(store, older)
        if ended > started:
            raise ReplicaAmbiguous(
                store.url,
                f"generation {newer.generation} started (at {started:.3f}) before generation "
                f"{older.generation} stopped shipping (at {ended:.3f}): two shippers wrote "
                "here at once",
                generations=[older.generation, newer.generation],
            )


def _last_written(store: ObjectStore, info: GenerationInfo) -> float:
    """``written_at`` of the generation's newest object (its manifest's when it has none)."""
    assert info.manifest is not None
    newest = info.newest_seq
    keys = [segment_key(info.generation, f, last) for f, last in info.segments if last == newest]
    if newest in info.snapshots:
        keys.append(snapshot_key(info.generation, newest))
    times = [float(info.manifest["written_at"])]
    for key in keys:
        try:
            times.append(float(read_object(store, key).meta["written_at"]))
        except (ReplicaCorrupt, ReplicaNotFound):
            continue  # a damaged object of an older generation: restore of it will say so
    return max(times)


@attrs.frozen
class _State:
    image: bytes
    descriptor: bytes
    journal_size: int
    point: ReplayPoint
    snapshot_seq: int
    segments: int


def _rebuild(store: ObjectStore, info: GenerationInfo, seq: int | None) -> _State:
    """The state image of ``info`` at ``seq`` (None: the newest it reaches), all checked."""
    url, gen = store.url, info.generation
    assert info.manifest is not None
    _, longest = reach(list(info.snapshots), list(info.segments))
    target = seq
    if target is None:
        if (
            info.newest_seq is not None
            and info.last_seq is not None
            and info.newest_seq > info.last_seq
        ):
            missing = ", ".join(f"{a}..{b}" for a, b in info.gaps)
            raise ReplicaGap(
                url,
                f"generation {gen} reaches seq {info.last_seq} without a gap, but holds objects "
                f"up to seq {info.newest_seq} (missing: {missing}); restore with seq= to accept "
                "an older state",
                last_seq=info.last_seq,
            )
        target = info.last_seq
    assert target is not None
    start = _snapshot_for(info, longest, target)
    if start is None:
        below = [s for s in info.snapshots if s <= target]
        last = below[-1] if below else -1
        while last in longest and longest[last] > last:
            last = longest[last]
        raise ReplicaGap(
            url,
            f"generation {gen} holds the history only up to seq {last}; seq {target} lies "
            f"after a gap (missing: {', '.join(f'{a}..{b}' for a, b in info.gaps)})",
            last_seq=last,
            wanted_seq=target,
        )
    snap = read_object(store, snapshot_key(gen, start))
    meta = snap.meta
    _same_store(url, snapshot_key(gen, start), meta, info.manifest)
    image = bytearray(snap.image)
    point = ReplayPoint(start, meta["epoch"], meta["state_crc"], None, 0)
    segments = 0
    while point.seq < target:
        last = longest[point.seq]
        key = segment_key(gen, point.seq + 1, last)
        obj = read_object(store, key)
        _same_store(url, key, obj.meta, info.manifest)
        done = replay_segment(
            url,
            key,
            obj.meta,
            obj.body,
            image,
            point,
            journal_size=meta["journal_size"],
            stop_seq=target,
        )
        segments += 1
        if done.image_at is not None and done.point_at is not None and last > target:
            return _State(
                done.image_at, snap.descriptor, meta["journal_size"], done.point_at, start, segments
            )
        point = done.point
    return _State(bytes(image), snap.descriptor, meta["journal_size"], point, start, segments)


def _snapshot_for(info: GenerationInfo, longest: dict[int, int], target: int) -> int | None:
    """The newest snapshot at or before ``target`` from which segments reach ``target``."""
    for seq in reversed(info.snapshots):
        if seq > target:
            continue
        at = seq
        while at < target and at in longest and longest[at] > at:
            at = longest[at]
        if at >= target:
            return seq
    return None


def _same_store(url: str, key: str, meta: dict[str, Any], manifest: dict[str, Any]) -> None:
    """An object belongs to its generation's store: same file id and sizes as the manifest."""
    if meta["file_id"] != manifest["file_id"]:
        raise ReplicaCorrupt(
            url,
            f"belongs to store {meta['file_id']}, its generation to store {manifest['file_id']}",
            key=key,
        )
    for name in ("state_size", "journal_size"):
        if name in meta and meta[name] != manifest[name]:
            raise ReplicaCorrupt(url, f"{name} {meta[name]} differs from the manifest's", key=key)


def _write(
    storage: OsStorage,
    dest: str,
    url: str,
    info: GenerationInfo,
    state: _State,
    infos: list[GenerationInfo],
) -> RestoreReport:
    """Write the state into a new store file at ``dest`` keeping the replica's file id."""
    assert info.manifest is not None
    key = snapshot_key(info.generation, state.snapshot_seq)
    journal_size = state.journal_size
    if not (PAGE_SIZE <= journal_size <= MAX_JOURNAL_SIZE and journal_size % PAGE_SIZE == 0):
        raise ReplicaCorrupt(
            url, f"journal_size {journal_size} is not one a store can have", key=key
        )
    try:
        cls = class_from_descriptor(state.descriptor, state_size=len(state.image))
        schema = compile_schema(cls)
        schema.decode(state.image)
    except (ValueError, JournalStateError) as e:
        raise ReplicaCorrupt(
            url, f"the state at seq {state.point.seq} is unusable: {e}", key=key
        ) from None
    point = state.point
    check_counters(dest, max_epoch=point.epoch, max_generation=point.generation + 2, seq=point.seq)
    file_id = bytes.fromhex(str(info.manifest["file_id"]))
    header = layout_header(state.descriptor, len(state.image), journal_size, PAGE_SIZE, file_id)
    chunks: list[tuple[int, bytes]] = [(0, encode_header(header))]
    for offset, step in ((header.slot0_offset, 2), (header.slot1_offset, 1)):
        head = SlotHead(point.generation + step, point.epoch, point.seq, 0, len(state.image))
        chunks += [(o, bytes(data)) for o, data in slot_chunks(offset, head, state.image)]
    create_store_file(storage, dest, header, chunks)
    return RestoreReport(
        url=url,
        path=dest,
        generation=info.generation,
        file_id=file_id.hex(),
        seq=point.seq,
        snapshot_seq=state.snapshot_seq,
        segments=state.segments,
        records=point.seq - state.snapshot_seq,
        file_size=header.file_size,
        generations=tuple(i.generation for i in infos),
    )
