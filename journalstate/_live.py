"""The store beside a live writer: ``refresh``, ``wait`` and the change feed ``changes``.

What belongs here is :class:`Live`, the part of the store that follows commits it did not make:
a read-only store moving to the writer's newest state, and any store (the writer's too)
reading its history back as a feed of :class:`Commit` items. The reading itself, and why it
never shows a torn or mixed state, is ``_follow``'s; the write paths are ``_chain``'s.

A read-only store keeps its state image in step with ``_head`` (the state the store shows).
``refresh`` patches that image in place, so it marks it dirty first: an exception between two
patches (a signal handler's) leaves the mark, and the next call rebuilds the image from the
state the store still shows, which the patches had not yet replaced.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from functools import partial
from typing import Any, TypeVar

import attrs

from journalstate._chain import SEQ, STATE, TAIL, Chain
from journalstate._errors import (
    ChangesUnavailable,
    InvalidValue,
    StoreCorrupt,
    StoreReplaced,
    StoreRewound,
)
from journalstate._follow import Cursor, FieldIndex, Follower, Gap, probe, valid_slots
from journalstate._options import checked_flag, checked_seq, checked_wait
from journalstate._storage import file_replaced, lock_holder

T = TypeVar("T")

_FIRST_POLL = 0.00005
"""Seconds a waiter first sleeps between two probes of the file; doubled up to _LAST_POLL."""
_LAST_POLL = 0.0005
"""The longest sleep between two probes: a commit wakes a waiter within about this long."""
_REPLACED_EVERY = 0.1
"""Seconds between two checks, while waiting, that the path still names the open file."""
_END_MARKER_START = bytes(16)
"""What a probe reads where the next record goes while it is still the end marker."""
_BATCH = 256
_RESTARTS = 3
"""Times a change feed that met a gap starts again from a checkpoint before it gives up."""
"""Commits the change feed reads under the store's lock before it yields them."""


@attrs.frozen
class Commit:
    """One commit, as the change feed (:meth:`Store.changes`) delivers it."""

    seq: int
    """Its sequence number."""
    state: Any
    """The state it committed (an instance of the schema class)."""
    changed: tuple[str, ...]
    """The paths of the fields it changed ("count", "pos.x"; an array is one field)."""


