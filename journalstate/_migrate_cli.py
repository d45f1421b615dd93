"""What the `migrate` command needs besides printing: the user's class and function by name.

What belongs here: importing ``module:attr`` the way ``python -m`` finds modules (the current
directory first on ``sys.path``, after any ``--path`` directories), and the lines that describe
a :class:`MigrationReport`. The command itself is in ``_cli``, the only module that prints.
"""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Sequence
from typing import Any

from journalstate._migrate import Change
from journalstate._migrate_run import MigrationReport


class LoadError(Exception):
    """``module:attr`` cannot be imported; the message is one line for the user."""


def load(spec: str, paths: Sequence[str] = ()) -> Any:
    """The object ``spec`` ("package.module:Name" or "module:Outer.Name") names.

    The directories in ``paths``, then the current directory, are put first on ``sys.path``.

    Raises:
        LoadError: malformed spec, the module does not import, or has no such attribute.
    """
    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name or not attr:
        raise LoadError(f"{spec!r}: expected module:attribute, e.g. myapp.state:State")
    for directory in reversed([*paths, os.getcwd()]):
        if directory in sys.path:
            sys.path.remove(directory)
        sys.path.insert(0, directory)
    try:
        value: Any = importlib.import_module(module_name)
    except Exception as e:  # the user's module may raise anything while importing
        raise LoadError(f"cannot import {module_name!r}: {type(e).__name__}: {e}") from None
    for part in attr.split("."):
        try:
            value = getattr(value, part)
        except AttributeError:
            raise LoadError(f"{spec!r}: module {module_name!r} has no {attr!r}") from None
    return value


_VERBS = {
    Change.KEPT: "kept",
    Change.WIDENED: "widened",
    Change.ADDED: "added",
    Change.DROPPED: "dropped",
    Change.CONVERTED: "converted",
}


def report_lines(report: MigrationReport, class_name: str) -> list[str]:
    """The human-readable report of a migration (or a dry run)."""
    if report.dry_run:
        head = f"would migrate to {class_name}"
    elif report.migrated:
        head = f"migrated to {class_name}"
    else:
        head = f"already {class_name}'s layout: nothing to migrate"
    lines = [f"{report.path}: {head} (seq {report.seq})"]
    width = max([len(c.path) for c in report.changes] + [5])
    for c in report.changes:
        if c.change is Change.ADDED:
            detail = f"{c.new_type} = {c.value!r}"
        elif c.change is Change.DROPPED:
            detail = f"{c.old_type}"
        elif c.old_type is None or c.old_type == c.new_type:
            detail = f"{c.new_type}"
        else:
            detail = f"{c.old_type} -> {c.new_type}"
        lines.append(f"  {_VERBS[c.change]:<10}{c.path:<{width}}  {detail}")
    if report.journal_size != report.old_journal_size:
        lines.append(f"journal: {report.journal_size} bytes (was {report.old_journal_size})")
    return lines
