"""Each crash window of docs/design.md, hit exactly with a named crash point, under each crash."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated

import attrs
import pytest

import journalstate as js
from journalstate.testing import SimStorage, SimulatedCrash, crash_point

PATH = "points.jst"


@attrs.frozen
class S:
    """A small state."""

    step: js.U64 = 0
    label: Annotated[str, js.Str(16)] = ""
    blob: Annotated[bytes, js.Bytes(600)] = b""


A = S(step=1, label="a", blob=b"A" * 500)
B = S(step=2, label="b", blob=b"B" * 500)


def crash_during(disk: SimStorage, point: str, action: Callable[[], object], cut: int = 0) -> bool:
    """Run ``action`` with a crash armed at ``point``; True when it fired inside the action.

    When the point lies after the action's last disk event, the machine crashes right after
    the action returns, which is the same instant.
    """
    disk.crash_at = crash_point(disk, point, cut=cut)
    try:
        action()
    except SimulatedCrash:
        return True
    finally:
        disk.crash_at = None
    return False


def reboot(disk: SimStorage, crash: str) -> None:
    """Bring the machine back after ``crash``: "process" death, "os" (every unsynced page lost)
    or "os-newest" (every unsynced page at its newest version)."""
    if crash == "process":
        disk.restart(PATH)
    elif crash == "os":
        disk.restart(PATH, disk.durable_image(PATH))
    else:
        disk.restart(PATH, disk.crash_image(PATH, lambda n: n - 1, torn_sectors=False))


def recovered(disk: SimStorage) -> js.Store[S]:
    """Reopen for writing after the crash."""
    return js.open(PATH, S, storage=disk)


def store_with_a(durability: str) -> tuple[SimStorage, js.Store[S]]:
    """A store that committed A."""
    disk = SimStorage()
    store = js.open(PATH, S, storage=disk, durability=durability, flush_interval=3600)
    store.commit(A)
    return disk, store


# --- commit ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("point", "crash", "expected", "torn"),
    [
        ("journal-write-torn", "process", A, True),
        ("journal-write-torn", "os", A, False),
        ("journal-written", "process", B, False),
        ("journal-written", "os", A, False),
        ("journal-written", "os-newest", B, False),
        ("journal-synced", "os", B, False),
    ],
)
def test_commit_windows(point: str, crash: str, expected: S, torn: bool) -> None:
    """A commit cut at each point comes back as A or B exactly, as design.md says."""
    disk, store = store_with_a("commit")
    fired = crash_during(disk, point, lambda: store.commit(B), cut=100)
    assert fired or point == "journal-synced"  # the commit point is its last event
    reboot(disk, crash)
    with recovered(disk) as again:
        assert again.state == expected
        assert again.recovery.torn_tail is torn
        assert not again.recovery.corruption


@pytest.mark.parametrize(("crash", "expected"), [("process", B), ("os", S())])
def test_process_mode_commit_is_not_durable_until_checkpoint(crash: str, expected: S) -> None:
    """In process mode a returned commit survives process death, not an OS crash."""
    disk, store = store_with_a("process")
    assert not crash_during(disk, "journal-synced", lambda: store.commit(B))
    reboot(disk, crash)
    with recovered(disk) as again:
        assert again.state == expected


# --- checkpoint --------------------------------------------------------------------------------


@pytest.mark.parametrize("durability", ["commit", "process"])
@pytest.mark.parametrize(
    ("point", "crash"),
    [
        ("slot-write-torn", "process"),
        ("slot-write-torn", "os"),
        ("slot-written", "process"),
        ("slot-written", "os"),
        ("slot-written", "os-newest"),
        ("slot-synced", "os"),
    ],
)
def test_checkpoint_windows(durability: str, point: str, crash: str) -> None:
    """A checkpoint cut anywhere loses nothing durable; once its msync returned, nothing at all."""
    disk, store = store_with_a(durability)
    store.commit(B)
    assert crash_during(disk, point, store.checkpoint, cut=300) or point == "slot-synced"
    reboot(disk, crash)
    with recovered(disk) as again:
        # In process mode the checkpoint first syncs the end marker at the tail, and with it
        # the page that holds both records here: B survives every crash of this window.
        assert again.state == B
        assert not again.recovery.corruption


def test_torn_checkpoint_falls_back_to_the_other_slot() -> None:
    """A slot torn mid-write is reported invalid and the base slot plus journal is used."""
    disk, store = store_with_a("commit")
    store.commit(B)
    base = store._base_slot
    assert crash_during(disk, "slot-write-torn", store.checkpoint, cut=300)
    reboot(disk, "process")
    with js.open(PATH, S, storage=disk, readonly=True) as again:
        assert again.state == B
        assert again.recovery.slot == base
        assert not again.recovery.slots[1 - base].valid
        assert not again.recovery.corruption


# --- open for writing (recovery) ----------------------------------------------------------------


@pytest.mark.parametrize(
    "point",
    ["journal-write-torn", "journal-written", "slot-write-torn", "slot-written", "slot-synced"],
)
@pytest.mark.parametrize("crash", ["process", "os", "os-newest"])
def test_crash_during_recovery_is_harmless(point: str, crash: str) -> None:
    """A crash anywhere in an open's recovery and open checkpoint changes nothing."""
    disk, store = store_with_a("commit")
    store.commit(B)
    disk.restart(PATH)  # the writer dies; the next open recovers
    assert crash_during(disk, point, lambda: js.open(PATH, S, storage=disk), cut=10) or (
        point == "slot-synced"
    )
    reboot(disk, crash)
    with recovered(disk) as again:
        assert again.state == B
        assert again.seq == 2
        assert not again.recovery.corruption


