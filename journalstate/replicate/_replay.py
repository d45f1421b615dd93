"""Replaying a segment's records onto a state image, with the journal's own record checks.

Pure: bytes in, a new image out. What belongs here: :func:`replay_segment`, which checks every
record of a segment the way recovery checks a chain (``docs/format.md``, "When bytes are the
next record of the chain") and the segment's continuity (prev_seq, prev_state_crc, positions,
epochs, the rolling state_crc), raising :class:`ReplicaCorrupt` or :class:`ReplicaGap` at the
first failure. Nothing of a segment is applied unless all of it holds.
"""

from __future__ import annotations

from typing import Any

import attrs

from journalstate._checksums import crc
from journalstate._errors import ReplicaCorrupt, ReplicaGap
from journalstate._format import (
    KIND_COMMIT,
    RECORD_HEADER_SIZE,
    decode_record_header,
    record_crc,
    record_size,
)
from journalstate._journal import max_payload, parse_patches
from journalstate._reader import apply_patches


@attrs.frozen
class ReplayPoint:
    """Where a replay stands: after ``seq``, the next record expected at ``position``."""

    seq: int
    epoch: int
    """The epoch of the last record applied (the snapshot's before any)."""
    state_crc: int
    """crc32c of the state image after ``seq``."""
    position: int | None
    """The position after the last record applied; None right after a snapshot."""
    generation: int
    """The checkpoint generation the last record applied carries (0 before any)."""


@attrs.frozen
class Replayed:
    """The result of :func:`replay_segment`."""

    point: ReplayPoint
    """After the segment's last record."""
    image_at: bytes | None
    """The state image right after ``stop_seq`` when that seq is inside the segment."""
    point_at: ReplayPoint | None
    """The replay point right after ``stop_seq`` when that seq is inside the segment."""


def replay_segment(
    url: str,
    key: str,
    meta: dict[str, Any],
    records: bytes,
    image: bytearray,
    at: ReplayPoint,
    *,
    journal_size: int,
    stop_seq: int | None = None,
) -> Replayed:
    """Check the segment ``meta``/``records`` continues ``at`` and apply it to ``image``.

    ``image`` is the state after ``at.seq``; on success it holds the state after the segment's
    ``last_seq``. When ``stop_seq`` falls inside the segment, the image right after it is
    returned too (the whole segment is still checked, its ``state_crc`` included).

    Raises:
        ReplicaGap: the segment does not start right after ``at.seq``, or at the position
            where the previous segment ended.
        ReplicaCorrupt: a record fails a check (crc, length, kind, seq, position, epoch,
            patches), the records and the meta disagree, or the state's crc before or after
            the segment is not the one the segment names. ``image`` may then be partly
            changed: the caller discards it.
    """
    first, last = meta["first_seq"], meta["last_seq"]

    def corrupt(message: str) -> ReplicaCorrupt:
        return ReplicaCorrupt(url, message, key=key)

    if first != at.seq + 1:
        raise ReplicaGap(
            url,
            f"{key} starts at seq {first}, but the history so far ends at seq {at.seq}",
            last_seq=at.seq,
        )
    if meta["prev_state_crc"] != at.state_crc:
        raise corrupt(
            f"continues a state whose crc is {meta['prev_state_crc']:#010x}, but the state at "
            f"seq {at.seq} has crc {at.state_crc:#010x} (another history)"
        )
    if at.position is not None and meta["first_position"] != at.position:
        raise ReplicaGap(
            url,
            f"{key} starts at journal position {meta['first_position']}, the previous segment "
            f"ended at {at.position}",
            last_seq=at.seq,
        )
    state_size = len(image)
    max_length = max_payload(journal_size, state_size)
    view = memoryview(records)
    offset, seq, epoch, generation = 0, at.seq, at.epoch, at.generation
    low_epoch: int | None = None
    image_at: bytes | None = None
    point_at: ReplayPoint | None = None
    try:
        while offset < len(records):
            where = f"record at byte {offset} (seq {seq + 1})"
            if len(records) - offset < RECORD_HEADER_SIZE:
                raise corrupt(f"{where}: cut short")
            head = decode_record_header(view[offset : offset + RECORD_HEADER_SIZE])
            if head.length > max_length:
                raise corrupt(f"{where}: length {head.length} exceeds {max_length}")
            size = record_size(head.length)
            if size > len(records) - offset:
                raise corrupt(f"{where}: runs past the segment's end")
            if record_crc(view[offset : offset + size]) != head.crc:
                raise corrupt(f"{where}: checksum mismatch")
            if head.kind != KIND_COMMIT or head.reserved != 0:
                raise corrupt(f"{where}: bad kind {head.kind} or reserved {head.reserved}")
            if head.seq != seq + 1:
                raise corrupt(f"{where}: holds seq {head.seq}")
            if head.position != meta["first_position"] + offset:
                raise corrupt(f"{where}: holds position {head.position}")
            if head.epoch < epoch:
                raise corrupt(f"{where}: epoch {head.epoch} is older than {epoch}")
            start = offset + RECORD_HEADER_SIZE
            try:
                patches = parse_patches(
                    records, start, start + head.length, state_size, origin=start
                )
            except ValueError as e:
                raise corrupt(f"{where}: {e}") from None
            apply_patches(image, patches)
            seq, epoch, generation = head.seq, head.epoch, head.generation
            low_epoch = epoch if low_epoch is None else low_epoch
            offset += size
            if seq == stop_seq:
                image_at = bytes(image)
                point_at = ReplayPoint(seq, epoch, crc(image_at), None, generation)
    finally:
        view.release()
    if seq != last or seq - first + 1 != meta["count"]:
        raise corrupt(f"holds records {first}..{seq}, its meta says {first}..{last}")
    if [low_epoch, epoch] != meta["epochs"]:
        raise corrupt(
            f"its records' epochs are {low_epoch}..{epoch}, its meta says {meta['epochs']}"
        )
    state_crc = crc(image)
    if state_crc != meta["state_crc"]:
        raise corrupt(
            f"the state after seq {last} has crc {state_crc:#010x}, the segment says "
            f"{meta['state_crc']:#010x}"
        )
    point = ReplayPoint(last, epoch, state_crc, meta["first_position"] + offset, generation)
    return Replayed(point, image_at, point_at)
