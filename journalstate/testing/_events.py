"""What happens on the simulated disk: its events, the crash one can trigger, named crash points.

Every write, sync and change of names on :class:`~journalstate.testing.SimStorage` is an
:class:`Event`; a :data:`CrashHook` sees each one before it takes effect and may crash the
machine there. :func:`crash_point` builds such a hook from a name in :data:`CRASH_POINTS`.
A :data:`PieceHook` runs in the middle of a write instead, without crashing: the disk applies
the write in pieces (:func:`sector_pieces` by default) and calls it after each one, so a test
can read the file as another process would while the writer's copy is under way.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from typing import Protocol

import attrs

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
    CREATE = "create"
    """A new (temporary) name in the directory."""
    RENAME = "rename"
    LINK = "link"
    UNLINK = "unlink"
    DIRSYNC = "dirsync"
    """fsync of the directory: every name change so far becomes durable."""


@attrs.frozen
class Event:
    """One write or sync that reached the simulated disk."""

    index: int
    op: Op
    region: str
    """"header", "slots" or "journal" (by the region's file offset), "temporary" for a write
    to a temporary file, "directory" for a change of names."""
    offset: int
    """File offset (0 for a change of names)."""
    length: int


CrashHook = Callable[[Event], "int | None"]
"""Called before each event. None lets it happen; an int crashes the machine there: a write
first copies that many of its bytes (a process killed in the middle of a memcpy), a sync
does not happen."""


PieceHook = Callable[[Event, int], None]
"""Called in the middle of a write, after each piece of it reached the page cache, with the
write's event and how many of its bytes the cache holds so far (the last call has all of them,
before the next event). It must not raise; whatever it reads sees the write cut there."""

Pieces = Callable[[Event], "list[int]"]
"""The prefix lengths at which a write is cut into pieces (see :func:`sector_pieces`)."""


def sector_pieces(event: Event) -> list[int]:
    """The prefixes of a write that end on a 512-byte sector boundary of the file, then all of it.

    A write of 10 bytes at file offset 508 is cut after 4 bytes (offset 512), then ends at 10.
    """
    first = -event.offset % 512 or 512
    return [*range(first, event.length, 512), event.length]


def byte_pieces(*cuts: int) -> Pieces:
    """Pieces that cut each write after every one of ``cuts`` bytes inside it, then at its end."""

    def pieces(event: Event) -> list[int]:
        return [*(c for c in sorted(set(cuts)) if 0 < c < event.length), event.length]

    return pieces


class EventLog(Protocol):
    """Anything that records the disk's events in order, as the simulated disk does."""

    @property
    def events(self) -> list[Event]:
        """Every event so far, in order."""
        ...


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


def crash_point(disk: EventLog, name: str, *, cut: int = 0, skip: int = 0) -> CrashHook:
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
