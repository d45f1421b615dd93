"""The `journalstate` command line: recover, backup, check, dump, info, log, migrate, demo, bench.

The only place that prints or exits. What belongs here: the argument parser, ``main`` (parse,
run the command, map every failure to one line on stderr and a documented exit code, never a
traceback) and the console entry point. The commands themselves are in ``_commands``.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from typing import NoReturn, TextIO

import journalstate as js
from journalstate._commands import (
    EXIT_BUSY,
    EXIT_CORRUPT,
    EXIT_OK,
    EXIT_TORN,
    EXIT_UNRECOVERABLE,
    EXIT_USAGE,
    CommandFailed,
    cmd_backup,
    cmd_bench,
    cmd_check,
    cmd_demo,
    cmd_dump,
    cmd_info,
    cmd_log,
    cmd_recover,
    exit_code,
)
from journalstate._migrate_cli import add_migrate_arguments, cmd_migrate
from journalstate._replicate_cli import add_replica_commands

# The exit codes are part of the command's interface (docs/cli.md): importable from here too.
__all__ = [
    "EXIT_BUSY",
    "EXIT_CORRUPT",
    "EXIT_OK",
    "EXIT_TORN",
    "EXIT_UNRECOVERABLE",
    "EXIT_USAGE",
    "add_bench_arguments",
    "build_parser",
    "main",
    "run",
]


# --- parser ---------------------------------------------------------------------------------------

EXIT_CODES = """exit codes:
  0  clean: recovery dropped and ignored nothing
  1  a torn tail dropped or an invalid slot ignored (a write cut short by a crash)
  2  usage error, missing file, or not a journalstate store
  3  corruption found, or damage the --mode refuses
  4  unrecoverable
  5  locked by a live writer, or no permission
  141  stdout is a pipe whose reader went away (nothing is printed)"""

EXAMPLES = """examples:
  journalstate check state.jst
  journalstate recover state.jst --output repaired.jst --mode salvage
  journalstate backup state.jst state-copy.jst
  journalstate dump state.jst --json"""


_BENCH_HELP = "measure what each durability mode costs, against raw floors and peers"
_BENCH_EPILOG = """example:
  journalstate bench /var/tmp --peers --plot bench.svg

