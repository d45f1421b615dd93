"""The comparison of `journalstate bench`: journalstate in each durability mode, floors and peers.

What belongs here: the cases of the comparison table (the raw floors: an mmap store without
sync, with one msync per commit, and pwrite + fdatasync; journalstate in every durability mode
and with threads; the optional peers sqlite3, LMDB and the rename idiom) and the interleaved
rounds that measure them. lmdb is optional: imported only when used, its absence reported.
"""

from __future__ import annotations

import contextlib
import importlib
import mmap
import os
import threading
import time
from array import array
from collections.abc import Iterator
from typing import Any

import attrs

import journalstate as js
from journalstate.bench.base import (
    BLOBS,
    PAGE,
    UPDATE,
    Config,
    Op,
    Row,
    Runner,
    Series,
    Small,
    loop,
    small,
)

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
    series: Series = attrs.Factory(Series)
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
    return lambda seconds, first: loop(op, seconds, first)


def committer(store: js.Store[Small]) -> Op:
    commit = store.commit

    def op(i: int) -> None:
        commit(small(i))

    return op


def transactor(store: js.Store[Small]) -> Op:
    transaction = store.transaction

    def op(i: int) -> None:
        with transaction() as draft:
            draft.n, draft.x, draft.blob = i, i * 0.5, BLOBS[i & 255]

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
                draft.n, draft.x, draft.blob = i, i * 0.5, BLOBS[i & 255]
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
def page_file(path: str) -> Iterator[int]:
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
    try:
        os.posix_fallocate(fd, 0, PAGE)
        os.fsync(fd)
        yield fd
    finally:
        os.close(fd)


@contextlib.contextmanager
def _floor_mmap(cfg: Config, sync: bool) -> Iterator[Op]:
    with page_file(os.path.join(cfg.directory, f"floor-mmap-{sync}.bin")) as fd:
        mm = mmap.mmap(fd, PAGE, flags=mmap.MAP_SHARED)
        pack = UPDATE.pack_into

        def op(i: int) -> None:
            pack(mm, 0, i, i * 0.5, 100, BLOBS[i & 255])
            if sync:
                mm.flush(0, PAGE)  # msync(MS_SYNC)

        try:
            yield op
        finally:
            mm.close()


@contextlib.contextmanager
def floor_fdatasync(cfg: Config, path: str | None = None) -> Iterator[Op]:
    with page_file(path or os.path.join(cfg.directory, "floor-pwrite.bin")) as fd:
        pack = UPDATE.pack

        def op(i: int) -> None:
            os.pwrite(fd, pack(i, i * 0.5, 100, BLOBS[i & 255]), 0)
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
            execute(sql, (i & 0x7FFFFFFFFFFFFFFF, i * 0.5, BLOBS[i & 255]))

        yield op
    finally:
        conn.close()


@contextlib.contextmanager
def _lmdb(cfg: Config, sync: bool) -> Iterator[Op]:
    lmdb: Any = importlib.import_module("lmdb")
    path = os.path.join(cfg.directory, f"lmdb-{sync}")
    env = lmdb.open(path, map_size=64 << 20, sync=sync, metasync=sync)
    pack = UPDATE.pack

    def op(i: int) -> None:
        with env.begin(write=True) as txn:
            txn.put(b"state", pack(i, i * 0.5, 100, BLOBS[i & 255]))

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
    pack = UPDATE.pack

    def op(i: int) -> None:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
        try:
            os.write(fd, pack(i, i * 0.5, 100, BLOBS[i & 255]))
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
    op_case("floor_fdatasync", "floor pwrite + fdatasync", "floor", floor_fdatasync(cfg))
    for mode in ("process", "interval", "commit"):
        s = store(mode, f"js-{mode}.jst")
        floor = "floor_msync" if mode == "commit" else "floor_mmap"
        label = f"journalstate {mode}"
        cases.append(_Case(f"js_{mode}", label, "journalstate", _looped(committer(s)), s, floor))
        if mode == "process":
            t = store(mode, "js-process-txn.jst")
            label = "journalstate process, txn"
            cases.append(
                _Case("js_process_txn", label, "journalstate", _looped(transactor(t)), t, floor)
            )
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


def measure_rows(cfg: Config, skipped: list[dict[str, str]]) -> list[Row]:
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
