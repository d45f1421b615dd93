"""journalstate: crash-safe typed state in one mmapped file.

The state is an attrs class; the file holds two checksummed state slots and a ring-buffer
journal of checksummed records. See docs/format.md for the bytes and docs/design.md for why
every crash leaves a committed state.
"""

from journalstate._errors import (
    InvalidValue,
    JournalStateError,
    MigrationRefused,
    NoPreviousGeneration,
    NoSpace,
    NotAStore,
    ReadOnlyStore,
    SchemaError,
    SchemaMismatch,
    StoreClosed,
    StoreCorrupt,
    StoreFileError,
    StoreLocked,
    StoreNotFound,
    StorePoisoned,
    StoreReplaced,
    TransactionError,
    TransactionTooLarge,
    TruncatedStore,
    Unrecoverable,
    UnsafePath,
    UnsupportedVersion,
)
from journalstate._journal import Reason
from journalstate._migrate import Change, FieldChange
from journalstate._migrate_run import MigrationReport, migrate
from journalstate._open import open
from journalstate._recovery import Damage, RecoveryMode, RecoveryReport
from journalstate._schema import (
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
from journalstate._slots import SlotStatus
from journalstate._store import Durability, Store, StoreStats
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
    "Bool",
    "Bytes",
    "Change",
    "Damage",
    "Draft",
    "Durability",
    "FieldChange",
    "InvalidValue",
    "JournalStateError",
    "MigrationRefused",
    "MigrationReport",
    "NoPreviousGeneration",
    "NoSpace",
    "NotAStore",
    "ReadOnlyStore",
    "Reason",
    "RecoveryMode",
    "RecoveryReport",
    "SchemaError",
    "SchemaMismatch",
    "SlotStatus",
    "Store",
    "StoreClosed",
    "StoreCorrupt",
    "StoreFileError",
    "StoreLocked",
    "StoreNotFound",
    "StorePoisoned",
    "StoreReplaced",
    "StoreStats",
    "Str",
    "TransactionError",
    "TransactionTooLarge",
    "TruncatedStore",
    "Unrecoverable",
    "UnsafePath",
    "UnsupportedVersion",
    "__version__",
    "f32_round",
    "migrate",
    "open",
]
