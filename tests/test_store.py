"""The store's public behaviour: commits, transactions, durability modes, recovery on open."""

from __future__ import annotations

import errno
import os
import stat
import threading
import time
from pathlib import Path
from typing import Annotated

import attrs
import pytest

import journalstate as js
from journalstate._format import RECORD_HEADER_SIZE, record_size
from journalstate._header import HEADER_FIXED_SIZE, header_crc
from journalstate._schema import compile_schema
from journalstate._writer import encode_patches
from tests.conftest import CountingStorage, Progress, crash_copy

SECTOR = 512
"""Bytes a disk writes atomically: an OS crash keeps or loses each sector whole."""


def file_bytes(path: Path) -> bytes:
    """The whole file."""
    return path.read_bytes()


# --- basics ----------------------------------------------------------------------------------


def test_new_store_has_default_state(store_path: Path) -> None:
    """A new store starts at the schema's defaults, with a clean recovery report."""
    with js.open(store_path, Progress) as store:
        assert store.state == Progress()
        assert store.seq == 0
        assert store.recovery.clean


def test_initial_state_is_used_for_new_store(store_path: Path) -> None:
    """initial= sets the state of a new store and is ignored for an existing one."""
    with js.open(store_path, Progress, initial=Progress(step=7)) as store:
        assert store.state.step == 7
    with js.open(store_path, Progress, initial=Progress(step=9)) as store:
        assert store.state.step == 7


def test_commit_survives_close_and_reopen(store_path: Path) -> None:
    """Committed state is what the next open sees."""
    with js.open(store_path, Progress) as store:
        seq = store.commit(Progress(step=3, loss=0.5, label="epoch 3", blob=b"x" * 100))
        assert seq == 1
    with js.open(store_path, Progress) as store:
        assert store.state == Progress(step=3, loss=0.5, label="epoch 3", blob=b"x" * 100)
        assert store.seq == 1


def test_transaction_commits_draft(store_path: Path) -> None:
    """A transaction that ends normally commits the draft's changes."""
    with js.open(store_path, Progress) as store:
        with store.transaction() as draft:
            draft.step += 1
            draft.label = "epoch 1"
        assert store.state == Progress(step=1, label="epoch 1")
    with js.open(store_path, Progress, readonly=True) as store:
        assert store.state == Progress(step=1, label="epoch 1")


def test_transaction_rolls_back_on_exception(store_path: Path) -> None:
    """An exception in the block writes nothing and leaves the state as it was."""
    with js.open(store_path, Progress, durability="process") as store:
        store.commit(Progress(step=1))
        before = file_bytes(store_path)
        with pytest.raises(KeyError, match="boom"), store.transaction() as draft:  # noqa: PT012
            draft.step = 99
            raise KeyError("boom")
        assert store.state == Progress(step=1)
        assert store.seq == 1
        assert file_bytes(store_path) == before


def test_nested_transaction_raises(store_path: Path) -> None:
    """Transactions do not nest, and commit() inside one is refused."""
    with js.open(store_path, Progress) as store:
        with store.transaction() as draft:
            with pytest.raises(js.TransactionError), store.transaction():
                pass
            with pytest.raises(js.TransactionError):
                store.commit(Progress(step=5))
            draft.step = 2
        assert store.state.step == 2


def test_draft_unusable_after_transaction(store_path: Path) -> None:
    """A draft kept past its transaction raises instead of silently doing nothing."""
    with js.open(store_path, Progress) as store:
        with store.transaction() as draft:
            draft.step = 1
        with pytest.raises(js.TransactionError):
            draft.step = 2
        assert store.state.step == 1


def test_draft_rejects_unknown_field(store_path: Path) -> None:
    """A typo in a field name fails at once."""
    with js.open(store_path, Progress) as store:
        with pytest.raises(AttributeError, match="stpe"), store.transaction() as draft:
            draft.stpe = 1
        assert store.seq == 0


@attrs.frozen
class Inner:
    """A nested struct."""

    x: js.I32 = 0
    ok: bool = False


