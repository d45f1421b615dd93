"""Crashes during a migration: at every step on the simulated disk, and SIGKILL of real processes.

After every crash the path holds the old store (old class, old state) or the new one (new class,
migrated state, same seq), never neither and never a mixture; a later migration finishes the job
and leaves no temporary file behind.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import attrs
import pytest

import journalstate as js
from journalstate.testing import SimStorage, SimulatedCrash
from journalstate.testing._disk import Event, Op
from tests.migrate_schemas import (
    BIG,
    DROP,
    NEW_STATE,
    OLD_STATE,
    BigNew,
    BigOld,
    Inner2,
    New,
    Old,
    big_blob,
    make_store,
)

PATH = "/data/state.jst"
ROOT = Path(__file__).resolve().parent.parent


HISTORY = [Old(), *(attrs.evolve(OLD_STATE, count=i) for i in range(3)), OLD_STATE]
"""The old store's states by seq: the initial one, then four commits."""


def as_new(old: Old) -> New:
    """What migrating ``old`` must give."""
    inner = Inner2(old.inner.a, old.inner.f, 7)
    return New(count=old.count, name=old.name, inner=inner, hist=(*old.hist, 0, 0), extra=1.5)


def fresh_disk() -> tuple[SimStorage, int]:
    """A simulated disk holding an old store whose last commits are in the page cache only."""
    disk = SimStorage()
    store = js.open(PATH, Old, storage=disk, durability="process")
    seq = 0
    for state in HISTORY[1:]:
        seq = store.commit(state)
    disk.restart()  # a process death: recovery replays them; an OS crash may lose them
    assert seq == len(HISTORY) - 1
    return disk, seq


def migration(disk: SimStorage) -> js.MigrationReport:
    """The migration under test."""
    return js.migrate(PATH, New, drop=DROP, storage=disk)


def outcome(disk: SimStorage) -> tuple[str, int]:
    """("old" or "new", seq): which store the path holds, at which state; fails on anything
    else (neither store, or a state no commit or migration of a commit produced)."""
    try:
        store: js.Store[Any] = js.open(PATH, New, storage=disk)
    except js.SchemaMismatch:
        with js.open(PATH, Old, storage=disk) as old:
            assert old.state == HISTORY[old.seq]
            return "old", old.seq
    with store:
        assert store.state == as_new(HISTORY[store.seq])
        return "new", store.seq


def _os_crash(disk: SimStorage, kept: int, pages: str, seed: int) -> Callable[[], None]:
    """An OS crash keeping ``kept`` unsynced name changes; unsynced pages "lost", at their
    "newest" version, or "torn" (each sector at a random version)."""
    rng = random.Random(seed)
    calls = [0]

    def choose(n: int) -> int:
        calls[0] += 1
        if calls[0] == 1:
            return kept
        return {"lost": 0, "newest": n - 1}.get(pages, rng.randrange(n))

    return lambda: disk.crash(choose)


def crash_kinds(disk: SimStorage) -> list[tuple[str, Callable[[], None]]]:
    """Process death, and OS crashes keeping each prefix of the unsynced name changes, each
    with unsynced pages lost, at their newest version, or torn."""
    kinds: list[tuple[str, Callable[[], None]]] = [("process", disk.restart)]
    for kept in range(disk.name_changes() + 1):
        for pages in ("lost", "newest", "torn"):
            kinds.append((f"os, {kept} name changes, {pages}", _os_crash(disk, kept, pages, kept)))
    return kinds


def crashed(step: int, cut: int) -> tuple[SimStorage, int]:
    """A disk where a migration crashed right before its ``step``-th disk event."""
    disk, seq = fresh_disk()
    at = len(disk.events) + step

    def hook(e: Event) -> int | None:
        return cut if e.index == at else None

    disk.crash_at = hook
    try:
        migration(disk)
    except SimulatedCrash:
        pass
    finally:
        disk.crash_at = None
    return disk, seq


