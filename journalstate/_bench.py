"""`journalstate bench`: what each durability mode costs on this disk, next to its floors and peers.

Belongs here: the benchmark cases (journalstate in every durability mode; the raw floors an mmap
store without sync, with one msync per commit, and pwrite + fdatasync; optional peers sqlite3,
LMDB and the rename idiom), the timing loop, the large-state, recovery, checkpoint and
dirty-page writeback measurements, a few probes of the kernel (MAP_SYNC, MS_ASYNC,
preallocation), and the table, JSON document and plot that report them.

Nothing here prints by itself: every line goes to the ``out`` stream :func:`run` is given, and
:func:`run` returns an exit code. lmdb and matplotlib are optional: imported only when used,
and their absence is reported in the output, never an error. Targets are evaluated and
reported, never asserted.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import importlib
import json
import mmap
import os
import platform
import shutil
import statistics
import struct
import tempfile
import threading
import time
from array import array
from collections.abc import Callable, Iterator
from typing import Annotated, Any, TextIO

import attrs

import journalstate as js
from journalstate._bench_report import (
    SECTIONS,
    footer_lines,
    header_lines,
    plot,
    table_lines,
    targets,
)

Op = Callable[[int], None]
"""One commit of update number ``i``."""

_PAGE = mmap.PAGESIZE
_UPDATE = struct.Struct("<QdI100s")
"""The floors' in-place image of the update: u64, f64, then a Bytes(100) as u32 length + data."""
_BLOBS = tuple(bytes([k]) * 100 for k in range(256))
"""100-byte values; update ``i`` uses ``_BLOBS[i & 255]``, so consecutive commits differ."""
# Linux values (<asm-generic/mman-common.h>, <linux/mman.h>); Python 3.11's mmap lacks the last two.
_MS_ASYNC = 1
_MAP_SHARED_VALIDATE = 0x03
_MAP_SYNC = 0x80000


@attrs.frozen
class Small:
    """The benchmark's state: every commit changes all three fields."""

    n: js.U64 = 0
    x: js.F64 = 0.0
    blob: Annotated[bytes, js.Bytes(100)] = b""


def _small(i: int) -> Small:
    return Small(n=i, x=i * 0.5, blob=_BLOBS[i & 255])


def _large_class(size: int) -> type[Any]:
    """``Small`` plus a ``big`` Bytes field of ``size`` bytes that commits never change."""
    field: Any = attrs.field  # its overloads want a class as type=, not an Annotated
    return attrs.make_class(
        "Large",
        {
            "n": field(type=js.U64, default=0),
            "x": field(type=js.F64, default=0.0),
            "blob": field(type=Annotated[bytes, js.Bytes(100)], default=b""),
            "big": field(type=Annotated[bytes, js.Bytes(size)], default=b""),
        },
        frozen=True,
    )


@attrs.define
class Config:
    """What to measure and for how long (built from the command line by :func:`run`)."""

    directory: str
    seconds: float = 1.0
    repeat: int = 5
    warmup: float = 0.2
    threads: int = 8
    large_bytes: int = 64 << 20
    recovery_journal: int = 16 << 20
    writeback_seconds: float = 5.0
    peers: bool = False


@attrs.define
class Row:
    """One line of the comparison table."""

    key: str
    label: str
    group: str
    """"floor", "journalstate" or "peer"."""
    commits_per_s: float
    p50_us: float
    p99_us: float
    runs: list[float]
    """commits/s of each repetition; ``commits_per_s`` is their median."""
    commits: int
    floor: str | None = None
    ratio_to_floor: float | None = None
    commits_per_msync: float | None = None
    checkpoints: int | None = None
    note: str = ""


# --- timing ------------------------------------------------------------------------------------


def _loop(op: Op, seconds: float, first: int) -> tuple[int, int, array[int]]:
    """Run ``op(first), op(first + 1), ...`` for ``seconds``: (count, elapsed ns, latencies)."""
    clock = time.perf_counter_ns
    lat: array[int] = array("q")
    append = lat.append
    i = first
    start = t0 = clock()
    deadline = start + int(seconds * 1e9)
    while True:
        op(i)
        t1 = clock()
        append(t1 - t0)
        i += 1
        if t1 >= deadline:
            return i - first, t1 - start, lat
        t0 = t1


