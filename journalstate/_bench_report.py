"""The report of `journalstate bench`: the performance targets judged, the table, the plot.

Pure formatting: it turns the result document ``_bench.run`` builds into lines (and a plot when
matplotlib is installed); it measures nothing and prints nothing.
"""

from __future__ import annotations

import importlib
import mmap
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from journalstate._bench import Row

_PAGE = mmap.PAGESIZE


# --- targets -----------------------------------------------------------------------------------


def targets(result: dict[str, Any]) -> list[dict[str, Any]]:
    """The performance targets, judged on this run (None: not measured)."""
    rows = {r["key"]: r for r in result["rows"]}
    found: list[dict[str, Any]] = []

    def add(target: str, measured: str, met: bool | None) -> None:
        found.append({"target": target, "measured": measured, "met": met})

    def rate(key: str) -> float | None:
        return rows[key]["commits_per_s"] if key in rows else None

    commit = rows["js_commit"]
    add(
        "commit >= 0.9x mmap+msync floor",
        f"{commit['ratio_to_floor']:.2f}x",
        commit["ratio_to_floor"] >= 0.9,
    )
    threads, floor = rows["js_commit_threads"], rate("floor_msync") or 1.0
    per_sync = threads["commits_per_msync"] or 0.0
    add(
        f"commit {result['settings']['threads']} thr > 1.5x floor, >1 c/msync",
        f"{threads['commits_per_s'] / floor:.2f}x, {per_sync:.2f} c/msync",
        threads["commits_per_s"] > 1.5 * floor and per_sync > 1.0,
    )
    process = rows["js_process"]
    for key, factor, label in (
        ("lmdb_nosync", 1.0, "lmdb nosync"),
        ("sqlite_off", 3.0, "sqlite OFF"),
    ):
        other = rate(key)
        if other is None:
            add(f"process >= {factor:g}x {label}", "not measured", None)
        else:
            ratio = process["commits_per_s"] / other
            add(f"process >= {factor:g}x {label}", f"{ratio:.2f}x", ratio >= factor)
    add("process p50 <= 4 us", f"{process['p50_us']:.2f} us", process["p50_us"] <= 4.0)
    large = result["large_state"]
    for mode in ("process", "commit"):
        ratio = large[mode]["p50_ratio"]
        add(f"{mode}: large-state p50 <= 1.10x small", f"{ratio:.2f}x", ratio <= 1.10)
    replay = result["recovery"]["mb_per_s"]
    add("recovery (whole open) >= 100 MB/s", f"{replay:.0f} MB/s", replay >= 100)
    return found


# --- output ------------------------------------------------------------------------------------


def _n(x: float | None, unit: str = "") -> str:
    """A compact number: commas for big ones, a few significant digits for small ones."""
    if x is None:
        return "n/a"
    if isinstance(x, int):
        return f"{x:,}{unit}"
    if abs(x) >= 1000:
        return f"{x:,.0f}{unit}"
    if abs(x) >= 10:
        return f"{x:.1f}{unit}"
    return f"{x:.2f}{unit}"


def _mib(n: int) -> str:
    if n >= 2**20:
        return f"{round(n / 2**20, 1):g} MiB"
    return f"{round(n / 1024, 1):g} KiB" if n >= 1024 else f"{n} B"


def row_line(row: Row) -> str:
    ratio = "" if row.ratio_to_floor is None else f"{row.ratio_to_floor:.2f}x"
    note = row.note
    if row.commits_per_msync is not None:
        note = f"{_n(row.commits_per_msync)} c/msync"
    numbers = f"{_n(row.commits_per_s):>11}{_n(row.p50_us):>9}{_n(row.p99_us):>9}{ratio:>8}"
    return f"{row.label:<27}{numbers}  {note}"


_TABLE_HEAD = f"{'':<27}{'commits/s':>11}{'p50 us':>9}{'p99 us':>9}{'floor':>8}  notes"


