"""Recovery: from the two slots and the journal ring to the last consistent state. Pure.

Recovery decides; the chain reader (:mod:`journalstate._reader`) reads. From where the chain
stops and what a scan of the rest of the ring finds, recovery tells a torn tail from
corruption, notices a lost slot, falls back to the last decodable state in salvage mode and
finds the highest epoch in use. It never writes and never prints: it returns the state image
and a :class:`RecoveryReport`, or raises :class:`StoreCorrupt` when the damage is more than the
chosen :class:`RecoveryMode` accepts (:mod:`journalstate._report`). Making the result durable
(the open checkpoint) is the store's job.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable

import attrs

from journalstate._checksums import Buffer
from journalstate._errors import NoPreviousGeneration, StoreCorrupt, Unrecoverable
from journalstate._format import (
    END_MARKER_SIZE,
    MAX_EPOCH,
    RECORD_HEADER_SIZE,
    RecordHeader,
    SlotHead,
    decode_record_header,
    record_size,
)
from journalstate._header import Header
from journalstate._journal import max_epoch_in_ring, max_payload, ring_read, scan_records
from journalstate._reader import ChainReader, ChainStop, apply_patches
from journalstate._reason import Reason
from journalstate._report import (
    Damage,
    Recovered,
    RecoveryMode,
    RecoveryReport,
    apply_mode,
    chain_report,
)
from journalstate._slots import SlotStatus, choose_slot, read_base_slot, read_slots, slot_state

__all__ = ["Damage", "Recovered", "RecoveryMode", "RecoveryReport", "Validate", "recover"]


Validate = Callable[[bytes | bytearray], None]
"""Raises ValueError when state bytes do not decode with the schema."""


@attrs.frozen
class _End:
    """What recovery decided about where the chain stopped."""

    corruption: tuple[Damage, ...]
    torn_offset: int | None
    torn_bytes: int
    newer_generation: bool
    """Records prove a checkpoint newer than the base slot that neither slot holds."""


_NOTHING_REPLAYED = _End((), None, 0, False)


def recover(
    path: str,
    header: Header,
    slots: Buffer,
    ring: Buffer,
    *,
    mode: RecoveryMode = RecoveryMode.TOLERATE_TAIL,
    previous_generation: bool = False,
    validate: Validate,
    stable: bool = False,
    live: bool = False,
) -> Recovered:
    """Find the last consistent state of a store.

    Args:
        path: for messages only.
        header: the validated file header.
        slots: both slots' bytes (slot 1 starts ``header.slot_size`` bytes in).
        ring: the journal ring's bytes.
        mode: how much damage to accept.
        previous_generation: start from the older slot and replay nothing: roll back one
            generation.
        validate: checks that state bytes decode with the schema.
        stable: the caller holds the writer lock, so no slot changes while it is read: only
            the slot recovery starts from is copied and decoded (see ``read_base_slot``).
            Not with ``previous_generation``.
        live: a writer may be writing the ring and the slots meanwhile (a read-only open):
            every record is copied before it is checked (``ChainReader(copy_first=True)``),
            so a replayed record is exactly the bytes one commit wrote. Whether the damage
            found is a write in progress is the caller's question: it reads again (see
            ``_opening._recover``).

    Raises:
        Unrecoverable: no slot is valid.
        NoPreviousGeneration: ``previous_generation`` asked for but only one slot is valid.
        StoreCorrupt: damage beyond what ``mode`` accepts (the report is attached).
    """
    if stable and not previous_generation:
        statuses, images = read_base_slot(slots, header, validate)
    else:
        statuses, images = _read_slots(header, slots, validate)
    index = _choose_base(path, header, statuses, previous_generation)
    base, start = statuses[index].head, images[index]
    assert base is not None
    assert start is not None
    # read_base_slot's state is a bytearray of its own, replayed in place; any other is copied.
    image = start if isinstance(start, bytearray) else bytearray(start)
    stop, end = ChainStop(base.position, base.seq, None), _NOTHING_REPLAYED
    if not previous_generation:
        stop, newer = _replay(header, ring, base, image, live)
        end = _judge_end(header, ring, base, statuses[1 - index], stop, newer)
    report = chain_report(
        mode,
        previous_generation,
        index,
        statuses,
        seq=stop.seq,
        position=stop.position,
        torn_offset=end.torn_offset,
        torn_bytes=end.torn_bytes,
        corruption=end.corruption,
    )
    if report.records_replayed:
        if image is start:  # salvage replays again from the slot, which no writer changes
            start = slot_state(slots, header, index)
        image, report = _check_decodes(
            path, header, ring, base, start, image, report, validate, live
        )
    apply_mode(path, report)
    valid_heads = [s.head for s in statuses if s.head is not None]
    return Recovered(
        report=report,
        image=image,
        max_generation=max(h.generation for h in valid_heads),
        max_epoch=_max_epoch(header, ring, statuses, previous_generation or end.newer_generation),
    )


def _read_slots(
    header: Header, slots: Buffer, validate: Validate
) -> tuple[tuple[SlotStatus, SlotStatus], list[bytes | bytearray | None]]:
    """Both slots, a checksummed slot whose state does not decode counting as BAD_VALUE."""
    statuses: list[SlotStatus] = []
    images: list[bytes | bytearray | None] = []
    for status, image in read_slots(slots, header):
        if image is not None:
            try:
                validate(image)
            except ValueError:
                status = SlotStatus(status.index, status.offset, False, Reason.BAD_VALUE, None)
                image = None
        statuses.append(status)
        images.append(image)
    return (statuses[0], statuses[1]), images


def _choose_base(
    path: str, header: Header, statuses: tuple[SlotStatus, SlotStatus], previous: bool
) -> int:
    """The slot recovery starts from; raises when none qualifies."""
    index = choose_slot(statuses, previous=previous)
    if index is not None:
        return index
    if previous and any(s.valid for s in statuses):
        raise NoPreviousGeneration(path)
    raise Unrecoverable(
        path,
        f"neither state slot is valid (slot 0: {statuses[0].reason}, slot 1: {statuses[1].reason})",
        offset=header.slot0_offset,
        reason=statuses[0].reason,
    )


def _window_end(header: Header, base: SlotHead) -> int:
    """Where the chain after ``base`` must end: a lap later, less the end marker."""
    return base.position + header.journal_size - END_MARKER_SIZE


def _file_offset(header: Header, position: int) -> int:
    """File offset of a logical journal position."""
    return header.journal_offset + position % header.journal_size


def _chain(header: Header, ring: Buffer, base: SlotHead, live: bool) -> ChainReader:
    """The reader of the chain that continues the slot ``base`` (copying each record first
    when ``live``: a writer may be writing the ring)."""
    return ChainReader(
        ring,
        header.journal_size,
        epoch=base.epoch,
        position=base.position,
        seq=base.seq,
        end=_window_end(header, base),
        state_size=header.state_size,
        copy_first=live,
    )


def _replay(
    header: Header, ring: Buffer, base: SlotHead, image: bytearray, live: bool
) -> tuple[ChainStop, bool]:
    """Apply the chain after ``base`` to ``image``: where it stopped, and whether a record of
    a generation newer than the base's was replayed."""
    reader = _chain(header, ring, base, live)
    newer = reader.replay(image, base.generation)
    assert reader.stop is not None
    return reader.stop, newer