def _percentiles(lat: array[int]) -> tuple[float, float]:
    s = sorted(lat)
    return float(s[len(s) // 2]), float(s[min(len(s) - 1, int(len(s) * 0.99))])


Runner = Callable[[float, int], "tuple[int, int, array[int]]"]
"""Commits for ``seconds`` from update ``first`` on: (count, elapsed ns, latencies), as _loop."""


@attrs.define
class _Series:
    """The timed runs of one case: one rate and two percentiles per run."""

    runs: list[float] = attrs.Factory(list)
    p50s: list[float] = attrs.Factory(list)
    p99s: list[float] = attrs.Factory(list)
    commits: int = 0

    def add(self, n: int, ns: int, lat: array[int]) -> None:
        self.runs.append(n * 1e9 / ns)
        p50, p99 = _percentiles(lat)
        self.p50s.append(p50)
        self.p99s.append(p99)
        self.commits += n

    @property
    def rate(self) -> float:
        return statistics.median(self.runs)

    @property
    def p50_us(self) -> float:
        return statistics.median(self.p50s) / 1e3

    @property
    def p99_us(self) -> float:
        return statistics.median(self.p99s) / 1e3


def _measure(op: Op, cfg: Config, *, repeat: int) -> _Series:
    """A warm-up, then ``repeat`` timed runs of ``op`` back to back."""
    i = _loop(op, cfg.warmup, 0)[0]
    series = _Series()
    for _ in range(repeat):
        n, ns, lat = _loop(op, cfg.seconds, i)
        series.add(n, ns, lat)
        i += n
    return series


# --- the comparison ----------------------------------------------------------------------------


@attrs.define
class _Case:
    """One row of the comparison while it is being measured."""

    key: str
    label: str
    group: str
    run: Runner
    store: js.Store[Small] | None = None
    floor: str | None = None
    series: _Series = attrs.Factory(_Series)
    syncs: int = 0
    checkpoints: int = 0

    def timed(self, seconds: float) -> None:
        """One timed run; a store's msyncs and checkpoints are counted inside it only."""
        stats = None if self.store is None else attrs.evolve(self.store.stats)
        n, ns, lat = self.run(seconds, (len(self.series.runs) + 1) << 40)
        self.series.add(n, ns, lat)
        if self.store is not None and stats is not None:
            self.syncs += self.store.stats.journal_syncs - stats.journal_syncs
            self.checkpoints += self.store.stats.checkpoints - stats.checkpoints
            if self.store.durability is js.Durability.INTERVAL:
                self.store.flush()  # untimed: the flusher must not sync during another case

    def row(self) -> Row:
        s, js_row = self.series, self.store is not None
        return Row(
            self.key,
            self.label,
            self.group,
            s.rate,
            s.p50_us,
            s.p99_us,
            s.runs,
            s.commits,
            floor=self.floor,
            commits_per_msync=s.commits / self.syncs if self.syncs else None,
            checkpoints=self.checkpoints if js_row else None,
            note="no msync" if js_row and not self.syncs else "",
        )


def _looped(op: Op) -> Runner:
    return lambda seconds, first: _loop(op, seconds, first)


def _committer(store: js.Store[Small]) -> Op:
    commit = store.commit

    def op(i: int) -> None:
        commit(_small(i))

    return op


def _threaded(store: js.Store[Small], threads: int) -> Runner:
    """``threads`` threads, each committing its own updates in transactions."""
    clock = time.perf_counter_ns

    def work(lat: array[int], first: int, barrier: threading.Barrier, deadline: list[int]) -> None:
        i = first
        barrier.wait()
        t0 = clock()
        while True:
            with store.transaction() as draft:
                draft.n, draft.x, draft.blob = i, i * 0.5, _BLOBS[i & 255]
            t1 = clock()
            lat.append(t1 - t0)
            i += 1
            if t1 >= deadline[0]:
                return
            t0 = t1

    def run(seconds: float, first: int) -> tuple[int, int, array[int]]:
        lats: list[array[int]] = [array("q") for _ in range(threads)]
        barrier, deadline = threading.Barrier(threads + 1), [0]
        workers = [
            threading.Thread(target=work, args=(lats[k], first + (k << 32), barrier, deadline))
            for k in range(threads)
        ]
        for t in workers:
            t.start()
        start = clock()
        deadline[0] = start + int(seconds * 1e9)
        barrier.wait()
        for t in workers:
            t.join()
        elapsed = clock() - start
        merged: array[int] = array("q")
        for lat in lats:
            merged.extend(lat)
        return len(merged), elapsed, merged

    return run


@contextlib.contextmanager
def _page_file(path: str) -> Iterator[int]:
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
    try:
        os.posix_fallocate(fd, 0, _PAGE)
        os.fsync(fd)
        yield fd
    finally:
        os.close(fd)


@contextlib.contextmanager
def _floor_mmap(cfg: Config, sync: bool) -> Iterator[Op]:
    with _page_file(os.path.join(cfg.directory, f"floor-mmap-{sync}.bin")) as fd:
        mm = mmap.mmap(fd, _PAGE, flags=mmap.MAP_SHARED)
        pack = _UPDATE.pack_into

        def op(i: int) -> None:
            pack(mm, 0, i, i * 0.5, 100, _BLOBS[i & 255])
            if sync:
                mm.flush(0, _PAGE)  # msync(MS_SYNC)

        try:
            yield op
        finally:
            mm.close()


@contextlib.contextmanager
def _floor_fdatasync(cfg: Config, path: str | None = None) -> Iterator[Op]:
    with _page_file(path or os.path.join(cfg.directory, "floor-pwrite.bin")) as fd:
        pack = _UPDATE.pack

        def op(i: int) -> None:
            os.pwrite(fd, pack(i, i * 0.5, 100, _BLOBS[i & 255]), 0)
            os.fdatasync(fd)

        yield op


@contextlib.contextmanager
def _sqlite(cfg: Config, synchronous: str) -> Iterator[Op]:
    import sqlite3

    path = os.path.join(cfg.directory, f"sqlite-{synchronous}.db")
    conn = sqlite3.connect(path, isolation_level=None)  # autocommit: one transaction per UPDATE
    try:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute(f"PRAGMA synchronous={synchronous}")
        conn.execute("CREATE TABLE s (id INTEGER PRIMARY KEY, n INTEGER, x REAL, blob BLOB)")
        conn.execute("INSERT INTO s VALUES (1, 0, 0.0, x'')")
        execute = conn.execute
        sql = "UPDATE s SET n = ?, x = ?, blob = ? WHERE id = 1"

        def op(i: int) -> None:
            execute(sql, (i & 0x7FFFFFFFFFFFFFFF, i * 0.5, _BLOBS[i & 255]))

        yield op
    finally:
        conn.close()


@contextlib.contextmanager
def _lmdb(cfg: Config, sync: bool) -> Iterator[Op]:
    lmdb: Any = importlib.import_module("lmdb")
    path = os.path.join(cfg.directory, f"lmdb-{sync}")
    env = lmdb.open(path, map_size=64 << 20, sync=sync, metasync=sync)
    pack = _UPDATE.pack

    def op(i: int) -> None:
        with env.begin(write=True) as txn:
            txn.put(b"state", pack(i, i * 0.5, 100, _BLOBS[i & 255]))

    try:
        yield op
    finally:
        env.close()


@contextlib.contextmanager
def _rename_idiom(cfg: Config) -> Iterator[Op]:
    """Write a temporary file, fsync it, rename it over the state file, fsync the directory."""
    directory = os.path.join(cfg.directory, "rename")
    os.mkdir(directory)
    dfd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    path, tmp = os.path.join(directory, "state"), os.path.join(directory, "state.tmp")
    pack = _UPDATE.pack

    def op(i: int) -> None:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
        try:
            os.write(fd, pack(i, i * 0.5, 100, _BLOBS[i & 255]))
            os.fsync(fd)
        finally:
            os.close(fd)
        os.rename(tmp, path)
        os.fsync(dfd)

    try:
        yield op
    finally:
        os.close(dfd)


def _open_cases(
    cfg: Config, stack: contextlib.ExitStack, skipped: list[dict[str, str]]
) -> list[_Case]:
    """Open every case of the comparison (all stay open: the runs are interleaved)."""

    def op_case(
        key: str, label: str, group: str, cm: contextlib.AbstractContextManager[Op]
    ) -> None:
        cases.append(_Case(key, label, group, _looped(stack.enter_context(cm))))

    def store(mode: str, name: str) -> js.Store[Small]:
        path = os.path.join(cfg.directory, name)
        return stack.enter_context(js.open(path, Small, durability=mode))

    cases: list[_Case] = []
    op_case("floor_mmap", "floor mmap, no sync", "floor", _floor_mmap(cfg, False))
    op_case("floor_msync", "floor mmap + msync", "floor", _floor_mmap(cfg, True))
    op_case("floor_fdatasync", "floor pwrite + fdatasync", "floor", _floor_fdatasync(cfg))
    for mode in ("process", "interval", "commit"):
        s = store(mode, f"js-{mode}.jst")
        floor = "floor_msync" if mode == "commit" else "floor_mmap"
        label = f"journalstate {mode}"
        cases.append(_Case(f"js_{mode}", label, "journalstate", _looped(_committer(s)), s, floor))
    s = store("commit", "js-threads.jst")
    label = f"journalstate commit, {cfg.threads} thr"
    run = _threaded(s, cfg.threads)
    cases.append(_Case("js_commit_threads", label, "journalstate", run, s, "floor_msync"))
    if not cfg.peers:
        return cases
    for level in ("OFF", "NORMAL", "FULL"):
        key, label = f"sqlite_{level.lower()}", f"sqlite WAL sync={level}"
        op_case(key, label, "peer", _sqlite(cfg, level))
    for sync in (True, False):
        key, label = f"lmdb_{'' if sync else 'no'}sync", f"lmdb {'' if sync else 'no'}sync"
        try:
            importlib.import_module("lmdb")
        except ImportError:
            note = "lmdb not installed (pip install lmdb)"
            skipped.append({"key": key, "label": label, "note": note})
            continue
        op_case(key, label, "peer", _lmdb(cfg, sync))
    op_case("rename", "tmp+fsync+rename+fsync dir", "peer", _rename_idiom(cfg))
    return cases


def _rows(cfg: Config, skipped: list[dict[str, str]]) -> list[Row]:
    """Every row of the comparison, measured in rounds: one run of each case per round.

    Interleaving spreads slow drifts of the machine (other I/O, thermal, the host) over all
    rows alike, so the ratios between rows are steadier than the rates themselves. Odd
    rounds go in reverse order.
    """
    with contextlib.ExitStack() as stack:
        cases = _open_cases(cfg, stack, skipped)
        for case in cases:
            case.run(cfg.warmup, 0)
            if case.store is not None:
                case.store.flush()
        for rnd in range(cfg.repeat):
            for case in cases if rnd % 2 == 0 else cases[::-1]:
                case.timed(cfg.seconds)
        rows = [case.row() for case in cases]
    floors = {row.key: row for row in rows if row.group == "floor"}
    for row in rows:
        if row.floor is not None:
            row.ratio_to_floor = row.commits_per_s / floors[row.floor].commits_per_s
    return rows


# --- large state, checkpoints, recovery ---------------------------------------------------------


_SIZE_JOURNAL = 16 << 20
"""Journal size of both stores in the state-size comparison."""


def _size_series(cfg: Config, mode: str, states: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Commit latency for each initial state in ``states``, in interleaved rounds.

    Every commit is the same small change (``n``, ``x``, ``blob``) made with attrs.evolve, so
    a large field is carried by reference and never changes.
    """
    with contextlib.ExitStack() as stack:
        ops: dict[str, Op] = {}
        stores: dict[str, js.Store[Any]] = {}
        opened: dict[str, float] = {}
        for kind, initial in states.items():
            path = os.path.join(cfg.directory, f"size-{kind}-{mode}.jst")
            stack.callback(os.unlink, path)  # registered first: runs after the close
            start = time.perf_counter()
            store: js.Store[Any] = stack.enter_context(
                js.open(
                    path,
                    type(initial),
                    durability=mode,
                    journal_size=_SIZE_JOURNAL,
                    initial=initial,
                )
            )
            opened[kind] = time.perf_counter() - start
            stores[kind], ops[kind] = store, _evolver(store)
            _loop(ops[kind], cfg.warmup, 0)
        series = {kind: _Series() for kind in states}
        checkpoints = {kind: stores[kind].stats.checkpoints for kind in states}
        kinds = list(states)
        for rnd in range(cfg.repeat):
            for kind in kinds if rnd % 2 == 0 else kinds[::-1]:
                series[kind].add(*_loop(ops[kind], cfg.seconds, (rnd + 1) << 40))
        return {
            kind: {
                "commits_per_s": series[kind].rate,
                "p50_us": series[kind].p50_us,
                "p99_us": series[kind].p99_us,
                "checkpoints": stores[kind].stats.checkpoints - checkpoints[kind],
                "open_s": opened[kind],
            }
            for kind in states
        }


def _evolver(store: js.Store[Any]) -> Op:
    commit, evolve = store.commit, attrs.evolve

    def op(i: int) -> None:
        commit(evolve(store.state, n=i, x=i * 0.5, blob=_BLOBS[i & 255]))

    return op


def _large_state(cfg: Config) -> dict[str, Any]:
    """Commit latency with a ``cfg.large_bytes`` state vs the small one, same journal size."""
    large = _large_class(cfg.large_bytes)(big=b"\xa5" * cfg.large_bytes)
    result: dict[str, Any] = {"state_bytes": cfg.large_bytes, "journal_size": _SIZE_JOURNAL}
    for mode in ("process", "commit"):
        found = _size_series(cfg, mode, {"small": Small(), "large": large})
        small, big = found["small"], found["large"]
        result[mode] = {
            **found,
            "p50_ratio": big["p50_us"] / small["p50_us"],
            "throughput_ratio": big["commits_per_s"] / small["commits_per_s"],
        }
    return result


def _checkpoints(cfg: Config) -> dict[str, Any]:
    """Time ``store.checkpoint()`` (one change committed before each) for both state sizes."""
    large_cls = _large_class(cfg.large_bytes)
    result: dict[str, Any] = {}
    for kind, cls, reps in (("small", Small, 20), ("large", large_cls, 5)):
        path = os.path.join(cfg.directory, f"checkpoint-{kind}.jst")
        times: list[float] = []
        with js.open(path, cls, durability="process") as store:
            for i in range(reps):
                store.commit(attrs.evolve(store.state, n=i + 1))
                start = time.perf_counter()
                store.checkpoint()
                times.append(time.perf_counter() - start)
            size = store.header.state_size
        os.unlink(path)
        median = statistics.median(times)
        result[kind] = {
            "state_bytes": size,
            "ms": median * 1e3,
            "runs_ms": [t * 1e3 for t in times],
            "mb_per_s": size / median / 1e6,
        }
    return result


def _recovery(cfg: Config) -> dict[str, Any]:
    """Open (read-only) a process-death image of a store whose journal is nearly full."""
    path = os.path.join(cfg.directory, "recovery.jst")
    copy = path + ".crash"
    store = js.open(
        path,
        Small,
        durability="process",
        journal_size=cfg.recovery_journal,
        checkpoint_threshold=1.0,
    )
    try:
        checkpoints, i = store.stats.checkpoints, 0
        while store.journal_fill < 0.98 and store.stats.checkpoints == checkpoints:
            i += 1
            store.commit(_small(i))
        last = store.state
        shutil.copyfile(path, copy)  # what a process death leaves: the page cache, no close
    finally:
        store.close()

    def timed(p: str) -> tuple[list[float], js.RecoveryReport, bool]:
        times: list[float] = []
        for _ in range(max(3, cfg.repeat)):
            start = time.perf_counter()
            with js.open(p, Small, readonly=True) as s:
                times.append(time.perf_counter() - start)
                report, state = s.recovery, s.state
        return times, report, state == last

    full, report, matches = timed(copy)
    # Closed: checkpointed, nothing to replay, but the ring still holds the lap of old records.
    closed, _, _ = timed(path)
    t_full = statistics.median(full)
    os.unlink(copy)
    os.unlink(path)
    return {
        "journal_size": cfg.recovery_journal,
        "records_replayed": report.records_replayed,
        "bytes_replayed": report.bytes_replayed,
        "open_ms": t_full * 1e3,
        "open_closed_ms": statistics.median(closed) * 1e3,
        "mb_per_s": report.bytes_replayed / t_full / 1e6,
        "state_matches": matches,
    }


# --- dirty-page writeback ----------------------------------------------------------------------


def _device_stat(directory: str) -> str | None:
    """The /sys block-device stat file of the file system holding ``directory``, if any."""
    st = os.stat(directory)
    path = f"/sys/dev/block/{os.major(st.st_dev)}:{os.minor(st.st_dev)}/stat"
    return path if os.path.exists(path) else None


def _counters(device: str | None) -> dict[str, int | None]:
    """I/O counters that say what reached (or will reach) the disk; None where unreadable."""
    found: dict[str, int | None] = dict.fromkeys(
        ("self_write_bytes", "nr_dirtied", "nr_written", "pgpgout_kib", "device_write_bytes")
    )
    with contextlib.suppress(OSError, ValueError), open("/proc/self/io") as f:
        for line in f:
            name, _, value = line.partition(":")
            if name == "write_bytes":
                found["self_write_bytes"] = int(value)
    with contextlib.suppress(OSError, ValueError), open("/proc/vmstat") as f:
        names = {"nr_dirtied": "nr_dirtied", "nr_written": "nr_written", "pgpgout": "pgpgout_kib"}
        for line in f:
            name, _, value = line.partition(" ")
            if name in names:
                found[names[name]] = int(value)
    if device is not None:
        with contextlib.suppress(OSError, ValueError, IndexError), open(device) as f:
            found["device_write_bytes"] = int(f.read().split()[6]) * 512  # sectors written
    return found


def _delta(a: dict[str, int | None], b: dict[str, int | None]) -> dict[str, int | None]:
    found: dict[str, int | None] = {}
    for k, old in a.items():
        new = b[k]
        found[k] = None if old is None or new is None else new - old
    return found


@contextlib.contextmanager
def _writeback_case(
    cfg: Config, key: str, path: str
) -> Iterator[tuple[Op | None, js.Store[Small] | None]]:
    """The committing function (None: stay idle) and the store, if the case has one."""
    if key.startswith("js_"):
        with js.open(path, Small, durability=key[3:]) as store:
            yield _committer(store), store
    elif key == "idle":
        with _page_file(path):
            yield None, None
    else:
        with _floor_fdatasync(cfg, path) as op:
            yield op, None


def _writeback_row(cfg: Config, key: str, label: str, device: str | None) -> dict[str, Any]:
    """Counters around ``cfg.writeback_seconds`` of commits (no warm-up: the first dirtying of
    each page counts), and again after an fsync of the file writes back what is still dirty."""
    path = os.path.join(cfg.directory, f"writeback-{key}.bin")
    with _writeback_case(cfg, key, path) as (op, store):
        first = store.stats.checkpoints if store else 0
        before = _counters(device)
        if op is None:
            time.sleep(cfg.writeback_seconds)
            n = 0
        else:
            n = _loop(op, cfg.writeback_seconds, 1 << 40)[0]
        during = _counters(device)
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        after = _counters(device)
        checkpoints = store.stats.checkpoints - first if store else 0
    os.unlink(path)
    return {
        "key": key,
        "label": label,
        "seconds": cfg.writeback_seconds,
        "commits": n,
        "checkpoints": checkpoints,
        "during": _delta(before, during),
        "after_fsync": _delta(before, after),
    }


def _writeback(cfg: Config) -> dict[str, Any]:
    """Commits to the same pages for a while: what reached the disk, vs pwrite + fdatasync.

    The vmstat and device counters are system-wide, so an idle row of the same length shows
    what the rest of the machine wrote meanwhile.
    """
    device = _device_stat(cfg.directory)
    cases = (
        ("idle", "idle (no commits)"),
        ("js_process", "journalstate process"),
        ("js_commit", "journalstate commit"),
        ("floor_fdatasync", "pwrite + fdatasync"),
    )
    return {
        "device_stat": device,
        "dirty_expire_centisecs": _read_int("/proc/sys/vm/dirty_expire_centisecs"),
        "dirty_writeback_centisecs": _read_int("/proc/sys/vm/dirty_writeback_centisecs"),
        "rows": [_writeback_row(cfg, key, label, device) for key, label in cases],
    }


# --- probes ------------------------------------------------------------------------------------


def _probes(cfg: Config) -> dict[str, Any]:
    """Small facts about this kernel and file system that docs/guarantees.md relies on."""
    found: dict[str, Any] = {}
    path = os.path.join(cfg.directory, "probe.bin")
    with _page_file(path) as fd:
        try:
            mmap.mmap(fd, _PAGE, flags=_MAP_SHARED_VALIDATE | _MAP_SYNC).close()
            found["map_sync"] = "accepted (DAX file system)"
        except OSError as e:
            found["map_sync"] = f"refused: {os.strerror(e.errno or 0)} (errno {e.errno})"
        found.update(_ms_async(fd, _device_stat(cfg.directory)))
        found.update(_gil_probe(fd, cfg.seconds / 2))
    os.unlink(path)
    store_path = os.path.join(cfg.directory, "probe.jst")
    js.open(store_path, Small).close()
    st = os.stat(store_path)
    found["store_bytes"] = st.st_size
    found["store_allocated_bytes"] = st.st_blocks * 512
    found["preallocated"] = st.st_blocks * 512 >= st.st_size
    os.unlink(store_path)
    return found


def _spin(seconds: float, beside: Callable[[], None] | None = None) -> tuple[int, int]:
    """Count a busy Python loop for ``seconds`` while another thread calls ``beside`` in a loop.

    Returns (loop iterations, calls of ``beside``).
    """
    stop, calls = threading.Event(), [0]

    def other() -> None:
        while not stop.is_set():
            assert beside is not None
            beside()
            calls[0] += 1

    thread = None if beside is None else threading.Thread(target=other)
    if thread is not None:
        thread.start()
    n, clock = 0, time.perf_counter
    end = clock() + seconds
    while True:  # at least one iteration, however late this thread gets the CPU
        n += 1
        if clock() >= end:
            break
    stop.set()
    if thread is not None:
        thread.join()
    return n, calls[0]


def _gil_probe(fd: int, seconds: float) -> dict[str, Any]:
    """Whether a sync call lets other Python threads run (progress near 1.0) or holds the GIL."""
    mm = mmap.mmap(fd, _PAGE, flags=mmap.MAP_SHARED)
    try:

        def flush() -> None:
            mm[0:8] = time.perf_counter_ns().to_bytes(8, "little")
            mm.flush(0, _PAGE)

        def fdatasync() -> None:
            os.pwrite(fd, time.perf_counter_ns().to_bytes(8, "little"), 0)
            os.fdatasync(fd)

        alone = _spin(seconds)[0]
        found: dict[str, Any] = {}
        for name, sync in (("mmap_flush", flush), ("fdatasync", fdatasync)):
            spins, calls = _spin(seconds, sync)
            found[f"gil_progress_{name}"] = spins / alone
            found[f"gil_syncs_per_s_{name}"] = calls / seconds
        return found
    finally:
        mm.close()


def _ms_async(fd: int, device: str | None) -> dict[str, Any]:
    """Time msync(MS_ASYNC) on a freshly dirtied page, and what the device wrote meanwhile."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        msync = libc.msync
    except (OSError, AttributeError) as e:
        return {"ms_async": f"not measured: {e}"}
    msync.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    mm = mmap.mmap(fd, _PAGE, flags=mmap.MAP_SHARED)
    anchor = ctypes.c_char.from_buffer(mm)
    try:
        address, n = ctypes.addressof(anchor), 20_000
        before = _counters(device)
        start = time.perf_counter_ns()
        for i in range(n):
            mm[0:8] = i.to_bytes(8, "little")
            if msync(address, _PAGE, _MS_ASYNC) != 0:
                return {"ms_async": f"failed: {os.strerror(ctypes.get_errno())}"}
        elapsed = time.perf_counter_ns() - start
        after = _counters(device)
        start = time.perf_counter_ns()
        for i in range(n):
            mm[0:8] = i.to_bytes(8, "little")
        bare = time.perf_counter_ns() - start
    finally:
        del anchor
        mm.close()
    idle = _counters(device)  # the device counter is system-wide: what others write meanwhile
    time.sleep(elapsed / 1e9)
    return {
        "ms_async_calls": n,
        "ms_async_ns": (elapsed - bare) / n,
        "ms_async_device_write_bytes": _delta(before, after)["device_write_bytes"],
        "ms_async_idle_device_write_bytes": _delta(idle, _counters(device))["device_write_bytes"],
    }


# --- the machine -------------------------------------------------------------------------------


def _read_int(path: str) -> int | None:
    try:
        with open(path) as f:
            return int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def _mount_of(directory: str) -> dict[str, str]:
    real, best = os.path.realpath(directory), {"mount": "?", "device": "?", "fstype": "?"}
    with contextlib.suppress(OSError), open("/proc/self/mounts") as f:
        for line in f:
            parts = line.split()
            if len(parts) < 4:
                continue
            point = parts[1].replace("\\040", " ")
            inside = real == point or real.startswith(point.rstrip("/") + "/")
            if inside and len(point) >= len(best["mount"].strip("?")):
                best = {"mount": point, "device": parts[0], "fstype": parts[2], "options": parts[3]}
    return best


def _machine(directory: str) -> dict[str, Any]:
    cpu = "?"
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                cpu = line.partition(":")[2].strip()
                break
    mem = None
    with contextlib.suppress(OSError, ValueError), open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemTotal:"):
                mem = int(line.split()[1]) * 1024
    st = os.stat(directory)
    rotational = _read_int(
        f"/sys/dev/block/{os.major(st.st_dev)}:{os.minor(st.st_dev)}/queue/rotational"
    )
    return {
        "cpu": cpu,
        "nproc": os.cpu_count(),
        "memory_bytes": mem,
        "kernel": platform.release(),
        "python": platform.python_version(),
        "journalstate": js.__version__,
        "filesystem": _mount_of(directory),
        "rotational": rotational,
        "loadavg_start": _loadavg(),
    }


def _loadavg() -> str | None:
    """The 1, 5 and 15 minute load averages: other work on the machine skews every number."""
    try:
        with open("/proc/loadavg") as f:
            return " ".join(f.read().split()[:3])
    except OSError:
        return None


# --- the command -------------------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the options of ``journalstate bench`` to ``parser``."""
    parser.add_argument(
        "dir",
        nargs="?",
        default=".",
        help="directory on the disk to measure (default: the current one); files go into a "
        "temporary subdirectory, removed at the end",
    )
    parser.add_argument("--quick", action="store_true", help="a few seconds instead of minutes")
    parser.add_argument(
        "--peers", action="store_true", help="also measure sqlite3, LMDB and the rename idiom"
    )
    parser.add_argument("--json", action="store_true", help="print one JSON document")
    parser.add_argument("--plot", metavar="FILE", help="draw commits/s into FILE.svg or FILE.png")
    parser.add_argument(
        "--threads", type=int, default=8, help="threads for the group-commit row (default 8)"
    )
    parser.add_argument(
        "--seconds", type=float, help="seconds per timed run (default 1, 0.2 with --quick)"
    )
    parser.add_argument("--repeat", type=int, help="timed runs per row (default 5, 3 with --quick)")
    parser.add_argument(
        "--large-mib", type=float, default=64, help="size of the large state in MiB (default 64)"
    )


def _config(args: argparse.Namespace, directory: str) -> Config:
    seconds = args.seconds if args.seconds is not None else 0.2 if args.quick else 1.0
    return Config(
        directory=directory,
        seconds=seconds,
        repeat=max(1, args.repeat if args.repeat is not None else 3 if args.quick else 5),
        warmup=min(0.2, seconds / 4),
        threads=max(1, args.threads),
        large_bytes=max(1, int(args.large_mib * 2**20)),
        recovery_journal=1 << 20 if args.quick else 16 << 20,
        writeback_seconds=5 * seconds,
        peers=args.peers,
    )


def run(args: argparse.Namespace, out: TextIO) -> int:
    """Run the benchmark in ``args.dir`` and report to ``out``; returns the exit code.

    Returns 2 (with one line on ``out``) when the directory does not exist, else 0.
    """
    if not os.path.isdir(args.dir):
        out.write(f"journalstate bench: {args.dir}: no such directory\n")
        return 2
    work = tempfile.mkdtemp(prefix="journalstate-bench-", dir=args.dir)

    def say(lines: list[str]) -> None:
        if not args.json:
            out.write("".join(line + "\n" for line in lines))
            out.flush()

    try:
        cfg = _config(args, work)
        result: dict[str, Any] = {
            "settings": {**attrs.asdict(cfg), "directory": os.path.abspath(args.dir)},
            "machine": _machine(work),
            "timer_overhead_ns": _percentiles(_loop(lambda i: None, 0.05, 0)[2])[0],
        }
        say(header_lines(result))
        skipped: list[dict[str, str]] = []
        rows = _rows(cfg, skipped)
        say(table_lines(rows, skipped))
        result["rows"] = [attrs.asdict(r) for r in rows]
        result["skipped"] = skipped
        for section, measure in (
            ("large_state", _large_state),
            ("checkpoint", _checkpoints),
            ("recovery", _recovery),
            ("writeback", _writeback),
            ("probes", _probes),
        ):
            result[section] = measure(cfg)
            say(SECTIONS[section](result[section]))
        result["machine"]["loadavg_end"] = _loadavg()
        result["targets"] = targets(result)
        say(SECTIONS["targets"](result["targets"]))
        if args.plot:
            note = plot(result, args.plot)
            result["plot"] = {"file": args.plot, "written": note is None, "note": note}
        say(footer_lines(result))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    if args.json:
        json.dump(result, out, indent=2)
        out.write("\n")
    return 0
