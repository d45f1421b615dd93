"""Opening a store: creating the file when missing, validating it, recovering, starting a session.

What belongs here: :func:`open` and the steps it takes before a :class:`Store` exists. The
store itself (commits, checkpoints, syncs) is in ``_store``.
"""

from __future__ import annotations

import math
import os
import threading
from collections.abc import Callable
from typing import TypeVar

from journalstate._descriptor import compare_descriptors
from journalstate._durability import Durability, durability_of
from journalstate._dynamic import class_from_descriptor
from journalstate._errors import (
    InvalidArgument,
    InvalidArgumentType,
    InvalidValue,
    JournalStateError,
    SchemaMismatch,
    StoreCorrupt,
    StoreFileError,
    StoreNotFound,
    Unrecoverable,
)
from journalstate._format import (
    HEADER_FIXED_SIZE,
    MAX_JOURNAL_SIZE,
    MAX_SCHEMA_LENGTH,
    SLOT_HEAD_SIZE,
    Header,
    SlotHead,
    align,
    check_counters,
    decode_header,
    encode_header,
    encode_slot,
    header_read_size,
    slot_size_for,
)
from journalstate._io import PAGE_SIZE, OsStorage, Region, Storage
from journalstate._recovery import Recovered, RecoveryMode, recover
from journalstate._schema import Schema, check_frozen, compile_schema
from journalstate._store import (
    DEFAULT_CHECKPOINT_THRESHOLD,
    DEFAULT_JOURNAL_SIZE,
    Store,
)

T = TypeVar("T")


def _recover(
    path: str,
    header: Header,
    slots: Region,
    ring: Region,
    *,
    mode: RecoveryMode,
    previous_generation: bool,
    validate: Callable[[bytes], None],
    concurrent_writer: bool,
) -> Recovered:
    """Run recovery; a reader (no lock) retries while a live writer moves the slots under it.

    A writer can only reuse journal space after a checkpoint, and a checkpoint rewrites a slot
    head. So when both slot heads read the same before and after recovery, the journal bytes
    recovery read were appended to at most (a torn tail), never overwritten.
    """

    def heads() -> bytes:
        buf = slots.buffer
        second = header.slot_size
        return bytes(buf[0:SLOT_HEAD_SIZE]) + bytes(buf[second : second + SLOT_HEAD_SIZE])

    attempts = 50 if concurrent_writer else 1
    for attempt in range(attempts):
        before = heads() if concurrent_writer else b""
        try:
            recovered = recover(
                path,
                header,
                slots.buffer,
                ring.buffer,
                mode=mode,
                previous_generation=previous_generation,
                validate=validate,
            )
        except StoreCorrupt:
            if not concurrent_writer or heads() == before or attempt == attempts - 1:
                raise
            continue
        if not concurrent_writer or heads() == before:
            return recovered
    return recovered


def _new_file_chunks(
    schema: Schema, initial: object, journal_size: int
) -> tuple[Header, list[tuple[int, bytes]]]:
    """The header and the bytes of a new store (the journal starts as zeros)."""
    image = schema.encode(initial)
    descriptor = schema.descriptor
    if len(descriptor) > MAX_SCHEMA_LENGTH:
        raise JournalStateError("the schema descriptor is too large")
    header_size = align(HEADER_FIXED_SIZE + len(descriptor), PAGE_SIZE)
    slot_size = slot_size_for(schema.size, PAGE_SIZE)
    header = Header(
        header_size=header_size,
        page_size=PAGE_SIZE,
        file_id=os.urandom(16),
        slot_size=slot_size,
        slot0_offset=header_size,
        slot1_offset=header_size + slot_size,
        journal_offset=header_size + 2 * slot_size,
        journal_size=journal_size,
        state_size=schema.size,
        schema=descriptor,
    )
    # Both slots valid from the start (generations 1 and 0, epoch 0, no records yet), so a
    # new store opens cleanly even in strict mode.
    chunks = [
        (0, encode_header(header)),
        (header.slot0_offset, encode_slot(SlotHead(1, 0, 0, 0, schema.size), image)),
        (header.slot1_offset, encode_slot(SlotHead(0, 0, 0, 0, schema.size), image)),
    ]
    return header, chunks


def _path_argument(path: object) -> str:
    """``path`` as a str, or InvalidArgument(Type) when no store can live there."""
    try:
        text = os.fspath(path)  # type: ignore[call-overload]
    except TypeError:
        raise InvalidArgumentType(
            "path", f"expected a str or os.PathLike, got {type(path).__qualname__}"
        ) from None
    if not isinstance(text, str):
        raise InvalidArgumentType("path", f"expected a str path, got {type(text).__qualname__}")
    if not text or "\0" in text:
        raise InvalidArgument("path", f"{text!r} is not a file name")
    return text


