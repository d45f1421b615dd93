"""The chain's bookkeeping and write paths under the store: commit, settle, sync, checkpoint.

What belongs here is :class:`Chain`, the base of the store that keeps where the chain of
records stands (three immutable values, each replaced in one assignment: ``_head``,
``_base``, ``_synced``) and runs each write path with its lock held: a commit's record into
the ring, the settling of a commit an exception cut short, the commit point's msync and the
checkpoint into a slot. The bytes and where they go in the ring are ``_writer``'s; the public
calls, the start of a writable session and closing are ``_store``'s.

Write paths (each crash window is described where the write happens, and in docs/design.md):

* commit: encode the changed fields as one record, write it (and a zero end marker) at the
  journal tail, then, when the durability asks for it, msync the journal pages written since
  the last sync. That msync is the commit point.
* checkpoint: write the whole state into the slot recovery does not start from, with the next
  generation, msync it, and only then release the journal space it covers.
* open for writing (``Store.begin_session``): recover, zero the end marker at the recovered
  tail, then checkpoint with a new epoch, so records from before this recovery can never join
  this session's chain.
"""

from __future__ import annotations

import threading
import weakref
from contextlib import suppress
from threading import get_ident
from time import perf_counter_ns
from typing import Any, Final, Generic, NamedTuple, TypeVar

import attrs

from journalstate import _accel, _writer
from journalstate._checkpoint import CHUNK, PatchLog, dirty_chunks, write_changes
from journalstate._durability import Durability
from journalstate._errors import (
    ForkedStore,
    InvalidValue,
    ReadOnlyStore,
    StoreClosed,
    StorePoisoned,
    TransactionTooLarge,
)
from journalstate._flusher import start_flusher
from journalstate._format import (
    END_MARKER_SIZE,
    RECORD_HEADER_SIZE,
    SlotHead,
    encode_slot,
    record_size,
)
from journalstate._guards import Guarded
from journalstate._header import Header
from journalstate._journal import max_payload
from journalstate._recovery import RecoveryReport
from journalstate._schema import Schema
from journalstate._slotcrc import SlotCrc
from journalstate._storage import Region, StoreFile
from journalstate._writer import write as ring_write

build_record: Final = _accel.build_record or _writer.build_record  # compiled when built
compiled_chunks = _accel.dirty_chunks  # the compiled dirty_chunks, or None
T = TypeVar("T")
_INTERVAL: Final = Durability.INTERVAL

_FOLLOWER_POLL: Final = 0.05
"""Seconds a follower waits for a wake-up before it looks at the sync lock again."""


@attrs.define
class StoreStats:
    """Counters of what the store did since it was opened."""

    commits: int = 0
    """Commits that wrote a record."""
    journal_syncs: int = 0
    """msync calls on the journal (commit points and flushes)."""
    journal_sync_ns: int = 0
    """Nanoseconds spent in those msync calls (``time.perf_counter_ns``)."""
    slot_syncs: int = 0
    """msync calls on a slot (one per checkpoint)."""
    checkpoints: int = 0
    bytes_journaled: int = 0


_Head = tuple[int, int, Any, int, list[tuple[int, bytes]], bytes]
"""The end of the chain as a commit leaves it, swapped in one assignment.

``(tail, seq, state, start, patches, record)``: the logical journal position where the next
record goes, the sequence number and the state of the last commit, and what
:meth:`Chain._settle` needs to finish or undo that commit: where its record starts, its
patches to the state image and the record's bytes with the end marker after it (empty when it
wrote no record). A plain tuple: the commit path builds one per commit, and a named tuple
costs several times more to build. Read it with the indexes below.
"""
TAIL: Final = 0
SEQ: Final = 1
STATE: Final = 2


class _Base(NamedTuple):
    """The newest durable checkpoint. Swapped in one assignment when a checkpoint completes."""

    slot: int
    position: int
    """The journal's live records lie in ``[position, tail)``."""
    seq: int
    """The sequence number the slot's state covers."""
    generation: int
    epoch: int


