"""The followers' measurements of `journalstate bench`: refresh, wait and what a waiter costs.

What belongs here: the time a read-only store's ``refresh()`` takes with one new commit and with
none, the time from a commit in another process to the return of a reader's ``wait()``, and
the writer's commit rate with a reader waiting beside it against none (the waiter's cost to the
writer: the writer's code is the same either way, so this ratio shows only the machine's
share of the reader's polling).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from array import array
from typing import Any

import journalstate as js
from journalstate.bench.base import Config, Small, loop, percentiles, small

_WRITER = """
import os, random, sys, time
import journalstate as js
from journalstate.bench.base import Small
path, count = sys.argv[1], int(sys.argv[2])
rng = random.Random(7)
with js.open(path, Small, durability="process") as store:
    print("ready", flush=True)
    sys.stdin.readline()
    for i in range(count):
        time.sleep(rng.uniform(0.001, 0.003))
        store.commit(Small(n=time.monotonic_ns(), x=float(i)))
"""
"""A writer in its own process: commits stamped with CLOCK_MONOTONIC (shared by processes)."""

_WAITER = """
import sys, time
import journalstate as js
from journalstate.bench.base import Small
with js.open(sys.argv[1], Small, readonly=True) as store:
    print("ready", flush=True)
    while store.wait(float(sys.argv[2])):
        pass
    cpu, wall = time.process_time(), time.monotonic()
    store.wait(float(sys.argv[3]))
    print(time.process_time() - cpu, time.monotonic() - wall, flush=True)
"""
"""A reader in its own process that waits for commits until a quiet spell ends it, then
waits once more on the quiet store and prints the CPU seconds and the seconds that took."""


def _python(code: str, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", code, *args],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )


def _finish(process: subprocess.Popen[str], *, kill: bool) -> str:
    """End ``process`` (killed first when ``kill``), close its pipes; what it still printed."""
    if kill and process.poll() is None:
        process.kill()
    out, _ = process.communicate(timeout=60)
    return out


def _refresh_latency(cfg: Config, path: str) -> dict[str, float]:
    """p50 and p99 of refresh() with one new commit each time, and with none."""
    with (
        js.open(path, Small, durability="process") as writer,
        js.open(path, Small, readonly=True) as reader,
    ):
        commit, refresh = writer.commit, reader.refresh
        moved: array[int] = array("q")
        clock = time.perf_counter_ns
        deadline = time.monotonic() + cfg.seconds * cfg.repeat
        i = 0
        while time.monotonic() < deadline:
            i += 1
            commit(small(i))
            t0 = clock()
            refresh()
            moved.append(clock() - t0)

        def idle_refresh(_: int) -> None:
            refresh()

        _, _, idle = loop(idle_refresh, cfg.seconds, 0)
    moved_p50, moved_p99 = percentiles(moved)
    idle_p50, idle_p99 = percentiles(idle)
    return {
        "refresh_new_p50_us": moved_p50 / 1e3,
        "refresh_new_p99_us": moved_p99 / 1e3,
        "refresh_idle_p50_us": idle_p50 / 1e3,
        "refresh_idle_p99_us": idle_p99 / 1e3,
    }


def _wake_latency(path: str, wakes: int) -> dict[str, Any]:
    """Time from a commit in another process to the return of wait() here."""
    js.open(path, Small).close()
    writer = _python(_WRITER, path, str(wakes))
    try:
        assert writer.stdout is not None
        assert writer.stdin is not None
        writer.stdout.readline()
        lat: array[int] = array("q")
        with js.open(path, Small, readonly=True) as reader:
            writer.stdin.write("go\n")
            writer.stdin.flush()
            while reader.seq < wakes and reader.wait(60):
                now = time.monotonic_ns()
                lat.append(now - reader.state.n)
        _finish(writer, kill=False)
    except BaseException:
        _finish(writer, kill=True)
        raise
    p50, p99 = percentiles(lat) if lat else (float("nan"), float("nan"))
    return {
        "wakes": len(lat),
        "commits": wakes,
        "wake_p50_us": p50 / 1e3,
        "wake_p99_us": p99 / 1e3,
        "wake_max_us": max(lat) / 1e3 if lat else float("nan"),
    }


def _writer_cost(cfg: Config, path: str) -> dict[str, float]:
    """Commit rate alone and with a reader waiting in another process, interleaved runs."""
    js.open(path, Small).close()
    rates: dict[str, list[float]] = {"alone": [], "waited": []}
    with js.open(path, Small, durability="process") as writer:
        commit = writer.commit

        def op(i: int) -> None:
            commit(small(i))

        loop(op, cfg.warmup, 0)
        for rnd in range(cfg.repeat):
            for case in ("alone", "waited") if rnd % 2 == 0 else ("waited", "alone"):
                waiter = None
                if case == "waited":
                    waiter = _python(_WAITER, path, str(cfg.seconds + 5), "0")
                    assert waiter.stdout is not None
                    waiter.stdout.readline()
                try:
                    count, ns, _ = loop(op, cfg.seconds, (rnd + 1) << 40)
                finally:
                    if waiter is not None:
                        _finish(waiter, kill=True)
                rates[case].append(count / (ns / 1e9))
    alone, waited = sorted(rates["alone"]), sorted(rates["waited"])
    med_alone, med_waited = alone[len(alone) // 2], waited[len(waited) // 2]
    return {
        "commits_per_s_alone": med_alone,
        "commits_per_s_waited": med_waited,
        "waited_vs_alone": med_waited / med_alone,
        "cost_per_commit_us": (1 / med_waited - 1 / med_alone) * 1e6,
    }


def _idle_waiter(path: str, seconds: float) -> dict[str, float]:
    """The share of a core that a reader waiting on a quiet store uses (its polling)."""
    js.open(path, Small).close()
    waiter = _python(_WAITER, path, "0", str(seconds))
    out = _finish(waiter, kill=False)
    cpu, wall = (float(word) for word in out.split()[1:3])
    return {"idle_wait_s": wall, "idle_wait_cpu_share": cpu / wall}


def measure_followers(cfg: Config) -> dict[str, Any]:
    """Refresh and wait latency of a read-only store, and a waiting reader's cost to a writer."""
    kinds = ("refresh", "wake", "cost", "idle")
    paths = [os.path.join(cfg.directory, f"follow-{k}.jst") for k in kinds]
    try:
        result: dict[str, Any] = {}
        result.update(_refresh_latency(cfg, paths[0]))
        result.update(_wake_latency(paths[1], 50 if cfg.seconds < 0.5 else 500))
        result.update(_writer_cost(cfg, paths[2]))
        result.update(_idle_waiter(paths[3], cfg.seconds * cfg.repeat))
        return result
    finally:
        for path in paths:
            if os.path.exists(path):
                os.unlink(path)
