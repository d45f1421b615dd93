"""Records that straddle the ring's end: written, synced and replayed at every alignment.

A record (with the end marker written after it) that crosses the end of the ring is written in
two parts and read back in two parts; an error of one byte in either loses acknowledged
commits. These tests commit records of sizes that do not divide the ring, so that over one
lap of commits every record start that is a multiple of the record alignment occurs once, and
check after each commit what recovery returns.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Annotated, Any

import attrs
import pytest

import journalstate as js
from journalstate._format import END_MARKER_SIZE, RECORD_ALIGN
from journalstate._journal import check_patches
from journalstate._reader import next_record_fast, read_record
from journalstate.testing import SimStorage

JOURNAL = 4096
"""A one-page ring: the ring's end comes every few commits."""


def state_class(data_bytes: int) -> type[Any]:
    """A schema whose every commit (new ``step``, new full-length ``data``) has one size."""
    field: Any = attrs.field  # its overloads want a class as type=, not an Annotated
    return attrs.make_class(
        f"Straddle{data_bytes}",
        {
            "step": field(type=js.U64, default=0),
            "data": field(type=Annotated[bytes, js.Bytes(data_bytes)], default=b""),
        },
        frozen=True,
    )


def nth(cls: type[Any], step: int, data_bytes: int) -> Any:
    """The state of commit ``step``: every byte of ``data`` depends on it."""
    pattern = step.to_bytes(8, "little") + bytes([step % 251])
    return cls(step=step, data=(pattern * (data_bytes // len(pattern) + 1))[:data_bytes])


# data_bytes -> record size: 48 header + one patch (8 head, 8 step, 4 length, data_bytes: the
# two fields are adjacent), rounded up to 8. Each record size is an odd multiple of 8, so the
# record starts (mod the ring) go through every multiple of 8 in JOURNAL / 8 commits.
SIZES = {20: 88, 452: 520, 1508: 1576}


def straddles(start: int, size: int, journal: int) -> bool:
    """True when a record of ``size`` at ring offset ``start``, with its end marker, crosses."""
    return start + size + END_MARKER_SIZE > journal


def expected_straddles(size: int, journal: int) -> set[int]:
    """Every ring offset (a multiple of the alignment) at which a record and its marker cross."""
    return {s for s in range(0, journal, RECORD_ALIGN) if straddles(s, size, journal)}


@pytest.mark.parametrize("data_bytes", list(SIZES))
def test_every_straddle_alignment_recovers_every_commit(tmp_path: Path, data_bytes: int) -> None:
    """At every alignment across the ring's end, a process death recovers the last commit."""
    cls, size = state_class(data_bytes), SIZES[data_bytes]
    path = tmp_path / "straddle.jst"
    copy = tmp_path / "crash.jst"
    seen: set[int] = set()
    # checkpoint_threshold=1.0: checkpoints only when the ring is full, so each crash copy
    # replays up to a whole ring of records, straddling ones in the middle of the chain too.
    store = js.open(path, cls, durability="process", journal_size=JOURNAL, checkpoint_threshold=1.0)
    try:
        for step in range(1, JOURNAL // RECORD_ALIGN + 2):
            start = store.position % JOURNAL
            state = nth(cls, step, data_bytes)
            assert store.commit(state) == step
            assert store.position % JOURNAL == (start + size) % JOURNAL, "record size changed"
            if straddles(start, size, JOURNAL):
                seen.add(start)
            shutil.copyfile(path, copy)  # what a process death leaves: the page cache
            with js.open(copy, cls, readonly=True) as recovered:
                report = recovered.recovery
                assert (recovered.seq, recovered.state) == (step, state)
                assert not report.torn_tail, f"step {step} at {start}: {report}"
                assert not report.corruption, f"step {step} at {start}: {report}"
    finally:
        store.close()
    assert seen == expected_straddles(size, JOURNAL)
    last = nth(cls, JOURNAL // RECORD_ALIGN + 1, data_bytes)
    with js.open(path, cls) as reopened:
        assert reopened.state == last
        assert reopened.recovery.clean


@pytest.mark.parametrize("data_bytes", [20, 1508])
def test_commit_mode_makes_straddling_records_durable(data_bytes: int) -> None:
    """In commit mode the most pessimistic OS-crash image holds every acknowledged commit."""
    cls, size = state_class(data_bytes), SIZES[data_bytes]
    journal = 2 * JOURNAL  # two pages: a record across the ring's end touches both
    disk = SimStorage()
    store = js.open("s.jst", cls, storage=disk, journal_size=journal, checkpoint_threshold=1.0)
    seen: set[int] = set()
    for step in range(1, journal // RECORD_ALIGN + 2):
        start = store.position % journal
        state = nth(cls, step, data_bytes)
        store.commit(state)
        if straddles(start, size, journal):
            seen.add(start)
        after = SimStorage()
        image = disk.durable_image("s.jst")
        after.create("s.jst", len(image), [(0, image)])
        with js.open("s.jst", cls, storage=after, readonly=True) as recovered:
            assert (recovered.seq, recovered.state) == (step, state), f"at {start}"
    assert seen == expected_straddles(size, journal)


@pytest.mark.parametrize("data_bytes", list(SIZES))
def test_fast_path_reads_every_whole_record_and_only_those(tmp_path: Path, data_bytes: int) -> None:
    """The replay fast path accepts every record that does not cross the end, as the slow path."""
    cls, size = state_class(data_bytes), SIZES[data_bytes]
    path = tmp_path / "fast.jst"
    store = js.open(path, cls, durability="process", journal_size=JOURNAL, checkpoint_threshold=1.0)
    try:
        fast_seen = slow_seen = 0
        for step in range(1, JOURNAL // RECORD_ALIGN + 2):
            position, base_seq = store.position, store.seq
            store.commit(nth(cls, step, data_bytes))
            ring = bytes(store.ring_buffer())
            record, reason, _ = read_record(
                ring, JOURNAL, position, epoch=store.epoch, seq=base_seq + 1
            )
            assert reason is None, f"step {step} at {position}: {reason}"
            assert record is not None
            assert record.size == size
            fast = next_record_fast(
                ring,
                JOURNAL,
                position,
                epoch=store.epoch,
                seq=base_seq + 1,
                limit=position + size,
                state_size=store.header.state_size,
            )
            start = position % JOURNAL
            if start + size > JOURNAL:
                assert fast is None, f"the fast path read a record across the end at {start}"
                slow_seen += 1
                continue
            patches = check_patches(record.payload, store.header.state_size)
            assert fast is not None, f"at {start}"
            assert (fast.size, fast.generation, fast.patches) == (
                size,
                record.header.generation,
                patches,
            ), f"at {start}"
            fast_seen += 1
            # One byte short of the record is not enough for it.
            assert (
                next_record_fast(
                    ring,
                    JOURNAL,
                    position,
                    epoch=store.epoch,
                    seq=base_seq + 1,
                    limit=position + size - 1,
                    state_size=store.header.state_size,
                )
                is None
            )
    finally:
        store.close()
    assert fast_seen > 0
    assert slow_seen == size // RECORD_ALIGN - 1  # the starts in (JOURNAL - size, JOURNAL)
