"""The benchmark command: the shape of what it reports, with tiny budgets; never its timings."""

from __future__ import annotations

import argparse
import importlib
import io
import itertools
import json
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from journalstate._cli import add_bench_arguments
from journalstate.bench import report
from journalstate.bench.run import run

TINY = ["--quick", "--seconds", "0.02", "--repeat", "2", "--large-mib", "0.25", "--threads", "3"]
"""A fraction of a second per measurement and a 256 KiB large state."""

FLOORS = ["floor_mmap", "floor_msync", "floor_fdatasync"]
JOURNALSTATE = ["js_process", "js_process_txn", "js_interval", "js_commit", "js_commit_threads"]
PEERS = ["sqlite_off", "sqlite_normal", "sqlite_full", "lmdb_sync", "lmdb_nosync", "rename"]


def bench(argv: list[str]) -> tuple[int, str]:
    """Run ``journalstate bench`` with ``argv``: (exit code, output)."""
    parser = argparse.ArgumentParser()
    add_bench_arguments(parser)
    out = io.StringIO()
    code = run(parser.parse_args(argv), out)
    return code, out.getvalue()


@pytest.fixture(scope="module")
def result(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """One JSON run with peers, shared by the structure tests."""
    directory = tmp_path_factory.mktemp("bench")
    code, text = bench([str(directory), "--peers", "--json", *TINY])
    assert code == 0
    assert list(directory.iterdir()) == []  # the work directory is removed
    parsed: dict[str, Any] = json.loads(text)  # one JSON document, nothing else
    return parsed


@pytest.mark.slow
def test_every_row_is_measured_or_skipped(result: dict[str, Any]) -> None:
    """Floors, journalstate modes and peers each appear once, in order, or with a skip note."""
    measured = [row["key"] for row in result["rows"]]
    skipped = [s["key"] for s in result["skipped"]]
    assert sorted(measured + skipped) == sorted(FLOORS + JOURNALSTATE + PEERS)
    assert measured[: len(FLOORS + JOURNALSTATE)] == FLOORS + JOURNALSTATE
    assert all(s["note"] for s in result["skipped"])
    assert set(skipped) <= {"lmdb_sync", "lmdb_nosync"}


@pytest.mark.slow
def test_rows_have_positive_numbers(result: dict[str, Any]) -> None:
    """Every row has a positive rate, latencies, one rate per repetition, and its group."""
    for row in result["rows"]:
        assert row["commits_per_s"] > 0, row
        assert 0 < row["p50_us"] <= row["p99_us"], row
        assert len(row["runs"]) == 2
        assert all(r > 0 for r in row["runs"])
        assert row["commits"] > 0
        assert row["group"] == {"floor": "floor", "js": "journalstate"}.get(
            row["key"].split("_")[0], "peer"
        )


@pytest.mark.slow
def test_journalstate_rows_have_ratios_and_sync_counts(result: dict[str, Any]) -> None:
    """Each journalstate row is compared with its floor; commit rows count commits per msync."""
    rows = {row["key"]: row for row in result["rows"]}
    floors = {"js_process": "floor_mmap", "js_interval": "floor_mmap", "js_commit": "floor_msync"}
    floors["js_commit_threads"] = "floor_msync"
    for key, floor in floors.items():
        row = rows[key]
        assert row["floor"] == floor
        expected = row["commits_per_s"] / rows[floor]["commits_per_s"]
        assert row["ratio_to_floor"] == pytest.approx(expected)
    assert rows["js_process"]["commits_per_msync"] is None  # process mode never syncs
    # One msync per commit, except a commit whose own checkpoint already made it durable.
    commit = rows["js_commit"]
    per_sync = commit["commits_per_msync"]
    syncs = 0 if per_sync is None else round(commit["commits"] / per_sync)
    assert commit["commits"] - commit["checkpoints"] <= syncs <= commit["commits"]
    assert rows["js_commit_threads"]["commits_per_msync"] >= 1.0
    assert "3 thr" in rows["js_commit_threads"]["label"]


@pytest.mark.slow
def test_followers_section(result: dict[str, Any]) -> None:
    """Refresh and wait latency, the writer's rate beside a waiter and a waiter's CPU share."""
    f = result["followers"]
    assert f["refresh_new_p50_us"] > 0
    assert f["refresh_idle_p50_us"] > 0
    assert 0 < f["wakes"] <= f["commits"]  # two commits between two probes make one wake
    assert f["wake_p50_us"] > 0
    assert f["commits_per_s_alone"] > 0
    assert f["commits_per_s_waited"] > 0
    assert 0 <= f["idle_wait_cpu_share"] < 1.5
    assert "Readers that follow" in "\n".join(report.SECTIONS["followers"](f))


@pytest.mark.slow
def test_large_state_checkpoint_and_recovery_sections(result: dict[str, Any]) -> None:
    """The state-size comparison, checkpoint cost and recovery throughput are all reported."""
    large = result["large_state"]
    assert large["state_bytes"] == 256 * 1024
    for mode in ("process", "commit"):
        for kind in ("small", "large"):
            assert large[mode][kind]["commits_per_s"] > 0
            assert large[mode][kind]["p50_us"] > 0
        assert large[mode]["p50_ratio"] > 0
        assert large[mode]["throughput_ratio"] > 0
    checkpoint = result["checkpoint"]
    assert checkpoint["large"]["state_bytes"] > checkpoint["small"]["state_bytes"]
    assert checkpoint["small"]["ms"] > 0
    assert checkpoint["large"]["mb_per_s"] > 0
    recovery = result["recovery"]
    assert recovery["records_replayed"] > 1000
    assert recovery["bytes_replayed"] > 0.9 * recovery["journal_size"]
    assert recovery["mb_per_s"] > 0
    assert recovery["state_matches"] is True


@pytest.mark.slow
def test_writeback_and_probes(result: dict[str, Any]) -> None:
    """Writeback rows carry counter deltas (None only where /proc lacks them); probes ran."""
    writeback = result["writeback"]
    assert [r["key"] for r in writeback["rows"]] == [
        "idle",
        "js_process",
        "js_commit",
        "floor_fdatasync",
    ]
    for row in writeback["rows"]:
        assert (row["commits"] > 0) == (row["key"] != "idle")
        for deltas in (row["during"], row["after_fsync"]):
            assert set(deltas) == {
                "self_write_bytes",
                "nr_dirtied",
                "nr_written",
                "pgpgout_kib",
                "device_write_bytes",
            }
            assert all(v is None or isinstance(v, int) for v in deltas.values())
    probes = result["probes"]
    assert probes["map_sync"]
    assert probes["gil_progress_mmap_flush"] > 0
    assert probes["gil_progress_fdatasync"] > 0
    assert probes["store_bytes"] > 0
    assert isinstance(probes["preallocated"], bool)


@pytest.mark.slow
def test_targets_are_judged_not_asserted(result: dict[str, Any]) -> None:
    """Each performance target is listed with a measurement and a verdict (or None)."""
    targets = result["targets"]
    assert len(targets) == 10
    for t in targets:
        assert t["target"]
        assert t["measured"]
        assert t["met"] in (True, False, None)


EXTREMES = (1e-9, 9.995, 99_999.5, 123_456_789, 2**64 - 1, 1e300, -1e300, -99_999.5, 0.0)
"""Measured values that once widened a line: tiny, at each rounding edge, huge, negative."""


def extreme(doc: Any, values: Iterator[float]) -> Any:
    """``doc`` with every number replaced by the next of ``values``."""
    if isinstance(doc, dict):
        return {
            k: v if k in ("key", "group", "label") else extreme(v, values) for k, v in doc.items()
        }
    if isinstance(doc, list):
        return [extreme(v, values) for v in doc]
    if isinstance(doc, bool) or doc is None:
        return doc
    if isinstance(doc, int | float):
        value = next(values)
        return int(value) if isinstance(doc, int) and abs(value) < 1e20 else value
    return doc


@pytest.mark.slow
@pytest.mark.parametrize("shift", range(len(EXTREMES)))
def test_report_fits_80_columns_whatever_was_measured(result: dict[str, Any], shift: int) -> None:
    """Extreme measured values (huge counters, huge times, tiny ones) never widen a line past 80."""
    values = itertools.cycle(EXTREMES[shift:] + EXTREMES[:shift])
    doc = extreme(result, values)
    doc["settings"]["directory"] = "/bench"
    long = "x" * 200  # names and messages from the machine may be any length too
    for key in ("cpu", "kernel", "python", "loadavg_start", "loadavg_end"):
        doc["machine"][key] = long
    doc["machine"]["filesystem"] = {"fstype": long, "device": long}
    doc["probes"]["map_sync"] = long
    doc["plot"] = {"file": "/bench.svg", "written": True, "note": None}
    doc["targets"] = report.targets(doc)
    lines = report.report_lines(doc)
    assert len(lines) > 40
    too_wide = [line for line in lines if len(line) > 80]
    assert too_wide == [], "\n".join(too_wide)


@pytest.mark.slow
def test_table_fits_80_columns_and_degrades_without_optional_modules(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without lmdb and matplotlib the table says so and carries on; no line exceeds 80."""
    real = importlib.import_module

    def without_optional(name: str, package: str | None = None) -> ModuleType:
        if name.split(".")[0] in ("lmdb", "matplotlib"):
            raise ImportError(f"No module named {name!r}")
        return real(name, package)

    monkeypatch.setattr(importlib, "import_module", without_optional)
    plot = tmp_path / "bench.svg"
    code, text = bench([str(tmp_path), "--peers", "--plot", str(plot), *TINY])
    assert code == 0
    lines = text.splitlines()
    table = [line for line in lines if str(tmp_path) not in line]  # a path may be any length
    assert all(len(line) <= 80 for line in table), max(table, key=len)
    assert any(line.startswith("lmdb sync") and "skipped" in line for line in lines)
    assert "matplotlib is not installed" in text
    assert not plot.exists()
    for label in ("floor mmap + msync", "journalstate commit, 3 thr", "sqlite WAL sync=FULL"):
        assert any(line.startswith(label) for line in lines), label
    assert "Performance targets" in text


@pytest.mark.slow
def test_plot_is_drawn_when_matplotlib_imports(tmp_path: Path) -> None:
    """--plot writes the chart (PNG here) when matplotlib is installed."""
    pytest.importorskip("matplotlib")
    plot = tmp_path / "bench.png"
    code, text = bench([str(tmp_path), "--json", "--plot", str(plot), *TINY])
    assert code == 0
    assert json.loads(text)["plot"] == {"file": str(plot), "written": True, "note": None}
    assert plot.read_bytes()[:4] == b"\x89PNG"


def test_missing_directory_is_a_usage_error(tmp_path: Path) -> None:
    """A directory that does not exist gives exit code 2 and one line, and measures nothing."""
    code, text = bench([str(tmp_path / "nope"), "--quick"])
    assert code == 2
    assert text.count("\n") == 1
    assert "no such directory" in text
