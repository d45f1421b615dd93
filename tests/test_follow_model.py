"""The stateful model of readers that follow a live writer on one simulated disk.

One writer store and several read-only stores share a :class:`SimStorage` with a two-page
journal: records straddle the ring's end, the writer laps the ring and checkpoints all the
time. Readers refresh, wait, open afresh and read the change feed between the writer's calls
and *in the middle of its writes* (the disk applies each write in pieces and runs the readers'
operations between them). The model is the list of committed ``(seq, state)`` pairs; a commit
under way may show once its record is whole, so inside a write the pair it is writing is
allowed too.

``JOURNALSTATE_FOLLOW_EXAMPLES`` sets the number of examples (default 40).
"""

from __future__ import annotations

import os
import zlib
from collections.abc import Callable
from functools import partial
from typing import Annotated, Any, TypeVar

import attrs
from hypothesis import Phase, event, note, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

import journalstate as js
from journalstate._schema import compile_schema
from journalstate.testing import Event, SimStorage, byte_pieces, sector_pieces

PATH = "follow.jst"
JOURNAL_SIZE = 8192  # two pages: records of up to ~1 KiB cross the ring's end constantly
READERS = 3
MODES = ("commit", "process", "interval")
R = TypeVar("R")
EXAMPLES = int(os.environ.get("JOURNALSTATE_FOLLOW_EXAMPLES", "40"))


@attrs.frozen
class Pos:
    """A nested part of the state."""

    x: js.I32 = 0
    y: js.I32 = 0


@attrs.frozen
class Followed:
    """A state with an internal invariant: ``check`` is a checksum of every other field."""

    n: js.U32 = 0
    pos: Pos = Pos()
    hist: Annotated[tuple[int, ...], js.Array(js.U16, 6)] = (0,) * 6
    label: Annotated[str, js.Str(16)] = ""
    blob: Annotated[bytes, js.Bytes(1200)] = b""
    check: js.U32 = 0


def checksum(s: Followed) -> int:
    """The value ``check`` holds in every committed state."""
    return zlib.crc32(repr((s.n, s.pos, s.hist, s.label, s.blob)).encode())


def consistent(s: Followed) -> bool:
    """Whether a state's fields agree with its checksum (a mixed or torn state does not)."""
    return s.check == checksum(s)


def sealed(s: Followed) -> Followed:
    """``s`` with its checksum set."""
    return attrs.evolve(s, check=checksum(s))


def next_states(old: Followed) -> st.SearchStrategy[Followed]:
    """A successor of ``old``: a few fields changed, sometimes none, sometimes a large blob."""
    return st.builds(
        lambda n, x, y, hist, label, blob: sealed(
            Followed(
                n=old.n + 1 if n else old.n,
                pos=Pos(old.pos.x if x is None else x, old.pos.y if y is None else y),
                hist=old.hist if hist is None else hist,
                label=old.label if label is None else label,
                blob=old.blob if blob is None else blob,
            )
        ),
        st.booleans(),
        st.none() | st.integers(-(2**31), 2**31 - 1),
        st.none() | st.integers(-(2**31), 2**31 - 1),
        st.none() | st.tuples(*[st.integers(0, 2**16 - 1)] * 6),
        st.none() | st.text(max_size=4),  # at most 4 bytes of UTF-8 each: within 16
        st.none()
        | st.binary(max_size=40)
        | st.integers(0, 1200).map(lambda k: bytes([k % 251]) * k),
    )


def leaf_values(state: object) -> dict[str, object]:
    """Every leaf of a state by its path (an array is one leaf)."""
    out: dict[str, object] = {}
    for f in compile_schema(type(state)).fields():
        value: Any = state
        for part in f.path.split("."):
            value = getattr(value, part)
        out[f.path] = value
    return out


def changed_paths(old: object, new: object) -> set[str]:
    """The leaf paths whose values differ between two states."""
    a, b = leaf_values(old), leaf_values(new)
    return {path for path in a if a[path] != b[path]}


