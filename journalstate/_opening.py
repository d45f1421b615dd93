"""Opening a store: creating the file when missing, validating it, recovering, starting a session.

What belongs here: the steps :func:`journalstate.open` takes, once its arguments are checked
(in ``_options``), before a :class:`Store` exists, and the start of a writer's session. The
public ``open`` itself is in ``_open``, which runs a migration first when asked; the store
(commits, checkpoints, syncs) is in ``_store`` and ``_chain``.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any, TypeVar

from journalstate._descriptor import compare_descriptors
from journalstate._durability import Durability
from journalstate._dynamic import class_from_descriptor
from journalstate._errors import (
    InvalidValue,
    JournalStateError,
    NoPreviousGeneration,
    SchemaMismatch,
    StoreCorrupt,
    StoreFileError,
    StoreNotFound,
    Unrecoverable,
)
from journalstate._format import (
    SLOT_HEAD_SIZE,
    SlotHead,
    check_counters,
    encode_slot,
)
from journalstate._header import (
    HEADER_FIXED_SIZE,
    MAX_SCHEMA_LENGTH,
    Header,
    decode_header,
    encode_header,
    header_read_size,
    layout_header,
)
from journalstate._options import DEFAULT_JOURNAL_SIZE, Options
from journalstate._recovery import Recovered, RecoveryMode, RecoveryReport, recover
from journalstate._report import claims
from journalstate._schema import Schema, compile_schema
from journalstate._storage import PAGE_SIZE, Region, Storage, StoreFile, open_store_file
from journalstate._store import DEFAULT_CHECKPOINT_THRESHOLD, Store

T = TypeVar("T")


_LIVE_ATTEMPTS = 100
"""Recoveries a read-only open runs at most before it takes what it has (see ``_recover``)."""

Outcome = Recovered | JournalStateError
"""What one recovery ended with: its result, or the error it raised."""


def _recover(
    path: str,
    header: Header,
    slots: Region,
    ring: Region,
    *,
    mode: RecoveryMode,
    previous_generation: bool,
    validate: Callable[[bytes | bytearray], None],
    concurrent_writer: bool,
) -> Recovered:
    """Run recovery; a reader (no lock) reads again until what it found holds still.

    Beside a live writer, bytes recovery reads may be a write in progress: a record being
    appended, a slot being checkpointed into. Damage counts only when the evidence for it was
    seen *before* the damaged bytes were read. A writer writes record n whole before record n+1
    (whose ``durable_seq`` vouches for n), and writes a slot whole, and syncs it, before any
    record carries its generation; so evidence seen by one recovery proves the bytes it points
    at were complete by then, and the next recovery reads those bytes again:

    - a recovery that claims no damage (a torn tail is none) is the answer;
    - a recovery that claims damage is the answer only when the one before it claimed the same
      damage (same places, same reasons): the damaged bytes were read again after the
      evidence was there;
    - both only while both slot heads read the same before and after: a writer reuses journal
      space or rewrites a slot only after a checkpoint, and a checkpoint rewrites a slot head.
      A recovery during which the heads changed counts for nothing (its state is still a
      committed one, kept in case the writer never lets a recovery finish undisturbed).

    A file no writer is changing gives the same answer twice: damage there is reported as
    before, after one recovery more.
    """

    def run() -> Outcome:
        try:
            return recover(
                path,
                header,
                slots.buffer,
                ring.buffer,
                mode=mode,
                previous_generation=previous_generation,
                validate=validate,
                live=concurrent_writer,
            )
        except (StoreCorrupt, NoPreviousGeneration) as e:
            if not concurrent_writer:
                raise
            return e

    if not concurrent_writer:
        return _result(run())

    def heads() -> bytes:
        buf = slots.buffer
        second = header.slot_size
        return bytes(buf[0:SLOT_HEAD_SIZE]) + bytes(buf[second : second + SLOT_HEAD_SIZE])

    undisturbed: Recovered | None = None  # the last result with no claim, heads moving or not
    previous: tuple[bytes, frozenset[object]] | None = None  # heads and claims of the last run
    for _ in range(_LIVE_ATTEMPTS):
        before = heads()
        outcome = run()
        found = _claims(outcome)
        if heads() != before:
            previous = None
            if not found:
                assert isinstance(outcome, Recovered)
                undisturbed = outcome
            continue
        if not found or previous == (before, found):
            return _result(outcome)
        previous = (before, found)
    return undisturbed if undisturbed is not None else _result(outcome)


def _claims(outcome: Outcome) -> frozenset[object]:
    """The damage an outcome claims (see :func:`claims`); an error always claims something."""
    if isinstance(outcome, Recovered):
        return frozenset(claims(outcome.report))
    report = getattr(outcome, "report", None)
    found: set[object] = set(claims(report)) if isinstance(report, RecoveryReport) else set()
    found.add(
        (type(outcome).__name__, getattr(outcome, "offset", None), getattr(outcome, "reason", None))
    )
    return frozenset(found)


def _result(outcome: Outcome) -> Recovered:
    """The recovery's result, or its error raised."""
    if isinstance(outcome, Recovered):
        return outcome
    raise outcome


