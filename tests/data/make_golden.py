"""Made tests/data/golden-v1.jst once, with journalstate 0.1.0. Run once; never regenerate.

The golden file pins format version 1: every later release must open it and recover exactly
the state below (tests/test_golden.py). Regenerating it would only prove that a release reads
its own files. A new format version gets a new golden file (golden-v2.jst, made by the release
that introduces it) next to this one, never in its place.

    python tests/data/make_golden.py tests/data/golden-vN.jst

The writer ends with os._exit, a process death: the file keeps three committed records after
its newest checkpoint, so opening it replays them.
"""

from __future__ import annotations

import os
import struct
import sys
from typing import Annotated

import attrs

import journalstate as js

NAN_BITS = 0x7FF8_0000_DEAD_BEEF
"""A quiet NaN with a payload: recovery must keep every bit."""


@attrs.frozen
class Reading:
    """A nested class, also used as an array element."""

    sensor: js.U16 = 0
    value: js.F32 = 0.0
    ok: bool = False


@attrs.frozen
class Golden:
    """Every kind of field."""

    count: js.U64 = 0
    small: js.U8 = 0
    delta: js.I32 = 0
    tiny: js.I8 = 0
    ratio: js.F64 = 0.0
    odd: js.F64 = 0.0
    half: js.F32 = 0.0
    flag: bool = False
    name: Annotated[str, js.Str(16)] = ""
    blob: Annotated[bytes, js.Bytes(8)] = b""
    hist: Annotated[tuple[int, ...], js.Array(js.I16, 4)] = (0, 0, 0, 0)
    latest: Reading = Reading()
    readings: Annotated[tuple[Reading, ...], js.Array(Reading, 2)] = (Reading(), Reading())


def nan_with_payload() -> float:
    """The NaN whose bits are NAN_BITS."""
    value: float = struct.unpack("<d", struct.pack("<Q", NAN_BITS))[0]
    return value


def main(path: str) -> None:
    """Write the golden store at ``path`` (which must not exist), then die without closing."""
    if os.path.exists(path):
        sys.exit(f"{path} exists; a golden file is never regenerated")
    store = js.open(path, Golden, journal_size=4096, durability="commit")
    with store.transaction() as draft:  # seq 1
        draft.count = 1
        draft.name = "first"
        draft.ratio = 0.1
    with store.transaction() as draft:  # seq 2
        draft.count = 2
        draft.small = 255
        draft.delta = -(2**31)
        draft.tiny = -128
        draft.blob = b"\x00\x01\xfe\xff"
    with store.transaction() as draft:  # seq 3
        draft.count = 3
        draft.latest.sensor = 7
        draft.latest.value = js.f32_round(21.5)
        draft.hist[1] = -2
    store.checkpoint()
    with store.transaction() as draft:  # seq 4: replayed on open
        draft.count = 4
        draft.odd = nan_with_payload()
        draft.half = -0.0
        draft.flag = True
    with store.transaction() as draft:  # seq 5: replayed on open
        draft.count = 5
        draft.name = "häll\u00f6 \u2713"
        draft.readings[1].ok = True
        draft.readings[1].value = float("-inf")
    with store.transaction() as draft:  # seq 6: replayed on open
        draft.count = 6
        draft.hist = [32767, -2, -32768, 5]
        draft.readings[0].sensor = 65535
    os._exit(0)  # a process death: no close, so no checkpoint covers seq 4 to 6


if __name__ == "__main__":
    main(sys.argv[1])
