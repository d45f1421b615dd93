"""A Hypothesis state machine that crash-tests the store with any schema.

Subclass :class:`CrashMachine`, set ``schema`` (an attrs class) and ``states`` (a Hypothesis
strategy of its instances), and expose ``MyMachine.TestCase`` to pytest. The machine runs the
real store over :class:`SimStorage` and checks, after every kind of crash, that the recovered
state is exactly one the model says is acceptable.

The model is plain: ``history[seq]`` is the state after commit ``seq``; ``durable`` is the
lowest sequence number an OS crash may fall back to. Requires ``hypothesis``.
"""

from __future__ import annotations

from typing import Any, ClassVar

from hypothesis import event, note
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

import journalstate as js
from journalstate._format import END_MARKER_SIZE
from journalstate._journal import max_payload
from journalstate._schema import compile_schema
from journalstate.testing._disk import SimStorage
from journalstate.testing._events import Event, Op, SimulatedCrash

PATH = "crash-test.jst"
_MODES = ("commit", "interval", "process")


def _leaf_values(state: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for f in compile_schema(type(state)).fields():
        value: Any = state
        for part in f.path.split("."):
            value = getattr(value, part)
        out[f.path] = value
    return out


class CrashMachine(RuleBasedStateMachine):
    """Commits, checkpoints, flushes and crashes of every kind, against a plain model."""

    schema: ClassVar[type]
    states: ClassVar[st.SearchStrategy[Any]]
    journal_size: ClassVar[int] = 64 * 1024
    counts: ClassVar[dict[str, int]] = {}

    def __init__(self) -> None:
        super().__init__()
        self.disk = SimStorage()
        self.mode = "commit"
        self.store: js.Store[Any] | None = js.open(
            PATH, self.schema, storage=self.disk, journal_size=self.journal_size
        )
        self.history: list[Any] = [self.store.state]
        self.durable = 0
        self.poisoned = False
        self._after_crash_low = 0

    # --- helpers -------------------------------------------------------------------------------

    def _count(self, what: str, n: int = 1) -> None:
        type(self).counts[what] = type(self).counts.get(what, 0) + n

    @property
    def last(self) -> int:
        return len(self.history) - 1

    def _size_bounds(self, old: Any, new: Any) -> tuple[int, int]:
        """Lower and upper bounds of the record payload a commit from old to new needs."""
        fields = {f.path: f for f in compile_schema(self.schema).fields()}
        a, b = _leaf_values(old), _leaf_values(new)
        low = high = 0
        for path, info in fields.items():
            x, y = a[path], b[path]
            if type(x) is type(y) and x == y and not (isinstance(x, float) and x != x):
                continue
            if isinstance(y, str | bytes):
                raw = y.encode() if isinstance(y, str) else y
                low += 4 + len(raw)
            else:
                low += 1
            high += 8 + info.size
        return low, high

    def _reopen(self, *, mode: str | None = None, previous: bool = False) -> None:
        self.mode = mode or self.mode
        self.store = js.open(
            PATH,
            self.schema,
            storage=self.disk,
            durability=self.mode,
            previous_generation=previous,
            flush_interval=3600,
        )
        report = self.store.recovery
        note(f"reopened: seq {report.seq}, replayed {report.records_replayed}, {report}")
        self._check_recovered(report.seq, self.store.state)
        # Recovery is durable once open returns, and everything after it is gone.
        self.history = self.history[: report.seq + 1]
        self.durable = report.seq
        self.poisoned = False

    def _check_recovered(self, seq: int, state: Any) -> None:
        assert seq < len(self.history), f"recovered seq {seq} was never committed"
        assert state == self.history[seq], f"state at seq {seq} is not what was committed"

    def _crash(self, data: st.DataObject, *, os_crash: bool, in_flight: Any | None) -> None:
        """The machine goes down; on reboot the model widens to what may have survived."""
        if self.store is not None:
            self.store.stop_flusher()  # the process's threads die with it
        self.store = None
        if in_flight is not None:
            self.history.append(in_flight)  # may or may not have made it
        if os_crash:
            torn = data.draw(st.booleans(), label="torn sectors")
            ordered = data.draw(st.booleans(), label="keep order")
            image = self.disk.crash_image(
                PATH,
                lambda n: data.draw(st.integers(0, n - 1)) if n > 1 else 0,
                torn_sectors=torn,
                keep_order=ordered,
            )
            self.disk.restart(PATH, image)
            self._count("os crash images")
        else:
            self.disk.restart(PATH)
            self._count("process deaths")
        # What the model accepts on reopen: seq in [low, last]. Only an OS crash can fall back
        # to the durable point; a process death keeps every commit that returned.
        low = self.durable if os_crash else self.last - (1 if in_flight is not None else 0)
        self._after_crash_low = low

    def _reopen_after_crash(self, data: st.DataObject) -> None:
        mode = data.draw(st.sampled_from(_MODES), label="mode after crash")
        low = self._after_crash_low
        self._reopen(mode=mode)
        assert self.durable >= low, f"recovered seq {self.durable} < lowest acceptable {low}"

    # --- rules ---------------------------------------------------------------------------------

    @precondition(lambda self: self.store is not None and not self.poisoned)
    @rule(data=st.data())
    def commit(self, data: st.DataObject) -> None:
        new = data.draw(self.states, label="new state")
        override = data.draw(st.sampled_from([None, *_MODES]), label="override")
        self._commit(new, override)

    @precondition(lambda self: self.store is not None and not self.poisoned)
    @rule(data=st.data(), n=st.integers(2, 8))
    def commits(self, data: st.DataObject, n: int) -> None:
        """Several commits in a row: the journal fills, wraps and checkpoints within one step."""
        override = data.draw(st.sampled_from([None, *_MODES]), label="override")
        for _ in range(n):
            self._commit(data.draw(self.states, label="new state"), override)

    def _commit(self, new: Any, override: str | None) -> None:
        assert self.store is not None
        low, high = self._size_bounds(self.store.state, new)
        capacity = max_payload(self.schema_journal_size())
        note(f"commit {new!r} override={override} payload bounds {low}..{high}")
        tail = self.store.position
        try:
            seq = self.store.commit(new, durability=override)
        except js.TransactionTooLarge:
            assert high > capacity, "refused a transaction that fits"
            event("transaction too large")
            assert self.store.state == self.history[-1]
            assert self.store.seq == self.last
            return
        assert low <= capacity, "accepted a transaction that cannot fit"
        self._note_straddle(tail, self.store.position)
        if seq != self.last:
            self.history.append(new)
        assert seq == self.last
        if (override or self.mode) == "commit":
            self.durable = self.last

    def _note_straddle(self, before: int, after: int) -> None:
        """Count a commit whose record (from ``before`` to ``after``) crossed the ring's end."""
        journal = self.schema_journal_size()
        end = before % journal + after - before  # where the record ends, in ring offsets
        if after == before or end + END_MARKER_SIZE <= journal:
            return
        event("record across the ring's end" if end > journal else "end marker across the end")
        self._count("records across the ring's end")

    def schema_journal_size(self) -> int:
        assert self.store is not None
        return self.store.header.journal_size

    @precondition(lambda self: self.store is not None and not self.poisoned)
    @rule(data=st.data())
    def failed_transaction(self, data: st.DataObject) -> None:
        assert self.store is not None
        new = data.draw(self.states, label="draft")

        class Abort(Exception):
            pass

        try:
            with self.store.transaction() as draft:
                for f in compile_schema(self.schema).fields():
                    if "." not in f.path:
                        setattr(draft, f.path, getattr(new, f.path))
                raise Abort
        except Abort:
            pass
        assert self.store.state == self.history[-1]
        assert self.store.seq == self.last

    @precondition(lambda self: self.store is not None and not self.poisoned)
    @rule()
    def checkpoint(self) -> None:
        assert self.store is not None
        self.store.checkpoint()
        self.durable = self.last

    @precondition(lambda self: self.store is not None and not self.poisoned)
    @rule()
    def flush(self) -> None:
        assert self.store is not None
        self.store.flush()
        self.durable = self.last

    @precondition(lambda self: self.store is not None)
    @rule(data=st.data(), os_crash=st.booleans())
    def crash(self, data: st.DataObject, os_crash: bool) -> None:
        note(f"crash: {'OS' if os_crash else 'process death'}")
        self._crash(data, os_crash=os_crash, in_flight=None)
        self._reopen_after_crash(data)

    @precondition(lambda self: self.store is not None and not self.poisoned)
    @rule(data=st.data(), os_crash=st.booleans(), checkpoint=st.booleans())
    def crash_inside(self, data: st.DataObject, os_crash: bool, checkpoint: bool) -> None:
        """Crash at a chosen write or sync inside a commit or a checkpoint."""
        assert self.store is not None
        new = data.draw(self.states, label="in-flight state")
        at = data.draw(st.integers(0, 6), label="event")
        cut = data.draw(st.integers(0, 1 << 16), label="bytes of the write kept")
        start = len(self.disk.events)

        def hook(e: Event) -> int | None:
            if e.index < start + at:
                return None
            return cut if e.op is Op.WRITE else 0

        self.disk.crash_at = hook
        in_flight = None
        try:
            if checkpoint:
                self.store.checkpoint()
                self.durable = self.last
            else:
                in_flight = new
                seq = self.store.commit(new)
                in_flight = None  # returned: committed
                if seq != self.last:
                    self.history.append(new)
                if self.mode == "commit":
                    self.durable = self.last
        except SimulatedCrash:
            event("crashed inside " + ("checkpoint" if checkpoint else "commit"))
        except js.TransactionTooLarge:
            in_flight = None
        finally:
            self.disk.crash_at = None
        if in_flight is not None and in_flight == self.history[-1]:
            in_flight = None  # an unchanged state writes nothing
        self._crash(data, os_crash=os_crash, in_flight=in_flight)
        self._reopen_after_crash(data)

    @precondition(lambda self: self.store is not None)
    @rule(data=st.data())
    def crash_during_recovery(self, data: st.DataObject) -> None:
        """Crash, crash again while the reopen is recovering, then recover for real."""
        self._crash(data, os_crash=data.draw(st.booleans()), in_flight=None)
        low = self._after_crash_low
        at = data.draw(st.integers(0, 3), label="recovery event")
        start = len(self.disk.events)
        self.disk.crash_at = lambda e: 0 if e.index >= start + at else None
        try:
            store: js.Store[Any] = js.open(
                PATH, self.schema, storage=self.disk, flush_interval=3600
            )
            store.close()
            event("recovery finished before the crash point")
        except SimulatedCrash:
            event("crashed during recovery")
        finally:
            self.disk.crash_at = None
        self._crash(data, os_crash=data.draw(st.booleans()), in_flight=None)
        self._after_crash_low = min(low, self._after_crash_low)
        self._reopen_after_crash(data)

    @precondition(lambda self: self.store is not None and not self.poisoned)
    @rule(mode=st.sampled_from(_MODES))
    def reopen(self, mode: str) -> None:
        assert self.store is not None
        self.store.close()
        self.durable = self.last
        self._reopen(mode=mode)
        assert self.store.seq == self.last

    @precondition(lambda self: self.store is not None and not self.poisoned)
    @rule()
    def reopen_previous_generation(self) -> None:
        assert self.store is not None
        self.store.close()
        try:
            self._reopen(previous=True)
        except js.NoPreviousGeneration:
            self._reopen()
        event("opened at the previous generation")

    @precondition(lambda self: self.store is not None and self.mode == "commit")
    @rule(data=st.data())
    def sync_fails(self, data: st.DataObject) -> None:
        """EIO from msync: poisoned, every later call raises, reopen recovers."""
        assert self.store is not None
        new = data.draw(self.states, label="state whose sync fails")
        self.disk.fail_syncs = True
        try:
            self.store.commit(new)
            in_flight = None  # nothing changed: no sync was needed
        except js.StorePoisoned:
            in_flight = new
            event("store poisoned")
            for call in (lambda: self.store.commit(new), self.store.flush, self.store.checkpoint):
                try:
                    call()
                    raise AssertionError("a poisoned store accepted a call")
                except js.StorePoisoned:
                    pass
        except js.TransactionTooLarge:
            in_flight = None
        finally:
            self.disk.fail_syncs = False
        self.store.close()
        self._crash(data, os_crash=True, in_flight=in_flight)
        self._reopen_after_crash(data)

    @invariant()
    def check_state_matches_model(self) -> None:
        if self.store is not None:
            assert self.store.seq == self.last
            assert self.store.state == self.history[-1]

    def teardown(self) -> None:
        if self.store is not None:
            self.store.close()
        self._count("runs")
