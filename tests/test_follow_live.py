"""Readers that follow a live writer in another process: real processes, real files.

A writer process (``tests/follow_writer.py``) commits at full speed, with a 16 KiB journal
that its records straddle and lap constantly; this process reads beside it with a random
mix of fresh read-only opens, ``refresh()``, ``wait()`` and ``changes()``, and counts the
operations, the errors and the wrong states (a state that is not the one committed as its
seq, a seq going backwards, a gap in the change feed). Both counts must be 0.

``JOURNALSTATE_LIVE_READS`` sets the reader operations per run (default 3000; the full count
is 100000). Each run goes on until the writer has been seen to move many times, however
slowly a busy machine runs it; the deadlines only guard against a hang.
"""

from __future__ import annotations

import itertools
import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

import attrs
import pytest

import journalstate as js
from journalstate._schema import compile_schema
from tests.follow_writer import Live, LiveV2, expected

ROOT = Path(__file__).resolve().parent.parent
READS = int(os.environ.get("JOURNALSTATE_LIVE_READS", "3000"))
JOURNAL_SIZE = 16384
HANG_GUARD = 600.0  # seconds: only a hang gets anywhere near it
MODES = ("process", "commit", "interval")
FEED_LIMIT = 200  # commits taken from one changes() call before moving on


def changed_fields(old: Live, new: Live) -> set[str]:
    """The fields that differ between two states."""
    return {
        f.path
        for f in compile_schema(Live).fields()
        if getattr(old, f.path) != getattr(new, f.path)
    }


@attrs.define
class Tally:
    """What the readers did and found."""

    ops: Counter[str] = attrs.field(factory=Counter)
    errors: list[str] = attrs.field(factory=list)
    wrong: list[str] = attrs.field(factory=list)
    seqs: set[int] = attrs.field(factory=set)

    def error(self, what: str, exc: BaseException) -> None:
        self.errors.append(f"{what}: {type(exc).__name__}: {exc}")

    def summary(self) -> str:
        return (
            f"{sum(self.ops.values())} ops {dict(self.ops)}, {len(self.errors)} errors "
            f"{self.errors[:5]}, {len(self.wrong)} wrong states {self.wrong[:5]}, "
            f"{len(self.seqs)} seqs seen"
        )


class Followers:
    """A few read-only stores on one path, driven by a random mix of operations."""

    OPS = ("open", "refresh", "refresh", "wait", "changes", "changes behind")

    def __init__(self, path: Path, seed: int, count: int = 3, ops: tuple[str, ...] = OPS) -> None:
        self.path = path
        self.ops = ops
        self.rng = random.Random(seed)
        self.tally = Tally()
        self.readers: list[js.Store[Live]] = [self._open() for _ in range(count)]
        self.seen = [r.seq for r in self.readers]

    def _open(self) -> js.Store[Live]:
        return js.open(self.path, Live, readonly=True)

    def close(self) -> None:
        for r in self.readers:
            r.close()

    def check(self, seq: int, state: Live, what: str) -> None:
        """A state shown as ``seq`` must be exactly the one committed as ``seq``."""
        self.tally.seqs.add(seq)
        if state != expected(seq):
            self.tally.wrong.append(f"{what}: seq {seq} shows {state.seq}/{state.a}/{state.b}")

    def check_reader(self, i: int, what: str) -> None:
        r = self.readers[i]
        seq, state = r.seq, r.state
        self.check(seq, state, what)
        if seq < self.seen[i]:
            self.tally.wrong.append(f"{what}: reader {i} went back from {self.seen[i]} to {seq}")
        self.seen[i] = seq

    def feed(self, r: js.Store[Live], since: int) -> None:
        """Read the change feed after ``since``: consecutive seqs, the committed states."""
        try:
            items = list(itertools.islice(r.changes(since), FEED_LIMIT))
        except js.ChangesUnavailable as exc:
            self.tally.ops["changes unavailable"] += 1
            if exc.oldest_seq <= since:
                self.tally.wrong.append(f"changes({since}): oldest_seq {exc.oldest_seq}")
            return
        previous = expected(since)
        for n, item in enumerate(items, since + 1):
            if item.seq != n:
                self.tally.wrong.append(f"changes({since}): seq {item.seq} where {n} was due")
                return
            self.check(item.seq, item.state, f"changes({since}) item")
            if set(item.changed) != changed_fields(previous, item.state):
                self.tally.wrong.append(f"changes({since}): seq {n} names {item.changed}")
            previous = item.state

    def step(self) -> None:
        """One random operation of one random reader, checked."""
        i = self.rng.randrange(len(self.readers))
        r = self.readers[i]
        op = self.rng.choice(self.ops)
        self.tally.ops[op] += 1
        try:
            if op == "open":
                self.readers[i] = self._open()
                r.close()
            elif op == "refresh":
                r.refresh()
            elif op == "wait":
                r.wait(timeout=0.05)  # False is a result too: the writer may be between commits
            elif op == "changes":
                self.feed(r, r.seq)
            else:
                self.feed(r, max(0, r.seq - self.rng.randrange(1, 40)))
        except js.StoreReplaced:
            raise
        except Exception as exc:
            self.tally.error(op, exc)
            return
        self.check_reader(i, op)

    def run(self, ops: int, *, moves: int = 20) -> None:
        """``ops`` operations, and more until the writer was seen at ``moves`` seqs."""
        deadline = time.monotonic() + HANG_GUARD
        start = len(self.tally.seqs)
        done = 0
        while done < ops or len(self.tally.seqs) - start < moves:
            assert time.monotonic() < deadline, f"the writer is stuck: {self.tally.summary()}"
            self.step()
            done += 1


