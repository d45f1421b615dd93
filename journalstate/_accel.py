"""Which implementation of the hot paths runs: the compiled module or pure Python.

What belongs here: the one choice, made once at import, between ``journalstate._speedups``
(the optional C module ``pip install`` builds when the machine has a compiler) and the pure
Python paths, which stay the reference. The pure paths run when the module is missing, or
when the environment sets ``JOURNALSTATE_PURE`` to anything but ``""`` or ``"0"`` before
journalstate is imported. The chosen functions are exposed under one name each, so the hot
paths bind them once:

* :data:`build_record`: the compiled twin of ``_writer.build_record`` (or None);
* :data:`replay_run`: the compiled twin of ``_reader``'s batch replay loop (or None);
* :data:`dirty_chunks`: the compiled twin of ``_checkpoint.dirty_chunks`` (or None);
* :func:`commit_diff`: the schema's generated diff, or for a flat schema (ints, bools,
  f64s, Bytes, Str) the compiled diff, which hands anything unusual to the generated one.

Pure itself (no I/O module is imported), so the pure modules may import it. The compiled
versions give the same bytes, the same results and the same errors
(tests/test_speedups.py holds them to it).
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable
from types import ModuleType
from typing import TYPE_CHECKING, Any, Final

from journalstate._codegen import DiffFunction, flat_fields

if TYPE_CHECKING:
    from journalstate._schema import Schema

PURE_ENV: Final = "JOURNALSTATE_PURE"
"""The environment variable that turns the compiled paths off (read once, at import)."""


def _load() -> ModuleType | None:
    """The compiled module, or None (missing, or turned off by :data:`PURE_ENV`)."""
    if os.environ.get(PURE_ENV, "") not in ("", "0"):
        return None
    try:
        return importlib.import_module("journalstate._speedups")
    except ImportError:
        return None


speedups: Final = _load()
"""``journalstate._speedups`` when the compiled paths are on, else None."""

accelerated: Final = speedups is not None
"""Whether the compiled paths are on (``journalstate.accelerated``)."""

build_record: Final[Callable[..., tuple[bytes, int]] | None] = (
    speedups.build_record if speedups is not None else None
)
"""The compiled ``_writer.build_record``, or None (``_chain`` binds the original then)."""

dirty_chunks: Final[Callable[..., list[int]] | None] = (
    speedups.dirty_chunks if speedups is not None else None
)
"""The compiled ``_checkpoint.dirty_chunks`` (with the chunk size as a third argument), or None."""

replay_run: Final[Callable[..., tuple[int, int, bool]] | None] = (
    speedups.replay_run if speedups is not None else None
)
"""The compiled batch replay loop, or None (``_reader._replay_run`` runs)."""


def commit_diff(schema: Schema) -> DiffFunction:
    """The diff the commit path calls for ``schema``: compiled for a flat schema, else its own."""
    if speedups is None:
        return schema.diff
    fields = flat_fields(schema.root)
    if fields is None:
        return schema.diff
    diff: Any = speedups.FlatDiff(schema.cls, fields, schema.diff)
    return diff  # type: ignore[no-any-return]


def describe() -> str:
    """Which path runs, in words (``journalstate bench`` prints it)."""
    if speedups is not None:
        crc = "SSE4.2 crc32c" if speedups.hardware_crc else "table crc32c"
        return f"accelerated (journalstate._speedups, {crc})"
    if os.environ.get(PURE_ENV, "") not in ("", "0"):
        return f"pure Python ({PURE_ENV} is set)"
    return "pure Python (journalstate._speedups is not built)"
