"""The exception hierarchy: every error journalstate raises on purpose is a JournalStateError.

Each class carries the data a caller needs to act (path, offset, field) as attributes, and a
message that says what happened and what to do. Where a builtin is the natural match, it is the
second base, so ``except ValueError`` keeps working for callers that do not know journalstate.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


class JournalStateError(Exception):
    """Base class of every error raised by journalstate."""


# --- schema and values -------------------------------------------------------------------------


class SchemaError(JournalStateError, TypeError):
    """The attrs class cannot be used as a schema (unsupported field type, missing marker...)."""


class InvalidValue(JournalStateError, ValueError):
    """A value does not fit its field: wrong type, integer out of range, text or bytes too long.

    Raised at commit, before anything is written; the store is unchanged.
    """

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"field {field!r}: {message}")
        self.field = field


class NoSuchField(JournalStateError, LookupError):
    """A field path names no field of the schema (or an array index is out of range)."""

    def __init__(self, path: str, message: str) -> None:
        super().__init__(f"no field {path!r}: {message}")
        self.path = path


# --- arguments and platform -------------------------------------------------------------------


class InvalidArgument(JournalStateError, ValueError):
    """An argument of :func:`journalstate.open` or a store method has a value it cannot take.

    Nothing was opened or changed. The message names the argument and what it accepts.
    """

    def __init__(self, argument: str, message: str) -> None:
        super().__init__(f"{argument}: {message}")
        self.argument = argument


class InvalidArgumentType(InvalidArgument, TypeError):
    """An argument has the wrong type (a string where a number is expected, a bool...)."""


class UnsupportedPlatform(JournalStateError, OSError):
    """This system lacks what a store file needs (flock, posix_fallocate, shared mmap).

    journalstate supports Linux; ``import journalstate`` works elsewhere, but opening a store
    on the real file system raises this, naming what is missing.
    """


# --- the file ----------------------------------------------------------------------------------


class StoreFileError(JournalStateError):
    """The file at ``path`` cannot be used as a store."""

    def __init__(self, path: str, message: str) -> None:
        super().__init__(f"{path}: {message}")
        self.path = path


class StoreNotFound(StoreFileError, FileNotFoundError):
    """No file exists at the path and ``create`` was false (or the store is read-only)."""


class NotAStore(StoreFileError):
    """The file does not start with the journalstate magic: it is not a store."""


class TruncatedStore(StoreFileError):
    """The file is shorter than its header says: it was cut or copied incompletely."""


class UnsupportedVersion(StoreFileError):
    """The file was written by a newer format version than this library reads."""

    def __init__(self, path: str, version: int, supported: int) -> None:
        super().__init__(
            path,
            f"format version {version} is newer than the supported version {supported}; "
            "upgrade journalstate to open it",
        )
        self.version = version
        self.supported = supported


class SchemaMismatch(StoreFileError):
    """The schema class given to open() does not describe the file's stored schema."""

    def __init__(self, path: str, differences: Sequence[str]) -> None:
        listed = "; ".join(differences)
        super().__init__(
            path,
            f"the schema does not match the file's stored schema: {listed}. "
            "Open it with the class it was created with (`journalstate info` shows it)",
        )
        self.differences = tuple(differences)


class UnsafePath(StoreFileError):
    """The path is a directory, a symbolic link or not a regular file."""


class NoSpace(StoreFileError):
    """The file system has no room for the store (ENOSPC while preallocating)."""


class BadDestination(StoreFileError):
    """A new store file cannot be written at the path given for it (a backup's destination,
    ``recover --output``): its directory is missing or is not a directory. Nothing was written.
    """


class DestinationExists(BadDestination, FileExistsError):
    """Something already exists at the path a new store file was to be written to.

    A file, a directory or a symbolic link (dangling or not, never followed): it is left as it
    was, and nothing was written. Choose a new path, or remove what is there first.
    """


class StoreLocked(JournalStateError, BlockingIOError):
    """Another writer holds the store's lock.

    ``holder_pid`` is the holder's process id when the system tells it, else None. Waiting
    (``lock_timeout``) or a read-only open are the ways forward; a copy of the file taken while
    the writer runs is not a crash image and must not be made: :func:`journalstate.backup`
    writes a consistent copy of a live store instead.
    """

    def __init__(self, path: str, holder_pid: int | None = None) -> None:
        who = f" (held by pid {holder_pid})" if holder_pid is not None else ""
        super().__init__(
            f"{path}: another writer holds the lock{who}; wait for it to close the store "
            "(lock_timeout=SECONDS) or stop it, or open with readonly=True for a snapshot of "
            "its last commit. Do not copy the file while the writer runs: the copy can mix "
            "moments; js.backup() (`journalstate backup`) writes a consistent copy beside it"
        )
        self.path = path
        self.holder_pid = holder_pid


