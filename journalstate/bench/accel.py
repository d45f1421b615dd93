"""The compiled paths against the pure Python ones, side by side in one process:
`python -m journalstate.bench.accel DIR`.

What belongs here: one process that measures the same work on both paths in interleaved
rounds (odd rounds in the reverse order), with LMDB no-sync beside them when lmdb is
installed: ``store.commit()`` and ``store.transaction()`` in process mode (the bench's
``Small`` update, one store per path), a checkpoint-free replay of a full journal of such
commits (``ChainReader.replay``), and the compiled functions alone (the diff of ``Small``,
``build_record``). A store is bound to a path when it opens (its diff) and through the
module-level names the commit and replay paths look up on each call, which this module sets
before each run. Medians of the rounds; ratios are medians of per-round ratios.

It needs the compiled module (``journalstate._speedups``) built; it does not look at
``JOURNALSTATE_PURE``.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import os
import shutil
import statistics
import sys
import tempfile
import time
import timeit
from collections.abc import Callable, Iterator
from typing import Any

import journalstate as js
from journalstate import _accel, _chain, _reader, _writer
from journalstate._codegen import flat_fields
from journalstate._schema import compile_schema
from journalstate.bench.base import BLOBS, UPDATE, Small, loop, percentiles, small

PATHS = ("pure", "compiled")


def _speedups() -> Any:
    return importlib.import_module("journalstate._speedups")


def _bind(path: str) -> None:
    """Make the commit and replay paths call the functions of ``path`` from now on."""
    fast = _speedups()
    compiled = path == "compiled"
    for module, name, value in (
        (_chain, "build_record", fast.build_record if compiled else _writer.build_record),
        (_reader, "compiled_run", fast.replay_run if compiled else None),
        (_chain, "compiled_chunks", fast.dirty_chunks if compiled else None),
    ):
        setattr(module, name, value)  # names the hot paths look up on each call


@contextlib.contextmanager
def _opened(directory: str, path: str) -> Iterator[js.Store[Small]]:
    """A process-mode store whose diff is ``path``'s (bound when it opens)."""
    fast = _speedups()
    schema = compile_schema(Small)
    fields = flat_fields(schema.root)
    saved = _accel.commit_diff
    name = "commit_diff"
    if path == "compiled":
        setattr(_accel, name, lambda s: fast.FlatDiff(s.cls, fields, s.diff))
    else:
        setattr(_accel, name, lambda s: s.diff)
    try:
        store = js.open(os.path.join(directory, f"{path}.jst"), Small, durability="process")
    finally:
        setattr(_accel, name, saved)
    try:
        yield store
    finally:
        store.close()


def _lmdb_op(directory: str, stack: contextlib.ExitStack) -> Callable[[int], None] | None:
    try:
        lmdb: Any = importlib.import_module("lmdb")
    except ImportError:
        return None
    env = lmdb.open(os.path.join(directory, "lmdb"), map_size=64 << 20, sync=False, metasync=False)
    stack.callback(env.close)
    pack = UPDATE.pack

    def op(i: int) -> None:
        with env.begin(write=True) as txn:
            txn.put(b"state", pack(i, i * 0.5, 100, BLOBS[i & 255]))

    return op


def _committer(store: js.Store[Small]) -> Callable[[int], None]:
    commit = store.commit

    def op(i: int) -> None:
        commit(small(i))

    return op


def _transactor(store: js.Store[Small]) -> Callable[[int], None]:
    transaction = store.transaction

    def op(i: int) -> None:
        with transaction() as draft:
            draft.n, draft.x, draft.blob = i, i * 0.5, BLOBS[i & 255]

    return op


def _line(name: str, rates: list[float], p50s: list[float], base: list[float] | None) -> str:
    p50 = statistics.median(p50s) / 1000
    text = f"{name:28s} {statistics.median(rates):>10,.0f}/s  p50 {p50:5.2f} us"
    if base:
        ratios = [a / b for a, b in zip(rates, base, strict=True)]
        text += f"  {statistics.median(ratios):5.2f}x lmdb"
    return text


def commits(directory: str, rounds: int, seconds: float) -> list[str]:
    """commit() and transaction() on both paths, and LMDB no-sync, interleaved."""
    out = []
    with contextlib.ExitStack() as stack:
        stores = {p: stack.enter_context(_opened(directory, p)) for p in PATHS}
        cases: dict[str, tuple[str | None, Callable[[int], None]]] = {}
        for p in PATHS:
            cases[f"commit() {p}"] = (p, _committer(stores[p]))
            cases[f"transaction() {p}"] = (p, _transactor(stores[p]))
        lmdb = _lmdb_op(directory, stack)
        if lmdb is not None:
            cases["lmdb nosync"] = (None, lmdb)
        rates: dict[str, list[float]] = {k: [] for k in cases}
        p50s: dict[str, list[float]] = {k: [] for k in cases}
        first = 0
        for path, op in cases.values():  # warm-up
            if path:
                _bind(path)
            first += loop(op, 0.2, first)[0]
        for r in range(rounds):
            order = list(cases.items())
            for name, (path, op) in order if r % 2 == 0 else order[::-1]:
                if path:
                    _bind(path)
                n, ns, lat = loop(op, seconds, first)
                first += n
                rates[name].append(n * 1e9 / ns)
                p50s[name].append(percentiles(lat)[0])
        base = rates.get("lmdb nosync")
        for name in cases:
            out.append(_line(name, rates[name], p50s[name], base))
        for kind in ("commit()", "transaction()"):
            pure, fast = rates[f"{kind} pure"], rates[f"{kind} compiled"]
            ratio = statistics.median(a / b for a, b in zip(fast, pure, strict=True))
            out.append(f"{kind} compiled / pure: {ratio:.2f}x")
    return out


