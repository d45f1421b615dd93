"""Replication's measurements of `journalstate bench`: what shipping costs the writer, the lag.

What belongs here: the writer's commit rate with replication to a ``file://`` prefix (in the
benchmark's directory) against the same writer without it, in process mode and in commit mode,
as ratios of runs interleaved in one process (so the machine's noise falls on both alike); and
the lag a paced writer sees (``store.replication.lag_seconds`` and ``lag_seq``). Skipped, and
said so, when obstore is not installed.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import time
from array import array
from typing import Any

import journalstate as js
from journalstate.bench.base import Config, Small, loop, percentiles, small

JOURNAL = 64 << 20
"""Journal size of the measured stores: an interval's worth of commits at full speed fits, so
the shipper is measured shipping, not starting generation after generation."""


def _rates(cfg: Config, durability: str, work: str) -> dict[str, Any]:
    """Commit rate with and without replication, runs interleaved; medians and the ratio."""
    path = os.path.join(work, f"repl-{durability}.jst")
    rates: dict[str, list[float]] = {"off": [], "on": []}
    generations = 0
    lag_at_end: list[int] = []
    for rnd in range(cfg.repeat):
        for case in ("off", "on") if rnd % 2 == 0 else ("on", "off"):
            options: dict[str, Any] = {}
            if case == "on":
                url = f"file://{work}/replica-{durability}-{rnd}"
                options = {"replicate_to": url, "replicate_interval": 1.0}
            journal = JOURNAL if cfg.seconds >= 0.5 else JOURNAL // 8
            with js.open(path, Small, durability=durability, journal_size=journal, **options) as s:

                def op(i: int, commit: Any = s.commit) -> None:
                    commit(small(i))

                loop(op, cfg.warmup, 0)
                count, ns, _ = loop(op, cfg.seconds, (rnd + 1) << 40)
                status = s.replication
                if status is not None:
                    lag_at_end.append(status.lag_seq or 0)
            if status is not None:
                final = s.replication
                generations += final.generations_started if final is not None else 0
            rates[case].append(count / (ns / 1e9))
            os.unlink(path)
    off, on = sorted(rates["off"]), sorted(rates["on"])
    med_off, med_on = off[len(off) // 2], on[len(on) // 2]
    return {
        "commits_per_s_off": med_off,
        "commits_per_s_on": med_on,
        "on_vs_off": med_on / med_off,
        "generations_started": generations,
        "runs": cfg.repeat,
        "lag_seq_at_end_max": max(lag_at_end, default=0),
    }


def _lag(cfg: Config, work: str) -> dict[str, Any]:
    """The lag of a writer committing every millisecond (replicate_interval 1 s; 0.1 s in
    short runs)."""
    path = os.path.join(work, "repl-lag.jst")
    url = f"file://{work}/replica-lag"
    seconds: list[float] = []
    seqs: list[int] = []
    interval = 1.0 if cfg.seconds >= 0.5 else 0.1
    duration = max(cfg.seconds * cfg.repeat, 5 * interval)
    with js.open(
        path, Small, durability="process", replicate_to=url, replicate_interval=interval
    ) as store:
        end = time.monotonic() + duration
        i = 0
        while time.monotonic() < end:
            i += 1
            store.commit(small(i))
            if i % 20 == 0:
                status = store.replication
                assert status is not None
                seconds.append(status.lag_seconds)
                seqs.append(status.lag_seq or 0)
            time.sleep(0.001)
        began = time.monotonic()
    close_s = time.monotonic() - began
    final = store.replication
    os.unlink(path)
    ns = array("q", (int(s * 1e9) for s in seconds))
    p50, p99 = percentiles(ns) if ns else (float("nan"), float("nan"))
    return {
        "interval_s": interval,
        "commits": i,
        "lag_p50_s": p50 / 1e9,
        "lag_p99_s": p99 / 1e9,
        "lag_max_s": max(seconds, default=0.0),
        "lag_seq_max": max(seqs, default=0),
        "close_s": close_s,
        "shipped_all": final is not None and final.shipped_seq == i,
    }


def measure_replication(cfg: Config) -> dict[str, Any]:
    """The writer's rate with replication against without, per mode, and the lag."""
    if importlib.util.find_spec("obstore") is None:
        return {"skipped": "obstore is not installed (pip install 'journalstate[replicate]')"}
    work = os.path.join(cfg.directory, "replication")
    os.makedirs(work, exist_ok=True)
    try:
        return {
            "process": _rates(cfg, "process", work),
            "commit": _rates(cfg, "commit", work),
            "lag": _lag(cfg, work),
        }
    finally:
        shutil.rmtree(work, ignore_errors=True)
