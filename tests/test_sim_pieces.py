"""The simulated disk applies a write in pieces and runs a hook between them, without crashing."""

from __future__ import annotations

from typing import Annotated

import attrs
import pytest

import journalstate as js
from journalstate.testing import (
    SECTOR_SIZE,
    Event,
    Op,
    SimStorage,
    SimulatedCrash,
    byte_pieces,
    sector_pieces,
)

PATH = "pieces.jst"


@attrs.frozen
class S:
    """A state whose records span several sectors."""

    step: js.U64 = 0
    blob: Annotated[bytes, js.Bytes(1500)] = b""


def state(step: int) -> S:
    """The state committed as ``step``: its blob is derived from the step."""
    return S(step=step, blob=bytes([step % 251]) * (500 + step % 1000))


def test_sector_pieces_end_on_sector_boundaries_of_the_file() -> None:
    """A write is cut where the file's sectors end inside it, and at its end."""
    assert sector_pieces(Event(0, Op.WRITE, "journal", 508, 10)) == [4, 10]
    assert sector_pieces(Event(0, Op.WRITE, "journal", 512, 1100)) == [512, 1024, 1100]
    assert sector_pieces(Event(0, Op.WRITE, "journal", 0, 512)) == [512]
    assert byte_pieces(0, 3, 3, 40)(Event(0, Op.WRITE, "journal", 0, 10)) == [3, 10]


def test_hook_sees_each_prefix_of_the_write_in_the_page_cache() -> None:
    """After each piece the page cache holds exactly that prefix of the write, the rest old."""
    disk = SimStorage()
    store = js.open(PATH, S, storage=disk, journal_size=16384)
    seen: list[tuple[int, int, int]] = []
    before = disk.cache_image(PATH)
    images: list[bytes] = []

    def hook(event: Event, done: int) -> None:
        seen.append((event.index, event.offset, done))
        images.append(disk.cache_image(PATH))

    disk.during_write = hook
    store.commit(state(1))
    disk.during_write = None
    final = disk.cache_image(PATH)
    assert seen, "the commit wrote nothing"
    by_write: dict[int, list[int]] = {}
    for index, _offset, done in seen:
        by_write.setdefault(index, []).append(done)
    for index, dones in by_write.items():
        event = disk.events[index]
        assert event.op is Op.WRITE
        assert dones == sector_pieces(event), "pieces not at the sector boundaries"
        assert dones == sorted(dones)
        assert dones[-1] == event.length
        for done in dones[:-1]:
            assert (event.offset + done) % SECTOR_SIZE == 0
    # After the first piece of the first write, its prefix is new and the rest is as before.
    index, offset, done = seen[0]
    length = disk.events[index].length
    assert done < length, "the first write fits in one sector: make the state larger"
    assert images[0][offset : offset + done] == final[offset : offset + done]
    assert images[0][offset + done : offset + length] == before[offset + done : offset + length]
    assert final[offset + done : offset + length] != before[offset + done : offset + length]
    store.close()


def test_a_reader_opened_inside_a_write_sees_a_committed_state() -> None:
    """A read-only open on the same disk, at every piece of every write, finds a committed state."""
    disk = SimStorage()
    writer = js.open(PATH, S, storage=disk, journal_size=8192, durability="process")
    committed = {0: S()}
    in_flight: list[int] = []
    opens = 0

    def hook(event: Event, done: int) -> None:
        nonlocal opens
        with js.open(PATH, S, storage=disk, readonly=True) as reader:
            seq = reader.seq
            allowed = dict(committed)
            if in_flight:
                allowed[in_flight[0]] = state(in_flight[0])
            assert seq in allowed, f"seq {seq} was never committed"
            assert reader.state == allowed[seq], f"state at seq {seq} is not the committed one"
        opens += 1

    disk.pieces = byte_pieces(1, 7, 40, 300, 700, 1200)
    disk.during_write = hook
    for _ in range(1, 25):
        in_flight[:] = [writer.seq + 1]
        seq = writer.commit(state(writer.seq + 1))
        committed[seq] = state(seq)
    disk.during_write = None
    writer.close()
    assert opens > 24 * 3


