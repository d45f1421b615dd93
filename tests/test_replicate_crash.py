"""The shipper's crash model: a replicating writer dies, its machine crashes, its disk is lost.

A stateful model on the simulated disk. The writer commits; its shipper runs passes (one at a
time, no thread, so the model decides when); uploads fail before their write or time out after
it landed; the writer's process dies, its machine crashes (any subset of unsynced sectors
survives) or its disk is lost (the store comes back from the replica alone). After every crash,
and whenever the model asks, a restore from the object store alone must give:

* exactly a state the writer committed at that seq, in the history the restored generation
  shipped (never torn, never mixed);
* from the newest generation holding a snapshot, at a seq at least the last one the shipper
  reported shipped in that generation;
* at a chosen seq (point-in-time), exactly the state of that seq.

``JOURNALSTATE_REPLICA_EXAMPLES`` sets the number of examples (default 60).
"""

from __future__ import annotations

import collections
import itertools
import logging
import os
import shutil
import tempfile
from typing import Annotated, Any

import attrs
import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    invariant,
    precondition,
    rule,
)

import journalstate as js
from journalstate.replicate._objects import ObjectStore, open_url
from journalstate.replicate._objformat import parse_key
from journalstate.replicate._restore import list_replicas, restore
from journalstate.replicate._shipper import Shipper
from journalstate.replicate._sources import WriterSource
from journalstate.testing import Fault, FaultyObjectStore, SimStorage

pytest.importorskip("obstore")

PATH = "/store.jst"
EXAMPLES = int(os.environ.get("JOURNALSTATE_REPLICA_EXAMPLES", "60"))
COUNTS: collections.Counter[str] = collections.Counter()


def event(what: str) -> None:
    """Count what a run went through (printed by the test with -s)."""
    COUNTS[what] += 1


@attrs.frozen
class Model:
    """A small state whose blob makes records of many sizes."""

    step: js.U64 = 0
    label: Annotated[str, js.Str(16)] = ""
    blob: Annotated[bytes, js.Bytes(900)] = b""


states = st.builds(
    Model,
    step=st.integers(0, 2**64 - 1),
    label=st.text(alphabet="abcxyz", max_size=6),
    blob=st.one_of(st.binary(max_size=24), st.binary(min_size=300, max_size=900)),
)


