"""The shipper: a writer's commits shipped to file:// and memory://, and restored exactly.

Most tests drive a :class:`Shipper` without its thread (``flush`` runs passes in the test's
thread), so every step is deterministic; the store's own shipper (``replicate_to=``) is used
where the thread itself is the point (close, the status while running, fork).
"""

from __future__ import annotations

import math
import os
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import attrs
import pytest

import journalstate as js
from journalstate.replicate import _sources as sources
from journalstate.replicate._objects import ObjectStore, open_url
from journalstate.replicate._shipper import Shipper
from journalstate.replicate._sources import FollowerSource, WriterSource
from journalstate.testing import Fault, FaultyObjectStore
from tests.follow_writer import Live, LiveV2, expected, expected_small

pytest.importorskip("obstore")

HANG_GUARD = 300.0  # seconds: only a hang gets anywhere near it


def dir_url(tmp_path: Path, name: str = "replica") -> str:
    """A file:// URL of a fresh directory."""
    where = tmp_path / name
    where.mkdir(exist_ok=True)
    return f"file://{where}"


def restored(url: str, tmp_path: Path, **kwargs: Any) -> tuple[int, Live]:
    """Restore ``url`` into a new file; its seq and state."""
    dest = tmp_path / f"restored-{len(list(tmp_path.glob('restored-*')))}.jst"
    js.restore(url, str(dest), **kwargs)
    with js.open(dest, Live) as store:
        return store.seq, store.state


def flush(shipper: Shipper) -> None:
    """Ship everything the source holds now (passes in this thread)."""
    assert shipper.flush(time.monotonic() + HANG_GUARD)


def manual(store: js.Store[Any], objects: ObjectStore, **kwargs: Any) -> Shipper:
    """A shipper of ``store`` without its thread, attached the way ``replicate_to`` does."""
    shipper = Shipper(WriterSource(store), objects, **kwargs)
    store.attach_shipper(shipper)
    return shipper


class Stalled:
    """An object store whose uploads fail while ``stalled`` is set (a network down)."""

    def __init__(self, inner: ObjectStore) -> None:
        self.inner = inner
        self.url = inner.url
        self.stalled = True
        self.puts = 0

    def put_new(self, key: str, data: bytes) -> bool:
        if self.stalled:
            raise js.ReplicationError(self.url, "the object store is unreachable")
        self.puts += 1
        return self.inner.put_new(key, data)

    def get(self, key: str) -> bytes:
        return self.inner.get(key)

    def list(self, prefix: str = "") -> list[str]:
        return self.inner.list(prefix)


# --- shipping and restoring -----------------------------------------------------------------


@pytest.mark.parametrize("durability", ["process", "commit"])
def test_writer_ships_to_file_and_restore_gives_the_last_commit(
    tmp_path: Path, durability: str
) -> None:
    """Commits shipped to file:// restore to exactly the state of the last one, after close."""
    url = dir_url(tmp_path)
    path = tmp_path / "s.jst"
    with js.open(path, Live, durability=durability, replicate_to=url) as store:
        for seq in range(1, 201):
            store.commit(expected(seq))
    assert store.replication is not None
    assert store.replication.shipped_seq == 200
    assert restored(url, tmp_path) == (200, expected(200))


def test_memory_url_ships_and_restores(tmp_path: Path) -> None:
    """memory:// (one process) takes the same objects: a restore from it gives the state."""
    url = f"memory://{uuid.uuid4().hex}/replica"
    with js.open(tmp_path / "s.jst", Live, replicate_to=url, replicate_interval=0.01) as store:
        for seq in range(1, 51):
            store.commit(expected(seq))
    assert restored(url, tmp_path) == (50, expected(50))


@pytest.mark.parametrize("copy_image", [True, False])
def test_each_pass_restores_to_exactly_the_shipped_seq(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, copy_image: bool
) -> None:
    """After each pass, restore gives exactly the state of shipped_seq, and seq= any earlier,
    whether the writer's image comes with the records or the shipper applies each record."""
    if not copy_image:
        monkeypatch.setattr(sources, "COPY_IMAGE_MAX", 0)
    url = dir_url(tmp_path)
    with js.open(tmp_path / "s.jst", Live, durability="process") as store:
        shipper = manual(store, open_url(url))
        flush(shipper)  # the generation's snapshot, at seq 0
        seq = 0
        for burst in (1, 7, 30, 2):
            for _ in range(burst):
                seq = store.commit(expected(seq + 1))
            flush(shipper)
            status = shipper.status()
            assert status.shipped_seq == seq
            assert status.lag_seq == 0
            assert status.lag_seconds == 0.0
            assert restored(url, tmp_path) == (seq, expected(seq))
        assert restored(url, tmp_path, seq=5) == (5, expected(5))
        assert status.segments_shipped == 4
        assert status.snapshots_shipped == 1
        assert status.generations_started == 1
        assert status.last_generation_reason == "start"


