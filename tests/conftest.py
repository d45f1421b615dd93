"""Shared fixtures: a small schema, storage wrappers that count or fail syncs, file helpers."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterable
from pathlib import Path
from typing import Annotated

import attrs
import pytest
from hypothesis import HealthCheck, settings

import journalstate as js
from journalstate._io import OsStorage
from journalstate._storage import Buffer, Region, StoreFile

# Object stores for the replication tests (an S3 server, file://, memory://).
pytest_plugins = ["tests.objectstores"]

settings.register_profile(
    "dev", max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.register_profile(
    "ci", max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.register_profile(
    "soak", max_examples=10_000, deadline=None, suppress_health_check=list(HealthCheck)
)
settings.load_profile(os.environ.get("JOURNALSTATE_PROFILE", "dev"))


@attrs.frozen
class Progress:
    """The state used by most store tests."""

    step: js.U64 = 0
    loss: js.F64 = 0.0
    label: Annotated[str, js.Str(32)] = ""
    blob: Annotated[bytes, js.Bytes(3000)] = b""


@pytest.fixture
def store_path(tmp_path: Path) -> Path:
    """A path for a new store in a fresh directory."""
    return tmp_path / "state.jst"


def crash_copy(path: Path, dest: Path | None = None) -> Path:
    """Copy a store file as it is now: the page cache a process death leaves behind."""
    dest = dest or path.with_name(path.name + ".crash")
    shutil.copyfile(path, dest)
    return dest


class CountingRegion:
    """A Region that counts sync calls and can be told to fail them with EIO."""

    def __init__(self, inner: Region, owner: CountingStorage, kind: str) -> None:
        self._inner = inner
        self._owner = owner
        self._kind = kind

    @property
    def buffer(self) -> Buffer:
        return self._inner.buffer

    def write(self, offset: int, data: bytes | bytearray) -> None:
        self._inner.write(offset, data)

    def sync(self, offset: int, length: int) -> None:
        if self._owner.fail_syncs:
            raise OSError(5, "Input/output error")
        self._owner.syncs.append((self._kind, offset, length))
        self._inner.sync(offset, length)

    def close(self) -> None:
        self._inner.close()


class CountingFile:
    """A StoreFile whose regions are CountingRegions."""

    def __init__(self, inner: StoreFile, owner: CountingStorage) -> None:
        self._inner = inner
        self._owner = owner

    @property
    def size(self) -> int:
        return self._inner.size

    def read(self, offset: int, length: int) -> bytes:
        return self._inner.read(offset, length)

    def lock(self, timeout: float) -> None:
        self._inner.lock(timeout)

    def allocate(self, size: int) -> None:
        self._inner.allocate(size)

    def map(self, offset: int, length: int, *, writable: bool) -> Region:
        kind = "journal" if self._owner.mapped else "slots"
        self._owner.mapped += 1
        return CountingRegion(self._inner.map(offset, length, writable=writable), self._owner, kind)

    def close(self) -> None:
        self._inner.close()


class CountingStorage:
    """Real files, with every msync recorded in ``syncs`` as (region, offset, length)."""

    def __init__(self) -> None:
        self._inner = OsStorage()
        self.syncs: list[tuple[str, int, int]] = []
        self.fail_syncs = False
        self.mapped = 0

    def exists(self, path: str) -> bool:
        return self._inner.exists(path)

    def create(self, path: str, size: int, chunks: Iterable[tuple[int, bytes]]) -> bool:
        return self._inner.create(path, size, chunks)

    def open(self, path: str, *, writable: bool) -> StoreFile:
        self.mapped = 0
        return CountingFile(self._inner.open(path, writable=writable), self)

    def count(self, kind: str) -> int:
        """Number of syncs of one region kind ("journal" or "slots")."""
        return sum(1 for k, _, _ in self.syncs if k == kind)
