"""Group commit in commit mode: followers wait for the msync in flight, then return or lead."""

from __future__ import annotations

import errno
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Annotated

import attrs
import pytest

import journalstate as js
from journalstate._storage import Buffer, Region
from journalstate._store import Store

HANG_GUARD = 300.0  # seconds: only a hang ever waits this long


@attrs.frozen
class S:
    """A counter and a label each thread sets."""

    step: js.U64 = 0
    label: Annotated[str, js.Str(16)] = ""


class HeldSync:
    """A Region whose next sync runs ``hook`` first (in the syncing thread)."""

    def __init__(self, inner: Region) -> None:
        self.inner = inner
        self.hook: Callable[[], None] | None = None
        self.syncs = 0

    @property
    def buffer(self) -> Buffer:
        return self.inner.buffer

    def write(self, offset: int, data: bytes | bytearray) -> None:
        self.inner.write(offset, data)

    def sync(self, offset: int, length: int) -> None:
        self.syncs += 1
        if self.hook is not None:
            hook, self.hook = self.hook, None
            hook()
        self.inner.sync(offset, length)

    def close(self) -> None:
        self.inner.close()


def wait_until(condition: Callable[[], bool]) -> None:
    """Poll ``condition`` until it holds; fail only after the hang guard."""
    deadline = time.monotonic() + HANG_GUARD
    while not condition():
        assert time.monotonic() < deadline, "hang guard"
        time.sleep(0.001)


def start_followers(
    store: Store[S], count: int, results: dict[int, object]
) -> list[threading.Thread]:
    """Threads that each commit once in commit mode; each puts its seq or error in results."""

    def follower(k: int) -> None:
        try:
            results[k] = store.commit(S(step=100 + k, label=f"t{k}"))
        except Exception as e:  # the test looks at it
            results[k] = e

    threads = [threading.Thread(target=follower, args=(k,)) for k in range(count)]
    for t in threads:
        t.start()
    return threads


def open_store(path: Path) -> tuple[Store[S], HeldSync]:
    """A commit-mode store whose ring syncs go through a HeldSync."""
    store = js.open(path, S, durability="commit", flush_interval=3600)
    ring = HeldSync(store._ring)
    store._ring = ring
    return store, ring


def test_followers_wait_for_the_msync_in_flight_and_share_the_next(store_path: Path) -> None:
    """Commits made during an msync wait for it off the sync lock; one more msync covers all."""
    store, ring = open_store(store_path)
    store.commit(S(step=1))
    results: dict[int, object] = {}
    threads: list[threading.Thread] = []

    def during_the_msync() -> None:
        threads.extend(start_followers(store, 4, results))
        # Each follower appended its record and waits as a follower, not on the sync lock.
        wait_until(lambda: store.seq == 6 and store._sync_waiting == 4)

    ring.hook = during_the_msync
    syncs = ring.syncs
    assert store.commit(S(step=2)) == 2
    for t in threads:
        t.join(HANG_GUARD)
    assert sorted(results.values()) == [3, 4, 5, 6]  # type: ignore[type-var]
    assert ring.syncs - syncs == 2  # the leader's msync, then one for all four followers
    assert store.durable_seq == 6
    assert store._sync_waiting == 0
    final = store.state
    store.close()
    with js.open(store_path, S, readonly=True, recovery="strict") as again:
        assert again.state == final


def test_followers_of_a_failed_msync_report_the_poisoned_store(store_path: Path) -> None:
    """When the leader's msync fails, every waiting follower raises StorePoisoned."""
    store, ring = open_store(store_path)
    store.commit(S(step=1))
    results: dict[int, object] = {}
    threads: list[threading.Thread] = []

    def failing_msync() -> None:
        threads.extend(start_followers(store, 3, results))
        wait_until(lambda: store._sync_waiting == 3)
        raise OSError(errno.EIO, "injected I/O error")

    ring.hook = failing_msync
    with pytest.raises(js.StorePoisoned):
        store.commit(S(step=2))
    for t in threads:
        t.join(HANG_GUARD)
    assert len(results) == 3
    assert all(isinstance(r, js.StorePoisoned) for r in results.values())
    store.close()


def test_many_threads_commit_durably(store_path: Path) -> None:
    """Threads committing at once in commit mode: every commit durable, the file agrees."""
    store = js.open(store_path, S, durability="commit", journal_size=8192)
    seqs: list[int] = []
    lock = threading.Lock()

    def worker(k: int) -> None:
        for i in range(40):
            seq = store.commit(S(step=k * 1000 + i, label=f"w{k}"))
            assert store.durable_seq >= seq
            with lock:
                seqs.append(seq)

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(HANG_GUARD)
    assert sorted(seqs) == list(range(1, 241))
    assert store.durable_seq == 240
    assert store.stats.journal_syncs <= 240
    final = store.state
    store.close()
    with js.open(store_path, S, readonly=True, recovery="strict") as again:
        assert (again.state, again.seq) == (final, 240)
