"""Readers that follow a writer in the same process: refresh, wait, changes and their errors.

The interleavings with a writer in another process, and the model that reads in the middle of
the writer's writes, are in test_follow_live.py and test_follow_model.py.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any

import attrs
import pytest

import journalstate as js
from journalstate._follow import FieldIndex
from journalstate._store import Store
from journalstate._writer import build_record
from tests.test_signals import injected

SMALL = 4096  # one page: the writer checkpoints and laps the ring every few dozen commits


@attrs.frozen
class Inner:
    """A nested part, so that field paths have a dot."""

    x: js.I32 = 0
    y: js.I32 = 0


@attrs.frozen
class S:
    """A state whose fields say which commit wrote them: ``b == 2 * a + 1`` once committed."""

    a: js.U64 = 0
    b: js.U64 = 0
    inner: Inner = Inner()
    label: Annotated[str, js.Str(16)] = ""


def nth(i: int, label: str = "") -> S:
    """The state commit number ``i`` of these tests writes."""
    return S(i, 2 * i + 1, Inner(i % 7, 0), label or f"c{i % 10}")


@pytest.fixture
def path(tmp_path: Path) -> Path:
    """A store path in a fresh directory."""
    return tmp_path / "s.jst"


@pytest.fixture
def writer(path: Path) -> Iterator[Store[S]]:
    """A writer with a one-page journal."""
    store = js.open(path, S, journal_size=SMALL, durability="process")
    yield store
    store.close()


def reader(path: Path) -> Store[S]:
    """A following reader of ``path``."""
    return js.open(path, S, readonly=True)


def commit_range(store: Store[S], first: int, last: int) -> None:
    """Commit states ``first`` to ``last`` (inclusive)."""
    for i in range(first, last + 1):
        store.commit(nth(i))


def test_refresh_moves_to_each_new_commit(writer: Store[S], path: Path) -> None:
    """refresh() shows the writer's newest commit, and returns False when there is none."""
    r = reader(path)
    assert r.refresh() is False
    for i in range(1, 200):
        writer.commit(nth(i))
        if i % 3 == 0:
            assert r.refresh() is True
            assert (r.seq, r.state) == (writer.seq, writer.state)
    r.refresh()
    assert (r.seq, r.state) == (writer.seq, writer.state)
    assert r.refresh() is False
    r.close()


def test_refresh_after_being_lapped_reads_the_newest_slot(writer: Store[S], path: Path) -> None:
    """A reader left behind by many laps of a one-page ring jumps to the writer's state."""
    r = reader(path)
    commit_range(writer, 1, 5)
    assert r.refresh()
    commit_range(writer, 6, 2000)
    assert writer.stats.checkpoints > 10
    assert r.refresh()
    assert (r.seq, r.state) == (writer.seq, writer.state)
    assert r.state_image() == writer.state_image()
    r.close()


def test_refresh_follows_a_writer_that_reopens(path: Path) -> None:
    """A new writing session (close, reopen) is followed: new epoch, the same history."""
    w = js.open(path, S, journal_size=SMALL)
    commit_range(w, 1, 10)
    r = reader(path)
    w.close()
    w = js.open(path, S, journal_size=SMALL)
    assert r.refresh() is False  # the new session starts from the state the reader shows
    assert r.epoch == w.epoch
    commit_range(w, 11, 30)
    assert r.refresh()
    assert (r.seq, r.state) == (30, nth(30))
    w.close()
    r.close()


def test_refresh_after_a_roll_back_raises_store_rewound(path: Path) -> None:
    """A writer that rolls back behind the reader's state: StoreRewound, the state is kept."""
    w = js.open(path, S, journal_size=SMALL)
    commit_range(w, 1, 3)
    w.checkpoint()
    commit_range(w, 4, 6)
    w.close()  # slots now hold seq 3 and seq 6
    r = reader(path)
    assert r.seq == 6
    w = js.open(path, S, journal_size=SMALL, previous_generation=True)
    assert w.seq == 3
    with pytest.raises(js.StoreRewound):
        r.refresh()
    assert (r.seq, r.state) == (6, nth(6))
    with pytest.raises(js.StoreRewound):
        r.wait(0)
    w.close()
    r.close()


