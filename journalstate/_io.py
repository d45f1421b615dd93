"""The storage interface, and its real implementation over files, mmap and msync.

This is the only module that touches the operating system's files. The store talks to a
:class:`Storage` (create a file atomically, open it) and a :class:`StoreFile` (read its header,
lock it, map regions); each mapped :class:`Region` owns the mapped bytes and their sync call.
A simulated disk implements the same three protocols, which is how crash tests run the real
store over a disk that can lose unsynced pages.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import fcntl
import mmap
import os
import re
import secrets
import stat
import sys
import time
import weakref
from collections.abc import Callable, Iterable
from typing import Protocol, TypeAlias, cast

from journalstate._errors import (
    NoSpace,
    StoreFileError,
    StoreLocked,
    StoreNotFound,
    UnsafePath,
)

Buffer: TypeAlias = "bytes | bytearray | mmap.mmap"
"""Read access to mapped bytes: slicing and ``find`` work the same on all three."""

PAGE_SIZE = mmap.ALLOCATIONGRANULARITY
_ZEROS = bytes(1 << 20)


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


TEMPORARY_NAME = re.compile(r"\.jst-[0-9a-f]{12}\.tmp")
"""Temporary store files: fixed length, never built from the store's name."""


def temporary_name(directory: str) -> str:
    """A fresh temporary path in ``directory`` matching :data:`TEMPORARY_NAME`."""
    return os.path.join(directory, f".jst-{secrets.token_hex(6)}.tmp")


def file_replaced(file: StoreFile) -> bool:
    """Whether the path ``file`` was opened by now names another file (or nothing).

    False for a file type that cannot tell.
    """
    check = getattr(file, "replaced", None)
    return bool(check()) if callable(check) else False


# --- the real thing ------------------------------------------------------------------------------


def _find_msync() -> Callable[[int, int, int], int] | None:
    """libc's msync through ctypes, which releases the GIL for the call (Linux only).

    ``mmap.flush`` holds the GIL while msync runs, so no other thread can append a record in
    the meantime; with the GIL released, threads that commit during an msync share the next
    one (group commit).
    """
    if not sys.platform.startswith("linux"):
        return None
    try:
        function = ctypes.CDLL(None, use_errno=True).msync
    except (OSError, AttributeError):
        return None
    function.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    function.restype = ctypes.c_int
    return cast(Callable[[int, int, int], int], function)


_MSYNC = _find_msync()
_MS_SYNC_LINUX = 4


class MmapRegion:
    """A MAP_SHARED mapping; writes land in the kernel's page cache at once."""

    def __init__(self, fd: int, offset: int, length: int, writable: bool) -> None:
        prot = mmap.PROT_READ | (mmap.PROT_WRITE if writable else 0)
        self._mm = mmap.mmap(fd, length, flags=mmap.MAP_SHARED, prot=prot, offset=offset)
        self._length = length
        self._address: int | None = None
        if writable and _MSYNC is not None:
            anchor = ctypes.c_char.from_buffer(self._mm)
            self._address = ctypes.addressof(anchor)
            del anchor  # releases the buffer export; the address stays valid until close()

    @property
    def buffer(self) -> Buffer:
        return self._mm

    def write(self, offset: int, data: bytes | bytearray) -> None:
        self._mm[offset : offset + len(data)] = data

    def sync(self, offset: int, length: int) -> None:
        start = offset - offset % PAGE_SIZE
        end = min(self._length, offset + length)
        if self._mm.closed:
            raise ValueError("sync of a closed mapping")
        if self._address is not None and _MSYNC is not None:
            if _MSYNC(self._address + start, end - start, _MS_SYNC_LINUX) != 0:
                code = ctypes.get_errno()
                raise OSError(code, os.strerror(code))
            return
        # mmap.flush is msync(MS_SYNC) on POSIX, and raises OSError when it fails.
        self._mm.flush(start, end - start)

    def close(self) -> None:
        self._address = None
        self._mm.close()


def _flock_holder(fd: int) -> int | None:
    """The pid holding a flock on the file behind ``fd``, if /proc/locks tells."""
    try:
        st = os.fstat(fd)
        with open("/proc/locks", encoding="ascii") as f:
            lines = f.read().splitlines()
    except OSError:
        return None
    for line in lines:
        parts = line.split()
        # "1: FLOCK  ADVISORY  WRITE 4242 fd:01:1234 0 EOF"; blocked waiters have "->".
        if len(parts) < 6 or parts[1] != "FLOCK" or "->" in parts:
            continue
        dev_inode = parts[5].split(":")
        if len(dev_inode) == 3 and dev_inode[2] == str(st.st_ino) and parts[4] != str(os.getpid()):
            with contextlib.suppress(ValueError):
                return int(parts[4])
    return None


