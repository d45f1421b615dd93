"""Checksums and their masking, for every checksummed structure of the format.

Pure: crc32c over bytes or over a mapping's regions (a chunk at a time, never copied), the
mask LevelDB applies to stored checksums, and rounding up to an alignment.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Final, TypeAlias

if TYPE_CHECKING:  # only for the annotation: importing this module loads no I/O module
    import mmap


def _load_crc32c() -> Callable[..., int]:
    """The crc32c function of the ``crc32c`` package.

    The package's ``__init__`` also loads its command-line module, which imports ``mmap``;
    where that cannot be imported, the package's compiled extension is loaded on its own, so
    that the pure modules (this one, the format, recovery) never depend on an I/O module.
    """
    try:
        from crc32c import crc32c as function
    except ImportError:
        import importlib.machinery
        import importlib.util
        import pathlib

        spec = importlib.util.find_spec("crc32c")
        if spec is None or not spec.submodule_search_locations:
            raise
        for directory in spec.submodule_search_locations:
            for suffix in importlib.machinery.EXTENSION_SUFFIXES:
                path = pathlib.Path(directory, "_crc32c" + suffix)
                if path.exists():
                    loader = importlib.machinery.ExtensionFileLoader("crc32c._crc32c", str(path))
                    module = importlib.util.module_from_spec(
                        importlib.util.spec_from_loader(loader.name, loader)  # type: ignore[arg-type]
                    )
                    loader.exec_module(module)
                    found: Callable[..., int] = module.crc32c
                    return found
        raise
    return function


crc32c: Final = _load_crc32c()
"""crc32c (Castagnoli) of a buffer, continuing from an optional value: the one import of it."""

Buffer: TypeAlias = "bytes | bytearray | mmap.mmap"
"""Read access to mapped bytes: slicing and ``find`` work the same on all three."""

_MASK_DELTA: Final = 0xA282EAD8


def crc(data: bytes | bytearray | memoryview, value: int = 0) -> int:
    """Plain crc32c (Castagnoli) of ``data``, continuing from ``value``."""
    return int(crc32c(data, value))


CRC_CHUNK: Final = 1 << 20  # bytes checksummed per step over a mapping: no region is copied


def crc_region(buf: Buffer | memoryview, start: int, end: int, value: int = 0) -> int:
    """Plain crc32c of ``buf[start:end]``, continuing from ``value``, without copying the range.

    The bytes are read through memoryview slices of at most :data:`CRC_CHUNK` bytes, so a
    checksum over a large region of a mapping never materialises the region in memory.
    """
    with memoryview(buf) as view:
        for at in range(start, end, CRC_CHUNK):
            stop = min(end, at + CRC_CHUNK)
            with view[at:stop] as chunk:
                value = int(crc32c(chunk, value))
            if stop - start > CRC_CHUNK:
                release_pages(buf, at, stop)
    return value


def release_pages(buf: object, start: int, end: int) -> None:
    """Drop the whole pages of ``buf[start:end]`` from this process when ``buf`` is a mapping.

    ``MADV_DONTNEED`` on a shared file mapping only unmaps: the contents stay in the file and
    the page cache (dirty pages included) and are read back on the next access. Scans over
    large regions call this on what they have read, so their memory stays one chunk.

    Only a mapping has ``madvise``, and a mapping exists only once its module is loaded, so the
    module is looked up, never imported: this module stays free of I/O imports.
    """
    madvise = getattr(buf, "madvise", None)
    mmap_module = sys.modules.get("mmap")
    advice = getattr(mmap_module, "MADV_DONTNEED", None)
    if madvise is None or advice is None:
        return
    page: int = mmap_module.PAGESIZE  # type: ignore[union-attr]
    first, last = -(-start // page) * page, end // page * page
    if last > first:
        madvise(advice, first, last - first)


def mask(value: int) -> int:
    """Mask a crc before storing it.

    A crc computed over bytes that themselves contain crcs (a record stored inside a region that
    is checksummed again, a file copied into a store) is weak; rotating and adding a constant
    breaks that relation. Same transform as LevelDB's stored checksums.
    """
    return ((((value >> 15) | (value << 17)) & 0xFFFFFFFF) + _MASK_DELTA) & 0xFFFFFFFF


def unmask(masked: int) -> int:
    """Inverse of :func:`mask`."""
    rot = (masked - _MASK_DELTA) & 0xFFFFFFFF
    return ((rot >> 17) | (rot << 15)) & 0xFFFFFFFF


def align(n: int, to: int) -> int:
    """Round ``n`` up to a multiple of ``to``."""
    return -(-n // to) * to
