"""A slot's crc after a change of some of its bytes, in time proportional to the change. Pure.

What belongs here: the arithmetic that lets a checkpoint rewrite only the pages of a slot that
changed since that slot was last written, and still store the slot's crc as format.md defines
it (over the head, the whole state and the tail), without reading the pages it does not write.

crc32c is affine in its input: for two messages of the same length, ``crc(M) ^ crc(M')`` is the
crc without initial value and final xor (``L``) of ``M ^ M'``. When ``M'`` differs from ``M``
only in a region ``r`` followed by ``z`` bytes, that is ``L(new_r ^ old_r)`` shifted over ``z``
zero bytes, and ``L(new_r ^ old_r) = crc(new_r) ^ crc(old_r)``. Shifting a crc over ``z`` zero
bytes is a multiplication by ``x^(8z)`` modulo the polynomial, which takes a few dozen steps
whatever ``z`` is (zlib's ``crc32_combine`` does the same for crc32).
"""

from __future__ import annotations

from collections.abc import Iterable

from journalstate._checksums import crc32c, mask, unmask
from journalstate._format import SLOT_CRC_OFFSET, SLOT_HEAD_SIZE, SLOT_TAIL_SIZE

_POLY = 0x82F63B78
"""The crc32c polynomial, reflected (format.md, "Checksums")."""


def _multiply(a: int, b: int) -> int:
    """``a * b`` modulo the polynomial, both reflected (bit 31 is x^0)."""
    m = 1 << 31
    product = 0
    while a:
        if a & m:
            product ^= b
            a ^= m
        m >>= 1
        b = (b >> 1) ^ _POLY if b & 1 else b >> 1
    return product


def _powers() -> list[int]:
    """``x^(2^k)`` modulo the polynomial for k in 0..63."""
    p = 1 << 30  # x^1
    table = [p]
    for _ in range(63):
        p = _multiply(p, p)
        table.append(p)
    return table


_X_2K = _powers()


def zeros_operator(count: int) -> int:
    """``x^(8 * count)`` modulo the polynomial: what shifting a crc over ``count`` zero bytes
    multiplies it by."""
    p, k, n = 1 << 31, 3, count  # x^0; a byte is 2^3 bits
    while n:
        if n & 1:
            p = _multiply(_X_2K[k], p)
        n >>= 1
        k += 1
    return p


def shift(value: int, operator: int) -> int:
    """A crc without initial value and final xor, shifted over the zeros ``operator`` stands for
    (see :func:`zeros_operator`)."""
    return _multiply(operator, value)


class SlotCrc:
    """The masked crc of a slot of ``state_size`` state bytes, updated region by region.

    The crc covers the message ``slot[0:40] ++ slot[44 : 56 + state_size]`` (format.md,
    "Slot"): the head without its crc field, the state, the tail generation. Offsets below are
    slot offsets, as the checkpoint writes them.
    """

    def __init__(self, state_size: int) -> None:
        self.state_size = state_size
        self._length = SLOT_HEAD_SIZE + state_size + SLOT_TAIL_SIZE - 4  # the message's
        self._operators: dict[int, int] = {}

    def _message_end(self, slot_offset: int, length: int) -> int:
        """Where a region of the slot ends in the checksummed message."""
        if slot_offset + length <= SLOT_CRC_OFFSET:
            return slot_offset + length
        assert slot_offset >= SLOT_CRC_OFFSET + 4, "a region must not cover the crc field"
        return slot_offset - 4 + length

    def updated(self, stored: int, changes: Iterable[tuple[int, int, int, int]]) -> int:
        """The masked crc after ``changes``, given the masked crc ``stored`` before them.

        Each change is ``(slot_offset, length, crc_old, crc_new)``: a region of the slot and the
        plain crc32c of its bytes before and after. Regions must not overlap each other or the
        crc field.
        """
        value = unmask(stored)
        operators = self._operators
        for offset, length, old, new in changes:
            after = self._length - self._message_end(offset, length)
            operator = operators.get(after)
            if operator is None:
                operator = operators[after] = zeros_operator(after)
            value ^= shift(old ^ new, operator)
        return mask(value)


def plain_crc(data: bytes | bytearray | memoryview) -> int:
    """crc32c of ``data`` (the crc each change of :meth:`SlotCrc.updated` carries)."""
    return int(crc32c(data))
