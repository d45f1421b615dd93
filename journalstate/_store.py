"""The store: the only owner of a store file, its mappings, its syncs and its lock.

What belongs here is :class:`Store`'s public face: its properties, and the calls commit,
transaction, flush, checkpoint and close, each of which marks its thread, takes the lock and
runs a write path of :class:`~journalstate._chain.Chain`, where the chain's bookkeeping is;
and the calls ``_open`` makes (``begin_session``, ``start_flusher``) and ``_inspect`` reads
(``slot_buffer``, ``ring_buffer``). Re-entry, fork and pickling are guarded in ``_guards``;
the records' bytes and their place in the ring are ``_writer``'s.

Signals (docs/design.md, "Signals, Ctrl-C and fork"): the chain's bookkeeping is three
immutable values (``_head``, ``_base``, ``_synced``), each replaced in one assignment, and a
commit cut short by an exception is settled by the next call (``_settle``); a call from a signal
handler into a call of the same store raises ReentrantCall; a forked child cannot write.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from threading import get_ident
from typing import Any, TypeVar

from journalstate import _writer
from journalstate._chain import SEQ, STATE, TAIL
from journalstate._durability import Durability, durability_of
from journalstate._errors import ReentrantCall, StoreClosed, StoreReplaced
from journalstate._format import END_MARKER_SIZE, record_size
from journalstate._header import Header
from journalstate._journal import ring_read
from journalstate._live import Live
from journalstate._recovery import RecoveryReport
from journalstate._schema import Schema
from journalstate._storage import Buffer, file_replaced
from journalstate._txn import Draft, build, close

T = TypeVar("T")

DEFAULT_CHECKPOINT_THRESHOLD = 0.5
"""A commit that leaves the journal fuller than this fraction is followed by a checkpoint."""


class Store(Live[T]):
    """An open store. Use :func:`journalstate.open` to get one; it is a context manager.

    All methods are thread-safe. Transactions of different threads run one after another.
    A store call made while the same thread is inside another call of the same store (from
    a signal handler) raises :class:`ReentrantCall` at once. In a child process after
    ``fork()`` every write raises :class:`ForkedStore`. A store cannot be pickled.
    """

    # --- properties ------------------------------------------------------------------------

    @property
    def state(self) -> T:
        """The latest committed state (a frozen attrs instance).

        It always matches what a reopen of the file would find: reading it first finishes or
        undoes a commit that an exception (a signal handler's) interrupted, if there is one.
        """
        if self._pending is not None:
            self._settle_idle()
        state: T = self._head[STATE]
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
        return self._head[SEQ]

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
        return self._head[TAIL]

    @property
    def epoch(self) -> int:
        """Epoch of the newest checkpoint: every record this session writes carries it."""
        return self._base.epoch

    @property
    def replaced(self) -> bool:
        """True when the path names another file now (a migration renamed one over it).

        This store keeps reading its own file, consistently; open the path again for the new one.
        """
        return file_replaced(self._file)

    def check_replaced(self) -> None:
        """Raise :class:`StoreReplaced` when the path names another file now (see ``replaced``)."""
        if self.replaced:
            raise StoreReplaced(
                self._path, "a new store file replaced the one open here; open the path again"
            )

    @property
    def replication(self) -> Any:
        """Where replication stands (a ``js.ReplicationStatus``), or None when not replicating.

        Set when the store was opened with ``replicate_to=``; None in a child process after
        ``fork()`` (the shipper's thread runs only in the parent). See docs/replication.md.
        """
        shipper = self._shipper
        return None if shipper is None else shipper.status()

    # --- replication (the shipper's calls, see journalstate.replicate) ---------------------

    def attach_shipper(self, shipper: Any) -> None:
        """Make ``shipper`` this store's (``replication``, its stop in ``close()``)."""
        self._shipper = shipper
        self._shipped_position = self._head[TAIL]  # nothing after the open is shipped yet

    def mark_shipped(self, position: int | None) -> None:
        """Every record before journal ``position`` is in the object store (None: not
        replicating any more). The threshold checkpoint waits for it (see ``_chain``)."""
        self._shipped_position = position

    def replication_snapshot(self) -> tuple[int, int, int, bytes]:
        """``(seq, epoch, position, image)`` of the newest commit, copied under the lock.

        Raises:
            StoreClosed, ForkedStore: the store is closed, or this is a forked child.
        """
        with self._lock:
            self._check_replicable()
            head = self._head
            return head[SEQ], self._base.epoch, head[TAIL], bytes(self._image)

    def replication_read(
        self, position: int, limit: int, *, image: bool = False
    ) -> tuple[int, bytes, bytes | None] | None:
        """``(seq, bytes, image)``: the newest commit's seq, up to ``limit`` ring bytes from
        ``position`` towards the tail (a whole record at least, when one starts there) and,
        when ``image`` is asked for and the bytes reach the tail, a copy of the state image
        after them (else None). None when the ring no longer holds ``position`` (a later lap
        wrote over it).

        Only copies are made under the lock. Raises as :meth:`replication_snapshot`.
        """
        size = self._journal_size
        with self._lock:
            self._check_replicable()
            tail, seq = self._head[TAIL], self._head[SEQ]
            # The ring holds [tail + END_MARKER_SIZE - size, tail): the end marker is at the
            # tail, an older lap's bytes after it.
            if position < tail + END_MARKER_SIZE - size:
                return None
            length = min(tail - position, limit)
            data = ring_read(self._ring.buffer, size, position, length)
            if 0 < length < tail - position and length >= 8:
                first = record_size(int.from_bytes(data[4:8], "little"))
                if first > length:  # one record larger than the limit: the whole of it
                    data = ring_read(self._ring.buffer, size, position, first)
            state = bytes(self._image) if image and position + len(data) == tail else None
            return seq, data, state

    def _check_replicable(self) -> None:
        if self._closed or self._forked:
            raise StoreClosed(f"{self._path}: the store is closed")
        if self._pending is not None:
            self._settle()  # a commit an exception cut short: finish or undo it first

    @property
    def journal_fill(self) -> float:
        """Fraction of the journal ring holding records not yet covered by a checkpoint."""
        return (self._head[TAIL] - self._base.position) / self._journal_size

    def slot_buffer(self) -> Buffer:
        """The mapped slots, for reading only (for ``_inspect``); never keep it past a call."""
        return self._slots.buffer

    def ring_buffer(self) -> Buffer:
        """The mapped journal ring, for reading only; never keep it past a call."""
        return self._ring.buffer

    def state_image(self) -> bytes | bytearray:
        """The encoded bytes of ``state``, for reading only (for a migration of this store)."""
        if self._pending is not None:
            self._settle_idle()
        if self._image_dirty:
            with self._lock:
                self._reader_follower()  # rebuilds the image an interrupted refresh left
        return self._image

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
        mode = self._durability if durability is None else durability_of(durability, None)
        me = get_ident()
        inside = self._inside
        if me in inside:
            self._reentered(me)
        if self._txn_owner == me and self._in_transaction(me):
            raise ReentrantCall("transactions do not nest; finish the open one first")
        with self._lock:
            try:
                inside.add(me)
                if self._pending is not None:
                    self._settle()
                if self._closed or self._poisoned is not None or self._readonly or self._forked:
                    self._check_writable()
            finally:
                inside.discard(me)
            draft: Draft | None = None
            try:
                self._txn_owner = me
                draft = Draft(self._head[STATE])
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

    # --- the session -----------------------------------------------------------------------

    def begin_session(self, max_generation: int, max_epoch: int) -> None:
        """Make the recovered state this session's durable starting point (for ``_open``).

        Called once by a writable open, before the store is returned. When it returns the
        recovered state is durable in a slot with a new epoch.
        """
        self._base = self._base._replace(generation=max_generation)
        tail = self._head[TAIL]
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
        shipper = self._shipper
        if shipper is not None and not self._closed:
            # Ships what is committed (a bounded wait: see DEFAULT_CLOSE_TIMEOUT), before the
            # lock is taken: the shipper reads the journal under it.
            shipper.close()
        try:
            self._inside.add(me)
            with self._sync_lock, self._lock:
                if not self._closed:
                    try:
                        self._settle()
                        if (
                            not self._readonly
                            and self._poisoned is None
                            and self._head[SEQ] != self._base.seq
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

    def __enter__(self) -> Store[T]:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        if self._closed:
            status = "closed"
        else:
            status = f"seq={self._head[SEQ]} generation={self._base.generation}"
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
        Store.refresh,
        Store.wait,
        Store.changes,
        Store._feed,
    )
)
"""The code of every store operation that marks its thread in ``_inside`` (and of ``wait`` and
``changes``, which check it first): two of them on a thread's stack are a re-entry."""
