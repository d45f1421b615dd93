"""Run fuzz targets for a time budget: ``python -m fuzz.run TARGET... --seconds N``.

Each target runs in rounds of growing ``max_examples`` (each round a fresh random search)
until its budget is spent; the last round is sized from the measured rate so the budget holds.
Prints how many inputs each target tried; exits 1 when a target found a failure (Hypothesis
prints the shrunk falsifying example and a ``@reproduce_failure`` blob).
"""

from __future__ import annotations

import argparse
import sys
import time
import traceback
from collections.abc import Callable, Sequence

import attrs
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from hypothesis.database import DirectoryBasedExampleDatabase, ExampleDatabase

from fuzz.harness import EXAMPLES_RUN, KNOWN_HITS
from fuzz.targets import TARGETS


@attrs.frozen
class Result:
    """What one target's run did."""

    name: str
    inputs: int
    seconds: float
    rounds: int
    failure: BaseException | None


def wrapped(
    name: str,
    max_examples: int,
    *,
    database: ExampleDatabase | None = None,
    derandomize: bool = False,
) -> Callable[[], None]:
    """A fresh Hypothesis test running target ``name``'s body with these settings."""
    inner = TARGETS[name].hypothesis.inner_test  # type: ignore[attr-defined]
    test: Callable[[], None] = settings(
        max_examples=max_examples,
        deadline=None,
        suppress_health_check=list(HealthCheck),
        database=database,
        derandomize=derandomize,
        print_blob=True,
        phases=(Phase.explicit, Phase.reuse, Phase.generate, Phase.target, Phase.shrink),
    )(given(data=st.data())(inner))
    return test


def run_target(
    name: str,
    *,
    seconds: float | None = None,
    max_examples: int | None = None,
    start: int = 20,
    database: ExampleDatabase | None = None,
    derandomize: bool = False,
    say: Callable[[str], None] = print,
) -> Result:
    """Run one target for ``seconds`` (growing rounds) or for exactly ``max_examples`` inputs."""
    assert (seconds is None) != (max_examples is None), "give seconds or max_examples"
    EXAMPLES_RUN[0] = 0
    began = time.monotonic()
    rounds = 0
    failure: BaseException | None = None
    n = start if max_examples is None else max_examples
    while True:
        rounds += 1
        try:
            wrapped(name, n, database=database, derandomize=derandomize)()
        except Exception as e:
            failure = e
            break
        if seconds is None:
            break
        elapsed = time.monotonic() - began
        remaining = seconds - elapsed
        rate = EXAMPLES_RUN[0] / max(elapsed, 1e-3)
        n = min(2 * n, int(remaining * rate * 0.9))
        if n < 1:
            break
        say(f"  {name}: {EXAMPLES_RUN[0]} inputs so far, next round of {n}")
    return Result(name, EXAMPLES_RUN[0], time.monotonic() - began, rounds, failure)


def cap_address_space(limit: int) -> None:
    """Make an allocation anywhere in the run fail with MemoryError rather than exhaust RAM."""
    try:
        import resource
    except ImportError:  # pragma: no cover
        return
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    if hard != resource.RLIM_INFINITY:
        limit = min(limit, hard)
    if soft == resource.RLIM_INFINITY or soft > limit:
        resource.setrlimit(resource.RLIMIT_AS, (limit, hard))


def main(argv: Sequence[str] | None = None) -> int:
    """The command line; returns the exit code (1 when any target failed)."""
    parser = argparse.ArgumentParser(prog="python -m fuzz.run", description=__doc__)
    parser.add_argument("targets", nargs="*", help=f"'all' or any of: {', '.join(TARGETS)}")
    parser.add_argument("--seconds", type=float, default=60.0, help="budget per target")
    parser.add_argument("--start", type=int, default=20, help="max_examples of the first round")
    parser.add_argument("--no-db", action="store_true", help="do not save failing examples")
    parser.add_argument("--list", action="store_true", help="list the targets and exit")
    parser.add_argument(
        "--memory-limit",
        type=float,
        default=4.0,
        help="GiB of address space for the whole run (0: none); beyond it, MemoryError",
    )
    args = parser.parse_args(argv)
    if args.memory_limit > 0:
        cap_address_space(int(args.memory_limit * 2**30))
    if args.list or not args.targets:
        for name, test in TARGETS.items():
            print(f"{name:<16}{(test.__doc__ or '').strip()}")
        return 0
    names = list(TARGETS) if args.targets == ["all"] else args.targets
    unknown = [n for n in names if n not in TARGETS]
    if unknown:
        parser.error(f"unknown target(s) {unknown}; choose from {list(TARGETS)}")
    database = None if args.no_db else DirectoryBasedExampleDatabase(".hypothesis/fuzz")
    failed = False
    for name in names:
        print(f"{name}: fuzzing for {args.seconds:g} s", flush=True)
        result = run_target(name, seconds=args.seconds, start=args.start, database=database)
        rate = result.inputs / max(result.seconds, 1e-3)
        print(
            f"{name}: {result.inputs} inputs in {result.seconds:.1f} s "
            f"({rate:.1f}/s, {result.rounds} rounds): "
            + ("FAILED" if result.failure else "no failure"),
            flush=True,
        )
        if KNOWN_HITS:
            print(f"{name}: stepped over known bugs {dict(KNOWN_HITS)}", flush=True)
            KNOWN_HITS.clear()
        if result.failure is not None:
            failed = True
            traceback.print_exception(result.failure, file=sys.stdout)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