def _judge_end(
    header: Header, ring: Buffer, base: SlotHead, other: SlotStatus, stop: ChainStop, newer: bool
) -> _End:
    """Decide what the stop means: a clean end, a torn tail, corruption; and whether records
    prove the ``other`` slot lost.

    One pass over the rest of the window finds both the later records of this epoch, whose
    ``durable_seq`` vouches for records before them, and the records of the next session.
    """
    corruption = _stop_damage(header, base, stop)
    wanted = {base.epoch: stop.seq}
    if base.epoch < MAX_EPOCH:
        wanted[base.epoch + 1] = 0
    scanned = scan_records(
        ring,
        header.journal_size,
        stop.position - 1,
        _window_end(header, base),
        wanted,
        state_size=header.state_size,
    )
    later = [h for h in scanned[base.epoch] if h.position > stop.position]
    newer = newer or _newer_checkpoint(base, later, scanned.get(base.epoch + 1, []))
    dropped = _dropped(header, ring, base, stop, later, bool(corruption))
    # Only records of the base slot's generation vouch for records of its chain. A record
    # of a newer generation was written after a checkpoint that neither slot holds: its
    # durable_seq counts that checkpoint, whose loss is reported as SLOT_LOST (in "process"
    # durability it counts nothing else), so it proves no journal record lost.
    vouchers = [h for h in later if h.durable_seq > stop.seq and h.generation <= base.generation]
    offset = _file_offset(header, stop.position)
    torn: tuple[int | None, int] = (None, 0)
    if vouchers:
        corruption.append(
            Damage(
                "journal",
                offset,
                Reason.DURABLE_RECORD_LOST,
                dropped,
                f"record {stop.seq + 1} is damaged but record {vouchers[0].seq} says records "
                f"up to {vouchers[0].durable_seq} were durable",
            )
        )
    elif dropped and not corruption:
        torn = (offset, dropped)
    if newer:
        corruption.append(_slot_lost(header, base, other))
    return _End(tuple(corruption), *torn, newer)


def _newer_checkpoint(
    base: SlotHead, later: list[RecordHeader], next_session: list[RecordHeader]
) -> bool:
    """Whether records after the stop prove a checkpoint newer than ``base``.

    A later record of this epoch with a newer generation proves one. A lost slot may also have
    been the open checkpoint of the next session, whose records carry the next epoch: finding
    one proves that checkpoint had completed. (With both slots valid this finds a newer slot
    overwritten by a copy of the other.) At the last epoch there is no next session: no writer
    starts one (counters never wrap), so there is nothing to search for.
    """
    if any(h.generation > base.generation for h in later):
        return True
    return any(h.generation > base.generation for h in next_session)


