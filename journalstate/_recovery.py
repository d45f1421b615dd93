"""Recovery: from the two slots and the journal ring to the last consistent state. Pure.

Recovery reads; it never writes and never prints. It returns the state image and a
:class:`RecoveryReport`, or raises :class:`StoreCorrupt` when the damage is more than the chosen
:class:`RecoveryMode` accepts. Making the result durable (the open checkpoint) is the store's job.
"""

from __future__ import annotations

from collections.abc import Callable

import attrs

from journalstate._errors import NoPreviousGeneration, StoreCorrupt, Unrecoverable
from journalstate._format import (
    END_MARKER_SIZE,
    MAX_EPOCH,
    RECORD_HEADER_SIZE,
    Header,
    SlotHead,
    ValueEnum,
    decode_record_header,
    record_size,
)
from journalstate._io import Buffer
from journalstate._journal import (
    Reason,
    check_patches,
    max_epoch_in_ring,
    max_payload,
    next_record_fast,
    read_record,
    ring_read,
    scan_records,
)
from journalstate._slots import SlotStatus, choose_slot, read_slot


class RecoveryMode(ValueEnum):
    """How much damage recovery accepts."""

    STRICT = "strict"
    """Any torn tail, damaged slot or corruption raises StoreCorrupt."""
    TOLERATE_TAIL = "tolerate-tail"
    """A torn tail (normal after a crash) and a damaged slot are reported; corruption of the
    journal before its durable mark raises StoreCorrupt. The default."""
    SALVAGE = "salvage"
    """Everything is reported, nothing raises: the state is the last consistent one before
    the first damage."""


@attrs.frozen
class Damage:
    """One piece of damage recovery found."""

    region: str
    """"slot0", "slot1" or "journal"."""
    offset: int
    """File offset where the damage starts."""
    reason: Reason
    bytes_dropped: int
    detail: str


_JOURNAL_CORRUPTION = frozenset(
    {Reason.DURABLE_RECORD_LOST, Reason.BAD_PATCH, Reason.SEQUENCE_GAP, Reason.BAD_KIND}
)


@attrs.frozen
class RecoveryReport:
    """What recovery did, for ``store.recovery`` and the CLI."""

    mode: RecoveryMode
    previous_generation: bool
    slot: int
    """The slot recovery started from."""
    generation: int
    """That slot's generation."""
    epoch: int
    """That slot's epoch: only records of this epoch were replayed."""
    base_seq: int
    """The sequence number the slot's state covers."""
    seq: int
    """The sequence number of the recovered state (last replayed record)."""
    position: int
    """Logical journal position after the last replayed record: where the next one goes."""
    records_replayed: int
    bytes_replayed: int
    torn_tail: bool
    """True when an incomplete write was found after the last replayed record."""
    torn_tail_offset: int | None
    """File offset of the torn tail."""
    torn_tail_bytes: int
    """Bytes of the torn tail that were dropped."""
    corruption: tuple[Damage, ...]
    slots: tuple[SlotStatus, SlotStatus]

    @property
    def clean(self) -> bool:
        """True when nothing at all was wrong: no torn tail, no damage, both slots valid."""
        return not self.torn_tail and not self.corruption and all(s.valid for s in self.slots)


@attrs.define
class Recovered:
    """The result of recovery: the report, the state image and what the next writer needs."""

    report: RecoveryReport
    image: bytearray
    max_generation: int
    """Highest generation of a valid slot; the next checkpoint uses one more."""
    max_epoch: int
    """Highest epoch of a valid slot or, when a slot is damaged or lost, of a checksummed record
    anywhere in the ring; the next writing session uses one more."""


Validate = Callable[[bytes], None]
"""Raises ValueError when state bytes do not decode with the schema."""


def _read_slots(
    header: Header, slots: Buffer, validate: Validate
) -> tuple[tuple[SlotStatus, SlotStatus], list[bytes | None]]:
    statuses: list[SlotStatus] = []
    images: list[bytes | None] = []
    for index in (0, 1):
        file_offset = header.slot_offsets[index]
        status, image = read_slot(
            slots,
            index * header.slot_size,
            index=index,
            file_offset=file_offset,
            state_size=header.state_size,
        )
        if image is not None:
            try:
                validate(image)
            except ValueError:
                status, image = SlotStatus(index, file_offset, False, Reason.BAD_VALUE, None), None
        statuses.append(status)
        images.append(image)
    return (statuses[0], statuses[1]), images


