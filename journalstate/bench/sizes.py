"""The state-size measurements of `journalstate bench`: a large state, checkpoints, recovery.

What belongs here: commit latency with a large state next to the small one, the time of a
checkpoint for both, and the time to open a process-death image whose journal is nearly full.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import statistics
import time
from typing import Any

import attrs

import journalstate as js
from journalstate._options import DEFAULT_JOURNAL_SIZE
from journalstate.bench.base import BLOBS, Config, Op, Series, Small, large_class, loop, small

# --- large state, checkpoints, recovery ---------------------------------------------------------


_SIZE_JOURNAL = DEFAULT_JOURNAL_SIZE
"""Journal size of both stores in the state-size comparison: the default, so the large state
checkpoints as often as a store opened without options would."""


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
            loop(ops[kind], cfg.warmup, 0)
        series = {kind: Series() for kind in states}
        checkpoints = {kind: stores[kind].stats.checkpoints for kind in states}
        kinds = list(states)
        for rnd in range(cfg.repeat):
            for kind in kinds if rnd % 2 == 0 else kinds[::-1]:
                series[kind].add(*loop(ops[kind], cfg.seconds, (rnd + 1) << 40))
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
        commit(evolve(store.state, n=i, x=i * 0.5, blob=BLOBS[i & 255]))

    return op


def measure_large_state(cfg: Config) -> dict[str, Any]:
    """Commit latency with a ``cfg.large_bytes`` state vs the small one, same journal size."""
    large = large_class(cfg.large_bytes)(big=b"\xa5" * cfg.large_bytes)
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


def measure_checkpoints(cfg: Config) -> dict[str, Any]:
    """Time ``store.checkpoint()`` (one change committed before each) for both state sizes."""
    large_cls = large_class(cfg.large_bytes)
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


def measure_recovery(cfg: Config) -> dict[str, Any]:
    """Open (read-only) process-death images of stores whose journal is nearly full.

    The journal of ``cfg.recovery_journal`` bytes, then one four times as large (64 MiB in a
    full run): what the time of an open grows with is the records replayed.
    """
    result = _recovery(cfg, cfg.recovery_journal, "recovery")
    result["large"] = _recovery(cfg, 4 * cfg.recovery_journal, "recovery-large")
    return result


def _recovery(cfg: Config, journal_size: int, name: str) -> dict[str, Any]:
    """Open a process-death image of a store whose ``journal_size`` journal is nearly full."""
    path = os.path.join(cfg.directory, f"{name}.jst")
    copy = path + ".crash"
    store = js.open(
        path,
        Small,
        durability="process",
        journal_size=journal_size,
        checkpoint_threshold=1.0,
    )
    try:
        checkpoints, i = store.stats.checkpoints, 0
        while store.journal_fill < 0.98 and store.stats.checkpoints == checkpoints:
            i += 1
            store.commit(small(i))
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
        "journal_size": journal_size,
        "records_replayed": report.records_replayed,
        "bytes_replayed": report.bytes_replayed,
        "open_ms": t_full * 1e3,
        "open_closed_ms": statistics.median(closed) * 1e3,
        "mb_per_s": report.bytes_replayed / t_full / 1e6,
        "state_matches": matches,
    }