def _stop_damage(header: Header, base: SlotHead, stop: ChainStop) -> list[Damage]:
    """Damage the stop itself proves: a checksummed record that does not belong there."""
    offset = _file_offset(header, stop.position)
    if stop.reason is Reason.BAD_PATCH:
        return [Damage("journal", offset, stop.reason, stop.size, stop.detail)]
    if stop.reason in (Reason.SEQUENCE_GAP, Reason.BAD_KIND):
        detail = f"checksummed record where record {stop.seq + 1} of epoch {base.epoch} belongs"
        return [Damage("journal", offset, stop.reason, RECORD_HEADER_SIZE, detail)]
    return []


def _dropped(
    header: Header,
    ring: Buffer,
    base: SlotHead,
    stop: ChainStop,
    later: list[RecordHeader],
    corrupt: bool,
) -> int:
    """Bytes after the stop that recovery drops: through the last later record, else the
    record torn at the stop (as far as its length field is believable)."""
    if later:
        last = later[-1]
        return last.position + record_size(last.length) - stop.position
    if stop.reason not in (Reason.BAD_CHECKSUM, Reason.BAD_LENGTH) or corrupt:
        return 0
    journal_size = header.journal_size
    claimed = decode_record_header(
        ring_read(ring, journal_size, stop.position, RECORD_HEADER_SIZE)
    ).length
    fits = claimed <= max_payload(journal_size, header.state_size)
    dropped = min(record_size(claimed), _window_end(header, base) - stop.position) if fits else 0
    return max(dropped, RECORD_HEADER_SIZE)


def _slot_lost(header: Header, base: SlotHead, other: SlotStatus) -> Damage:
    """The damage of a slot whose newer checkpoint journal records prove."""
    detail = (
        f"slot {other.index} is damaged ({other.reason}) although journal records "
        "show its checkpoint had completed"
        if not other.valid
        else f"journal records show a checkpoint newer than generation {base.generation}, "
        "which neither slot holds (a slot was overwritten with older contents)"
    )
    return Damage(f"slot{other.index}", other.offset, Reason.SLOT_LOST, header.slot_size, detail)


def _check_decodes(
    path: str,
    header: Header,
    ring: Buffer,
    base: SlotHead,
    start: bytes | bytearray,
    image: bytearray,
    report: RecoveryReport,
    validate: Validate,
    live: bool,
) -> tuple[bytearray, RecoveryReport]:
    """The replayed image and report if the image decodes; else raise, or salvage.

    Salvage keeps the records up to the last one after which the state decodes.
    """
    try:
        validate(bytes(image))
        return image, report
    except ValueError as e:
        error = str(e)
    if report.mode is not RecoveryMode.SALVAGE:
        raise StoreCorrupt(
            path,
            f"the replayed state does not decode ({error})",
            offset=_file_offset(header, base.position),
            reason=Reason.BAD_VALUE,
            report=report,
        )
    kept_image, kept, kept_bytes = _last_decodable(
        header, ring, base, start, report.records_replayed, validate, live
    )
    at = base.position + kept_bytes
    damage = Damage(
        "journal",
        _file_offset(header, at),
        Reason.BAD_VALUE,
        report.bytes_replayed - kept_bytes,
        f"the state after record {base.seq + kept + 1} does not decode ({error})",
    )
    return kept_image, attrs.evolve(
        report,
        seq=base.seq + kept,
        position=at,
        records_replayed=kept,
        bytes_replayed=kept_bytes,
        corruption=(*report.corruption, damage),
    )


def _last_decodable(
    header: Header,
    ring: Buffer,
    base: SlotHead,
    start: bytes | bytearray,
    count: int,
    validate: Validate,
    live: bool,
) -> tuple[bytearray, int, int]:
    """The image after the last of the first ``count`` chain records after which it decodes.

    Replays the chain from the slot ``base`` (whose state ``start`` decodes) record by record,
    validating after each; returns that image, how many records it covers and their bytes.
    """
    image = bytearray(start)
    good = (bytes(image), 0, 0)
    size_sum = 0
    records = itertools.islice(_chain(header, ring, base, live), count)
    for index, record in enumerate(records, 1):
        apply_patches(image, record.patches)
        size_sum += record.size
        try:
            validate(bytes(image))
        except ValueError:
            continue
        good = (bytes(image), index, size_sum)
    return bytearray(good[0]), good[1], good[2]


def _max_epoch(
    header: Header, ring: Buffer, statuses: tuple[SlotStatus, SlotStatus], look: bool
) -> int:
    """The highest epoch in use: of the valid slots, and of the ring's records when ``look``
    or a slot is damaged.

    A damaged or lost slot may have carried the highest epoch, so the ring's epochs count too;
    a roll-back skips the replay, and with it the search for a lost slot, so it always looks.
    """
    max_epoch = max(s.head.epoch for s in statuses if s.head is not None)
    if look or not all(s.valid for s in statuses):
        max_epoch = max(max_epoch, max_epoch_in_ring(ring, header.journal_size, header.state_size))
    return max_epoch
