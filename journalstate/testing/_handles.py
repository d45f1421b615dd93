"""The handles the store holds on the simulated disk: an open file, a temporary file, a mapping.

Each handle belongs to the process that opened it: after a crash and reboot, using it raises
:class:`SimulatedCrash`. Writes and syncs go through the disk (:class:`Disk`), which records
them as events and may crash there.
"""

from __future__ import annotations

from typing import Protocol

from journalstate._errors import StoreLocked, UnsafePath
from journalstate._storage import PAGE_SIZE, Buffer, Region
from journalstate.testing._events import SimulatedCrash
from journalstate.testing._pages import PagedFile


class Disk(Protocol):
    """What a handle needs of the simulated disk (``SimStorage``)."""

    @property
    def boot(self) -> int: ...

    @property
    def crashes(self) -> int: ...

    def file_named(self, name: str) -> PagedFile | None: ...

    def write_pages(self, f: PagedFile, offset: int, data: bytes | bytearray) -> None: ...

    def sync_pages(self, f: PagedFile, offset: int, length: int) -> None: ...

    def reading(self, f: PagedFile, offset: int) -> None: ...

    def rename(self, source: str, target: str) -> None: ...

    def unlink(self, name: str) -> None: ...

    def sync_directory(self) -> None: ...


class SimStoreFile:
    """A store file opened on the simulated disk; its lock is held until close()."""

    def __init__(self, disk: Disk, path: str, f: PagedFile, writable: bool) -> None:
        self._disk = disk
        self._path = path
        self._file = f
        self._boot = disk.boot
        self._writable = writable
        self._locked = False

    @property
    def disk(self) -> Disk:
        """The disk the file is on."""
        return self._disk

    def live(self) -> PagedFile:
        """The file, unless this handle belongs to a process that crashed since it opened it."""
        if self._file.dead or self._boot != self._disk.boot:
            raise SimulatedCrash("this handle belongs to a process that crashed")
        return self._file

    def replaced(self) -> bool:
        """Whether the path names another file now."""
        return self._disk.file_named(self._path) is not self._file

    @property
    def size(self) -> int:
        return len(self.live().cache)

    def read(self, offset: int, length: int) -> bytes:
        return bytes(self.live().cache[offset : offset + length])

    def lock(self, timeout: float) -> None:
        f = self.live()
        if f.locked:
            raise StoreLocked(self._path)
        f.locked = True
        self._locked = True

    def allocate(self, size: int) -> None:
        self.live()  # simulated files have no holes

    def map(self, offset: int, length: int, *, writable: bool) -> Region:
        f = self.live()
        if offset % PAGE_SIZE:
            raise UnsafePath(self._path, "unaligned mapping")
        if f.slots_offset == 0:
            f.slots_offset = offset
        elif f.journal_offset == 0 and offset > f.slots_offset:
            f.journal_offset = offset
        return SimRegion(self, offset, length, writable)

    def close(self) -> None:
        if self._locked and not self._file.dead and self._boot == self._disk.boot:
            self._file.locked = False
        self._locked = False


class SimTemporary:
    """A temporary file on the simulated disk; its lock is held until close()."""

    def __init__(self, disk: Disk, name: str, f: PagedFile) -> None:
        self._disk = disk
        self._name = name
        self._file = f
        self._crashes = disk.crashes
        self._moved = False
        self._closed = False

    @property
    def name(self) -> str:
        return self._name

    def replace(self, path: str) -> None:
        self._disk.rename(self._name, path)
        self._moved = True
        self._file.temporary = False
        self._disk.sync_directory()

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._disk.crashes != self._crashes or self._file.dead:
            return  # the process died: nothing runs after that
        if not self._moved and self._disk.file_named(self._name) is self._file:
            self._disk.unlink(self._name)
        self._file.locked = False


class SimRegion:
    """A mapped range of a simulated file: reads see the page cache, writes go through it."""

    def __init__(self, owner: SimStoreFile, base: int, length: int, writable: bool) -> None:
        self._owner = owner
        self._base = base
        self._length = length
        self._writable = writable

    @property
    def buffer(self) -> Buffer:
        self._owner.disk.reading(self._owner.live(), self._base)
        f = self._owner.live()
        return bytes(f.cache[self._base : self._base + self._length])

    def write(self, offset: int, data: bytes | bytearray) -> None:
        assert self._writable, "write to a read-only mapping"
        assert offset >= 0
        assert offset + len(data) <= self._length
        self._owner.disk.write_pages(self._owner.live(), self._base + offset, data)

    def sync(self, offset: int, length: int) -> None:
        self._owner.disk.sync_pages(self._owner.live(), self._base + offset, length)

    def close(self) -> None:
        pass
