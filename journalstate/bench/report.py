"""The report of `journalstate bench`: the performance targets judged, the table, the plot.

Pure formatting: it turns the result document ``run.run`` builds into lines (and a plot when
matplotlib is installed); it measures nothing and prints nothing.
"""

from __future__ import annotations

import importlib
import math
import mmap
from collections.abc import Callable
from typing import Any

from journalstate.bench.base import Row

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

    process = rows["js_process"]
    lmdb = rate("lmdb_nosync")
    for key, factor, label in (("js_process", 1.5, "commit()"), ("js_process_txn", 1.0, "txn")):
        mine = rate(key)
        if not lmdb or not mine:  # not run (or nothing measured)
            add(f"process {label} >= {factor:g}x lmdb nosync", "not measured", None)
        else:
            add(
                f"process {label} >= {factor:g}x lmdb nosync",
                _x(mine / lmdb),
                mine / lmdb >= factor,
            )
    add("process p50 <= 2 us", _n(process["p50_us"], " us"), process["p50_us"] <= 2.0)
    commit = rows["js_commit"]
    add(
        "commit >= 0.95x mmap+msync floor",
        _x(commit["ratio_to_floor"]),
        commit["ratio_to_floor"] >= 0.95,
    )
    threads = rows["js_commit_threads"]
    one = rate("js_commit") or 1.0
    ratio = threads["commits_per_s"] / one
    add(f"commit {result['settings']['threads']} thr >= 2x 1 thr", _x(ratio), ratio >= 2.0)
    large = result["large_state"]
    size = _bytes(large["state_bytes"])
    for mode in ("process", "commit"):
        ratio = large[mode]["throughput_ratio"]
        add(f"{mode}: {size} state >= 0.9x small", _x(ratio), ratio >= 0.9)
    recovery = result["recovery"].get("large", result["recovery"])
    replay = recovery["mb_per_s"]
    add("replay >= 200 MB/s", _n(replay, " MB/s"), replay >= 200)
    journal = _bytes(recovery["journal_size"])
    open_ms = recovery["open_ms"]
    add(f"open a full {journal} journal < 0.5 s", _n(open_ms, " ms"), open_ms < 500)
    replication = result.get("replication", {})
    if "process" in replication:
        ratio = replication["process"]["on_vs_off"]
        add("process: replicating >= 0.9x not", _x(ratio), ratio >= 0.9)
    else:
        add("process: replicating >= 0.9x not", "not measured", None)
    return found


# --- output ------------------------------------------------------------------------------------


# Every measured value goes through one of these, so that no value, however large or small,
# widens a line: _n and _x give at most 7 and 8 characters, _bytes at most 9.
NUMBER_WIDTH = 7
"""The most characters _n gives for a number (sign included)."""
_SI = ("", "k", "M", "G", "T", "P", "E")


def _n(x: float | None, unit: str = "") -> str:
    """A compact number of at most NUMBER_WIDTH characters (plus ``unit``).

    Three significant digits for small values, commas up to 99,999, then k, M, G, ... suffixes,
    and an exponent beyond those.
    """
    if x is None:
        return "n/a"
    if not math.isfinite(x):
        return f"{x}{unit}"
    sign, a = ("-" if x < 0 else ""), abs(x)
    if isinstance(a, int) and a < 100_000:
        return f"{sign}{a:,}{unit}"
    if a < 99_999.5:
        text = f"{a:.2f}" if a < 9.995 else f"{a:.1f}" if a < 99.95 else f"{a:,.0f}"
        return f"{sign}{text}{unit}"
    for suffix in _SI[1:]:
        a /= 1000
        if a < 999.5:
            text = f"{a:.2f}" if a < 9.995 else f"{a:.1f}" if a < 99.95 else f"{a:.0f}"
            return f"{sign}{text}{suffix}{unit}"
    return f"{sign}{abs(x):.0e}{unit}"


def _x(ratio: float | None) -> str:
    """A ratio: a compact number and an x."""
    return "n/a" if ratio is None else _n(ratio) + "x"


