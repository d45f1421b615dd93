"""A simulated disk with a page cache, for crash tests of the real store.

:class:`SimStorage` implements the store's storage interface in memory. It remembers, for every
page written since that page was last synced, each version the page went through, so it can
produce the disk images an OS crash may leave behind:

* a page last synced is durable as of that sync;
* every page written since may be found at any of its versions: the durable one, the newest,
  or any in between;
* any 512-byte sector of such a page may hold a different one of those versions (a torn page).

Each file's pages and their versions are a :class:`PagedFile` (``_pages``); the events a crash
can be scheduled at, and the named crash points, are in ``_events``; the handles the store
holds (open files, temporary files, mappings) in ``_handles``. This module holds the directory
of names, and the crash and reboot of the machine.

A process death is a different crash: the page cache survives, so every write so far is kept.
Options restrict the model to narrow a failure down: ``torn_sectors=False`` keeps pages whole,
``keep_order=True`` only produces images that are a prefix of the write sequence.

Files live under names in one directory. Creating a temporary file, renaming, linking and
unlinking change the names at once (process death keeps them), but only a directory sync makes
them durable: an OS crash keeps the names as of the last directory sync plus a prefix of the
changes made since (the order a journaling file system commits them in), so an unsynced rename
may be lost and the old entry comes back.
"""

from __future__ import annotations

import errno
import os
import random
from collections.abc import Callable, Iterable

from journalstate._errors import NoSpace, StoreNotFound
from journalstate._storage import StoreFile, TemporaryFile
from journalstate._tempfiles import TEMPORARY_NAME
from journalstate.testing._events import (
    Chooser,
    CrashHook,
    Event,
    Op,
    PieceHook,
    Pieces,
    SimulatedCrash,
    sector_pieces,
)
from journalstate.testing._handles import SimStoreFile, SimTemporary
from journalstate.testing._pages import PagedFile

__all__ = ["Event", "Op", "SimStorage", "SimulatedCrash"]


