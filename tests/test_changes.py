"""The change feed: ``store.changes()`` and ``journalstate log --follow``.

Every commit is delivered exactly once, in order, to a follower that keeps up; ``.changed``
names exactly the fields that changed and ``.state`` is the committed state; a follower that
fell behind gets ``ChangesUnavailable`` with the oldest seq it can start after, never a gap.
"""

from __future__ import annotations

import itertools
import json
import queue
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import IO, Annotated

import attrs
import pytest
from hypothesis import given
from hypothesis import strategies as st

import journalstate as js
from journalstate.testing import SimStorage
from tests.follow_writer import Live, expected_small

ROOT = Path(__file__).resolve().parent.parent
HANG_GUARD = 600.0  # seconds: only a hang gets anywhere near it


@attrs.frozen
class Point:
    """A nested part."""

    x: js.I32 = 0
    y: js.I32 = 0


@attrs.frozen
class Deep:
    """Nested classes, arrays (of numbers and of classes), a string and bytes."""

    count: js.U64 = 0
    pos: Point = Point()
    hist: Annotated[tuple[int, ...], js.Array(js.U16, 4)] = (0, 0, 0, 0)
    corners: Annotated[tuple[Point, ...], js.Array(Point, 2)] = (Point(), Point())
    label: Annotated[str, js.Str(12)] = ""
    blob: Annotated[bytes, js.Bytes(600)] = b""


LEAVES = ("count", "pos.x", "pos.y", "hist", "corners", "label", "blob")


def leaf(state: Deep, path: str) -> object:
    """The value at a leaf path."""
    value: object = state
    for part in path.split("."):
        value = getattr(value, part)
    return value


def changed(old: Deep, new: Deep) -> set[str]:
    """The leaf paths whose values differ."""
    return {path for path in LEAVES if leaf(old, path) != leaf(new, path)}


points = st.builds(Point, st.integers(-100, 100), st.integers(-100, 100))
deep_states = st.builds(
    Deep,
    count=st.integers(0, 3),
    pos=points,
    hist=st.tuples(*[st.integers(0, 3)] * 4),
    corners=st.tuples(points, points),
    label=st.sampled_from(["", "a", "bb"]),
    blob=st.sampled_from([b"", b"x" * 10, b"y" * 500]),
)


def check_feed(items: list[js.Commit], since: int, history: list[Deep]) -> None:
    """``items`` are exactly the commits after ``since`` in ``history`` (indexed by seq)."""
    assert [item.seq for item in items] == list(range(since + 1, len(history)))
    for item in items:
        assert item.state == history[item.seq]
        assert set(item.changed) == changed(history[item.seq - 1], history[item.seq])
        assert len(set(item.changed)) == len(item.changed), f"a path named twice: {item.changed}"


def test_changed_names_nested_paths_and_arrays() -> None:
    """``.changed`` names a nested field by its dotted path and an array as one field."""
    disk = SimStorage()
    with js.open("d.jst", Deep, storage=disk) as store:
        store.commit(attrs.evolve(store.state, pos=Point(1, 0)))
        store.commit(attrs.evolve(store.state, hist=(0, 0, 7, 0), label="z"))
        store.commit(attrs.evolve(store.state, corners=(Point(), Point(0, 3))))
        store.commit(attrs.evolve(store.state, count=9, pos=Point(1, 2), blob=b"q"))
        items = list(store.changes(0))
    assert [set(item.changed) for item in items] == [
        {"pos.x"},
        {"hist", "label"},
        {"corners"},
        {"count", "pos.y", "blob"},
    ]
    assert [item.seq for item in items] == [1, 2, 3, 4]


