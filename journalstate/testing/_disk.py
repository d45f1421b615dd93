"""A simulated disk with a page cache, for crash tests of the real store.

:class:`SimStorage` implements the store's storage interface in memory. It remembers, for every
page written since that page was last synced, each version the page went through, so it can
produce the disk images an OS crash may leave behind:

* a page last synced is durable as of that sync;
* every page written since may be found at any of its versions: the durable one, the newest,
  or any in between;
* any 512-byte sector of such a page may hold a different one of those versions (a torn page).

A process death is a different crash: the page cache survives, so every write so far is kept.
Options restrict the model to narrow a failure down: ``torn_sectors=False`` keeps pages whole,
``keep_order=True`` only produces images that are a prefix of the write sequence.
"""

from __future__ import annotations

import enum
import errno
import random
from collections.abc import Callable, Iterable

import attrs

from journalstate._errors import NoSpace, StoreLocked, StoreNotFound, UnsafePath
from journalstate._io import PAGE_SIZE, Buffer, Region, StoreFile

SECTOR_SIZE = 512

Chooser = Callable[[int], int]
"""Picks an index in ``range(n)``; hypothesis' ``data.draw`` or a seeded random generator."""


class SimulatedCrash(BaseException):
    """Raised inside a store operation when the simulated machine crashes there.

    A BaseException, so code under test that catches Exception cannot swallow it.
    """


class Op(str, enum.Enum):
    """The kinds of disk events a crash can be scheduled at."""

    WRITE = "write"
    SYNC = "sync"


@attrs.frozen
class Event:
    """One write or sync that reached the simulated disk."""

    index: int
    op: Op
    region: str
    """"header", "slots" or "journal" (by the region's file offset)."""
    offset: int
    """File offset."""
    length: int


@attrs.define
class _File:
    cache: bytearray
    durable: bytearray
    # page index -> versions since the last sync; versions[0] is the durable one
    history: dict[int, list[bytes]] = attrs.field(factory=dict)
    # page index -> write-log positions at which each version after the first appeared
    stamps: dict[int, list[int]] = attrs.field(factory=dict)
    locked: bool = False
    incarnation: int = 0
    slots_offset: int = 0
    journal_offset: int = 0


CrashHook = Callable[[Event], "int | None"]
"""Called before each event. None lets it happen; an int crashes the machine there: a write
first copies that many of its bytes (a process killed in the middle of a memcpy), a sync
does not happen."""


