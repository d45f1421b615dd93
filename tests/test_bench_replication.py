"""The replication rows of ``journalstate bench``: their shape, never their timings."""

from __future__ import annotations

from pathlib import Path

import pytest

from journalstate.bench import report
from journalstate.bench.base import Config
from journalstate.bench.replication import measure_replication

pytest.importorskip("obstore")


@pytest.mark.slow
def test_replication_section_measures_both_modes_and_the_lag(tmp_path: Path) -> None:
    """Rates on and off in process and commit mode, their ratio, the lag; files cleaned up."""
    cfg = Config(directory=str(tmp_path), seconds=0.02, repeat=2, warmup=0.01)
    result = measure_replication(cfg)
    for mode in ("process", "commit"):
        m = result[mode]
        assert m["commits_per_s_on"] > 0
        assert m["commits_per_s_off"] > 0
        assert m["on_vs_off"] == pytest.approx(m["commits_per_s_on"] / m["commits_per_s_off"])
        assert m["generations_started"] >= m["runs"] == 2  # one a writer session at least
    lag = result["lag"]
    assert lag["commits"] > 0
    assert 0 <= lag["lag_p50_s"] <= lag["lag_p99_s"] <= lag["lag_max_s"]
    assert lag["shipped_all"] is True  # close() shipped every commit
    assert list(tmp_path.iterdir()) == []
    text = "\n".join(report.SECTIONS["replication"](result))
    assert "Replication to file://" in text
    assert "on/off" in text


def test_skipped_section_says_why() -> None:
    """Without obstore the section is one line saying it was skipped and why."""
    lines = report.SECTIONS["replication"]({"skipped": "obstore is not installed"})
    assert any("skipped" in line for line in lines)
