"""The store: the only owner of a store file, its mappings, its syncs and its lock.

Write paths (each crash window is described where the write happens, and in docs/design.md):

* commit: encode the changed fields as one record, write it (and a zero end marker) at the
  journal tail, then, when the durability asks for it, msync the journal pages written since
  the last sync. That msync is the commit point.
* checkpoint: write the whole state into the slot recovery does not start from, with the next
  generation, msync it, and only then release the journal space it covers.
* open for writing: recover, zero the end marker at the recovered tail, then checkpoint with a
  new epoch, so records from before this recovery can never join this session's chain.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Generic, TypeVar

import attrs

from journalstate._errors import (
    InvalidValue,
    ReadOnlyStore,
    StoreClosed,
    StorePoisoned,
    StoreReplaced,
    TransactionError,
    TransactionTooLarge,
)
from journalstate._format import (
    END_MARKER_SIZE,
    RECORD_HEADER_SIZE,
    Header,
    SlotHead,
    ValueEnum,
    build_record_fast,
    encode_slot,
    record_size,
)
from journalstate._io import Region, StoreFile, file_replaced
from journalstate._journal import max_payload
from journalstate._recovery import RecoveryReport
from journalstate._schema import Schema
from journalstate._txn import Draft, build, close

T = TypeVar("T")

DEFAULT_JOURNAL_SIZE = 1 << 20
"""Journal ring size for new stores (bytes): room for thousands of small commits."""
MAX_JOURNAL_SIZE = 1 << 30
"""Largest journal ring (bytes): record lengths are u32 and replay reads the ring in memory."""
DEFAULT_CHECKPOINT_THRESHOLD = 0.5
"""A commit that leaves the journal fuller than this fraction is followed by a checkpoint."""
_ZERO_MARKER = bytes(END_MARKER_SIZE)


class Durability(ValueEnum):
    """When a commit becomes durable against an OS crash or power loss."""

    COMMIT = "commit"
    """msync of the commit's journal pages before commit() returns."""
    INTERVAL = "interval"
    """A background flush every ``flush_interval`` seconds; ``flush()`` forces one."""
    PROCESS = "process"
    """Never msync on commit: survives process death, not an OS crash."""


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