def _bytes(n: float | None) -> str:
    """A byte count in B, KiB, MiB, ... (at most 9 characters)."""
    if n is None:
        return "n/a"
    if not math.isfinite(n):
        return f"{n} B"
    sign, a = ("-" if n < 0 else ""), abs(n)
    if a < 1023.5:
        return f"{sign}{a:.0f} B"
    for unit in ("KiB", "MiB", "GiB", "TiB", "PiB", "EiB"):
        a /= 1024
        if a < 1023.5:
            return f"{sign}{a:.1f} {unit}" if a < 9.95 else f"{sign}{a:.0f} {unit}"
    return f"{sign}{abs(n):.0e} B"


def _clip(text: object, width: int) -> str:
    """Free text from the machine (a device or CPU name, an OS message) cut to ``width``."""
    s = str(text)
    return s if len(s) <= width else s[: width - 3] + "..."


def row_line(row: Row) -> str:
    """One row of the comparison table."""
    note = row.note
    if row.commits_per_msync is not None:
        note = f"{_n(row.commits_per_msync)} c/msync"
    ratio = "" if row.ratio_to_floor is None else _x(row.ratio_to_floor)
    numbers = f"{_n(row.commits_per_s):>9}{_n(row.p50_us):>9}{_n(row.p99_us):>9}{ratio:>9}"
    return f"{_clip(row.label, 26):<27}{numbers}  {note}".rstrip()


def skipped_line(skipped: dict[str, str]) -> str:
    """A row of the comparison table that was not measured, and why."""
    return f"{_clip(skipped['label'], 26):<27}skipped: {_clip(skipped['note'], 44)}"


_TABLE_HEAD = f"{'':<27}{'commits/s':>9}{'p50 us':>9}{'p99 us':>9}{'floor':>9}  notes"


def header_lines(result: dict[str, Any]) -> list[str]:
    """What was measured where, on which machine, and how: the lines before the table."""
    m, s = result["machine"], result["settings"]
    fs = m["filesystem"]
    disk = f"rotational={'?' if m['rotational'] is None else _clip(m['rotational'], 5)}"
    mem = _bytes(m["memory_bytes"]) if m["memory_bytes"] else "? GiB"
    lines = [
        f"journalstate {m['journalstate']} bench in {s['directory']}",
        f"file system: {_clip(fs['fstype'], 10)} on {_clip(fs['device'], 32)} ({disk})",
        f"machine: {_n(m['nproc'])} CPUs ({_clip(m['cpu'], 40)}), {mem} RAM",
        f"Linux {_clip(m['kernel'], 26)}; Python {_clip(m['python'], 10)}; "
        f"load {_clip(m['loadavg_start'], 20)}",
        f"code path: {_clip(m.get('code_path', '?'), 60)}",
        f"{_n(s['repeat'])} interleaved rounds of one {_n(s['seconds'])} s run per row, "
        f"after a {_n(s['warmup'])} s warm-up;",
        f"medians of the runs. Latencies include ~{_n(result['timer_overhead_ns'])} ns of "
        "timing loop per commit.",
    ]
    if fs["fstype"] in ("tmpfs", "ramfs"):
        lines.append("warning: a memory file system: msync and fsync reach no disk here.")
    return [*lines, "", _TABLE_HEAD]


def table_lines(rows: list[Row], skipped: list[dict[str, str]]) -> list[str]:
    """The comparison table's rows: the measured ones, then the skipped ones."""
    return [row_line(row) for row in rows] + [skipped_line(s) for s in skipped]


def _large_lines(large: dict[str, Any]) -> list[str]:
    sizes = f"{_bytes(large['state_bytes'])} vs 120 B, journal {_bytes(large['journal_size'])}"
    lines = [
        "",
        f"Large state ({sizes})",
        f"{'':<21}{'p50 us':>11}{'commits/s':>11}{'ckpts':>11}",
    ]
    for mode in ("process", "commit"):
        d = large[mode]
        for kind in ("small", "large"):
            k = d[kind]
            lines.append(
                f"{mode + ' ' + kind:<21}{_n(k['p50_us']):>11}{_n(k['commits_per_s']):>11}"
                f"{_n(k['checkpoints']):>11}"
            )
        lines.append(
            f"{'  large / small':<21}{_x(d['p50_ratio']):>11}{_x(d['throughput_ratio']):>11}"
        )
    return lines