def test_a_replaced_file_is_reported_as_replaced(path: Path) -> None:
    """A migration renames a new file over the path: refresh and wait raise StoreReplaced."""
    w = js.open(path, S, journal_size=SMALL)
    commit_range(w, 1, 5)
    w.close()
    r = reader(path)
    js.migrate(path, S, journal_size=2 * SMALL)
    with pytest.raises(js.StoreReplaced):
        r.refresh()
    with pytest.raises(js.StoreReplaced):
        r.wait(1)
    assert (r.seq, r.state) == (5, nth(5))
    r.close()


def test_refresh_on_the_writer_and_on_a_closed_store(writer: Store[S], path: Path) -> None:
    """The writer is always at its newest state (False); a closed reader raises StoreClosed."""
    writer.commit(nth(1))
    assert writer.refresh() is False
    r = reader(path)
    r.close()
    with pytest.raises(js.StoreClosed):
        r.refresh()
    with pytest.raises(js.StoreClosed):
        r.wait(0)
    with pytest.raises(js.StoreClosed):
        r.changes(0)


def test_wait_wakes_on_a_commit_and_times_out_without_one(writer: Store[S], path: Path) -> None:
    """wait() returns True once a commit lands (in another thread), False after its timeout."""
    r = reader(path)
    assert r.wait(0) is False
    assert r.wait(0.01) is False
    done = threading.Event()

    def commit_later() -> None:
        time.sleep(0.05)
        writer.commit(nth(1))
        done.set()

    t = threading.Thread(target=commit_later)
    t.start()
    assert r.wait(300) is True
    t.join()
    assert (r.seq, r.state) == (1, nth(1))
    writer.commit(nth(2))
    assert r.wait(300) is True  # a commit already there: no sleep
    assert r.seq == 2
    r.close()


def test_wait_on_the_writer_waits_for_another_thread(writer: Store[S]) -> None:
    """On the writer's store, wait() returns once another thread commits."""

    def commit_later() -> None:
        time.sleep(0.05)
        writer.commit(nth(1))

    t = threading.Thread(target=commit_later)
    t.start()
    assert writer.wait(300) is True
    t.join()
    assert writer.wait(0.01) is False


@pytest.mark.parametrize(
    ("call", "error"),
    [
        (lambda r: r.wait(-1), js.InvalidArgument),
        (lambda r: r.wait("1"), js.InvalidArgumentType),
        (lambda r: r.wait(True), js.InvalidArgumentType),
        (lambda r: r.wait(float("nan")), js.InvalidArgument),
        (lambda r: r.changes(-1), js.InvalidArgument),
        (lambda r: r.changes(1.5), js.InvalidArgumentType),
        (lambda r: r.changes(True), js.InvalidArgumentType),
        (lambda r: r.changes(0, follow=1), js.InvalidArgumentType),
        (lambda r: r.changes(0, timeout=-2), js.InvalidArgument),
    ],
)
def test_bad_arguments_are_refused_at_the_call(
    writer: Store[S], path: Path, call: Any, error: type[Exception]
) -> None:
    """Every bad argument of wait() and changes() raises at once (not at the first item)."""
    r = reader(path)
    with pytest.raises(error):
        call(r)
    assert r.seq == 0
    r.close()