@given(st.lists(deep_states, min_size=1, max_size=12), st.data())
def test_follower_that_keeps_up_gets_every_commit_once(
    states: list[Deep], data: st.DataObject
) -> None:
    """A reader reading the feed between commits gets each commit once, in order, exactly."""
    disk = SimStorage()
    writer = js.open("f.jst", Deep, storage=disk, durability="process")
    reader = js.open("f.jst", Deep, storage=disk, readonly=True)
    history = [writer.state]
    delivered: list[js.Commit] = []
    since = 0
    for state in states:
        if writer.commit(state) == len(history):
            history.append(state)
        if data.draw(st.booleans(), label="read now"):
            batch = list(reader.changes(since))
            if batch:
                since = batch[-1].seq
            delivered.extend(batch)
    delivered.extend(reader.changes(since))
    check_feed(delivered, 0, history)
    check_feed(list(writer.changes(0)), 0, history)  # the writer's own store serves it too
    assert reader.seq == 0, "changes() moved the reader's own state"
    assert reader.state == history[0]
    reader.close()
    writer.close()


def test_since_seq_at_the_head_yields_nothing() -> None:
    """changes(head) is empty, on the writer and on a reader, before and after commits."""
    disk = SimStorage()
    with (
        js.open("h.jst", Deep, storage=disk) as writer,
        js.open("h.jst", Deep, storage=disk, readonly=True) as reader,
    ):
        assert list(writer.changes(0)) == []
        assert list(reader.changes(0)) == []
        for n in range(1, 4):
            writer.commit(attrs.evolve(writer.state, count=n))
        reader.refresh()
        assert list(writer.changes(writer.seq)) == []
        assert list(reader.changes(reader.seq)) == []
        assert [c.seq for c in reader.changes(reader.seq - 1)] == [reader.seq]


def test_follow_with_a_timeout_returns() -> None:
    """follow=True yields the commits there are, then returns once ``timeout`` passes idle."""
    disk = SimStorage()
    with (
        js.open("t.jst", Deep, storage=disk) as writer,
        js.open("t.jst", Deep, storage=disk, readonly=True) as reader,
    ):
        assert list(reader.changes(0, follow=True, timeout=0.05)) == []
        for n in range(1, 6):
            writer.commit(attrs.evolve(writer.state, count=n))
        items = list(reader.changes(2, follow=True, timeout=0.05))
        assert [c.seq for c in items] == [3, 4, 5]
        assert [c.state.count for c in items] == [3, 4, 5]
        assert list(writer.changes(5, follow=True, timeout=0.05)) == []


def test_follow_yields_commits_made_while_it_waits(tmp_path: Path) -> None:
    """A follower waiting with follow=True gets each commit another thread makes, in order."""
    path = tmp_path / "w.jst"
    writer = js.open(path, Deep)
    reader = js.open(path, Deep, readonly=True)
    got: list[tuple[int, int]] = []

    def follow() -> None:
        for item in reader.changes(0, follow=True, timeout=HANG_GUARD):
            got.append((item.seq, item.state.count))
            if item.seq == 20:
                return

    thread = threading.Thread(target=follow, daemon=True)
    thread.start()
    try:
        for n in range(1, 21):
            writer.commit(attrs.evolve(writer.state, count=n))
        thread.join(HANG_GUARD)
        assert not thread.is_alive()
        assert got == [(n, n) for n in range(1, 21)]
    finally:
        writer.close()
        reader.close()


@pytest.mark.parametrize("at", range(12))
def test_follow_wakes_for_a_commit_between_any_two_reads(at: int) -> None:
    """A commit landing between any two reads of a follow=True feed is delivered at once
    (no lost wake-up: the feed would otherwise sleep until the next commit)."""
    disk = SimStorage()
    writer = js.open("k.jst", Deep, storage=disk)
    reader = js.open("k.jst", Deep, storage=disk, readonly=True)
    writer.commit(Deep(count=1))
    reads = 0

    def hook(kind: str) -> None:
        nonlocal reads
        reads += 1
        if reads - 1 == at:
            writer.commit(Deep(count=2))

    disk.during_read = hook
    try:
        # A minute bounds the failure (a lost wake-up sleeps until then); a feed that works
        # returns at once.
        first = next(iter(reader.changes(1, follow=True, timeout=60.0)), None)
    finally:
        disk.during_read = None
    assert writer.seq == 2
    assert first is not None, f"the commit made at read {at} was never delivered"
    assert first.seq == 2
    reader.close()
    writer.close()


