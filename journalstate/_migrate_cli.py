"""The `migrate` command: the user's class and function by name, the arguments, the report.

What belongs here: importing ``module:attr`` the way ``python -m`` finds modules (the current
directory first on ``sys.path``, after any ``--path`` directories), the command's arguments and
``cmd_migrate``, and the lines that describe a :class:`MigrationReport`. The parser and ``main``
are in ``_cli``; the other commands in ``_commands``.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Callable, Sequence
from typing import Any, TextIO

import attrs

import journalstate as js
from journalstate._commands import EXIT_BUSY, EXIT_OK, EXIT_USAGE, CommandFailed, emit
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


def add_migrate_arguments(p: argparse.ArgumentParser, count: Callable[[str], int]) -> None:
    """The `migrate` command's arguments (``count`` parses a non-negative number)."""
    p.add_argument("path")
    p.add_argument("cls", metavar="module:Class", help="the new attrs class")
    p.add_argument("--convert", metavar="module:function", help="builds the new state")
    p.add_argument("--drop", metavar="FIELD", nargs="+", default=[], help="fields to discard")
    p.add_argument("--journal-size", type=count, metavar="N", help="new journal size (bytes)")
    p.add_argument("--dry-run", action="store_true", help="say what would be done, change nothing")
    p.add_argument(
        "--path",
        dest="search_path",
        metavar="DIR",
        action="append",
        default=[],
        help="look for the module here first (then in the current directory)",
    )


def _loaded(args: argparse.Namespace) -> tuple[type[Any], Callable[[Any], Any] | None]:
    """The class and the convert function the arguments name."""
    try:
        cls = load(args.cls, args.search_path)
        convert = None if args.convert is None else load(args.convert, args.search_path)
    except LoadError as e:
        raise CommandFailed(EXIT_USAGE, str(e)) from None
    if not (isinstance(cls, type) and attrs.has(cls)):
        raise CommandFailed(EXIT_USAGE, f"{args.cls}: not an attrs class")
    if convert is not None and not callable(convert):
        raise CommandFailed(EXIT_USAGE, f"{args.convert}: not a function")
    return cls, convert


def cmd_migrate(args: argparse.Namespace, out: TextIO) -> int:
    """`journalstate migrate PATH module:Class`: see docs/cli.md."""
    cls, convert = _loaded(args)
    if not os.path.lexists(args.path):
        raise CommandFailed(EXIT_USAGE, f"{args.path}: no such file")
    try:
        report = js.migrate(
            args.path,
            cls,
            convert=convert,
            drop=args.drop,
            journal_size=args.journal_size,
            dry_run=args.dry_run,
        )
    except js.MigrationRefused as e:
        raise CommandFailed(EXIT_USAGE, str(e)) from None
    except (js.InvalidValue, js.SchemaError) as e:
        raise CommandFailed(EXIT_USAGE, f"{args.path}: {e}") from None
    except js.StoreLocked as e:
        who = f" (pid {e.holder_pid})" if e.holder_pid is not None else ""
        message = f"{args.path}: locked by a live writer{who}; stop it first"
        raise CommandFailed(EXIT_BUSY, message) from None
    except (js.JournalStateError, OSError):
        raise
    except (TypeError, ValueError) as e:
        raise CommandFailed(EXIT_USAGE, f"{args.path}: {e}") from None
    except Exception as e:  # raised by the user's convert function
        message = f"{args.convert}: raised {type(e).__name__}: {e}"
        raise CommandFailed(EXIT_USAGE, message) from None
    data = attrs.asdict(report, recurse=False)
    data["changes"] = [attrs.asdict(c, recurse=False) for c in report.changes]

    def human() -> None:
        for line in report_lines(report, cls.__qualname__):
            out.write(line + "\n")

    emit(out, args, data, human)
    return EXIT_OK
