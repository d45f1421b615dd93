"""The fuzz targets: each damages base stores one way and checks THE INVARIANT.

THE INVARIANT: opening an arbitrary byte mutation of a valid store (every recovery mode,
read-only and writable, with the schema class and with schema=None, with and without
previous_generation) either raises a ``JournalStateError``, or returns a state that was really
committed to that store, with damage before the durable mark reported in
``store.recovery.corruption``; never another exception, never a hang, never a huge allocation
(fuzz.harness checks it). The ``cli`` target checks the same for the command line: an exit code
in 0..5, never a raise, and the output rules of docs/cli.md.

Every target is a Hypothesis test (``test_*``): run it with pytest, with ``python -m fuzz.run``,
or feed it bytes with ``test_x.hypothesis.fuzz_one_input`` (HypoFuzz, atheris).
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import tempfile
from collections.abc import Callable

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fuzz.harness import (
    EXAMPLES_RUN,
    Mutation,
    Violation,
    check_image,
    guarded,
    known_bug,
)
from fuzz.mutators import (
    bit_flips,
    counter_edges,
    forged_records,
    header_rewrites,
    hostile_sizes,
    page_damage,
    record_lengths,
    truncations,
)
from fuzz.stores import PATH, Base, bases
from journalstate import _cli

FUZZ_SETTINGS = settings(deadline=None, suppress_health_check=list(HealthCheck))
"""Settings of the module-level targets; the runner re-wraps them with its own."""

# --- the targets -------------------------------------------------------------------------------

Mutator = Callable[[Base], st.SearchStrategy[Mutation]]


def _run(data: st.DataObject, mutator: Mutator) -> None:
    """Draw a base store and a mutation of it; check the invariant."""
    base = data.draw(bases(), label="base")
    check_image(base, data.draw(mutator(base), label="mutation"))


@FUZZ_SETTINGS
@given(data=st.data())
def test_bit_flips(data: st.DataObject) -> None:
    """The invariant holds after 1 to 8 bit flips, anywhere or in one region."""
    _run(data, bit_flips)


@FUZZ_SETTINGS
@given(data=st.data())
def test_truncation(data: st.DataObject) -> None:
    """The invariant holds for a file cut at any offset, or extended with garbage."""
    _run(data, truncations)


@FUZZ_SETTINGS
@given(data=st.data())
def test_pages(data: st.DataObject) -> None:
    """The invariant holds after zeroed or duplicated pages and swapped or copied slots."""
    _run(data, page_damage)


@FUZZ_SETTINGS
@given(data=st.data())
def test_forged_records(data: st.DataObject) -> None:
    """The invariant holds with forged checksummed records that have one flaw each."""
    _run(data, forged_records)


@FUZZ_SETTINGS
@given(data=st.data())
def test_record_lengths(data: st.DataObject) -> None:
    """The invariant holds when a real record's length points past the end."""
    _run(data, record_lengths)


@FUZZ_SETTINGS
@given(data=st.data())
def test_header_fields(data: st.DataObject) -> None:
    """The invariant holds with header fields or the schema rewritten under a fixed crc."""
    _run(data, header_rewrites)


@FUZZ_SETTINGS
@given(data=st.data())
def test_counter_edges(data: st.DataObject) -> None:
    """The invariant holds with both slots' epoch, generation or seq at or near its end."""
    _run(data, counter_edges)


@FUZZ_SETTINGS
@given(data=st.data())
def test_hostile_sizes(data: st.DataObject) -> None:
    """The invariant holds for crc-valid headers declaring huge journals, states or schemas."""
    _run(data, hostile_sizes)


# --- the command line ---------------------------------------------------------------------------


def _cli_commands(path: str, copy: str, output: str) -> list[list[str]]:
    """Every command the cli target may run (``copy`` is repaired in place, ``output`` new)."""
    cmds: list[list[str]] = []
    for cmd in ("info", "check", "dump", "log"):
        cmds += [[cmd, path], [cmd, path, "--json"]]
    cmds += [["dump", path, "--mode", m] for m in ("strict", "salvage")]
    cmds += [["dump", path, "--generation", "1"], ["dump", path, "--generation", "2", "--json"]]
    cmds += [["log", path, "--limit", "1"]]
    cmds += [["recover", path, "--dry-run", "--mode", m] for m in ("strict", "tolerate-tail")]
    cmds += [["recover", path, "--dry-run", "--mode", "salvage", "--json"]]
    cmds += [["recover", path, "--dry-run", "--previous-generation"]]
    cmds += [["recover", path, "--output", output, "--mode", "salvage"]]
    cmds += [["recover", copy, "--mode", "salvage"]]
    return cmds


