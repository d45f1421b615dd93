"""What recovery returns and how much damage each mode accepts. Pure.

The report's types (:class:`RecoveryReport` and its :class:`Damage` entries, :class:`Recovered`)
and the policy of each :class:`RecoveryMode` (:func:`apply_mode`): recovery finds the damage,
this module says whether it is acceptable.
"""

from __future__ import annotations

import attrs

from journalstate._errors import StoreCorrupt
from journalstate._format import ValueEnum
from journalstate._reason import Reason
from journalstate._slots import SlotStatus


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


def chain_report(
    mode: RecoveryMode,
    previous_generation: bool,
    slot: int,
    slots: tuple[SlotStatus, SlotStatus],
    *,
    seq: int,
    position: int,
    torn_offset: int | None,
    torn_bytes: int,
    corruption: tuple[Damage, ...],
) -> RecoveryReport:
    """The report of a recovery from ``slots[slot]`` whose chain ended at ``seq``, ``position``."""
    base = slots[slot].head
    assert base is not None
    return RecoveryReport(
        mode=mode,
        previous_generation=previous_generation,
        slot=slot,
        generation=base.generation,
        epoch=base.epoch,
        base_seq=base.seq,
        seq=seq,
        position=position,
        records_replayed=seq - base.seq,
        bytes_replayed=position - base.position,
        torn_tail=torn_offset is not None,
        torn_tail_offset=torn_offset,
        torn_tail_bytes=torn_bytes,
        corruption=corruption,
        slots=slots,
    )


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


Claim = tuple[str, int, Reason | None]
"""One piece of damage a recovery claims: region ("slot0", "slot1", "journal"), file offset,
reason."""


def claims(report: RecoveryReport) -> frozenset[Claim]:
    """The damage ``report`` claims: each corruption entry and each invalid slot, by where it is
    and why, never by the bytes dropped (which grow while a writer appends after the damage).

    A torn tail is no claim: it is what a journal looks like while a record is being appended.
    A read-only open beside a live writer accepts a report with claims only when the recovery
    after it, reading the damaged bytes again, makes the same claims (``_opening._recover``).
    """
    found: set[Claim] = {(d.region, d.offset, d.reason) for d in report.corruption}
    found.update((f"slot{s.index}", s.offset, s.reason) for s in report.slots if not s.valid)
    return frozenset(found)


def apply_mode(path: str, report: RecoveryReport) -> None:
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
