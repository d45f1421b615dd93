"""journalstate: crash-safe typed state in one mmapped file.

The state is an attrs class; the file holds two checksummed state slots and a ring-buffer
journal of checksummed records. See docs/format.md for the bytes and docs/design.md for why
every crash leaves a committed state.
"""

from journalstate._accel import accelerated
from journalstate._backup import BackupReport, backup
from journalstate._chain import StoreStats
from journalstate._durability import Durability
from journalstate._errors import (
    BadDestination,
    ChangesUnavailable,
    CounterExhausted,
    DestinationExists,
    ForkedStore,
    InvalidArgument,
    InvalidArgumentType,
    InvalidValue,
    JournalStateError,
    MigrationRefused,
    NoPreviousGeneration,
    NoSpace,
    NoSuchField,
    NotAStore,
    ReadOnlyStore,
    ReentrantCall,
    SchemaError,
    SchemaMismatch,
    StoreClosed,
    StoreCorrupt,
    StoreFileError,
    StoreLocked,
    StoreNotFound,
    StoreNotPicklable,
    StorePoisoned,
    StoreReplaced,
    StoreRewound,
    TransactionError,
    TransactionTooLarge,
    TruncatedStore,
    Unrecoverable,
    UnsafePath,
    UnsupportedPlatform,
    UnsupportedVersion,
)
from journalstate._introspect import FieldKind, FieldLayout, SchemaInfo, schema_info
from journalstate._live import Commit
from journalstate._markers import (
    F32,
    F64,
    I8,
    I16,
    I32,
    I64,
    U8,
    U16,
    U32,
    U64,
    Array,
    Bool,
    Bytes,
    Str,
    f32_round,
)
from journalstate._migrate import Change, FieldChange
from journalstate._migrate_run import MigrationReport, migrate
from journalstate._open import open
from journalstate._reason import Reason
from journalstate._report import Damage, RecoveryMode, RecoveryReport
from journalstate._slots import SlotStatus
from journalstate._store import Store
from journalstate._txn import Draft

__version__ = "0.1.0"

__all__ = [
    "F32",
    "F64",
    "I8",
    "I16",
    "I32",
    "I64",
    "U8",
    "U16",
    "U32",
    "U64",
    "Array",
    "BackupReport",
    "BadDestination",
    "Bool",
    "Bytes",
    "Change",
    "ChangesUnavailable",
    "Commit",
    "CounterExhausted",
    "Damage",
    "DestinationExists",
    "Draft",
    "Durability",
    "FieldChange",
    "FieldKind",
    "FieldLayout",
    "ForkedStore",
    "InvalidArgument",
    "InvalidArgumentType",
    "InvalidValue",
    "JournalStateError",
    "MigrationRefused",
    "MigrationReport",
    "NoPreviousGeneration",
    "NoSpace",
    "NoSuchField",
    "NotAStore",
    "ReadOnlyStore",
    "Reason",
    "RecoveryMode",
    "RecoveryReport",
    "ReentrantCall",
    "SchemaError",
    "SchemaInfo",
    "SchemaMismatch",
    "SlotStatus",
    "Store",
    "StoreClosed",
    "StoreCorrupt",
    "StoreFileError",
    "StoreLocked",
    "StoreNotFound",
    "StoreNotPicklable",
    "StorePoisoned",
    "StoreReplaced",
    "StoreRewound",
    "StoreStats",
    "Str",
    "TransactionError",
    "TransactionTooLarge",
    "TruncatedStore",
    "Unrecoverable",
    "UnsafePath",
    "UnsupportedPlatform",
    "UnsupportedVersion",
    "__version__",
    "accelerated",
    "backup",
    "f32_round",
    "migrate",
    "open",
    "schema_info",
]