@pytest.mark.parametrize("at", range(12))
def test_wait_wakes_for_a_commit_between_any_two_reads(at: int) -> None:
    """A commit landing between any two reads of wait() ends the wait at that commit."""
    disk = SimStorage()
    writer = js.open("k.jst", Deep, storage=disk)
    reader = js.open("k.jst", Deep, storage=disk, readonly=True)
    writer.commit(Deep(count=1))
    assert reader.refresh()
    reads = 0

    def hook(kind: str) -> None:
        nonlocal reads
        reads += 1
        if reads - 1 == at:
            writer.commit(Deep(count=2))

    disk.during_read = hook
    try:
        assert reader.wait(timeout=60.0)  # bounds a lost wake-up; a working wait returns at once
    finally:
        disk.during_read = None
    assert reader.seq == 2
    assert reader.state == Deep(count=2)
    reader.close()
    writer.close()


@pytest.mark.parametrize("on_writer", [False, True], ids=["reader", "writer"])
def test_follower_that_fell_behind_gets_changes_unavailable(on_writer: bool) -> None:
    """After the writer laps a small journal, changes(old) raises with the right oldest_seq."""
    disk = SimStorage()
    writer = js.open("b.jst", Deep, storage=disk, journal_size=8192, durability="process")
    reader = js.open("b.jst", Deep, storage=disk, readonly=True)
    store = writer if on_writer else reader
    history = [writer.state]
    for n in range(1, 80):
        state = Deep(count=n, blob=bytes([n]) * (100 + n * 37 % 500))
        writer.commit(state)
        history.append(state)
    reader.refresh()
    with pytest.raises(js.ChangesUnavailable) as info:
        list(store.changes(0))
    oldest = info.value.oldest_seq
    assert info.value.since_seq == 0
    assert 0 < oldest <= writer.seq
    assert "seq 0" in str(info.value)
    # oldest_seq is the oldest seq the feed can start after: from it, every commit to the head;
    # one before it is gone too.
    check_feed(list(store.changes(oldest)), oldest, history)
    with pytest.raises(js.ChangesUnavailable) as again:
        list(store.changes(oldest - 1))
    assert again.value.oldest_seq == oldest
    assert reader.seq == writer.seq, "a refused changes() moved the reader"
    reader.close()
    writer.close()


def read_feed(store: js.Store[Deep], since: int) -> tuple[list[js.Commit], int | None]:
    """The commits the feed after ``since`` delivers, and the ``oldest_seq`` of the
    ChangesUnavailable it ends with (None when it ends at the head)."""
    items: list[js.Commit] = []
    error: js.ChangesUnavailable | None = None
    try:
        for item in store.changes(since):
            items.append(item)
    except js.ChangesUnavailable as exc:
        error = exc
    if error is None:
        return items, None
    reached = items[-1].seq if items else since
    assert error.since_seq == reached, f"since_seq {error.since_seq}, the feed reached {reached}"
    return items, error.oldest_seq


