"""Files on their way to being stores: temporary files and the blocks a store needs.

What belongs here: the names and locks of journalstate's temporary files, the removal of
those their creators left behind, and the allocation of a file's blocks (a new file's, and
the holes of a sparse copy), so that a write through a mapping never meets a missing block.
Opening, locking and mapping a store file are ``_io``'s.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import secrets
import stat
from collections.abc import Iterable

from journalstate._errors import NoSpace, StoreFileError

try:
    import fcntl
except ImportError:  # pragma: no cover - not a POSIX system
    fcntl = None  # type: ignore[assignment]
try:
    import mmap
except ImportError:  # pragma: no cover - no mmap: OsStorage() reports it
    mmap = None  # type: ignore[assignment]

_ZEROS = bytes(1 << 20)
_PAGE = mmap.PAGESIZE if mmap is not None else 4096

TEMPORARY_NAME = re.compile(r"\.jst-[0-9a-f]{16}\.tmp")
"""The names of journalstate's temporary files: short and fixed-length, whatever the target."""


def temporary_path(directory: str) -> str:
    """A fresh temporary file name in ``directory`` (``.jst-<16 hex>.tmp``).

    The name is legal wherever any file name is, and :func:`remove_stray_temporaries`
    recognises it. Create it with :func:`open_temporary`, which also takes its lock.
    """
    return os.path.join(directory, f".jst-{secrets.token_hex(8)}.tmp")


def open_temporary(directory: str) -> tuple[str, int]:
    """Create a new temporary file in ``directory`` and hold ``flock(LOCK_EX)`` on it.

    The lock marks the file as in use: keep the descriptor open until the file is renamed,
    linked and unlinked, or removed. A file whose creator died is unlocked, and the next
    writable open of a store in the directory removes it.

    Returns:
        The path and the open (read-write) descriptor.

    Raises:
        OSError: the file cannot be created.
    """
    while True:
        path = temporary_path(directory)
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        try:
            # Blocks only while a cleaner that found the file unlocked holds it (briefly).
            fcntl.flock(fd, fcntl.LOCK_EX)
            ours = os.fstat(fd)
            try:
                now = os.lstat(path)
            except FileNotFoundError:
                now = None
            if now is not None and (now.st_dev, now.st_ino) == (ours.st_dev, ours.st_ino):
                return path, fd
        except BaseException:
            os.close(fd)
            raise
        os.close(fd)  # a cleaner removed it before we locked it: take another name


def remove_stray_temporaries(directory: str, holding: int | None = None) -> list[str]:
    """Remove the temporary files of dead creators from ``directory``.

    A temporary file whose ``flock`` can be taken without waiting has no live creator. One
    that is another name of the store open on descriptor ``holding`` (a creator died between
    linking and unlinking it) is removed too: holding that store's writer lock proves its
    creator is gone. Files that cannot be opened or locked are left alone; nothing raises.

    Returns:
        The paths removed.
    """
    removed: list[str] = []
    try:
        names = [n for n in os.listdir(directory) if TEMPORARY_NAME.fullmatch(n)]
        held = os.fstat(holding) if holding is not None else None
    except OSError:
        return removed
    for name in names:
        path = os.path.join(directory, name)
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
        except OSError:
            continue
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                continue
            if held is None or (st.st_dev, st.st_ino) != (held.st_dev, held.st_ino):
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # BlockingIOError: in use
            now = os.lstat(path)
            if (now.st_dev, now.st_ino) != (st.st_dev, st.st_ino):
                continue  # the name now belongs to another file
            # Crash window: none that matters; a removal lost in a crash leaves the stray
            # file for the next writable open.
            os.unlink(path)
            removed.append(path)
        except OSError:
            continue
        finally:
            os.close(fd)
    return removed


# --- blocks ------------------------------------------------------------------------------------


def preallocate(fd: int, size: int, path: str) -> None:
    """Reserve every block of a new file, so a write through the map can never SIGBUS."""
    try:
        os.posix_fallocate(fd, 0, size)
        return
    except OSError as e:
        if e.errno in (errno.ENOSPC, errno.EDQUOT):
            raise NoSpace(path, f"no room for a {size}-byte store ({e.strerror})") from e
        if e.errno not in (errno.EOPNOTSUPP, errno.EINVAL, errno.ENOSYS):
            raise
    # The file system cannot preallocate: writing zeros allocates the blocks instead (a page
    # at a time: see write_pages).
    try:
        for off in range(0, size, len(_ZEROS)):
            write_pages(fd, _ZEROS[: min(len(_ZEROS), size - off)], off)
    except OSError as e:
        if e.errno in (errno.ENOSPC, errno.EDQUOT):
            raise NoSpace(path, f"no room for a {size}-byte store ({e.strerror})") from e
        raise