def _recovery_mode(value: object) -> RecoveryMode:
    choices = ", ".join(m.value for m in RecoveryMode)
    if not isinstance(value, str):  # a RecoveryMode is a str too
        raise InvalidArgumentType(
            "recovery", f"expected a string or a RecoveryMode, got {type(value).__qualname__}"
        )
    try:
        return RecoveryMode(value)
    except ValueError:
        raise InvalidArgument(
            "recovery", f"unknown recovery mode {value!r}; use one of {choices}"
        ) from None


def _journal_size(value: object) -> int:
    """The journal size of a new store: whole pages, from one page to MAX_JOURNAL_SIZE.

    A size that is not a multiple of the page size is rounded up; 0 and negatives are refused.
    """
    if value is None:
        return DEFAULT_JOURNAL_SIZE
    if type(value) is not int:  # bool and float are refused too
        raise InvalidArgumentType(
            "journal_size", f"expected an int number of bytes, got {_short(value)}"
        )
    if not 0 < value <= MAX_JOURNAL_SIZE:
        raise InvalidArgument(
            "journal_size",
            f"must be from 1 byte (rounded up to {PAGE_SIZE}) to {MAX_JOURNAL_SIZE}, "
            f"not {_short(value)}",
        )
    return align(value, PAGE_SIZE)


