"""Real process death: children killed mid-stream lose nothing they acknowledged."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

import journalstate as js
from tests.conftest import Progress

pytestmark = pytest.mark.slow  # real child processes, killed mid-stream

ROOT = Path(__file__).resolve().parent.parent

# The child commits Progress(step=i, ...) for i = 1, 2, ... and prints i once commit() returned:
# a printed number is an acknowledged commit.
CHILD = textwrap.dedent(
    """
    import os, sys
    sys.path.insert(0, {root!r})
    import journalstate as js
    from tests.test_process import expected
    from tests.conftest import Progress
    path, mode, journal, abort_at = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    behaviour = sys.argv[5]
    store = js.open(path, Progress, durability=mode, journal_size=journal)
    start = store.state.step
    print("ready", start, flush=True)
    i = start
    while True:
        if behaviour == "reopen":  # spend the time in recovery and the open checkpoint
            store.close()
            store = js.open(path, Progress, durability=mode)
            print(store.state.step, flush=True)
            continue
        i += 1
        store.commit(expected(i))
        if behaviour == "checkpoint":
            store.checkpoint()
        print(i, flush=True)
        if i == abort_at:
            if behaviour == "segv":
                import ctypes
                ctypes.string_at(0)
            os.abort()
    """
).format(root=str(ROOT))


def expected(step: int) -> Progress:
    """The state committed at ``step``: every field derived from it, so a mix is detectable."""
    return Progress(
        step=step,
        loss=step * 0.5,
        label=f"s{step}",
        blob=bytes([step % 251]) * (step % 97 * 30),
    )


def run_child(
    path: Path,
    mode: str,
    journal: int,
    stop_after: int,
    abort_at: int = 0,
    behaviour: str = "commit",
) -> int:
    """Run a committing child; SIGKILL it after ``stop_after`` acks. Returns the last ack."""
    proc = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(path), mode, str(journal), str(abort_at), behaviour],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    ready = proc.stdout.readline().split()
    assert ready[:1] == ["ready"], proc.stderr.read() if proc.stderr else ""
    start = int(ready[1])
    last = start
    for acks, line in enumerate(proc.stdout, start=1):
        last = int(line)
        if acks >= stop_after:
            os.kill(proc.pid, signal.SIGKILL)
            break
    rest = proc.stdout.read()  # drains what the line reader buffered, then the pipe
    proc.communicate(timeout=300)
    for line in rest.split():
        last = int(line)  # printed before the kill: acknowledged too
    return last


@pytest.mark.parametrize("mode", ["commit", "interval", "process"])
@pytest.mark.parametrize("journal", [4096, 1 << 16])
def test_sigkill_loses_nothing_acknowledged(tmp_path: Path, mode: str, journal: int) -> None:
    """After SIGKILL at a random instant the state is exactly the last or the in-flight commit."""
    rng = random.Random(f"{mode}-{journal}")
    path = tmp_path / "kill.jst"
    kills = 0
    for _ in range(3):
        last = run_child(path, mode, journal, stop_after=rng.randrange(5, 300))
        kills += 1
        with js.open(path, Progress, readonly=True) as store:
            step = store.state.step
            assert last <= step <= last + 1
            assert store.state == expected(step)
            assert not store.recovery.corruption
    print(f"{kills} kills in {mode} mode, journal {journal}")


def test_abort_loses_nothing_acknowledged(tmp_path: Path) -> None:
    """SIGABRT (os.abort) right after a commit loses nothing."""
    path = tmp_path / "abort.jst"
    last = run_child(path, "process", 4096, stop_after=10_000, abort_at=57)
    assert last == 57
    with js.open(path, Progress) as store:
        assert store.state == expected(57)


@pytest.mark.parametrize("mode", ["commit", "process"])
def test_sigkill_during_checkpoints(tmp_path: Path, mode: str) -> None:
    """A child that checkpoints after every commit, killed at random, loses nothing."""
    rng = random.Random(mode)
    path = tmp_path / "ckpt.jst"
    for _ in range(3):
        last = run_child(path, mode, 8192, stop_after=rng.randrange(5, 100), behaviour="checkpoint")
        with js.open(path, Progress, readonly=True) as store:
            step = store.state.step
            assert last <= step <= last + 1
            assert store.state == expected(step)


def test_sigkill_during_recovery(tmp_path: Path) -> None:
    """A child that does nothing but reopen (recover, open checkpoint), killed at random."""
    path = tmp_path / "reopen.jst"
    committed = run_child(path, "process", 4096, stop_after=37)
    rng = random.Random(7)
    for _ in range(4):
        run_child(path, "process", 4096, stop_after=rng.randrange(1, 40), behaviour="reopen")
        with js.open(path, Progress, readonly=True) as store:
            assert committed <= store.state.step <= committed + 1
            assert store.state == expected(store.state.step)
            committed = store.state.step
            assert not store.recovery.corruption


def test_segfault_loses_nothing_acknowledged(tmp_path: Path) -> None:
    """SIGSEGV right after a commit (a crash in native code) loses nothing."""
    path = tmp_path / "segv.jst"
    last = run_child(path, "process", 4096, stop_after=10_000, abort_at=23, behaviour="segv")
    assert last == 23
    with js.open(path, Progress) as store:
        assert store.state == expected(23)


def test_readers_beside_a_live_writer_see_committed_states(tmp_path: Path) -> None:
    """Read-only opens while another process commits and checkpoints see committed states."""
    path = tmp_path / "live.jst"
    proc = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(path), "process", "4096", "0", "commit"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    drain = threading.Thread(target=proc.stdout.read, daemon=True)
    try:
        assert proc.stdout.readline().startswith("ready")
        # Drain the child's acknowledgements, so that it never blocks on a full pipe.
        drain.start()
        steps: set[int] = set()
        opens = 0
        # At least 300 opens, and as many more as it takes to see the writer move 20 times
        # (however slowly a busy machine runs it); the deadline only guards against a hang.
        deadline = time.monotonic() + 600
        while opens < 300 or len(steps) < 20:
            assert time.monotonic() < deadline, f"the writer is stuck: steps {sorted(steps)}"
            with js.open(path, Progress, readonly=True) as reader:
                state = reader.state
                assert state == (expected(state.step) if state.step else Progress())
                assert not reader.recovery.corruption
                steps.add(state.step)
            opens += 1
    finally:
        proc.kill()
        if drain.is_alive():
            drain.join()  # the pipe's end: the child is gone
        proc.communicate()


LOCK_HOLDER = textwrap.dedent(
    """
    import sys
    sys.path.insert(0, {root!r})
    import journalstate as js
    from tests.conftest import Progress
    store = js.open(sys.argv[1], Progress)
    print("locked", flush=True)
    sys.stdin.read()  # hold the lock until the test kills us
    """
).format(root=str(ROOT))


def test_lock_held_by_another_process(tmp_path: Path) -> None:
    """A writer in another process makes open() raise StoreLocked naming its pid."""
    path = tmp_path / "locked.jst"
    proc = subprocess.Popen(
        [sys.executable, "-c", LOCK_HOLDER, str(path)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "locked"
        with pytest.raises(js.StoreLocked) as info:
            js.open(path, Progress)
        assert info.value.holder_pid == proc.pid
        with pytest.raises(js.StoreLocked):
            js.open(path, Progress, lock_timeout=0.2)
        with js.open(path, Progress, readonly=True) as store:
            assert store.state == Progress()
    finally:
        proc.kill()
        proc.communicate()
    with js.open(path, Progress) as store:  # the lock died with its holder
        assert store.state == Progress()