def test_status_reports_lag_until_shipped(tmp_path: Path) -> None:
    """lag_seq counts commits not shipped yet; lag_seconds grows while they wait."""
    with js.open(tmp_path / "s.jst", Live) as store:
        shipper = manual(store, open_url(dir_url(tmp_path)))
        assert shipper.status().shipped_seq is None
        flush(shipper)
        assert shipper.status().shipped_seq == 0
        for seq in range(1, 4):
            store.commit(expected(seq))
        status = shipper.status()
        assert (status.shipped_seq, status.lag_seq) == (0, 3)
        assert status.lag_seconds > 0.0
        flush(shipper)
        status = shipper.status()
        assert (status.shipped_seq, status.lag_seq, status.lag_seconds) == (3, 0, 0.0)


def test_snapshot_after_the_byte_threshold_in_the_same_generation(tmp_path: Path) -> None:
    """Past snapshot_bytes a new snapshot is shipped; restore from the prefix is unchanged."""
    url = dir_url(tmp_path)
    with js.open(tmp_path / "s.jst", Live, durability="process") as store:
        shipper = manual(store, open_url(url), snapshot_bytes=4096)
        for seq in range(1, 41):
            store.commit(expected(seq))
            flush(shipper)
        status = shipper.status()
    assert status.generations_started == 1
    assert status.snapshots_shipped > 2
    assert restored(url, tmp_path) == (40, expected(40))
    assert restored(url, tmp_path, seq=3) == (3, expected(3))


def test_large_batch_is_cut_into_segments_of_at_most_the_limit(tmp_path: Path) -> None:
    """A batch larger than a segment's limit ships as several segments, restored whole."""
    url = dir_url(tmp_path)

    with js.open(tmp_path / "s.jst", Live, durability="process", journal_size=1 << 26) as store:
        shipper = manual(store, open_url(url), segment_bytes=64 * 1024)
        flush(shipper)
        for seq in range(1, 301):
            store.commit(expected(seq))
        flush(shipper)
        assert shipper.status().segments_shipped > 2
    assert restored(url, tmp_path) == (300, expected(300))


# --- failures ------------------------------------------------------------------------------


def test_failed_uploads_are_retried_and_shipped_seq_waits_for_success(tmp_path: Path) -> None:
    """While uploads fail, last_error is set and shipped_seq stays; then both recover."""
    url = dir_url(tmp_path)
    with js.open(tmp_path / "s.jst", Live) as store:
        objects = Stalled(open_url(url))
        shipper = manual(store, objects)
        for seq in range(1, 11):
            store.commit(expected(seq))
        assert not shipper.flush(time.monotonic())
        status = shipper.status()
        assert status.shipped_seq is None
        assert status.last_error is not None
        assert "unreachable" in status.last_error
        objects.stalled = False
        flush(shipper)
        status = shipper.status()
        assert (status.shipped_seq, status.last_error) == (10, None)
    assert restored(url, tmp_path) == (10, expected(10))


def test_an_upload_that_landed_but_failed_counts_once(tmp_path: Path) -> None:
    """A retry that finds its own object already there (same bytes) is a success."""
    url = dir_url(tmp_path)
    with js.open(tmp_path / "s.jst", Live) as store:
        objects = FaultyObjectStore(open_url(url), [Fault.FAIL_AFTER_PUT] * 3)
        shipper = manual(store, objects)
        for seq in range(1, 6):
            store.commit(expected(seq))
            shipper.flush(time.monotonic() + HANG_GUARD)
        status = shipper.status()
    assert status.shipped_seq == 5
    assert status.last_error is None
    assert restored(url, tmp_path) == (5, expected(5))


def test_lapped_by_a_tiny_journal_starts_a_new_generation_never_a_gap(tmp_path: Path) -> None:
    """A stalled object store lapped by the writer: a new generation, each one contiguous."""
    url = dir_url(tmp_path)
    with js.open(tmp_path / "s.jst", Live, durability="process", journal_size=4096) as store:
        objects = Stalled(open_url(url))
        objects.stalled = False
        shipper = manual(store, objects)
        for seq in range(1, 4):
            store.commit(expected_small(seq))
        flush(shipper)
        objects.stalled = True
        for seq in range(4, 400):  # many laps of the 4 KiB ring
            store.commit(expected_small(seq))
        assert not shipper.flush(time.monotonic())
        objects.stalled = False
        flush(shipper)
        status = shipper.status()
        assert status.generations_started == 2
        assert status.last_generation_reason == "lapped"
        assert status.shipped_seq == 399
    first, second = sorted(g.generation for g in js.list_replicas(url))
    assert restored(url, tmp_path) == (399, expected_small(399))
    assert restored(url, tmp_path, generation=first) == (3, expected_small(3))
    assert restored(url, tmp_path, generation=second) == (399, expected_small(399))


