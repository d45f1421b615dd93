"""The storage interface: what the store needs of a disk, and opening a store file through it.

The store talks to a :class:`Storage` (create a file atomically, open it) and a
:class:`StoreFile` (read its header, lock it, map regions); each mapped :class:`Region` owns the
mapped bytes and their sync call. ``_io`` implements these protocols over the real file system;
the simulated disk of ``journalstate.testing`` implements them in memory, which is how crash
tests run the real store over a disk that can lose unsynced pages. Nothing here touches a file.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import Protocol

from journalstate._checksums import Buffer as Buffer  # re-exported: the storage's view
from journalstate._errors import StoreFileError


def _page_size() -> int:
    try:
        import mmap
    except ImportError:  # no mmap here: the store cannot open anything (UnsupportedPlatform)
        return os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096
    return mmap.ALLOCATIONGRANULARITY


PAGE_SIZE: int = _page_size()
"""The unit the operating system maps and syncs in."""


class Region(Protocol):
    """A mapped, page-aligned part of the store file."""

    @property
    def buffer(self) -> Buffer:
        """The mapped bytes, for reading. Never keep slices of it past a call."""
        ...

    def write(self, offset: int, data: bytes | bytearray) -> None:
        """Copy ``data`` into the mapping at ``offset`` (not durable until :meth:`sync`)."""
        ...

    def sync(self, offset: int, length: int) -> None:
        """Make the pages covering ``[offset, offset + length)`` durable (msync, MS_SYNC).

        Raises:
            OSError: the kernel reported a write-back failure; what reached the disk is unknown.
        """
        ...

    def close(self) -> None:
        """Unmap. Writes not synced stay in the page cache (they survive process death)."""
        ...


class StoreFile(Protocol):
    """An open store file."""

    @property
    def size(self) -> int:
        """The file's size in bytes."""
        ...

    def read(self, offset: int, length: int) -> bytes:
        """Read up to ``length`` bytes at ``offset`` (fewer at the end of the file)."""
        ...

    def lock(self, timeout: float) -> None:
        """Take the exclusive writer lock, waiting up to ``timeout`` seconds.

        Raises:
            StoreLocked: another writer holds it.
        """
        ...

    def allocate(self, size: int) -> None:
        """Make sure every block of the file's first ``size`` bytes is allocated.

        Called by a writable open once the header is validated, with the size the header
        declares, so writes through a map can never meet a hole on a full file system.

        Raises:
            NoSpace: the file system has no room for the holes.
        """
        ...

    def map(self, offset: int, length: int, *, writable: bool) -> Region:
        """Map ``length`` bytes at the page-aligned ``offset``."""
        ...

    def close(self) -> None:
        """Close the file; this releases the lock."""
        ...


class Storage(Protocol):
    """Creates and opens store files."""

    def exists(self, path: str) -> bool:
        """Whether anything (file, directory, link) is at ``path``."""
        ...

    def create(self, path: str, size: int, chunks: Iterable[tuple[int, bytes]]) -> bool:
        """Create a file of ``size`` bytes holding ``chunks`` (offset, data), atomically.

        Returns False, creating nothing, if something appeared at ``path`` meanwhile.

        Raises:
            NoSpace: the file system cannot hold ``size`` bytes.
        """
        ...

    def open(self, path: str, *, writable: bool) -> StoreFile:
        """Open an existing store file (never following a symbolic link)."""
        ...


class TemporaryFile(Protocol):
    """A complete, synced store file under a temporary name, locked until it is closed."""

    @property
    def name(self) -> str:
        """The temporary path (in the directory of the store it will replace)."""
        ...

    def replace(self, path: str) -> None:
        """Rename it over ``path`` and sync the directory; durable when this returns."""
        ...

    def close(self) -> None:
        """Remove the temporary name unless :meth:`replace` moved it; release the lock."""
        ...


class ReplacingStorage(Storage, Protocol):
    """A :class:`Storage` that can also replace a store file whole (what a migration needs)."""

    def create_temporary(
        self, path: str, size: int, chunks: Iterable[tuple[int, bytes | bytearray]]
    ) -> TemporaryFile:
        """Write a file of ``size`` bytes holding ``chunks`` under a temporary name next to
        ``path``, sync it, and hold its writer lock.

        Raises:
            NoSpace: the file system cannot hold ``size`` bytes.
        """
        ...

    def clean_temporaries(self, path: str) -> list[str]:
        """Remove the stray temporary files next to ``path`` that no live process holds locked.

        Returns:
            The paths removed.
        """
        ...


def file_replaced(file: StoreFile) -> bool:
    """Whether the path ``file`` was opened by now names another file (or nothing).

    False for a file type that cannot tell.
    """
    check = getattr(file, "replaced", None)
    return bool(check()) if callable(check) else False


def lock_holder(file: StoreFile) -> int | None:
    """The pid of another process holding ``file``'s writer lock, or None.

    None also when no other process holds it, or when the system or the file type cannot
    tell (``/proc/locks`` is Linux's).
    """
    holder = getattr(file, "lock_holder", None)
    if not callable(holder):
        return None
    pid = holder()
    return pid if isinstance(pid, int) else None


_REOPEN_ATTEMPTS = 100


def open_store_file(
    storage: Storage, path: str, *, readonly: bool, lock_timeout: float
) -> StoreFile:
    """Open the file, and for writing take its lock; then make sure ``path`` still names it.

    A migration renames a new store over the path while holding the old file's lock, so a
    writer that was waiting for that lock gets it on a file nobody will read again: it closes
    that file and opens the path anew.

    Raises:
        StoreLocked: another writer holds the lock past ``lock_timeout``.
        StoreFileError: the path was replaced again and again while opening.
    """
    for _ in range(_REOPEN_ATTEMPTS):
        file = storage.open(path, writable=not readonly)
        if readonly:
            return file
        try:
            file.lock(lock_timeout)
            if not file_replaced(file):
                return file
        except BaseException:
            file.close()
            raise
        file.close()
    raise StoreFileError(path, "replaced by another file again and again while opening; retry")
