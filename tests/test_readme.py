"""What the README promises about transactions, read-only stores and store.stats."""

from __future__ import annotations

from pathlib import Path

import attrs
import pytest

import journalstate as js
from tests.conftest import Progress


def test_transaction_values_are_checked_when_the_block_ends(store_path: Path) -> None:
    """A bad assignment passes; the block's end raises InvalidValue and writes nothing."""
    with js.open(store_path, Progress) as store:
        store.commit(Progress(step=1))
        before = store_path.read_bytes()
        commits = store.stats.commits
        reached: list[str] = []

        def assign() -> None:
            with store.transaction() as draft:
                draft.step = -1  # accepted here
                draft.label = "fine"
                reached.append("end of the block")

        with pytest.raises(js.InvalidValue) as raised:
            assign()
        assert reached == ["end of the block"]
        assert raised.value.field == "step"
        assert store.state == Progress(step=1)
        assert store.seq == 1
        assert store.stats.commits == commits
        assert store_path.read_bytes() == before


def test_read_only_store_is_a_snapshot(store_path: Path) -> None:
    """A read-only store keeps the state it opened with while the writer commits on."""
    with js.open(store_path, Progress) as writer:
        writer.commit(Progress(step=1))
        with js.open(store_path, Progress, readonly=True) as reader:
            writer.commit(Progress(step=2))
            assert reader.state == Progress(step=1)
            assert reader.seq == 1
            with pytest.raises(js.ReadOnlyStore):
                reader.commit(Progress(step=3))
        with js.open(store_path, Progress, readonly=True) as again:
            assert again.state == Progress(step=2)


def test_stats_count_what_the_readme_says(store_path: Path) -> None:
    """commits, journal_syncs, slot_syncs, checkpoints and bytes_journaled, as documented."""
    with js.open(store_path, Progress, durability="commit") as store:
        assert store.stats == js.StoreStats(checkpoints=1, slot_syncs=1)  # the open checkpoint
        store.commit(Progress(step=1))
        store.commit(Progress(step=1))  # changes nothing: no record
        first = attrs.evolve(store.stats)
        assert (first.commits, first.journal_syncs) == (1, 1)
        assert first.bytes_journaled > 0
        assert first.bytes_journaled % 8 == 0
        store.checkpoint()
        assert (store.stats.checkpoints, store.stats.slot_syncs) == (2, 2)
        assert first.checkpoints == 1  # the copy kept its values
    with js.open(store_path, Progress, readonly=True) as reader:
        assert reader.stats == js.StoreStats()