def _checkpoint_lines(c: dict[str, Any]) -> list[str]:
    small, large = c["small"], c["large"]
    return [
        "",
        f"Checkpoint: {_n(small['ms'])} ms for the small state; {_n(large['ms'])} ms for "
        f"{_bytes(large['state_bytes'])}, {_n(large['mb_per_s'])} MB/s",
    ]


def _recovery_lines(r: dict[str, Any]) -> list[str]:
    return [
        "",
        f"Recovery of a process-death image with a full {_bytes(r['journal_size'])} journal:",
        f"  {_n(r['records_replayed'])} records, {_n(r['bytes_replayed'] / 1e6)} MB replayed "
        f"in {_n(r['open_ms'])} ms: {_n(r['mb_per_s'])} MB/s",
        f"  the recovered state is exact: {'yes' if r['state_matches'] else 'NO'}",
        f"  the same store after close (nothing to replay): open {_n(r['open_closed_ms'])} ms",
        *_large_recovery_lines(r.get("large")),
    ]


def _large_recovery_lines(r: dict[str, Any] | None) -> list[str]:
    """The same measurement with a journal four times as large (64 MiB in a full run)."""
    if r is None:
        return []
    return [
        f"  full {_bytes(r['journal_size'])} journal: {_n(r['bytes_replayed'] / 1e6)} MB in "
        f"{_n(r['open_ms'])} ms: {_n(r['mb_per_s'])} MB/s",
        f"  ({_n(r['records_replayed'])} records, exact: {'yes' if r['state_matches'] else 'NO'};"
        f" after close: open {_n(r['open_closed_ms'])} ms)",
    ]


def _kib(n: int | None) -> str:
    return _n(None if n is None else n / 1024)


def _writeback_lines(w: dict[str, Any]) -> list[str]:
    expire = w["dirty_expire_centisecs"]
    lines = [
        "",
        f"Dirty-page writeback: {_n(w['rows'][0]['seconds'])} s of commits, then one fsync",
        f"(kernel dirty-page expiry: {'?' if expire is None else _n(expire / 100)} s)",
        f"{'':<21}{'commits':>8}{'ckpts':>8}{'dirtied KiB':>12}{'nr_written':>11}"
        f"{'device KiB':>11}{'B/commit':>9}",
    ]
    for row in w["rows"]:
        for label, d in ((row["label"], row["during"]), ("  after the fsync", row["after_fsync"])):
            first = label == row["label"]
            dev = d["device_write_bytes"]
            lines.append(
                f"{_clip(label, 20):<21}{_n(row['commits']) if first else '':>8}"
                f"{_n(row['checkpoints']) if first else '':>8}{_kib(d['self_write_bytes']):>12}"
                f"{_n(d['nr_written']):>11}{_kib(dev):>11}"
                f"{_n(None if dev is None or not row['commits'] else dev / row['commits']):>9}"
            )
    return lines


def _probe_lines(p: dict[str, Any]) -> list[str]:
    lines = ["", f"MAP_SHARED_VALIDATE|MAP_SYNC here: {_clip(p['map_sync'], 45)}"]
    if "ms_async_ns" in p:
        dev, idle = p["ms_async_device_write_bytes"], p["ms_async_idle_device_write_bytes"]
        calls = p["ms_async_calls"]
        lines += [
            f"msync(MS_ASYNC) on a dirty page: {_n(p['ms_async_ns'] / 1e3)} us/call, "
            f"{_n(calls)} calls;",
            f"  the device wrote {_bytes(dev)} meanwhile and {_bytes(idle)} in as long idle;",
            f"  a write per call would be {_bytes(calls * _PAGE)}",
        ]
    else:
        lines.append(f"msync(MS_ASYNC): {_clip(p['ms_async'], 63)}")
    lines.append(
        "busy-thread speed beside a syncing one: "
        f"{_x(p['gil_progress_mmap_flush'])} mmap.flush, "
        f"{_x(p['gil_progress_fdatasync'])} fdatasync"
    )
    lines.append(
        f"new store preallocated: {'yes' if p['preallocated'] else 'NO'} "
        f"({_bytes(p['store_allocated_bytes'])} of {_bytes(p['store_bytes'])} allocated)"
    )
    return lines