def test_changes_delivers_each_commit_with_its_fields(writer: Store[S], path: Path) -> None:
    """changes() gives every commit after since_seq, its state and the fields it changed."""
    writer.commit(nth(1))
    writer.commit(attrs.evolve(nth(1), inner=Inner(1, 5)))
    writer.commit(attrs.evolve(nth(1), inner=Inner(1, 5), label="other"))
    writer.commit(nth(4))
    r = reader(path)
    items = list(r.changes(0))
    assert [c.seq for c in items] == [1, 2, 3, 4]
    assert items[1].changed == ("inner.y",)
    assert items[2].changed == ("label",)
    assert items[3].state == nth(4)
    assert set(items[3].changed) == {"a", "b", "inner.x", "inner.y", "label"}
    assert [c.seq for c in writer.changes(2)] == [3, 4]
    assert list(r.changes(4)) == []
    assert list(r.changes(99)) == []
    assert r.seq == 4
    r.close()


def test_changes_that_were_released_raise_with_the_oldest_seq(writer: Store[S], path: Path) -> None:
    """A feed asked for commits the ring no longer holds says where it can start instead."""
    commit_range(writer, 1, 500)
    with pytest.raises(js.ChangesUnavailable) as caught:
        list(writer.changes(1))
    oldest = caught.value.oldest_seq
    assert caught.value.since_seq == 1
    assert 1 < oldest <= 500
    got = [c.seq for c in writer.changes(oldest)]
    assert got == list(range(oldest + 1, 501))
    with pytest.raises(js.ChangesUnavailable):
        list(writer.changes(oldest - 1))


def test_a_feed_that_falls_behind_gets_the_error_never_a_gap(writer: Store[S], path: Path) -> None:
    """A feed read slowly while the writer laps the ring: consecutive seqs, then the error."""
    r = reader(path)
    feed = r.changes(0, follow=True)
    seen: list[int] = []
    for i in range(1, 301):  # keeping up: every commit, in order
        writer.commit(nth(i))
        if i % 5 == 0:
            for _ in range(5):
                item = next(feed)
                assert item.state == nth(item.seq)
                seen.append(item.seq)
    assert seen == list(range(1, 301))
    commit_range(writer, 301, 800)  # falling behind: the ring is lapped many times
    with pytest.raises(js.ChangesUnavailable) as caught:
        next(feed)
    assert caught.value.since_seq == 300
    assert caught.value.oldest_seq > 300
    r.close()


def test_follow_with_timeout_ends_and_crosses_sessions(path: Path) -> None:
    """follow=True reads on across a writer's reopen and ends after a quiet ``timeout``."""
    w = js.open(path, S, journal_size=SMALL)
    commit_range(w, 1, 3)
    r = reader(path)
    w.close()
    w = js.open(path, S, journal_size=SMALL)
    commit_range(w, 4, 6)
    assert r.epoch != w.epoch
    assert [c.seq for c in r.changes(3, follow=True, timeout=0.05)] == [4, 5, 6]
    with pytest.raises(js.ChangesUnavailable) as caught:
        list(r.changes(1))  # both slots are at seq 3 now: nothing to start from before it
    assert caught.value.oldest_seq == 3
    w.close()
    r.close()


@pytest.mark.parametrize("lapped", [False, True])
def test_an_interrupted_refresh_never_shows_a_mixed_state(tmp_path: Path, lapped: bool) -> None:
    """An exception at any line of refresh() leaves a state that a later refresh completes.

    The reader opens the file at seq 3; then the file becomes what the writer made of it
    later (written in place, as the writer's mapping would): three more records, or many
    laps of the ring, a checkpoint and one record after it, which the reader reads from the
    newest slot.
    """
    last = 81 if lapped else 6
    scratch = tmp_path / "scratch.jst"
    with js.open(scratch, S, journal_size=SMALL) as w:
        commit_range(w, 1, 3)
        w.flush()
        before = scratch.read_bytes()
        commit_range(w, 4, 80 if lapped else last)
        if lapped:
            w.checkpoint()
            commit_range(w, 81, 81)
        w.flush()
        after = scratch.read_bytes()
    at = 1
    path = tmp_path / "s.jst"
    while True:
        path.write_bytes(before)
        r = reader(path)
        with open(path, "r+b") as f:
            f.write(after)
        fired = injected(Store.refresh, at, r.refresh)
        assert r.seq in (3, last)
        assert r.state == nth(r.seq)
        r.refresh()
        assert (r.seq, r.state) == (last, nth(last))
        with js.open(path, S, readonly=True) as fresh:
            assert r.state_image() == fresh.state_image()
        with js.open(path, S) as w:
            commit_range(w, last + 1, last + 3)
            assert r.refresh()
            assert (r.seq, r.state) == (last + 3, nth(last + 3))
        r.close()
        if not fired:
            break
        at += 1
    assert at > 20