class Live(Chain[T]):
    """The calls that follow a live writer; a base of :class:`~journalstate.Store`."""

    _follower: Follower | None = None
    _image_dirty: bool = False
    _feed_end: Follower | None = None
    """Where the last change feed that ran to its end stopped: the next one may start there."""

    # --- refresh ---------------------------------------------------------------------------

    @property
    def writer_pid(self) -> int | None:
        """The pid of the process that has this store open for writing, or None.

        None when no other process holds the writer lock: the writer closed the store or died
        (a reader keeps the last state it read, and follows the next writer that opens the
        path). Also None where the system does not tell (``/proc/locks`` is Linux's), and on
        the writer's own store. Reading it costs a read of ``/proc/locks``: poll it after
        ``wait()`` times out, not between commits.
        """
        self._check_open()
        return lock_holder(self._file)

    def refresh(self) -> bool:
        """Move a read-only store to the newest committed state; True if it moved.

        Reads only the records the writer appended since this store's position; when the
        writer has lapped the journal past it, checkpointed past it or started a new session
        (it closed and reopened, or died and was reopened), it reads the newest checkpoint
        instead. It never shows a torn or mixed state and never raises for a commit or a
        checkpoint in progress. On a writable store it returns False: the writer always shows
        its newest state.

        Raises:
            StoreReplaced: the path names another file now (a migration replaced it).
            StoreRewound: the store went back before the state this store shows (a writer
                rolled it back); open the path again.
            StoreCorrupt: a whole, checksummed record or checkpoint that cannot be applied.
            StoreClosed: the store is closed.
            ReentrantCall: called from a signal handler that interrupted a call of this store.
        """
        me = self._enter()
        try:
            self._inside.add(me)
            with self._lock:
                self._check_open()
                if not self._readonly:
                    return False
                if file_replaced(self._file):
                    raise StoreReplaced(
                        self._path,
                        "a new store file replaced the one open here; open the path again",
                    )
                return self._refresh_locked()
        finally:
            self._inside.discard(me)

    def _reader_follower(self) -> Follower:
        """The follower of this read-only store's own state, its image clean again if an
        interrupted refresh left it dirty."""
        follower = self._follower
        if follower is not None and not self._image_dirty:
            return follower
        state = self._head[STATE]
        if self._image_dirty:
            self._image = bytearray(self._schema.encode(state))
        base = self._base
        cursor = Cursor(base.epoch, self._head[SEQ], self._head[TAIL], base.generation)
        follower = Follower(self._path, self._header, cursor, self._image)
        self._follower = follower
        self._image_dirty = False
        return follower

    def _refresh_locked(self) -> bool:
        follower = self._reader_follower()
        before = follower.cursor
        slots, ring = self._slots.buffer, self._ring.buffer
        snapshot = probe(slots, ring, self._header, before.position)
        if snapshot == follower.quiet:
            return False
        follower.quiet = None
        # Until the new state is published, the image may be ahead of the state shown, or
        # half-patched if an exception (a signal handler's) lands between two patches: the
        # mark and the forgotten follower make the next call start again from the state shown.
        self._image_dirty = True
        self._follower = None
        try:
            while True:
                try:
                    for _ in follower.records(slots, ring):
                        pass
                    break
                except Gap:
                    if not follower.jump(slots):
                        break
        except (StoreRewound, StoreCorrupt):
            # Raised between two commits: what was read up to there is a committed state.
            self._follower = follower
            self._publish(follower, before)
            raise
        self._follower = follower
        self._publish(follower, before)
        if follower.cursor == before and snapshot.startswith(_END_MARKER_START):
            follower.quiet = snapshot
        return follower.cursor.seq != before.seq

    def _publish(self, follower: Follower, before: Cursor) -> None:
        """Make the follower's place and state the store's (its image is already patched)."""
        cursor = follower.cursor
        if cursor == before:
            self._image_dirty = False
            return
        state = self._head[STATE]
        if cursor.seq != before.seq:
            try:
                state = self._schema.decode(follower.image)
            except InvalidValue as e:
                # A whole, checksummed history whose state does not decode: damage, not a
                # race. The mark stays: the next call starts again from the state shown.
                self._follower = None
                raise StoreCorrupt(
                    self._path, f"the state at seq {cursor.seq} does not decode ({e})"
                ) from e
        self._head = (cursor.position, cursor.seq, state, cursor.position, [], b"")
        self._image_dirty = False
        self._base = self._base._replace(epoch=cursor.epoch, generation=cursor.generation)

    # --- wait ------------------------------------------------------------------------------

    def wait(self, timeout: float | None = None) -> bool:
        """Block until a commit newer than this store's state exists, then move to it.

        Returns True once the store moved (as :meth:`refresh`), False when ``timeout`` seconds
        passed first (None waits as long as it takes). A read-only store probes a few bytes of
        the mapped file (where the next record goes, and the slot heads) at intervals of up to
        half a millisecond, and reads the journal only when they change: the writer pays
        nothing. On the writer's store it waits for a commit of another thread.

        Raises:
            InvalidArgument: ``timeout`` is not None or a number of seconds >= 0.
            ReentrantCall: called from a signal handler that interrupted a call of this store.
            StoreReplaced, StoreRewound, StoreCorrupt, StoreClosed: as :meth:`refresh`.
        """
        limit = checked_wait("timeout", timeout)
        self._enter()  # from a signal handler inside a call of this store: ReentrantCall
        deadline = None if limit is None else time.monotonic() + limit
        # Taken before the reading: a commit landing after refresh() found nothing changes the
        # bytes after this (refresh() that does not move leaves the position where it was).
        last = self._probe()
        if self._readonly and self.refresh():
            return True
        return self._wait_past(self._shown_seq(), deadline, last)

    def _shown_seq(self) -> int:
        """The seq of the state the store shows (settling an interrupted commit first)."""
        if self._pending is not None:
            self._settle_idle()
        return self._head[SEQ]

    def _wait_past(self, seq: int, deadline: float | None, last: bytes) -> bool:
        """Sleep until the store shows a commit after ``seq`` (True) or ``deadline`` passes.

        ``last`` is a probe taken before the store last looked for a commit.
        """
        replaced_check = time.monotonic() + _REPLACED_EVERY

        def moved() -> bool:
            nonlocal last, replaced_check
            current = self._probe()
            if current == last and not (self._readonly and time.monotonic() >= replaced_check):
                return False
            replaced_check = time.monotonic() + _REPLACED_EVERY
            last = current
            if self._readonly:
                self.refresh()
            return self._shown_seq() > seq

        return _poll(moved, deadline)

    def _probe(self) -> bytes:
        """Bytes that change when the writer commits or checkpoints (see ``_follow.probe``)."""
        with self._lock:
            self._check_open()
            if not self._readonly:
                return self._head[SEQ].to_bytes(8, "little")
            return probe(self._slots.buffer, self._ring.buffer, self._header, self._head[TAIL])

    # --- the change feed -------------------------------------------------------------------

    def changes(
        self, since_seq: int, *, follow: bool = False, timeout: float | None = None
    ) -> Iterator[Commit]:
        """Each commit after ``since_seq``, in order and without gaps, as :class:`Commit`.

        Reads the journal, on the writer's store or a read-only one (whose own state it does
        not move). Without ``follow`` it ends after the newest commit; with ``follow`` it
        waits for more, and ends only when ``timeout`` seconds pass without a new commit
        (never when ``timeout`` is None).

        Raises:
            ChangesUnavailable: the records after ``since_seq`` (or after a commit the feed
                reached) are no longer in the journal; its ``oldest_seq`` says where the
                journal can start now. Raised when the feed reaches the gap: never a gap.
            StoreRewound: the store went back before a commit the feed delivered.
            InvalidArgument: ``since_seq`` is not an int >= 0, ``timeout`` not None or a
                number of seconds >= 0, or ``follow`` not a bool.
            ReentrantCall: called, or the feed read, from a signal handler that interrupted a
                call of this store.
            StoreReplaced, StoreCorrupt, StoreClosed: as :meth:`refresh`.
        """
        since = checked_seq("since_seq", since_seq)
        follow = checked_flag("follow", follow)
        limit = checked_wait("timeout", timeout)
        self._enter()
        self._check_open()
        return self._feed(since, follow, limit)

    def _feed(self, since: int, follow: bool, limit: float | None) -> Iterator[Commit]:
        fields = FieldIndex([(f.offset, f.size, f.path) for f in self._schema.fields()])
        decode = self._schema.decode
        # Each step checks that this thread is not inside another call of this store (a
        # signal handler's): the state image may be between two commits' patches there.
        self._enter()
        with self._lock:
            follower = self._feed_start(since)
        restarts = 0
        while True:
            batch: list[Commit] = []
            error: BaseException | None = None
            continue_from_checkpoint = False
            self._enter()
            with self._lock:
                self._check_open()
                if self._readonly and file_replaced(self._file):
                    raise StoreReplaced(
                        self._path,
                        "a new store file replaced the one open here; open the path again",
                    )
                # Taken before the records are read: a commit that lands after the reading
                # found nothing changes the bytes after this, so the wait below sees it.
                before = self._feed_probe(follower)
                try:
                    for record in follower.records(self._slots.buffer, self._ring.buffer):
                        if record.seq <= since:
                            continue
                        try:
                            state = decode(follower.image)
                        except InvalidValue as e:
                            raise StoreCorrupt(
                                self._path, f"the state at seq {record.seq} does not decode ({e})"
                            ) from e
                        batch.append(Commit(record.seq, state, fields.changed(record.patches)))
                        if len(batch) >= _BATCH:
                            break
                except Gap:
                    # A checkpoint may still lead to where the feed is (the gap was in the
                    # chain it followed, not in what the journal holds): go on from there, a
                    # few times at most before the feed has delivered anything more.
                    reached = max(since, follower.cursor.seq)
                    try:
                        if restarts >= _RESTARTS:
                            raise ChangesUnavailable(self._path, reached, self._oldest_available())
                        follower = self._feed_start(reached)
                        restarts += 1
                        continue_from_checkpoint = True
                    except ChangesUnavailable as unavailable:
                        error = unavailable
                except (StoreRewound, StoreCorrupt) as e:
                    error = e
            if batch:
                restarts = 0
            yield from batch
            if error is not None:
                raise error
            if batch or continue_from_checkpoint:
                continue
            if not follow:
                self._feed_end = follower  # a feed asked for after its last seq starts here
                return
            deadline = None if limit is None else time.monotonic() + limit
            if not _poll(partial(self._probe_changed, follower, before), deadline):
                return

    def _probe_changed(self, follower: Follower, before: bytes) -> bool:
        """Whether the bytes after the feed's cursor changed since the probe ``before``."""
        return self._feed_probe(follower) != before

    def _feed_probe(self, follower: Follower) -> bytes:
        """The probe of the bytes after the feed's cursor (see ``_follow.probe``)."""
        with self._lock:
            self._check_open()
            return probe(
                self._slots.buffer, self._ring.buffer, self._header, follower.cursor.position
            )

    def _feed_start(self, since: int) -> Follower:
        """A follower at ``since`` (or before it, when the writer has not reached it yet), from
        which the commits after ``since`` can be read.

        Where the last feed that ran to its end stopped, when that is ``since`` (a reader that
        moved on can go on reading the feed where it left it). Else from the closest state at
        or before ``since`` whose records reach it: this store's own state, or a checkpoint;
        the records up to ``since`` are read, not delivered.
        """
        end = self._feed_end
        if end is not None and end.cursor.seq == since:
            self._feed_end = None  # the new feed owns it now
            return end
        seq = self._shown_seq()  # settles a commit an exception interrupted (a writer's)
        slots, ring = self._slots.buffer, self._ring.buffer
        starts: list[tuple[Cursor, bytes | bytearray]] = []
        if seq <= since:
            image = self._schema.encode(self._head[STATE]) if self._image_dirty else self._image
            base = self._base
            starts.append((Cursor(base.epoch, seq, self._head[TAIL], base.generation), image))
        for head, state in valid_slots(slots, self._header):
            if head.seq <= since:
                starts.append((Cursor(head.epoch, head.seq, head.position, head.generation), state))
        starts.sort(key=lambda start: -start[0].seq)  # the closest first; stable: own state
        for cursor, image in starts:
            follower = Follower(self._path, self._header, cursor, bytearray(image))
            try:
                if cursor.seq < since:
                    for record in follower.records(slots, ring):
                        if record.seq >= since:
                            break
            except (Gap, StoreRewound, StoreCorrupt):
                continue
            return follower
        raise ChangesUnavailable(self._path, since, self._oldest_available())

    def _oldest_available(self) -> int:
        """The lowest ``since_seq`` whose commits the journal can still deliver, right now."""
        slots, ring = self._slots.buffer, self._ring.buffer
        found = valid_slots(slots, self._header)
        valid = sorted(found, key=lambda s: s[0].seq)
        if not valid:
            return self._head[SEQ]
        newest = valid[-1][0].seq
        for head, image in valid:
            follower = Follower(
                self._path,
                self._header,
                Cursor(head.epoch, head.seq, head.position, head.generation),
                bytearray(image),
            )
            try:
                for record in follower.records(slots, ring):
                    if record.seq >= newest:
                        break
            except (Gap, StoreRewound, StoreCorrupt):
                continue
            if follower.cursor.seq >= newest:
                return head.seq
        return newest


def _poll(done: Callable[[], bool], deadline: float | None) -> bool:
    """Call ``done`` between sleeps until it says True (True), or ``deadline`` passes (False).

    The sleeps start at ``_FIRST_POLL`` and double up to ``_LAST_POLL``; they start again from
    the first after each call of ``done`` that saw something change but not yet enough.
    """
    interval = _FIRST_POLL
    while True:
        now = time.monotonic()
        if deadline is not None and now >= deadline:
            return False
        wake = now + interval if deadline is None else min(now + interval, deadline)
        time.sleep(max(wake - now, 0.0))
        interval = min(interval * 2, _LAST_POLL)
        if done():
            return True