def run_cli(argv: list[str], image: bytes) -> tuple[int, str, str] | None:
    """Run ``journalstate ARGV`` in-process under the guard; returns (code, stdout, stderr),
    or None when it ran into a known bug (see fuzz.harness.KNOWN_BUGS)."""
    out, err = io.StringIO(), io.StringIO()

    def call() -> int:
        with contextlib.redirect_stderr(err):
            return _cli.main(argv, out=out)

    try:
        code = guarded(f"journalstate {' '.join(argv)}", max(len(image), 1), call)
    except Violation:
        raise
    except BaseException as e:
        if isinstance(e, KeyboardInterrupt):
            raise
        if known_bug(e) is not None:
            return None
        raise Violation(f"journalstate {argv} raised {type(e).__name__}: {e}") from e
    return code, out.getvalue(), err.getvalue()


CLI_COMMANDS = len(_cli_commands("", "", ""))
_SHM = "/dev/shm" if os.path.isdir("/dev/shm") else None  # tmpfs: syncs cost nothing


def _check_output(argv: list[str], code: int, stdout: str, stderr: str) -> None:
    """The exit code is documented, and the output follows docs/cli.md."""
    if code not in range(6):
        raise Violation(f"journalstate {argv} exited {code}; stderr {stderr!r}")
    lines = stderr.splitlines()
    if stderr and (len(lines) != 1 or not lines[0].startswith("journalstate:")):
        raise Violation(f"journalstate {argv}: stderr is not one line: {stderr!r}")
    if stderr and stdout:
        raise Violation(f"journalstate {argv} failed ({stderr!r}) but printed {stdout!r}")
    if code in (2, 4, 5) and not stderr:
        raise Violation(f"journalstate {argv} exited {code} without saying why")
    if "--json" in argv and stdout:
        try:
            json.loads(stdout)
        except ValueError as e:
            raise Violation(f"journalstate {argv}: --json printed no JSON: {e}") from e


def check_cli(image: bytes, chosen: list[int] | None = None) -> None:
    """Commands (all, or the ``chosen`` indices) on a file holding ``image``: exit code in 0..5,
    never a raise, and the output rules of docs/cli.md (a failure is one stderr line and nothing
    on stdout; --json prints JSON; a successful recover leaves a store that checks clean)."""
    directory = tempfile.mkdtemp(prefix="jsfuzz-", dir=_SHM)
    try:
        path = os.path.join(directory, PATH)
        copy = os.path.join(directory, "copy.jst")
        output = os.path.join(directory, "out.jst")
        for name in (path, copy):
            with open(name, "wb") as f:
                f.write(image)
        commands = _cli_commands(path, copy, output)
        for argv in commands if chosen is None else [commands[i] for i in chosen]:
            ran = run_cli(argv, image)
            if ran is None:
                continue
            code, stdout, stderr = ran
            _check_output(argv, code, stdout, stderr)
            left = os.path.exists(output)
            if argv[0] == "recover" and "--output" in argv and left != (code in (0, 1, 3)):
                raise Violation(f"journalstate {argv} exited {code}; --output exists: {left}")
            if argv[0] == "recover" and argv[1] == copy and code in (0, 1, 3):
                again = run_cli(["check", copy], image)
                if again is not None and again[0] != 0:
                    raise Violation(
                        f"journalstate {argv} exited {code}, then check exited {again[0]}: "
                        f"{again[2]!r}"
                    )
    finally:
        shutil.rmtree(directory, ignore_errors=True)


MUTATORS: tuple[Mutator, ...] = (
    bit_flips,
    truncations,
    page_damage,
    forged_records,
    record_lengths,
    header_rewrites,
    counter_edges,
    hostile_sizes,
)


@FUZZ_SETTINGS
@given(data=st.data())
def test_cli(data: st.DataObject) -> None:
    """The command line exits 0..5 and never raises on damaged real files."""
    base = data.draw(bases(), label="base")
    mutator = data.draw(st.sampled_from(MUTATORS), label="mutator")
    mutation = data.draw(st.one_of(st.just(None), mutator(base)), label="mutation")
    indices = st.integers(0, CLI_COMMANDS - 1)
    chosen = data.draw(st.lists(indices, min_size=1, max_size=4, unique=True), label="commands")
    EXAMPLES_RUN[0] += 1
    check_cli(base.image if mutation is None else mutation.image, chosen)


TARGETS: dict[str, Callable[..., None]] = {
    "bit-flips": test_bit_flips,
    "truncation": test_truncation,
    "pages": test_pages,
    "forged-records": test_forged_records,
    "record-lengths": test_record_lengths,
    "header-fields": test_header_fields,
    "counter-edges": test_counter_edges,
    "hostile-sizes": test_hostile_sizes,
    "cli": test_cli,
}
"""Every target by its runner name."""
