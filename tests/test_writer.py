"""The writer's placement in the ring: the split at the ring's end, end markers and sync ranges."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from journalstate import _writer
from journalstate._format import END_MARKER_SIZE

RING = 256


class ListRing:
    """A ring over a bytearray that remembers each write's offset and length."""

    def __init__(self, size: int) -> None:
        self.buffer = bytearray(size)
        self.writes: list[tuple[int, int]] = []

    def write(self, offset: int, data: bytes | bytearray) -> None:
        assert offset + len(data) <= len(self.buffer)
        self.buffer[offset : offset + len(data)] = data
        self.writes.append((offset, len(data)))


@given(position=st.integers(0, 10 * RING), length=st.integers(1, RING))
def test_spans_cover_the_bytes_in_order(position: int, length: int) -> None:
    """spans gives one range, or two when the bytes cross the ring's end, of the right total."""
    spans = _writer.spans(position, length, RING)
    assert sum(n for _, n in spans) == length
    assert spans[0][0] == position % RING
    assert all(offset >= 0 and offset + n <= RING for offset, n in spans)
    if position % RING + length <= RING:
        assert len(spans) == 1
    else:
        assert spans[1] == (0, length - (RING - position % RING))


@given(position=st.integers(0, 10 * RING), data=st.binary(min_size=1, max_size=RING))
def test_write_then_holds(position: int, data: bytes) -> None:
    """What write places at a logical position, holds finds there, split or not."""
    ring = ListRing(RING)
    _writer.write(ring, RING, position, data)
    assert ring.writes == list(_writer.spans(position, len(data), RING))
    assert _writer.holds(ring.buffer, RING, position, data)
    if any(data):
        assert not _writer.holds(bytes(RING), RING, position, data)


@pytest.mark.parametrize("position", [0, RING - END_MARKER_SIZE, RING - 8, 2 * RING - 1])
def test_end_marker_is_zeros_and_synced_in_ranges(position: int) -> None:
    """The end marker is 48 zeros, written and synced in the ranges spans gives."""
    ring = ListRing(RING)
    ring.buffer[:] = b"\xff" * RING
    _writer.write_end_marker(ring, RING, position)
    assert _writer.holds(ring.buffer, RING, position, bytes(END_MARKER_SIZE))
    synced: list[tuple[int, int]] = []
    _writer.sync_end_marker(lambda offset, n: synced.append((offset, n)), RING, position)
    assert synced == list(_writer.spans(position, END_MARKER_SIZE, RING))


def test_sync_covers_the_records_and_the_end_marker_after_them() -> None:
    """sync covers [start, tail) and the end marker, in two ranges across the ring's end."""
    synced: list[tuple[int, int]] = []
    _writer.sync(lambda offset, n: synced.append((offset, n)), RING, RING - 64, RING + 40)
    assert synced == [(RING - 64, 64), (0, 40 + END_MARKER_SIZE)]
