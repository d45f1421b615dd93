"""Temporary store files on the real file system: created locked, renamed over a store.

What belongs here: the temporary-file protocol a migration uses (and store creation will):
a fixed-length name ``.jst-<16 hex>.tmp`` in the store's directory, created with ``O_EXCL``
and flock'ed at once; the flock is held until the file is renamed over the store (it then is
the store's writer lock) or removed. A file whose flock can be taken belongs to a dead process:
:func:`clean_temporaries` removes those. :class:`journalstate._io.OsStorage` delegates here.
"""

from __future__ import annotations

import contextlib
import errno
import os
from collections.abc import Iterable

from journalstate._errors import NoSpace
from journalstate._io import (
    _ZEROS,
    TemporaryFile,
    _fsync_dir,
    creation_error,
    open_temporary,
    remove_stray_temporaries,
)


def create_temporary(
    path: str, size: int, chunks: Iterable[tuple[int, bytes | bytearray]]
) -> TemporaryFile:
    """Write a file of ``size`` bytes holding ``chunks`` under a temporary name next to
    ``path``, sync it, and hold its flock (see :class:`journalstate._io.ReplacingStorage`)."""
    directory = os.path.dirname(os.path.abspath(path))
    try:
        # Created and flock'ed at once, as store creation does: a cleaner only removes
        # temporaries whose lock it can take.
        tmp, fd = open_temporary(directory)
    except OSError as e:
        raise creation_error(path, directory, e) from e
    temporary = OsTemporary(tmp, fd, directory)
    try:
        written = []
        for offset, data in chunks:
            _write_all(fd, data, offset)
            written.append((offset, len(data)))
        # After the writes, so it only allocates the blocks still missing (the journal, the
        # ends of pages): writing into preallocated (unwritten) extents is slower.
        _allocate_gaps(fd, size, path, written)
        os.fsync(fd)
    except OSError as e:
        temporary.close()
        if e.errno in (errno.ENOSPC, errno.EDQUOT):
            raise NoSpace(path, f"no room for a {size}-byte store ({e.strerror})") from e
        raise
    except BaseException:
        temporary.close()
        raise
    return temporary


_WRITE_STEP = 1 << 20


def _write_all(fd: int, data: bytes | bytearray, offset: int) -> None:
    """pwrite ``data`` at ``offset`` in 1 MiB steps (one huge pwrite is several times slower)."""
    with memoryview(data) as view:
        for start in range(0, len(view), _WRITE_STEP):
            piece = view[start : start + _WRITE_STEP]
            done = 0
            while done < len(piece):
                done += os.pwrite(fd, piece[done:], offset + start + done)


def _allocate_gaps(fd: int, size: int, path: str, written: list[tuple[int, int]]) -> None:
    """Reserve every block of a file whose ``written`` ranges (offset, length) hold data."""
    try:
        os.posix_fallocate(fd, 0, size)
        return
    except OSError as e:
        if e.errno in (errno.ENOSPC, errno.EDQUOT):
            raise NoSpace(path, f"no room for a {size}-byte store ({e.strerror})") from e
        if e.errno not in (errno.EOPNOTSUPP, errno.EINVAL, errno.ENOSYS):
            raise
    # The file system cannot preallocate: zeros written into the gaps allocate them instead.
    position = 0
    for offset, length in [*sorted(written), (size, 0)]:
        for start in range(position, offset, len(_ZEROS)):
            os.pwrite(fd, _ZEROS[: min(len(_ZEROS), offset - start)], start)
        position = max(position, offset + length)


def clean_temporaries(directory: str) -> list[str]:
    """Remove stray temporary store files in ``directory`` whose lock nobody holds.

    The same cleaner a writable open runs (:func:`journalstate._io.remove_stray_temporaries`).

    Returns:
        The paths removed.
    """
    return remove_stray_temporaries(directory)


class OsTemporary:
    """A temporary store file on disk, its flock held through the rename until close()."""

    def __init__(self, name: str, fd: int, directory: str) -> None:
        self._name = name
        self._fd = fd
        self._directory = directory
        self._moved = False

    @property
    def name(self) -> str:
        return self._name

    def replace(self, path: str) -> None:
        # Crash window: the rename is not durable until the directory sync below. An OS crash
        # before it may leave the old name or the new one at `path`, each a complete store
        # (this file's contents were synced before); the temporary name may reappear as a stray.
        os.rename(self._name, path)
        self._moved = True
        _fsync_dir(self._directory)

    def close(self) -> None:
        if self._fd < 0:
            return
        try:
            if not self._moved:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(self._name)
        finally:
            os.close(self._fd)  # releases the lock, which is now the store's writer lock
            self._fd = -1