class SimStorage:
    """In-memory store files with a simulated page cache.

    Attributes:
        events: every write and sync so far, in order.
        crash_at: called with each event before it takes effect (see :data:`CrashHook`);
            a crash raises :class:`SimulatedCrash` out of the store operation.
        fail_syncs: when true, syncs raise ``OSError(EIO)`` and leave the pages unsynced.
        capacity: bytes the disk holds; creating a larger file raises NoSpace.
    """

    def __init__(self, *, capacity: int | None = None) -> None:
        self._files: dict[str, _File] = {}
        self.events: list[Event] = []
        self.crash_at: CrashHook | None = None
        self.fail_syncs = False
        self.capacity = capacity

    # --- Storage -----------------------------------------------------------------------------

    def exists(self, path: str) -> bool:
        return path in self._files

    def create(self, path: str, size: int, chunks: Iterable[tuple[int, bytes]]) -> bool:
        if path in self._files:
            return False
        used = sum(len(f.durable) for f in self._files.values())
        if self.capacity is not None and used + size > self.capacity:
            raise NoSpace(path, f"no room for a {size}-byte store (simulated disk full)")
        image = bytearray(size)
        for offset, data in chunks:
            image[offset : offset + len(data)] = data
        # Creation is atomic and durable (temp file, fsync, link, directory fsync).
        self._files[path] = _File(cache=bytearray(image), durable=image)
        return True

    def open(self, path: str, *, writable: bool) -> StoreFile:
        if path not in self._files:
            raise StoreNotFound(path, "no such store")
        return _SimStoreFile(self, path, self._files[path], writable)

    # --- images ------------------------------------------------------------------------------

    def durable_image(self, path: str) -> bytes:
        """What an OS crash leaves when no page written since its last sync survives."""
        return bytes(self._files[path].durable)

    def cache_image(self, path: str) -> bytes:
        """What the page cache holds: the file after a process death."""
        return bytes(self._files[path].cache)

    def unsynced_pages(self, path: str) -> list[int]:
        """Pages written since their last sync."""
        return sorted(self._files[path].history)

    def crash_image(
        self,
        path: str,
        choose: Chooser | None = None,
        *,
        torn_sectors: bool = True,
        keep_order: bool = False,
    ) -> bytes:
        """One disk image an OS crash may leave, picked by ``choose``.

        Args:
            choose: picks among the possibilities (default: a fresh random generator).
            torn_sectors: let each 512-byte sector of a page take its own version.
            keep_order: only images where writes reached the disk in the order they were
                made: one cut point in the write log decides every page's version.
        """
        if choose is None:
            rng = random.Random()

            def choose(n: int) -> int:
                return rng.randrange(n)

        f = self._files[path]
        image = bytearray(f.durable)
        pages = sorted(f.history)
        if keep_order:
            stamps = sorted({s for p in pages for s in f.stamps[p]})
            cut = stamps[choose(len(stamps) + 1) - 1] if stamps else -1
            for page in pages:
                n = sum(1 for s in f.stamps[page] if s <= cut)
                self._put(image, page, f.history[page][n])
            return bytes(image)
        for page in pages:
            versions = f.history[page]
            if not torn_sectors:
                self._put(image, page, versions[choose(len(versions))])
                continue
            for sector in range(PAGE_SIZE // SECTOR_SIZE):
                version = versions[choose(len(versions))]
                start = page * PAGE_SIZE + sector * SECTOR_SIZE
                lo = sector * SECTOR_SIZE
                image[start : start + SECTOR_SIZE] = version[lo : lo + SECTOR_SIZE]
        return bytes(image)

    @staticmethod
    def _put(image: bytearray, page: int, data: bytes) -> None:
        image[page * PAGE_SIZE : page * PAGE_SIZE + len(data)] = data

    def restart(self, path: str, image: bytes | None = None) -> None:
        """Reboot after a crash: ``image`` becomes the disk and the page cache.

        Every handle opened before is dead (any use raises :class:`SimulatedCrash`) and the
        lock is released. With no image, the page cache is kept: a process death.
        """
        f = self._files[path]
        data = bytearray(f.cache if image is None else image)
        self._files[path] = _File(
            cache=bytearray(data),
            durable=bytearray(data) if image is not None else f.durable,
            history={} if image is not None else f.history,
            stamps={} if image is not None else f.stamps,
            incarnation=f.incarnation + 1,
        )

    def set_image(self, path: str, image: bytes) -> None:
        """Replace a file's contents (durably), e.g. with a damaged copy."""
        self._files[path] = _File(cache=bytearray(image), durable=bytearray(image))

    # --- events ------------------------------------------------------------------------------

    def _event(self, f: _File, op: Op, offset: int, length: int) -> int | None:
        if offset >= f.journal_offset > 0:
            region = "journal"
        elif offset >= f.slots_offset > 0:
            region = "slots"
        else:
            region = "header"
        event = Event(len(self.events), op, region, offset, length)
        self.events.append(event)
        return None if self.crash_at is None else self.crash_at(event)

    def _write(self, f: _File, offset: int, data: bytes | bytearray) -> None:
        crash = self._event(f, Op.WRITE, offset, len(data))
        if crash is not None:
            data = data[: max(0, min(crash, len(data)))]
        stamp = len(self.events) - 1
        if data:
            first = offset // PAGE_SIZE
            last = (offset + len(data) - 1) // PAGE_SIZE
            for page in range(first, last + 1):
                if page not in f.history:
                    start = page * PAGE_SIZE
                    f.history[page] = [bytes(f.durable[start : start + PAGE_SIZE])]
                    f.stamps[page] = []
            f.cache[offset : offset + len(data)] = data
            for page in range(first, last + 1):
                start = page * PAGE_SIZE
                f.history[page].append(bytes(f.cache[start : start + PAGE_SIZE]))
                f.stamps[page].append(stamp)
        if crash is not None:
            raise SimulatedCrash(f"simulated crash during write #{stamp}")

    def _sync(self, f: _File, offset: int, length: int) -> None:
        if self._event(f, Op.SYNC, offset, length) is not None:
            raise SimulatedCrash(f"simulated crash before sync #{len(self.events) - 1}")
        if self.fail_syncs:
            raise OSError(errno.EIO, "Input/output error (simulated)")
        first = offset // PAGE_SIZE
        last = (offset + max(length, 1) - 1) // PAGE_SIZE
        for page in range(first, last + 1):
            if page in f.history:
                start = page * PAGE_SIZE
                f.durable[start : start + PAGE_SIZE] = f.cache[start : start + PAGE_SIZE]
                del f.history[page]
                del f.stamps[page]


class _SimStoreFile:
    def __init__(self, disk: SimStorage, path: str, f: _File, writable: bool) -> None:
        self._disk = disk
        self._path = path
        self._file = f
        self._incarnation = f.incarnation
        self._writable = writable
        self._locked = False

    def _live(self) -> _File:
        f = self._disk._files.get(self._path)
        if f is not self._file or f.incarnation != self._incarnation:
            raise SimulatedCrash("this handle belongs to a process that crashed")
        return f

    @property
    def size(self) -> int:
        return len(self._live().cache)

    def read(self, offset: int, length: int) -> bytes:
        return bytes(self._live().cache[offset : offset + length])

    def lock(self, timeout: float) -> None:
        f = self._live()
        if f.locked:
            raise StoreLocked(self._path)
        f.locked = True
        self._locked = True

    def allocate(self, size: int) -> None:
        self._live()  # simulated files have no holes

    def map(self, offset: int, length: int, *, writable: bool) -> Region:
        f = self._live()
        if offset % PAGE_SIZE:
            raise UnsafePath(self._path, "unaligned mapping")
        if f.slots_offset == 0:
            f.slots_offset = offset
        elif f.journal_offset == 0 and offset > f.slots_offset:
            f.journal_offset = offset
        return _SimRegion(self, offset, length, writable)

    def close(self) -> None:
        f = self._disk._files.get(self._path)
        if self._locked and f is self._file and f.incarnation == self._incarnation:
            f.locked = False
        self._locked = False


class _SimRegion:
    def __init__(self, owner: _SimStoreFile, base: int, length: int, writable: bool) -> None:
        self._owner = owner
        self._base = base
        self._length = length
        self._writable = writable

    @property
    def buffer(self) -> Buffer:
        f = self._owner._live()
        return bytes(f.cache[self._base : self._base + self._length])

    def write(self, offset: int, data: bytes | bytearray) -> None:
        assert self._writable, "write to a read-only mapping"
        assert offset >= 0
        assert offset + len(data) <= self._length
        self._owner._disk._write(self._owner._live(), self._base + offset, data)

    def sync(self, offset: int, length: int) -> None:
        self._owner._disk._sync(self._owner._live(), self._base + offset, length)

    def close(self) -> None:
        pass


# --- named crash points --------------------------------------------------------------------------

CRASH_POINTS: dict[str, tuple[Op, str, bool]] = {
    # name: (operation, region, crash after it rather than at it)
    "journal-write-torn": (Op.WRITE, "journal", False),
    "journal-written": (Op.WRITE, "journal", True),
    "journal-synced": (Op.SYNC, "journal", True),
    "slot-write-torn": (Op.WRITE, "slots", False),
    "slot-written": (Op.WRITE, "slots", True),
    "slot-synced": (Op.SYNC, "slots", True),
}
"""Crash points, each the instant around the first matching disk event after arming.

``journal-write-torn``: during the copy of a record (or end marker) into the journal, after
``cut`` bytes. ``journal-written``: the copy is complete, its msync has not started (in a
commit: after the record is written and before the commit point). ``journal-synced``: right
after the journal msync (in a commit: right after the commit point). ``slot-write-torn``,
``slot-written``, ``slot-synced``: the same for the slot a checkpoint writes.
"""


def crash_point(disk: SimStorage, name: str, *, cut: int = 0, skip: int = 0) -> CrashHook:
    """A hook for ``disk.crash_at`` that crashes at the named point.

    Args:
        disk: the simulated disk (its event count marks where arming happened).
        name: a key of :data:`CRASH_POINTS`.
        cut: for ``*-torn`` points, how many bytes of the write reach the page cache.
        skip: ignore this many matching events first.
    """
    op, region, after = CRASH_POINTS[name]
    start = len(disk.events)
    state = {"seen": 0, "fire_next": False}

    def hook(event: Event) -> int | None:
        if event.index < start:
            return None
        if state["fire_next"]:
            return 0
        if event.op is op and event.region == region:
            if state["seen"] < skip:
                state["seen"] += 1
                return None
            if after:
                state["fire_next"] = True
                return None
            return cut
        return None

    return hook