@attrs.frozen
class Outer:
    """A state with nested structs and arrays."""

    inner: Inner = Inner()
    hist: Annotated[tuple[int, ...], js.Array(js.U16, 4)] = (0, 0, 0, 0)
    pts: Annotated[tuple[Inner, ...], js.Array(Inner, 2)] = (Inner(), Inner())


def test_nested_drafts_and_arrays(store_path: Path) -> None:
    """Drafts reach into nested structs and arrays, and the result round-trips."""
    with js.open(store_path, Outer) as store:
        with store.transaction() as draft:
            draft.inner.x = -5
            draft.hist[2] = 7
            draft.pts[1].ok = True
        expected = Outer(inner=Inner(x=-5), hist=(0, 0, 7, 0), pts=(Inner(), Inner(ok=True)))
        assert store.state == expected
    with js.open(store_path, Outer) as store:
        assert store.state == expected


def test_invalid_value_changes_nothing(store_path: Path) -> None:
    """A value that does not fit raises InvalidValue and writes nothing."""
    with js.open(store_path, Progress, durability="process") as store:
        store.commit(Progress(step=1))
        before = file_bytes(store_path)
        with pytest.raises(js.InvalidValue, match="label"):
            store.commit(Progress(step=2, label="x" * 33))
        with pytest.raises(js.InvalidValue, match="step"):
            store.commit(Progress(step=-1))
        with pytest.raises(js.InvalidValue):
            store.commit("not a Progress")  # type: ignore[arg-type]
        assert store.state == Progress(step=1)
        assert store.seq == 1
        assert file_bytes(store_path) == before


@attrs.frozen
class Big:
    """A state with a field larger than a one-page journal."""

    step: js.U64 = 0
    blob: Annotated[bytes, js.Bytes(6000)] = b""


def test_transaction_too_large_changes_nothing(store_path: Path) -> None:
    """A change bigger than the journal raises TransactionTooLarge; nothing is written."""
    with js.open(store_path, Big, journal_size=4096, durability="process") as store:
        store.commit(Big(step=1))
        before = file_bytes(store_path)
        with pytest.raises(js.TransactionTooLarge):
            store.commit(Big(step=2, blob=b"\x01" * 5000))
        assert store.state == Big(step=1)
        assert file_bytes(store_path) == before
        store.commit(Big(step=2, blob=b"\x01" * 3900))
    with js.open(store_path, Big) as store:
        assert store.state == Big(step=2, blob=b"\x01" * 3900)


def test_unchanged_commit_writes_no_record(store_path: Path) -> None:
    """Committing an equal state writes nothing and keeps the sequence number."""
    with js.open(store_path, Progress) as store:
        store.commit(Progress(step=1))
        assert store.commit(Progress(step=1)) == 1
        assert store.stats.commits == 1


def test_closed_and_readonly_refuse_commits(store_path: Path) -> None:
    """Use after close raises StoreClosed; a read-only store raises ReadOnlyStore."""
    store = js.open(store_path, Progress)
    store.close()
    store.close()
    with pytest.raises(js.StoreClosed):
        store.commit(Progress(step=1))
    with js.open(store_path, Progress, readonly=True) as ro:
        with pytest.raises(js.ReadOnlyStore):
            ro.commit(Progress(step=1))
        with pytest.raises(js.ReadOnlyStore), ro.transaction():
            pass


# --- the journal ring ------------------------------------------------------------------------


def test_ring_wraps_many_times(store_path: Path) -> None:
    """Thousands of commits through a one-page journal keep every state exact."""
    with js.open(store_path, Progress, journal_size=4096, durability="process") as store:
        for i in range(2000):
            store.commit(Progress(step=i, label=f"n{i % 97}", blob=bytes([i % 251]) * (i % 50)))
        assert store.stats.checkpoints > 10
        copy = crash_copy(store_path)
        final = store.state
    with js.open(copy, Progress) as store:
        assert store.state == final


