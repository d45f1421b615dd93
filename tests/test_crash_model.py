"""The stateful crash model: commits, checkpoints and every kind of crash, over several layouts."""

from __future__ import annotations

import random
from typing import Annotated, Any

import attrs
import pytest
from hypothesis import settings
from hypothesis import strategies as st

import journalstate as js
from journalstate.testing import SimStorage
from journalstate.testing.stateful import CrashMachine


@attrs.frozen
class Small:
    """A small state whose blob can outgrow a one-page journal."""

    step: js.U64 = 0
    loss: js.F64 = 0.0
    label: Annotated[str, js.Str(32)] = ""
    blob: Annotated[bytes, js.Bytes(6000)] = b""


def small_states(max_blob: int) -> st.SearchStrategy[Small]:
    """Small states, mostly cheap, sometimes with a large blob."""
    return st.builds(
        Small,
        step=st.integers(0, 2**64 - 1),
        loss=st.floats(allow_nan=False),
        label=st.text(max_size=8),
        blob=st.one_of(st.binary(max_size=64), st.binary(min_size=0, max_size=max_blob)),
    )


@attrs.frozen
class Wide:
    """A state spanning several pages, changed a few fields at a time."""

    counters: Annotated[tuple[int, ...], js.Array(js.U32, 2048)] = (0,) * 2048
    name: Annotated[str, js.Str(16)] = ""


def wide_states() -> st.SearchStrategy[Any]:
    """Wide states with a few counters set."""
    return st.builds(
        lambda changes, name: Wide(
            counters=tuple(changes.get(i, 0) for i in range(2048)), name=name
        ),
        st.dictionaries(st.integers(0, 2047), st.integers(0, 2**32 - 1), max_size=4),
        st.text(max_size=4),
    )


@attrs.frozen
class Fixed:
    """A state whose every commit writes a record of the same size (positions repeat)."""

    step: js.U64 = 0
    payload: Annotated[bytes, js.Bytes(700)] = bytes(700)


def fixed_states() -> st.SearchStrategy[Fixed]:
    """Fixed states: a new step and a full-length payload each time."""
    return st.builds(
        Fixed,
        step=st.integers(1, 2**64 - 1),
        payload=st.binary(min_size=700, max_size=700),
    )


class SameSizeRecords(CrashMachine):
    """Every record has the same size, so a new session's records land exactly where an older
    session's records are: only the epoch tells them apart; slots span two pages and tear."""

    schema = Fixed
    states = fixed_states()
    journal_size = 8192


def patterned(size: st.SearchStrategy[int]) -> st.SearchStrategy[bytes]:
    """Bytes of a drawn length, cheap to draw however long: a drawn 8-byte pattern repeated."""
    return st.builds(
        lambda n, seed: (seed.to_bytes(8, "little") * (n // 8 + 1))[:n],
        size,
        st.integers(0, 2**64 - 1),
    )


def tiny_states() -> st.SearchStrategy[Small]:
    """Small states whose records take a large, uneven share of a one-page ring.

    Most blobs are 200 to 1500 bytes, so records of sizes that do not divide the ring cross
    its end every few commits; some are small, and some too large for the ring.
    """
    return st.builds(
        Small,
        step=st.integers(0, 2**64 - 1),
        loss=st.floats(allow_nan=False),
        label=st.text(max_size=8),
        blob=st.one_of(
            patterned(st.integers(200, 1500)),
            st.binary(max_size=64),
            patterned(st.integers(3000, 6000)),
        ),
    )


class TinyJournal(CrashMachine):
    """A one-page journal: records straddle the ring's end and wrap every few commits."""

    schema = Small
    states = tiny_states()
    journal_size = 4096


class DefaultJournal(CrashMachine):
    """The default-sized journal with small states."""

    schema = Small
    states = small_states(200)
    journal_size = 64 * 1024


class ManyPages(CrashMachine):
    """A state of several pages over a two-page journal."""

    schema = Wide
    states = wide_states()
    journal_size = 8192


TestTinyJournal = TinyJournal.TestCase
TestDefaultJournal = pytest.mark.slow(DefaultJournal.TestCase)
TestManyPages = pytest.mark.slow(ManyPages.TestCase)
TestSameSizeRecords = SameSizeRecords.TestCase
for _case in (TestTinyJournal, TestDefaultJournal, TestManyPages, TestSameSizeRecords):
    _case.settings = settings(stateful_step_count=25)
del _case  # a module-level TestCase name would be collected a second time


def test_tiny_journal_sizes_make_records_cross_the_ring_end() -> None:
    """Commits of the one-page layout's usual blob sizes cross the ring's end every few commits.

    Deterministic (a seeded sequence of the sizes ``tiny_states`` draws most), so it checks the
    layout and the store's placement, not what the random generator happens to draw.
    """
    rng = random.Random(4096)
    crossed = 0
    with js.open(
        "/tiny.jst", Small, storage=SimStorage(), journal_size=TinyJournal.journal_size
    ) as store:
        for step in range(1, 101):
            before = store.position
            blob = bytes([step % 251]) * rng.randint(200, 1500)
            store.commit(Small(step=step, blob=blob))
            end = before % TinyJournal.journal_size + store.position - before
            crossed += end > TinyJournal.journal_size
    assert crossed >= 20, crossed


@pytest.fixture(scope="module", autouse=True)
def report_counts() -> Any:
    """Print how many crash images and deaths the model tried."""
    yield
    print(f"\ncrash model counts: {CrashMachine.counts}")
