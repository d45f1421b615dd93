"""What `journalstate bench` measures of the machine: dirty-page writeback, kernel probes, facts.

What belongs here: the I/O counters around a stretch of commits (what reached the disk, next
to pwrite + fdatasync), small probes of the kernel and file system that docs/guarantees.md
relies on (MAP_SYNC, msync(MS_ASYNC), the GIL during a sync, preallocation), and the
description of the machine (CPU, memory, kernel, mount, load).
"""

from __future__ import annotations

import contextlib
import ctypes
import mmap
import os
import platform
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import journalstate as js
from journalstate._accel import describe as describe_code_path
from journalstate.bench.base import PAGE, Config, Op, Small, loop
from journalstate.bench.compare import committer, floor_fdatasync, page_file

# Linux values (<asm-generic/mman-common.h>, <linux/mman.h>); Python 3.11's mmap lacks the last two.
_MS_ASYNC = 1
_MAP_SHARED_VALIDATE = 0x03
_MAP_SYNC = 0x80000


# --- dirty-page writeback ----------------------------------------------------------------------


def _device_stat(directory: str) -> str | None:
    """The /sys block-device stat file of the file system holding ``directory``, if any."""
    st = os.stat(directory)
    path = f"/sys/dev/block/{os.major(st.st_dev)}:{os.minor(st.st_dev)}/stat"
    return path if os.path.exists(path) else None


def _counters(device: str | None) -> dict[str, int | None]:
    """I/O counters that say what reached (or will reach) the disk; None where unreadable."""
    found: dict[str, int | None] = dict.fromkeys(
        ("self_write_bytes", "nr_dirtied", "nr_written", "pgpgout_kib", "device_write_bytes")
    )
    with contextlib.suppress(OSError, ValueError), open("/proc/self/io") as f:
        for line in f:
            name, _, value = line.partition(":")
            if name == "write_bytes":
                found["self_write_bytes"] = int(value)
    with contextlib.suppress(OSError, ValueError), open("/proc/vmstat") as f:
        names = {"nr_dirtied": "nr_dirtied", "nr_written": "nr_written", "pgpgout": "pgpgout_kib"}
        for line in f:
            name, _, value = line.partition(" ")
            if name in names:
                found[names[name]] = int(value)
    if device is not None:
        with contextlib.suppress(OSError, ValueError, IndexError), open(device) as f:
            found["device_write_bytes"] = int(f.read().split()[6]) * 512  # sectors written
    return found


def _delta(a: dict[str, int | None], b: dict[str, int | None]) -> dict[str, int | None]:
    found: dict[str, int | None] = {}
    for k, old in a.items():
        new = b[k]
        found[k] = None if old is None or new is None else new - old
    return found


@contextlib.contextmanager
def _writeback_case(
    cfg: Config, key: str, path: str
) -> Iterator[tuple[Op | None, js.Store[Small] | None]]:
    """The committing function (None: stay idle) and the store, if the case has one."""
    if key.startswith("js_"):
        with js.open(path, Small, durability=key[3:]) as store:
            yield committer(store), store
    elif key == "idle":
        with page_file(path):
            yield None, None
    else:
        with floor_fdatasync(cfg, path) as op:
            yield op, None


def _writeback_row(cfg: Config, key: str, label: str, device: str | None) -> dict[str, Any]:
    """Counters around ``cfg.writeback_seconds`` of commits (no warm-up: the first dirtying of
    each page counts), and again after an fsync of the file writes back what is still dirty."""
    path = os.path.join(cfg.directory, f"writeback-{key}.bin")
    with _writeback_case(cfg, key, path) as (op, store):
        first = store.stats.checkpoints if store else 0
        before = _counters(device)
        if op is None:
            time.sleep(cfg.writeback_seconds)
            n = 0
        else:
            n = loop(op, cfg.writeback_seconds, 1 << 40)[0]
        during = _counters(device)
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        after = _counters(device)
        checkpoints = store.stats.checkpoints - first if store else 0
    os.unlink(path)
    return {
        "key": key,
        "label": label,
        "seconds": cfg.writeback_seconds,
        "commits": n,
        "checkpoints": checkpoints,
        "during": _delta(before, during),
        "after_fsync": _delta(before, after),
    }


def measure_writeback(cfg: Config) -> dict[str, Any]:
    """Commits to the same pages for a while: what reached the disk, vs pwrite + fdatasync.

    The vmstat and device counters are system-wide, so an idle row of the same length shows
    what the rest of the machine wrote meanwhile.
    """
    device = _device_stat(cfg.directory)
    cases = (
        ("idle", "idle (no commits)"),
        ("js_process", "journalstate process"),
        ("js_commit", "journalstate commit"),
        ("floor_fdatasync", "pwrite + fdatasync"),
    )
    return {
        "device_stat": device,
        "dirty_expire_centisecs": _read_int("/proc/sys/vm/dirty_expire_centisecs"),
        "dirty_writeback_centisecs": _read_int("/proc/sys/vm/dirty_writeback_centisecs"),
        "rows": [_writeback_row(cfg, key, label, device) for key, label in cases],
    }


# --- probes ------------------------------------------------------------------------------------