def write_pages(fd: int, data: bytes | bytearray | memoryview, offset: int) -> None:
    """pwrite ``data`` at ``offset`` one page at a time.

    The page cache keeps what one ``pwrite`` brings in as one folio, up to its size (1 MiB
    and more), and writes back a whole folio when any byte of it is dirty: a commit-mode
    msync of one journal page in a file written by 1 MiB ``pwrite`` calls (a copy) would
    write 1 MiB. Pages written one at a time stay separate, as the journal's pages are when
    its mapping first touches them.
    """
    with memoryview(data) as view:
        for start in range(0, len(view), _PAGE):
            piece = view[start : start + _PAGE]
            done = 0
            while done < len(piece):
                done += os.pwrite(fd, piece[done:], offset + start + done)


def allocate_holes(fd: int, path: str, size: int) -> None:
    """Allocate the holes of an existing store's first ``size`` bytes (a sparse copy).

    Runs under the writer lock, with the size a validated header declares: a file whose
    header claims more than a writer creates is refused before anything is allocated.
    posix_fallocate over the whole file costs little when every block is already there.
    Where the file system cannot preallocate, a sparse file's bytes are written back as
    they are, which allocates the holes without changing a byte.

    Raises:
        NoSpace: the file system has no room for the holes.
        StoreFileError: another failure of the file system.
    """
    size = min(size, os.fstat(fd).st_size)
    if size <= 0:
        return
    try:
        try:
            os.posix_fallocate(fd, 0, size)
            return
        except OSError as e:
            if e.errno not in (errno.EOPNOTSUPP, errno.EINVAL, errno.ENOSYS):
                raise
        if os.fstat(fd).st_blocks * 512 >= size:
            return  # nothing sparse
        step = len(_ZEROS)
        for off in range(0, size, step):
            os.pwrite(fd, os.pread(fd, step, off), off)
    except OSError as e:
        if e.errno in (errno.ENOSPC, errno.EDQUOT):
            raise NoSpace(
                path, f"no room to allocate the store's {size} bytes (a sparse copy?): {e.strerror}"
            ) from e
        raise StoreFileError(path, f"cannot allocate the store's blocks: {e.strerror}") from e


def fsync_dir(directory: str) -> None:
    """fsync a directory: makes the names created, renamed or removed in it durable."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def remove_if_written(path: str, head: bytes | bytearray) -> bool:
    """Remove the regular file at ``path`` if it starts with ``head``; never raises.

    After a creation failed once its file was already linked at ``path`` (the directory sync
    failed, or an interrupt came in between), this takes the file away again: ``head`` holds
    the new file's random id, so only the file this process wrote matches it, never one that
    someone else put at ``path``. A symbolic link is never followed.

    Returns:
        Whether a file was removed.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return False
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or os.pread(fd, len(head), 0) != head:
            return False
        now = os.lstat(path)
        if (now.st_dev, now.st_ino) != (st.st_dev, st.st_ino):
            return False
        os.unlink(path)
        with contextlib.suppress(OSError):
            fsync_dir(os.path.dirname(os.path.abspath(path)))
        return True
    except OSError:
        return False
    finally:
        os.close(fd)


def creation_error(path: str, directory: str, e: OSError) -> StoreFileError:
    """The typed error for an OSError while creating a store at ``path``."""
    code = e.errno
    if code in (errno.ENOSPC, errno.EDQUOT):
        return NoSpace(path, f"no room for a new store ({e.strerror})")
    if code == errno.ENOENT:
        return StoreFileError(path, f"directory {directory} does not exist")
    if code == errno.ENOTDIR:
        return StoreFileError(path, f"{directory} is not a directory")
    if code in (errno.EACCES, errno.EPERM):
        return StoreFileError(path, f"cannot create a file in {directory}: {e.strerror}")
    if code == errno.EROFS:
        return StoreFileError(path, f"{directory} is on a read-only file system")
    if code == errno.ENAMETOOLONG:
        return StoreFileError(path, "the file name is too long for the file system")
    return StoreFileError(path, f"cannot create the store: {e.strerror or e}")


# --- temporary files that replace a store (migration) -------------------------------------------


def create_temporary(
    path: str, size: int, chunks: Iterable[tuple[int, bytes | bytearray]]
) -> OsTemporary:
    """Write a file of ``size`` bytes holding ``chunks`` under a temporary name next to
    ``path``, sync it, and hold its flock (see ``ReplacingStorage`` in ``_io``)."""
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

    The same cleaner a writable open runs (:func:`remove_stray_temporaries`).

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
        fsync_dir(self._directory)

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
