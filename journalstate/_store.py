"""The store: the only owner of a store file, its mappings, its syncs and its lock.

Write paths (each crash window is described where the write happens, and in docs/design.md):

* commit: encode the changed fields as one record, write it (and a zero end marker) at the
  journal tail, then, when the durability asks for it, msync the journal pages written since
  the last sync. That msync is the commit point.
* checkpoint: write the whole state into the slot recovery does not start from, with the next
  generation, msync it, and only then release the journal space it covers.
* open for writing: recover, zero the end marker at the recovered tail, then checkpoint with a
  new epoch, so records from before this recovery can never join this session's chain.

Signals (docs/design.md, "Signals, Ctrl-C and fork"): the chain's bookkeeping is three
immutable values (``_head``, ``_base``, ``_synced``), each replaced in one assignment, and a
commit cut short by an exception is settled by the next call (``_settle``); a call from a signal
handler into a call of the same store raises ReentrantCall; a forked child cannot write.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from threading import get_ident
from typing import Any, Final, Generic, NamedTuple, TypeVar

import attrs

from journalstate import _writer
from journalstate._durability import Durability, durability_of
from journalstate._errors import (
    ForkedStore,
    InvalidValue,
    ReadOnlyStore,
    ReentrantCall,
    StoreClosed,
    StorePoisoned,
    TransactionTooLarge,
)
from journalstate._flusher import start_flusher
from journalstate._format import (
    END_MARKER_SIZE,
    RECORD_HEADER_SIZE,
    Header,
    SlotHead,
    encode_slot,
    record_size,
)
from journalstate._guards import Guarded
from journalstate._io import Buffer, Region, StoreFile
from journalstate._journal import max_payload
from journalstate._recovery import RecoveryReport
from journalstate._schema import Schema
from journalstate._txn import Draft, build, close

T = TypeVar("T")

DEFAULT_JOURNAL_SIZE = 1 << 20
"""Journal ring size for new stores (bytes): room for thousands of small commits."""
DEFAULT_CHECKPOINT_THRESHOLD = 0.5
"""A commit that leaves the journal fuller than this fraction is followed by a checkpoint."""


@attrs.define
class StoreStats:
    """Counters of what the store did since it was opened."""

    commits: int = 0
    """Commits that wrote a record."""
    journal_syncs: int = 0
    """msync calls on the journal (commit points and flushes)."""
    slot_syncs: int = 0
    """msync calls on a slot (one per checkpoint)."""
    checkpoints: int = 0
    bytes_journaled: int = 0


_Head = tuple[int, int, Any, int, list[tuple[int, bytes]], bytes]
"""The end of the chain as a commit leaves it, swapped in one assignment.