def _new_file_chunks(
    schema: Schema, initial: object, journal_size: int
) -> tuple[Header, list[tuple[int, bytes]]]:
    """The header and the bytes of a new store (the journal starts as zeros)."""
    image = schema.encode(initial)
    descriptor = schema.descriptor
    if len(descriptor) > MAX_SCHEMA_LENGTH:
        raise JournalStateError("the schema descriptor is too large")
    header = layout_header(descriptor, schema.size, journal_size, PAGE_SIZE, os.urandom(16))
    # Both slots valid from the start (generations 1 and 0, epoch 0, no records yet), so a
    # new store opens cleanly even in strict mode.
    chunks = [
        (0, encode_header(header)),
        (header.slot0_offset, encode_slot(SlotHead(1, 0, 0, 0, schema.size), image)),
        (header.slot1_offset, encode_slot(SlotHead(0, 0, 0, 0, schema.size), image)),
    ]
    return header, chunks


def open_readonly(path: str, storage: Storage) -> Store[Any]:
    """A read-only store at ``path`` with the schema its file stores (what a migration reads)."""
    return open_store(
        Options(
            path=path,
            durability=Durability.COMMIT,
            recovery=RecoveryMode.TOLERATE_TAIL,
            create=False,
            readonly=True,
            previous_generation=False,
            journal_size=DEFAULT_JOURNAL_SIZE,
            checkpoint_threshold=DEFAULT_CHECKPOINT_THRESHOLD,
            flush_interval=1.0,
            lock_timeout=0.0,
            schema=None,
            initial=None,
            storage=storage,
        )
    )


def recover_locked(path: str, storage: Storage) -> tuple[Header, Schema, Recovered]:
    """The header, stored schema and recovered state of the store at ``path``, for a caller
    that holds its writer lock (a migration).

    As a read-only open recovers (tolerating a torn tail), but no writer can rewrite a slot
    meanwhile: only the slot recovery starts from is copied and decoded, and no
    :class:`Store` is built, so the state is not decoded once more.
    """
    file = open_store_file(storage, path, readonly=True, lock_timeout=0.0)
    regions: list[Region] = []
    try:
        header = _read_header(path, file)
        compiled = _file_schema(path, None, header)
        regions.append(file.map(header.slot0_offset, 2 * header.slot_size, writable=False))
        regions.append(file.map(header.journal_offset, header.journal_size, writable=False))

        def validate(data: bytes | bytearray) -> None:
            compiled.decode(data)

        recovered = recover(
            path, header, regions[0].buffer, regions[1].buffer, validate=validate, stable=True
        )
        return header, compiled, recovered
    finally:
        for region in reversed(regions):
            region.close()
        file.close()


