"""The real storage: atomic creation, preallocation, opening, locking and msync of mappings."""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

import pytest

import journalstate as js
from journalstate import _io
from journalstate._io import OsStorage
from journalstate._storage import PAGE_SIZE


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


def test_copy_store_file_copies_a_chunk_at_a_time(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """copy_store_file() makes an identical file, reading one chunk at a time as it writes."""
    source, dest = tmp_path / "s", tmp_path / "d"
    data = os.urandom(3 * PAGE_SIZE + 5)
    source.write_bytes(data)
    monkeypatch.setattr(_io, "COPY_CHUNK", PAGE_SIZE)
    reads: list[int] = []
    real_pread, real_pwrite = os.pread, os.pwrite

    def pread(fd: int, length: int, offset: int) -> bytes:
        reads.append(offset)
        return real_pread(fd, length, offset)

    def pwrite(fd: int, chunk: bytes, offset: int) -> int:
        assert reads[-1] == offset  # each chunk is written before the next one is read
        return real_pwrite(fd, chunk, offset)

    monkeypatch.setattr(os, "pread", pread)
    monkeypatch.setattr(os, "pwrite", pwrite)
    assert _io.copy_store_file(str(source), str(dest))
    assert reads == [0, PAGE_SIZE, 2 * PAGE_SIZE, 3 * PAGE_SIZE]
    assert dest.read_bytes() == data


def test_copy_store_file_refuses_links_and_never_replaces(tmp_path: Path) -> None:
    """The source is never read through a symbolic link; an existing copy is left alone."""
    source, link, dest = tmp_path / "s", tmp_path / "l", tmp_path / "d"
    source.write_bytes(b"store")
    link.symlink_to(source)
    with pytest.raises(js.UnsafePath):
        _io.copy_store_file(str(link), str(dest))
    with pytest.raises(js.StoreNotFound):
        _io.copy_store_file(str(tmp_path / "missing"), str(dest))
    assert not dest.exists()
    dest.write_bytes(b"theirs")
    assert not _io.copy_store_file(str(source), str(dest))
    assert dest.read_bytes() == b"theirs"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d", "l", "s"]


def test_copy_store_file_reports_a_read_error_as_the_source_s(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An error reading the source propagates as it was raised, and leaves no file behind."""
    source, dest = tmp_path / "s", tmp_path / "d"
    source.write_bytes(b"store")
    failure = OSError(errno.EIO, "Input/output error")

    def pread(fd: int, length: int, offset: int) -> bytes:
        raise failure

    monkeypatch.setattr(os, "pread", pread)
    with pytest.raises(OSError, match="Input/output error") as caught:
        _io.copy_store_file(str(source), str(dest))
    assert caught.value is failure
    assert [p.name for p in tmp_path.iterdir()] == ["s"]