class OsFile:
    """A store file opened with os.open."""

    def __init__(self, path: str, fd: int) -> None:
        self._path = path
        self._fd = fd
        # A store dropped without close() still releases its descriptor (and with it the lock).
        self._release = weakref.finalize(self, os.close, fd)

    @property
    def size(self) -> int:
        return os.fstat(self._fd).st_size

    def read(self, offset: int, length: int) -> bytes:
        return os.pread(self._fd, length, offset)

    def lock(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise StoreLocked(self._path, _flock_holder(self._fd)) from None
                time.sleep(min(0.01, max(0.0, deadline - time.monotonic())))

    def map(self, offset: int, length: int, *, writable: bool) -> Region:
        return MmapRegion(self._fd, offset, length, writable)

    def replaced(self) -> bool:
        """Whether the path now names another file than the one open here (or nothing)."""
        try:
            st = os.lstat(self._path)
        except FileNotFoundError:
            return True
        own = os.fstat(self._fd)
        return (st.st_dev, st.st_ino) != (own.st_dev, own.st_ino)

    def close(self) -> None:
        if self._fd >= 0:
            self._release()
            self._fd = -1


def _preallocate(fd: int, size: int, path: str) -> None:
    """Reserve every block now, so a write through the map can never SIGBUS on a full disk."""
    try:
        os.posix_fallocate(fd, 0, size)
        return
    except OSError as e:
        if e.errno in (errno.ENOSPC, errno.EDQUOT):
            raise NoSpace(path, f"no room for a {size}-byte store ({e.strerror})") from e
        if e.errno not in (errno.EOPNOTSUPP, errno.EINVAL, errno.ENOSYS):
            raise
    # The file system cannot preallocate: writing zeros allocates the blocks instead.
    try:
        for off in range(0, size, len(_ZEROS)):
            n = min(len(_ZEROS), size - off)
            os.pwrite(fd, _ZEROS[:n], off)
    except OSError as e:
        if e.errno in (errno.ENOSPC, errno.EDQUOT):
            raise NoSpace(path, f"no room for a {size}-byte store ({e.strerror})") from e
        raise


def _fsync_dir(directory: str) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class OsStorage:
    """Store files on the real file system."""

    def exists(self, path: str) -> bool:
        return os.path.lexists(path)

    def create(self, path: str, size: int, chunks: Iterable[tuple[int, bytes]]) -> bool:
        directory = os.path.dirname(os.path.abspath(path))
        tmp = os.path.join(directory, f".{os.path.basename(path)}.{secrets.token_hex(6)}.tmp")
        try:
            fd = os.open(tmp, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        except FileNotFoundError:
            raise StoreFileError(path, f"directory {directory} does not exist") from None
        except PermissionError as e:
            raise StoreFileError(path, f"cannot create a file in {directory}: {e.strerror}") from e
        try:
            _preallocate(fd, size, path)
            for offset, data in chunks:
                os.pwrite(fd, data, offset)
            os.fsync(fd)
            # Crash window: the complete file exists only under the temporary name; a crash
            # here leaves no store at `path` (a stray .tmp file at most).
            try:
                os.link(tmp, path)  # unlike rename, never replaces a store created meanwhile
            except FileExistsError:
                return False
            except OSError as e:
                if e.errno not in (errno.EPERM, errno.EOPNOTSUPP, errno.EXDEV):
                    raise
                if os.path.lexists(path):
                    return False
                os.rename(tmp, path)
            _fsync_dir(directory)
            return True
        except OSError as e:
            if e.errno in (errno.ENOSPC, errno.EDQUOT):
                raise NoSpace(path, f"no room for a {size}-byte store ({e.strerror})") from e
            raise
        finally:
            os.close(fd)
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)

    def open(self, path: str, *, writable: bool) -> StoreFile:
        flags = (os.O_RDWR if writable else os.O_RDONLY) | os.O_NOFOLLOW | os.O_CLOEXEC
        try:
            fd = os.open(path, flags)
        except FileNotFoundError:
            raise StoreNotFound(path, "no such file; pass create=True to make a store") from None
        except IsADirectoryError:
            raise UnsafePath(path, "is a directory, not a store file") from None
        except OSError as e:
            if e.errno == errno.ELOOP:
                raise UnsafePath(
                    path, "is a symbolic link; open the file it points to by its own path"
                ) from None
            if e.errno in (errno.EACCES, errno.EPERM):
                mode = "read and write" if writable else "read"
                raise StoreFileError(path, f"no permission to {mode} it ({e.strerror})") from e
            raise StoreFileError(path, f"cannot open: {e.strerror}") from e
        try:
            st = os.fstat(fd)
            if stat.S_ISDIR(st.st_mode):
                raise UnsafePath(path, "is a directory, not a store file")
            if not stat.S_ISREG(st.st_mode):
                raise UnsafePath(path, "is not a regular file")
        except BaseException:
            os.close(fd)
            raise
        return OsFile(path, fd)

    def create_temporary(
        self, path: str, size: int, chunks: Iterable[tuple[int, bytes | bytearray]]
    ) -> TemporaryFile:
        from journalstate._temporary import create_temporary

        return create_temporary(path, size, chunks)

    def clean_temporaries(self, path: str) -> list[str]:
        from journalstate._temporary import clean_temporaries

        return clean_temporaries(os.path.dirname(os.path.abspath(path)))