class FollowMachine(RuleBasedStateMachine):
    """A writer and several following readers on one simulated disk, against a plain model."""

    def __init__(self) -> None:
        super().__init__()
        self.disk = SimStorage()
        self.mode = "process"
        self.writer: js.Store[Followed] = js.open(
            PATH,
            Followed,
            storage=self.disk,
            journal_size=JOURNAL_SIZE,
            durability=self.mode,
            flush_interval=3600,
            initial=sealed(Followed()),
        )
        self.committed: dict[int, Followed] = {self.writer.seq: self.writer.state}
        self.in_flight: tuple[int, Followed] | None = None
        self.readers: list[js.Store[Followed]] = [self._open_reader() for _ in range(READERS)]
        self.seen: list[int] = [r.seq for r in self.readers]
        self.data: st.DataObject | None = None
        self.budget = 0  # reader operations left for the write under way

    # --- helpers -------------------------------------------------------------------------------

    def _open_reader(self) -> js.Store[Followed]:
        return js.open(PATH, Followed, storage=self.disk, readonly=True)

    @property
    def newest(self) -> int:
        return max(self.committed)

    def _allowed(self) -> dict[int, Followed]:
        if self.in_flight is None:
            return self.committed
        return {**self.committed, self.in_flight[0]: self.in_flight[1]}

    def check_pair(self, seq: int, state: Followed, what: str) -> None:
        """``(seq, state)`` is exactly a pair the writer committed (or is committing)."""
        allowed = self._allowed()
        assert consistent(state), f"{what}: a mixed or torn state at seq {seq}: {state!r}"
        assert seq in allowed, f"{what}: seq {seq} was never committed (newest {self.newest})"
        assert state == allowed[seq], f"{what}: the state at seq {seq} is not the committed one"

    def check_reader(self, i: int, what: str) -> None:
        """Reader ``i`` shows a committed pair, and its seq did not go backwards."""
        r = self.readers[i]
        self.check_pair(r.seq, r.state, what)
        assert r.seq >= self.seen[i], f"{what}: reader {i} went back from {self.seen[i]} to {r.seq}"
        self.seen[i] = r.seq

    def check_feed(
        self, store: js.Store[Followed], since: int, what: str
    ) -> tuple[int, list[js.Commit]]:
        """The change feed after ``since``: consecutive committed pairs, or ChangesUnavailable
        where it reaches a gap, after what it delivered; from its ``oldest_seq`` it works.

        Returns the seq the feed was last asked to start after, and what it delivered.
        """
        for attempt in range(2):
            items: list[js.Commit] = []
            unavailable: js.ChangesUnavailable | None = None
            try:
                for item in store.changes(since):
                    items.append(item)
            except js.ChangesUnavailable as exc:
                unavailable = exc
            self._check_items(items, since, what)
            if unavailable is None:
                event(f"change feed: {min(len(items), 3)}{'+' if len(items) > 2 else ''} commits")
                return since, items
            reached = items[-1].seq if items else since
            oldest = unavailable.oldest_seq
            event("change feed: ChangesUnavailable" + (" after items" if items else ""))
            note(f"{what}: changes({since}) unavailable after {reached}, oldest {oldest}")
            assert attempt == 0, f"{what}: changes(oldest_seq) raised again"
            assert unavailable.since_seq == reached, (
                f"{what}: since_seq {unavailable.since_seq} after {[c.seq for c in items]}"
            )
            assert oldest > reached, f"{what}: oldest_seq {oldest} <= {reached}"
            assert oldest in self._allowed(), f"{what}: oldest_seq {oldest} never committed"
            since = oldest  # start again where the journal can
        raise AssertionError("unreachable")

    def _check_items(self, items: list[js.Commit], since: int, what: str) -> None:
        """Feed items after ``since``: consecutive seqs, committed pairs, the fields changed."""
        allowed = self._allowed()
        for n, item in enumerate(items, since + 1):
            assert item.seq == n, f"{what}: got seq {item.seq}, expected {n}"
            self.check_pair(item.seq, item.state, what)
            previous = allowed.get(item.seq - 1)
            if previous is not None:
                assert set(item.changed) == changed_paths(previous, item.state), (
                    f"{what}: seq {item.seq} names {item.changed}"
                )
            assert len(set(item.changed)) == len(item.changed), f"{what}: {item.changed}"

    def reader_op(self, data: st.DataObject, what: str) -> None:
        """One operation of a random reader (in the middle of a write: only committed pairs)."""
        i = data.draw(st.integers(0, READERS - 1), label="reader")
        ops = ["refresh", "wait", "open", "changes"]
        op = data.draw(st.sampled_from(ops if self.writer.closed else [*ops, "writer changes"]))
        note(f"{what}: reader {i} {op}")
        r = self.readers[i]
        if op == "refresh":
            before = r.seq
            moved = r.refresh()
            assert moved == (r.seq != before)
            if moved:
                event(f"{what}: refresh moved")
        elif op == "wait":
            before = r.seq
            moved = r.wait(timeout=0)
            assert moved == (r.seq != before)
        elif op == "open":
            r.close()
            self.readers[i] = self._open_reader()
        elif op == "changes":
            since = data.draw(st.integers(0, self.newest), label="since")
            self.check_feed(r, since, f"{what}: reader {i} changes")
        else:
            since = data.draw(st.integers(0, self.newest), label="since")
            self.check_feed(self.writer, since, f"{what}: writer changes")
        self.check_reader(i, f"{what}: reader {i} after {op}")

    def during_writes(self, data: st.DataObject, action: Callable[[], R]) -> R:
        """Run a writer call whose writes are cut in pieces, reader operations between them."""
        cuts = data.draw(
            st.none() | st.lists(st.integers(1, 1500), min_size=1, max_size=3), label="cuts"
        )
        self.disk.pieces = sector_pieces if cuts is None else byte_pieces(*cuts)
        self.budget = data.draw(st.integers(0, 6), label="reader operations inside")

        def hook(e: Event, done: int) -> None:
            if self.budget <= 0 or not data.draw(st.booleans(), label=f"read at {e.region}"):
                return
            self.budget -= 1
            event(f"reader inside a {e.region} write" + (" (cut)" if done < e.length else ""))
            self.reader_op(data, f"inside write #{e.index} ({e.region}, {done}/{e.length})")

        self.disk.during_write = hook
        try:
            return action()
        finally:
            self.disk.during_write = None

    # --- rules ---------------------------------------------------------------------------------

    @rule(data=st.data(), count=st.integers(1, 4))
    def commit(self, data: st.DataObject, count: int) -> None:
        """Commits of random successors, each with a random durability, readers inside."""
        for _ in range(count):
            new = data.draw(next_states(self.writer.state), label="new state")
            mode = data.draw(st.sampled_from([None, *MODES]), label="durability")
            changes = new != self.writer.state
            self.in_flight = (self.newest + 1, new) if changes else None
            note(f"commit seq {self.newest + (1 if changes else 0)} durability={mode}")
            seq = self.during_writes(data, partial(self.writer.commit, new, durability=mode))
            self.in_flight = None
            assert seq == self.newest + (1 if changes else 0)
            self.committed[self.writer.seq] = new

    @rule(data=st.data())
    def checkpoint(self, data: st.DataObject) -> None:
        """A checkpoint, with readers reading while its slot is being written."""
        note("checkpoint")
        self.during_writes(data, self.writer.checkpoint)

    @rule(data=st.data(), mode=st.sampled_from(MODES))
    def reopen_writer(self, data: st.DataObject, mode: str) -> None:
        """Close the writer and open it again: a new session with a new epoch."""
        note(f"writer closed and reopened ({mode})")
        self.during_writes(data, self.writer.close)
        self.mode = mode

        def reopen() -> js.Store[Followed]:
            return js.open(PATH, Followed, storage=self.disk, durability=mode, flush_interval=3600)

        self.writer = self.during_writes(data, reopen)
        assert self.writer.seq == self.newest
        assert self.writer.state == self.committed[self.newest]

    @rule(data=st.data())
    def reader_between_writes(self, data: st.DataObject) -> None:
        """A reader operation while the writer is idle."""
        self.reader_op(data, "idle")

    @precondition(lambda self: not self.writer.closed)
    @rule(data=st.data(), at=st.integers(0, 12))
    def commit_inside_a_read(self, data: st.DataObject, at: int) -> None:
        """A reader operation with a writer's commit landing between two of its reads."""
        new = data.draw(next_states(self.writer.state), label="state committed inside")
        reads = 0

        def hook(kind: str) -> None:
            nonlocal reads
            reads += 1
            if reads - 1 == at:
                event(f"commit inside a reader's read of the {kind}")
                if self.writer.commit(new) != self.newest:
                    self.committed[self.writer.seq] = new

        self.disk.during_read = hook
        try:
            self.reader_op(data, f"commit at read {at}")
        finally:
            self.disk.during_read = None

    @rule(i=st.integers(0, READERS - 1))
    def refresh_when_idle(self, i: int) -> None:
        """A reader that refreshes while the writer is idle shows the writer's newest state."""
        r = self.readers[i]
        before = r.seq
        note(f"reader {i} refresh at {before}, writer at {self.newest}")
        assert r.refresh() == (before != self.newest)
        assert r.seq == self.newest
        assert r.state == self.committed[self.newest]
        self.check_reader(i, f"reader {i} refresh when idle")

    @rule(i=st.integers(0, READERS - 1))
    def wait_when_idle(self, i: int) -> None:
        """wait(timeout=0) on an idle writer: True and at the newest state iff behind."""
        r = self.readers[i]
        before = r.seq
        note(f"reader {i} wait(0) at {before}, writer at {self.newest}")
        assert r.wait(timeout=0) == (before != self.newest)
        assert r.seq == self.newest
        self.check_reader(i, f"reader {i} wait when idle")

    @rule(data=st.data(), on_writer=st.booleans())
    def changes_when_idle(self, data: st.DataObject, on_writer: bool) -> None:
        """The feed after a seq ends at the newest commit; at the head it yields nothing."""
        i = data.draw(st.integers(0, READERS - 1), label="reader")
        store = self.writer if on_writer else self.readers[i]
        since = data.draw(
            st.sampled_from([0, self.readers[i].seq, self.newest]) | st.integers(0, self.newest),
            label="since",
        )
        before = (store.seq, store.state)
        note(f"changes({since}) on {'the writer' if on_writer else f'reader {i}'}")
        since, items = self.check_feed(store, since, "idle changes")
        if since == self.newest:
            assert items == []
        else:
            assert items, "no commits after a seq below the newest"
            assert items[-1].seq == self.newest
        assert (store.seq, store.state) == before, "changes() moved the store's own state"

    @invariant()
    def check_everyone(self) -> None:
        """Every reader shows a committed pair; the writer shows the newest one."""
        assert self.writer.closed or self.writer.state == self.committed[self.writer.seq]
        for i in range(READERS):
            self.check_reader(i, f"reader {i}")

    def teardown(self) -> None:
        for r in self.readers:
            r.close()
        if not self.writer.closed:
            self.writer.close()


FollowMachine.TestCase.settings = settings(
    max_examples=EXAMPLES,
    stateful_step_count=30,
    deadline=None,
    # The explain phase reruns a failure hundreds of times; the steps it prints are enough.
    phases=[Phase.explicit, Phase.reuse, Phase.generate, Phase.target, Phase.shrink],
)
TestFollow = FollowMachine.TestCase