@pytest.mark.parametrize("skip", [0, 1])
@pytest.mark.parametrize("crash", ["process", "os"])
def test_crash_during_roll_back(skip: int, crash: str) -> None:
    """A roll-back cut in its first slot write did not happen; cut in its second, it did."""
    disk, store = store_with_a("commit")
    store.checkpoint()
    store.commit(B)
    store.close()
    assert (
        crash_during(
            disk,
            "slot-write-torn",
            lambda: js.open(PATH, S, storage=disk, previous_generation=True),
            cut=300,
        )
        if skip == 0
        else crash_during_second_slot_write(disk)
    )
    reboot(disk, crash)
    with recovered(disk) as again:
        assert again.state == (B if skip == 0 else A)


def crash_during_second_slot_write(disk: SimStorage) -> bool:
    """Crash while a roll-back writes its second slot."""
    disk.crash_at = crash_point(disk, "slot-write-torn", cut=300, skip=1)
    try:
        js.open(PATH, S, storage=disk, previous_generation=True)
    except SimulatedCrash:
        return True
    finally:
        disk.crash_at = None
    return False


def test_clean_close_survives_an_os_crash_cleanly() -> None:
    """After close() in process mode, an OS crash leaves a store that strict recovery accepts."""
    disk = SimStorage()
    store = js.open(PATH, S, storage=disk, journal_size=8192)  # commit mode: journal synced
    for i in range(40):  # several laps of synced records all over the ring
        store.commit(S(step=i, label=str(i), blob=bytes([i]) * (i * 7 % 300)))
    store.close()
    store = js.open(PATH, S, storage=disk, journal_size=8192, durability="process")
    store.commit(S(step=100, label="x"))
    store.commit(S(step=101, label="yy", blob=b"z" * 33))
    store.close()
    reboot(disk, "os")
    with js.open(PATH, S, storage=disk, recovery="strict", readonly=True) as again:
        assert again.state == S(step=101, label="yy", blob=b"z" * 33)
        assert again.recovery.clean


def test_process_mode_checkpoint_makes_everything_durable() -> None:
    """In process mode, once checkpoint() returns, an OS crash keeps every commit, even those
    whose records lie on pages that were never synced."""
    disk = SimStorage()
    store = js.open(PATH, S, storage=disk, durability="process", journal_size=64 * 1024)
    for i in range(1, 30):  # about 15 KiB of records: pages before the tail's page
        store.commit(S(step=i, label=str(i), blob=bytes([i]) * 500))
    assert crash_during(disk, "slot-synced", store.checkpoint) is False
    reboot(disk, "os")
    with recovered(disk) as again:
        assert again.state == S(step=29, label="29", blob=bytes([29]) * 500)
