"""Why bytes were not accepted: the one vocabulary shared by slots, the chain reader and recovery.

Pure: an enum and nothing else, so every module that judges bytes can name a reason without
importing another that judges bytes too.
"""

from __future__ import annotations

from journalstate._format import ValueEnum


class Reason(ValueEnum):
    """Why bytes in a slot or in the journal were not accepted."""

    ZEROED = "zeroed"
    """All-zero record header: the clean end of the journal."""
    BAD_CHECKSUM = "bad-checksum"
    """The stored crc does not match the bytes: a torn or damaged write."""
    BAD_LENGTH = "bad-length"
    """A length field points past what the ring or slot can hold."""
    BAD_KIND = "bad-kind"
    """A checksummed record with an unknown kind or non-zero reserved field."""
    STALE_EPOCH = "stale-epoch"
    """A valid record written before the last recovery (another epoch)."""
    STALE_POSITION = "stale-position"
    """A valid record from an earlier lap of the ring."""
    SEQUENCE_GAP = "sequence-gap"
    """A valid record of this epoch and position with an unexpected sequence number."""
    BAD_PATCH = "bad-patch"
    """A valid record whose patches fall outside the state."""
    GENERATION_MISMATCH = "generation-mismatch"
    """A slot whose leading and trailing generations differ: torn."""
    BAD_SIZE = "bad-size"
    """A slot whose state size is not the header's."""
    BAD_VALUE = "bad-value"
    """Checksummed state bytes that do not decode with the schema."""
    DURABLE_RECORD_LOST = "durable-record-lost"
    """A record that a later record vouches was durable is damaged: corruption, not a torn tail."""
    SLOT_LOST = "slot-lost"
    """A damaged slot that records prove had been completely written: corruption."""