class Store(Generic[T]):
    """An open store. Use :func:`journalstate.open` to get one; it is a context manager.

    All methods are thread-safe. Transactions of different threads run one after another.
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
        self._path = path
        self._flush_interval = flush_interval
        self._schema = schema
        self._file = file
        self._header = header
        self._slots = slots
        self._ring = ring
        self._state = state
        self._image = image
        self._report = report
        self._durability = durability
        self._readonly = readonly
        self._journal_size = header.journal_size
        self._max_payload = max_payload(header.journal_size)
        self._checkpoint_at = checkpoint_threshold * header.journal_size
        self._lock = threading.RLock()
        self._sync_lock = threading.Lock()  # taken before _lock, never after it
        self._txn_owner: int | None = None
        self._closed = False
        self._poisoned: BaseException | None = None
        self.stats = StoreStats()
        # Where the chain stands. `_base_slot` holds the newest durable checkpoint, which covers
        # the state up to `_base_seq`; the journal's live records lie in [_base_position, _tail).
        self._base_slot = report.slot
        base_head = report.slots[report.slot].head
        self._base_position = report.position if base_head is None else base_head.position
        self._generation = report.generation
        self._epoch = report.epoch
        self._seq = report.seq
        self._base_seq = report.base_seq
        self._tail = report.position
        self._synced = report.position
        # Only the slot is known durable; a writable open's checkpoint makes all of it durable.
        self._durable_seq = report.base_seq
        self._flusher: threading.Thread | None = None
        self._stop_flusher = threading.Event()

    # --- properties ------------------------------------------------------------------------

    @property
    def state(self) -> T:
        """The latest committed state (a frozen attrs instance)."""
        return self._state

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
        return self._seq

    @property
    def durable_seq(self) -> int:
        """Highest sequence number known durable against an OS crash."""
        return self._durable_seq

    @property
    def generation(self) -> int:
        """Generation of the newest checkpoint."""
        return self._generation

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
    def journal_fill(self) -> float:
        """Fraction of the journal ring holding records not yet covered by a checkpoint."""
        return (self._tail - self._base_position) / self._journal_size

    # --- committing ------------------------------------------------------------------------

    def commit(self, state: T, *, durability: Durability | str | None = None) -> int:
        """Make ``state`` the store's state.

        Only fields that differ from the current state are written. When this returns, the new
        state survives process death; with ``"commit"`` durability it also survives an OS crash
        or power loss (the journal pages were msync'ed).

        Args:
            state: an instance of the schema class.
            durability: overrides the store's durability for this commit.

        Returns:
            The commit's sequence number (unchanged when nothing differed).

        Raises:
            InvalidValue: a field does not fit; nothing was written.
            TransactionTooLarge: the changes cannot fit in the journal; nothing was written.
            TransactionError: called inside this thread's open transaction.
            StorePoisoned: an earlier msync failed.
        """
        mode = self._durability if durability is None else _durability(durability, None)
        with self._lock:
            if self._txn_owner is not None and self._txn_owner == threading.get_ident():
                raise TransactionError(
                    "commit() inside a transaction of the same thread; "
                    "change the draft instead and let the transaction commit it"
                )
            seq = self._commit_locked(state, mode)
        if mode is Durability.COMMIT:
            self._commit_point(seq)
        return seq

    @contextmanager
    def transaction(self, *, durability: Durability | str | None = None) -> Iterator[Any]:
        """A mutable draft of the state, committed when the ``with`` block ends normally.

        An exception inside the block discards the draft: nothing is written. The draft's
        type is a :class:`Draft` that behaves like a mutable copy of the schema class.

        Raises:
            TransactionError: a transaction of this thread is already open.
        """
        mode = _durability(durability, self._durability)
        with self._lock:
            self._check_writable()
            if self._txn_owner is not None:
                raise TransactionError("transactions do not nest; finish the open one first")
            self._txn_owner = threading.get_ident()
            draft = Draft(self._state)
            try:
                yield draft
                new_state = build(draft)
                seq = self._commit_locked(new_state, mode)
            finally:
                close(draft)
                self._txn_owner = None
        if mode is Durability.COMMIT:
            self._commit_point(seq)

    def _commit_locked(self, state: T, mode: Durability) -> int:
        if self._closed or self._poisoned is not None or self._readonly:
            self._check_writable()
        schema = self._schema
        if type(state) is not schema.cls:
            raise InvalidValue(
                "<root>", f"expected a {schema.cls.__name__}, got {type(state).__name__}"
            )
        patches = schema.diff(self._state, state)
        if not patches:
            self._state = state
            return self._seq  # the commit point (if any) still covers earlier records
        seq = self._seq + 1
        record, size = self._build(seq, patches)
        if size - RECORD_HEADER_SIZE > self._max_payload:
            raise TransactionTooLarge(size, record_size(self._max_payload))
        if self._tail + size + END_MARKER_SIZE - self._base_position > self._journal_size:
            self._checkpoint_locked()
            record, size = self._build(seq, patches)  # the generation and durable_seq moved
        # Crash window: the record is in the page cache, not on disk. Process death keeps it
        # (recovery replays it); an OS crash may keep any subset of its sectors, which the
        # record's crc rejects as a torn tail, so recovery stops at the previous commit.
        start = self._tail % self._journal_size
        if start + len(record) <= self._journal_size:
            self._ring.write(start, record)
        else:
            self._ring_write(self._tail, record)  # the record straddles the ring's end
        tail = self._tail + size
        # The commit point comes after the lock is released (see _commit_point), so other
        # threads can append their records meanwhile and share one msync: group commit.
        self._tail = tail
        self._seq = seq
        image = self._image
        for offset, data in patches:
            image[offset : offset + len(data)] = data
        self._state = state
        stats = self.stats
        stats.commits += 1
        stats.bytes_journaled += size
        if mode is Durability.INTERVAL and self._flusher is None:
            self._start_flusher(self._flush_interval)
        if tail - self._base_position > self._checkpoint_at:
            self._checkpoint_locked()
        return seq

    def _commit_point(self, seq: int) -> None:
        """Return once the record of commit ``seq`` is durable (msync'ed), syncing if needed.

        One thread msyncs at a time, outside the store lock, everything written so far; the
        threads whose records that msync covered return without one of their own.

        Raises:
            StorePoisoned: the msync failed (now or in another thread); the commit is in doubt.
        """
        with self._sync_lock:
            with self._lock:
                if self._durable_seq >= seq:
                    return  # covered by another thread's msync, or by a checkpoint
                self._check_open()
                start, tail, last = self._synced, self._tail, self._seq
            # The commit point: once this msync returns, the records up to `last` are durable.
            self._sync_range(start, tail)
            with self._lock:
                self._synced = max(self._synced, tail)
                self._durable_seq = max(self._durable_seq, last)

    def _build(self, seq: int, patches: list[tuple[int, bytes]]) -> tuple[bytes, int]:
        return build_record_fast(
            self._epoch, seq, self._tail, self._durable_seq, self._generation, patches
        )

    # --- flushing and checkpoints ----------------------------------------------------------

    def flush(self) -> None:
        """Make every commit so far durable against an OS crash (msync of the journal)."""
        with self._lock:
            self._check_writable()
            self._sync_journal()

    def checkpoint(self) -> None:
        """Write the full state into the older slot and release the whole journal.

        When this returns the current state is durable in a slot, whatever the durability.
        """
        with self._lock:
            self._check_writable()
            self._checkpoint_locked()

    def _ring_write(self, position: int, data: bytes | bytearray) -> None:
        start = position % self._journal_size
        if start + len(data) <= self._journal_size:
            self._ring.write(start, data)
            return
        first = self._journal_size - start  # the record straddles the ring's end
        self._ring.write(start, data[:first])
        self._ring.write(0, data[first:])

    def _sync_journal(self) -> None:
        """msync the journal from the last synced position through the tail's end marker."""
        if self._synced >= self._tail:
            return
        self._sync_range(self._synced, self._tail)
        self._synced = self._tail
        self._durable_seq = self._seq

    def _sync_range(self, start: int, tail: int) -> None:
        """msync the ring from logical ``start`` through the end marker after ``tail``."""
        if start >= tail:
            return
        first_at = start % self._journal_size
        # The end marker after the last record is synced too, so a clean end stays clean.
        length = tail + END_MARKER_SIZE - start
        first = min(length, self._journal_size - first_at)
        self._guarded_sync(self._ring, first_at, first)
        if first < length:
            self._guarded_sync(self._ring, 0, length - first)
        self.stats.journal_syncs += 1

    def _sync_marker(self, position: int) -> None:
        """msync the end marker at ``position`` (two ranges when it wraps the ring's end)."""
        start = position % self._journal_size
        first = min(END_MARKER_SIZE, self._journal_size - start)
        self._guarded_sync(self._ring, start, first)
        if first < END_MARKER_SIZE:
            self._guarded_sync(self._ring, 0, END_MARKER_SIZE - first)

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
        target = 1 - self._base_slot if target is None else target
        generation = self._generation + 1
        epoch = self._epoch if new_epoch is None else new_epoch
        head = SlotHead(generation, epoch, self._seq, self._tail, self._header.state_size)
        data = encode_slot(head, self._image)
        offset = target * self._header.slot_size
        if self._synced < self._tail:
            # The slot will say "the journal continues at the tail": make the zero end marker
            # there durable first (only in process and interval modes; a commit point already
            # synced it), so that after an OS crash the journal ends cleanly at the slot's
            # position instead of on whatever an earlier lap left there.
            self._sync_marker(self._tail)
        # Crash window: the target slot is partly written. Its crc fails (or it still holds
        # its older, valid contents), so recovery starts from the base slot and replays the
        # journal, none of which has been released yet.
        self._slots.write(offset, data)
        self._guarded_sync(self._slots, offset, len(data))
        # The slot is durable: from here recovery starts from it. Only now may the journal
        # space before the tail be reused.
        self.stats.slot_syncs += 1
        self.stats.checkpoints += 1
        self._base_slot = target
        self._generation = generation
        self._epoch = epoch
        self._base_position = self._tail
        self._base_seq = self._seq
        self._synced = self._tail
        self._durable_seq = self._seq

    def _begin_session(self, max_generation: int, max_epoch: int) -> None:
        """Make the recovered state this session's durable starting point (open for writing)."""
        self._generation = max_generation
        # Crash window: zeroing the end marker only touches bytes past the recovered chain
        # (a torn tail at most), so recovery from the base slot is unchanged if we stop here.
        self._ring_write(self._tail, _ZERO_MARKER)
        self._sync_marker(self._tail)
        # A new epoch, durable in a slot before any record of this session is written: records
        # left by earlier sessions (including unsynced ones recovery could not see) carry other
        # epochs and can never be replayed after this point. The slot with the highest epoch
        # is never the one written here: normally the older slot is the target; a roll-back
        # to the previous generation rewrites the older slot in place (torn, it leaves the
        # newer one, and with it the highest epoch, intact; the roll-back just did not happen).
        epoch = (max_epoch + 1) & 0xFFFFFFFF
        if not self._report.previous_generation:
            self._checkpoint_locked(new_epoch=epoch)
            return
        self._checkpoint_locked(new_epoch=epoch, target=self._base_slot)
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
        self._check_open()
        if self._readonly:
            raise ReadOnlyStore(f"{self._path}: the store was opened read-only")

    def _start_flusher(self, interval: float) -> None:
        # The thread holds the store only weakly: a store dropped without close() (or whose
        # process "died" in a simulation) does not keep a thread alive.
        ref = weakref.ref(self)
        stop = self._stop_flusher

        def run() -> None:
            while not stop.wait(interval):
                store = ref()
                if store is None or not store._flush_tick():
                    return
                del store

        self._flusher = threading.Thread(target=run, name=f"journalstate-flush:{self._path}")
        self._flusher.daemon = True
        self._flusher.start()

    def _flush_tick(self) -> bool:
        """One background flush; False when the flusher should stop."""
        with self._lock:
            if self._closed or self._poisoned is not None:
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

        Closing twice is harmless. A poisoned store is closed without writing anything.
        """
        if self._txn_owner is not None and self._txn_owner == threading.get_ident():
            raise TransactionError("close() inside a transaction; finish the transaction first")
        with self._sync_lock, self._lock:
            if self._closed:
                return
            self._stop_flusher.set()
            try:
                if not self._readonly and self._poisoned is None and self._seq != self._base_seq:
                    self._checkpoint_locked()
            finally:
                self._closed = True
                self._release()
        if self._flusher is not None and self._flusher is not threading.current_thread():
            self._flusher.join()

    def _release(self) -> None:
        for part in (self._ring, self._slots):
            part.close()
        self._file.close()

    def __enter__(self) -> Store[T]:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        status = "closed" if self._closed else f"seq={self._seq} generation={self._generation}"
        return f"<journalstate.Store {self._path!r} {status}>"


def _durability(value: Durability | str | None, default: Durability | None) -> Durability:
    if value is None:
        assert default is not None
        return default
    try:
        return Durability(value)
    except ValueError:
        choices = ", ".join(d.value for d in Durability)
        raise ValueError(f"unknown durability {value!r}; use one of {choices}") from None
