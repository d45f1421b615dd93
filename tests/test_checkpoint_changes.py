"""Checkpoints that rewrite only the chunks that changed: the same bytes as a full write.

A checkpoint into a slot this session already wrote rewrites the chunks the commits since then
touched, the tail and the head, and updates the crc from the changed regions alone
(``_checkpoint``, ``_slotcrc``). These tests hold the result byte for byte equal to a full
write, and count what a checkpoint writes.
"""

from __future__ import annotations

import os
import random
import struct
from pathlib import Path
from typing import Annotated

import attrs
import hypothesis.strategies as st
import pytest
from hypothesis import given, settings

import journalstate as js
from journalstate._checkpoint import CHUNK, PatchLog, dirty_chunks
from journalstate._format import SLOT_CRC_OFFSET, SLOT_HEAD_SIZE, SlotHead, encode_slot
from journalstate._slotcrc import SlotCrc, plain_crc, shift, zeros_operator
from journalstate._store import Store
from journalstate.testing import SimStorage
from journalstate.testing._events import Event, Op, SimulatedCrash

BIG = 3 * CHUNK + 100  # a blob over four chunks, the last one partial


@attrs.frozen
class S:
    """Small fields around a blob that spans several chunks."""

    n: js.U64 = 0
    blob: Annotated[bytes, js.Bytes(BIG)] = b""
    tail: js.U32 = 0


def slot_bytes(store: Store[S], index: int) -> bytes:
    """The meaningful bytes (head, state, tail) of slot ``index``."""
    size = store.header.state_size
    at = index * store.header.slot_size
    return bytes(store.slot_buffer()[at : at + SLOT_HEAD_SIZE + size + 8])


def full_write(store: Store[S]) -> bytes:
    """What a full write of the newest checkpoint would have left in its slot."""
    base = store._base
    head = SlotHead(base.generation, base.epoch, base.seq, base.position, store.header.state_size)
    return encode_slot(head, store.state_image())


