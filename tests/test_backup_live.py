"""Backups beside a live writer: a real process commits at full speed while copies are taken.

The writer runs in a subprocess, in each durability mode, over a 16 KiB journal, so that it
checkpoints every few dozen commits and laps the ring again and again while copies are read.
Each state it commits is derived from its count ``n`` (``a == b == mix(n)``, a label and a
blob that name ``n``), so a state mixed from two moments, or one the writer never committed,
is detected. Every copy is opened and checked: a clean recovery report, a committed state whose
``n`` is the copy's seq, and seqs that never decrease from one copy to the next. Some copies are
taken by ``journalstate recover --output``, which writes the same way.

``JOURNALSTATE_LIVE_BACKUPS`` sets how many copies each mode takes (30 by default; the full
run is 1000).
"""

from __future__ import annotations

import io
import os
import subprocess
import sys
import textwrap
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import journalstate as js
from journalstate import _cli

pytestmark = pytest.mark.slow  # a writer process runs beside every test

ROOT = Path(__file__).resolve().parent.parent
BACKUPS = int(os.environ.get("JOURNALSTATE_LIVE_BACKUPS", "30"))
"""Copies taken beside the writer, per durability mode."""
CLI_EVERY = 5
"""Every CLI_EVERY-th copy is taken by `journalstate recover --output` instead of js.backup."""

WRITER = textwrap.dedent(
    """
    import sys
    from typing import Annotated
    import attrs
    import journalstate as js

    @attrs.frozen
    class Pair:
        n: js.U64 = 0
        a: js.U64 = 0
        b: js.U64 = 0
        label: Annotated[str, js.Str(24)] = ""
        blob: Annotated[bytes, js.Bytes(160)] = b""

    def mix(n):
        return (n * 0x9E3779B97F4A7C15 + 12345) % 2**64

    def state(n):
        return Pair(n=n, a=mix(n), b=mix(n), label=f"n={n}", blob=bytes([n % 251]) * (n % 160))

    with js.open(sys.argv[1], Pair, durability=sys.argv[2], journal_size=16384) as store:
        n = store.seq
        store.commit(state(n + 1))
        print("ready", flush=True)
        while True:
            n = store.seq
            store.commit(state(n + 1))
    """
)


def mix(n: int) -> int:
    """The writer's derived value of ``n`` (both ``a`` and ``b`` hold it)."""
    return (n * 0x9E3779B97F4A7C15 + 12345) % 2**64


def problems(state: Any, seq: int) -> list[str]:
    """What is wrong with ``state`` as the writer's commit number ``seq`` (empty: nothing)."""
    found = []
    n = state.n
    if n != seq:
        found.append(f"n {n} is not the seq {seq}")
    if not state.a == state.b == mix(n):
        found.append(f"a {state.a} and b {state.b} are not both mix({n})")
    if state.label != f"n={n}":
        found.append(f"label {state.label!r} does not name n {n}")
    if state.blob != bytes([n % 251]) * (n % 160):
        found.append(f"the blob ({len(state.blob)} bytes) is not that of n {n}")
    return found


@pytest.fixture
def writer(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[Path, Any]]:
    """A child process committing at full speed in the requested mode; yields (path, process)."""
    path = tmp_path / "live.jst"
    proc = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(path), request.param],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line == "ready\n", proc.stderr.read() if proc.stderr else ""
        yield path, proc
    finally:
        proc.kill()
        proc.communicate(timeout=300)  # a hang guard only


class Failed(Exception):
    """A copy was refused: ``kind`` names the error (or the command's exit code)."""

    def __init__(self, kind: str, detail: str) -> None:
        super().__init__(detail)
        self.kind = kind


def take(source: Path, dest: Path, by_command: bool) -> int:
    """Copy ``source`` to ``dest``; returns the seq the backup reports (by the command: the
    seq the copy opens at).

    Raises:
        Failed: the backup refused, or the command exited with neither 0 nor 1 (1: the
            source's recovery dropped a torn tail, a record the writer was still writing).
    """
    if not by_command:
        try:
            return js.backup(source, dest).seq
        except js.JournalStateError as e:
            raise Failed(type(e).__name__, str(e)) from e
    out = io.StringIO()
    code = _cli.main(["recover", str(source), "--output", str(dest)], out)
    if code not in (0, 1):
        raise Failed(f"recover --output exit {code}", out.getvalue())
    store: js.Store[Any]
    with js.open(dest, None, readonly=True) as store:
        return store.seq


@pytest.mark.parametrize("writer", ["process", "commit", "interval"], indirect=True)
def test_backups_beside_a_live_writer_are_committed_states(
    writer: tuple[Path, Any], tmp_path: Path
) -> None:
    """Every copy taken beside a writer opens clean at a state it committed; seqs never go back."""
    path, proc = writer
    errors: Counter[str] = Counter()
    details: list[str] = []
    last = 0
    for k in range(BACKUPS):
        dest = tmp_path / f"copy-{k}.jst"
        try:
            seq = take(path, dest, by_command=k % CLI_EVERY == CLI_EVERY - 1)
        except Failed as e:
            errors[e.kind] += 1
            details.append(f"copy {k}: {e}")
            assert not dest.exists()
            continue
        copy: js.Store[Any]
        with js.open(dest, None, readonly=True) as copy:
            found = problems(copy.state, copy.seq)
            if not copy.recovery.clean:
                found.append(f"the copy's recovery is not clean: {copy.recovery}")
            if copy.seq != seq:
                found.append(f"the copy opens at seq {copy.seq}, the backup said {seq}")
        if seq < last:
            found.append(f"seq {seq} after a copy at seq {last}")
        last = max(last, seq)
        if found:
            errors["bad copy"] += 1
            details.append(f"copy {k}: " + "; ".join(found))
        os.unlink(dest)
    assert proc.poll() is None, "the writer stopped"
    assert not [n for n in os.listdir(tmp_path) if n.startswith(".jst-")]
    store: js.Store[Any]
    with js.open(path, None, readonly=True) as store:
        final = store.seq
    print(f"{BACKUPS} copies, last at seq {last}, writer at seq {final}: {dict(errors)}")
    assert not errors, (dict(errors), details[:10])
    assert final >= last > 0