# --- corruption --------------------------------------------------------------------------------


class StoreCorrupt(JournalStateError):
    """Recovery found damage that the chosen recovery mode does not accept.

    ``report`` holds everything recovery found (a :class:`journalstate.RecoveryReport`; typed
    ``Any`` here because this module, which every other one imports, imports none of them);
    ``offset`` is the file offset of the first damage and ``reason`` its cause (a
    :class:`journalstate.Reason`) when there is one.
    """

    def __init__(
        self,
        path: str,
        message: str,
        *,
        offset: int | None = None,
        reason: object | None = None,
        report: Any = None,
    ) -> None:
        where = f" at offset {offset}" if offset is not None else ""
        super().__init__(f"{path}: {message}{where}")
        self.path = path
        self.offset = offset
        self.reason = reason
        self.report = report


class Unrecoverable(StoreCorrupt):
    """Neither state slot is valid: there is no consistent state to recover."""


class CounterExhausted(StoreFileError, OverflowError):
    """A counter of the store (epoch, generation or seq) has no room for a writing session.

    Counters never wrap: a store whose counters reached their end opens read-only only.
    ``counter`` names the counter and ``value`` is its current value.
    """

    def __init__(self, path: str, counter: str, value: int) -> None:
        super().__init__(
            path,
            f"the store's {counter} counter is at {value}, too close to its end for a writing "
            "session (counters never wrap); open it with readonly=True and commit its state "
            "into a new store (`journalstate recover --output NEW` copies the counters too)",
        )
        self.counter = counter
        self.value = value


class NoPreviousGeneration(JournalStateError):
    """Opening at the previous generation needs both slots valid, and only one is."""

    def __init__(self, path: str) -> None:
        super().__init__(
            f"{path}: only one state slot is valid, so there is no previous generation to open"
        )
        self.path = path


# --- the store's life cycle --------------------------------------------------------------------


class StoreClosed(JournalStateError):
    """The store was closed; open it again to use it."""


class ReadOnlyStore(JournalStateError, PermissionError):
    """A write was attempted on a store opened with readonly=True."""


class TransactionError(JournalStateError, RuntimeError):
    """A transaction was misused: nested, or used after it ended."""


class TransactionTooLarge(JournalStateError, ValueError):
    """The transaction's record cannot fit in the journal even when it is empty.

    Nothing was written. Create the store with a larger ``journal_size``.
    """

    def __init__(self, record_size: int, capacity: int) -> None:
        super().__init__(
            f"the transaction needs a {record_size}-byte record but the journal holds at most "
            f"{capacity} bytes per record; recreate the store with a larger journal_size"
        )
        self.record_size = record_size
        self.capacity = capacity


class StorePoisoned(JournalStateError):
    """An msync/fsync failed earlier; the store refuses all further work.

    What reached the disk is unknown, so nothing is retried. Close the store and open it again:
    recovery decides what survived.
    """

    def __init__(self, cause: BaseException) -> None:
        super().__init__(
            f"an earlier sync failed ({cause}); the store must be closed and reopened, "
            "and recovery will decide what survived"
        )
        self.cause = cause


# --- signals, fork and pickling ------------------------------------------------------------------


class ReentrantCall(TransactionError):
    """A store call from inside a store call of the same thread (usually a signal handler).

    Python runs a signal handler in the main thread between two bytecodes of whatever that
    thread was doing, possibly in the middle of a commit. Finishing the interrupted call first
    is impossible and mixing the two would be unsafe, so the inner call fails at once and
    changes nothing. In the handler, set a flag (or raise an exception) and commit from the main
    loop, or commit from the handler only where it cannot interrupt a store call.
    """


class ForkedStore(JournalStateError, RuntimeError):
    """A write to a store inherited through ``fork()``: the parent process owns it.

    The child shares the parent's mappings and lock, so a write from the child would mix with
    the parent's. Reads still work; ``close()`` in the child releases only the child's copies.
    """

    def __init__(self, path: str) -> None:
        super().__init__(
            f"{path}: this store was opened by the parent process before fork(); the child "
            "cannot write to it. Close it in the child (that writes nothing) and open the path "
            "again once the parent has closed it, or open it with readonly=True"
        )
        self.path = path


class StoreNotPicklable(JournalStateError, TypeError):
    """A store was pickled or copied: it owns a mapping, a file descriptor and a lock."""

    def __init__(self, path: str) -> None:
        super().__init__(
            f"{path}: an open store cannot be pickled or copied; pass its path (and schema) "
            "to the other process and open it there after this one has closed it, "
            "or open it there with readonly=True"
        )
        self.path = path


# --- migration ---------------------------------------------------------------------------------