def recover(
    path: str,
    header: Header,
    slots: Buffer,
    ring: Buffer,
    *,
    mode: RecoveryMode = RecoveryMode.TOLERATE_TAIL,
    previous_generation: bool = False,
    validate: Validate,
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

    Raises:
        Unrecoverable: no slot is valid.
        NoPreviousGeneration: ``previous_generation`` asked for but only one slot is valid.
        StoreCorrupt: damage beyond what ``mode`` accepts (the report is attached).
    """
    statuses, images = _read_slots(header, slots, validate)
    index = choose_slot(statuses, previous=previous_generation)
    if index is None:
        if previous_generation and any(s.valid for s in statuses):
            raise NoPreviousGeneration(path)
        raise Unrecoverable(
            path,
            "neither state slot is valid "
            f"(slot 0: {statuses[0].reason}, slot 1: {statuses[1].reason})",
            offset=header.slot0_offset,
            reason=statuses[0].reason,
        )
    base = statuses[index].head
    image_bytes = images[index]
    assert base is not None
    assert image_bytes is not None
    image = bytearray(image_bytes)
    other = statuses[1 - index]
    valid_heads = [s.head for s in statuses if s.head is not None]
    journal_size = header.journal_size

    corruption: list[Damage] = []
    position, seq = base.position, base.seq
    replayed = replayed_bytes = 0
    torn_offset: int | None = None
    torn_bytes = 0
    newer_generation_seen = False

    def file_offset(pos: int) -> int:
        return header.journal_offset + pos % journal_size

    if not previous_generation:
        window_end = base.position + journal_size - END_MARKER_SIZE
        reason: Reason | None = None
        while position + RECORD_HEADER_SIZE <= window_end:
            fast = next_record_fast(
                ring,
                journal_size,
                position,
                epoch=base.epoch,
                seq=seq + 1,
                limit=window_end,
                state_size=header.state_size,
            )
            if fast is not None:
                size, generation, patches = fast
                for offset, data in patches:
                    image[offset : offset + len(data)] = data
                if generation > base.generation:
                    newer_generation_seen = True
                seq += 1
                position += size
                replayed += 1
                replayed_bytes += size
                continue
            record, reason, _ = read_record(
                ring,
                journal_size,
                position,
                epoch=base.epoch,
                seq=seq + 1,
                state_size=header.state_size,
            )
            if record is None:
                break
            if position + record.size > window_end:
                reason = Reason.BAD_LENGTH
                break
            try:
                patches = check_patches(record.payload, header.state_size)
            except ValueError as e:
                reason = Reason.BAD_PATCH
                corruption.append(
                    Damage("journal", file_offset(position), reason, record.size, str(e))
                )
                break
            for offset, data in patches:
                image[offset : offset + len(data)] = data
            newer_generation_seen |= record.header.generation > base.generation
            seq += 1
            position += record.size
            replayed += 1
            replayed_bytes += record.size

        if reason in (Reason.SEQUENCE_GAP, Reason.BAD_KIND):
            corruption.append(
                Damage(
                    "journal",
                    file_offset(position),
                    reason,
                    RECORD_HEADER_SIZE,
                    f"checksummed record where record {seq + 1} of epoch {base.epoch} belongs",
                )
            )
        # One pass over the rest of the window finds both the later records of this epoch and
        # the records of the next session (see below).
        wanted = {base.epoch: seq}
        if base.epoch < MAX_EPOCH:
            wanted[base.epoch + 1] = 0
        scanned = scan_records(
            ring, journal_size, position - 1, window_end, wanted, state_size=header.state_size
        )
        later = [h for h in scanned[base.epoch] if h.position > position]
        newer_generation_seen |= any(h.generation > base.generation for h in later)
        if not newer_generation_seen and base.epoch < MAX_EPOCH:
            # A lost slot may have been the open checkpoint of the next session, whose records
            # carry the next epoch: finding one proves that checkpoint had completed. (With
            # both slots valid this finds a newer slot overwritten by a copy of the other.)
            # At the last epoch there is no next session: no writer starts one (counters
            # never wrap), so there is nothing to search for.
            newer_generation_seen = any(
                h.generation > base.generation for h in scanned[base.epoch + 1]
            )
        if later:
            last = later[-1]
            dropped = last.position + record_size(last.length) - position
        elif reason in (Reason.BAD_CHECKSUM, Reason.BAD_LENGTH) and not corruption:
            claimed = decode_record_header(
                ring_read(ring, journal_size, position, RECORD_HEADER_SIZE)
            ).length
            fits = claimed <= max_payload(journal_size, header.state_size)
            dropped = min(record_size(claimed), window_end - position) if fits else 0
            dropped = max(dropped, RECORD_HEADER_SIZE)
        else:
            dropped = 0
        # Only records of the base slot's generation vouch for records of its chain. A record
        # of a newer generation was written after a checkpoint that neither slot holds: its
        # durable_seq counts that checkpoint, whose loss is reported as SLOT_LOST below (in
        # "process" durability it counts nothing else), so it proves no journal record lost.
        vouchers = [h for h in later if h.durable_seq > seq and h.generation <= base.generation]
        if vouchers:
            corruption.append(
                Damage(
                    "journal",
                    file_offset(position),
                    Reason.DURABLE_RECORD_LOST,
                    dropped,
                    f"record {seq + 1} is damaged but record {vouchers[0].seq} says records "
                    f"up to {vouchers[0].durable_seq} were durable",
                )
            )
        elif dropped and not corruption:
            torn_offset, torn_bytes = file_offset(position), dropped

    if newer_generation_seen:
        detail = (
            f"slot {other.index} is damaged ({other.reason}) although journal records "
            "show its checkpoint had completed"
            if not other.valid
            else f"journal records show a checkpoint newer than generation {base.generation}, "
            "which neither slot holds (a slot was overwritten with older contents)"
        )
        corruption.append(
            Damage(f"slot{other.index}", other.offset, Reason.SLOT_LOST, header.slot_size, detail)
        )

    report = RecoveryReport(
        mode=mode,
        previous_generation=previous_generation,
        slot=index,
        generation=base.generation,
        epoch=base.epoch,
        base_seq=base.seq,
        seq=seq,
        position=position,
        records_replayed=replayed,
        bytes_replayed=replayed_bytes,
        torn_tail=torn_offset is not None,
        torn_tail_offset=torn_offset,
        torn_tail_bytes=torn_bytes,
        corruption=tuple(corruption),
        slots=statuses,
    )
    if replayed:
        try:
            validate(bytes(image))
        except ValueError as e:
            damage = Damage("journal", file_offset(base.position), Reason.BAD_VALUE, 0, str(e))
            if mode is not RecoveryMode.SALVAGE:
                raise StoreCorrupt(
                    path,
                    f"the replayed state does not decode ({e})",
                    offset=damage.offset,
                    reason=damage.reason,
                    report=report,
                ) from None
            # Salvage: keep the records up to the last one after which the state decodes.
            image, kept, kept_bytes = _last_decodable(
                header, ring, base, bytes(image_bytes), replayed, validate
            )
            at = base.position + kept_bytes
            damage = Damage(
                "journal",
                file_offset(at),
                Reason.BAD_VALUE,
                replayed_bytes - kept_bytes,
                f"the state after record {base.seq + kept + 1} does not decode ({e})",
            )
            report = attrs.evolve(
                report,
                seq=base.seq + kept,
                position=at,
                records_replayed=kept,
                bytes_replayed=kept_bytes,
                corruption=(*report.corruption, damage),
            )
    _apply_mode(path, report)
    max_epoch = max(h.epoch for h in valid_heads)
    if previous_generation or newer_generation_seen or not all(s.valid for s in statuses):
        # A damaged or lost slot may have carried the highest epoch, so the ring's epochs
        # count too; a roll-back skips the replay, and with it the search for a lost slot,
        # so it always looks.
        max_epoch = max(max_epoch, max_epoch_in_ring(ring, journal_size, header.state_size))
    return Recovered(
        report=report,
        image=image,
        max_generation=max(h.generation for h in valid_heads),
        max_epoch=max_epoch,
    )


def _last_decodable(
    header: Header, ring: Buffer, base: SlotHead, start: bytes, count: int, validate: Validate
) -> tuple[bytearray, int, int]:
    """The image after the last of the first ``count`` chain records after which it decodes.

    Replays the chain from the slot ``base`` (whose state ``start`` decodes) record by record,
    validating after each; returns that image, how many records it covers and their bytes.
    The records were all read once already, so each is read again the same way.
    """
    image = bytearray(start)
    good = (bytes(image), 0, 0)
    position, size_sum = base.position, 0
    for index in range(1, count + 1):
        record, _, _ = read_record(
            ring,
            header.journal_size,
            position,
            epoch=base.epoch,
            seq=base.seq + index,
            state_size=header.state_size,
        )
        assert record is not None  # replayed a moment ago
        for offset, data in check_patches(record.payload, header.state_size):
            image[offset : offset + len(data)] = data
        position += record.size
        size_sum += record.size
        try:
            validate(bytes(image))
        except ValueError:
            continue
        good = (bytes(image), index, size_sum)
    return bytearray(good[0]), good[1], good[2]


def _apply_mode(path: str, report: RecoveryReport) -> None:
    """Raise StoreCorrupt when the report holds more damage than its mode accepts."""
    if report.mode is RecoveryMode.SALVAGE:
        return
    journal = [d for d in report.corruption if d.reason in _JOURNAL_CORRUPTION]
    if journal:
        first = journal[0]
        raise StoreCorrupt(
            path,
            f"journal corruption ({first.reason.value}: {first.detail}); "
            "open with recovery='salvage' (or `journalstate recover --mode salvage`) to keep "
            "the state before the damage",
            offset=first.offset,
            reason=first.reason,
            report=report,
        )
    if report.mode is RecoveryMode.STRICT and not report.clean:
        if report.corruption:
            d = report.corruption[0]
            raise StoreCorrupt(
                path, f"{d.region}: {d.detail}", offset=d.offset, reason=d.reason, report=report
            )
        # Both are normal after a crash: the default mode handles them, salvage is not needed.
        hint = (
            "; the default recovery mode handles it: open with recovery='tolerate-tail' "
            "(or `journalstate recover --mode tolerate-tail`)"
        )
        bad = [s for s in report.slots if not s.valid]
        if bad:
            raise StoreCorrupt(
                path,
                f"strict recovery: slot {bad[0].index} is not valid ({bad[0].reason}){hint}",
                offset=bad[0].offset,
                reason=bad[0].reason,
                report=report,
            )
        raise StoreCorrupt(
            path,
            f"strict recovery: torn tail of {report.torn_tail_bytes} bytes "
            f"(normal after a crash){hint}",
            offset=report.torn_tail_offset,
            reason=Reason.BAD_CHECKSUM,
            report=report,
        )
