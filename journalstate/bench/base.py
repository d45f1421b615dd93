"""What every measurement of `journalstate bench` shares: states, settings, rows, the timing loop.

What belongs here: the ``Small`` state every commit changes and the ``Large`` one built around
it, ``Config`` (what to measure and for how long), ``Row`` (one line of the comparison table),
the floors' in-place image of an update, and the timing loop with its percentiles. Nothing
here measures by itself.
"""

from __future__ import annotations

import mmap
import statistics
import struct
import time
from array import array
from collections.abc import Callable
from typing import Annotated, Any

import attrs

import journalstate as js

Op = Callable[[int], None]
"""One commit of update number ``i``."""

PAGE = mmap.PAGESIZE
UPDATE = struct.Struct("<QdI100s")
"""The floors' in-place image of the update: u64, f64, then a Bytes(100) as u32 length + data."""
BLOBS = tuple(bytes([k]) * 100 for k in range(256))
"""100-byte values; update ``i`` uses ``BLOBS[i & 255]``, so consecutive commits differ."""


@attrs.frozen
class Small:
    """The benchmark's state: every commit changes all three fields."""

    n: js.U64 = 0
    x: js.F64 = 0.0
    blob: Annotated[bytes, js.Bytes(100)] = b""


def small(i: int) -> Small:
    return Small(n=i, x=i * 0.5, blob=BLOBS[i & 255])


def large_class(size: int) -> type[Any]:
    """``Small`` plus a ``big`` Bytes field of ``size`` bytes that commits never change."""
    field: Any = attrs.field  # its overloads want a class as type=, not an Annotated
    return attrs.make_class(
        "Large",
        {
            "n": field(type=js.U64, default=0),
            "x": field(type=js.F64, default=0.0),
            "blob": field(type=Annotated[bytes, js.Bytes(100)], default=b""),
            "big": field(type=Annotated[bytes, js.Bytes(size)], default=b""),
        },
        frozen=True,
    )


@attrs.define
class Config:
    """What to measure and for how long (built from the command line by :func:`run`)."""

    directory: str
    seconds: float = 1.0
    repeat: int = 5
    warmup: float = 0.2
    threads: int = 8
    large_bytes: int = 64 << 20
    recovery_journal: int = 16 << 20
    writeback_seconds: float = 5.0
    peers: bool = False


@attrs.define
class Row:
    """One line of the comparison table."""

    key: str
    label: str
    group: str
    """"floor", "journalstate" or "peer"."""
    commits_per_s: float
    p50_us: float
    p99_us: float
    runs: list[float]
    """commits/s of each repetition; ``commits_per_s`` is their median."""
    commits: int
    floor: str | None = None
    ratio_to_floor: float | None = None
    commits_per_msync: float | None = None
    checkpoints: int | None = None
    note: str = ""


# --- timing ------------------------------------------------------------------------------------


def loop(op: Op, seconds: float, first: int) -> tuple[int, int, array[int]]:
    """Run ``op(first), op(first + 1), ...`` for ``seconds``: (count, elapsed ns, latencies)."""
    clock = time.perf_counter_ns
    lat: array[int] = array("q")
    append = lat.append
    i = first
    start = t0 = clock()
    deadline = start + int(seconds * 1e9)
    while True:
        op(i)
        t1 = clock()
        append(t1 - t0)
        i += 1
        if t1 >= deadline:
            return i - first, t1 - start, lat
        t0 = t1


def percentiles(lat: array[int]) -> tuple[float, float]:
    s = sorted(lat)
    return float(s[len(s) // 2]), float(s[min(len(s) - 1, int(len(s) * 0.99))])


Runner = Callable[[float, int], "tuple[int, int, array[int]]"]
"""Commits for ``seconds`` from update ``first`` on: (count, elapsed ns, latencies), as loop."""


@attrs.define
class Series:
    """The timed runs of one case: one rate and two percentiles per run."""

    runs: list[float] = attrs.Factory(list)
    p50s: list[float] = attrs.Factory(list)
    p99s: list[float] = attrs.Factory(list)
    commits: int = 0

    def add(self, n: int, ns: int, lat: array[int]) -> None:
        self.runs.append(n * 1e9 / ns)
        p50, p99 = percentiles(lat)
        self.p50s.append(p50)
        self.p99s.append(p99)
        self.commits += n

    @property
    def rate(self) -> float:
        return statistics.median(self.runs)

    @property
    def p50_us(self) -> float:
        return statistics.median(self.p50s) / 1e3

    @property
    def p99_us(self) -> float:
        return statistics.median(self.p99s) / 1e3
