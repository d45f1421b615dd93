"""The storage interface's real implementation: files, mmap, msync and flock on Linux.

With ``_tempfiles`` (temporary files and block allocation), this is the only module that
touches the operating system's files: the mapped :class:`MmapRegion`, the locked
:class:`OsFile`, the :class:`OsStorage` that creates and opens them, the check for what the
platform lacks, and copying a store file a chunk at a time. The protocols they implement are
in ``_storage``.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
import sys
import time
import weakref
from collections.abc import Callable, Iterable, Iterator
from typing import cast

from journalstate._errors import (
    StoreFileError,
    StoreLocked,
    StoreNotFound,
    UnsafePath,
    UnsupportedPlatform,
)
from journalstate._storage import PAGE_SIZE, Buffer, Region, StoreFile, TemporaryFile
from journalstate._tempfiles import (
    allocate_holes,
    clean_temporaries,
    create_temporary,
    creation_error,
    fsync_dir,
    open_temporary,
    preallocate,
    remove_stray_temporaries,
    write_pages,
)

# Only Linux is supported, but importing must work anywhere: what is missing is reported by
# OsStorage() as UnsupportedPlatform, when a store is opened on the real file system.
try:
    import mmap
except ImportError:  # pragma: no cover - no mmap: OsStorage() reports it
    mmap = None  # type: ignore[assignment]
try:
    import fcntl
except ImportError:  # pragma: no cover - not a POSIX system
    fcntl = None  # type: ignore[assignment]
try:
    import ctypes
except ImportError:  # pragma: no cover - a Python built without ctypes
    ctypes = None  # type: ignore[assignment]


def _find_msync() -> Callable[[int, int, int], int] | None:
    """libc's msync through ctypes, which releases the GIL for the call (Linux only).

    ``mmap.flush`` holds the GIL while msync runs, so no other thread can append a record in
    the meantime; with the GIL released, threads that commit during an msync share the next
    one (group commit).
    """
    if not sys.platform.startswith("linux") or ctypes is None:
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
        """Take the writer lock, then remove temporary files of dead creators beside the file.

        Raises:
            StoreLocked: another writer holds the lock.
        """
        deadline = time.monotonic() + timeout  # inf: wait as long as it takes
        while True:
            try:
                fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise StoreLocked(self._path, _flock_holder(self._fd)) from None
                time.sleep(min(0.01, max(0.0, deadline - time.monotonic())))
        remove_stray_temporaries(os.path.dirname(os.path.abspath(self._path)), self._fd)

    def allocate(self, size: int) -> None:
        allocate_holes(self._fd, self._path, size)

    def map(self, offset: int, length: int, *, writable: bool) -> Region:
        return MmapRegion(self._fd, offset, length, writable)

    def lock_holder(self) -> int | None:
        """The pid of another process holding this file's writer lock, if /proc/locks tells."""
        return _flock_holder(self._fd)

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


# --- the real storage ----------------------------------------------------------------------------


def missing_platform_features() -> list[str]:
    """What this system lacks that a store on the real file system needs (empty on Linux)."""
    needed = [
        (fcntl, "fcntl", "flock"),
        (os, "os", "posix_fallocate"),
        (os, "os", "pread"),
        (os, "os", "O_NOFOLLOW"),
        (os, "os", "O_NONBLOCK"),
        (os, "os", "O_DIRECTORY"),
        (mmap, "mmap", "MAP_SHARED"),
        (mmap, "mmap", "PROT_READ"),
    ]
    return [f"{label}.{name}" for module, label, name in needed if not hasattr(module, name)]


def _kind(mode: int) -> str:
    for test, kind in (
        (stat.S_ISDIR, "a directory"),
        (stat.S_ISFIFO, "a FIFO (named pipe)"),
        (stat.S_ISSOCK, "a socket"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISLNK, "a symbolic link"),
    ):
        if test(mode):
            return kind
    return "not a regular file"