@contextmanager
def writer(path: Path, mode: str, reopen_every: int = 0) -> Iterator[subprocess.Popen[str]]:
    """A writer process committing to ``path`` until the block ends (then SIGTERM, clean close)."""
    proc = start_writer(path, mode, reopen_every)
    try:
        yield proc
    finally:
        stop_writer(proc)


def start_writer(path: Path, mode: str, reopen_every: int = 0) -> subprocess.Popen[str]:
    """Start a writer process and wait until its store is open."""
    err: IO[str] = open(path.with_suffix(".err"), "a")  # noqa: SIM115 (closed with the process)
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.follow_writer", str(path), mode, str(JOURNAL_SIZE)]
        + ([f"reopen={reopen_every}"] if reopen_every else []),
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=err,
        text=True,
    )
    err.close()
    assert proc.stdout is not None
    line = proc.stdout.readline()
    assert line.startswith("ready"), (
        f"writer failed: {line!r} {path.with_suffix('.err').read_text()}"
    )
    return proc


def stop_writer(proc: subprocess.Popen[str]) -> None:
    """SIGTERM the writer (it closes its store), or kill it if it does not end in minutes."""
    if proc.returncode is not None:
        return  # already waited for
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    try:
        proc.communicate(timeout=HANG_GUARD)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()


def assert_clean(tally: Tally) -> None:
    """No errors and no wrong states."""
    print(f"\nfollowers: {tally.summary()}")
    assert not tally.errors, tally.summary()
    assert not tally.wrong, tally.summary()


@pytest.mark.slow
@pytest.mark.parametrize("mode", MODES)
def test_readers_follow_a_writer_at_full_speed(tmp_path: Path, mode: str) -> None:
    """Readers beside a writer committing at full speed see only committed states, in order."""
    path = tmp_path / "live.jst"
    with writer(path, mode):
        followers = Followers(path, seed=len(mode))
        try:
            followers.run(READS)
        finally:
            followers.close()
    assert_clean(followers.tally)
    assert followers.tally.ops["changes"] > 0


@pytest.mark.slow
def test_readers_follow_a_writer_across_sessions(tmp_path: Path) -> None:
    """A writer that closes and reopens (a new session each time) is followed without a gap."""
    path = tmp_path / "sessions.jst"
    with writer(path, "process", reopen_every=25):
        followers = Followers(path, seed=25)
        try:
            followers.run(READS // 2, moves=100)  # at least four sessions seen
        finally:
            followers.close()
    assert_clean(followers.tally)


@pytest.mark.slow
def test_readers_follow_a_writer_killed_and_restarted(tmp_path: Path) -> None:
    """SIGKILL the writer mid-run and start it again, five times; the readers follow on."""
    path = tmp_path / "killed.jst"
    followers: Followers | None = None
    try:
        for round_ in range(5):
            proc = start_writer(path, MODES[round_ % 3])
            try:
                if followers is None:
                    followers = Followers(path, seed=5)
                followers.run(READS // 10, moves=10)
                proc.kill()  # mid-run: it commits until the instant it dies
                proc.communicate()
                followers.run(READS // 20, moves=0)  # beside the dead writer's file
            finally:
                stop_writer(proc)
        assert followers is not None
        followers.run(0, moves=0)
        final = max(followers.tally.seqs)
        with js.open(path, Live) as store:  # nothing a reader showed was lost
            assert store.seq >= final
            assert store.state == expected(store.seq)
    finally:
        if followers is not None:
            followers.close()
    assert_clean(followers.tally)


MIGRATE = """
import sys
import journalstate as js
from tests.follow_writer import LiveV2
js.migrate(sys.argv[1], LiveV2, lock_timeout=600)
print("migrated", flush=True)
"""


@pytest.mark.slow
def test_a_reader_following_through_a_migration_gets_store_replaced(tmp_path: Path) -> None:
    """A migration renames a new file over the followed one: StoreReplaced, never corruption."""
    path = tmp_path / "migrated.jst"
    proc = start_writer(path, "commit")
    # No fresh opens: after the migration the path holds a LiveV2 store.
    followers = Followers(path, seed=7, ops=("refresh", "wait", "changes", "changes behind"))
    migration: subprocess.Popen[str] | None = None
    try:
        followers.run(READS // 10)
        # The migration waits for the writer's lock; the writer stops; the migration runs,
        # while the readers go on following.
        migration = subprocess.Popen(
            [sys.executable, "-c", MIGRATE, str(path)], cwd=ROOT, stdout=subprocess.PIPE, text=True
        )
        stop_writer(proc)
        deadline = time.monotonic() + HANG_GUARD
        while migration.poll() is None:
            assert time.monotonic() < deadline, "the migration never finished"
            try:
                followers.step()
            except js.StoreReplaced:
                followers.tally.ops["store replaced"] += 1
        out, _ = migration.communicate(timeout=HANG_GUARD)
        assert migration.returncode == 0
        assert out.strip() == "migrated"
        # Every reader now raises StoreReplaced, keeps the committed state it showed.
        for r in followers.readers:
            before = (r.seq, r.state)
            with pytest.raises(js.StoreReplaced):
                r.refresh()
            assert (r.seq, r.state) == before, "a refused refresh moved the reader"
            assert r.state == expected(r.seq)
        with js.open(path, LiveV2, readonly=True) as new:
            old = expected(new.seq)
            assert new.state == LiveV2(seq=old.seq, a=old.a, b=old.b, blob=old.blob)
            assert new.seq >= max(followers.tally.seqs)
    finally:
        followers.close()
        stop_writer(proc)
        if migration is not None and migration.poll() is None:
            migration.kill()
            migration.communicate()
    assert_clean(followers.tally)