def open_store(options: Options) -> Store[Any]:
    """The store ``options`` describe: created when missing, then opened and recovered."""
    if not options.storage.exists(options.path):
        _create(options)
    return _open_file(options)


def _create(options: Options) -> None:
    """Create the missing store file (another process may create it first: then it opens)."""
    compiled = options.schema
    if options.readonly or not options.create or compiled is None:
        raise StoreNotFound(options.path, "no such store")
    initial = compiled.default() if options.initial is None else options.initial
    header, chunks = _new_file_chunks(compiled, initial, options.journal_size)
    options.storage.create(options.path, header.file_size, chunks)  # False: created meanwhile


def _read_header(path: str, file: StoreFile) -> Header:
    """The file's validated header."""
    file_size = file.size
    head = file.read(0, HEADER_FIXED_SIZE)
    if len(head) >= HEADER_FIXED_SIZE:
        head = file.read(0, header_read_size(head, file_size))
    header = decode_header(path, head, file_size)
    if header.page_size % PAGE_SIZE:
        raise StoreFileError(
            path, f"page size {header.page_size} is not a multiple of this system's {PAGE_SIZE}"
        )
    return header


def _file_schema(path: str, compiled: Schema | None, header: Header) -> Schema:
    """The schema to open with: ``compiled``, or the one the file stores; the two must agree."""
    if compiled is None:
        try:
            cls = class_from_descriptor(header.schema, state_size=header.state_size)
            compiled = compile_schema(cls)
        except (ValueError, JournalStateError) as e:
            raise Unrecoverable(path, f"the stored schema is unusable: {e}", offset=0) from e
    differences = compare_descriptors(compiled.descriptor, header.schema)
    if differences:
        raise SchemaMismatch(path, differences)
    return compiled


def _open_file(options: Options) -> Store[Any]:
    """Open, lock, validate, map and recover the store file; start a writer's session."""
    path, readonly = options.path, options.readonly
    file = open_store_file(
        options.storage, path, readonly=readonly, lock_timeout=options.lock_timeout
    )
    regions: list[Region] = []
    try:
        header = _read_header(path, file)
        compiled = _file_schema(path, options.schema, header)
        if not readonly:
            # Only now that the header's sizes are validated: a sparse copy gets its holes
            # allocated before any write through a map could meet one on a full disk.
            file.allocate(header.file_size)
        slots = file.map(header.slot0_offset, 2 * header.slot_size, writable=not readonly)
        regions.append(slots)
        ring = file.map(header.journal_offset, header.journal_size, writable=not readonly)
        regions.append(ring)

        def validate(data: bytes | bytearray) -> None:
            compiled.decode(data)

        recovered = _recover(
            path,
            header,
            slots,
            ring,
            mode=options.recovery,
            previous_generation=options.previous_generation,
            validate=validate,
            concurrent_writer=readonly,
        )
        try:
            state = compiled.decode(recovered.image)
        except InvalidValue as e:  # validated by recovery; only a racing writer gets here
            raise StoreCorrupt(path, f"the recovered state does not decode ({e})") from e
        store: Store[Any] = Store(
            path=path,
            schema=compiled,
            file=file,
            header=header,
            slots=slots,
            ring=ring,
            state=state,
            image=recovered.image,
            report=recovered.report,
            durability=options.durability,
            readonly=readonly,
            checkpoint_threshold=options.checkpoint_threshold,
            flush_interval=options.flush_interval,
        )
        if not readonly:
            _start_session(store, recovered, options)
        return store
    except BaseException:
        for region in reversed(regions):
            region.close()
        file.close()
        raise


def _start_session(store: Store[Any], recovered: Recovered, options: Options) -> None:
    """Make the recovered state a writer's durable starting point, with a new epoch."""
    check_counters(
        options.path,
        max_epoch=recovered.max_epoch,
        max_generation=recovered.max_generation,
        seq=recovered.report.seq,
    )
    store.begin_session(recovered.max_generation, recovered.max_epoch)
    if options.durability is Durability.INTERVAL:
        store.start_flusher(options.flush_interval)