def header_lines(result: dict[str, Any]) -> list[str]:
    m, s = result["machine"], result["settings"]
    fs = m["filesystem"]
    disk = f"rotational={'?' if m['rotational'] is None else m['rotational']}"
    mem = f"{m['memory_bytes'] / 2**30:.1f} GiB" if m["memory_bytes"] else "? GiB"
    lines = [
        f"journalstate {m['journalstate']} bench in {s['directory']}",
        f"{fs['fstype']} on {fs['device']} ({disk}); {m['nproc']} CPUs ({m['cpu']})",
        f"{mem} RAM; Linux {m['kernel']}; Python {m['python']}; load {m['loadavg_start']}",
        f"{s['repeat']} interleaved rounds of one {s['seconds']:g} s run per row after a "
        f"{s['warmup']:g} s warm-up;",
        f"medians of the runs. Latencies include ~{result['timer_overhead_ns']:.0f} ns of "
        "timing loop per commit.",
    ]
    if fs["fstype"] in ("tmpfs", "ramfs"):
        lines.append("warning: a memory file system: msync and fsync reach no disk here.")
    return [*lines, "", _TABLE_HEAD]


def _large_lines(large: dict[str, Any]) -> list[str]:
    sizes = f"{_mib(large['state_bytes'])} vs 120 B, journal {_mib(large['journal_size'])}"
    lines = [
        "",
        f"Large state ({sizes})",
        f"{'':<9}{'small p50':>11}{'large p50':>11}{'ratio':>7}"
        f"{'small c/s':>12}{'large c/s':>12}{'ratio':>7}{'ckpts':>9}",
    ]
    for mode in ("process", "commit"):
        d = large[mode]
        small, big = d["small"], d["large"]
        ckpts = f"{small['checkpoints']}/{big['checkpoints']}"
        lines.append(
            f"{mode:<9}{_n(small['p50_us'], ' us'):>11}{_n(big['p50_us'], ' us'):>11}"
            f"{d['p50_ratio']:>6.2f}x{_n(small['commits_per_s']):>12}"
            f"{_n(big['commits_per_s']):>12}{d['throughput_ratio']:>6.2f}x"
            f"{ckpts:>9}"
        )
    return lines


def _checkpoint_lines(c: dict[str, Any]) -> list[str]:
    small, large = c["small"], c["large"]
    return [
        "",
        f"Checkpoint: {_n(small['ms'])} ms for the small state, {_n(large['ms'])} ms for "
        f"{_mib(large['state_bytes'])} ({_n(large['mb_per_s'])} MB/s)",
    ]


def _recovery_lines(r: dict[str, Any]) -> list[str]:
    return [
        "",
        f"Recovery of a process-death image with a full {_mib(r['journal_size'])} journal:",
        f"  {r['records_replayed']:,} records, {r['bytes_replayed'] / 1e6:.1f} MB replayed in "
        f"{_n(r['open_ms'])} ms: {_n(r['mb_per_s'])} MB/s; state exact: "
        f"{'yes' if r['state_matches'] else 'NO'}",
        f"  the same store after close (nothing to replay): open {_n(r['open_closed_ms'])} ms",
    ]


def _kib(n: int | None) -> str:
    return _n(None if n is None else n / 1024)


def _writeback_lines(w: dict[str, Any]) -> list[str]:
    expire = w["dirty_expire_centisecs"]
    lines = [
        "",
        f"Dirty-page writeback: {w['rows'][0]['seconds']:g} s of commits, then one fsync "
        f"(kernel expiry: {'?' if expire is None else expire / 100:g} s)",
        f"{'':<21}{'commits':>10}{'ckpts':>6}{'dirtied KiB':>12}{'nr_written':>11}"
        f"{'device KiB':>11}{'B/commit':>9}",
    ]
    for row in w["rows"]:
        for label, d in ((row["label"], row["during"]), ("  after the fsync", row["after_fsync"])):
            first = label == row["label"]
            dev = d["device_write_bytes"]
            lines.append(
                f"{label:<21}{_n(row['commits']) if first else '':>10}"
                f"{row['checkpoints'] if first else '':>6}{_kib(d['self_write_bytes']):>12}"
                f"{_n(d['nr_written']):>11}{_kib(dev):>11}"
                f"{_n(None if dev is None or not row['commits'] else dev / row['commits']):>9}"
            )
    return lines