def test_crash_at_every_step_of_a_migration() -> None:
    """A crash of any kind before any disk event of a migration (or right after it) leaves the
    old store or the new one, and a second migration completes it with no stray file left."""
    disk, seq = fresh_disk()
    start = len(disk.events)
    migration(disk)
    steps = disk.events[start:]
    assert {Op.CREATE, Op.WRITE, Op.SYNC, Op.RENAME, Op.DIRSYNC} <= {e.op for e in steps}
    seen = {"old": 0, "new": 0}
    states: set[tuple[str, int]] = set()
    runs = 0
    for step in range(len(steps) + 1):
        cuts = [0, 700] if step < len(steps) and steps[step].op is Op.WRITE else [0]
        for cut in cuts:
            kind = 0
            while True:
                disk, seq = crashed(step, cut)
                kinds = crash_kinds(disk)
                name, crash = kinds[kind]
                crash()
                which, at = outcome(disk)
                seen[which] += 1
                states.add((which, at))
                if which == "new" or name == "process":
                    assert at == seq, (step, cut, name)  # the state the migration read
                report = migration(disk)
                assert report.seq == at
                assert disk.names() == [PATH], (step, cut, name)
                assert outcome(disk) == ("new", at)
                runs += 1
                kind += 1
                if kind == len(kinds):
                    break
    print(f"migration crash model: {len(steps)} steps, {runs} crashes, outcomes {seen}")
    assert {("old", seq), ("new", seq)} < states  # and an OS crash lost unsynced commits


def test_an_unsynced_rename_can_be_lost_and_the_old_store_comes_back() -> None:
    """An OS crash between the rename and the directory sync may undo the rename: the old
    store is back at the path, whole, and the new file is a stray temporary."""
    disk, seq = fresh_disk()
    start = len(disk.events)

    def hook(e: Event) -> int | None:
        return 0 if e.index >= start and e.op is Op.DIRSYNC else None

    disk.crash_at = hook
    with pytest.raises(SimulatedCrash):
        migration(disk)
    disk.crash_at = None
    assert disk.name_changes() == 2  # the temporary file's creation, the rename
    _os_crash(disk, 1, "newest", 0)()  # the creation survives, the rename does not
    assert len(disk.names()) == 2  # the old store and the stray temporary file
    assert outcome(disk) == ("old", seq)
    migration(disk)
    assert disk.names() == [PATH]


def test_simulated_names_revert_to_the_last_directory_sync() -> None:
    """Unsynced link, rename and unlink survive a process death, and an OS crash keeps a
    prefix of them; a directory sync makes them durable."""
    disk, _ = fresh_disk()
    disk.link(PATH, "/data/b")
    disk.rename("/data/b", "/data/c")
    disk.unlink(PATH)
    assert disk.names() == ["/data/c"]
    disk.restart()
    assert disk.names() == ["/data/c"]
    assert disk.name_changes() == 3
    for kept, names in [(0, [PATH]), (1, ["/data/b", PATH]), (2, ["/data/c", PATH])]:
        probe, _ = fresh_disk()
        probe.link(PATH, "/data/b")
        probe.rename("/data/b", "/data/c")
        probe.unlink(PATH)
        _os_crash(probe, kept, "lost", 0)()
        assert probe.names() == names
    disk.sync_directory()
    disk.crash(lambda n: n - 1)  # the names as synced; every page at its newest version
    assert disk.names() == ["/data/c"]
    with js.open("/data/c", Old, storage=disk, readonly=True) as store:
        assert store.state == OLD_STATE


def test_a_writer_waiting_on_the_old_file_reopens_the_new_one() -> None:
    """A writer that gets the lock of a file a migration renamed over reopens the path."""
    disk, _ = fresh_disk()
    old_file = disk.open(PATH, writable=True)  # as if opened before the migration
    migration(disk)
    opened: list[str] = []
    real_open = disk.open

    def open_old_first(path: str, *, writable: bool) -> Any:
        if not opened:
            opened.append(path)
            return old_file
        return real_open(path, writable=writable)

    disk.open = open_old_first  # type: ignore[method-assign]
    with js.open(PATH, New, storage=disk) as store:
        assert store.state == NEW_STATE
    assert opened == [PATH]


# --- real processes ----------------------------------------------------------------------------

CHILD = """
import sys, time
sys.path.insert(0, {root!r})
import journalstate as js
from tests import migrate_schemas as h
new = getattr(h, sys.argv[2])
sys.stdout.write("ready\\n"); sys.stdout.flush()
t = time.perf_counter()
js.migrate(sys.argv[1], new, drop=h.DROP if new is h.New else ())
sys.stdout.write(f"done {{time.perf_counter() - t}}\\n"); sys.stdout.flush()
"""


