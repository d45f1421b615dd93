"""The `journalstate` command: recover, check, dump, info, log, demo, bench.

The only module that prints or exits. Each command maps its outcome to one of the documented
exit codes (docs/cli.md); bad input is one line on stderr, never a traceback. The benchmark
(``journalstate.bench``) and the demo (``journalstate.demo``, which runs the simulated disk of
``journalstate.testing``) are imported inside their own commands, so no store command loads
them (tests/test_layering_cli.py).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, NoReturn, TextIO

import journalstate as js
from journalstate import _inspect
from journalstate._io import OsStorage, copy_store_file
from journalstate._recovery import RecoveryReport

EXIT_OK = 0
"""Recovery dropped nothing and ignored nothing."""
EXIT_TORN = 1
"""Recovery dropped a torn tail or ignored an invalid slot: a write a crash cut short."""
EXIT_USAGE = 2
"""Usage error, missing file, or not a journalstate store."""
EXIT_CORRUPT = 3
"""Recovery found corruption, or refused damage its --mode does not accept."""
EXIT_UNRECOVERABLE = 4
"""No consistent state can be recovered."""
EXIT_BUSY = 5
"""The store is locked by a live writer, or the file cannot be accessed (permissions)."""


class _Fail(Exception):
    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code


def _exit_code(error: BaseException) -> int:
    if isinstance(error, js.Unrecoverable | js.TruncatedStore):
        return EXIT_UNRECOVERABLE
    if isinstance(error, js.StoreCorrupt):
        return EXIT_CORRUPT
    if isinstance(error, js.StoreLocked):
        return EXIT_BUSY
    if isinstance(error, js.NotAStore | js.StoreNotFound | js.UnsafePath | js.UnsupportedVersion):
        return EXIT_USAGE
    if isinstance(error, js.NoPreviousGeneration | js.InvalidArgument | js.UnsupportedPlatform):
        return EXIT_USAGE
    if isinstance(error, js.CounterExhausted):
        return EXIT_UNRECOVERABLE
    return EXIT_BUSY


def _report_code(report: RecoveryReport) -> int:
    if report.corruption:
        return EXIT_CORRUPT
    if report.torn_tail or not all(s.valid for s in report.slots):
        return EXIT_TORN
    return EXIT_OK


@contextmanager
def _open(path: str, **kwargs: Any) -> Iterator[js.Store[Any]]:
    try:
        store = js.open(path, None, **kwargs)
    except js.StoreNotFound:
        raise _Fail(EXIT_USAGE, f"{path}: no such file") from None
    except js.StoreLocked as e:
        who = f" (pid {e.holder_pid})" if e.holder_pid is not None else ""
        raise _Fail(
            EXIT_BUSY,
            f"{path}: locked by a live writer{who}; wait for it to close the store or stop "
            "it, then run this again (`journalstate check` and `dump` read it without the lock)",
        ) from None
    except js.JournalStateError as e:
        raise _Fail(_exit_code(e), f"{e}{_hint(e)}") from None
    try:
        yield store
    finally:
        store.close()


def _hint(error: js.JournalStateError) -> str:
    """What to run next after a refused recovery, unless the message already says it."""
    if not isinstance(error, js.StoreCorrupt) or isinstance(error, js.Unrecoverable):
        return ""
    text = str(error)
    report = error.report
    if report is not None and report.mode is js.RecoveryMode.STRICT and not report.corruption:
        # Only a torn tail or an invalid slot: what a crash leaves, and the default mode takes.
        if "tolerate-tail" in text:
            return ""
        return " (a crash leaves this; the default --mode tolerate-tail accepts it)"
    if "--mode salvage" in text:
        return ""
    return " (run `journalstate recover --mode salvage` to keep the state before it)"


def _emit(out: TextIO, args: argparse.Namespace, data: Any, human: Callable[[], None]) -> None:
    if args.json:
        json.dump(_inspect.jsonable(data), out, indent=2, sort_keys=False)
        out.write("\n")
    else:
        human()


def _show(value: Any, width: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= width else text[: width - 3] + "..."


def _say_report(out: TextIO, report: RecoveryReport) -> None:
    p = out.write
    p(f"slot chosen       {report.slot} (generation {report.generation}, epoch {report.epoch})\n")
    p(f"state             seq {report.seq} (slot covers seq {report.base_seq})\n")
    p(f"records replayed  {report.records_replayed} ({report.bytes_replayed} bytes)\n")
    if report.torn_tail:
        p(
            f"torn tail         {report.torn_tail_bytes} bytes dropped at offset "
            f"{report.torn_tail_offset}\n"
        )
    else:
        p("torn tail         none\n")
    for s in report.slots:
        status = "valid" if s.valid else f"INVALID ({s.reason.value if s.reason else '?'})"
        gen = f"generation {s.generation}" if s.generation is not None else "-"
        p(f"slot {s.index}            {status}, {gen}\n")
    if not report.corruption:
        p("corruption        none\n")
    for d in report.corruption:
        p(f"CORRUPTION        {d.region} at offset {d.offset}: {d.reason.value}\n")
        p(f"                  {d.detail} ({d.bytes_dropped} bytes dropped)\n")


# --- commands ------------------------------------------------------------------------------------


def cmd_info(args: argparse.Namespace, out: TextIO) -> int:
    with _open(args.path, readonly=True, recovery="salvage") as store:
        data = _inspect.info(store, os.path.getsize(args.path))

    def human() -> None:
        p = out.write
        h = data["header"]
        p(f"file        {data['path']} ({h['file_size']} bytes)\n")
        p(f"format      version {h['format_version']}, page size {h['page_size']}\n")
        p(f"file id     {h['file_id']}\n")
        p("regions     name       offset        size\n")
        for r in h["regions"]:
            p(f"            {r['name']:<8}{r['offset']:>9}{r['size']:>12}\n")
        p(f"schema      {data['schema']['name']}, {h['state_size']} bytes\n")
        p("            offset    size  type               field\n")
        for f in data["schema"]["fields"]:
            p(f"            {f['offset']:>6}{f['size']:>8}  {f['type']:<18} {f['name']}\n")
        for s in data["slots"]:
            if s["valid"]:
                desc = f"generation {s['generation']}, epoch {s['epoch']}, seq {s['seq']}, crc ok"
            else:
                desc = f"INVALID ({s['reason']})"
            p(f"slot {s['index']}      {desc}\n")
        j = data["journal"]
        p(
            f"journal     {j['fill']:.1%} full ({j['live_bytes']} of {j['size']} bytes), "
            f"{j['records']} records after the newest slot, next seq {j['next_seq']}\n"
        )
        if j["fill"] > 0.5:
            p("            (a writer would checkpoint now; opening for writing does so)\n")

    _emit(out, args, data, human)
    return _report_code(store.recovery)


def cmd_check(args: argparse.Namespace, out: TextIO) -> int:
    progress = sys.stderr is not None and sys.stderr.isatty() and not args.json
    if progress:
        sys.stderr.write(f"checking {args.path}...\r")
    with _open(args.path, readonly=True, recovery="salvage") as store:
        report = store.recovery
    if progress:
        sys.stderr.write(" " * 60 + "\r")
    code = _report_code(report)
    verdict = {
        EXIT_OK: "clean",
        EXIT_TORN: "recoverable after a crash (torn tail or torn slot)",
        EXIT_CORRUPT: "CORRUPTION found",
    }[code]
    data = {
        "path": args.path,
        "verdict": verdict,
        "exit_code": code,
        **_inspect.report_dict(report),
    }

    def human() -> None:
        out.write(f"{args.path}: {verdict}\n")
        _say_report(out, report)

    _emit(out, args, data, human)
    return code


def cmd_dump(args: argparse.Namespace, out: TextIO) -> int:
    with _open(args.path, readonly=True, recovery=args.mode) as store:
        report = store.recovery
        if args.generation is None:
            state: Any = _inspect.state_dict(store.state)
            generation = report.generation
            seq = report.seq
        else:
            found = [
                (s, b) for s, b in _inspect.slot_states(store) if s.generation == args.generation
            ]
            if not found or found[0][1] is None:
                have = [s.generation for s, _ in _inspect.slot_states(store) if s.valid]
                raise _Fail(
                    EXIT_USAGE,
                    f"{args.path}: generation {args.generation} is not reachable "
                    f"(valid slots hold generations {have})",
                )
            status, image = found[0]
            assert image is not None
            assert status.head is not None
            state = store.schema.decode_dict(image)
            generation, seq = args.generation, status.head.seq
    data = {"path": args.path, "generation": generation, "seq": seq, "state": state}

    def human() -> None:
        out.write(f"# {args.path}: generation {generation}, seq {seq}\n")
        _print_tree(out, state, "")

    _emit(out, args, data, human)
    return _report_code(report)


def _print_tree(out: TextIO, value: Any, prefix: str) -> None:
    if isinstance(value, dict):
        for key, item in value.items():
            _print_tree(out, item, f"{prefix}.{key}" if prefix else key)
    else:
        out.write(f"{prefix} = {value!r}\n")


def cmd_log(args: argparse.Namespace, out: TextIO) -> int:
    with _open(args.path, readonly=True, recovery="salvage") as store:
        entries = _inspect.history(store)
        report = store.recovery
    if args.limit is not None:
        entries = entries[-args.limit :] if args.limit > 0 else []
    data = {
        "path": args.path,
        "transactions": [
            {
                "seq": e.seq,
                "generation": e.generation,
                "epoch": e.epoch,
                "offset": e.offset,
                "size": e.size,
                "changes": [{"field": c.field, "old": c.old, "new": c.new} for c in e.changes],
            }
            for e in entries
        ],
    }

    def human() -> None:
        if not entries:
            out.write("no transactions in the journal\n")
        for e in entries:
            out.write(f"seq {e.seq}  generation {e.generation}  offset {e.offset}\n")
            for c in e.changes:
                out.write(f"    {c.field}: {_show(c.old, 30)} -> {_show(c.new, 30)}\n")

    _emit(out, args, data, human)
    return _report_code(report)


def cmd_recover(args: argparse.Namespace, out: TextIO) -> int:
    target = args.path
    if args.output is not None and not args.dry_run:
        target = _copy(args.path, args.output)
    kwargs: dict[str, Any] = {
        "recovery": args.mode,
        "previous_generation": args.previous_generation,
    }
    if args.dry_run:
        kwargs["readonly"] = True
    try:
        with _open(target, **kwargs) as store:
            report = store.recovery
    except BaseException as e:
        if target != args.path:
            # Nothing was repaired: leave no copy behind, and name the file the user gave.
            os.unlink(target)
            if isinstance(e, _Fail) and str(e).startswith(f"{target}:"):
                raise _Fail(e.code, args.path + str(e)[len(target) :]) from None
        raise
    action = "would recover" if args.dry_run else "recovered"
    data = {
        "path": args.path,
        "output": args.output,
        "dry_run": args.dry_run,
        **_inspect.report_dict(report),
    }

    def human() -> None:
        where = f" into {args.output}" if args.output and not args.dry_run else ""
        out.write(f"{args.path}: {action}{where}\n")
        _say_report(out, report)
        if args.dry_run:
            return
        if args.previous_generation:
            out.write("rolled back to the previous generation and made it durable\n")
            return
        cut = ""
        if report.torn_tail:
            cut = " and cut the torn tail"
        elif any(d.region == "journal" for d in report.corruption):
            cut = " and cut the journal after the damage"
        out.write(f"wrote a fresh checkpoint (generation {report.generation + 1}){cut}\n")

    _emit(out, args, data, human)
    return _report_code(report)


def _copy(source: str, dest: str) -> str:
    """Copy a store file to a new path atomically (the copy is a crash image of the source).

    The source is opened like every other command opens a store: never through a symbolic
    link, and only when it is a regular file. Nothing at ``dest`` is followed or replaced,
    a dangling symbolic link included.
    """
    if OsStorage().exists(dest):
        raise _Fail(EXIT_USAGE, f"{dest}: already exists; choose a new --output path")
    directory = os.path.dirname(os.path.abspath(dest))
    if not os.path.isdir(directory):
        raise _Fail(EXIT_USAGE, f"{dest}: directory {directory} does not exist")
    try:
        copied = copy_store_file(source, dest)
    except js.StoreNotFound:
        raise _Fail(EXIT_USAGE, f"{source}: no such file") from None
    if not copied:  # something appeared at dest meanwhile
        raise _Fail(EXIT_USAGE, f"{dest}: already exists; choose a new --output path")
    return dest


def cmd_bench(args: argparse.Namespace, out: TextIO) -> int:
    if not os.path.isdir(args.dir):
        raise _Fail(EXIT_USAGE, f"{args.dir}: no such directory")
    from journalstate.bench.run import run  # the benchmark loads only for this command

    return run(args, out)


def cmd_demo(args: argparse.Namespace, out: TextIO) -> int:
    lines: list[str] = []

    def say(line: str) -> None:
        lines.append(line)
        if not args.json:
            out.write(line + "\n")
            out.flush()

    from journalstate.demo import run  # the demo and the simulated disk load only here

    ok = run(say, seed=args.seed)
    if args.json:
        json.dump({"ok": ok, "lines": lines}, out, indent=2)
        out.write("\n")
    return EXIT_OK if ok else EXIT_CORRUPT


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
    p = add(
        "recover",
        "run recovery and repair the store in place (or into --output)",
        "journalstate recover state.jst --output repaired.jst --mode salvage",
        cmd_recover,
    )
    p.add_argument("path")
    p.add_argument("--output", metavar="NEW", help="write the repaired store here instead")
    p.add_argument("--mode", choices=modes, default="tolerate-tail")
    p.add_argument("--previous-generation", action="store_true", help="roll back to the older slot")
    p.add_argument("--dry-run", action="store_true", help="say what would be done, change nothing")
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
    p = add("demo", "SIGKILL and simulated OS crashes, explained", "journalstate demo", cmd_demo)
    p.add_argument("--seed", type=int, help="seed for the random choices")
    p = sub.add_parser(
        "bench",
        help=_BENCH_HELP,
        description=_BENCH_HELP,
        epilog=_BENCH_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_bench_arguments(p)
    p.set_defaults(func=cmd_bench)
    return parser


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
    except _Fail as e:
        _say(f"journalstate: {e}\n")
        return e.code
    except js.JournalStateError as e:
        _say(f"journalstate: {e}\n")
        return _exit_code(e)
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