class _Synced(NamedTuple):
    """How much of the journal is known durable; both values only grow."""

    position: int
    """The ring up to here, and the end marker after it, were msync'ed."""
    seq: int
    """``durable_seq``: the highest sequence number durable against an OS crash."""


class Chain(Guarded, Generic[T]):
    """The chain's bookkeeping and the write paths, each called with the store's lock held."""

    def __init__(
        self,
        *,
        path: str,
        schema: Schema,
        file: StoreFile,
        header: Header,
        slots: Region,
        ring: Region,
        state: T,
        image: bytearray,
        report: RecoveryReport,
        durability: Durability,
        readonly: bool,
        checkpoint_threshold: float,
        flush_interval: float = 1.0,
    ) -> None:
        super().__init__(path)
        self._flush_interval = flush_interval
        self._schema = schema
        self._cls = schema.cls  # the commit path's: one attribute each
        self._diff = _accel.commit_diff(schema)
        self._file = file
        self._header = header
        self._slots = slots
        self._ring = ring
        self._image = image
        self._report = report
        self._durability = durability
        self._readonly = readonly
        self._journal_size = header.journal_size
        self._max_payload = max_payload(header.journal_size)
        self._checkpoint_at = checkpoint_threshold * header.journal_size
        self._closed = False
        self._poisoned: BaseException | None = None
        self.stats = StoreStats()
        # Where the chain stands: three values, each replaced by one assignment, so that an
        # exception between any two bytecodes leaves each either old or new, never half-set.
        base_head = report.slots[report.slot].head
        self._base = _Base(
            slot=report.slot,
            position=report.position if base_head is None else base_head.position,
            seq=report.base_seq,
            generation=report.generation,
            epoch=report.epoch,
        )
        self._head: _Head = (report.position, report.seq, state, report.position, [], b"")
        # Only the slot is known durable; a writable open's checkpoint makes all of it durable.
        self._synced = _Synced(report.position, report.base_seq)
        # The head of a commit between the start of its ring write and the end of its
        # bookkeeping: once `_head is _pending`, the commit happened (see _settle).
        self._pending: _Head | None = None
        # The patches of the commits since the older slot was last written, and for each slot
        # the log's count when it was (None: its bytes are unknown; the next checkpoint into
        # it writes it whole). See _checkpoint.
        self._patch_log = PatchLog(0, [])
        self._slot_marks: tuple[int | None, int | None] = (None, None)
        self._slot_crc = SlotCrc(header.state_size)
        self._flusher: threading.Thread | None = None
        self._stop_flusher = threading.Event()
        # Group commit (see _commit_point): leaders' rounds, and the followers waiting for one.
        self._sync_cond = threading.Condition(threading.Lock())
        self._sync_rounds = 0
        self._sync_waiting = 0
        # Replication (journalstate.replicate): the journal position before which every record
        # is in the object store, set by the shipper's thread; None when not replicating.
        self._shipped_position: int | None = None
        self._shipper: Any = None

    def _commit_locked(self, state: T, mode: Durability) -> int:
        if self._pending is not None:
            self._settle()
        if self._closed or self._poisoned is not None or self._readonly or self._forked:
            self._check_writable()
        if type(state) is not self._cls:
            raise InvalidValue(
                "<root>", f"expected a {self._cls.__name__}, got {type(state).__name__}"
            )
        tail, last, current, _, _, _ = self._head
        patches = self._diff(current, state)
        if not patches:
            if state is not current:
                self._head = (tail, last, state, tail, [], b"")
            return last  # the commit point (if any) still covers earlier records
        seq = last + 1
        journal_size = self._journal_size
        base = self._base
        record, size = build_record(
            base.epoch, seq, tail, self._synced.seq, base.generation, patches
        )
        if size - RECORD_HEADER_SIZE > self._max_payload:
            raise TransactionTooLarge(size, record_size(self._max_payload))
        if tail + size + END_MARKER_SIZE - base.position > journal_size:
            self._checkpoint_locked()
            base = self._base  # the generation and durable_seq moved
            record, size = build_record(
                base.epoch, seq, tail, self._synced.seq, base.generation, patches
            )
        new: _Head = (tail + size, seq, state, tail, patches, record)
        # Logged before the image changes: a checkpoint rewrites the chunks logged patches
        # touch, and one logged for a commit that then does not happen rewrites equal bytes.
        self._patch_log.entries.append(patches)
        # An exception from here to the clearing of _pending (a signal handler's, between
        # any two bytecodes) leaves a pending commit, which the next call settles: see _settle.
        self._pending = new
        # Crash window: the record is in the page cache, not on disk. Process death keeps it
        # (recovery replays it); an OS crash may keep any subset of its sectors, which the
        # record's crc rejects as a torn tail, so recovery stops at the previous commit.
        start = tail % journal_size
        if start + len(record) <= journal_size:  # _writer.write's one-copy case, inline
            self._ring.write(start, record)
        else:
            ring_write(self._ring, journal_size, tail, record)
        # The commit happens here, in one assignment: the head holds tail, seq and state.
        # The commit point comes after the lock is released (see _commit_point), so other
        # threads can append their records meanwhile and share one msync: group commit.
        self._head = new
        image = self._image
        for offset, data in patches:
            image[offset : offset + len(data)] = data
        self._pending = None
        stats = self.stats
        stats.commits += 1
        stats.bytes_journaled += size
        if mode is _INTERVAL and self._flusher is None:
            self.start_flusher(self._flush_interval)
        if tail + size - base.position > self._checkpoint_at:
            shipped = self._shipped_position
            # Replicating: the threshold's checkpoint waits until the records before this one
            # are shipped (the one for space above never waits: commits never do).
            if shipped is None or shipped >= tail:
                self._checkpoint_locked()
        return seq

    def _settle(self) -> None:
        """Finish or undo a commit that an exception interrupted (with the lock held).

        The rule is recovery's: the commit happened if its record is whole in the ring (a
        reader, or a reopen after a process death, would replay it), and not otherwise.

        * The head was swapped, or the record is whole: the commit happened. The record is
          written again (its end marker may have been cut), the head is swapped if it was
          not, and the patches are applied to the image again (absolute offsets).
        * The record is partial or absent: the commit did not happen. The zero end marker is
          written over its start again, so that no later write can complete it.

        Every step is idempotent, so a settle that is itself interrupted is simply redone.
        """
        pending = self._pending
        if pending is None or self._forked or self._closed:
            return
        tail, _, _, start, patches, record = pending
        if self._head is not pending:
            size = self._journal_size
            if not _writer.holds(self._ring.buffer, size, start, record[: tail - start]):
                _writer.write_end_marker(self._ring, size, start)
                if self._poisoned is None:
                    # Crash window: until this msync returns, an OS crash may bring back a
                    # record the zeros replace: only a partial one, which its crc rejects.
                    # Without it, a checkpoint at this tail could lead a recovery after an
                    # OS crash onto whatever an earlier lap left here.
                    with suppress(StorePoisoned):  # poisoned now: every later write says so
                        self._sync_marker(start)
                self._pending = None
                return
            _writer.write(self._ring, self._journal_size, start, record)
            self._head = pending
        image = self._image
        for offset, data in patches:
            image[offset : offset + len(data)] = data
        self._pending = None

    def _settle_idle(self) -> None:
        """Settle a pending commit for a reader, unless this thread is inside an operation."""
        me = get_ident()
        inside = self._inside
        if me in inside:
            return  # a signal handler reading the state: the interrupted call settles
        with self._lock:
            try:
                inside.add(me)
                self._settle()
            finally:
                inside.discard(me)

    def _commit_point(self, seq: int) -> None:
        """Return once the record of commit ``seq`` is durable (msync'ed), syncing if needed.

        Group commit: one thread (the leader) msyncs at a time, outside the store lock,
        everything written so far. A thread that finds an msync in flight waits for it to end
        without queueing on the sync lock (a follower): the followers that msync covered
        return at once, and the first whose record it did not cover leads the next one. Queued
        on the lock instead, the threads would pass it one by one after each msync, each
        wake-up in turn, with no msync in flight meanwhile (a lock convoy).

        Raises:
            StorePoisoned: the msync failed (now or in another thread); the commit is in doubt.
            StoreClosed: the store was closed before the record was made durable.
        """
        sync_lock = self._sync_lock
        while self._synced.seq < seq:
            rounds = self._sync_rounds  # before the check: a leader after it counts one more
            if sync_lock.locked():
                self._sync_wait(rounds)
                continue
            with sync_lock:
                with self._lock:
                    synced = self._synced
                    if synced.seq >= seq:
                        return  # covered by another thread's msync, or by a checkpoint
                    self._check_open()
                    tail, last = self._head[TAIL], self._head[SEQ]
                    start = max(synced.position, self._base.position)
                # The commit point: once this msync returns, the records up to `last` are
                # durable. An exception after it returns (a signal handler's) leaves
                # durable_seq behind: durability is only ever reported for a sync known to
                # have completed.
                self._sync_range(start, tail)
                with self._lock:
                    self._mark_synced(tail, last)
            self._sync_done()
            return

    def _sync_wait(self, rounds: int) -> None:
        """Wait, as a follower, until the msync in flight when ``rounds`` was read has ended.

        The leader wakes its followers (:meth:`_sync_done`) after it released the sync lock;
        the timeout only bounds the wait when no wake-up comes (a leader interrupted before
        it, or ``close()`` holding the lock): the lock found free ends the wait too.
        """
        done = self._sync_cond
        sync_lock = self._sync_lock
        with done:
            self._sync_waiting += 1
            try:
                while self._sync_rounds == rounds and sync_lock.locked():
                    done.wait(_FOLLOWER_POLL)
            finally:
                self._sync_waiting -= 1

    def _sync_done(self) -> None:
        """End a leader's round: count it and wake the followers (the sync lock is released)."""
        self._sync_rounds += 1
        if self._sync_waiting:
            done = self._sync_cond
            with done:
                done.notify_all()

    def _mark_synced(self, position: int, seq: int) -> None:
        """Record that the journal through ``position`` and commits through ``seq`` are durable."""
        synced = self._synced
        if position > synced.position or seq > synced.seq:
            self._synced = _Synced(max(position, synced.position), max(seq, synced.seq))

    def _sync_journal(self) -> None:
        """msync the journal from the last synced position through the tail's end marker."""
        synced = self._synced
        tail, seq, _, _, _, _ = self._head
        if synced.position >= tail:
            return
        self._sync_range(max(synced.position, self._base.position), tail)
        self._mark_synced(tail, seq)

    def _sync_range(self, start: int, tail: int) -> None:
        """msync the ring from logical ``start`` through the end marker after ``tail``."""
        if start >= tail:
            return
        began = perf_counter_ns()
        _writer.sync(self._sync_ring, self._journal_size, start, tail)
        stats = self.stats
        stats.journal_sync_ns += perf_counter_ns() - began
        stats.journal_syncs += 1

    def _sync_marker(self, position: int) -> None:
        """msync the end marker at ``position`` (two ranges when it wraps the ring's end)."""
        _writer.sync_end_marker(self._sync_ring, self._journal_size, position)

    def _sync_ring(self, offset: int, length: int) -> None:
        self._guarded_sync(self._ring, offset, length)

    def _guarded_sync(self, region: Region, offset: int, length: int) -> None:
        try:
            region.sync(offset, length)
        except OSError as e:
            # Never retry: after a failed msync the kernel may have dropped the dirty pages,
            # and a second msync that succeeds proves nothing about them.
            self._poisoned = e
            raise StorePoisoned(e) from e

    def _checkpoint_locked(
        self, *, new_epoch: int | None = None, target: int | None = None
    ) -> None:
        assert self._pending is None, "a checkpoint must see the image of the head's state"
        base = self._base
        tail, seq, _, _, _, _ = self._head
        target = 1 - base.slot if target is None else target
        generation = base.generation + 1
        epoch = base.epoch if new_epoch is None else new_epoch
        slot_head = SlotHead(generation, epoch, seq, tail, self._header.state_size)
        offset = target * self._header.slot_size
        if self._synced.position < tail:
            # The slot will say "the journal continues at the tail": make the zero end marker
            # there durable first (only in process and interval modes; a commit point already
            # synced it), so that after an OS crash the journal ends cleanly at the slot's
            # position instead of on whatever an earlier lap left there.
            self._sync_marker(tail)
        log, marks = self._patch_log, self._slot_marks
        mark = marks[target]
        # Until the slot is written whole and right, nothing is known of its bytes: an
        # exception from here on leaves the next checkpoint into it a full one.
        self._slot_marks = (None, marks[1]) if target == 0 else (marks[0], None)
        logged = log.end
        # Crash window: the target slot is partly written. Its crc fails (or it still holds
        # its older, valid contents), so recovery starts from the base slot and replays the
        # journal, none of which has been released yet. The same holds when only the chunks
        # that changed since the slot was last written are rewritten (_checkpoint).
        if mark is None:
            data = encode_slot(slot_head, self._image)
            self._slots.write(offset, data)
            self._guarded_sync(self._slots, offset, len(data))
        else:
            since, state_size = log.since(mark), self._header.state_size
            if compiled_chunks is None:
                chunks = dirty_chunks(since, state_size)
            else:
                chunks = compiled_chunks(since, state_size, CHUNK)
            start, length = write_changes(
                self._slots, offset, slot_head, self._image, chunks, self._slot_crc
            )
            self._guarded_sync(self._slots, start, length)
        # The slot is durable: from here recovery starts from it. Only now may the journal
        # space before the tail be reused, and that happens in this one assignment. An
        # exception before it (a signal handler's) leaves the old base in memory: still a
        # durable slot whose records are all in the journal, so the store stays correct; the
        # next checkpoint writes the same target slot again.
        self._base = _Base(target, tail, seq, generation, epoch)
        self._mark_synced(tail, seq)
        marks = self._slot_marks
        self._slot_marks = (logged, marks[1]) if target == 0 else (marks[0], logged)
        known = [m for m in self._slot_marks if m is not None]
        self._patch_log = self._patch_log.trimmed(min(known))
        self.stats.slot_syncs += 1
        self.stats.checkpoints += 1

    def _check_open(self) -> None:
        if self._closed:
            raise StoreClosed(f"{self._path}: the store is closed")
        if self._poisoned is not None:
            raise StorePoisoned(self._poisoned)

    def _check_writable(self) -> None:
        if self._forked and not self._closed:
            raise ForkedStore(self._path)
        self._check_open()
        if self._readonly:
            raise ReadOnlyStore(f"{self._path}: the store was opened read-only")

    def start_flusher(self, interval: float) -> None:
        """Start the background flush of the interval durability (for ``_open``)."""
        self._flusher = start_flusher(
            weakref.WeakMethod(self._flush_tick),
            interval,
            self._stop_flusher,
            f"journalstate-flush:{self._path}",
        )

    def stop_flusher(self) -> None:
        """Ask the background flusher, if any, to end (for a simulated process death)."""
        self._stop_flusher.set()

    def _flush_tick(self) -> bool:
        """One background flush; False when the flusher should stop."""
        with self._lock:
            if self._closed or self._poisoned is not None or self._forked:
                return False
            try:
                self._sync_journal()
            except StorePoisoned:
                return False
            except BaseException as e:  # nobody to raise to: poison the store
                self._poisoned = e
                return False
        return True

    def _forked_in_child(self) -> None:
        """In a child process after fork(): refuse writes, forget the parent's threads."""
        super()._forked_in_child()
        self._sync_cond = threading.Condition(threading.Lock())  # another thread's, maybe held
        self._sync_waiting = 0
        self._flusher = None  # the thread exists only in the parent
        self._shipper = None  # so does the shipper's: the child never ships the parent's store
        self._shipped_position = None
