"""Schema migration and journal resize, executed: a new store file replaces the old one whole.

What belongs here: :func:`migrate` and its report. The plan (which field becomes what) is pure
and lives in ``_migrate``; this module takes the old store's writer lock, builds the new file
under a temporary name, and renames it over the old path. Every crash window is commented where
it opens and listed in docs/design.md ("Migration").
"""

from __future__ import annotations

import os
import struct
from collections.abc import Callable, Collection
from typing import Any, cast

import attrs

from journalstate._checksums import align, crc, mask
from journalstate._descriptor import compare_descriptors, decode_descriptor
from journalstate._errors import (
    InvalidArgument,
    InvalidArgumentType,
    InvalidValue,
    JournalStateError,
    MigrationRefused,
    StoreFileError,
    Unrecoverable,
)
from journalstate._format import SLOT_CRC_OFFSET, SLOT_HEAD_SIZE, SlotHead, encode_slot_head
from journalstate._header import (
    HEADER_FIXED_SIZE,
    MAX_JOURNAL_SIZE,
    Header,
    decode_header,
    encode_header,
    header_read_size,
    layout_header,
)
from journalstate._io import OsStorage
from journalstate._layout import ArrayNode, Node, StructNode
from journalstate._migrate import Change, FieldChange, Plan, plan_migration
from journalstate._opening import open_readonly, recover_locked
from journalstate._recovery import Recovered
from journalstate._schema import Schema, compile_schema
from journalstate._storage import (
    PAGE_SIZE,
    ReplacingStorage,
    Storage,
    StoreFile,
    TemporaryFile,
    file_replaced,
    open_store_file,
)
from journalstate._store import Store


@attrs.frozen
class MigrationReport:
    """What a migration did (or, for a dry run, would do), field by field."""

    path: str
    changes: tuple[FieldChange, ...]
    """Every field: kept, widened, added (with its value), dropped or converted."""
    seq: int
    """The seq of the state migrated; the new store keeps it."""
    old_journal_size: int
    journal_size: int
    """The new store's journal size (the old one's unless resized)."""
    migrated: bool
    """A new file replaced the old one. False for a dry run, and when nothing differed."""
    dry_run: bool = False

    def by_change(self, change: Change) -> list[str]:
        """The paths of the fields with this change."""
        return [c.path for c in self.changes if c.change is change]


def _journal_size(value: int | None) -> int | None:
    if value is None:
        return None
    if type(value) is not int:
        raise InvalidArgumentType(
            "journal_size", f"expected an int number of bytes, got {type(value).__name__}"
        )
    if not 0 < value <= MAX_JOURNAL_SIZE:
        raise InvalidArgument(
            "journal_size",
            f"must be from 1 byte (rounded up to {PAGE_SIZE}) to {MAX_JOURNAL_SIZE}, not {value}",
        )
    return align(value, PAGE_SIZE)


def _peek_descriptor(storage: Storage, path: str) -> bytes:
    """The stored schema descriptor of the store at ``path``, read without any lock."""
    file = storage.open(path, writable=False)
    try:
        head = file.read(0, HEADER_FIXED_SIZE)
        if len(head) >= HEADER_FIXED_SIZE:
            head = file.read(0, header_read_size(head, file.size))
        return decode_header(path, head, file.size).schema
    finally:
        file.close()


def _plan(path: str, descriptor: bytes, new: Schema, drop: Collection[str], convert: bool) -> Plan:
    try:
        old = decode_descriptor(descriptor).root
    except ValueError as e:
        raise Unrecoverable(path, f"the stored schema is unusable: {e}", offset=0) from e
    plan = plan_migration(old, new, drop=drop, convert=convert)
    if plan.problems:
        raise MigrationRefused(path, plan.problems)
    return plan


def _replacing(storage: Storage | None) -> ReplacingStorage:
    if storage is None:
        return OsStorage()
    if not callable(getattr(storage, "create_temporary", None)):
        raise JournalStateError(f"{type(storage).__name__} cannot replace files; migrate needs it")
    return cast(ReplacingStorage, storage)


def _converted(new: Schema, convert: Callable[[Any], Any], old_state: object) -> bytes:
    value = convert(old_state)
    if type(value) is not new.cls:
        raise InvalidValue(
            "<root>",
            f"convert returned a {type(value).__qualname__}, expected a {new.cls.__qualname__}",
        )
    return new.encode(value)


