"""Where commit mode's time goes: `python -m journalstate.bench.commitmode DIR`.

What belongs here: the measurements behind docs/benchmarks.md's "Commit mode" section, each
interleaved in one process. (a) The first lap of the ring against later laps: a new store
(journal blocks preallocated, unwritten extents), one whose journal was overwritten with
zeros before it opened, and one whose ring has lapped once, in alternating chunks of
commits. (b) The commits whose msync covers two pages, and the share the end marker alone
pushes there. (c) A commit's time split into the msync and the rest, beside the mmap + msync
floor. (d) Group commit: one thread against N, with the commits per msync and how much of the
time an msync is in flight; ``--queued`` adds the commit point where every thread queues on
the sync lock (the design before followers), for comparison, and ``--model-us`` replaces
msync with a sleep of that many microseconds (the GIL released, as msync releases it) to take
the disk's noise out.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import mmap
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from typing import Any

import journalstate as js
from journalstate import _chain, _io
from journalstate._tempfiles import write_pages
from journalstate.bench.base import BLOBS, UPDATE, Small, small
from journalstate.bench.compare import _threaded

PAGE = mmap.PAGESIZE
MARKER = 48
clock = time.perf_counter_ns


class _Msyncs:
    """Wraps the store's msync (``_io._MSYNC``) to time each call; restores it on exit."""

    def __init__(self, model_us: int | None) -> None:
        self.real = _io._MSYNC
        self.last_ns = 0
        self.last_pages = 0
        self.busy_ns = 0
        if model_us is not None:
            libc = ctypes.CDLL(None)
            usleep = libc.usleep
            usleep.argtypes = [ctypes.c_uint]

            def model(address: int, length: int, flags: int) -> int:
                usleep(model_us)
                return 0

            self.real = model

    def __call__(self, address: int, length: int, flags: int) -> int:
        t0 = clock()
        assert self.real is not None
        result = self.real(address, length, flags)
        self.last_ns = clock() - t0
        self.busy_ns += self.last_ns
        self.last_pages = (address % PAGE + length + PAGE - 1) // PAGE
        return result

    @contextlib.contextmanager
    def installed(self) -> Iterator[_Msyncs]:
        saved = _io._MSYNC
        _io._MSYNC = self
        try:
            yield self
        finally:
            _io._MSYNC = saved


def _p50_us(values: list[int]) -> float:
    return statistics.median(values) / 1e3 if values else float("nan")


def _store(directory: str, name: str, *, zeroed: bool, lapped: bool) -> js.Store[Small]:
    path = os.path.join(directory, name)
    js.open(path, Small, create=True).close()
    if zeroed:  # the journal's extents written (zeros, a page at a time) before it opens
        fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
        try:
            size = os.fstat(fd).st_size
            start = size - (1 << 20)  # the default journal is the file's last MiB
            write_pages(fd, bytes(1 << 20), start)
            os.fsync(fd)
        finally:
            os.close(fd)
    store = js.open(path, Small, durability="commit")
    if lapped:
        first, i = store._head[0], 0
        while store._head[0] - first < store._journal_size + PAGE:
            store.commit(small(i))
            i += 1
    return store