class ShipperCrashes(RuleBasedStateMachine):
    """One writer, its shipper and the replica, through crashes of every kind."""

    def __init__(self) -> None:
        super().__init__()
        self.tmp = tempfile.mkdtemp(prefix="jst-replica-model-")
        self.url = "file://" + os.path.join(self.tmp, "replica")
        os.makedirs(os.path.join(self.tmp, "replica"))
        self.disk = SimStorage()
        self.faults: list[Fault | None] = []
        self.runs = itertools.count()
        # Every history a shipper ran on: run -> {seq: state}; and which run wrote each
        # generation (learnt from the keys it uploads).
        self.history: dict[int, dict[int, Any]] = {}
        self.run_of: dict[str, int] = {}
        self.shipped: dict[str, int] = {}  # generation -> newest shipped_seq reported in it
        self.restores = itertools.count()
        self.store: js.Store[Any] | None = None
        self.shipper: Shipper | None = None
        self.durability = "process"
        self.journal_size = 4096
        self._open(history={})

    def teardown(self) -> None:
        """Remove the replica and the restored files."""
        shutil.rmtree(self.tmp, ignore_errors=True)

    # --- the writer and its shipper --------------------------------------------------------

    def _plan(self, operation: str, n: int, key: str) -> Fault | None:
        run = self.run
        if operation == "put":
            gen = parse_key(key).generation
            assert self.run_of.setdefault(gen, run) == run, "two shippers wrote one generation"
        fault = self.faults.pop(0) if self.faults else None
        if fault in (Fault.FAIL_GET, Fault.FAIL_LIST) and operation == "put":
            return None
        return fault

    def _objects(self) -> ObjectStore:
        return FaultyObjectStore(open_url(self.url), self._plan)

    def _open(self, history: dict[int, Any]) -> None:
        store: js.Store[Any] = js.open(
            PATH,
            Model,
            storage=self.disk,
            durability=self.durability,
            journal_size=self.journal_size,
        )
        self.store = store
        self.run = next(self.runs)
        self.history[self.run] = {s: v for s, v in history.items() if s <= store.seq}
        if store.seq in history:
            assert store.state == history[store.seq], (
                "the store reopened at a state never committed"
            )
        self.history[self.run][store.seq] = store.state
        self.shipper = Shipper(
            WriterSource(store), self._objects(), interval=3600, snapshot_bytes=20000
        )
        store.attach_shipper(self.shipper)  # as start_writer_shipper does, without its thread
        self.durable = store.seq

    def _note_status(self) -> None:
        assert self.shipper is not None
        status = self.shipper.status()
        if status.generation is not None and status.shipped_seq is not None:
            gen = status.generation
            self.shipped[gen] = max(self.shipped.get(gen, -1), status.shipped_seq)

    @rule(state=states)
    def commit(self, state: Any) -> None:
        """The writer commits a state."""
        assert self.store is not None
        seq = self.store.commit(state)
        self.history[self.run][seq] = self.store.state
        if self.durability == "commit":
            self.durable = seq

    @rule(batch=st.lists(states, min_size=2, max_size=8))
    def commits(self, batch: list[Any]) -> None:
        """The writer commits several states before the shipper runs again."""
        for state in batch:
            self.commit(state)

    @rule(step=st.integers(0, 2**64 - 1))
    def shipper_stalls(self, step: int) -> None:
        """The writer commits more than its journal holds while the shipper is stalled."""
        assert self.store is not None
        for i in range(2 * self.journal_size // 800 + 1):
            self.commit(Model(step=step, label="lap", blob=bytes([i % 256]) * 800))

    @rule()
    def checkpoint(self) -> None:
        """The writer checkpoints."""
        assert self.store is not None
        self.store.checkpoint()

    @rule()
    def ship(self) -> None:
        """The shipper runs one pass (it may fail on an injected fault, and retries later)."""
        assert self.shipper is not None
        self.shipper.try_pass()
        self._note_status()
        status = self.shipper.status()
        if status.last_generation_reason not in (None, "start"):
            event(f"a generation started: {status.last_generation_reason}")

    @rule(
        faults=st.lists(
            st.sampled_from([None, *list(Fault)]),
            min_size=1,
            max_size=4,
        )
    )
    def network_fails(self, faults: list[Fault | None]) -> None:
        """The next calls to the object store fail, before or after their write landed."""
        self.faults.extend(faults)

    # --- crashes ---------------------------------------------------------------------------

    def _lost(self) -> None:
        self.store = None
        self.shipper = None
        self.faults.clear()

    @rule(data=st.data(), kind=st.sampled_from(["process", "machine", "disk"]))
    def crash(self, data: st.DataObject, kind: str) -> None:
        """The writer's process dies, its machine crashes, or its disk is lost."""
        if kind == "process":
            self.process_dies()
        elif kind == "machine":
            self.machine_crashes(data)
        else:
            self.disk_lost(data)

    def process_dies(self) -> None:
        """The writer's process dies: every commit that returned is kept."""
        event("process deaths")
        history = self.history[self.run]
        self._lost()
        self.disk.restart(PATH)
        self._check_replica()
        self._open(history)
        assert self.store is not None
        assert self.store.seq == max(history), "a process death lost a commit"

    def machine_crashes(self, data: st.DataObject) -> None:
        """The writer's machine crashes: any subset of the unsynced sectors survives."""
        event("machine crashes")
        history = self.history[self.run]
        durable = self.durable
        self._lost()
        image = self.disk.crash_image(
            PATH,
            lambda n: data.draw(st.integers(0, n - 1)) if n > 1 else 0,
            torn_sectors=data.draw(st.booleans()),
        )
        self.disk.restart(PATH, image)
        self._check_replica()
        self._open(history)
        assert self.store is not None
        assert self.store.seq >= durable, "an OS crash lost a durable commit"

    def disk_lost(self, data: st.DataObject) -> None:
        """The machine and its disk are lost: the store comes back from the replica alone."""
        self._lost()
        restored = self._check_replica()
        if restored is None:
            # Nothing restorable was shipped yet: the store is gone with its disk. The model
            # keeps the old disk instead (a new store would be another store's history).
            self.disk.restart(PATH)
            self._open(self.history[self.run])
            return
        gen, seq, path = restored
        event("disks lost, the store restored from the replica")
        with open(path, "rb") as f:
            self.disk.set_image(PATH, f.read())
        self.disk.restart(PATH)
        history = self.history[self.run_of[gen]]
        self._open({s: v for s, v in history.items() if s <= seq})
        assert self.store is not None
        assert self.store.seq == seq

    # --- what a restore gives --------------------------------------------------------------

    @precondition(lambda self: self.store is not None)
    @rule()
    def restore_now(self) -> None:
        """A restore while the writer runs (from another machine)."""
        self._check_replica()

    def _check_replica(self) -> tuple[str, int, str] | None:
        """Restore the newest state and a point in time; check both. (generation, seq, path)."""
        infos = list_replicas(self.url)
        with_snapshot = [i for i in infos if i.snapshots]
        path = os.path.join(self.tmp, f"restored-{next(self.restores)}.jst")
        if not with_snapshot:
            with pytest.raises(js.ReplicaNotFound):
                restore(self.url, path)
            assert not os.path.exists(path)
            return None
        report = restore(self.url, path)
        event("restored")
        if report.seq > report.snapshot_seq:
            event("restored through segments")
        gen = report.generation
        assert gen == with_snapshot[-1].generation, "restore skipped the newest generation"
        history = self.history[self.run_of[gen]]
        restored: js.Store[Any]
        with js.open(path, None, readonly=True) as restored:
            assert restored.seq == report.seq
            assert attrs.asdict(restored.state) == attrs.asdict(history[report.seq]), (
                f"restored state at seq {report.seq} is not the committed one"
            )
        assert report.seq >= self.shipped.get(gen, -1), (
            f"restore gave seq {report.seq}, the shipper reported {self.shipped[gen]} shipped"
        )
        # Point in time: a seq the generation holds.
        low = report.snapshot_seq
        for target in sorted({low, (low + report.seq) // 2, report.seq}):
            pit = os.path.join(self.tmp, f"restored-{next(self.restores)}.jst")
            try:
                pit_report = restore(self.url, pit, seq=target, generation=gen)
            except js.ReplicaNotFound:
                # Only below the generation's first snapshot at or before target.
                first = min(s for s in with_snapshot[-1].snapshots)
                assert target < first, f"no point-in-time restore at seq {target}"
                continue
            with js.open(pit, None, readonly=True) as restored:
                assert restored.seq == target == pit_report.seq
                assert attrs.asdict(restored.state) == attrs.asdict(history[target])
            event("restored at a point in time")
            os.unlink(pit)
        return gen, report.seq, path

    @invariant()
    def generations_are_one_shipper_each(self) -> None:
        """Every generation's objects were written by one shipper run (checked in _plan)."""
        assert len(set(self.run_of.values())) <= len(self.history)


@pytest.mark.slow
@pytest.mark.parametrize(("durability", "journal_size"), [("process", 4096), ("commit", 8192)])
def test_shipper_crash_model(durability: str, journal_size: int) -> None:
    """Every restore after every crash gives a committed state, at or after what was shipped."""

    class Machine(ShipperCrashes):
        def __init__(self) -> None:
            self.durability_choice = durability
            super().__init__()

        def _open(self, history: dict[int, Any]) -> None:
            self.durability = durability
            self.journal_size = journal_size
            super()._open(history)

    Machine.TestCase.settings = settings(
        max_examples=EXAMPLES,
        stateful_step_count=50,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
    )
    COUNTS.clear()
    logging.getLogger("journalstate.replicate").setLevel(logging.CRITICAL)
    try:
        Machine.TestCase().runTest()
    finally:
        logging.getLogger("journalstate.replicate").setLevel(logging.NOTSET)
    print(f"\n{durability}: {dict(sorted(COUNTS.items()))}")