@pytest.mark.parametrize("refresh", [False, True], ids=["reader-at-open", "reader-refreshing"])
def test_follower_behind_by_laps_never_sees_a_gap(refresh: bool) -> None:
    """Reading the feed after longer and longer pauses on a lapping journal: consecutive
    commits while it keeps up, ChangesUnavailable once it fell behind, and then from
    ``oldest_seq`` on, consecutive again."""
    disk = SimStorage()
    writer = js.open("g.jst", Deep, storage=disk, journal_size=8192, durability="process")
    reader = js.open("g.jst", Deep, storage=disk, readonly=True)
    history = [writer.state]
    since = 0
    refused = 0
    pauses = itertools.cycle([1, 2, 3, 5, 8, 13, 21, 34])
    while len(history) < 400:
        for _ in range(next(pauses)):
            n = len(history)
            state = Deep(count=n, blob=bytes([n % 251]) * (n * 53 % 600))
            writer.commit(state)
            history.append(state)
        if refresh:
            reader.refresh()
        items, oldest = read_feed(reader, since)
        assert [item.seq for item in items] == list(range(since + 1, since + 1 + len(items)))
        assert all(item.state == history[item.seq] for item in items)
        if oldest is not None:
            refused += 1
            reached = items[-1].seq if items else since
            assert reached < oldest <= writer.seq
            since = oldest
            items, again = read_feed(reader, since)
            assert again is None, f"changes(oldest_seq={since}) is unavailable too"
        check_feed(items, since, history)
        since = writer.seq
    assert refused > 0, "the follower never fell behind: make the pauses longer"
    reader.close()
    writer.close()


def test_follower_keeps_up_with_a_writer_process(tmp_path: Path) -> None:
    """A follower in this process gets every commit of a writer process once, in order."""
    path = tmp_path / "p.jst"
    count = 3000
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tests.follow_writer",
            str(path),
            "process",
            str(1 << 20),  # 3000 small records stay in a 1 MiB journal: nothing released
            f"count={count}",
            "small=1",
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().startswith("ready 0")
        with js.open(path, Live, readonly=True) as reader:
            seqs: list[int] = []
            for item in reader.changes(0, follow=True, timeout=HANG_GUARD):
                seqs.append(item.seq)
                assert item.state == expected_small(item.seq)
                if item.seq >= count:
                    break
        assert seqs == list(range(1, count + 1))
        assert proc.stdout.readline().split() == ["closed", str(count)]
    finally:
        proc.kill()
        proc.communicate()


# --- journalstate log --follow -----------------------------------------------------------------


def line_reader(stream: IO[str]) -> queue.Queue[str | None]:
    """Lines of ``stream`` as they come, through a queue (a thread reads); None at its end."""
    lines: queue.Queue[str | None] = queue.Queue()

    def pump() -> None:
        for line in stream:
            lines.put(line)
        lines.put(None)

    threading.Thread(target=pump, daemon=True).start()
    return lines


class LogFollow:
    """A ``journalstate log --follow`` process and the seqs it printed, read as they come."""

    def __init__(self, path: Path, *options: str, as_json: bool) -> None:
        self.as_json = as_json
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "journalstate", "log", str(path), "--follow", *options]
            + (["--json"] if as_json else []),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stdout is not None
        self.lines = line_reader(self.proc.stdout)
        self.seen: list[int] = []
        self.objects: list[dict[str, object]] = []

    def read_until(self, seq: int) -> None:
        """Read lines until the one of commit ``seq`` (or a later one)."""
        while not self.seen or self.seen[-1] < seq:
            self.take(self.lines.get(timeout=HANG_GUARD))

    def read_some(self, wait: float) -> None:
        """Read the lines printed so far, waiting up to ``wait`` seconds for the first."""
        try:
            self.take(self.lines.get(timeout=wait))
            while True:
                self.take(self.lines.get_nowait())
        except queue.Empty:
            pass

    def take(self, line: str | None) -> None:
        """Note the seq a line names, if any."""
        assert line is not None, f"log --follow ended: {self.proc.communicate()[1]}"
        if self.as_json:
            obj = json.loads(line)  # one JSON object per line
            assert isinstance(obj, dict)
            number = obj["seq"]
            assert isinstance(number, int)
            self.objects.append(obj)
            self.seen.append(number)
        else:
            match = re.match(r"seq (\d+)\b", line)
            if match:
                self.seen.append(int(match.group(1)))

    def end(self, sig: int = signal.SIGTERM) -> tuple[int, str]:
        """Signal the process if it still runs; its exit code and stderr."""
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        _, err = self.proc.communicate(timeout=HANG_GUARD)
        return self.proc.returncode, err