class OsStorage:
    """Store files on the real file system (Linux).

    Raises:
        UnsupportedPlatform: on construction, when this system lacks flock, posix_fallocate,
            shared mmap or another call a store needs.
    """

    def __init__(self) -> None:
        missing = missing_platform_features()
        if missing:
            raise UnsupportedPlatform(
                f"journalstate supports Linux; this system ({sys.platform}) has no "
                f"{', '.join(missing)}"
            )

    def exists(self, path: str) -> bool:
        return os.path.lexists(path)

    def create(self, path: str, size: int, chunks: Iterable[tuple[int, bytes]]) -> bool:
        directory = os.path.dirname(os.path.abspath(path))
        try:
            tmp, fd = open_temporary(directory)
        except OSError as e:
            raise creation_error(path, directory, e) from e
        try:
            preallocate(fd, size, path)
            for offset, data in chunks:
                write_pages(fd, data, offset)  # not one pwrite: see write_pages
            os.fsync(fd)
            # Crash window: the complete file exists only under the temporary name; a crash
            # here leaves no store at `path`, only an unlocked temporary file, which the next
            # writable open of a store in this directory removes.
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
            # Crash window: the store has two names. Opening it works as usual, and the
            # writable open that takes its writer lock removes the temporary name, since
            # holding that lock proves this creator (which held the same inode's lock) is gone.
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            fsync_dir(directory)
            return True
        except OSError as e:
            raise creation_error(path, directory, e) from e
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)  # before close(): the lock keeps cleaners off it until then
            os.close(fd)

    def open(self, path: str, *, writable: bool) -> StoreFile:
        # O_NONBLOCK: opening a FIFO must not wait for a writer; cleared once the file is
        # known to be a regular file.
        flags = (os.O_RDWR if writable else os.O_RDONLY) | os.O_NOFOLLOW | os.O_CLOEXEC
        try:
            fd = os.open(path, flags | os.O_NONBLOCK | os.O_NOCTTY)
        except FileNotFoundError:
            raise StoreNotFound(path, "no such file; pass create=True to make a store") from None
        except IsADirectoryError:
            raise UnsafePath(path, "is a directory, not a store file") from None
        except OSError as e:
            if e.errno == errno.ELOOP:
                raise UnsafePath(
                    path, "is a symbolic link; open the file it points to by its own path"
                ) from None
            if e.errno == errno.ENXIO:  # a socket, or a device with nothing behind it
                try:
                    kind = _kind(os.lstat(path).st_mode)
                except OSError:
                    kind = "not a regular file"
                raise UnsafePath(path, f"is {kind}, not a store file") from None
            if e.errno in (errno.EACCES, errno.EPERM):
                mode = "read and write" if writable else "read"
                raise StoreFileError(path, f"no permission to {mode} it ({e.strerror})") from e
            raise StoreFileError(path, f"cannot open: {e.strerror}") from e
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                raise UnsafePath(path, f"is {_kind(st.st_mode)}, not a store file")
            os.set_blocking(fd, True)
        except BaseException:
            os.close(fd)
            raise
        return OsFile(path, fd)

    def create_temporary(
        self, path: str, size: int, chunks: Iterable[tuple[int, bytes | bytearray]]
    ) -> TemporaryFile:
        return create_temporary(path, size, chunks)

    def clean_temporaries(self, path: str) -> list[str]:
        return clean_temporaries(os.path.dirname(os.path.abspath(path)))


# --- copying a store ---------------------------------------------------------------------------

COPY_CHUNK = 1 << 20
"""Bytes read and written at a time when a store file is copied: all a copy holds in memory."""


def copy_store_file(source: str, dest: str) -> bool:
    """Copy the store file ``source`` to the new path ``dest``, atomically, a chunk at a time.

    The copy is a crash image of the source. The source is opened like every store is: never
    through a symbolic link, and only when it is a regular file. Nothing at ``dest`` is followed
    or replaced, a dangling symbolic link included: the copy appears there whole, or not at all.

    Returns:
        True when ``dest`` holds the copy; False, creating nothing, if something appeared at
        ``dest`` meanwhile.

    Raises:
        StoreNotFound: nothing exists at ``source``.
        UnsafePath: ``source`` is a symbolic link, a directory, a FIFO or another non-file.
        StoreFileError: either file cannot be read or written (``NoSpace`` when full).
    """
    storage = OsStorage()
    file = storage.open(source, writable=False)
    try:
        size = file.size
        return storage.create(dest, size, _chunks(file, size))
    except _SourceUnreadable as e:
        raise e.error from None  # as it was raised: the source, not the copy, failed
    finally:
        file.close()


class _SourceUnreadable(Exception):
    """An OSError reading the source, carried past ``create`` (which would blame the copy)."""

    def __init__(self, error: OSError) -> None:
        super().__init__(str(error))
        self.error = error


def _chunks(file: StoreFile, size: int) -> Iterator[tuple[int, bytes]]:
    """``file``'s bytes as (offset, data), read one chunk at a time as they are wanted."""
    for offset in range(0, size, COPY_CHUNK):
        try:
            data = file.read(offset, COPY_CHUNK)
        except OSError as e:
            raise _SourceUnreadable(e) from e
        yield offset, data