def test_write_made_inside_the_hook_is_applied_whole() -> None:
    """A write the hook itself makes runs no nested hook and is not cut."""
    disk = SimStorage()
    store = js.open(PATH, S, storage=disk, journal_size=16384)
    other = js.open("other.jst", S, storage=disk, journal_size=16384)
    calls: list[tuple[str, int]] = []

    def hook(event: Event, done: int) -> None:
        calls.append((event.region, done))
        if len(calls) == 1:
            other.commit(state(7))

    disk.during_write = hook
    store.commit(state(1))
    disk.during_write = None
    assert other.state == state(7)
    with js.open("other.jst", S, storage=disk, readonly=True) as reader:
        assert reader.state == state(7)
    # Only the outer store's writes were split: the hook ran once per piece of those.
    outer = [e for e in disk.events if e.op is Op.WRITE]
    assert len(calls) < sum(len(sector_pieces(e)) for e in outer)
    store.close()
    other.close()


def test_a_write_cut_short_by_a_crash_is_not_split() -> None:
    """``crash_at`` still cuts a write and crashes; the piece hook does not run for it."""
    disk = SimStorage()
    store = js.open(PATH, S, storage=disk, journal_size=16384)
    start = len(disk.events)
    calls: list[int] = []
    disk.during_write = lambda event, done: calls.append(done)
    disk.crash_at = lambda e: 5 if e.index == start else None
    with pytest.raises(SimulatedCrash):
        store.commit(state(1))
    disk.crash_at = None
    disk.during_write = None
    assert calls == []
    disk.restart(PATH)
    with js.open(PATH, S, storage=disk) as reopened:
        assert reopened.state == S()


def test_pieces_are_versions_an_os_crash_may_keep() -> None:
    """Each piece is a version of its page, so a crash image may hold a write cut at a piece."""
    disk = SimStorage()
    store = js.open(PATH, S, storage=disk, journal_size=16384, durability="process")
    before = disk.cache_image(PATH)
    start = len(disk.events)
    disk.pieces = byte_pieces(100)
    disk.during_write = lambda event, done: None
    store.commit(state(1))
    disk.during_write = None
    final = disk.cache_image(PATH)
    first = next(e for e in disk.events[start:] if e.op is Op.WRITE)
    assert first.region == "journal"
    assert first.length > 100
    # Every unsynced page at its second version: the first write's first page holds the
    # 100-byte piece and, after it, what was there before.
    image = disk.crash_image(PATH, lambda n: 1 if n > 1 else 0, torn_sectors=False)
    page_end = (first.offset // 4096 + 1) * 4096
    end = min(page_end, first.offset + first.length)
    assert image[first.offset : first.offset + 100] == final[first.offset : first.offset + 100]
    assert image[first.offset + 100 : end] == before[first.offset + 100 : end]
    assert final[first.offset + 100 : end] != before[first.offset + 100 : end]
    disk.restart(PATH, image)
    with js.open(PATH, S, storage=disk) as reopened:
        assert reopened.state in (S(), state(1))


def test_read_hook_runs_before_each_buffer_is_taken() -> None:
    """``during_read`` runs before a mapping's snapshot, so what it writes is in that snapshot."""
    disk = SimStorage()
    writer = js.open(PATH, S, storage=disk, journal_size=16384)
    reader = js.open(PATH, S, storage=disk, readonly=True)
    kinds: list[str] = []

    def hook(kind: str) -> None:
        kinds.append(kind)
        if len(kinds) == 1:
            writer.commit(state(1))  # its own reads run no nested hook

    disk.during_read = hook
    assert reader.refresh()
    disk.during_read = None
    assert reader.seq == 1
    assert reader.state == state(1)
    assert set(kinds) <= {"slots", "journal"}
    assert "journal" in kinds
    reader.close()
    writer.close()
