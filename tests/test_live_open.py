"""Read-only opens beside a live writer: an append or a checkpoint in progress is never damage.

Two halves. The deterministic tests run recovery over buffers that change between two reads,
the way a live writer's ring and slots do (a record torn when first read and whole later, a
slot torn while a checkpoint writes it), and show that a read-only open reads again instead of
reporting damage, while damage in a file that no writer touches is still reported. The process
tests run read-only opens in a loop beside a real writer process committing at full speed to a
16 KiB journal, in "commit" and "process" durability, in the default and "salvage" recovery
modes: no ``StoreCorrupt``, no damage in any report, every state one the writer committed.
``JOURNALSTATE_LIVE_OPENS`` sets the opens per mode (300 by default).
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path
from typing import Annotated

import attrs
import pytest

import journalstate as js

ROOT = Path(__file__).resolve().parent.parent
LIVE_OPENS = int(os.environ.get("JOURNALSTATE_LIVE_OPENS", "300"))
LIVE_JOURNAL = 16 * 1024


@attrs.frozen
class Pair:
    """A state with an internal invariant: ``a == b`` and ``tag`` names them, so a mix shows."""

    a: js.U64 = 0
    b: js.U64 = 0
    tag: Annotated[str, js.Str(24)] = ""
    blob: Annotated[bytes, js.Bytes(600)] = b""


def pair(step: int) -> Pair:
    """The state the writer commits at ``step`` (records of varying size)."""
    return Pair(a=step, b=step, tag=f"p{step}", blob=bytes([step % 251]) * (step * 37 % 600))


def consistent(state: Pair) -> bool:
    """Whether ``state`` is one the writer committed (or the initial one)."""
    return state == (pair(state.a) if state.a else Pair())


WRITER = textwrap.dedent(
    """
    import sys
    sys.path.insert(0, {root!r})
    import journalstate as js
    from tests.test_live_open import pair, Pair
    path, mode, journal = sys.argv[1], sys.argv[2], int(sys.argv[3])
    store = js.open(path, Pair, durability=mode, journal_size=journal)
    print("ready", flush=True)
    step = store.state.a
    while True:
        step += 1
        store.commit(pair(step))
    """
).format(root=str(ROOT))


@attrs.define
class Tally:
    """What the read-only opens beside one writer saw."""

    opens: int = 0
    errors: list[str] = attrs.Factory(list)
    damage: list[str] = attrs.Factory(list)
    mixed: list[str] = attrs.Factory(list)
    torn_slots: int = 0
    """Reports with an invalid slot: a checkpoint in progress that held still across two
    recoveries (a writer paused mid-copy); no damage is claimed for it."""
    steps: set[int] = attrs.Factory(set)

    def read(self, path: Path, recovery: str) -> None:
        """One read-only open in ``recovery`` mode; what it saw goes into the tally."""
        self.opens += 1
        try:
            reader = js.open(path, Pair, readonly=True, recovery=recovery)
        except js.StoreCorrupt as e:
            self.errors.append(f"{recovery}: {e}")
            return
        with reader:
            report = reader.recovery
            self.damage.extend(
                f"{recovery}: {d.reason.value}: {d.detail}" for d in report.corruption
            )
            self.torn_slots += not all(s.valid for s in report.slots)
            if not consistent(reader.state):
                self.mixed.append(f"{recovery}: {reader.state!r}")
            self.steps.add(reader.state.a)


def opens_beside_a_writer(path: Path, durability: str, per_mode: int) -> Tally:
    """``per_mode`` read-only opens in each recovery mode beside a writer committing flat out."""
    proc = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(path), durability, str(LIVE_JOURNAL)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    tally = Tally()
    try:
        line = proc.stdout.readline()
        assert line.startswith("ready"), proc.stderr.read() if proc.stderr else ""
        # However slowly a busy machine runs the writer, the opens go on until it has moved at
        # least 20 times; the deadline only guards against a hang.
        deadline = time.monotonic() + 900
        modes = ("tolerate-tail", "salvage")
        while tally.opens < per_mode * len(modes) or len(tally.steps) < 20:
            assert time.monotonic() < deadline, f"the writer is stuck: {sorted(tally.steps)}"
            tally.read(path, modes[tally.opens % len(modes)])
            assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
    finally:
        proc.kill()
        proc.communicate()
    return tally


@pytest.mark.slow
@pytest.mark.parametrize("durability", ["commit", "process"])
def test_readonly_opens_beside_a_live_writer_report_no_damage(
    tmp_path: Path, durability: str
) -> None:
    """Read-only opens beside a writer at full speed: no StoreCorrupt, no damage, no mixed state."""
    tally = opens_beside_a_writer(tmp_path / "live.jst", durability, LIVE_OPENS)
    print(
        f"{durability}: {tally.opens} opens, {len(tally.errors)} StoreCorrupt, "
        f"{len(tally.damage)} damage entries, {len(tally.mixed)} mixed states, "
        f"{tally.torn_slots} reports with a slot being written, "
        f"{len(tally.steps)} distinct states"
    )
    assert tally.errors == []
    assert tally.damage == []
    assert tally.mixed == []