def test_crash_copy_recovers_last_commit_in_every_mode(store_path: Path) -> None:
    """Process death (the page cache survives) loses no commit, whatever the durability."""
    for mode in ("commit", "interval", "process"):
        path = store_path.with_name(f"{mode}.jst")
        with js.open(path, Progress, durability=mode, journal_size=8192) as store:
            for i in range(50):
                store.commit(Progress(step=i, loss=i / 3, label=mode))
            copy = crash_copy(path)
            with js.open(copy, Progress) as recovered:
                assert recovered.state == Progress(step=49, loss=49 / 3, label=mode)
                assert recovered.recovery.records_replayed > 0


# --- durability: counting the msyncs --------------------------------------------------------------


def test_commit_mode_issues_one_journal_msync_per_commit(store_path: Path) -> None:
    """In commit mode each commit costs exactly one msync of the journal, and no slot sync."""
    storage = CountingStorage()
    with js.open(store_path, Progress, storage=storage, journal_size=1 << 20) as store:
        storage.syncs.clear()
        for i in range(1, 101):
            store.commit(Progress(step=i, loss=float(i)))
        assert storage.count("journal") == 100
        assert storage.count("slots") == 0
        # Each msync covers only the pages of that commit's record.
        assert all(length <= 2 * 4096 for kind, _, length in storage.syncs)


def test_process_mode_never_msyncs_on_commit(store_path: Path) -> None:
    """Process mode commits without msync; a durable override syncs once."""
    storage = CountingStorage()
    with js.open(store_path, Progress, storage=storage, durability="process") as store:
        storage.syncs.clear()
        for i in range(1, 51):
            store.commit(Progress(step=i))
        assert storage.syncs == []
        assert store.durable_seq < store.seq
        store.commit(Progress(step=51), durability="commit")
        assert storage.count("journal") == 1
        assert store.durable_seq == store.seq == 51


def test_interval_mode_flushes_in_background(store_path: Path) -> None:
    """Interval mode makes commits durable without the caller syncing."""
    storage = CountingStorage()
    with js.open(
        store_path, Progress, storage=storage, durability="interval", flush_interval=0.05
    ) as store:
        storage.syncs.clear()
        store.commit(Progress(step=1))
        deadline = time.monotonic() + 120  # a hang guard, not a speed requirement
        while store.durable_seq < 1 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert store.durable_seq == 1
        assert storage.count("journal") >= 1


def test_flush_makes_everything_durable(store_path: Path) -> None:
    """flush() syncs all commits so far."""
    storage = CountingStorage()
    with js.open(store_path, Progress, storage=storage, durability="process") as store:
        storage.syncs.clear()
        for i in range(1, 6):
            store.commit(Progress(step=i))
        store.flush()
        assert store.durable_seq == 5
        assert storage.count("journal") == 1


def test_checkpoint_syncs_slot_before_releasing_journal(store_path: Path) -> None:
    """A checkpoint msyncs its slot, even in process mode."""
    storage = CountingStorage()
    with js.open(store_path, Progress, storage=storage, durability="process") as store:
        storage.syncs.clear()
        store.commit(Progress(step=1))
        store.checkpoint()
        assert storage.count("slots") == 1
        assert store.journal_fill == 0.0


def test_msync_failure_poisons_the_store(store_path: Path) -> None:
    """An EIO from msync poisons the store: every later call raises, reopen recovers."""
    storage = CountingStorage()
    store = js.open(store_path, Progress, storage=storage)
    store.commit(Progress(step=1))
    storage.fail_syncs = True
    with pytest.raises(js.StorePoisoned) as info:
        store.commit(Progress(step=2))
    assert isinstance(info.value.cause, OSError)
    assert info.value.cause.errno == errno.EIO
    storage.fail_syncs = False
    with pytest.raises(js.StorePoisoned):
        store.commit(Progress(step=3))
    with pytest.raises(js.StorePoisoned):
        store.flush()
    store.close()
    with js.open(store_path, Progress) as reopened:
        assert reopened.state.step in (1, 2)


# --- threads ---------------------------------------------------------------------------------