def slot_chunks(
    offset: int, head: SlotHead, image: bytes | bytearray
) -> list[tuple[int, bytes | bytearray]]:
    """The slot ``encode_slot`` makes, as (offset, bytes) pieces that share ``image`` (no copy)."""
    packed = bytearray(encode_slot_head(head))
    tail = struct.pack("<Q", head.generation)
    value = crc(packed[SLOT_CRC_OFFSET + 4 :], crc(packed[:SLOT_CRC_OFFSET]))
    value = crc(tail, crc(image, value))
    struct.pack_into("<I", packed, SLOT_CRC_OFFSET, mask(value))
    return [
        (offset, bytes(packed)),
        (offset + SLOT_HEAD_SIZE, image),
        (offset + SLOT_HEAD_SIZE + head.state_size, tail),
    ]


def new_store_chunks(
    schema: Schema,
    image: bytes | bytearray,
    journal_size: int,
    *,
    seq: int,
    generation: int,
    epoch: int,
) -> tuple[Header, list[tuple[int, bytes | bytearray]]]:
    """The header and bytes of a store holding ``image`` at ``seq``, with an empty journal.

    Both slots are valid and hold the state: generations ``generation + 2`` and
    ``generation + 1`` (they continue the old file's), both at journal position 0.
    """
    header = layout_header(schema.descriptor, schema.size, journal_size, PAGE_SIZE, os.urandom(16))
    chunks: list[tuple[int, bytes | bytearray]] = [(0, encode_header(header))]
    for offset, generation_ in ((header.slot0_offset, 2), (header.slot1_offset, 1)):
        head = SlotHead(generation + generation_, epoch, seq, 0, schema.size)
        chunks += slot_chunks(offset, head, image)
    return header, chunks


def needs_migration(path: str, schema: type, *, storage: Storage | None = None) -> bool:
    """Whether the store at ``path`` has another layout than ``schema`` (read without a lock).

    Class names do not count: a renamed class with the same fields opens as it is.
    """
    new = compile_schema(schema)
    return bool(compare_descriptors(new.descriptor, _peek_descriptor(storage or OsStorage(), path)))


def migrate(
    path: str | os.PathLike[str],
    schema: type[Any],
    *,
    convert: Callable[[Any], Any] | None = None,
    drop: Collection[str] = (),
    journal_size: int | None = None,
    dry_run: bool = False,
    lock_timeout: float = 0.0,
    storage: Storage | None = None,
) -> MigrationReport:
    """Migrate the store at ``path`` to the class ``schema``, or resize its journal.

    A new store file holding the migrated state (same seq, empty journal, a new file id) is
    written complete under a temporary name in the same directory, synced, and renamed over
    ``path``; then the directory is synced. All of it happens under the old file's writer lock,
    and the new file is locked from its creation until this returns. A crash at any instant
    leaves ``path`` holding either the old store, unchanged, or the new one.

    Args:
        path: the store file.
        schema: the new attrs class (the current one to only resize the journal).
        convert: builds the new state from the old one (an instance of the class rebuilt from
            the file); without it, only the changes that cannot lose data are made.
        drop: paths of fields of the file that may disappear ("total", "inner.x").
        journal_size: the new store's journal size (default: the old one's).
        dry_run: plan and check (and run ``convert``) but change nothing.
        lock_timeout: seconds to wait for another writer's lock.
        storage: where files live (default: the real file system).

    Returns:
        The report. When it returns with ``migrated``, the new store is durable at ``path``.

    Raises:
        MigrationRefused: a field would lose data or a new field has no default; the file is
            untouched. InvalidValue: ``convert`` returned a value that does not fit. And what
            :func:`journalstate.open` raises for the old file (StoreLocked, StoreCorrupt...).
    """
    request = _Request(
        os.fspath(path), compile_schema(schema), convert, drop, _journal_size(journal_size)
    )
    disk = _replacing(storage)
    descriptor = _peek_descriptor(disk, request.path)
    plan = request.plan(descriptor)
    if dry_run:
        return _dry_run(request, disk, plan)
    return _run(request, disk, descriptor, plan, lock_timeout)


@attrs.frozen
class _Request:
    """What a caller of :func:`migrate` asked for, its arguments checked."""

    path: str
    new: Schema
    convert: Callable[[Any], Any] | None
    drop: Collection[str]
    size: int | None
    """The new journal size, None to keep the old one's."""

    def plan(self, descriptor: bytes) -> Plan:
        """The plan from the layout ``descriptor`` gives; raises when it is refused."""
        return _plan(self.path, descriptor, self.new, self.drop, self.convert is not None)


