"""`python -m journalstate.bench.accel`: its report's structure (never its timings)."""

from __future__ import annotations

from pathlib import Path

import pytest

from journalstate.bench import accel

pytest.importorskip("journalstate._speedups")


def test_reports_both_paths_side_by_side(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Each case is reported for both paths, with the ratios, and the stores are cleaned up."""
    args = [str(tmp_path), "--rounds", "2", "--seconds", "0.01", "--journal-mib", "1"]
    assert accel.main(args) == 0
    out = capsys.readouterr().out
    for line in (
        "diff of Small",
        "build_record",
        "commit() pure",
        "commit() compiled",
        "transaction() pure",
        "transaction() compiled",
        "commit() compiled / pure",
        "replay of",
    ):
        assert line in out
    assert list(tmp_path.iterdir()) == []


def test_a_missing_directory_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A directory that does not exist: exit code 2 and one line saying so."""
    assert accel.main([str(tmp_path / "missing")]) == 2
    assert "no such directory" in capsys.readouterr().out
