"""How long a migration of a large state takes, next to copying the same bytes twice.

Run: ``python -m journalstate._migrate_bench DIR [--mib 64] [--runs 5]``. Both measurements run
in the same process on the same directory, so their ratio is what docs/benchmarks.md reports.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections.abc import Sequence
from typing import Annotated, Any

import attrs

import journalstate as js


def classes(size: int) -> tuple[type, type]:
    """An old class holding ``size`` bytes, and a new one with a wider counter and a new field."""

    blob = Annotated[bytes, js.Bytes(size)]
    old = attrs.make_class(
        "BigOld",
        {"n": attrs.field(type=js.U32, default=0), "blob": attrs.field(type=blob, default=b"")},
        frozen=True,
    )
    new = attrs.make_class(
        "BigNew",
        {
            "n": attrs.field(type=js.U64, default=0),
            "blob": attrs.field(type=blob, default=b""),
            "extra": attrs.field(type=js.U8, default=1),
        },
        frozen=True,
    )
    return old, new


def copy_twice(source: str, directory: str) -> float:
    """Seconds to copy ``source`` to a new file and fsync it, twice."""
    start = time.perf_counter()
    for i in range(2):
        dest = os.path.join(directory, f"copy{i}")
        with open(source, "rb") as src, open(dest, "wb") as out:
            while chunk := src.read(1 << 20):
                out.write(chunk)
            out.flush()
            os.fsync(out.fileno())
        os.unlink(dest)
    return time.perf_counter() - start


def run(directory: str, mib: int, runs: int) -> dict[str, Any]:
    """Median seconds of ``runs`` migrations, and of ``runs`` double copies of a file holding
    the state's bytes (``mib`` MiB), interleaved."""
    size = mib << 20
    old_cls, new_cls = classes(size)
    blob = bytes(range(1, 256)) * (size // 255) + b"x" * (size % 255)
    path = os.path.join(directory, "bench-migrate.jst")
    raw = os.path.join(directory, "bench-migrate.raw")  # the state's bytes, alone
    with open(raw, "wb") as f:
        f.write(blob)
    migrations, copies = [], []
    for _ in range(runs):
        if os.path.exists(path):
            os.unlink(path)
        with js.open(path, old_cls, initial=old_cls(n=5, blob=blob), journal_size=1 << 16):
            pass
        copies.append(copy_twice(raw, directory))
        start = time.perf_counter()
        js.migrate(path, new_cls)
        migrations.append(time.perf_counter() - start)
    os.unlink(path)
    os.unlink(raw)
    migration, copy = statistics.median(migrations), statistics.median(copies)
    return {"mib": mib, "migration_s": migration, "copy_twice_s": copy, "ratio": migration / copy}


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: print the medians and their ratio."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("directory")
    parser.add_argument("--mib", type=int, default=64)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args(argv)
    result = run(args.directory, args.mib, args.runs)
    print(
        f"{result['mib']} MiB state: migration {result['migration_s']:.3f} s, "
        f"copying it twice {result['copy_twice_s']:.3f} s, ratio {result['ratio']:.2f}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
