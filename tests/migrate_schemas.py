"""Schemas and functions shared by the migration tests (and by the processes they kill)."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Annotated, Any

import attrs

import journalstate as js

BIG = 64 << 20


@attrs.frozen
class Inner:
    """A nested class of the old schema."""

    a: js.U16 = 0
    f: js.F32 = 0.0


@attrs.frozen
class Old:
    """The schema a store is created with."""

    count: js.U32 = 0
    name: Annotated[str, js.Str(16)] = ""
    inner: Inner = attrs.Factory(Inner)
    hist: Annotated[tuple[int, ...], js.Array(js.U8, 3)] = (0, 0, 0)
    gone: js.I8 = 0


@attrs.frozen
class Inner2:
    """The nested class, widened and with one more field."""

    a: js.I32 = 0
    f: js.F64 = 0.0
    z: js.U8 = 7


@attrs.frozen
class New:
    """Old, widened everywhere, ``gone`` dropped and ``extra`` added."""

    count: js.U64 = 0
    name: Annotated[str, js.Str(64)] = ""
    inner: Inner2 = attrs.Factory(Inner2)
    hist: Annotated[tuple[int, ...], js.Array(js.U16, 5)] = (0,) * 5
    extra: js.F64 = 1.5


OLD_STATE = Old(count=41, name="hello", inner=Inner(3, 1.5), hist=(1, 2, 3), gone=-1)
NEW_STATE = New(count=41, name="hello", inner=Inner2(3, 1.5, 7), hist=(1, 2, 3, 0, 0), extra=1.5)
DROP = ("gone",)


@attrs.frozen
class BigOld:
    """A 64 MiB state."""

    n: js.U32 = 0
    blob: Annotated[bytes, js.Bytes(BIG)] = b""


@attrs.frozen
class BigNew:
    """The 64 MiB state with a wider counter and one more field."""

    n: js.U64 = 0
    blob: Annotated[bytes, js.Bytes(BIG)] = b""
    extra: js.U8 = 1


def big_blob() -> bytes:
    """64 MiB of a repeating, non-zero pattern."""
    return bytes(range(1, 256)) * (BIG // 255) + b"x" * (BIG % 255)


def make_store(path: str | Path, cls: type, state: Any, commits: int = 3, **kwargs: Any) -> int:
    """A store at ``path`` whose latest state is ``state``, some of it still in the journal.

    Returns:
        The seq of that state.
    """
    with js.open(path, cls, **kwargs) as store:
        for i in range(commits):
            store.commit(attrs.evolve(state, **{attrs.fields(cls)[0].name: i}))
        return store.commit(state)


def migrate_copy(source: str | Path, dest: str | Path, cls: type, **kwargs: Any) -> Any:
    """Copy the store at ``source`` to ``dest`` and migrate the copy to ``cls``.

    Returns:
        The migrated state.
    """
    shutil.copyfile(source, dest)
    js.migrate(dest, cls, **kwargs)
    store: js.Store[Any]
    with js.open(dest, cls, readonly=True) as store:
        return store.state