class MigrationRefused(JournalStateError, ValueError):
    """A migration would lose data, or cannot give a new field a value; nothing was changed.

    ``problems`` names every field that refuses, and why. Pass ``drop`` for fields that may
    disappear, or a ``convert`` function that says how the old state becomes the new one.
    """

    def __init__(self, path: str, problems: Sequence[str]) -> None:
        super().__init__(
            f"{path}: cannot migrate without losing data or a value: {'; '.join(problems)}. "
            "Nothing was changed; pass drop=... for fields to discard, or convert=..."
        )
        self.path = path
        self.problems = tuple(problems)


class StoreReplaced(StoreFileError):
    """The path now names another file than the one this store has open.

    A migration (or anything else) renamed a new file over it. The open store still reads its
    own file, consistently; open the path again for the new one.
    """


# --- readers that follow a live writer ---------------------------------------------------------


class StoreRewound(StoreFileError):
    """The store went back to an earlier state than one this reader already showed.

    A writer opened it with ``previous_generation=True`` (a roll-back), or recovery after damage
    dropped commits this reader had read. The reader keeps the state it showed; following on
    would show sequence numbers going backwards, or a history that forks. Open the path again.
    """


class ChangesUnavailable(JournalStateError, LookupError):
    """The commits asked for are no longer in the journal (a checkpoint released their space).

    ``since_seq`` is what was asked for; ``oldest_seq`` is the oldest ``since_seq`` the journal
    can still serve now. Start again from a snapshot (``store.state`` and ``store.seq``), then
    follow the changes after its seq.
    """

    def __init__(self, path: str, since_seq: int, oldest_seq: int) -> None:
        super().__init__(
            f"{path}: the commits after seq {since_seq} are no longer in the journal; the oldest "
            f"seq the change feed can start after is {oldest_seq}. Take a snapshot "
            "(store.state, store.seq) and follow the changes after its seq"
        )
        self.path = path
        self.since_seq = since_seq
        self.oldest_seq = oldest_seq


# --- replication to object storage -------------------------------------------------------------


class ReplicationError(JournalStateError):
    """Replication to, or restore from, object storage failed.

    ``url`` is the replica's URL. This class itself is raised for a failure of the object store
    (network, permissions, a timeout); its subclasses name what is wrong with the replica.
    """

    def __init__(self, url: str, message: str) -> None:
        super().__init__(f"{url}: {message}")
        self.url = url


class ReplicationUnavailable(ReplicationError, ImportError):
    """The optional object-storage client (obstore) is not installed."""

    def __init__(self, url: str) -> None:
        super().__init__(
            url,
            "replication needs the obstore package: pip install 'journalstate[replicate]'",
        )


class BadReplicaURL(ReplicationError, ValueError):
    """The URL names no object store replication can use (scheme, bucket, options)."""


class ReplicaNotFound(ReplicationError, LookupError):
    """The prefix holds no generation, or no object covers the seq asked for, or an object is
    missing. ``seq`` is the seq asked for, when one was."""

    def __init__(self, url: str, message: str, *, seq: int | None = None) -> None:
        super().__init__(url, message)
        self.seq = seq


class ReplicaGap(ReplicationError):
    """A part of the history between the snapshot and the seq asked for is missing or does not
    follow on; restore refuses to give an older state than the one asked for.

    ``last_seq`` is the last seq the replica holds contiguously, ``wanted_seq`` the one asked
    for (None: the newest).
    """

    def __init__(
        self, url: str, message: str, *, last_seq: int, wanted_seq: int | None = None
    ) -> None:
        super().__init__(url, message)
        self.last_seq = last_seq
        self.wanted_seq = wanted_seq


class ReplicaCorrupt(ReplicationError):
    """An object fails its checksum, magic or decoding, or its records fail the journal's
    checks. ``key`` names the object."""

    def __init__(self, url: str, message: str, *, key: str | None = None) -> None:
        where = f"{key}: " if key is not None else ""
        super().__init__(url, f"{where}{message}")
        self.key = key


class ReplicaAmbiguous(ReplicationError):
    """The prefix holds histories restore cannot choose between: generations of more than one
    store, or two generations that were shipped at the same time. ``generations`` lists them;
    pass one of them as ``generation=`` (``--generation``)."""

    def __init__(self, url: str, message: str, *, generations: Sequence[str]) -> None:
        listed = ", ".join(generations)
        super().__init__(
            url, f"{message}: generations {listed}; choose one with generation= (--generation)"
        )
        self.generations = tuple(generations)


class ReplicaConflict(ReplicationError):
    """The prefix holds another store's generations, or an object that should be this
    shipper's own has other bytes: the shipper refuses to write there. ``key`` names the
    object, when one is the cause."""

    def __init__(self, url: str, message: str, *, key: str | None = None) -> None:
        super().__init__(url, message)
        self.key = key
