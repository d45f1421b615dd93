"""Backups: a consistent copy of a store, live or not, written as a fresh store file.

What belongs here: :func:`backup` and its report. The source is opened read-only (no lock: its
writer keeps running), and the state its recovery returns, one committed state, is written
with its seq into a new store file laid out by ``_migrate_run.new_store_chunks`` and created
by ``_io.OsStorage.create`` (a temporary name, synced, linked into place, the directory
synced). ``journalstate backup`` and ``journalstate recover --output`` both run it. Every crash
window is commented where it opens and listed in docs/design.md ("Backups").
"""

from __future__ import annotations

import os
from typing import Any

import attrs

from journalstate._errors import BadDestination, DestinationExists
from journalstate._format import check_counters
from journalstate._header import Header
from journalstate._io import OsStorage
from journalstate._migrate_run import new_store_chunks
from journalstate._open import open as open_path
from journalstate._recovery import RecoveryMode
from journalstate._report import RecoveryReport
from journalstate._storage import Storage
from journalstate._store import Store
from journalstate._tempfiles import remove_if_written


@attrs.frozen
class BackupReport:
    """What :func:`backup` wrote."""

    source: str
    """The store that was read."""
    path: str
    """The new store file."""
    seq: int
    """The seq of the state copied: the source's last commit when it was read."""
    file_size: int
    """The new file's size in bytes."""
    generation: int
    """The generation of the new file's newer slot (it continues the source's)."""
    recovery: RecoveryReport
    """What recovery found in the source (its torn tail, damage, the slot it started from)."""


def backup(
    src_path: str | os.PathLike[str],
    dest_path: str | os.PathLike[str],
    *,
    recovery: RecoveryMode | str = RecoveryMode.TOLERATE_TAIL,
    previous_generation: bool = False,
) -> BackupReport:
    """Write a consistent copy of the store at ``src_path`` into the new file ``dest_path``.

    The source is opened read-only, without its writer lock, so a live writer goes on
    committing meanwhile; its recovered state is one state the writer committed (never a mixture
    of two moments, which a byte copy of a live file can be). The copy is a fresh store: the
    same schema, state size and journal size, both slots holding that state at its seq, an empty
    journal, and a new random file id (a backup is another file, with its own history once a
    writer opens it, so no tool may take it for the source). Opening it gives that state and seq
    with a clean recovery report. The source is never written.

    The copy is written under a temporary name (``.jst-<16 hex>.tmp``) in the destination's
    directory, synced, linked to ``dest_path`` (a link, unlike a rename, never replaces what
    appeared there meanwhile), and the directory is synced.

    Args:
        src_path: the store to copy (live or closed; never through a symbolic link).
        dest_path: the new file; nothing may exist there, and its directory must.
        recovery: how much damage the source's recovery accepts (as for :func:`journalstate.open`:
            a damaged store can be copied with ``"salvage"``).
        previous_generation: copy the state of the source's older slot.

    Returns:
        The report. When it returns, the copy is durable at ``dest_path``.

    Raises:
        DestinationExists: something (a symbolic link included) is at ``dest_path``.
        BadDestination: the destination's directory is missing or not a directory.
        NoSpace: no room for the copy. And what a read-only :func:`journalstate.open` of the
            source raises (StoreNotFound, NotAStore, UnsafePath, StoreCorrupt, Unrecoverable...),
            or CounterExhausted when no writer could open the copy. On any error nothing is
            left at ``dest_path`` and no temporary file remains.
    """
    source, dest = os.fspath(src_path), os.fspath(dest_path)
    storage = OsStorage()
    check_destination(storage, dest)
    store: Store[Any]
    with open_path(
        source, None, readonly=True, recovery=recovery, previous_generation=previous_generation
    ) as store:
        # One committed state and its seq, as recovery returned them: a read-only store never
        # moves on its own, so these belong together whatever the writer does meanwhile.
        report = store.recovery
        seq = store.seq
        image = bytes(store.state_image())
        schema = store.schema
        journal_size = store.header.journal_size
    # The copy's first writer takes the next epoch and counts on from these counters.
    check_counters(source, max_epoch=report.epoch, max_generation=report.generation + 2, seq=seq)
    header, chunks = new_store_chunks(
        schema, image, journal_size, seq=seq, generation=report.generation, epoch=report.epoch
    )
    create_store_file(storage, dest, header, [(offset, bytes(data)) for offset, data in chunks])
    return BackupReport(
        source=source,
        path=dest,
        seq=seq,
        file_size=header.file_size,
        generation=report.generation + 2,
        recovery=report,
    )


def check_destination(storage: Storage, dest: str) -> None:
    """Refuse a destination where a new store file cannot go, before anything is read.

    Raises:
        DestinationExists: something is at ``dest`` (a symbolic link is not followed).
        BadDestination: its directory is missing or not a directory.
    """
    if storage.exists(dest):
        link = " (a symbolic link, never followed)" if os.path.islink(dest) else ""
        raise DestinationExists(
            dest, f"already exists{link}; choose a new path (nothing was written)"
        )
    directory = os.path.dirname(os.path.abspath(dest))
    if not os.path.isdir(directory):
        what = "is not a directory" if os.path.lexists(directory) else "does not exist"
        raise BadDestination(dest, f"directory {directory} {what}")


def create_store_file(
    storage: OsStorage, dest: str, header: Header, chunks: list[tuple[int, bytes]]
) -> None:
    """Create the new store file at ``dest``; on any failure leave nothing there."""
    try:
        # Crash window: see OsStorage.create. Until the link, only a temporary file exists
        # (a stray once this process is dead, removed by the next writable open of a store in
        # the directory) and nothing is at `dest`; after it, `dest` holds the complete copy
        # (synced before the link), durable once the directory sync returns.
        created = storage.create(dest, header.file_size, chunks)
    except BaseException:
        # The link happened and a later step failed (the directory sync, an interrupt): take
        # the copy away again, recognised by its header and so by its random file id.
        remove_if_written(dest, chunks[0][1])
        raise
    if not created:
        raise DestinationExists(dest, "appeared while the copy was written; nothing was written")