def test_transactions_from_threads_serialize(store_path: Path) -> None:
    """Concurrent read-modify-write transactions lose no increment."""
    with js.open(store_path, Progress, durability="process") as store:

        def work() -> None:
            for _ in range(200):
                with store.transaction() as draft:
                    draft.step += 1

        threads = [threading.Thread(target=work) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert store.state.step == 800
        assert store.seq == 800


# --- files and locks -------------------------------------------------------------------------


def test_new_file_is_private(store_path: Path) -> None:
    """Stores are created with mode 0600."""
    js.open(store_path, Progress).close()
    assert stat.S_IMODE(os.stat(store_path).st_mode) == 0o600


def test_second_writer_gets_store_locked(store_path: Path) -> None:
    """A second writer fails at once with StoreLocked; a reader is fine."""
    with js.open(store_path, Progress) as store:
        with pytest.raises(js.StoreLocked):
            js.open(store_path, Progress)
        with js.open(store_path, Progress, readonly=True) as ro:
            assert ro.state == store.state


def test_lock_timeout_waits_for_release(store_path: Path) -> None:
    """With lock_timeout the second writer waits and gets the lock once it is released."""
    first = js.open(store_path, Progress)
    timer = threading.Timer(0.2, first.close)
    timer.start()
    with js.open(store_path, Progress, lock_timeout=300) as second:
        assert second.state == Progress()
    timer.join()


def test_failed_open_releases_the_lock(store_path: Path) -> None:
    """An open that fails (schema mismatch) leaves no lock behind."""

    @attrs.frozen
    class Other:
        step: js.U32 = 0

    js.open(store_path, Progress).close()
    with pytest.raises(js.SchemaMismatch):
        js.open(store_path, Other)
    js.open(store_path, Progress).close()


def test_creation_failure_leaves_no_file(store_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """ENOSPC while preallocating is NoSpace, and neither the store nor a temp file remains."""

    def full(fd: int, offset: int, length: int) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "posix_fallocate", full)
    with pytest.raises(js.NoSpace):
        js.open(store_path, Progress)
    assert list(store_path.parent.iterdir()) == []


def test_crash_during_creation_leaves_no_store(
    store_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A crash before the link step leaves nothing under the real name."""

    def die(src: str, dst: str) -> None:
        raise SystemExit("killed")

    monkeypatch.setattr(os, "link", die)
    with pytest.raises(SystemExit):
        js.open(store_path, Progress)
    assert not store_path.exists()


# --- bad files -------------------------------------------------------------------------------


def test_missing_file_without_create(store_path: Path) -> None:
    """create=False on a missing path raises StoreNotFound (a FileNotFoundError)."""
    with pytest.raises(js.StoreNotFound):
        js.open(store_path, Progress, create=False)
    with pytest.raises(FileNotFoundError):
        js.open(store_path, Progress, readonly=True)


def test_directory_and_symlink_are_refused(tmp_path: Path) -> None:
    """A directory or a symbolic link at the path raises UnsafePath."""
    (tmp_path / "dir").mkdir()
    with pytest.raises(js.UnsafePath, match="directory"):
        js.open(tmp_path / "dir", Progress)
    real = tmp_path / "real.jst"
    js.open(real, Progress).close()
    (tmp_path / "link.jst").symlink_to(real)
    with pytest.raises(js.UnsafePath, match="symbolic link"):
        js.open(tmp_path / "link.jst", Progress)


def test_wrong_magic_is_not_a_store(store_path: Path) -> None:
    """A file that is not a store raises NotAStore."""
    store_path.write_bytes(b"hello world" * 1000)
    with pytest.raises(js.NotAStore):
        js.open(store_path, Progress)
    store_path.write_bytes(b"")
    with pytest.raises(js.NotAStore):
        js.open(store_path, Progress)


def test_truncated_file(store_path: Path) -> None:
    """A store cut short raises TruncatedStore."""
    js.open(store_path, Progress).close()
    data = file_bytes(store_path)
    for cut in (50, 4096, len(data) - 1):
        store_path.write_bytes(data[:cut])
        with pytest.raises(js.TruncatedStore):
            js.open(store_path, Progress)


def test_newer_version_is_refused(store_path: Path) -> None:
    """A file from a newer format version raises UnsupportedVersion."""
    js.open(store_path, Progress).close()
    data = bytearray(file_bytes(store_path))
    data[8:12] = (99).to_bytes(4, "little")
    store_path.write_bytes(bytes(data))
    with pytest.raises(js.Unrecoverable, match="version field reads 99"):
        js.open(store_path, Progress)  # the crc says the version field is damaged
    schema_length = int.from_bytes(data[88:92], "little")
    fixed = header_crc(bytes(data[:HEADER_FIXED_SIZE]), bytes(data[96 : 96 + schema_length]))
    data[92:96] = fixed.to_bytes(4, "little")
    store_path.write_bytes(bytes(data))
    with pytest.raises(js.UnsupportedVersion) as info:
        js.open(store_path, Progress)
    assert info.value.version == 99


def test_damaged_header_is_unrecoverable(store_path: Path) -> None:
    """A flipped bit in the header fails its checksum."""
    js.open(store_path, Progress).close()
    data = bytearray(file_bytes(store_path))
    data[HEADER_FIXED_SIZE + 3] ^= 0x10
    store_path.write_bytes(bytes(data))
    with pytest.raises(js.Unrecoverable):
        js.open(store_path, Progress)


def test_schema_mismatch_names_the_fields(store_path: Path) -> None:
    """Opening with another schema names the fields that differ."""

    @attrs.frozen
    class Changed:
        step: js.U32 = 0
        loss: js.F64 = 0.0
        label: Annotated[str, js.Str(32)] = ""
        blob: Annotated[bytes, js.Bytes(3000)] = b""

    js.open(store_path, Progress).close()
    with pytest.raises(js.SchemaMismatch, match="step") as info:
        js.open(store_path, Changed)
    assert any("step" in d for d in info.value.differences)


# --- recovery --------------------------------------------------------------------------------


def last_record_offset(path: Path) -> int:
    """File offset of the journal record with the highest sequence number."""
    from journalstate._format import decode_record_header
    from journalstate._header import decode_header

    data = file_bytes(path)
    header = decode_header(str(path), data[:4096], len(data))
    best, best_seq = -1, -1
    ring = data[header.journal_offset : header.file_size]
    for at in range(0, len(ring) - RECORD_HEADER_SIZE, 8):
        head = decode_record_header(ring[at : at + RECORD_HEADER_SIZE])
        if (
            head.kind == 1
            and head.position % header.journal_size == at
            and head.seq > best_seq
            and head.length < header.journal_size
        ):
            best, best_seq = header.journal_offset + at, head.seq
    assert best >= 0
    return best


def test_torn_last_record_is_dropped(store_path: Path) -> None:
    """A damaged last record is a torn tail: recovery keeps the commit before it."""
    with js.open(store_path, Progress, durability="process") as store:
        store.commit(Progress(step=1))
        store.commit(Progress(step=2))
        copy = crash_copy(store_path)
    data = bytearray(file_bytes(copy))
    at = last_record_offset(copy)
    data[at + RECORD_HEADER_SIZE + 2] ^= 0xFF
    copy.write_bytes(bytes(data))
    with js.open(copy, Progress, readonly=True) as store:
        assert store.state == Progress(step=1)
        assert store.recovery.torn_tail
        assert store.recovery.torn_tail_offset == at
        assert not store.recovery.corruption
    with pytest.raises(js.StoreCorrupt):
        js.open(copy, Progress, recovery="strict", readonly=True)
    with js.open(copy, Progress) as store:
        assert store.state == Progress(step=1)
    with js.open(copy, Progress) as store:
        assert store.recovery.clean


def test_damaged_durable_record_is_corruption(store_path: Path) -> None:
    """Damage to a synced record that a later record vouches for is corruption, not a tail."""
    with js.open(store_path, Progress, durability="commit") as store:
        for i in range(1, 4):
            store.commit(Progress(step=i))
        copy = crash_copy(store_path)
    data = bytearray(file_bytes(copy))
    last = last_record_offset(copy)
    # the middle record (seq 2) sits right before the last one; damage its payload
    data[last - 4] ^= 0xFF
    copy.write_bytes(bytes(data))
    with pytest.raises(js.StoreCorrupt) as info:
        js.open(copy, Progress, readonly=True)
    assert info.value.reason is js.Reason.DURABLE_RECORD_LOST
    with js.open(copy, Progress, recovery="salvage", readonly=True) as store:
        assert store.state == Progress(step=1)
        assert [d.reason for d in store.recovery.corruption] == [js.Reason.DURABLE_RECORD_LOST]


def test_records_from_before_recovery_are_never_replayed(store_path: Path) -> None:
    """A stale record the new session's end marker failed to cover is not replayed."""
    schema = compile_schema(Progress)

    def size(old: Progress, new: Progress) -> int:
        return record_size(len(encode_patches(schema.diff(old, new))))

    # Record 3 must start on a sector boundary, so that an OS crash can keep the next
    # session's record 2 (the sectors before it) and lose its end marker (the sector at it).
    base = Progress()

    def commits(n: int) -> list[Progress]:
        return [Progress(step=i, label=c, blob=b"\x01" * n) for i, c in enumerate("abc", 1)]

    states = next(
        s
        for s in map(commits, range(1, SECTOR))
        if (size(base, s[0]) + size(s[0], s[1])) % SECTOR == 0
    )
    store = js.open(store_path, Progress, durability="process")
    assert store.position == 0
    for state in states:
        store.commit(state)
    copy = crash_copy(store_path)  # a process death: records 1, 2 and 3 in the page cache
    store.close()
    header = store.header
    second = header.journal_offset + size(base, states[0])
    third = second + size(states[0], states[1])
    assert third % SECTOR == 0
    # An OS crash that tore record 2 and kept record 3: recovery stops at record 1.
    torn = bytearray(file_bytes(copy))
    torn[second + RECORD_HEADER_SIZE] ^= 0xFF
    copy.write_bytes(bytes(torn))
    store = js.open(copy, Progress, durability="process")
    assert store.state == states[0]
    assert store.recovery.torn_tail
    # Same size as record 2: the new record 2 ends exactly where stale record 3 begins, and
    # its end marker (written with it, never synced) is all that covers record 3's header.
    new = attrs.evolve(states[1], label="x")
    store.commit(new)
    assert store.position == third - header.journal_offset
    after = file_bytes(copy)
    store.close()
    # The OS crash: every sector of the new session reached the disk except the end marker's.
    image = bytearray(after)
    image[third : third + SECTOR] = torn[third : third + SECTOR]
    lost = copy.with_name("lost-marker.jst")
    lost.write_bytes(bytes(image))
    with js.open(lost, Progress, readonly=True) as recovered:
        assert recovered.state == new
    with js.open(lost, Progress) as recovered:
        assert recovered.state == new


def test_previous_generation(store_path: Path) -> None:
    """previous_generation opens the older slot's state and makes the roll-back durable."""
    with js.open(store_path, Progress) as store:
        store.commit(Progress(step=1))
        store.checkpoint()
        store.commit(Progress(step=2))
        store.checkpoint()
    with js.open(store_path, Progress, previous_generation=True) as store:
        assert store.state == Progress(step=1)
    with js.open(store_path, Progress) as store:
        assert store.state == Progress(step=1)


def damage_base_slot(store: js.Store[Progress], path: Path) -> tuple[Path, int]:
    """A crash copy of ``path`` with the store's newest slot damaged; returns it and the slot."""
    copy = crash_copy(path)
    slot = store._base_slot
    data = bytearray(file_bytes(copy))
    data[store.header.slot_offsets[slot] + 60] ^= 0xFF
    copy.write_bytes(bytes(data))
    return copy, slot


def test_damaged_newest_slot_falls_back(store_path: Path) -> None:
    """One bad slot never prevents opening: the other slot plus the journal is used."""
    with js.open(store_path, Progress, durability="process") as store:
        store.commit(Progress(step=1))
        store.checkpoint()
        store.commit(Progress(step=2))
        gen = store.generation
        copy, slot = damage_base_slot(store, store_path)
    with js.open(copy, Progress, readonly=True) as recovered:
        assert recovered.state == Progress(step=2)
        assert recovered.recovery.generation == gen - 1
        assert not recovered.recovery.slots[slot].valid
        assert [d.reason for d in recovered.recovery.corruption] == [js.Reason.SLOT_LOST]
    with pytest.raises(js.StoreCorrupt):
        js.open(copy, Progress, recovery="strict", readonly=True)


def test_lost_open_checkpoint_falls_back_to_a_committed_state(store_path: Path) -> None:
    """Losing the slot a session began with falls back to the state before that session."""
    with js.open(store_path, Progress, durability="process") as store:
        store.commit(Progress(step=1))
        copy, _ = damage_base_slot(store, store_path)
    with js.open(copy, Progress, readonly=True) as recovered:
        # Records of the session cannot be chained to the older slot's epoch: the state is the
        # one before the session, and the report says a completed slot was lost.
        assert recovered.state == Progress()
        assert [d.reason for d in recovered.recovery.corruption] == [js.Reason.SLOT_LOST]


def test_both_slots_damaged_is_unrecoverable(store_path: Path) -> None:
    """With no valid slot, open raises Unrecoverable."""
    with js.open(store_path, Progress) as store:
        header = store.header
    data = bytearray(file_bytes(store_path))
    for off in header.slot_offsets:
        data[off + 50] ^= 0xFF
    store_path.write_bytes(bytes(data))
    with pytest.raises(js.Unrecoverable):
        js.open(store_path, Progress)


def test_reopen_is_idempotent(store_path: Path) -> None:
    """Opening the same crash image twice (a crash during recovery) gives the same state."""
    with js.open(store_path, Progress, durability="process") as store:
        for i in range(10):
            store.commit(Progress(step=i))
        copy = crash_copy(store_path)
    images = []
    for _ in range(3):
        with js.open(copy, Progress, readonly=True) as store:
            images.append(store.state)
    assert images == [Progress(step=9)] * 3


def test_group_commit_shares_msyncs_between_threads(store_path: Path) -> None:
    """Commit-mode commits from many threads are all durable, with at most one msync each."""
    storage = CountingStorage()
    with js.open(store_path, Progress, storage=storage) as store:
        storage.syncs.clear()

        def work(k: int) -> None:
            for _ in range(50):
                with store.transaction() as draft:
                    draft.step += 1
                    draft.blob = bytes([k]) * 10

        threads = [threading.Thread(target=work, args=(k,)) for k in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert store.state.step == 400
        assert store.durable_seq == store.seq == 400
        assert storage.count("journal") <= 400
        copy = crash_copy(store_path)
    with js.open(copy, Progress, readonly=True) as recovered:
        assert recovered.state.step == 400


def test_close_inside_a_transaction_is_refused(store_path: Path) -> None:
    """close() from inside the same thread's transaction raises instead of deadlocking."""
    with js.open(store_path, Progress) as store:
        with store.transaction() as draft:
            draft.step = 1
            with pytest.raises(js.TransactionError):
                store.close()
        assert store.state.step == 1


def test_dropped_store_releases_its_thread_and_lock(store_path: Path) -> None:
    """A store dropped without close() stops its flusher and frees the lock once collected."""
    import gc

    store = js.open(store_path, Progress, durability="interval", flush_interval=0.01)
    store.commit(Progress(step=1))
    flusher = store._flusher
    assert flusher is not None
    del store
    gc.collect()
    flusher.join(timeout=300)
    assert not flusher.is_alive()
    with js.open(store_path, Progress) as again:  # the lock went with the descriptor
        assert again.state.step == 1


def test_reader_knows_only_the_slot_is_durable(store_path: Path) -> None:
    """A reader of a crash image reports the slot's seq as durable, a writer all of it."""
    with js.open(store_path, Progress, durability="process") as store:
        for i in range(1, 4):
            store.commit(Progress(step=i))
        copy = crash_copy(store_path)
    with js.open(copy, Progress, readonly=True) as reader:
        assert reader.seq == 3
        assert reader.durable_seq == reader.recovery.base_seq == 0
    with js.open(copy, Progress) as writer:
        assert writer.durable_seq == writer.seq == 3
