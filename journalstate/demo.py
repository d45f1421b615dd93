"""`journalstate demo`: the question journalstate answers, shown on this machine in seconds.

Part 1 kills a real child process with SIGKILL while it commits without any msync, and shows
that every acknowledged commit survived (the dirty pages live in the kernel's page cache).
Part 2 simulates OS crashes with the simulated disk (every page not msync'ed may be lost or
torn) and shows what each durability mode keeps. Output goes through ``say``; nothing here
prints by itself.

A tool beside the library, like ``journalstate.testing`` (which it uses) and
``journalstate.bench``: the library never imports it, and the command line only when
``journalstate demo`` runs.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import tempfile
from collections.abc import Callable
from typing import Annotated

import attrs

import journalstate as js
from journalstate.testing import SimStorage


@attrs.frozen
class Progress:
    """The demo's state: every field derives from ``step``, so a torn or mixed state shows."""

    step: js.U64 = 0
    loss: js.F64 = 0.0
    label: Annotated[str, js.Str(32)] = ""
    blob: Annotated[bytes, js.Bytes(3000)] = b""


def at_step(step: int) -> Progress:
    """The state the demo commits at ``step``."""
    return Progress(
        step=step, loss=1.0 / (step + 1), label=f"step {step}", blob=bytes([step % 256]) * 100
    )


def is_committed(state: Progress) -> bool:
    """Whether ``state`` is exactly one the demo committed (or the initial state)."""
    return state == Progress() or state == at_step(state.step)


def child(path: str) -> None:
    """The child process of part 1: commit forever in process durability, print each step."""
    with js.open(path, Progress, durability="process", journal_size=64 * 1024) as store:
        step = store.state.step
        while True:
            step += 1
            store.commit(at_step(step))
            sys.stdout.write(f"{step}\n")
            sys.stdout.flush()


def _kill_child(path: str, acks: int) -> int:
    code = "import sys; from journalstate.demo import child; child(sys.argv[1])"
    proc = subprocess.Popen([sys.executable, "-c", code, path], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    last = 0
    try:
        while last < acks:
            line = proc.stdout.readline()
            if not line:
                raise RuntimeError("the demo's child process stopped by itself")
            last = int(line)
        os.kill(proc.pid, signal.SIGKILL)
        for line in proc.stdout.read().split():
            last = int(line)  # printed before the kill arrived: acknowledged too
    finally:
        proc.kill()
        proc.wait()
        proc.stdout.close()
    return last


def _simulate(mode: str, commits: int, flush_at: int, rng: random.Random) -> dict[str, int]:
    disk = SimStorage()
    store = js.open(
        "demo.jst",
        Progress,
        storage=disk,
        durability=mode,
        journal_size=1 << 20,
        flush_interval=3600,  # the demo fires the flush itself, at a known commit
    )
    for step in range(1, commits + 1):
        store.commit(at_step(step))
        if mode == "interval" and step == flush_at:
            store.flush()  # what the background flush does every flush_interval
    syncs = store.stats.journal_syncs
    worst = disk.durable_image("demo.jst")
    random_images = [disk.crash_image("demo.jst", lambda n: rng.randrange(n)) for _ in range(50)]
    # The machine goes down: the store object is dead with it.
    disk.restart("demo.jst", worst)
    with js.open("demo.jst", Progress, storage=disk, readonly=True) as store:
        kept = store.state.step
        assert is_committed(store.state)
    lowest = kept
    for image in random_images:
        disk.restart("demo.jst", image)
        with js.open("demo.jst", Progress, storage=disk, readonly=True) as store:
            if not is_committed(store.state):
                raise AssertionError(f"{mode}: recovered a state that was never committed")
            lowest = min(lowest, store.state.step)
    return {"kept": kept, "syncs": syncs, "lowest": lowest}


def run(say: Callable[[str], None], *, seed: int | None = None) -> bool:
    """Run the demo; return True when every check held."""
    rng = random.Random(seed)
    with tempfile.TemporaryDirectory(prefix="journalstate-demo-") as tmp:
        path = os.path.join(tmp, "demo.jst")
        say("1. Process death, no msync at all")
        say("   A child process commits {step, loss, label, blob} with durability='process'")
        say("   (no msync on any commit) and prints each step once commit() has returned.")
        acks = rng.randrange(300, 900)
        last = _kill_child(path, acks)
        say(f"   The parent killed it with SIGKILL after it acknowledged step {last}.")
        with js.open(path, Progress) as store:
            report = store.recovery
            state = store.state
        ok1 = is_committed(state) and last <= state.step <= last + 1
        say(
            f"   Reopened: step {state.step}; recovery replayed {report.records_replayed} "
            f"journal records, torn tail: {'yes' if report.torn_tail else 'no'}."
        )
        say(
            "   => Nothing acknowledged was lost: the written pages belong to the kernel's"
            if ok1
            else "   => FAILED: the recovered state is not the last acknowledged one."
        )
        if ok1:
            say("      page cache, which outlives the process.")
    say("")
    say("2. OS crash or power loss, simulated")
    say("   journalstate.testing.SimStorage keeps every page msync'ed; a page written since")
    say("   may come back at any of its versions, with torn 512-byte sectors. 200 commits per")
    say("   mode (in interval mode the background flush fired after commit 150), then a crash")
    say("   that loses every unsynced page, and 50 more crashes at random versions.")
    say("")
    say(f"   {'mode':<10}{'acked':>7}{'kept':>7}{'msyncs':>8}  what survived")
    ok2 = True
    explain = {
        "commit": "every acknowledged commit (each was msync'ed)",
        "interval": "everything up to the last flush",
        "process": "the last checkpoint (the state at open)",
    }
    for mode in ("commit", "interval", "process"):
        result = _simulate(mode, 200, 150, rng)
        expected = {"commit": 200, "interval": 150, "process": 0}[mode]
        ok2 &= result["kept"] == expected
        ok2 &= mode != "commit" or result["lowest"] == 200
        say(f"   {mode:<10}{200:>7}{result['kept']:>7}{result['syncs']:>8}  {explain[mode]}")
    say("")
    say(
        "   => Every recovered state, in every mode and every crash image, was exactly one"
        if ok2
        else "   => FAILED: a mode kept less than it promises."
    )
    if ok2:
        say("      committed state: never torn, never a mix of two commits.")
    say("")
    say("An in-place update of an mmapped struct has neither property: SIGKILL keeps it, but an")
    say("OS crash can tear it. journalstate adds checksummed slots and a journal, and msyncs")
    say("only where the chosen durability asks for it.")
    return ok1 and ok2
