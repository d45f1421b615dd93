"""One file on the simulated disk: its page cache, its durable pages and their crash images.

A :class:`PagedFile` keeps the bytes the page cache holds, the bytes as of each page's last
sync, and every version a page went through since: enough to produce each disk image an OS
crash may leave of it. The names of files, events and crashes are the disk's (``_disk``).
"""

from __future__ import annotations

import attrs

from journalstate._storage import PAGE_SIZE
from journalstate.testing._events import Chooser

SECTOR_SIZE = 512
"""The unit a disk writes atomically: each sector of a torn page holds one version."""


@attrs.define
class PagedFile:
    """A file's page cache and durable bytes, with the versions of each unsynced page."""

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
    temporary: bool = False
    dead: bool = False
    """Replaced by set_image() or a restart: handles to it belong to a dead process."""

    def reborn(self, image: bytes | None) -> PagedFile:
        """This file after a restart: the page cache kept (``image`` None) or ``image``."""
        self.dead = True
        if image is None:
            return PagedFile(
                cache=bytearray(self.cache),
                durable=self.durable,
                history=self.history,
                stamps=self.stamps,
                incarnation=self.incarnation + 1,
                slots_offset=self.slots_offset,
                journal_offset=self.journal_offset,
                temporary=self.temporary,
            )
        return PagedFile(
            cache=bytearray(image), durable=bytearray(image), incarnation=self.incarnation + 1
        )

    def write(self, offset: int, data: bytes | bytearray, stamp: int) -> None:
        """Copy ``data`` into the page cache, a new version of each page it touches."""
        if not data:
            return
        first = offset // PAGE_SIZE
        last = (offset + len(data) - 1) // PAGE_SIZE
        for page in range(first, last + 1):
            if page not in self.history:
                start = page * PAGE_SIZE
                self.history[page] = [bytes(self.durable[start : start + PAGE_SIZE])]
                self.stamps[page] = []
        self.cache[offset : offset + len(data)] = data
        for page in range(first, last + 1):
            start = page * PAGE_SIZE
            self.history[page].append(bytes(self.cache[start : start + PAGE_SIZE]))
            self.stamps[page].append(stamp)

    def sync(self, offset: int, length: int) -> None:
        """Make the cached pages of the range durable, forgetting their older versions."""
        first = offset // PAGE_SIZE
        last = (offset + max(length, 1) - 1) // PAGE_SIZE
        for page in range(first, last + 1):
            if page in self.history:
                start = page * PAGE_SIZE
                self.durable[start : start + PAGE_SIZE] = self.cache[start : start + PAGE_SIZE]
                del self.history[page]
                del self.stamps[page]

    def crash_image(self, choose: Chooser, torn_sectors: bool, keep_order: bool) -> bytes:
        """One image an OS crash may leave of this file, picked by ``choose``."""
        image = bytearray(self.durable)
        pages = sorted(self.history)
        if keep_order:
            stamps = sorted({s for p in pages for s in self.stamps[p]})
            cut = stamps[choose(len(stamps) + 1) - 1] if stamps else -1
            for page in pages:
                n = sum(1 for s in self.stamps[page] if s <= cut)
                _put(image, page, self.history[page][n])
            return bytes(image)
        for page in pages:
            versions = self.history[page]
            if not torn_sectors:
                _put(image, page, versions[choose(len(versions))])
                continue
            for sector in range(PAGE_SIZE // SECTOR_SIZE):
                version = versions[choose(len(versions))]
                start = page * PAGE_SIZE + sector * SECTOR_SIZE
                lo = sector * SECTOR_SIZE
                image[start : start + SECTOR_SIZE] = version[lo : lo + SECTOR_SIZE]
        return bytes(image)


def _put(image: bytearray, page: int, data: bytes) -> None:
    image[page * PAGE_SIZE : page * PAGE_SIZE + len(data)] = data