def replay(rounds: int, journal_mib: int) -> list[str]:
    """ChainReader.replay of a full journal of Small updates on both paths, interleaved."""
    journal_size = journal_mib << 20
    schema = compile_schema(Small)
    ring = bytearray(journal_size)
    position, seq, previous = 0, 0, Small()
    while True:
        state = small(seq + 1)
        record, size = _writer.build_record(
            1, seq + 1, position, 0, 1, schema.diff(previous, state)
        )
        if position + len(record) > journal_size:
            break
        ring[position : position + len(record)] = record
        position, seq, previous = position + size, seq + 1, state
    data = bytes(ring)
    times: dict[str, list[float]] = {p: [] for p in PATHS}
    images = {}
    for r in range(rounds):
        for p in PATHS if r % 2 == 0 else PATHS[::-1]:
            _bind(p)
            image = bytearray(schema.size)
            reader = _reader.ChainReader(
                data, journal_size, epoch=1, position=0, seq=0, end=journal_size,
                state_size=schema.size,
            )  # fmt: skip
            began = time.perf_counter()
            reader.replay(image, 0)
            times[p].append(time.perf_counter() - began)
            if reader.stop is None or reader.stop.seq != seq:
                raise RuntimeError(f"replay stopped early: {reader.stop}")
            images[p] = bytes(image)
    if images["pure"] != images["compiled"]:
        raise RuntimeError("the two paths replayed to different images")
    out = [f"replay of {seq:,} records ({position / 2**20:.1f} MiB), {rounds} rounds:"]
    for p in PATHS:
        best = statistics.median(times[p])
        out.append(f"  {p:9s} {best * 1000:8.1f} ms  {position / best / 1e6:8.0f} MB/s")
    ratio = statistics.median(a / b for a, b in zip(times["pure"], times["compiled"], strict=True))
    out.append(f"  compiled / pure: {ratio:.1f}x")
    return out


def parts() -> list[str]:
    """The compiled functions alone against their originals (timeit, best of 5)."""
    fast = _speedups()
    schema = compile_schema(Small)
    fields = flat_fields(schema.root)
    flat = fast.FlatDiff(schema.cls, fields, schema.diff)
    old, new = small(1), small(2)
    patches = schema.diff(old, new)
    cases = [
        ("diff of Small", lambda: schema.diff(old, new), lambda: flat(old, new)),
        (
            "build_record",
            lambda: _writer.build_record(1, 2, 3, 4, 5, patches),
            lambda: fast.build_record(1, 2, 3, 4, 5, patches),
        ),
    ]
    out = []
    for name, pure, compiled in cases:
        a = min(timeit.repeat(pure, number=100_000, repeat=5)) * 10
        b = min(timeit.repeat(compiled, number=100_000, repeat=5)) * 10
        out.append(f"{name:16s} pure {a:5.2f} us  compiled {b:5.2f} us  ({a / b:.1f}x)")
    return out


def main(argv: list[str] | None = None) -> int:
    """Run the measurements in a temporary directory inside DIR; print the report."""
    parser = argparse.ArgumentParser(prog="python -m journalstate.bench.accel")
    parser.add_argument("dir", help="a directory on the disk to measure")
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--seconds", type=float, default=0.5, help="per commit run")
    parser.add_argument("--journal-mib", type=int, default=16, help="of the replayed journal")
    args = parser.parse_args(argv)
    if not os.path.isdir(args.dir):
        print(f"{args.dir}: no such directory")
        return 2
    try:
        _speedups()
    except ImportError:
        print("journalstate._speedups is not built: nothing to compare")
        return 2
    work = tempfile.mkdtemp(prefix="journalstate-accel-", dir=args.dir)
    try:
        with open("/proc/loadavg", encoding="ascii") as f:
            print("load", " ".join(f.read().split()[:3]))
        print("\n".join(parts()))
        print("\n".join(commits(work, max(1, args.rounds), args.seconds)))
        print("\n".join(replay(max(1, args.rounds), max(1, args.journal_mib))))
        with open("/proc/loadavg", encoding="ascii") as f:
            print("load at the end", " ".join(f.read().split()[:3]))
    finally:
        _bind("compiled" if _accel.accelerated else "pure")
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
