"""The `journalstate bench` command: measure every section in turn and report as it goes.

What belongs here: turning the command line's options into a ``Config`` and :func:`run`, which
measures the sections (``compare``, ``sizes``, ``system``) one after the other, prints each
through ``report`` as soon as it is done, and returns the exit code. Nothing here prints by
itself: every line goes to the ``out`` stream :func:`run` is given.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
from typing import Any, TextIO

import attrs

from journalstate.bench.base import Config, loop, percentiles
from journalstate.bench.compare import measure_rows
from journalstate.bench.follow import measure_followers
from journalstate.bench.replication import measure_replication
from journalstate.bench.report import (
    SECTIONS,
    footer_lines,
    header_lines,
    plot,
    table_lines,
    targets,
)
from journalstate.bench.sizes import measure_checkpoints, measure_large_state, measure_recovery
from journalstate.bench.system import describe_machine, loadavg, measure_writeback, run_probes


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
            "machine": describe_machine(work),
            "timer_overhead_ns": percentiles(loop(lambda i: None, 0.05, 0)[2])[0],
        }
        say(header_lines(result))
        skipped: list[dict[str, str]] = []
        rows = measure_rows(cfg, skipped)
        say(table_lines(rows, skipped))
        result["rows"] = [attrs.asdict(r) for r in rows]
        result["skipped"] = skipped
        for section, measure in (
            ("large_state", measure_large_state),
            ("checkpoint", measure_checkpoints),
            ("recovery", measure_recovery),
            ("writeback", measure_writeback),
            ("probes", run_probes),
            ("followers", measure_followers),
            ("replication", measure_replication),
        ):
            result[section] = measure(cfg)
            say(SECTIONS[section](result[section]))
        result["machine"]["loadavg_end"] = loadavg()
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