def _run(
    request: _Request, disk: ReplacingStorage, descriptor: bytes, plan: Plan, lock_timeout: float
) -> MigrationReport:
    """Migrate under the old file's writer lock: read it, write the new file, rename it over."""
    path = request.path
    # The writer lock on the old file, held until the new file has replaced it. The old file
    # itself is only read: whatever happens to this migration, it stays as it was.
    lock = open_store_file(disk, path, readonly=False, lock_timeout=lock_timeout)
    temporary: TemporaryFile | None = None
    try:
        built = _build(request, disk, lock, descriptor, plan)
        if isinstance(built, MigrationReport):
            return built
        report, header, chunks = built
        # Crash window: the temporary file is created, then written, then synced. A crash
        # before the rename leaves the old store at `path`, untouched, and a stray temporary
        # file whose lock nobody holds: the next migration removes it.
        temporary = disk.create_temporary(path, header.file_size, chunks)
        del chunks, built
        # Crash window: see TemporaryFile.replace. Before the directory sync an OS crash may
        # undo the rename (the old store at `path`, the new file a stray temporary); after a
        # process death, or once the sync returns, `path` holds the new store.
        temporary.replace(path)
        return report
    finally:
        lock.close()  # releases the old file's lock: a writer waiting on it reopens the path
        if temporary is not None:
            temporary.close()  # releases the new file's lock


def _build(
    request: _Request, disk: ReplacingStorage, lock: StoreFile, descriptor: bytes, plan: Plan
) -> MigrationReport | tuple[MigrationReport, Header, list[tuple[int, bytes | bytearray]]]:
    """Read the old store (its writer lock held) and build the new file's header and bytes;
    or the report alone when there is nothing to migrate. Writes nothing but stray temporaries'
    removal."""
    path = request.path
    header, old, recovered = recover_locked(path, disk)
    if file_replaced(lock):  # only a writer holding our lock could rename over path
        raise StoreFileError(path, "replaced by another file during the migration")
    if header.schema != descriptor:  # replaced between the peek and the lock
        plan = request.plan(header.schema)
    disk.clean_temporaries(path)
    journal = header.journal_size if request.size is None else request.size
    report = _report(path, plan, recovered.report.seq, header, journal, migrated=True)
    if plan.identical and request.convert is None and journal == header.journal_size:
        return attrs.evolve(report, migrated=False)
    new_header, chunks = _new_file(request.new, plan, request.convert, old, recovered, journal)
    return report, new_header, chunks


def _dry_run(request: _Request, disk: Storage, plan: Plan) -> MigrationReport:
    """What the migration would do, read without a lock (``convert`` runs and is checked)."""
    reader: Store[Any]
    with open_readonly(request.path, disk) as reader:
        if request.convert is not None:
            _converted(request.new, request.convert, reader.state)
        header = reader.header
        journal = header.journal_size if request.size is None else request.size
        return _report(
            request.path, plan, reader.seq, header, journal, migrated=False, dry_run=True
        )


def _new_file(
    new: Schema,
    plan: Plan,
    convert: Callable[[Any], Any] | None,
    old: Schema,
    recovered: Recovered,
    journal: int,
) -> tuple[Header, list[tuple[int, bytes | bytearray]]]:
    """The new store's header and bytes, from the state ``recovered`` from the old one.

    Without ``convert`` the old state is never decoded: the plan builds the new image from the
    old bytes, and only a class with validators or hooks decodes the result.
    """
    if convert is not None:
        image: bytes | bytearray = _converted(new, convert, old.decode(recovered.image))
    else:
        image = plan.apply(recovered.image)
        if _has_hooks(new.root):
            new.decode(image)  # the class's own validators see the migrated state
    base = recovered.report
    return new_store_chunks(
        new, image, journal, seq=base.seq, generation=base.generation, epoch=base.epoch
    )


def _has_hooks(node: Node) -> bool:
    """Whether decoding runs user code (validators, converters, post-init) anywhere in ``node``.

    Without any, a migrated image needs no check: every value in it is an old value that was
    valid, widened, or an encoded default.
    """
    if isinstance(node, ArrayNode):
        return _has_hooks(node.element)
    if not isinstance(node, StructNode) or node.cls is None:
        return False
    cls = node.cls
    if any(hasattr(cls, hook) for hook in ("__attrs_post_init__", "__attrs_pre_init__")):
        return True
    if any(f.validator is not None or f.converter is not None for f in attrs.fields(cls)):
        return True
    return any(_has_hooks(child) for _, _, _, child in node.members)


def _report(
    path: str,
    plan: Plan,
    seq: int,
    old: Header,
    journal_size: int,
    *,
    migrated: bool,
    dry_run: bool = False,
) -> MigrationReport:
    return MigrationReport(
        path=path,
        changes=plan.changes,
        seq=seq,
        old_journal_size=old.journal_size,
        journal_size=journal_size,
        migrated=migrated,
        dry_run=dry_run,
    )
