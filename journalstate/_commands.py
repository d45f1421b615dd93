"""What each `journalstate` command does: open the store, gather, print, choose the exit code.

What belongs here: the exit codes (docs/cli.md), the commands (``cmd_info``, ``cmd_check``,
``cmd_dump``, ``cmd_log``, ``cmd_recover``, ``cmd_backup``, ``cmd_bench``, ``cmd_demo``) and
the text and JSON they print. Each takes the parsed arguments and the output stream and
returns its exit code, or raises ``CommandFailed``. Parsing the command line and running a
command are in ``_cli``. The benchmark (``journalstate.bench``) and the demo
(``journalstate.demo``, which runs the simulated disk of ``journalstate.testing``) are imported
inside their own commands, so no store command loads them (tests/test_layering_cli.py).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, TextIO

import journalstate as js
from journalstate import _inspect
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


class CommandFailed(Exception):
    """A command cannot go on: ``main`` says ``message`` on stderr and exits with ``code``."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code


def exit_code(error: BaseException) -> int:
    """The exit code for a journalstate error (or an unexpected OSError: EXIT_BUSY)."""
    if isinstance(error, js.Unrecoverable | js.TruncatedStore):
        return EXIT_UNRECOVERABLE
    if isinstance(error, js.StoreCorrupt):
        return EXIT_CORRUPT
    if isinstance(error, js.StoreLocked):
        return EXIT_BUSY
    if isinstance(error, js.NotAStore | js.StoreNotFound | js.UnsafePath | js.UnsupportedVersion):
        return EXIT_USAGE
    if isinstance(error, js.BadDestination):  # DestinationExists too
        return EXIT_USAGE
    if isinstance(error, js.NoPreviousGeneration | js.InvalidArgument | js.UnsupportedPlatform):
        return EXIT_USAGE
    if isinstance(error, js.CounterExhausted):
        return EXIT_UNRECOVERABLE
    # Replication (docs/cli.md): a damaged or gapped replica is corruption; a wrong URL, a
    # missing replica or generation, an ambiguous prefix or another store's prefix is the
    # caller's to fix; any other ReplicationError is the object store failing (EXIT_BUSY).
    if isinstance(error, js.ReplicaCorrupt | js.ReplicaGap):
        return EXIT_CORRUPT
    if isinstance(
        error,
        js.BadReplicaURL
        | js.ReplicationUnavailable
        | js.ReplicaNotFound
        | js.ReplicaAmbiguous
        | js.ReplicaConflict,
    ):
        return EXIT_USAGE
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
        raise CommandFailed(EXIT_USAGE, f"{path}: no such file") from None
    except js.StoreLocked as e:
        who = f" (pid {e.holder_pid})" if e.holder_pid is not None else ""
        raise CommandFailed(
            EXIT_BUSY,
            f"{path}: locked by a live writer{who}; wait for it to close the store or stop "
            "it, then run this again (`journalstate check`, `dump` and `backup` read it without "
            "the lock)",
        ) from None
    except js.JournalStateError as e:
        raise CommandFailed(exit_code(e), f"{e}{_hint(e)}") from None
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


