"""The command line loads the benchmark, the demo and the simulated disk only for their commands."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import attrs
import pytest

import journalstate as js

pytestmark = pytest.mark.slow  # each test starts a new interpreter

ROOT = Path(__file__).resolve().parent.parent

TOOLS = ("journalstate.bench", "journalstate.testing", "journalstate.demo")
"""Packages and modules beside the library that a store command must not import."""

PROBE = textwrap.dedent(
    """
    import io, json, sys
    import journalstate._cli
    out = io.StringIO()
    code = journalstate._cli.main(sys.argv[1:], out)
    loaded = sorted(m for m in sys.modules if m.startswith({tools!r}))
    print(json.dumps({{"code": code, "loaded": loaded}}))
    """
).format(tools=TOOLS)


@attrs.frozen
class Point:
    """A small state for the store the commands read."""

    x: js.U64 = 0
    y: js.F64 = 0.0


def loaded_after(*argv: str) -> tuple[int, list[str]]:
    """Run ``main(argv)`` in a new interpreter: (exit code, tool modules then in sys.modules)."""
    proc = subprocess.run(
        [sys.executable, "-c", PROBE, *argv],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    found = json.loads(proc.stdout.splitlines()[-1])
    return found["code"], found["loaded"]


@pytest.mark.parametrize(
    "argv",
    [("info",), ("check",), ("dump",), ("log",), ("recover", "--dry-run")],
    ids=lambda argv: argv[0],
)
def test_store_commands_load_no_tool(tmp_path: Path, argv: tuple[str, ...]) -> None:
    """info, check, dump, log and recover import neither the bench, the demo nor testing."""
    path = tmp_path / "s.jst"
    with js.open(path, Point) as store:
        store.commit(Point(x=1, y=2.0))
    code, loaded = loaded_after(argv[0], str(path), *argv[1:])
    assert code == 0
    assert loaded == []


def test_help_loads_no_tool() -> None:
    """Building the parser for every command, bench included, imports none of the tools."""
    code, loaded = loaded_after("bench", "--help")
    assert code == 0
    assert loaded == []