class SimStorage:
    """In-memory store files with a simulated page cache.

    Attributes:
        events: every write and sync so far, in order.
        crash_at: called with each event before it takes effect (see :data:`CrashHook`);
            a crash raises :class:`SimulatedCrash` out of the store operation.
        fail_syncs: when true, syncs raise ``OSError(EIO)`` and leave the pages unsynced.
        capacity: bytes the disk holds; creating a larger file raises NoSpace.
        during_write: when set, each write is applied in the pieces ``pieces`` cuts it into,
            and this hook runs after each piece (see :data:`PieceHook`): a reader on the same
            disk sees the page cache with the write cut there. A write made while the hook
            runs is applied whole. A write that ``crash_at`` cuts short is not split.
        pieces: the prefix lengths a write is cut at (default :func:`sector_pieces`; see
            also :func:`byte_pieces`).
        during_read: when set, called with the region's kind ("slots" or "journal") each
            time a mapping's buffer is taken, before the snapshot: what the hook writes (a
            writer's commit) lands right between two of a reader's reads. A buffer taken
            while the hook runs calls no nested hook.
    """

    def __init__(self, *, capacity: int | None = None) -> None:
        self._files: dict[str, PagedFile] = {}  # the names now (what the process sees)
        self._durable_names: dict[str, PagedFile] = {}  # as of the last directory sync
        self._name_log: list[dict[str, PagedFile]] = []  # the names after each change since
        self._boot = 0
        self._crashes = 0
        self.events: list[Event] = []
        self.crash_at: CrashHook | None = None
        self.fail_syncs = False
        self.capacity = capacity
        self.during_write: PieceHook | None = None
        self.pieces: Pieces = sector_pieces
        self._in_piece_hook = False
        self.during_read: Callable[[str], None] | None = None
        self._in_read_hook = False

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
        f = PagedFile(cache=bytearray(image), durable=image)
        for names in (self._files, self._durable_names, *self._name_log):
            names[path] = f
        return True

    def open(self, path: str, *, writable: bool) -> StoreFile:
        if path not in self._files:
            raise StoreNotFound(path, "no such store")
        return SimStoreFile(self, path, self._files[path], writable)

    def create_temporary(
        self, path: str, size: int, chunks: Iterable[tuple[int, bytes | bytearray]]
    ) -> TemporaryFile:
        name = os.path.join(os.path.dirname(path), f".jst-{random.getrandbits(64):016x}.tmp")
        self._dir_event(Op.CREATE)
        used = sum(len(f.durable) for f in self._files.values())
        if self.capacity is not None and used + size > self.capacity:
            raise NoSpace(path, f"no room for a {size}-byte store (simulated disk full)")
        f = PagedFile(cache=bytearray(size), durable=bytearray(size), temporary=True, locked=True)
        self._rename_entries({name: f})
        temporary = SimTemporary(self, name, f)
        try:
            for offset, data in chunks:
                self.write_pages(f, offset, data)
            self.sync_pages(f, 0, size)
        except SimulatedCrash:
            raise
        except BaseException:
            temporary.close()
            raise
        return temporary

    def clean_temporaries(self, path: str) -> list[str]:
        directory = os.path.dirname(path)
        removed = []
        for name, f in sorted(self._files.items()):
            if (
                os.path.dirname(name) == directory
                and TEMPORARY_NAME.fullmatch(os.path.basename(name))
                and not f.locked
            ):
                self.unlink(name)
                removed.append(name)
        return removed

    # --- names -------------------------------------------------------------------------------

    def names(self) -> list[str]:
        """Every name in the directory now."""
        return sorted(self._files)

    def durable_names(self) -> list[str]:
        """The names an OS crash keeps for certain (as of the last directory sync)."""
        return sorted(self._durable_names)

    def name_changes(self) -> int:
        """Changes of names since the last directory sync (an OS crash keeps a prefix)."""
        return len(self._name_log)

    def _rename_entries(self, changes: dict[str, PagedFile | None]) -> None:
        for name, f in changes.items():
            if f is None:
                self._files.pop(name, None)
            else:
                self._files[name] = f
        self._name_log.append(dict(self._files))

    def rename(self, source: str, target: str) -> None:
        """Rename ``source`` over ``target`` (atomic; durable after :meth:`sync_directory`)."""
        self._dir_event(Op.RENAME)
        if source not in self._files:
            raise FileNotFoundError(errno.ENOENT, "no such file", source)
        self._rename_entries({target: self._files[source], source: None})

    def link(self, source: str, target: str) -> None:
        """A second name for ``source``; FileExistsError if ``target`` exists."""
        self._dir_event(Op.LINK)
        if target in self._files:
            raise FileExistsError(errno.EEXIST, "file exists", target)
        self._rename_entries({target: self._files[source]})

    def unlink(self, name: str) -> None:
        """Remove a name (durable after :meth:`sync_directory`)."""
        self._dir_event(Op.UNLINK)
        if name not in self._files:
            raise FileNotFoundError(errno.ENOENT, "no such file", name)
        self._rename_entries({name: None})

    def sync_directory(self) -> None:
        """fsync of the directory: the names now become durable."""
        self._dir_event(Op.DIRSYNC)
        self._durable_names = dict(self._files)
        self._name_log = []

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

        return self._files[path].crash_image(choose, torn_sectors, keep_order)

    def restart(self, path: str | None = None, image: bytes | None = None) -> None:
        """Reboot after a crash: ``image`` becomes the disk and the page cache of ``path``.

        Every handle opened before is dead (any use raises :class:`SimulatedCrash`) and every
        lock is released. With no image, the page cache is kept: a process death (of every
        file when ``path`` is None). Names are kept as they are.
        """
        self._reboot({} if path is None or image is None else {path: image})

    def crash(
        self,
        choose: Chooser | None = None,
        *,
        torn_sectors: bool = True,
        keep_order: bool = False,
    ) -> None:
        """An OS crash of the whole machine, then a reboot.

        ``choose`` first picks how many of the name changes since the last directory sync
        survive (a prefix, from none to all), then, file by file in name order, each page's
        version as :meth:`crash_image` does.
        """
        if choose is None:
            rng = random.Random()

            def choose(n: int) -> int:
                return rng.randrange(n)

        kept = choose(len(self._name_log) + 1)
        names = self._name_log[kept - 1] if kept else self._durable_names
        images: dict[int, bytes] = {}
        for name in sorted(names):
            f = names[name]
            if id(f) not in images:
                images[id(f)] = f.crash_image(choose, torn_sectors, keep_order)
        self._files = dict(names)
        self._durable_names = dict(names)
        self._name_log = []
        self._reboot({name: images[id(f)] for name, f in names.items()})

    def _reboot(self, images: dict[str, bytes]) -> None:
        self._boot += 1
        fresh: dict[int, PagedFile] = {}

        def renew(name: str, f: PagedFile) -> PagedFile:
            if id(f) not in fresh:
                fresh[id(f)] = f.reborn(images.get(name))
            return fresh[id(f)]

        for name, f in sorted(self._files.items()):
            self._files[name] = renew(name, f)
        for names in (self._durable_names, *self._name_log):
            for name, f in names.items():
                names[name] = renew(name, f)

    def set_image(self, path: str, image: bytes) -> None:
        """Replace a file's contents (durably), e.g. with a damaged copy."""
        old = self._files.get(path)
        if old is not None:
            old.dead = True
        f = PagedFile(cache=bytearray(image), durable=bytearray(image))
        for names in (self._files, self._durable_names, *self._name_log):
            if names is self._files or names.get(path) is old:
                names[path] = f

    # --- events ------------------------------------------------------------------------------

    def _dir_event(self, op: Op) -> None:
        event = Event(len(self.events), op, "directory", 0, 0)
        self.events.append(event)
        if self.crash_at is not None and self.crash_at(event) is not None:
            self._crashes += 1
            raise SimulatedCrash(f"simulated crash before {op.value} #{event.index}")

    def _event(self, f: PagedFile, op: Op, offset: int, length: int) -> int | None:
        if f.temporary:
            region = "temporary"
        elif offset >= f.journal_offset > 0:
            region = "journal"
        elif offset >= f.slots_offset > 0:
            region = "slots"
        else:
            region = "header"
        event = Event(len(self.events), op, region, offset, length)
        self.events.append(event)
        crash = None if self.crash_at is None else self.crash_at(event)
        if crash is not None:
            self._crashes += 1
        return crash

    # --- for the handles (``_handles``) ---------------------------------------------------------

    @property
    def boot(self) -> int:
        """Reboots so far: a handle opened before the last one belongs to a dead process."""
        return self._boot

    @property
    def crashes(self) -> int:
        """Crashes so far, each raised as :class:`SimulatedCrash` out of a store operation."""
        return self._crashes

    def file_named(self, name: str) -> PagedFile | None:
        """The file a name now stands for, if any."""
        return self._files.get(name)

    def write_pages(self, f: PagedFile, offset: int, data: bytes | bytearray) -> None:
        """A write to ``f`` through the page cache: an event, and a crash if one is due."""
        crash = self._event(f, Op.WRITE, offset, len(data))
        if crash is not None:
            data = data[: max(0, min(crash, len(data)))]
        stamp = len(self.events) - 1
        if crash is None and self.during_write is not None and not self._in_piece_hook:
            self._write_in_pieces(f, offset, data, self.events[-1], self.during_write)
            return
        f.write(offset, data, stamp)
        if crash is not None:
            raise SimulatedCrash(f"simulated crash during write #{stamp}")

    def _write_in_pieces(
        self, f: PagedFile, offset: int, data: bytes | bytearray, event: Event, hook: PieceHook
    ) -> None:
        """Copy ``data`` piece by piece (each a version of its pages), ``hook`` after each."""
        done = 0
        self._in_piece_hook = True
        try:
            for end in sorted({min(max(p, 0), len(data)) for p in self.pieces(event)}):
                if end > done:
                    f.write(offset + done, data[done:end], event.index)
                    done = end
                    hook(event, done)
            if done < len(data):
                f.write(offset + done, data[done:], event.index)
                hook(event, len(data))
        finally:
            self._in_piece_hook = False

    def reading(self, f: PagedFile, offset: int) -> None:
        """A mapping's buffer is about to be taken: run ``during_read``, unless it is running."""
        hook = self.during_read
        if hook is None or self._in_read_hook:
            return
        self._in_read_hook = True
        try:
            hook("journal" if offset >= f.journal_offset > 0 else "slots")
        finally:
            self._in_read_hook = False

    def sync_pages(self, f: PagedFile, offset: int, length: int) -> None:
        """An msync of a range of ``f``: an event, a crash if one is due, or a failure."""
        if self._event(f, Op.SYNC, offset, length) is not None:
            raise SimulatedCrash(f"simulated crash before sync #{len(self.events) - 1}")
        if self.fail_syncs:
            raise OSError(errno.EIO, "Input/output error (simulated)")
        f.sync(offset, length)
