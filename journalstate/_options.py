"""The arguments of :func:`journalstate.open`, each checked before anything is opened.

What belongs here: :class:`Options` and the check of each argument, with the message an
:class:`InvalidArgument` carries. Opening the file is ``_open``'s.
"""

from __future__ import annotations

import math
import os
import threading
from collections.abc import Callable, Mapping
from typing import Any

import attrs

from journalstate._checksums import align
from journalstate._durability import Durability, durability_of
from journalstate._errors import InvalidArgument, InvalidArgumentType
from journalstate._header import MAX_JOURNAL_SIZE
from journalstate._io import OsStorage
from journalstate._recovery import RecoveryMode
from journalstate._schema import Schema, check_frozen, compile_schema
from journalstate._storage import PAGE_SIZE, Storage

DEFAULT_JOURNAL_SIZE = 1 << 20
"""Journal ring size for new stores (bytes): room for thousands of small commits."""


@attrs.frozen
class Options:
    """The arguments of :func:`open`, each checked."""

    path: str
    durability: Durability
    recovery: RecoveryMode
    create: bool
    readonly: bool
    previous_generation: bool
    journal_size: int
    checkpoint_threshold: float
    flush_interval: float
    lock_timeout: float
    schema: Schema | None
    initial: object
    storage: Storage


def checked_flag(name: str, flag: object) -> bool:
    """Refuse ``flag`` unless it is True or False."""
    if type(flag) is not bool:
        raise InvalidArgumentType(name, f"expected True or False, got {_short(flag)}")
    return flag


def _fraction(name: str, value: float) -> float:
    _number(name, value, lambda x: 0.0 < x <= 1.0, "a fraction of the journal in (0, 1]")
    return value


def _interval(name: str, value: float) -> float:
    _number(
        name,
        value,
        lambda x: 0.0 < x <= threading.TIMEOUT_MAX,
        f"a number of seconds > 0 and at most {threading.TIMEOUT_MAX:.0f}",
    )
    return value


def _timeout(name: str, value: float) -> float:
    _number(
        name,
        value,
        lambda x: x >= 0.0,
        "a number of seconds >= 0 (math.inf waits as long as it takes)",
    )
    return value


def _schema_argument(schema: type[Any] | None, initial: object) -> Schema | None:
    """The compiled schema (None to rebuild it from the file), checked against ``initial``."""
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
    return compiled


def _storage_argument(storage: Storage | None) -> Storage:
    if storage is None:
        return OsStorage()
    if not all(callable(getattr(storage, m, None)) for m in ("exists", "create", "open")):
        raise InvalidArgumentType(
            "storage", f"expected a Storage (exists, create, open), got {_short(storage)}"
        )
    return storage


def checked_options(
    path: object,
    schema: type[Any] | None,
    *,
    durability: Durability | str,
    journal_size: object,
    create: object,
    readonly: object,
    initial: object,
    recovery: object,
    previous_generation: object,
    flush_interval: float,
    lock_timeout: float,
    checkpoint_threshold: float,
    storage: Storage | None,
) -> Options:
    """The arguments of :func:`journalstate.open`, checked in the order they are listed.

    Raises:
        InvalidArgument: an option has a value it cannot take (InvalidArgumentType: a wrong
            type).
    """
    return Options(
        path=_path_argument(path),
        durability=durability_of(durability, Durability.COMMIT),
        recovery=_recovery_mode(recovery),
        create=checked_flag("create", create),
        readonly=checked_flag("readonly", readonly),
        previous_generation=checked_flag("previous_generation", previous_generation),
        journal_size=_journal_size(journal_size),
        checkpoint_threshold=_fraction("checkpoint_threshold", checkpoint_threshold),
        flush_interval=_interval("flush_interval", flush_interval),
        lock_timeout=_timeout("lock_timeout", lock_timeout),
        schema=_schema_argument(schema, initial),
        initial=initial,
        storage=_storage_argument(storage),
    )


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


def checked_wait(name: str, value: object) -> float | None:
    """Refuse a timeout unless it is None (no limit) or a number of seconds >= 0."""
    if value is None:
        return None
    _number(name, value, lambda x: x >= 0.0, "None or a number of seconds >= 0")
    assert isinstance(value, int | float)
    return float(value)


def checked_seq(name: str, value: object) -> int:
    """Refuse ``value`` unless it is a sequence number: an int >= 0 (not a bool)."""
    if not isinstance(value, int) or isinstance(value, bool):
        raise InvalidArgumentType(
            name, f"expected a sequence number (an int >= 0), got {_short(value)}"
        )
    if value < 0:
        raise InvalidArgument(name, f"expected a sequence number (an int >= 0), got {value}")
    return value


@attrs.frozen
class Replication:
    """The replication arguments of :func:`open`, each checked."""

    url: str
    interval: float
    options: dict[str, str] | None


def checked_replication(
    replicate_to: object, replicate_interval: object, replicate_options: object, readonly: bool
) -> Replication | None:
    """The replication arguments of :func:`journalstate.open` (None: not replicating).

    Only their types and values: whether the URL names a store obstore can reach is
    ``journalstate.replicate``'s to say (BadReplicaURL, ReplicationUnavailable).

    Raises:
        InvalidArgument: an argument has a value it cannot take (InvalidArgumentType: a wrong
            type).
    """
    interval = _interval("replicate_interval", replicate_interval)  # type: ignore[arg-type]
    options: dict[str, str] | None = None
    if replicate_options is not None:
        if not isinstance(replicate_options, Mapping) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in replicate_options.items()
        ):
            raise InvalidArgumentType(
                "replicate_options",
                f"expected None or a mapping of str to str, got {_short(replicate_options)}",
            )
        options = dict(replicate_options)
    if replicate_to is None:
        if options is not None:
            raise InvalidArgument("replicate_options", "given without replicate_to")
        return None
    if not isinstance(replicate_to, str):
        raise InvalidArgumentType(
            "replicate_to", f"expected None or a URL string, got {_short(replicate_to)}"
        )
    if not replicate_to or "://" not in replicate_to:
        raise InvalidArgument(
            "replicate_to",
            "expected a URL such as s3://bucket/prefix or file:///path, "
            f"got {_short(replicate_to)}",
        )
    if readonly:
        raise InvalidArgument(
            "replicate_to",
            "a read-only store cannot replicate; run `journalstate replicate PATH URL` beside "
            "its writer instead",
        )
    return Replication(replicate_to, float(interval), options)