def _probe_lines(p: dict[str, Any]) -> list[str]:
    lines = ["", f"MAP_SHARED_VALIDATE|MAP_SYNC here: {p['map_sync']}"]
    if "ms_async_ns" in p:
        dev, idle = p["ms_async_device_write_bytes"], p["ms_async_idle_device_write_bytes"]
        lines.append(
            f"msync(MS_ASYNC) on a dirty page: {_n(p['ms_async_ns'] / 1e3)} us/call; device "
            f"wrote {'n/a' if dev is None else f'{dev:,}'} B in {p['ms_async_calls']:,} calls"
        )
        lines.append(
            f"  (and {'n/a' if idle is None else f'{idle:,}'} B in as long idle; a write per "
            f"call would be {p['ms_async_calls'] * _PAGE:,} B)"
        )
    else:
        lines.append(f"msync(MS_ASYNC): {p['ms_async']}")
    lines.append(
        "busy-thread speed beside a syncing one: "
        f"{p['gil_progress_mmap_flush']:.2f}x mmap.flush, "
        f"{p['gil_progress_fdatasync']:.2f}x fdatasync"
    )
    lines.append(
        f"new store preallocated: {'yes' if p['preallocated'] else 'NO'} "
        f"({p['store_allocated_bytes']:,} of {p['store_bytes']:,} bytes allocated)"
    )
    return lines


def _target_lines(targets: list[dict[str, Any]]) -> list[str]:
    lines = ["", f"{'Performance targets':<46}{'measured':>24}{'met':>8}"]
    for t in targets:
        met = {True: "yes", False: "NO", None: "-"}[t["met"]]
        lines.append(f"{t['target']:<46}{t['measured']:>24}{met:>8}")
    return lines


SECTIONS: dict[str, Callable[[Any], list[str]]] = {
    "large_state": _large_lines,
    "checkpoint": _checkpoint_lines,
    "recovery": _recovery_lines,
    "writeback": _writeback_lines,
    "probes": _probe_lines,
    "targets": _target_lines,
}
"""How each section of the result is shown, by its key."""


def plot(result: dict[str, Any], path: str) -> str | None:
    """Draw commits/s per row into ``path`` (SVG or PNG); returns a note when it cannot."""
    try:
        matplotlib: Any = importlib.import_module("matplotlib")
        matplotlib.use("Agg")
        plt: Any = importlib.import_module("matplotlib.pyplot")
    except ImportError:
        return "matplotlib is not installed (pip install matplotlib): no plot"
    rows = result["rows"]
    colors = {"floor": "#999999", "journalstate": "#1f77b4", "peer": "#ff7f0e"}
    fig, ax = plt.subplots(figsize=(8, 0.35 * len(rows) + 1.5))
    labels = [r["label"] for r in rows][::-1]
    values = [r["commits_per_s"] for r in rows][::-1]
    ax.barh(labels, values, color=[colors[r["group"]] for r in rows][::-1])
    for y, v in enumerate(values):
        ax.text(v, y, f" {_n(v)}", va="center", fontsize=8)
    ax.set_xscale("log")
    ax.set_xlim(right=max(values) * 6)  # room for the value printed after the longest bar
    ax.set_xlabel("commits/s (log scale; median of runs)")
    fs = result["machine"]["filesystem"]
    ax.set_title(f"journalstate bench: {fs['fstype']}, Linux {result['machine']['kernel']}")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return None
