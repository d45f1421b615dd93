"""The real storage: atomic creation, preallocation, opening, locking and msync of mappings."""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

import pytest

import journalstate as js
from journalstate import _io
from journalstate._io import PAGE_SIZE, OsStorage


def test_create_writes_chunks_and_preallocates(tmp_path: Path) -> None:
    """create() makes a private file of the given size holding the chunks, zeros elsewhere."""
    path = tmp_path / "f"
    assert OsStorage().create(str(path), 3 * PAGE_SIZE, [(0, b"head"), (PAGE_SIZE, b"slot")])
    data = path.read_bytes()
    assert len(data) == 3 * PAGE_SIZE
    assert data[:4] == b"head"
    assert data[PAGE_SIZE : PAGE_SIZE + 4] == b"slot"
    assert data.count(0) == len(data) - 8
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert os.stat(path).st_blocks * 512 >= 3 * PAGE_SIZE
    assert [p.name for p in tmp_path.iterdir()] == ["f"]


def test_create_never_replaces_a_store_that_appeared(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """When the path appears during creation, create() returns False and leaves it alone."""
    path = tmp_path / "f"
    real_link = os.link

    def racing_link(src: str, dst: str) -> None:
        Path(dst).write_bytes(b"theirs")
        real_link(src, dst)  # raises FileExistsError, as link(2) does

    monkeypatch.setattr(os, "link", racing_link)
    assert not OsStorage().create(str(path), PAGE_SIZE, [(0, b"ours")])
    assert path.read_bytes() == b"theirs"
    assert [p.name for p in tmp_path.iterdir()] == ["f"]


def test_create_without_hard_links_renames(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """On a file system without hard links, creation falls back to rename."""

    def no_links(src: str, dst: str) -> None:
        raise OSError(errno.EPERM, "Operation not permitted")

    monkeypatch.setattr(os, "link", no_links)
    path = tmp_path / "f"
    assert OsStorage().create(str(path), PAGE_SIZE, [(0, b"ours")])
    assert path.read_bytes()[:4] == b"ours"
    assert [p.name for p in tmp_path.iterdir()] == ["f"]


def test_preallocation_falls_back_to_writing_zeros(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Where posix_fallocate is not supported, the blocks are allocated by writing zeros."""

    def unsupported(fd: int, offset: int, length: int) -> None:
        raise OSError(errno.EOPNOTSUPP, "Operation not supported")

    monkeypatch.setattr(os, "posix_fallocate", unsupported)
    path = tmp_path / "f"
    assert OsStorage().create(str(path), 2 * PAGE_SIZE, [(0, b"x")])
    assert os.stat(path).st_blocks * 512 >= 2 * PAGE_SIZE


def test_create_in_missing_directory(tmp_path: Path) -> None:
    """Creating in a directory that does not exist is a StoreFileError naming it."""
    with pytest.raises(js.StoreFileError, match="does not exist"):
        OsStorage().create(str(tmp_path / "no" / "f"), PAGE_SIZE, [])


def test_sync_of_a_closed_mapping_is_refused(tmp_path: Path) -> None:
    """A mapping's sync after close raises instead of touching unmapped memory."""
    path = tmp_path / "f"
    OsStorage().create(str(path), PAGE_SIZE, [])
    file = OsStorage().open(str(path), writable=True)
    region = file.map(0, PAGE_SIZE, writable=True)
    region.write(10, b"abc")
    region.sync(0, PAGE_SIZE)
    region.close()
    with pytest.raises(ValueError, match="closed"):
        region.sync(0, PAGE_SIZE)
    file.close()
    assert path.read_bytes()[10:13] == b"abc"


def test_msync_errors_become_oserror(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A failing msync (through ctypes) raises OSError with its errno."""
    path = tmp_path / "f"
    OsStorage().create(str(path), PAGE_SIZE, [])
    file = OsStorage().open(str(path), writable=True)
    region = file.map(0, PAGE_SIZE, writable=True)
    if _io._MSYNC is None:
        region.close()
        file.close()
        pytest.skip("msync through ctypes is not used on this platform")

    def failing(address: int, length: int, flags: int) -> int:
        import ctypes

        ctypes.set_errno(errno.EIO)
        return -1

    monkeypatch.setattr(_io, "_MSYNC", failing)
    with pytest.raises(OSError, match="Input/output") as info:
        region.sync(0, 10)
    assert info.value.errno == errno.EIO
    region.close()
    file.close()


def test_lock_holder_is_found(tmp_path: Path) -> None:
    """A second open of a locked file reports StoreLocked (the holder is this process here)."""
    path = tmp_path / "f"
    OsStorage().create(str(path), PAGE_SIZE, [])
    first = OsStorage().open(str(path), writable=True)
    first.lock(0)
    second = OsStorage().open(str(path), writable=True)
    with pytest.raises(js.StoreLocked):
        second.lock(0)
    first.close()
    second.lock(0)
    second.close()