exit codes:
  0  measured
  2  usage error (e.g. the directory does not exist)"""


def _count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {value}")
    return value


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of seconds, got {text!r}") from None
    if not value >= 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a finite number >= 0, got {text}")
    return value


class _Parser(argparse.ArgumentParser):
    """An ArgumentParser whose usage errors are one line on stderr, like every other error."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"journalstate: {message} (see `{self.prog} --help`)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="journalstate",
        description="Inspect, check and repair journalstate store files.",
        epilog=f"{EXAMPLES}\n\n{EXIT_CODES}",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"journalstate {js.__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    def add(
        name: str, help: str, example: str, func: Callable[..., int]
    ) -> argparse.ArgumentParser:
        p = sub.add_parser(
            name,
            help=help,
            description=help,
            epilog=f"example:\n  {example}\n\n{EXIT_CODES}",
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        p.add_argument("--json", action="store_true", help="print one JSON document")
        p.set_defaults(func=func)
        return p

    modes = [m.value for m in js.RecoveryMode]
    _add_recover_command(add, modes)
    p = add(
        "backup",
        "write a consistent copy of a store, live or not, into a new file",
        "journalstate backup state.jst /backups/state-1.jst",
        cmd_backup,
    )
    p.add_argument("source", metavar="SRC", help="the store (a live writer may hold it)")
    p.add_argument("dest", metavar="DEST", help="the new file; nothing may exist there")
    p = add("check", "read-only integrity check", "journalstate check state.jst", cmd_check)
    p.add_argument("path")
    p = add("dump", "print the recovered state", "journalstate dump state.jst --json", cmd_dump)
    p.add_argument("path")
    p.add_argument("--generation", type=int, help="the state stored in the slot of generation N")
    p.add_argument("--mode", choices=modes, default="tolerate-tail")
    p = add("info", "header, schema, slots and journal fill", "journalstate info s.jst", cmd_info)
    p.add_argument("path")
    p = add("log", "transactions in the journal, oldest first", "journalstate log s.jst", cmd_log)
    p.add_argument("path")
    p.add_argument("--limit", type=_count, help="only the last N transactions")
    p.add_argument(
        "--follow",
        action="store_true",
        help="then print each new commit as it happens (with --json: one object per line)",
    )
    p.add_argument(
        "--timeout",
        type=_seconds,
        metavar="SECONDS",
        help="with --follow: stop after SECONDS without a new commit (default: never)",
    )
    p = add(
        "migrate",
        "change the store's schema to a new class, or resize its journal, crash-safely",
        "journalstate migrate state.jst myapp.state:State --drop old_total --dry-run",
        cmd_migrate,
    )
    add_migrate_arguments(p, _count)
    add_replica_commands(add, _count)
    p = add("demo", "SIGKILL and simulated OS crashes, explained", "journalstate demo", cmd_demo)
    p.add_argument("--seed", type=int, help="seed for the random choices")
    _add_replicate_command(add)
    _add_bench_command(sub.add_parser)
    return parser


def _key_value(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    return key, value


def _positive_seconds(text: str) -> float:
    value = _seconds(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be a number of seconds > 0, got {text}")
    return value


def _add_replicate_command(add: Callable[..., argparse.ArgumentParser]) -> None:
    """The ``replicate`` command (the sidecar): its help and arguments."""
    p = add(
        "replicate",
        "ship a store another process writes to object storage, until SIGINT or SIGTERM",
        "journalstate replicate state.jst s3://bucket/state --interval 1",
        _cmd_replicate,
    )
    p.add_argument("path", metavar="PATH", help="the store (its writer may be running)")
    p.add_argument("url", metavar="URL", help="s3://, gs://, az://, file:///... prefix")
    p.add_argument(
        "--interval",
        type=_positive_seconds,
        default=1.0,
        metavar="SECONDS",
        help="seconds between two uploads (default 1)",
    )
    p.add_argument("--once", action="store_true", help="ship what is committed now, then exit")
    p.add_argument(
        "--option",
        "-o",
        type=_key_value,
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="an object store option, as for `restore` (e.g. aws_endpoint=http://127.0.0.1:9000)",
    )
    p.epilog = (
        f"example:\n  journalstate replicate state.jst s3://bucket/state\n\n{_REPLICATE_CODES}"
    )


_REPLICATE_CODES = """exit codes:
  0  stopped (SIGINT, SIGTERM, or --once done) with everything it read shipped
  2  usage error: a bad option or URL, obstore missing, no store at PATH, or a prefix that
     holds another store's generations
  5  the object store still failed when it stopped (what was shipped stays restorable)"""


def _cmd_replicate(args: argparse.Namespace, out: TextIO) -> int:
    from journalstate.replicate._sidecar import report, run_sidecar

    done, shipper = run_sidecar(
        args.path, args.url, interval=args.interval, once=args.once, options=dict(args.option)
    )
    if not done:
        status = shipper.status()
        raise CommandFailed(
            EXIT_BUSY,
            f"{args.url}: stopped with commits not shipped (shipped seq {status.shipped_seq}; "
            f"last error: {status.last_error})",
        )
    report(shipper, args.json, out)
    return EXIT_OK


def _add_recover_command(add: Callable[..., argparse.ArgumentParser], modes: list[str]) -> None:
    """The ``recover`` command: its help and arguments."""
    p = add(
        "recover",
        "run recovery and repair the store in place (or into --output)",
        "journalstate recover state.jst --output repaired.jst --mode salvage",
        cmd_recover,
    )
    p.add_argument("path")
    p.add_argument(
        "--output", metavar="NEW", help="write the recovered state into a new store here instead"
    )
    p.add_argument("--mode", choices=modes, default="tolerate-tail")
    p.add_argument("--previous-generation", action="store_true", help="roll back to the older slot")
    p.add_argument("--dry-run", action="store_true", help="say what would be done, change nothing")


def _add_bench_command(add_parser: Callable[..., argparse.ArgumentParser]) -> None:
    """The ``bench`` command: its own help, no ``--json``, and the benchmark's arguments."""
    p = add_parser(
        "bench",
        help=_BENCH_HELP,
        description=_BENCH_HELP,
        epilog=_BENCH_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_bench_arguments(p)
    p.set_defaults(func=cmd_bench)


def add_bench_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the options of ``journalstate bench`` to ``parser``.

    They are here, not in ``journalstate.bench``, so that building the parser for any command
    does not load the benchmark.
    """
    parser.add_argument(
        "dir",
        nargs="?",
        default=".",
        help="directory on the disk to measure (default: the current one); files go into a "
        "temporary subdirectory, removed at the end",
    )
    parser.add_argument("--quick", action="store_true", help="a few seconds instead of minutes")
    parser.add_argument(
        "--peers", action="store_true", help="also measure sqlite3, LMDB and the rename idiom"
    )
    parser.add_argument("--json", action="store_true", help="print one JSON document")
    parser.add_argument("--plot", metavar="FILE", help="draw commits/s into FILE.svg or FILE.png")
    parser.add_argument(
        "--threads", type=int, default=8, help="threads for the group-commit row (default 8)"
    )
    parser.add_argument(
        "--seconds", type=float, help="seconds per timed run (default 1, 0.2 with --quick)"
    )
    parser.add_argument("--repeat", type=int, help="timed runs per row (default 5, 3 with --quick)")
    parser.add_argument(
        "--large-mib", type=float, default=64, help="size of the large state in MiB (default 64)"
    )


def _say(text: str) -> None:
    """Write ``text`` on stderr; with stderr closed, say nothing (the exit code still tells)."""
    if sys.stderr is None:
        return
    try:
        sys.stderr.write(text)
        sys.stderr.flush()
    except (OSError, ValueError):
        pass


def _silence_stdout() -> None:
    """Point stdout at /dev/null, so the flush at exit cannot fail again on a broken pipe."""
    try:
        null = os.open(os.devnull, os.O_WRONLY)
        os.dup2(null, sys.stdout.fileno())
        os.close(null)
    except (OSError, ValueError, AttributeError):
        pass


def main(argv: Sequence[str] | None = None, out: TextIO | None = None) -> int:
    """Run the command line; returns the exit code."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:  # argparse's way of reporting usage errors and --help
        return int(e.code) if isinstance(e.code, int) else EXIT_USAGE
    if args.command is None:
        _say(parser.format_help())
        return EXIT_USAGE
    out = sys.stdout if out is None else out
    if out is None:  # the process was started with descriptor 1 closed
        _say("journalstate: standard output is closed; nothing was done\n")
        return EXIT_USAGE
    try:
        code: int = args.func(args, out)
        out.flush()  # a broken pipe shows here, not in the interpreter's flush at exit
        return code
    except CommandFailed as e:
        _say(f"journalstate: {e}\n")
        return e.code
    except js.JournalStateError as e:
        _say(f"journalstate: {e}\n")
        return exit_code(e)
    except BrokenPipeError:
        # Whoever read stdout went away (`journalstate log s.jst | head`): nothing to say.
        # 141 is what a shell reports for a process that SIGPIPE ended.
        if out is sys.stdout:
            _silence_stdout()
        return 141
    except OSError as e:
        where = f"{e.filename}: " if e.filename else ""
        _say(f"journalstate: {where}{e.strerror or e}\n")
        return EXIT_BUSY
    except KeyboardInterrupt:
        _say("journalstate: interrupted\n")
        return 130


def _hold_standard_descriptors() -> None:
    """Put /dev/null on descriptors 0-2 where they are closed (sys.stdout etc. stay None).

    Otherwise the store file could be opened as descriptor 1 or 2, where any stray write
    meant for the terminal would land in the store.
    """
    for fd in (0, 1, 2):
        try:
            os.fstat(fd)
        except OSError:
            try:
                os.open(os.devnull, os.O_RDWR)  # takes the lowest free descriptor: fd
            except OSError:
                return


def run() -> None:
    """Console entry point."""
    _hold_standard_descriptors()
    sys.exit(main())