def _short(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _number(name: str, value: object, fits: Callable[[float], bool], wanted: str) -> None:
    """Refuse ``value`` unless it is an int or float (not a bool) that ``fits``."""
    if not isinstance(value, int | float) or isinstance(value, bool):
        raise InvalidArgumentType(name, f"expected {wanted}, got {_short(value)}")
    try:
        number = float(value)
    except OverflowError:  # an int too large for a float
        number = math.inf
    if math.isnan(number) or not fits(number):
        raise InvalidArgument(name, f"expected {wanted}, got {_short(value)}")


def open(
    path: str | os.PathLike[str],
    schema: type[T] | None,
    *,
    durability: Durability | str = Durability.COMMIT,
    journal_size: int | None = None,
    create: bool = True,
    readonly: bool = False,
    initial: T | None = None,
    recovery: RecoveryMode | str = RecoveryMode.TOLERATE_TAIL,
    previous_generation: bool = False,
    flush_interval: float = 1.0,
    lock_timeout: float = 0.0,
    checkpoint_threshold: float = DEFAULT_CHECKPOINT_THRESHOLD,
    storage: Storage | None = None,
) -> Store[T]:
    """Open the store at ``path``, creating it if missing, and recover its latest state.

    Every option is checked first, whether or not the store exists; a mutable (not frozen)
    attrs class is refused, since a state changed in place could never be committed.

    Args:
        path: the store file.
        schema: the attrs class describing the state, or None to use a class rebuilt from
            the file's stored schema (an existing store only; see ``store.state_class``).
        durability: ``"commit"``, ``"interval"`` or ``"process"`` (see :class:`Durability`).
        journal_size: journal ring size in bytes for a new store, from 1 to 2**30 (rounded up
            to whole pages; None: 1 MiB); checked but ignored for an existing store, whose size
            was fixed at creation.
        create: create the store when ``path`` does not exist.
        readonly: open without the writer lock; commits raise :class:`ReadOnlyStore`.
        initial: the state of a new store (default: the schema class with no arguments).
        recovery: ``"tolerate-tail"`` (default), ``"strict"`` or ``"salvage"``.
        previous_generation: open at the state of the older slot, discarding everything after
            it (a writable open makes that roll-back durable).
        flush_interval: seconds between background flushes in ``"interval"`` durability
            (finite and > 0).
        lock_timeout: seconds to wait for another writer's lock (0: fail at once;
            ``math.inf``: wait as long as it takes).
        checkpoint_threshold: journal fill fraction that triggers an automatic checkpoint.
        storage: where files live (default: the real file system).

    Returns:
        The open store. When a writable open returns, the recovered state is durable.

    Raises:
        InvalidArgument: an option has a value it cannot take (InvalidArgumentType: a wrong
            type); nothing was opened.
        UnsupportedPlatform: this system lacks flock, posix_fallocate or shared mmap.
        StoreNotFound, NotAStore, TruncatedStore, UnsupportedVersion, SchemaMismatch,
        UnsafePath, NoSpace, StoreLocked, StoreCorrupt, Unrecoverable, SchemaError.
    """
    path = _path_argument(path)
    mode = durability_of(durability, Durability.COMMIT)
    rec_mode = _recovery_mode(recovery)
    for name, flag in (
        ("create", create),
        ("readonly", readonly),
        ("previous_generation", previous_generation),
    ):
        if type(flag) is not bool:
            raise InvalidArgumentType(name, f"expected True or False, got {_short(flag)}")
    size = _journal_size(journal_size)
    _number(
        "checkpoint_threshold",
        checkpoint_threshold,
        lambda x: 0.0 < x <= 1.0,
        "a fraction of the journal in (0, 1]",
    )
    _number(
        "flush_interval",
        flush_interval,
        lambda x: 0.0 < x <= threading.TIMEOUT_MAX,
        f"a number of seconds > 0 and at most {threading.TIMEOUT_MAX:.0f}",
    )
    _number(
        "lock_timeout",
        lock_timeout,
        lambda x: x >= 0.0,
        "a number of seconds >= 0 (math.inf waits as long as it takes)",
    )
    compiled = None if schema is None else compile_schema(schema)
    if compiled is not None:
        check_frozen(compiled)
    if initial is not None:
        if compiled is None:
            raise InvalidArgument("initial", "a new store needs a schema class too")
        if type(initial) is not compiled.cls:
            raise InvalidArgumentType(
                "initial",
                f"expected a {compiled.cls.__qualname__}, got {type(initial).__qualname__}",
            )
    if storage is None:
        storage = OsStorage()
    elif not all(callable(getattr(storage, m, None)) for m in ("exists", "create", "open")):
        raise InvalidArgumentType(
            "storage", f"expected a Storage (exists, create, open), got {_short(storage)}"
        )
    if not storage.exists(path):
        if readonly or not create or compiled is None:
            raise StoreNotFound(path, "no such store")
        header, chunks = _new_file_chunks(
            compiled, compiled.default() if initial is None else initial, size
        )
        storage.create(path, header.file_size, chunks)  # False: created meanwhile; open it

    file = storage.open(path, writable=not readonly)
    regions: list[Region] = []
    try:
        if not readonly:
            file.lock(lock_timeout)
        file_size = file.size
        head = file.read(0, HEADER_FIXED_SIZE)
        if len(head) >= HEADER_FIXED_SIZE:
            head = file.read(0, header_read_size(head, file_size))
        header = decode_header(path, head, file_size)
        if header.page_size % PAGE_SIZE:
            raise StoreFileError(
                path, f"page size {header.page_size} is not a multiple of this system's {PAGE_SIZE}"
            )
        if compiled is None:
            try:
                cls = class_from_descriptor(header.schema, state_size=header.state_size)
                compiled = compile_schema(cls)
            except (ValueError, JournalStateError) as e:
                raise Unrecoverable(path, f"the stored schema is unusable: {e}", offset=0) from e
        differences = compare_descriptors(compiled.descriptor, header.schema)
        if differences:
            raise SchemaMismatch(path, differences)
        if not readonly:
            # Only now that the header's sizes are validated: a sparse copy gets its holes
            # allocated before any write through a map could meet one on a full disk.
            file.allocate(header.file_size)
        slots = file.map(header.slot0_offset, 2 * header.slot_size, writable=not readonly)
        regions.append(slots)
        ring = file.map(header.journal_offset, header.journal_size, writable=not readonly)
        regions.append(ring)

        def validate(data: bytes) -> None:
            compiled.decode(data)

        recovered = _recover(
            path,
            header,
            slots,
            ring,
            mode=rec_mode,
            previous_generation=previous_generation,
            validate=validate,
            concurrent_writer=readonly,
        )
        try:
            state = compiled.decode(recovered.image)
        except InvalidValue as e:  # validated by recovery; only a racing writer gets here
            raise StoreCorrupt(path, f"the recovered state does not decode ({e})") from e
        store: Store[T] = Store(
            path=path,
            schema=compiled,
            file=file,
            header=header,
            slots=slots,
            ring=ring,
            state=state,  # type: ignore[arg-type]
            image=recovered.image,
            report=recovered.report,
            durability=mode,
            readonly=readonly,
            checkpoint_threshold=checkpoint_threshold,
            flush_interval=flush_interval,
        )
        if not readonly:
            check_counters(
                path,
                max_epoch=recovered.max_epoch,
                max_generation=recovered.max_generation,
                seq=recovered.report.seq,
            )
            store.begin_session(recovered.max_generation, recovered.max_epoch)
            if mode is Durability.INTERVAL:
                store.start_flusher(flush_interval)
        return store
    except BaseException:
        for region in reversed(regions):
            region.close()
        file.close()
        raise
