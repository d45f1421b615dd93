"""The commit-mode measurements' structure (never their timings)."""

from __future__ import annotations

from pathlib import Path

import pytest

from journalstate.bench import commitmode


def test_a_missing_directory_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A directory that does not exist gives exit code 2 and one line, no traceback."""
    assert commitmode.main([str(tmp_path / "missing")]) == 2
    out = capsys.readouterr().out
    assert out.count("\n") == 1
    assert "no such directory" in out


def test_group_commit_reports_both_thread_counts(tmp_path: Path) -> None:
    """The group-commit table has a line for one thread and one for N, within 80 columns."""
    lines = commitmode.group_commit(str(tmp_path), rounds=2, seconds=0.02, threads=3)
    assert len(lines) == 4
    assert [line.split()[0] for line in lines[2:]] == ["1", "3"]
    assert all(len(line) <= 80 for line in lines)