``(tail, seq, state, start, patches, record)``: the logical journal position where the next
record goes, the sequence number and the state of the last commit, and what
:meth:`Store._settle` needs to finish or undo that commit: where its record starts, its
patches to the state image and the record's bytes with the end marker after it (empty when it
wrote no record). A plain tuple: the commit path builds one per commit, and a named tuple
costs several times more to build. Read it with the indexes below.
"""
_TAIL: Final = 0
_SEQ: Final = 1
_STATE: Final = 2


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


class Store(Guarded, Generic[T]):
    """An open store. Use :func:`journalstate.open` to get one; it is a context manager.

    All methods are thread-safe. Transactions of different threads run one after another.
    A store call made while the same thread is inside another call of the same store (from
    a signal handler) raises :class:`ReentrantCall` at once. In a child process after
    ``fork()`` every write raises :class:`ForkedStore`. A store cannot be pickled.
    """

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
        self._flusher: threading.Thread | None = None
        self._stop_flusher = threading.Event()

    # --- properties ------------------------------------------------------------------------

    @property
    def state(self) -> T:
        """The latest committed state (a frozen attrs instance).

        It always matches what a reopen of the file would find: reading it first finishes or
        undoes a commit that an exception (a signal handler's) interrupted, if there is one.
        """
        if self._pending is not None:
            self._settle_idle()
        state: T = self._head[_STATE]
        return state

    @property
    def recovery(self) -> RecoveryReport:
        """What recovery did when the store was opened."""
        return self._report

    @property
    def path(self) -> str:
        """The store file's path."""
        return self._path

    @property
    def schema(self) -> Schema:
        """The compiled schema."""
        return self._schema

    @property
    def state_class(self) -> type[T]:
        """The attrs class of the state (rebuilt from the file when opened with schema=None)."""
        cls: type[T] = self._schema.cls
        return cls

    @property
    def header(self) -> Header:
        """The file's header."""
        return self._header

    @property
    def durability(self) -> Durability:
        """The default durability of commits."""
        return self._durability

    @property
    def readonly(self) -> bool:
        """True when opened with readonly=True."""
        return self._readonly

    @property
    def closed(self) -> bool:
        """True after close()."""
        return self._closed

    @property
    def seq(self) -> int:
        """Sequence number of the latest commit (0 for a store never committed to)."""
        if self._pending is not None:
            self._settle_idle()
        return self._head[_SEQ]

    @property
    def durable_seq(self) -> int:
        """Highest sequence number known durable against an OS crash."""
        return self._synced.seq

    @property
    def generation(self) -> int:
        """Generation of the newest checkpoint."""
        return self._base.generation

    @property
    def position(self) -> int:
        """Logical journal position where the next record goes (the tail; see format.md)."""
        if self._pending is not None:
            self._settle_idle()
        return self._head[_TAIL]

    @property
    def epoch(self) -> int:
        """Epoch of the newest checkpoint: every record this session writes carries it."""
        return self._base.epoch

    @property
    def journal_fill(self) -> float:
        """Fraction of the journal ring holding records not yet covered by a checkpoint."""
        return (self._head[_TAIL] - self._base.position) / self._journal_size

    def slot_buffer(self) -> Buffer:
        """The mapped slots, for reading only (for ``_inspect``); never keep it past a call."""
        return self._slots.buffer

    def ring_buffer(self) -> Buffer:
        """The mapped journal ring, for reading only; never keep it past a call."""
        return self._ring.buffer

    @property
    def _base_slot(self) -> int:
        """The slot recovery would start from now (for tests)."""
        return self._base.slot

    # --- committing ------------------------------------------------------------------------

    def commit(self, state: T, *, durability: Durability | str | None = None) -> int:
        """Make ``state`` the store's state.

        Only fields that differ from the current state are written. When this returns, the new
        state survives process death; with ``"commit"`` durability it also survives an OS crash
        or power loss (the journal pages were msync'ed).

        A commit interrupted by an exception from a signal handler (``KeyboardInterrupt``)
        either happened or did not: ``store.state`` and ``store.seq`` tell which, and they
        always match what a reopen would find.

        Args:
            state: an instance of the schema class.
            durability: overrides the store's durability for this commit.

        Returns:
            The commit's sequence number (unchanged when nothing differed).

        Raises:
            InvalidValue: a field does not fit; nothing was written.
            TransactionTooLarge: the changes cannot fit in the journal; nothing was written.
            ReentrantCall: called inside this thread's open transaction, or from a signal
                handler that interrupted a call of this store; nothing was written.
            ForkedStore: called in a child process on a store its parent opened.
            StorePoisoned: an earlier msync failed.
        """
        mode = self._durability if durability is None else durability_of(durability, None)
        me = get_ident()
        inside = self._inside
        if me in inside:
            self._reentered(me)
        if self._txn_owner == me and self._in_transaction(me):
            raise ReentrantCall(
                "commit() inside a transaction of the same thread; "
                "change the draft instead and let the transaction commit it"
            )
        try:
            inside.add(me)
            with self._lock:
                seq = self._commit_locked(state, mode)
            if mode is Durability.COMMIT:
                self._commit_point(seq)
            return seq
        finally:
            inside.discard(me)

    @contextmanager
    def transaction(self, *, durability: Durability | str | None = None) -> Iterator[Any]:
        """A mutable draft of the state, committed when the ``with`` block ends normally.

        An exception inside the block discards the draft: nothing is written. The draft's
        type is a :class:`Draft` that behaves like a mutable copy of the schema class.

        Raises:
            ReentrantCall: a transaction of this thread is already open, or called from a
                signal handler that interrupted a call of this store.
        """
        mode = durability_of(durability, self._durability)
        me = self._enter()
        if self._in_transaction(me):
            raise ReentrantCall("transactions do not nest; finish the open one first")
        inside = self._inside
        with self._lock:
            try:
                inside.add(me)
                self._settle()
                self._check_writable()
            finally:
                inside.discard(me)
            draft: Draft | None = None
            try:
                self._txn_owner = me
                draft = Draft(self._head[_STATE])
                yield draft  # the caller's block runs outside _inside: it may flush, read...
                new_state = build(draft)
                try:
                    inside.add(me)
                    seq = self._commit_locked(new_state, mode)
                finally:
                    inside.discard(me)
            finally:
                if draft is not None:
                    close(draft)
                self._txn_owner = None
        if mode is Durability.COMMIT:
            try:
                inside.add(me)
                self._commit_point(seq)
            finally:
                inside.discard(me)

    def _commit_locked(self, state: T, mode: Durability) -> int:
        if self._pending is not None:
            self._settle()
        if self._closed or self._poisoned is not None or self._readonly or self._forked:
            self._check_writable()
        schema = self._schema
        if type(state) is not schema.cls:
            raise InvalidValue(
                "<root>", f"expected a {schema.cls.__name__}, got {type(state).__name__}"
            )
        tail, last, current, _, _, _ = self._head
        patches = schema.diff(current, state)
        if not patches:
            if state is not current:
                self._head = (tail, last, state, tail, [], b"")
            return last  # the commit point (if any) still covers earlier records
        seq = last + 1
        journal_size = self._journal_size
        record, size = self._build(seq, tail, patches)
        if size - RECORD_HEADER_SIZE > self._max_payload:
            raise TransactionTooLarge(size, record_size(self._max_payload))
        if tail + size + END_MARKER_SIZE - self._base.position > journal_size:
            self._checkpoint_locked()
            record, size = self._build(seq, tail, patches)  # the generation and durable_seq moved
        new: _Head = (tail + size, seq, state, tail, patches, record)
        # An exception from here to the clearing of _pending (a signal handler's, between
        # any two bytecodes) leaves a pending commit, which the next call settles: see _settle.
        self._pending = new
        # Crash window: the record is in the page cache, not on disk. Process death keeps it
        # (recovery replays it); an OS crash may keep any subset of its sectors, which the
        # record's crc rejects as a torn tail, so recovery stops at the previous commit.
        _writer.write(self._ring, journal_size, tail, record)
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
        if mode is Durability.INTERVAL and self._flusher is None:
            self.start_flusher(self._flush_interval)
        if tail + size - self._base.position > self._checkpoint_at:
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

        One thread msyncs at a time, outside the store lock, everything written so far; the
        threads whose records that msync covered return without one of their own.

        Raises:
            StorePoisoned: the msync failed (now or in another thread); the commit is in doubt.
        """
        with self._sync_lock:
            with self._lock:
                synced = self._synced
                if synced.seq >= seq:
                    return  # covered by another thread's msync, or by a checkpoint
                self._check_open()
                tail, last = self._head[_TAIL], self._head[_SEQ]
                start = max(synced.position, self._base.position)
            # The commit point: once this msync returns, the records up to `last` are
            # durable. An exception after it returns (a signal handler's) leaves durable_seq
            # behind: durability is only ever reported for a sync known to have completed.
            self._sync_range(start, tail)
            with self._lock:
                self._mark_synced(tail, last)

    def _mark_synced(self, position: int, seq: int) -> None:
        """Record that the journal through ``position`` and commits through ``seq`` are durable."""
        synced = self._synced
        if position > synced.position or seq > synced.seq:
            self._synced = _Synced(max(position, synced.position), max(seq, synced.seq))

    def _build(
        self, seq: int, position: int, patches: list[tuple[int, bytes]]
    ) -> tuple[bytes, int]:
        base = self._base
        return _writer.build_record(
            base.epoch, seq, position, self._synced.seq, base.generation, patches
        )

    # --- flushing and checkpoints ----------------------------------------------------------

    def flush(self) -> None:
        """Make every commit so far durable against an OS crash (msync of the journal)."""
        me = self._enter()
        try:
            self._inside.add(me)
            with self._lock:
                self._settle()
                self._check_writable()
                self._sync_journal()
        finally:
            self._inside.discard(me)

    def checkpoint(self) -> None:
        """Write the full state into the older slot and release the whole journal.

        When this returns the current state is durable in a slot, whatever the durability.
        """
        me = self._enter()
        try:
            self._inside.add(me)
            with self._lock:
                self._settle()
                self._check_writable()
                self._checkpoint_locked()
        finally:
            self._inside.discard(me)

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
        _writer.sync(self._sync_ring, self._journal_size, start, tail)
        self.stats.journal_syncs += 1

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
        data = encode_slot(slot_head, self._image)
        offset = target * self._header.slot_size
        if self._synced.position < tail:
            # The slot will say "the journal continues at the tail": make the zero end marker
            # there durable first (only in process and interval modes; a commit point already
            # synced it), so that after an OS crash the journal ends cleanly at the slot's
            # position instead of on whatever an earlier lap left there.
            self._sync_marker(tail)
        # Crash window: the target slot is partly written. Its crc fails (or it still holds
        # its older, valid contents), so recovery starts from the base slot and replays the
        # journal, none of which has been released yet.
        self._slots.write(offset, data)
        self._guarded_sync(self._slots, offset, len(data))
        # The slot is durable: from here recovery starts from it. Only now may the journal
        # space before the tail be reused, and that happens in this one assignment. An
        # exception before it (a signal handler's) leaves the old base in memory: still a
        # durable slot whose records are all in the journal, so the store stays correct; the
        # next checkpoint writes the same target slot again.
        self._base = _Base(target, tail, seq, generation, epoch)
        self._mark_synced(tail, seq)
        self.stats.slot_syncs += 1
        self.stats.checkpoints += 1

    def begin_session(self, max_generation: int, max_epoch: int) -> None:
        """Make the recovered state this session's durable starting point (for ``_open``).

        Called once by a writable open, before the store is returned. When it returns the
        recovered state is durable in a slot with a new epoch.
        """
        self._base = self._base._replace(generation=max_generation)
        tail = self._head[_TAIL]
        # Crash window: zeroing the end marker only touches bytes past the recovered chain
        # (a torn tail at most), so recovery from the base slot is unchanged if we stop here.
        _writer.write_end_marker(self._ring, self._journal_size, tail)
        self._sync_marker(tail)
        # A new epoch, durable in a slot before any record of this session is written: records
        # left by earlier sessions (including unsynced ones recovery could not see) carry other
        # epochs and can never be replayed after this point. The slot with the highest epoch
        # is never the one written here: normally the older slot is the target; a roll-back
        # to the previous generation rewrites the older slot in place (torn, it leaves the
        # newer one, and with it the highest epoch, intact; the roll-back just did not happen).
        epoch = max_epoch + 1  # check_counters refused a session at the last epoch
        if not self._report.previous_generation:
            self._checkpoint_locked(new_epoch=epoch)
            return
        self._checkpoint_locked(new_epoch=epoch, target=self._base.slot)
        # Crash window: the rolled-back state is durable in the newest slot; the other slot
        # still holds the discarded generation. Overwrite it too, so a later roll-back or a
        # fallback can never bring the discarded state back.
        self._checkpoint_locked()

    # --- life cycle ------------------------------------------------------------------------

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

    def close(self) -> None:
        """Checkpoint (when writable and anything changed), unmap and release the lock.

        Closing twice is harmless. A poisoned store is closed without writing anything. A
        close interrupted by an exception from a signal handler (``KeyboardInterrupt``)
        leaves the store either open and usable, or closed; calling close() again finishes
        it. In a child process after ``fork()``, close() writes nothing and leaves the
        parent's lock alone: it only unmaps and closes this process's descriptor.

        Raises:
            ReentrantCall: called inside this thread's transaction, or from a signal handler
                that interrupted a call of this store.
        """
        if self._forked:
            # The mappings and the descriptor are this process's copies: dropping them writes
            # nothing, and the flock (held by the open file description the parent shares)
            # stays with the parent while its own descriptor is open.
            self._closed = True
            self._release()
            return
        me = self._enter()
        if self._in_transaction(me):
            raise ReentrantCall("close() inside a transaction; finish the transaction first")
        try:
            self._inside.add(me)
            with self._sync_lock, self._lock:
                if not self._closed:
                    try:
                        self._settle()
                        if (
                            not self._readonly
                            and self._poisoned is None
                            and self._head[_SEQ] != self._base.seq
                        ):
                            self._checkpoint_locked()
                    except Exception:
                        self._closed = True  # a failed msync: close without writing more
                        self._stop_flusher.set()
                        self._release()
                        raise
                    # An exception that interrupted the lines above (KeyboardInterrupt) left
                    # the store open and consistent: the next close() does it all again.
                    # From here on nothing is written: every write path checks _closed first.
                    self._closed = True
                    self._forget()
                # Also finishes a close that was interrupted after setting _closed.
                self._stop_flusher.set()
                self._release()
        finally:
            self._inside.discard(me)
        flusher = self._flusher
        if flusher is not None and flusher is not threading.current_thread():
            flusher.join()

    def _release(self) -> None:
        for part in (self._ring, self._slots):
            part.close()
        self._file.close()

    def _forked_in_child(self) -> None:
        """In a child process after fork(): refuse writes, forget the parent's threads."""
        super()._forked_in_child()
        self._flusher = None  # the thread exists only in the parent

    def __enter__(self) -> Store[T]:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        if self._closed:
            status = "closed"
        else:
            status = f"seq={self._head[_SEQ]} generation={self._base.generation}"
        return f"<journalstate.Store {self._path!r} {status}>"


Store._operations = frozenset(
    f.__code__
    for f in (
        Store.commit,
        Store.transaction.__wrapped__,  # type: ignore[attr-defined]
        Store.flush,
        Store.checkpoint,
        Store.close,
        Store._settle_idle,
    )
)
"""The code of every store operation that marks its thread in ``_inside``."""