def test_a_conflicting_prefix_stops_the_shipper(tmp_path: Path) -> None:
    """A prefix holding another store's generations is refused: ReplicaConflict, nothing shipped."""
    url = dir_url(tmp_path)
    with js.open(tmp_path / "a.jst", Live, replicate_to=url) as a:
        a.commit(expected(1))
    with js.open(tmp_path / "b.jst", Live) as b:
        shipper = manual(b, open_url(url))
        assert not shipper.flush(time.monotonic() + HANG_GUARD)
        assert isinstance(shipper.fatal_error, js.ReplicaConflict)
        status = shipper.status()
        assert status.last_error is not None
        assert "another store" in status.last_error
        assert status.generations_started == 0
    assert restored(url, tmp_path) == (1, expected(1))


# --- the checkpoint rule --------------------------------------------------------------------


def test_threshold_checkpoint_waits_for_shipping(tmp_path: Path) -> None:
    """Unshipped records defer the threshold checkpoint; once shipped, the next commit takes it."""
    with js.open(tmp_path / "s.jst", Live, durability="process", journal_size=1 << 16) as store:
        objects = Stalled(open_url(dir_url(tmp_path)))
        shipper = manual(store, objects)
        opened = store.stats.checkpoints  # the open's own
        seq = 0
        while store.journal_fill <= 0.6:
            seq = store.commit(expected_small(seq + 1))
            assert store.stats.checkpoints == opened, "a checkpoint released unshipped records"
        objects.stalled = False
        flush(shipper)
        seq = store.commit(expected_small(seq + 1))
        assert store.stats.checkpoints == opened + 1
        assert store.journal_fill < 0.1


def test_full_journal_still_checkpoints_and_commits_never_wait(tmp_path: Path) -> None:
    """With the object store down, commits go on: the journal checkpoints when it is full."""
    with js.open(tmp_path / "s.jst", Live, durability="process", journal_size=4096) as store:
        objects = Stalled(open_url(dir_url(tmp_path)))
        manual(store, objects)
        opened = store.stats.checkpoints
        for seq in range(1, 300):
            store.commit(expected_small(seq))
        assert store.stats.checkpoints > opened
        assert store.seq == 299
        objects.stalled = False  # close() ships, now that it can


def test_without_replication_the_threshold_checkpoints_as_before(tmp_path: Path) -> None:
    """A store that does not replicate checkpoints at the threshold, as it always did."""
    with js.open(tmp_path / "s.jst", Live, durability="process", journal_size=1 << 16) as store:
        seq = 0
        while store.stats.checkpoints == 0:
            seq = store.commit(expected_small(seq + 1))
            assert store.journal_fill <= 0.6


# --- the writer's thread --------------------------------------------------------------------


def test_close_ships_everything_committed(tmp_path: Path) -> None:
    """close() ships what the thread had not: the restore has the last commit."""
    url = dir_url(tmp_path)
    store = js.open(
        tmp_path / "s.jst", Live, durability="process", replicate_to=url, replicate_interval=3600.0
    )
    for seq in range(1, 101):
        store.commit(expected(seq))
    store.close()
    status = store.replication
    assert status is not None
    assert status.shipped_seq == 100
    assert restored(url, tmp_path) == (100, expected(100))


def test_thread_ships_while_the_writer_commits(tmp_path: Path) -> None:
    """The background thread ships on its own: shipped_seq reaches a commit without close."""
    url = dir_url(tmp_path)
    with js.open(tmp_path / "s.jst", Live, replicate_to=url, replicate_interval=0.01) as store:
        for seq in range(1, 21):
            store.commit(expected(seq))
        deadline = time.monotonic() + HANG_GUARD
        while (store.replication.shipped_seq or 0) < 20:
            assert time.monotonic() < deadline, "the thread never shipped"
            time.sleep(0.01)
        assert restored(url, tmp_path) == (20, expected(20))


