"""Where commit mode's time goes: `python -m journalstate.bench.commitmode DIR`.

What belongs here: the measurements behind docs/benchmarks.md's "Commit mode" section, each
interleaved in one process. (a) The first lap of the ring against later laps: a new store
(journal blocks preallocated, unwritten extents), one whose journal was overwritten with
zeros before it opened, and one whose ring has lapped once, in alternating chunks of
commits. (b) The commits whose msync covers two pages, and the share the end marker alone
pushes there. (c) A commit's time split into the msync and the rest, beside the mmap + msync
floor. (d) Group commit: one thread against N, with the commits per msync and how much of the
time an msync is in flight. Only the public API is used: msync time is
``store.stats.journal_sync_ns``, a new store's journal position is its ``bytes_journaled``.
"""

from __future__ import annotations

import argparse
import mmap
import os
import shutil
import statistics
import sys
import tempfile
import threading
import time
from array import array

import journalstate as js
from journalstate._tempfiles import write_pages
from journalstate.bench.base import BLOBS, UPDATE, Runner, Small, small

PAGE = mmap.PAGESIZE
MARKER = 48
"""The end marker's bytes after each record (docs/format.md)."""
RING = 1 << 20
"""The journal of every store here: the default size, at the end of the file."""
clock = time.perf_counter_ns


def _p50_us(values: list[int]) -> float:
    return statistics.median(values) / 1e3 if values else float("nan")


def _store(directory: str, name: str, *, zeroed: bool, lapped: bool) -> js.Store[Small]:
    path = os.path.join(directory, name)
    js.open(path, Small, create=True, journal_size=RING).close()
    if zeroed:  # the journal's extents written (zeros, a page at a time) before it opens
        fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
        try:
            size = os.fstat(fd).st_size
            write_pages(fd, bytes(RING), size - RING)  # the journal is the file's end
            os.fsync(fd)
        finally:
            os.close(fd)
    store = js.open(path, Small, durability="commit")
    i = 0
    while lapped and store.stats.bytes_journaled < RING + PAGE:
        store.commit(small(i))
        i += 1
    return store


def first_lap(directory: str, rounds: int) -> list[str]:
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
            fresh, chunk = stores["fallocate"], 0
            # A new store's journal starts at position 0: its tail is the bytes journaled.
            while fresh.stats.bytes_journaled < RING - 2 * PAGE:
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
                        stats = store.stats
                        before, synced = stats.bytes_journaled, stats.journal_sync_ns
                        t0 = clock()
                        store.commit(small(i))
                        got.append(clock() - t0)
                        syncs.append(stats.journal_sync_ns - synced)
                        a, b = before % RING, stats.bytes_journaled % RING
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
        f"  floor p50 / commit p50 {floor_p50 / lapped_p50:.2f}x;"
        f" process-mode commit p50 {_p50_us(lat['process']):.1f} us"
    )
    return out


def threaded(store: js.Store[Small], threads: int) -> Runner:
    """``threads`` threads, each committing its own updates in transactions (as the bench)."""

    def work(counts: list[int], first: int, barrier: threading.Barrier, end: int) -> None:
        i = first
        barrier.wait()
        while clock() < end:
            with store.transaction() as draft:
                draft.n, draft.x, draft.blob = i, i * 0.5, BLOBS[i & 255]
            i += 1
        counts.append(i - first)

    def run(seconds: float, first: int) -> tuple[int, int, array[int]]:
        counts: list[int] = []
        barrier = threading.Barrier(threads + 1)
        start = clock()
        end = start + int(seconds * 1e9)
        workers = [
            threading.Thread(target=work, args=(counts, first + (k << 32), barrier, end))
            for k in range(threads)
        ]
        for t in workers:
            t.start()
        barrier.wait()
        for t in workers:
            t.join()
        return sum(counts), clock() - start, array("q")

    return run


def group_commit(directory: str, rounds: int, seconds: float, threads: int) -> list[str]:
    """(d) One thread against ``threads`` on one commit-mode store, in interleaved rounds."""
    store = js.open(os.path.join(directory, "threads.jst"), Small, durability="commit")
    cases = (1, threads)
    found: dict[int, list[tuple[float, float, float]]] = {n: [] for n in cases}
    try:
        for rnd in range(rounds):
            for n in cases if rnd % 2 == 0 else cases[::-1]:
                stats = store.stats
                syncs, busy = stats.journal_syncs, stats.journal_sync_ns
                count, ns, _ = threaded(store, n)(seconds, (rnd + 1) << 40)
                syncs = max(1, stats.journal_syncs - syncs)
                busy = stats.journal_sync_ns - busy
                found[n].append((count / ns * 1e9, count / syncs, busy / ns))
    finally:
        store.close()
    one = statistics.median(r[0] for r in found[1])
    out = [f"(d) group commit: 1 thread against {threads}, {rounds} rounds of {seconds} s"]
    out.append("  threads  commits/s  vs 1 thr  c/msync  msync in flight")
    for n in cases:
        rows = found[n]
        rate = statistics.median(r[0] for r in rows)
        out.append(
            f"  {n:7d} {rate:10,.0f} {rate / one:8.2f}x"
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
    parser.add_argument("--only", choices=("lap", "group"), default=None)
    args = parser.parse_args(argv)
    if not os.path.isdir(args.dir):
        print(f"{args.dir}: no such directory")
        return 2
    work = tempfile.mkdtemp(prefix="journalstate-commitmode-", dir=args.dir)
    try:
        with open("/proc/loadavg", encoding="ascii") as f:
            print("load", " ".join(f.read().split()[:3]))
        if args.only != "group":
            print("\n".join(first_lap(work, max(1, args.rounds))))
        if args.only != "lap":
            rounds = 2 * max(1, args.rounds)
            print("\n".join(group_commit(work, rounds, args.seconds, max(2, args.threads))))
        with open("/proc/loadavg", encoding="ascii") as f:
            print("load at the end", " ".join(f.read().split()[:3]))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
