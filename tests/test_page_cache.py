"""New store files are written a page at a time, so a commit-mode msync writes pages, not MiBs."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import attrs
import pytest
from hypothesis import given
from hypothesis import strategies as st

import journalstate as js
from journalstate._io import copy_store_file
from journalstate._tempfiles import write_pages

PAGE = 4096


@attrs.frozen
class Counter:
    """A counter and a blob every commit changes."""

    n: js.U64 = 0
    blob: Annotated[bytes, js.Bytes(100)] = b""


def written_bytes() -> int | None:
    """The bytes this process sent to storage so far (``/proc/self/io``), if the system says."""
    try:
        with open("/proc/self/io", encoding="ascii") as f:
            for line in f:
                if line.startswith("write_bytes:"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def bytes_per_commit(path: Path, commits: int = 50) -> float:
    """Bytes written to storage per commit-mode commit of the store at ``path``."""
    with js.open(path, Counter, durability="commit") as store:
        store.commit(Counter(n=1, blob=b"warm"))
        before = written_bytes()
        assert before is not None
        for i in range(commits):
            store.commit(Counter(n=i + 2, blob=bytes([i & 255]) * 100))
        after = written_bytes()
        assert after is not None
    return (after - before) / commits


def test_a_copied_store_syncs_pages_not_large_folios(tmp_path: Path) -> None:
    """Commit-mode commits on a fresh copy write about a page each, as on the original."""
    if written_bytes() is None:
        pytest.skip("no /proc/self/io here")
    original = tmp_path / "original.jst"
    js.open(original, Counter, create=True).close()
    if bytes_per_commit(original) == 0:
        pytest.skip("msync reaches no device here (tmpfs?)")
    copy = tmp_path / "copy.jst"
    assert copy_store_file(str(original), str(copy))
    # Written as one 1 MiB pwrite, the copy's journal would be one folio: 1 MiB per msync.
    assert bytes_per_commit(copy) < 16 * PAGE


@given(
    data=st.binary(max_size=3 * PAGE + 100),
    offset=st.integers(min_value=0, max_value=2 * PAGE + 7),
)
def test_write_pages_writes_what_one_pwrite_writes(
    tmp_path_factory: pytest.TempPathFactory, data: bytes, offset: int
) -> None:
    """write_pages leaves the same file as a single pwrite of the same bytes."""
    directory = tmp_path_factory.mktemp("pages")
    one, paged = directory / "one", directory / "paged"
    for path, write in ((one, os.pwrite), (paged, write_pages)):
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            write(fd, data, offset)
        finally:
            os.close(fd)
    assert paged.read_bytes() == one.read_bytes()