def _follower_lines(f: dict[str, Any]) -> list[str]:
    def us(key: str) -> str:
        return f"{_n(f[key]):>8} us"

    return [
        "",
        "Readers that follow a writer (read-only stores):",
        f"  refresh(), one new commit   p50 {us('refresh_new_p50_us')}  "
        f"p99 {us('refresh_new_p99_us')}",
        f"  refresh(), none             p50 {us('refresh_idle_p50_us')}  "
        f"p99 {us('refresh_idle_p99_us')}",
        f"  wait() woken by a commit    p50 {us('wake_p50_us')}  p99 {us('wake_p99_us')}  "
        f"max {us('wake_max_us')}",
        f"    ({_n(f['wakes'])} wakes for {_n(f['commits'])} commits of a writer in another "
        "process)",
        f"  writer beside a following reader: {_x(f['waited_vs_alone'])} its rate alone, "
        f"{_n(f['cost_per_commit_us'])} us a commit",
        "    (the machine's share: the commit path has no code for readers)",
        f"  a reader waiting on a quiet store: {_n(100 * f['idle_wait_cpu_share'])}% of a core",
    ]


def _replication_lines(r: dict[str, Any]) -> list[str]:
    lines = ["", "Replication to file:// (a shipper thread in the writer's process):"]
    if "skipped" in r:
        return [*lines, f"  skipped: {_clip(r['skipped'], 68)}"]
    for mode in ("process", "commit"):
        m = r[mode]
        lines.append(
            f"  {mode:<8} commits/s on {_n(m['commits_per_s_on']):>7}  off "
            f"{_n(m['commits_per_s_off']):>7}  on/off {_x(m['on_vs_off']):>8}"
        )
        lines.append(
            f"           {_n(m['generations_started'])} generations in {_n(m['runs'])} runs"
        )
    lag = r["lag"]
    lines.append(f"  lag, a commit every ms, interval {_n(lag['interval_s'])} s:")
    lines.append(
        f"    p50 {_n(lag['lag_p50_s'])} s  p99 {_n(lag['lag_p99_s'])} s  "
        f"max {_n(lag['lag_max_s'])} s  ({_n(lag['lag_seq_max'])} commits)"
    )
    lines.append(f"  close() shipping the rest: {_n(lag['close_s'] * 1e3)} ms")
    return lines


def _target_lines(targets: list[dict[str, Any]]) -> list[str]:
    lines = ["", f"{'Performance targets':<44}{'measured':>28}{'met':>8}"]
    for t in targets:
        met = {True: "yes", False: "NO", None: "-"}[t["met"]]
        lines.append(f"{_clip(t['target'], 43):<44}{t['measured']:>28}{met:>8}")
    return lines


def footer_lines(result: dict[str, Any]) -> list[str]:
    """The load average at the end, and where the plot went (when one was asked for)."""
    lines = ["", f"load average at the end: {_clip(result['machine']['loadavg_end'], 54)}"]
    if "plot" in result:
        note = result["plot"]["note"]
        lines += ["", note if note else f"plot written to {result['plot']['file']}"]
    return lines


SECTIONS: dict[str, Callable[[Any], list[str]]] = {
    "large_state": _large_lines,
    "checkpoint": _checkpoint_lines,
    "recovery": _recovery_lines,
    "writeback": _writeback_lines,
    "probes": _probe_lines,
    "followers": _follower_lines,
    "replication": _replication_lines,
    "targets": _target_lines,
}
"""How each section of the result is shown, by its key."""


def report_lines(result: dict[str, Any]) -> list[str]:
    """The whole text report of a finished result document, as ``journalstate bench`` prints it
    section by section while it measures."""
    rows = [Row(**row) for row in result["rows"]]
    lines = header_lines(result) + table_lines(rows, result["skipped"])
    for section in SECTIONS:
        lines += SECTIONS[section](result[section])
    return lines + footer_lines(result)


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