def emit(out: TextIO, args: argparse.Namespace, data: Any, human: Callable[[], None]) -> None:
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

    emit(out, args, data, human)
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

    emit(out, args, data, human)
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
                raise CommandFailed(
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

    emit(out, args, data, human)
    return _report_code(report)


def _print_tree(out: TextIO, value: Any, prefix: str) -> None:
    if isinstance(value, dict):
        for key, item in value.items():
            _print_tree(out, item, f"{prefix}.{key}" if prefix else key)
    else:
        out.write(f"{prefix} = {value!r}\n")


def cmd_log(args: argparse.Namespace, out: TextIO) -> int:
    if args.timeout is not None and not args.follow:
        raise CommandFailed(EXIT_USAGE, "--timeout goes with --follow")
    with _open(args.path, readonly=True, recovery="salvage") as store:
        entries = _inspect.history(store)
        report = store.recovery
        if args.limit is not None:
            entries = entries[-args.limit :] if args.limit > 0 else []
        if args.follow:
            return _follow_log(args, out, store, entries, report)
    data = {"path": args.path, "transactions": [_entry_dict(e) for e in entries]}

    def human() -> None:
        if not entries:
            out.write("no transactions in the journal\n")
        for e in entries:
            _say_entry(out, e.seq, f"  generation {e.generation}  offset {e.offset}", e.changes)

    emit(out, args, data, human)
    return _report_code(report)


def _entry_dict(e: _inspect.LogEntry) -> dict[str, Any]:
    return {
        "seq": e.seq,
        "generation": e.generation,
        "epoch": e.epoch,
        "offset": e.offset,
        "size": e.size,
        "changes": [{"field": c.field, "old": c.old, "new": c.new} for c in e.changes],
    }


def _say_entry(out: TextIO, seq: int, where: str, changes: Sequence[_inspect.Change]) -> None:
    out.write(f"seq {seq}{where}\n")
    for c in changes:
        out.write(f"    {c.field}: {_show(c.old, 30)} -> {_show(c.new, 30)}\n")


def _follow_log(
    args: argparse.Namespace,
    out: TextIO,
    store: js.Store[Any],
    entries: list[_inspect.LogEntry],
    report: RecoveryReport,
) -> int:
    """``log --follow``: the journal's transactions, then each new commit as it happens.

    With --json, one object per line (a transaction of the journal, then each commit). Ends
    after --timeout seconds without a commit, or on Ctrl-C (exit code 130). A reader slower
    than the writer may find the commits it has not printed gone from the journal: it says so
    on stderr, with the seqs skipped, and goes on from the newest state.
    """

    def line(data: dict[str, Any]) -> None:
        json.dump(_inspect.jsonable(data), out, sort_keys=False)
        out.write("\n")
        out.flush()

    for e in entries:
        if args.json:
            line(_entry_dict(e))
        else:
            _say_entry(out, e.seq, f"  generation {e.generation}  offset {e.offset}", e.changes)
    out.flush()
    since = store.seq
    before = _inspect.state_dict(store.state)
    while True:
        try:
            for commit in store.changes(since, follow=True, timeout=args.timeout):
                after = _inspect.state_dict(commit.state)
                changes = [
                    _inspect.Change(f, _inspect.leaf(before, f), _inspect.leaf(after, f))
                    for f in commit.changed
                ]
                if args.json:
                    line(
                        {
                            "seq": commit.seq,
                            "changes": [
                                {"field": c.field, "old": c.old, "new": c.new} for c in changes
                            ],
                        }
                    )
                else:
                    _say_entry(out, commit.seq, "", changes)
                    out.flush()
                since, before = commit.seq, after
            return _report_code(report)
        except js.ChangesUnavailable:
            store.refresh()
            sys.stderr.write(
                f"journalstate: commits {since + 1} to {store.seq} were released from the "
                "journal before they could be printed; going on from the newest state\n"
            )
            since, before = store.seq, _inspect.state_dict(store.state)


def cmd_recover(args: argparse.Namespace, out: TextIO) -> int:
    written: js.BackupReport | None = None
    if args.output is not None and not args.dry_run:
        # The source is only read (no lock: a live writer may go on), and its recovered state
        # is written into a fresh store at NEW, as `journalstate backup` writes one.
        written = _backup(
            args.path,
            args.output,
            recovery=args.mode,
            previous_generation=args.previous_generation,
        )
        report = written.recovery
    else:
        kwargs: dict[str, Any] = {
            "recovery": args.mode,
            "previous_generation": args.previous_generation,
        }
        if args.dry_run:
            kwargs["readonly"] = True
        with _open(args.path, **kwargs) as store:
            report = store.recovery
    action = "would recover" if args.dry_run else "recovered"
    data = {
        "path": args.path,
        "output": args.output,
        "dry_run": args.dry_run,
        **_inspect.report_dict(report),
    }

    def human() -> None:
        where = f" into {args.output}" if written is not None else ""
        out.write(f"{args.path}: {action}{where}\n")
        _say_report(out, report)
        if args.dry_run:
            return
        if written is not None:
            what = "the previous generation's state" if args.previous_generation else "the state"
            out.write(
                f"wrote a fresh store holding {what} at seq {written.seq} (generation "
                f"{written.generation}); {args.path} is unchanged\n"
            )
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

    emit(out, args, data, human)
    return _report_code(report)


def _backup(source: str, dest: str, **kwargs: Any) -> js.BackupReport:
    """Run :func:`journalstate.backup`, each failure one line and an exit code."""
    try:
        return js.backup(source, dest, **kwargs)
    except js.StoreNotFound:
        raise CommandFailed(EXIT_USAGE, f"{source}: no such file") from None
    except js.JournalStateError as e:
        raise CommandFailed(exit_code(e), f"{e}{_hint(e)}") from None


def cmd_backup(args: argparse.Namespace, out: TextIO) -> int:
    written = _backup(args.source, args.dest)
    report = written.recovery
    data = {
        "source": written.source,
        "path": written.path,
        "seq": written.seq,
        "file_size": written.file_size,
        "generation": written.generation,
        "recovery": _inspect.report_dict(report),
    }

    def human() -> None:
        out.write(f"{written.source}: backed up into {written.path}\n")
        out.write(
            f"copy              seq {written.seq}, generation {written.generation}, "
            f"{written.file_size} bytes\n"
        )
        _say_report(out, report)

    emit(out, args, data, human)
    # A torn tail or a slot being rewritten is what reading a live writer's store shows (an
    # append or a checkpoint in progress), not a loss: a copy written is a success.
    code = _report_code(report)
    return EXIT_OK if code == EXIT_TORN else code


def cmd_bench(args: argparse.Namespace, out: TextIO) -> int:
    if not os.path.isdir(args.dir):
        raise CommandFailed(EXIT_USAGE, f"{args.dir}: no such directory")
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