def test_a_reopened_writer_starts_a_new_generation(tmp_path: Path) -> None:
    """Each writer session ships its own generation; restore takes the newest."""
    url = dir_url(tmp_path)
    path = tmp_path / "s.jst"
    for _ in range(3):
        with js.open(path, Live, replicate_to=url) as store:
            store.commit(expected(store.seq + 1))
    generations = js.list_replicas(url)
    assert len(generations) == 3
    assert restored(url, tmp_path) == (3, expected(3))


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork()")
# Python 3.12+ warns about fork() beside a thread: here that thread is the point of the test.
@pytest.mark.filterwarnings("ignore:This process.*multi-threaded:DeprecationWarning")
def test_forked_child_never_runs_the_parents_shipper(tmp_path: Path) -> None:
    """In a child after fork() the store reports no replication and ships nothing."""
    url = dir_url(tmp_path)
    with js.open(tmp_path / "s.jst", Live, replicate_to=url, replicate_interval=0.01) as store:
        store.commit(expected(1))
        read, write = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child
            code = 0
            try:
                code = 0 if store.replication is None else 3
                store.close()
            except BaseException:
                code = 4
            finally:
                os.write(write, bytes([code]))
                os._exit(code)
        os.close(write)
        assert os.read(read, 1) == b"\x00"
        os.close(read)
        os.waitpid(pid, 0)
        store.commit(expected(2))
    assert restored(url, tmp_path) == (2, expected(2))
    assert len(js.list_replicas(url)) == 1


# --- options --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"replicate_to": 5}, js.InvalidArgumentType),
        ({"replicate_to": b"file:///x"}, js.InvalidArgumentType),
        ({"replicate_to": ""}, js.InvalidArgument),
        ({"replicate_to": "no-scheme"}, js.InvalidArgument),
        ({"replicate_to": "file:///x", "replicate_interval": 0}, js.InvalidArgument),
        ({"replicate_to": "file:///x", "replicate_interval": -1.0}, js.InvalidArgument),
        ({"replicate_to": "file:///x", "replicate_interval": math.nan}, js.InvalidArgument),
        ({"replicate_to": "file:///x", "replicate_interval": math.inf}, js.InvalidArgument),
        ({"replicate_to": "file:///x", "replicate_interval": "1"}, js.InvalidArgumentType),
        ({"replicate_to": "file:///x", "replicate_interval": True}, js.InvalidArgumentType),
        ({"replicate_to": "file:///x", "replicate_options": {"a": 1}}, js.InvalidArgumentType),
        ({"replicate_to": "file:///x", "replicate_options": ["a"]}, js.InvalidArgumentType),
        ({"replicate_options": {"a": "b"}}, js.InvalidArgument),
        ({"replicate_to": "file:///x", "readonly": True}, js.InvalidArgument),
        ({"replicate_to": "ftp://host/x"}, js.BadReplicaURL),
    ],
)
def test_replication_options_are_checked_before_anything_is_opened(
    tmp_path: Path, kwargs: dict[str, Any], error: type[Exception]
) -> None:
    """A bad replication option raises its typed error and creates no file."""
    path = tmp_path / "s.jst"
    with pytest.raises(error):
        js.open(path, Live, **kwargs)
    assert not path.exists()


def test_replication_is_none_without_replicate_to(tmp_path: Path) -> None:
    """A store opened without replicate_to reports no replication."""
    with js.open(tmp_path / "s.jst", Live) as store:
        assert store.replication is None


# --- the sidecar's source -------------------------------------------------------------------


def test_sidecar_source_ships_a_closed_store(tmp_path: Path) -> None:
    """A follower source ships what another store committed: restore gives the same state."""
    url = dir_url(tmp_path)
    path = tmp_path / "s.jst"
    with js.open(path, Live) as store:
        for seq in range(1, 31):
            store.commit(expected(seq))
    source = FollowerSource(str(path))
    try:
        shipper = Shipper(source, open_url(url))
        flush(shipper)
        assert shipper.status().shipped_seq == 30
    finally:
        source.close()
    assert restored(url, tmp_path) == (30, expected(30))


def test_sidecar_ships_records_as_the_writer_wrote_them(tmp_path: Path) -> None:
    """The sidecar's segments hold the very bytes of the writer's journal."""
    url = dir_url(tmp_path)
    path = tmp_path / "s.jst"
    with js.open(path, Live, durability="process", journal_size=1 << 20) as store:
        source = FollowerSource(str(path))
        shipper = Shipper(source, open_url(url))
        flush(shipper)
        start = store.position
        for seq in range(1, 21):
            store.commit(expected(seq))
        flush(shipper)
        ring = bytes(store.ring_buffer()[start : store.position])
        source.close()
    from journalstate.replicate._objformat import decode_object

    objects = open_url(url)
    bodies = [
        decode_object(objects.get(k), k).body
        for k in objects.list("generations/")
        if k.endswith(".segment")
    ]
    assert b"".join(bodies) == ring