@given(
    size=st.integers(1, 3 * CHUNK),
    changes=st.lists(st.tuples(st.integers(0, 3 * CHUNK), st.binary(min_size=1, max_size=300))),
    head=st.tuples(st.integers(0, 2**64 - 1), st.integers(0, 2**32 - 1)),
)
@settings(max_examples=200, deadline=None)
def test_the_updated_crc_is_the_crc_of_the_whole_slot(
    size: int, changes: list[tuple[int, bytes]], head: tuple[int, int]
) -> None:
    """Any changes to state chunks, head and tail give the crc a full computation gives."""
    state = bytearray(os.urandom(size))
    old = encode_slot(SlotHead(1, 1, 1, 1, size), state)
    new_state = bytearray(state)
    for offset, data in changes:
        offset %= size
        new_state[offset : offset + len(data)] = data[: size - offset]
    new = encode_slot(SlotHead(head[0], head[1], 7, 9, size), new_state)
    regions = [(0, SLOT_CRC_OFFSET)]
    regions += [
        (SLOT_HEAD_SIZE + c * CHUNK, min(CHUNK, size - c * CHUNK)) for c in range(-(-size // CHUNK))
    ]
    regions.append((SLOT_HEAD_SIZE + size, 8))
    got = SlotCrc(size).updated(
        struct.unpack_from("<I", old, SLOT_CRC_OFFSET)[0],
        [(at, n, plain_crc(old[at : at + n]), plain_crc(new[at : at + n])) for at, n in regions],
    )
    assert got == struct.unpack_from("<I", new, SLOT_CRC_OFFSET)[0]


@given(a=st.binary(max_size=500), b=st.binary(max_size=500))
def test_shifting_over_zeros_combines_crcs(a: bytes, b: bytes) -> None:
    """crc(a + b) from crc(a) and crc(b): the shift is right for every length."""
    assert plain_crc(a + b) == shift(plain_crc(a), zeros_operator(len(b))) ^ plain_crc(b)


def test_dirty_chunks_and_the_patch_log() -> None:
    """Patches name the chunks they touch; the log serves what came after a mark."""
    assert dirty_chunks([[(0, b"x")], [(CHUNK - 1, b"xy")]], 10 * CHUNK) == [0, 1]
    assert dirty_chunks([[(2 * CHUNK, b"z" * (2 * CHUNK + 1))]], 10 * CHUNK) == [2, 3, 4]
    assert dirty_chunks([[(5, b"q")]], 3) == [0]
    log = PatchLog(0, [[(0, b"a")], [(CHUNK, b"b")], [(2 * CHUNK, b"c")]])
    assert list(log.since(2)) == [[(2 * CHUNK, b"c")]]
    trimmed = log.trimmed(1)
    assert (trimmed.start, trimmed.end) == (1, 3)
    assert list(trimmed.since(1)) == list(log.since(1))


@pytest.mark.parametrize("mode", ["process", "commit"])
def test_every_checkpoint_leaves_the_bytes_of_a_full_write(tmp_path: Path, mode: str) -> None:
    """Random commits and checkpoints: each slot equals a full write of its checkpoint."""
    rng = random.Random(5)
    checked = 0
    with js.open(tmp_path / "s.jst", S, durability=mode, journal_size=8 * CHUNK) as store:
        for i in range(400):
            state = store.state
            choice = rng.random()
            if choice < 0.4:
                state = attrs.evolve(state, n=i)
            elif choice < 0.8:
                blob = bytearray(state.blob.ljust(BIG, b"\0"))
                at = rng.randrange(BIG)
                blob[at : at + 50] = os.urandom(min(50, BIG - at))
                state = attrs.evolve(state, blob=bytes(blob).rstrip(b"\0"), tail=i)
            else:
                state = attrs.evolve(state, tail=i)
            store.commit(state)
            if rng.random() < 0.1:
                store.checkpoint()
            if store._base.seq == store.seq:  # just checkpointed (by hand or for space)
                assert slot_bytes(store, store._base.slot) == full_write(store)
                checked += 1
        assert store.stats.checkpoints > 20
        assert checked > 20
    with js.open(tmp_path / "s.jst", S, readonly=True) as again:
        assert again.recovery.corruption == ()
        assert all(s.valid for s in again.recovery.slots)


def test_a_checkpoint_writes_only_the_chunks_that_changed() -> None:
    """After both slots were written whole, a checkpoint writes a few chunks, not the state."""
    disk = SimStorage()
    with js.open("s.jst", S, storage=disk, journal_size=8 * CHUNK) as store:
        store.commit(S(1, b"x" * BIG, 1))
        store.checkpoint()
        store.checkpoint()  # both slots now hold what this session wrote
        store.commit(attrs.evolve(store.state, n=2))
        before = len(disk.events)
        store.checkpoint()
        written = sum(
            e.length for e in disk.events[before:] if e.op is Op.WRITE and e.region == "slots"
        )
        assert slot_bytes(store, store._base.slot) == full_write(store)
    assert 0 < written <= CHUNK + 2 * SLOT_HEAD_SIZE


@pytest.mark.parametrize("os_crash", [False, True])
def test_a_crash_at_every_write_of_a_checkpoint_of_changes(os_crash: bool) -> None:
    """A process death or an OS crash at each slot write of a checkpoint of what changed (and
    torn inside it) recovers the committed state; the slot written is whole or ignored."""
    writes = 0
    cases = 0
    while True:
        disk = SimStorage()
        store = js.open("s.jst", S, storage=disk, journal_size=8 * CHUNK, durability="commit")
        store.commit(S(1, b"x" * BIG, 1))
        store.checkpoint()
        store.checkpoint()  # both slots written whole this session: the next is incremental
        blob = bytearray(b"x" * BIG)
        blob[CHUNK + 5 : CHUNK + 9] = b"QQQQ"
        blob[3 * CHUNK + 1] = ord("Z")
        store.commit(S(7, bytes(blob), 3))
        committed = store.state
        seen = 0

        def hook(event: Event, at: int = writes) -> int | None:
            nonlocal seen
            if event.op is Op.WRITE and event.region == "slots":
                seen += 1
                if seen == at + 1:
                    return event.length // 2  # a torn write: half of it lands
            return None

        disk.crash_at = hook
        try:
            store.checkpoint()
            crashed = False
        except SimulatedCrash:
            crashed = True
        disk.crash_at = None
        if not crashed:
            break
        cases += 1
        if os_crash:
            disk.crash(random.Random(writes).randrange)
        else:
            disk.restart()
        with js.open("s.jst", S, storage=disk, readonly=True) as again:
            assert (again.state, again.seq) == (committed, 2)
            assert again.recovery.corruption == ()
        writes += 1
    assert cases >= 3  # the chunks, the tail, the head