def _kill_run(path: Path, new: str, delay: float) -> str:
    """Start a migration in a child process and SIGKILL it ``delay`` seconds after it started
    (its interpreter and imports ready). Returns "killed" or "finished"."""
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD.format(root=str(ROOT)), str(path), new],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert child.stdout is not None
    assert child.stdout.readline() == "ready\n"
    time.sleep(delay)
    child.send_signal(signal.SIGKILL)
    child.wait()
    child.stdout.close()
    return "killed" if child.returncode == -signal.SIGKILL else "finished"


def _calibrate(path: Path, new: str) -> float:
    child = subprocess.run(
        [sys.executable, "-c", CHILD.format(root=str(ROOT)), str(path), new],
        capture_output=True,
        text=True,
        check=True,
    )
    return float(child.stdout.split()[-1])


def _kills(default: int) -> int:
    return int(os.environ.get("JOURNALSTATE_KILLS", default))


def _check_small(path: Path, seq: int) -> str:
    try:
        store: js.Store[Any] = js.open(path, New, readonly=True)
    except js.SchemaMismatch:
        with js.open(path, Old, readonly=True) as old:
            assert old.state == OLD_STATE
            assert old.seq == seq
        return "old"
    with store:
        assert store.state == NEW_STATE
        assert store.seq == seq
    return "new"


def _make_small(path: Path) -> int:
    return make_store(path, Old, OLD_STATE, durability="process")


def _check_big(path: Path, seq: int) -> str:
    blob = big_blob()
    try:
        store: js.Store[Any] = js.open(path, BigNew, readonly=True)
    except js.SchemaMismatch:
        with js.open(path, BigOld, readonly=True) as old:
            assert old.state == BigOld(n=5, blob=blob)
            assert old.seq == seq
        return "old"
    with store:
        assert store.state == BigNew(n=5, blob=blob, extra=1)
        assert store.seq == seq
    return "new"


def _make_big(path: Path) -> int:
    state = BigOld(n=5, blob=big_blob())
    with js.open(path, BigOld, initial=state, journal_size=1 << 16) as store:
        return store.seq


CASES: dict[
    str, tuple[Callable[[Path], int], Callable[[Path, int], str], type, tuple[str, ...]]
] = {
    "New": (_make_small, _check_small, New, DROP),
    "BigNew": (_make_big, _check_big, BigNew, ()),
}


def _sigkill_migrations(tmp_path: Path, case: str, kills: int) -> dict[str, int]:
    """Kill ``kills`` migrations at random instants; check the path after each."""
    make, check, cls, drop = CASES[case]
    path = tmp_path / "state.jst"
    make(path)
    duration = _calibrate(path, case)
    path.unlink()
    rng = random.Random(1234)
    counts = {"old": 0, "new": 0, "killed": 0, "finished": 0}
    seq = make(path)
    for i in range(kills):
        # Half the kills anywhere in the migration, half near its end, around the rename.
        low = 0.0 if i % 2 else 0.7 * duration
        counts[_kill_run(path, case, rng.uniform(low, 1.1 * duration))] += 1
        result = check(path, seq)
        counts[result] += 1
        if result == "new":
            for name in os.listdir(tmp_path):
                os.unlink(tmp_path / name)
            seq = make(path)
    js.migrate(path, cls, drop=drop)  # finishes the job and removes any stray temporary
    assert os.listdir(tmp_path) == ["state.jst"]
    assert check(path, seq) == "new"
    return counts


def test_sigkill_during_migrations(tmp_path: Path) -> None:
    """SIGKILL at random instants of small migrations: the path opens as old or new."""
    kills = _kills(20)
    counts = _sigkill_migrations(tmp_path, "New", kills)
    print("sigkill, small state:", counts)
    assert counts["old"] + counts["new"] == kills


@pytest.mark.slow
def test_sigkill_during_64mib_migrations(tmp_path: Path) -> None:
    """SIGKILL at random instants of 64 MiB migrations: the path opens as old or new."""
    assert len(big_blob()) == BIG
    kills = _kills(5)
    counts = _sigkill_migrations(tmp_path, "BigNew", kills)
    print("sigkill, 64 MiB state:", counts)
    assert counts["old"] + counts["new"] == kills
