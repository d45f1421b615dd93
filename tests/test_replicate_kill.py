"""A replicating writer SIGKILLed at random moments: the object store alone restores it.

A writer process (``tests/replica_writer.py``) commits states derived from their seq with
``replicate_to=`` a ``file://`` prefix (and, in a shorter run, the moto S3 server), and reports
each ``shipped_seq`` it sees on a pipe. The test kills it with SIGKILL after a random time,
then restores from the object store alone into a new file: the state must be exactly the one
committed as its seq, its seq at least the last one reported shipped, and at most the last
one committed (the store file, which a process death keeps whole, says which). The next
writer reopens the same store file, so each run starts a new generation in the same prefix.

``JOURNALSTATE_REPLICA_KILLS`` sets the kills of the file:// run (default 10; the S3 run makes
a fifth as many, at least 1). docs/replication.md cites a run of 200.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import IO

import pytest

import journalstate as js
from tests.follow_writer import Live, expected
from tests.objectstores import S3Server

pytest.importorskip("obstore")

ROOT = Path(__file__).resolve().parent.parent
KILLS = int(os.environ.get("JOURNALSTATE_REPLICA_KILLS", "10"))
HANG_GUARD = 600.0  # seconds: only a hang gets anywhere near it


class Reports:
    """The lines a writer prints, read by a thread so the test never blocks on the pipe."""

    def __init__(self, stream: IO[str]) -> None:
        self.lines: list[str] = []
        self._stream = stream
        self._thread = threading.Thread(target=self._read, args=(stream,), daemon=True)
        self._thread.start()

    def _read(self, stream: IO[str]) -> None:
        for line in stream:
            self.lines.append(line.strip())

    def finish(self) -> list[str]:
        """Every line, once the writer is dead and its pipe drained."""
        self._thread.join(HANG_GUARD)
        assert not self._thread.is_alive(), "the writer's pipe never closed"
        self._stream.close()
        return self.lines

    def shipped(self) -> list[int]:
        return [int(line.split()[1]) for line in self.lines if line.startswith("shipped ")]


def run_and_kill(
    path: Path, url: str, rng: random.Random, err: Path, *, after_shipping: bool
) -> tuple[int, int]:
    """Start a writer, let it run a random while, SIGKILL it; (seq at start, last shipped).

    With ``after_shipping`` the random while starts once the writer reported a shipped seq
    (however long a loaded machine takes), so that run is sure to test a shipped history.
    """
    with err.open("a") as errors:
        proc = subprocess.Popen(
            [sys.executable, "-m", "tests.replica_writer", str(path), url],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=errors,
            text=True,
        )
    assert proc.stdout is not None
    reports = Reports(proc.stdout)
    deadline = time.monotonic() + HANG_GUARD
    while not reports.lines:
        assert proc.poll() is None, f"the writer exited: {err.read_text()}"
        assert time.monotonic() < deadline, "the writer never started"
        time.sleep(0.01)
    start = int(reports.lines[0].split()[1])
    while after_shipping and not reports.shipped():
        assert proc.poll() is None, f"the writer exited: {err.read_text()}"
        assert time.monotonic() < deadline, "the writer never shipped"
        time.sleep(0.01)
    # A random moment: sometimes before the first snapshot landed, mostly after a few passes.
    time.sleep(rng.choice([0.0, rng.random() * 0.05, rng.random() * 0.6]))
    proc.send_signal(signal.SIGKILL)
    proc.wait(HANG_GUARD)
    reports.finish()
    shipped = reports.shipped()
    return start, max(shipped, default=-1)


def check_restore(url: str, path: Path, tmp_path: Path, shipped: int) -> int:
    """Restore from ``url`` alone; check the state against the seq; return the seq."""
    dest = tmp_path / "restored.jst"
    try:
        js.restore(url, str(dest))
    except js.ReplicaNotFound:
        assert shipped < 0, f"seq {shipped} was reported shipped, but nothing restores"
        return -1
    try:
        with js.open(dest, Live, readonly=True) as restored:
            seq, state = restored.seq, restored.state
        with js.open(path, Live, readonly=True) as store:
            committed = store.seq
    finally:
        dest.unlink()
    assert state == expected(seq), f"the restored state is not the one committed as seq {seq}"
    assert seq >= shipped, f"restored seq {seq}, but seq {shipped} was reported shipped"
    assert seq <= committed, f"restored seq {seq}, but the writer committed only {committed}"
    return seq


def kill_runs(url: str, tmp_path: Path, kills: int) -> None:
    """``kills`` writer runs against ``url``, each killed and followed by a restore."""
    rng = random.Random(os.environ.get("JOURNALSTATE_SEED"))
    path = tmp_path / "s.jst"
    err = tmp_path / "writer.err"
    reported = -1
    restored_seqs: list[int] = []
    for run in range(kills):
        # Every other run (and a single one) is killed after the writer reported shipping.
        after = run % 2 == 1 or kills == 1
        _, shipped = run_and_kill(path, url, rng, err, after_shipping=after)
        reported = max(reported, shipped)
        restored_seqs.append(check_restore(url, path, tmp_path, reported))
    assert max(restored_seqs) >= 0, "no run shipped anything: the test tested nothing"


@pytest.mark.slow
def test_sigkilled_writer_restores_from_file_url(tmp_path: Path) -> None:
    """Kills of a writer replicating to file://: every restore is a committed state >= shipped."""
    kill_runs(f"file://{tmp_path}/replica", tmp_path, KILLS)


@pytest.mark.slow
def test_sigkilled_writer_restores_from_s3(tmp_path: Path, s3_server: S3Server) -> None:
    """The same against the S3 server (moto on 127.0.0.1), fewer kills."""
    kill_runs(s3_server.url("kill"), tmp_path, max(1, KILLS // 5))