def test_a_whole_record_that_does_not_fit_is_corruption(path: Path) -> None:
    """A checksummed record with a patch outside the state: StoreCorrupt, state kept."""
    w = js.open(path, S, journal_size=SMALL)
    commit_range(w, 1, 3)
    w.close()
    r = reader(path)
    header = r.header
    record, _ = build_record(r.epoch, r.seq + 1, r.position, 0, r.generation, [(4000, b"x")])
    with open(path, "r+b") as f:
        f.seek(header.journal_offset + r.position % header.journal_size)
        f.write(record)
    with pytest.raises(js.StoreCorrupt):
        r.refresh()
    assert (r.seq, r.state) == (3, nth(3))
    r.close()


def test_field_index_names_every_field_a_patch_touches() -> None:
    """Patches map to the fields whose bytes they overlap, in the order of the image."""
    index = FieldIndex([(0, 8, "a"), (8, 8, "b"), (16, 4, "c.x"), (20, 4, "c.y")])
    assert index.changed([]) == ()
    assert index.changed([(8, b"\0" * 8)]) == ("b",)
    assert index.changed([(7, b"\0\0")]) == ("a", "b")
    assert index.changed([(19, b"\0\0"), (0, b"\0")]) == ("a", "c.x", "c.y")
    assert index.changed([(23, b"\0")]) == ("c.y",)


def test_a_reader_that_moves_can_read_the_feed_where_it_left_it(
    writer: Store[S], path: Path
) -> None:
    """wait() moves the reader past seen; changes(seen) still goes on where the last feed ended,
    although both checkpoints are after seen."""
    commit_range(writer, 1, 10)
    r = reader(path)
    assert [c.seq for c in r.changes(0)] == list(range(1, 11))
    commit_range(writer, 11, 12)
    writer.checkpoint()
    commit_range(writer, 13, 13)
    writer.checkpoint()
    commit_range(writer, 14, 14)
    assert r.wait(0)
    assert r.seq == 14
    got = list(r.changes(10))
    assert [c.seq for c in got] == [11, 12, 13, 14]
    assert [c.state for c in got] == [nth(i) for i in range(11, 15)]
    with pytest.raises(js.ChangesUnavailable):
        list(r.changes(9))  # no feed ended there, and no checkpoint is at or before it
    r.close()


def test_writer_pid_says_whether_a_writer_has_the_store_open(path: Path) -> None:
    """writer_pid names the writer's process while it has the store open, None after."""
    code = (
        "import sys, attrs, journalstate as js\n"
        "from tests.test_follow import S\n"
        "with js.open(sys.argv[1], S) as w:\n"
        "    print('open', flush=True)\n"
        "    sys.stdin.readline()\n"
    )
    js.open(path, S).close()
    r = reader(path)
    assert r.writer_pid is None
    child = subprocess.Popen(
        [sys.executable, "-c", code, str(path)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
    )
    try:
        assert child.stdout is not None
        assert child.stdout.readline() == "open\n"
        assert r.writer_pid == child.pid
    finally:
        child.communicate("\n", timeout=300)
    assert child.returncode == 0
    assert r.writer_pid is None
    r.close()
    with pytest.raises(js.StoreClosed):
        _ = r.writer_pid
