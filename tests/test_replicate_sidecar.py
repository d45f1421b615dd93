"""``journalstate replicate PATH URL``: the sidecar, run as a real process beside a writer."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import journalstate as js
from journalstate._commands import EXIT_BUSY, EXIT_USAGE
from journalstate.replicate._objects import open_url
from tests.follow_writer import Live, expected

pytest.importorskip("obstore")

ROOT = Path(__file__).resolve().parent.parent
HANG_GUARD = 300.0  # seconds: only a hang gets anywhere near it


def replicate(*args: str) -> subprocess.CompletedProcess[str]:
    """Run ``journalstate replicate ARGS`` to its end."""
    return subprocess.run(
        [sys.executable, "-m", "journalstate", "replicate", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=HANG_GUARD,
    )


def restored(url: str, tmp_path: Path) -> tuple[int, Live]:
    """Restore ``url`` into a new file; its seq and state."""
    dest = tmp_path / f"restored-{time.monotonic_ns()}.jst"
    js.restore(url, str(dest))
    with js.open(dest, Live) as store:
        return store.seq, store.state


def test_once_ships_a_live_writers_store(tmp_path: Path) -> None:
    """--once beside a live writer ships what it committed, then exits 0."""
    url = f"file://{tmp_path}/replica"
    path = tmp_path / "s.jst"
    with js.open(path, Live) as store:
        for seq in range(1, 31):
            store.commit(expected(seq))
        result = replicate(str(path), url, "--once")
        assert result.returncode == 0, result.stderr
        assert "shipped seq 30" in result.stdout
        assert restored(url, tmp_path) == (30, expected(30))
        store.commit(expected(31))
        result = replicate(str(path), url, "--once", "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["shipped_seq"] == 31
    assert report["complete"] is True
    assert report["last_generation_reason"] == "start"
    assert restored(url, tmp_path) == (31, expected(31))


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_follow_run_stops_on_a_signal_with_a_final_flush(tmp_path: Path, signum: int) -> None:
    """A following sidecar ships as the writer commits; a signal stops it, all shipped, exit 0."""
    url = f"file://{tmp_path}/replica"
    path = tmp_path / "s.jst"
    objects = open_url(url)
    with js.open(path, Live, durability="process") as store:
        store.commit(expected(1))
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "journalstate",
                "replicate",
                str(path),
                url,
                "--interval",
                "0.02",
            ],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            deadline = time.monotonic() + HANG_GUARD
            while not any(k.endswith(".snapshot") for k in objects.list("generations/")):
                assert proc.poll() is None, proc.communicate()
                assert time.monotonic() < deadline, "the sidecar never shipped a snapshot"
                time.sleep(0.02)
            for seq in range(2, 201):
                store.commit(expected(seq))
                if seq % 50 == 0:
                    time.sleep(0.05)
            proc.send_signal(signum)
            out, err = proc.communicate(timeout=HANG_GUARD)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    assert proc.returncode == 0, err
    assert "Traceback" not in err
    assert "shipped seq 200" in out
    assert restored(url, tmp_path) == (200, expected(200))


def test_missing_store_is_a_usage_error_without_traceback(tmp_path: Path) -> None:
    """A store that does not exist: exit 2, one line on stderr."""
    result = replicate(str(tmp_path / "nothing.jst"), f"file://{tmp_path}/replica", "--once")
    assert result.returncode == EXIT_USAGE
    assert "Traceback" not in result.stderr
    assert result.stderr.count("\n") == 1


@pytest.mark.parametrize("interval", ["0", "-1", "x", "inf"])
def test_bad_interval_is_a_usage_error(tmp_path: Path, interval: str) -> None:
    """--interval must be a number of seconds > 0."""
    result = replicate(str(tmp_path / "s.jst"), "file:///x", "--interval", interval)
    assert result.returncode == EXIT_USAGE
    assert "Traceback" not in result.stderr


def test_bad_url_is_refused_without_traceback(tmp_path: Path) -> None:
    """A URL no object store answers to: BadReplicaURL's exit code, one line on stderr."""
    path = tmp_path / "s.jst"
    js.open(path, Live).close()
    result = replicate(str(path), "ftp://host/x", "--once")
    assert result.returncode == EXIT_USAGE
    assert "Traceback" not in result.stderr
    assert "ftp://host/x" in result.stderr


def test_prefix_of_another_store_is_refused(tmp_path: Path) -> None:
    """A prefix holding another store's generations: ReplicaConflict, nothing written there."""
    url = f"file://{tmp_path}/replica"
    with js.open(tmp_path / "a.jst", Live, replicate_to=url) as a:
        a.commit(expected(1))
    before = open_url(url).list("generations/")
    other = tmp_path / "b.jst"
    js.open(other, Live).close()
    result = replicate(str(other), url, "--once")
    assert result.returncode == EXIT_USAGE
    assert "another store" in result.stderr
    assert "Traceback" not in result.stderr
    assert open_url(url).list("generations/") == before


def test_uploads_failing_at_the_end_exit_5_with_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """An object store that keeps failing: exit 5, nothing on stdout, one line on stderr."""
    import journalstate.replicate._sidecar as sidecar
    from journalstate._cli import main

    monkeypatch.setattr(sidecar, "ONCE_TIMEOUT", 0.2)
    path = tmp_path / "s.jst"
    with js.open(path, Live) as store:
        store.commit(expected(1))
    blocker = tmp_path / "not-a-directory"
    blocker.write_bytes(b"")
    code = main(["replicate", str(path), f"file://{blocker}/replica", "--once"])
    out, err = capsys.readouterr()
    assert code == EXIT_BUSY
    assert out == ""
    assert err.count("\n") == 1
    assert "not shipped" in err
