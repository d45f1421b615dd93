"""Smoke runs of the fuzz targets (fuzz/), so CI exercises them, and the bugs they found.

Each target runs a small, seeded budget of inputs: at most SMOKE_EXAMPLES, fewer when the
Hypothesis profile asks for fewer. Long runs are ``python -m fuzz.run TARGET --seconds N``
(see fuzz/README.md). The bugs the targets found are pinned below with their minimal
reproducers: fixed ones as regression tests, open ones as strict xfails (when one is fixed, its
test passes and the xfail must go, with its entry in fuzz.harness.KNOWN_BUGS).
"""

from __future__ import annotations

import contextlib
import random
import struct
import tracemalloc
from typing import Any

import pytest
from hypothesis import settings

import journalstate as js
from fuzz import harness
from fuzz.run import run_target
from fuzz.stores import PATH, Small
from fuzz.targets import TARGETS
from journalstate._descriptor import NODE_HEAD_FMT
from journalstate._header import HEADER_CRC_OFFSET, HEADER_FIXED_SIZE, header_crc
from journalstate._layout import KIND_ARRAY, KIND_STRUCT, KIND_UINT
from journalstate.testing import SimStorage

SMOKE_EXAMPLES = 50
"""Inputs per target in the smoke run (about 1 to 5 seconds each)."""


@pytest.mark.slow
@pytest.mark.parametrize("name", list(TARGETS))
def test_fuzz_target_smoke(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """A fuzz target tries a small seeded budget of mutations and finds no failure."""
    # The hang guard stays, but a busy machine must not turn a slow input into a "hang".
    monkeypatch.setattr(harness, "TIMEOUT", max(harness.TIMEOUT, 300.0))
    profile = settings.default
    budget = SMOKE_EXAMPLES if profile is None else min(profile.max_examples, SMOKE_EXAMPLES)
    result = run_target(name, max_examples=budget, derandomize=True, say=lambda _: None)
    print(f"{name}: {result.inputs} mutations tried in {result.seconds:.1f} s")
    if result.failure is not None:
        raise result.failure
    assert result.inputs > 0


def test_fuzz_one_input_takes_raw_bytes() -> None:
    """Every target runs from raw bytes through fuzz_one_input, as HypoFuzz and atheris call it."""
    rng = random.Random(0)
    for test in TARGETS.values():
        for _ in range(2):
            test.hypothesis.fuzz_one_input(rng.randbytes(4000))  # type: ignore[attr-defined]


# --- bugs found by the targets ------------------------------------------------------------------


def _node(kind: int, size: int, param: int, name: bytes = b"") -> bytes:
    return struct.pack(NODE_HEAD_FMT, kind, 0, len(name), 0, size, param) + name


def _closed_store() -> tuple[SimStorage, bytes]:
    """A Small store created and closed on a simulated disk, and its bytes."""
    disk = SimStorage()
    js.open(PATH, Small, storage=disk, journal_size=4096).close()
    return disk, disk.cache_image(PATH)


def _with_descriptor(image: bytes, descriptor: bytes) -> bytes:
    """``image`` with its schema descriptor replaced and the header crc fixed (header_size 4096)."""
    buf = bytearray(image)
    buf[HEADER_FIXED_SIZE:4096] = bytes(4096 - HEADER_FIXED_SIZE)
    buf[HEADER_FIXED_SIZE : HEADER_FIXED_SIZE + len(descriptor)] = descriptor
    buf[88:92] = struct.pack("<I", len(descriptor))
    crc = header_crc(bytes(buf[:HEADER_FIXED_SIZE]), descriptor)
    buf[HEADER_CRC_OFFSET : HEADER_CRC_OFFSET + 4] = struct.pack("<I", crc)
    return bytes(buf)


def test_stored_field_named_self_is_a_journalstate_error() -> None:
    """A stored schema with a field named "self" makes open(None) raise a JournalStateError."""
    disk, image = _closed_store()
    # struct "S" (8 bytes, 1 field) { "self": u64 }: 0800 0100 00000000 08000000 01000000 'S'
    #                                                 0200 0400 00000000 08000000 00000000 'self'
    descriptor = _node(KIND_STRUCT, 8, 1, b"S") + _node(KIND_UINT, 8, 0, b"self")
    disk.set_image(PATH, _with_descriptor(image, descriptor))
    with pytest.raises(js.JournalStateError):
        js.open(PATH, None, storage=disk, readonly=True)


def test_stored_huge_array_is_not_allocated() -> None:
    """A stored schema declaring a huge array is refused without allocating for it."""
    disk, image = _closed_store()
    n = 1 << 22  # a 16 KiB file declaring 4 Mi array elements
    descriptor = _node(KIND_STRUCT, n, 1, b"S") + _node(KIND_ARRAY, n, n, b"a")
    descriptor += _node(KIND_UINT, 1, 0)
    disk.set_image(PATH, _with_descriptor(image, descriptor))
    tracemalloc.start()
    try:
        with pytest.raises(js.JournalStateError):
            js.open(PATH, None, storage=disk, readonly=True)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 4 << 20, f"open allocated {peak} bytes for a {len(image)}-byte file"


def _stale_slot_copy() -> tuple[SimStorage, Any]:
    """Two acknowledged commits, a process death, then slot 0 copied over slot 1."""
    disk = SimStorage()
    store = js.open(PATH, Small, storage=disk, journal_size=4096)  # durability="commit"
    store.commit(Small(1, "a"))
    store.commit(Small(2, "b"))
    disk.restart(PATH)  # process death: slot 0 (epoch 0), slot 1 (epoch 1), records of epoch 1
    buf = bytearray(disk.cache_image(PATH))
    h = store.header
    buf[h.slot1_offset : h.slot1_offset + h.slot_size] = buf[h.slot0_offset : h.slot1_offset]
    disk.set_image(PATH, bytes(buf))
    return disk, store.header


def test_stale_slot_copy_is_reported() -> None:
    """Losing a durable slot (and the commits after it) to a copy of the other is reported."""
    disk, _ = _stale_slot_copy()
    with contextlib.suppress(js.JournalStateError):
        store = js.open(PATH, Small, storage=disk, readonly=True)
        report = store.recovery
        store.close()
        assert report.corruption, f"lost seq 1 and 2 silently: {store.state}, clean={report.clean}"


def test_store_recovered_after_stale_slot_copy_reopens() -> None:
    """After a writable open of a store with a stale slot copy, the next open succeeds."""
    disk, _ = _stale_slot_copy()
    with js.open(PATH, Small, storage=disk, recovery="salvage") as store:
        recovered = store.state
    with js.open(PATH, Small, storage=disk, readonly=True) as again:
        assert again.state == recovered


def test_rollback_after_stale_slot_copy_reopens() -> None:
    """After a stale slot copy, a writable previous_generation open leaves a store that reopens."""
    disk, _ = _stale_slot_copy()
    with js.open(PATH, Small, storage=disk, previous_generation=True) as store:
        rolled_back = store.state
    with js.open(PATH, Small, storage=disk, readonly=True) as again:
        assert again.state == rolled_back