def test_sidecar_starts_a_new_generation_when_the_store_is_rewound(tmp_path: Path) -> None:
    """A writer that rolls the store back: the sidecar ships a new generation, "rewound"."""
    url = dir_url(tmp_path)
    path = tmp_path / "s.jst"
    with js.open(path, Live) as store:
        for seq in range(1, 6):
            store.commit(expected(seq))
    with js.open(path, Live) as store:
        for seq in range(6, 11):
            store.commit(expected(seq))
    source = FollowerSource(str(path))
    try:
        shipper = Shipper(source, open_url(url))
        flush(shipper)
        assert shipper.status().shipped_seq == 10
        with js.open(path, Live, previous_generation=True) as store:
            back = store.seq
            assert back < 10
            store.commit(attrs.evolve(expected(back + 1), a=7))
        flush(shipper)
        status = shipper.status()
    finally:
        source.close()
    assert status.generations_started == 2
    assert status.last_generation_reason == "rewound"
    assert status.shipped_seq == back + 1
    assert restored(url, tmp_path) == (back + 1, attrs.evolve(expected(back + 1), a=7))


def test_sidecar_starts_a_new_generation_when_the_store_is_replaced(tmp_path: Path) -> None:
    """A migration that replaces the file: the sidecar ships a new generation, "replaced"."""
    url = dir_url(tmp_path)
    path = tmp_path / "s.jst"
    with js.open(path, Live) as store:
        for seq in range(1, 6):
            store.commit(expected(seq))
    source = FollowerSource(str(path))
    try:
        shipper = Shipper(source, open_url(url))
        flush(shipper)
        js.migrate(path, LiveV2)
        flush(shipper)
        status = shipper.status()
        newest = status.generation
    finally:
        source.close()
    assert status.generations_started == 2
    assert status.last_generation_reason == "replaced"
    assert status.shipped_seq == 5
    dest = tmp_path / "v2.jst"
    js.restore(url, str(dest), generation=newest)
    with js.open(dest, LiveV2) as store:
        assert store.seq == 5
        assert store.state.a == expected(5).a


def test_status_is_a_frozen_copy(tmp_path: Path) -> None:
    """store.replication returns a frozen value that does not change afterwards."""
    with js.open(tmp_path / "s.jst", Live, replicate_to=dir_url(tmp_path)) as store:
        status = store.replication
        assert isinstance(status, js.ReplicationStatus)
        with pytest.raises(attrs.exceptions.FrozenInstanceError):
            status.shipped_seq = 3  # type: ignore[misc]


def test_threads_commit_while_shipping(tmp_path: Path) -> None:
    """Four threads commit while the thread ships: the restore has the last commit."""
    url = dir_url(tmp_path)
    with js.open(
        tmp_path / "s.jst", Live, durability="process", replicate_to=url, replicate_interval=0.005
    ) as store:
        lock = threading.Lock()

        def work() -> None:
            for _ in range(100):
                with lock:
                    store.commit(expected(store.seq + 1))

        threads = [threading.Thread(target=work) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert restored(url, tmp_path) == (400, expected(400))


def test_sidecar_follows_the_writer_across_its_sessions(tmp_path: Path) -> None:
    """A writer that closes and reopens: the sidecar ships on in the same generation, and
    starts a new one ("lapped") only when it missed a whole session."""
    url = dir_url(tmp_path)
    path = tmp_path / "s.jst"
    with js.open(path, Live) as store:
        store.commit(expected(1))
    source = FollowerSource(str(path))
    try:
        shipper = Shipper(source, open_url(url))
        flush(shipper)
        for _ in range(3):
            with js.open(path, Live) as store:
                for _ in range(5):
                    store.commit(expected(store.seq + 1))
            flush(shipper)
        status = shipper.status()
        assert (status.generations_started, status.shipped_seq) == (1, 16)
        assert restored(url, tmp_path) == (16, expected(16))
        assert restored(url, tmp_path, seq=9) == (9, expected(9))
        for _ in range(2):  # two sessions the sidecar does not see one by one
            with js.open(path, Live) as store:
                for _ in range(5):
                    store.commit(expected(store.seq + 1))
        flush(shipper)
        status = shipper.status()
    finally:
        source.close()
    assert (status.generations_started, status.last_generation_reason) == (2, "lapped")
    assert status.shipped_seq == 26
    assert restored(url, tmp_path) == (26, expected(26))
