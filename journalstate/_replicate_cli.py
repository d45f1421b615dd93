"""The `restore` and `replicas` commands: a store file from a replica, and what a replica holds.

What belongs here: their arguments (``add_replica_commands``), ``cmd_restore`` and
``cmd_replicas``, and the lines that describe a :class:`RestoreReport` and a replica's
generations. The parser and ``main`` are in ``_cli``; exit codes and ``exit_code`` (which maps
the replication errors too) in ``_commands``.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any, TextIO

import attrs

import journalstate as js
from journalstate._commands import EXIT_CORRUPT, EXIT_OK, CommandFailed, emit, exit_code
from journalstate.replicate._listing import GenerationInfo

REPLICA_EXIT_CODES = """exit codes:
  0  restored (replicas: every generation whole)
  2  usage error: a bad URL or option, obstore missing, PATH exists, no replica or generation
     there, no object holding --seq, an ambiguous prefix (choose with --generation)
  3  the replica is damaged: an object fails its checks, or a gap before the seq wanted
     (replicas: a damaged manifest or a gap)
  5  the object store failed (network, permissions), or PATH cannot be written"""


def _option(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    return key, value


def add_replica_commands(
    add: Callable[..., argparse.ArgumentParser], count: Callable[[str], int]
) -> None:
    """Add ``restore`` and ``replicas`` through ``_cli``'s ``add`` (help, --json, exit codes)."""
    p = add(
        "restore",
        "build a new store file from a replica in object storage (S3, GCS, Azure, file://)",
        "journalstate restore s3://bucket/prefix restored.jst --seq 1200",
        cmd_restore,
    )
    p.epilog = _epilog("journalstate restore s3://bucket/prefix restored.jst --seq 1200")
    p.add_argument("url", metavar="URL", help="the replica: s3://bucket/prefix, file:///dir ...")
    p.add_argument("path", metavar="PATH", help="the new file; nothing may exist there")
    p.add_argument("--seq", type=count, metavar="N", help="the state at seq N (point-in-time)")
    p.add_argument("--generation", metavar="G", help="restore from generation G (see `replicas`)")
    _add_options(p)
    p = add(
        "replicas",
        "list a replica's generations, snapshots, segments and the seqs they cover",
        "journalstate replicas s3://bucket/prefix",
        cmd_replicas,
    )
    p.epilog = _epilog("journalstate replicas s3://bucket/prefix --json")
    p.add_argument("url", metavar="URL", help="the replica: s3://bucket/prefix, file:///dir ...")
    _add_options(p)


def _epilog(example: str) -> str:
    return f"example:\n  {example}\n\n{REPLICA_EXIT_CODES}"


def _add_options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--option",
        "-o",
        type=_option,
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="an object store option (e.g. aws_endpoint=http://127.0.0.1:9000, allow_http=true); "
        "the AWS_*, GOOGLE_* and AZURE_* environment variables are read too",
    )


def _restore(url: str, path: str, **kwargs: Any) -> js.RestoreReport:
    try:
        return js.restore(url, path, **kwargs)
    except js.ReplicationError as e:
        raise CommandFailed(exit_code(e), str(e)) from None


def cmd_restore(args: argparse.Namespace, out: TextIO) -> int:
    report = _restore(
        args.url,
        args.path,
        seq=args.seq,
        generation=args.generation,
        options=dict(args.option) or None,
    )
    data = attrs.asdict(report)

    def human() -> None:
        out.write(f"{report.url}: restored into {report.path}\n")
        segments = "segment" if report.segments == 1 else "segments"
        out.write(
            f"state             seq {report.seq}: the snapshot at seq {report.snapshot_seq} "
            f"and {report.records} records in {report.segments} {segments}\n"
        )
        out.write(f"generation        {report.generation}\n")
        out.write(f"file id           {report.file_id} (the replica's: the same store)\n")
        out.write(f"file              {report.file_size} bytes\n")

    emit(out, args, data, human)
    return EXIT_OK


def generation_dict(info: GenerationInfo) -> dict[str, Any]:
    """A generation as ``replicas --json`` prints it."""
    return {
        "generation": info.generation,
        "file_id": info.file_id,
        "first_seq": info.first_seq,
        "last_seq": info.last_seq,
        "newest_seq": info.newest_seq,
        "gaps": [list(g) for g in info.gaps],
        "snapshots": list(info.snapshots),
        "segments": [list(s) for s in info.segments],
        "manifest": info.manifest,
        "problem": info.problem,
    }


def _ranges(pairs: tuple[tuple[int, int], ...]) -> str:
    return ", ".join(f"{a}..{b}" if a != b else f"{a}" for a, b in pairs)


def cmd_replicas(args: argparse.Namespace, out: TextIO) -> int:
    try:
        infos = js.list_replicas(args.url, options=dict(args.option) or None)
    except js.ReplicationError as e:
        raise CommandFailed(exit_code(e), str(e)) from None
    data = {"url": args.url, "generations": [generation_dict(i) for i in infos]}

    def human() -> None:
        if not infos:
            out.write(f"{args.url}: no generations (nothing was shipped here)\n")
            return
        out.write(f"{args.url}: {len(infos)} generation{'s' if len(infos) > 1 else ''}\n")
        for info in infos:
            out.write(f"generation {info.generation}\n")
            m = info.manifest
            if m is None:
                out.write(f"  DAMAGED manifest: {info.problem}\n")
            else:
                previous = m["previous"] or "none"
                out.write(
                    f"  store {m['file_id']}, {m['source']} pid {m['pid']} on {m['host']}, "
                    f"reason {m['reason']}, previous {previous}\n"
                )
            if info.first_seq is None:
                out.write("  no snapshot: nothing to restore from\n")
            else:
                out.write(f"  restorable seqs   {info.first_seq}..{info.last_seq}\n")
            if info.gaps:
                out.write(
                    f"  GAP: seqs {_ranges(info.gaps)} are missing "
                    f"(objects reach seq {info.newest_seq})\n"
                )
            snaps = ", ".join(str(s) for s in info.snapshots) or "none"
            out.write(f"  snapshots at      {snaps}\n")
            out.write(f"  segments          {_ranges(info.segments) or 'none'}\n")

    emit(out, args, data, human)
    whole = all(i.manifest is not None and not i.gaps for i in infos)
    return EXIT_OK if whole else EXIT_CORRUPT