def first_lap(directory: str, rounds: int, msyncs: _Msyncs) -> list[str]:
    """(a), (b) and (c): fresh, zeroed and lapped stores and the floor, in alternating chunks."""
    lat: dict[str, list[int]] = {}
    sync: dict[str, list[int]] = {}
    pairs: dict[str, list[float]] = {"fallocate": [], "zeroed": []}
    pages = {"one": 0, "two, record": 0, "two, marker": 0}
    by_pages: dict[str, list[int]] = {k: [] for k in pages}
    fd = os.open(os.path.join(directory, "floor"), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    os.posix_fallocate(fd, 0, PAGE)
    floor = mmap.mmap(fd, PAGE, flags=mmap.MAP_SHARED)
    process = js.open(os.path.join(directory, "process.jst"), Small, durability="process")

    def floor_op(i: int) -> None:
        UPDATE.pack_into(floor, 0, i, i * 0.5, 100, BLOBS[i & 255])
        floor.flush(0, PAGE)

    try:
        for rnd in range(rounds):
            stores = {
                "fallocate": _store(directory, f"f{rnd}.jst", zeroed=False, lapped=False),
                "zeroed": _store(directory, f"z{rnd}.jst", zeroed=True, lapped=False),
                "lapped": _store(directory, f"l{rnd}.jst", zeroed=False, lapped=True),
            }
            fresh = stores["fallocate"]
            start, ring, chunk = fresh._head[0], fresh._journal_size, 0
            while fresh._head[0] - start < ring - 2 * PAGE:
                names = [*stores, "floor", "process"]
                medians: dict[str, float] = {}
                for name in names if chunk % 2 == 0 else names[::-1]:
                    times, syncs = lat.setdefault(name, []), sync.setdefault(name, [])
                    got: list[int] = []
                    for k in range(40):
                        i = chunk * 40 + k
                        if name == "floor":
                            t0 = clock()
                            floor_op(i)
                            got.append(clock() - t0)
                            continue
                        if name == "process":
                            t0 = clock()
                            process.commit(small(i))
                            got.append(clock() - t0)
                            continue
                        store = stores[name]
                        before = store._head[0]
                        t0 = clock()
                        store.commit(small(i))
                        got.append(clock() - t0)
                        syncs.append(msyncs.last_ns)
                        a, b = before % ring, store._head[0] % ring
                        if name != "lapped" and b > a:
                            record = (b - 1) // PAGE - a // PAGE + 1
                            whole = (b + MARKER - 1) // PAGE - a // PAGE + 1
                            kind = (
                                "one"
                                if whole == 1
                                else "two, record"
                                if record > 1
                                else "two, marker"
                            )
                            pages[kind] += 1
                            by_pages[kind].append(got[-1])
                    times += got
                    medians[name] = statistics.median(got)
                for name in pairs:
                    pairs[name].append(medians[name] / medians["lapped"])
                chunk += 1
            for store in stores.values():
                store.close()
            for name in ("f", "z", "l"):
                os.unlink(os.path.join(directory, f"{name}{rnd}.jst"))
    finally:
        process.close()
        floor.close()
        os.close(fd)
    out = ["(a) first lap of a new store's ring against a lapped ring (commit mode)"]
    out.append("                          commit p50    msync p50     rest p50   vs lapped")
    for name in ("fallocate", "zeroed", "lapped"):
        rest = [t - s for t, s in zip(lat[name], sync[name], strict=True)]
        ratio = f"{statistics.median(pairs[name]):.3f}x" if name in pairs else ""
        label = {"fallocate": "first lap, fallocate", "zeroed": "first lap, zeros"}.get(
            name, "later lap"
        )
        out.append(
            f"  {label:22s} {_p50_us(lat[name]):8.1f} us  {_p50_us(sync[name]):8.1f} us"
            f"  {_p50_us(rest):8.1f} us  {ratio:>9s}"
        )
    out.append("  (vs lapped: median over chunks of 40 commits of p50 / the lapped p50)")
    total = sum(pages.values())
    out.append("(b) pages each msync covers, first laps")
    for kind, n in pages.items():
        out.append(
            f"  {kind:12s} {n:7,d} commits ({n / total * 100:4.1f}%)"
            f"  commit p50 {_p50_us(by_pages[kind]):7.1f} us"
        )
    out.append("(c) beside the floor (same chunks)")
    floor_p50, lapped_p50 = _p50_us(lat["floor"]), _p50_us(lat["lapped"])
    out.append(f"  floor mmap + msync p50 {floor_p50:7.1f} us; commit {lapped_p50:7.1f} us")
    out.append(
        f"  commit / floor throughput {floor_p50 / lapped_p50:.2f}x;"
        f" process-mode commit p50 {_p50_us(lat['process']):.1f} us"
    )
    return out


def _queued_commit_point(self: Any, seq: int) -> None:
    """The commit point with every thread queued on the sync lock (for comparison only)."""
    with self._sync_lock:
        with self._lock:
            synced = self._synced
            if synced.seq >= seq:
                return
            self._check_open()
            tail, last = self._head[0], self._head[1]
            start = max(synced.position, self._base.position)
        self._sync_range(start, tail)
        with self._lock:
            self._mark_synced(tail, last)


def group_commit(
    directory: str, rounds: int, seconds: float, threads: int, queued: bool, msyncs: _Msyncs
) -> list[str]:
    """(d) One thread against ``threads``, in interleaved rounds (transactions, as the bench)."""
    followers = _chain.Chain._commit_point
    designs: dict[str, Callable[[Any, int], None]] = {"followers": followers}
    if queued:
        designs["queued"] = _queued_commit_point
    store = js.open(os.path.join(directory, "threads.jst"), Small, durability="commit")
    cases = [(d, n) for d in designs for n in (1, threads)]
    found: dict[tuple[str, int], list[tuple[float, float, float]]] = {c: [] for c in cases}
    try:
        for rnd in range(rounds):
            for design, n in cases if rnd % 2 == 0 else cases[::-1]:
                _chain.Chain._commit_point = designs[design]  # type: ignore[method-assign, assignment]
                syncs, msyncs.busy_ns = store.stats.journal_syncs, 0
                count, ns, _ = _threaded(store, n)(seconds, (rnd + 1) << 40)
                syncs = max(1, store.stats.journal_syncs - syncs)
                found[(design, n)].append((count / ns * 1e9, count / syncs, msyncs.busy_ns / ns))
    finally:
        _chain.Chain._commit_point = followers  # type: ignore[method-assign]
        store.close()
    out = [f"(d) group commit: 1 thread against {threads}, {rounds} rounds of {seconds} s"]
    out.append("  design     threads  commits/s  vs 1 thr  c/msync  msync in flight")
    for design, n in cases:
        rows = found[(design, n)]
        rate = statistics.median(r[0] for r in rows)
        one = statistics.median(r[0] for r in found[(design, 1)])
        out.append(
            f"  {design:10s} {n:7d} {rate:10,.0f} {rate / one:8.2f}x"
            f" {statistics.median(r[1] for r in rows):8.2f}"
            f" {statistics.median(r[2] for r in rows) * 100:15.0f}%"
        )
    return out


def main(argv: list[str] | None = None) -> int:
    """Run the measurements in a temporary directory inside DIR; print the report."""
    parser = argparse.ArgumentParser(prog="python -m journalstate.bench.commitmode")
    parser.add_argument("dir", help="a directory on the disk to measure")
    parser.add_argument("--rounds", type=int, default=3, help="stores per first-lap test")
    parser.add_argument("--seconds", type=float, default=1.0, help="per group-commit run")
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--queued", action="store_true", help="also the queued design")
    parser.add_argument("--model-us", type=int, default=None, help="sleep instead of msync")
    parser.add_argument("--only", choices=("lap", "group"), default=None)
    args = parser.parse_args(argv)
    if not os.path.isdir(args.dir):
        print(f"{args.dir}: no such directory")
        return 2
    if _io._MSYNC is None:
        print("no msync through ctypes here: nothing to measure")
        return 2
    work = tempfile.mkdtemp(prefix="journalstate-commitmode-", dir=args.dir)
    try:
        with open("/proc/loadavg", encoding="ascii") as f:
            print("load", " ".join(f.read().split()[:3]))
        msyncs = _Msyncs(None)
        if args.only != "group":
            with msyncs.installed():
                print("\n".join(first_lap(work, max(1, args.rounds), msyncs)))
        if args.only != "lap":
            model = _Msyncs(args.model_us)
            with model.installed():
                lines = group_commit(
                    work,
                    2 * max(1, args.rounds),
                    args.seconds,
                    max(2, args.threads),
                    args.queued,
                    model,
                )
            if args.model_us is not None:
                lines[0] += f" (msync modelled: {args.model_us} us sleep)"
            print("\n".join(lines))
        with open("/proc/loadavg", encoding="ascii") as f:
            print("load at the end", " ".join(f.read().split()[:3]))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
