"""The public :func:`open`: check the arguments, migrate first when asked, open the store.

What belongs here: ``open`` alone. The steps of opening are in ``_opening``; a migration (which
opens stores too, so it cannot be imported by ``_opening``) is in ``_migrate_run``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import TypeVar

from journalstate._durability import Durability
from journalstate._errors import InvalidArgument
from journalstate._migrate_run import migrate as run_migration
from journalstate._migrate_run import needs_migration
from journalstate._opening import open_store
from journalstate._options import checked_flag, checked_options, checked_replication
from journalstate._recovery import RecoveryMode
from journalstate._storage import Storage
from journalstate._store import DEFAULT_CHECKPOINT_THRESHOLD, Store

T = TypeVar("T")


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
    migrate: bool = False,
    replicate_to: str | None = None,
    replicate_interval: float = 1.0,
    replicate_options: Mapping[str, str] | None = None,
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
        migrate: when the file's layout differs from ``schema``'s, first migrate it (see
            :func:`journalstate.migrate`: only changes that lose no data; MigrationRefused
            otherwise); a plain open when the layouts are the same.
        replicate_to: ship every commit to this object-storage URL (``s3://bucket/prefix``,
            ``gs://``, ``az://``, ``file:///path``, ``memory://``) from a background thread;
            needs ``pip install 'journalstate[replicate]'`` (see docs/replication.md).
        replicate_interval: seconds between two uploads of the commits made since the last
            one (finite and > 0).
        replicate_options: options of the object store (credentials, endpoint, region), as
            obstore names them; the environment's (``AWS_ENDPOINT_URL``...) apply too.

    Returns:
        The open store. When a writable open returns, the recovered state is durable.

    Raises:
        InvalidArgument: an option has a value it cannot take (InvalidArgumentType: a wrong
            type); nothing was opened.
        UnsupportedPlatform: this system lacks flock, posix_fallocate or shared mmap.
        StoreNotFound, NotAStore, TruncatedStore, UnsupportedVersion, SchemaMismatch,
        UnsafePath, NoSpace, StoreLocked, StoreCorrupt, Unrecoverable, SchemaError;
        MigrationRefused with ``migrate=True``; ReplicationUnavailable (obstore is not
        installed) and BadReplicaURL with ``replicate_to``.
    """
    options = checked_options(
        path,
        schema,
        durability=durability,
        journal_size=journal_size,
        create=create,
        readonly=readonly,
        initial=initial,
        recovery=recovery,
        previous_generation=previous_generation,
        flush_interval=flush_interval,
        lock_timeout=lock_timeout,
        checkpoint_threshold=checkpoint_threshold,
        storage=storage,
    )
    replication = checked_replication(
        replicate_to, replicate_interval, replicate_options, options.readonly
    )
    objects = None
    if replication is not None:
        from journalstate.replicate._objects import open_url

        objects = open_url(replication.url, options=replication.options)
    if checked_flag("migrate", migrate):
        if options.readonly or schema is None:
            raise InvalidArgument(
                "migrate", "migrate=True needs a writable open with a schema class"
            )
        if options.storage.exists(options.path) and needs_migration(
            options.path, schema, storage=options.storage
        ):
            run_migration(
                options.path, schema, storage=options.storage, lock_timeout=options.lock_timeout
            )
    store = open_store(options)
    if replication is not None:
        from journalstate.replicate._shipper import start_writer_shipper

        try:
            start_writer_shipper(
                store,
                replication.url,
                interval=replication.interval,
                options=replication.options,
                objects=objects,
            )
        except BaseException:
            store.close()
            raise
    return store