def run_probes(cfg: Config) -> dict[str, Any]:
    """Small facts about this kernel and file system that docs/guarantees.md relies on."""
    found: dict[str, Any] = {}
    path = os.path.join(cfg.directory, "probe.bin")
    with page_file(path) as fd:
        try:
            mmap.mmap(fd, PAGE, flags=_MAP_SHARED_VALIDATE | _MAP_SYNC).close()
            found["map_sync"] = "accepted (DAX file system)"
        except OSError as e:
            found["map_sync"] = f"refused: {os.strerror(e.errno or 0)} (errno {e.errno})"
        found.update(_ms_async(fd, _device_stat(cfg.directory)))
        found.update(_gil_probe(fd, cfg.seconds / 2))
    os.unlink(path)
    store_path = os.path.join(cfg.directory, "probe.jst")
    js.open(store_path, Small).close()
    st = os.stat(store_path)
    found["store_bytes"] = st.st_size
    found["store_allocated_bytes"] = st.st_blocks * 512
    found["preallocated"] = st.st_blocks * 512 >= st.st_size
    os.unlink(store_path)
    return found


def _spin(seconds: float, beside: Callable[[], None] | None = None) -> tuple[int, int]:
    """Count a busy Python loop for ``seconds`` while another thread calls ``beside`` in a loop.

    Returns (loop iterations, calls of ``beside``).
    """
    stop, calls = threading.Event(), [0]

    def other() -> None:
        while not stop.is_set():
            assert beside is not None
            beside()
            calls[0] += 1

    thread = None if beside is None else threading.Thread(target=other)
    if thread is not None:
        thread.start()
    n, clock = 0, time.perf_counter
    end = clock() + seconds
    while True:  # at least one iteration, however late this thread gets the CPU
        n += 1
        if clock() >= end:
            break
    stop.set()
    if thread is not None:
        thread.join()
    return n, calls[0]


def _gil_probe(fd: int, seconds: float) -> dict[str, Any]:
    """Whether a sync call lets other Python threads run (progress near 1.0) or holds the GIL."""
    mm = mmap.mmap(fd, PAGE, flags=mmap.MAP_SHARED)
    try:

        def flush() -> None:
            mm[0:8] = time.perf_counter_ns().to_bytes(8, "little")
            mm.flush(0, PAGE)

        def fdatasync() -> None:
            os.pwrite(fd, time.perf_counter_ns().to_bytes(8, "little"), 0)
            os.fdatasync(fd)

        alone = _spin(seconds)[0]
        found: dict[str, Any] = {}
        for name, sync in (("mmap_flush", flush), ("fdatasync", fdatasync)):
            spins, calls = _spin(seconds, sync)
            found[f"gil_progress_{name}"] = spins / alone
            found[f"gil_syncs_per_s_{name}"] = calls / seconds
        return found
    finally:
        mm.close()


def _ms_async(fd: int, device: str | None) -> dict[str, Any]:
    """Time msync(MS_ASYNC) on a freshly dirtied page, and what the device wrote meanwhile."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        msync = libc.msync
    except (OSError, AttributeError) as e:
        return {"ms_async": f"not measured: {e}"}
    msync.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    mm = mmap.mmap(fd, PAGE, flags=mmap.MAP_SHARED)
    anchor = ctypes.c_char.from_buffer(mm)
    try:
        address, n = ctypes.addressof(anchor), 20_000
        before = _counters(device)
        start = time.perf_counter_ns()
        for i in range(n):
            mm[0:8] = i.to_bytes(8, "little")
            if msync(address, PAGE, _MS_ASYNC) != 0:
                return {"ms_async": f"failed: {os.strerror(ctypes.get_errno())}"}
        elapsed = time.perf_counter_ns() - start
        after = _counters(device)
        start = time.perf_counter_ns()
        for i in range(n):
            mm[0:8] = i.to_bytes(8, "little")
        bare = time.perf_counter_ns() - start
    finally:
        del anchor
        mm.close()
    idle = _counters(device)  # the device counter is system-wide: what others write meanwhile
    time.sleep(elapsed / 1e9)
    return {
        "ms_async_calls": n,
        "ms_async_ns": (elapsed - bare) / n,
        "ms_async_device_write_bytes": _delta(before, after)["device_write_bytes"],
        "ms_async_idle_device_write_bytes": _delta(idle, _counters(device))["device_write_bytes"],
    }


# --- the machine -------------------------------------------------------------------------------


def _read_int(path: str) -> int | None:
    try:
        with open(path) as f:
            return int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def _mount_of(directory: str) -> dict[str, str]:
    real, best = os.path.realpath(directory), {"mount": "?", "device": "?", "fstype": "?"}
    with contextlib.suppress(OSError), open("/proc/self/mounts") as f:
        for line in f:
            parts = line.split()
            if len(parts) < 4:
                continue
            point = parts[1].replace("\\040", " ")
            inside = real == point or real.startswith(point.rstrip("/") + "/")
            if inside and len(point) >= len(best["mount"].strip("?")):
                best = {"mount": point, "device": parts[0], "fstype": parts[2], "options": parts[3]}
    return best


def describe_machine(directory: str) -> dict[str, Any]:
    cpu = "?"
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                cpu = line.partition(":")[2].strip()
                break
    mem = None
    with contextlib.suppress(OSError, ValueError), open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemTotal:"):
                mem = int(line.split()[1]) * 1024
    st = os.stat(directory)
    rotational = _read_int(
        f"/sys/dev/block/{os.major(st.st_dev)}:{os.minor(st.st_dev)}/queue/rotational"
    )
    return {
        "cpu": cpu,
        "nproc": os.cpu_count(),
        "memory_bytes": mem,
        "kernel": platform.release(),
        "python": platform.python_version(),
        "journalstate": js.__version__,
        "code_path": describe_code_path(),
        "filesystem": _mount_of(directory),
        "rotational": rotational,
        "loadavg_start": loadavg(),
    }


def loadavg() -> str | None:
    """The 1, 5 and 15 minute load averages: other work on the machine skews every number."""
    try:
        with open("/proc/loadavg") as f:
            return " ".join(f.read().split()[:3])
    except OSError:
        return None