@pytest.mark.slow
@pytest.mark.parametrize("as_json", [False, True], ids=["text", "json"])
def test_log_follow_prints_commits_as_they_happen(tmp_path: Path, as_json: bool) -> None:
    """``journalstate log --follow`` prints each commit once, in order, as it is made; Ctrl-C
    ends it with exit code 130 and no traceback."""
    path = tmp_path / "log.jst"
    writer = js.open(path, Deep)
    for n in range(1, 4):
        writer.commit(attrs.evolve(writer.state, count=n))
    log = LogFollow(path, as_json=as_json)
    try:
        log.read_until(3)
        for n in range(4, 12):
            writer.commit(attrs.evolve(writer.state, count=n, label=f"n{n}"))
            log.read_until(n)  # printed before the next commit is made
        assert log.seen[-8:] == list(range(4, 12))
        assert log.seen == list(range(log.seen[0], 12)), f"missing or twice: {log.seen}"
        if as_json:
            last = log.objects[-1]
            changes = last["changes"]
            assert isinstance(changes, list)
            assert {c["field"] for c in changes} == {"count", "label"}
            assert {c["field"]: c["new"] for c in changes} == {"count": 11, "label": "n11"}
        assert log.proc.poll() is None, "log --follow ended by itself"
    finally:
        code, err = log.end(signal.SIGINT)
        writer.close()
    assert code == 130
    assert "Traceback" not in err


@pytest.mark.slow
def test_log_follow_with_a_timeout_ends_when_the_writer_is_idle(tmp_path: Path) -> None:
    """``--follow --timeout`` prints the journal, then ends by itself with check's exit code
    once the writer stays idle that long."""
    path = tmp_path / "idle.jst"
    with js.open(path, Deep) as writer:
        for n in range(1, 4):
            writer.commit(attrs.evolve(writer.state, count=n))
        log = LogFollow(path, "--timeout", "0.5", as_json=True)
        try:
            log.read_until(3)
            code, err = log.proc.wait(timeout=HANG_GUARD), log.proc.communicate()[1]
        finally:
            log.end()
    assert log.seen == [1, 2, 3]
    assert code == 0, err
    assert "Traceback" not in err


def stopped(pid: int) -> bool:
    """Whether the process is stopped (SIGSTOP took effect)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return fields[0] == "T"


@pytest.mark.slow
def test_log_follow_that_fell_behind_names_the_skipped_commits(tmp_path: Path) -> None:
    """A log stopped while the writer laps the journal says on stderr which commits it
    skipped, then goes on from the newest state: it never skips one silently."""
    path = tmp_path / "behind.jst"
    writer = js.open(path, Deep, journal_size=8192, durability="process")
    writer.commit(Deep(count=1))
    log = LogFollow(path, as_json=True)
    try:
        log.read_until(1)
        log.proc.send_signal(signal.SIGSTOP)
        deadline = time.monotonic() + HANG_GUARD
        while not stopped(log.proc.pid):
            assert time.monotonic() < deadline, "SIGSTOP never took effect"
            time.sleep(0.01)
        for k in range(2, 80):  # many laps of the 8 KiB journal
            writer.commit(Deep(count=k, blob=bytes([k]) * 500))
        log.proc.send_signal(signal.SIGCONT)
        # It goes on from the newest state it finds: commit until it prints one after that.
        n = 79
        while len(log.seen) < 2:
            assert time.monotonic() < deadline, "the log never printed a commit again"
            n += 1
            writer.commit(Deep(count=n))
            log.read_some(wait=0.1)
        log.read_until(n)
        skipped = sorted(set(range(1, n + 1)) - set(log.seen))
        assert skipped, "nothing was skipped: make the writer lap more"
        assert log.seen == sorted(set(log.seen)), f"printed out of order or twice: {log.seen}"
        assert [o["seq"] for o in log.objects] == log.seen
    finally:
        _, err = log.end()
        writer.close()
    assert str(skipped[0]) in err, f"stderr does not name the skipped commits: {err!r}"
    assert "Traceback" not in err
