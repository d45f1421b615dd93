"""Restore from a replica: exact states at every seq, and every damage refused with its error."""

from __future__ import annotations

import os
import tempfile
import uuid
from pathlib import Path
from typing import Any

import attrs
import pytest
from hypothesis import given, note
from hypothesis import strategies as st

import journalstate as js
from journalstate.replicate._listing import generations
from journalstate.replicate._objects import open_url
from journalstate.replicate._restore import _choose, _rebuild
from tests.conftest import Progress
from tests.replicas import History, record_history, ship

pytest.importorskip("obstore")

GEN_A = "1700000000000-aaaaaaaaaaaaaaaa"
GEN_B = "1700000001000-bbbbbbbbbbbbbbbb"
GEN_C = "1700000002000-cccccccccccccccc"


def states(n: int, start: int = 1) -> list[Progress]:
    """``n`` distinct states."""
    return [
        Progress(step=i, label=f"s{i}", blob=bytes([i % 256]) * (i % 7))
        for i in range(start, start + n)
    ]


@pytest.fixture(scope="module")
def history(tmp_path_factory: pytest.TempPathFactory) -> History:
    """Twelve commits (seq 1..12) with a reopen (a new epoch) before the eighth."""
    path = tmp_path_factory.mktemp("history") / "h.jst"
    return record_history(path, Progress, states(12), reopen_at=[7])


def restored(path: Path) -> tuple[Any, int, bytes]:
    """The state, seq and file id of a restored file, opened read-only."""
    store: js.Store[Any]
    with js.open(path, None, readonly=True) as store:
        assert not store.recovery.corruption
        return store.state, store.seq, store.header.file_id


def check_restore(
    url: str, h: History, dest: Path, seq: int | None = None, **kw: Any
) -> js.RestoreReport:
    """Restore into ``dest`` and check the file holds exactly the state at the seq reported."""
    report = js.restore(url, dest, seq=seq, **kw)
    _state, got_seq, file_id = restored(dest)
    assert got_seq == report.seq
    assert seq is None or report.seq == seq
    store: js.Store[Any]
    with js.open(dest, None, readonly=True) as store:
        assert bytes(store.state_image()) == h.images[report.seq]
    assert file_id == h.file_id
    assert report.file_id == h.file_id.hex()
    assert os.path.getsize(dest) == report.file_size
    return report


def test_history_has_two_epochs(history: History) -> None:
    """The module's history holds records of two epochs (a reopen in the middle)."""
    assert history.first_seq == 0
    assert history.last_seq == 12
    assert len({r.epoch for r in history.records.values()}) == 2


def test_restore_newest_and_every_seq(memory_url: str, history: History, tmp_path: Path) -> None:
    """Restore gives the newest state, and with seq= exactly the state at every seq."""
    store = open_url(memory_url)
    ship(store, history, GEN_A, cuts=[3, 4, 9], snapshots=[4, 9])
    report = check_restore(memory_url, history, tmp_path / "new.jst")
    assert attrs.asdict(report) | {"url": "", "path": "", "file_size": 0} == {
        "url": "",
        "path": "",
        "generation": GEN_A,
        "file_id": history.file_id.hex(),
        "seq": 12,
        "snapshot_seq": 9,
        "segments": 1,
        "records": 3,
        "file_size": 0,
        "generations": (GEN_A,),
    }
    for seq in range(13):
        check_restore(memory_url, history, tmp_path / f"at-{seq}.jst", seq=seq)


def test_the_restored_store_continues(memory_url: str, history: History, tmp_path: Path) -> None:
    """A writer opens the restored file with the replica's file id and commits after its seq."""
    ship(open_url(memory_url), history, GEN_A, cuts=[5])
    dest = tmp_path / "new.jst"
    js.restore(memory_url, dest)
    with js.open(dest, Progress) as store:
        assert store.seq == 12
        assert store.epoch > history.epochs[12]
        assert store.commit(Progress(step=99)) == 13
        assert store.header.file_id == history.file_id
    assert restored(dest)[1] == 13


@attrs.frozen
class Plan:
    """A random history and how it is shipped."""

    values: list[tuple[int, str]]
    reopen_at: list[int]
    cuts: list[int]
    snapshots: list[int]
    base: int


@st.composite
def plans(draw: st.DrawFn) -> Plan:
    """Commit histories (repeats commit nothing), cut into segments and snapshots at random."""
    values = draw(
        st.lists(
            st.tuples(st.integers(0, 5), st.sampled_from(["", "a", "bb" * 8])),
            min_size=1,
            max_size=14,
        )
    )
    n = len(values)
    return Plan(
        values=values,
        reopen_at=draw(st.lists(st.integers(0, n - 1), max_size=2)),
        cuts=draw(st.lists(st.integers(1, n), max_size=6)),
        snapshots=draw(st.lists(st.integers(1, n), max_size=3)),
        base=draw(st.integers(0, 2)),
    )


@given(plan=plans())
def test_restore_at_every_seq_equals_the_committed_state(plan: Plan) -> None:
    """For random histories, cuts and snapshots, restore at every seq gives that seq's state."""
    with tempfile.TemporaryDirectory() as tmp:
        h = record_history(
            Path(tmp) / "h.jst",
            Progress,
            [Progress(step=s, label=label) for s, label in plan.values],
            reopen_at=plan.reopen_at,
            journal_size=4096,
        )
        base = min(plan.base, h.last_seq)
        note(f"seqs {h.first_seq}..{h.last_seq}, base {base}")
        url = f"memory://{uuid.uuid4().hex}/r"
        store = open_url(url)
        ship(store, h, GEN_A, base=base, cuts=plan.cuts, snapshots=plan.snapshots)
        info = _choose(store, generations(store), None, None)
        assert info.first_seq == base
        assert info.last_seq == h.last_seq
        for seq in range(base, h.last_seq + 1):
            assert _rebuild(store, info, seq).image == h.images[seq]
        assert _rebuild(store, info, None).image == h.images[h.last_seq]
        report = check_restore(url, h, Path(tmp) / "new.jst")
        assert report.seq == h.last_seq
        if base > 0:
            with pytest.raises(js.ReplicaNotFound, match=f"no generation holds seq {base - 1}"):
                js.restore(url, Path(tmp) / "old.jst", seq=base - 1)
            assert not os.path.lexists(Path(tmp) / "old.jst")
