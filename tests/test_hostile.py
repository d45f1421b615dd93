"""Hostile and extreme files: counters at their ends, declared sizes, private field names.

Files are forged byte by byte (``tests.damage.forge_store``: sparse, crc-valid where it says
so), then opened with ``js.open`` and run through every read-only CLI command. Each must end
with a typed error or a correct result, cheaply, whatever the file declares.
"""

from __future__ import annotations

import io
import subprocess
import sys
from pathlib import Path
from typing import Annotated, Any

import attrs
import pytest

import journalstate as js
from journalstate import _cli, _journal
from journalstate._format import (
    MAX_EPOCH,
    MAX_GENERATION,
    MAX_SEQ,
    RECORD_HEADER_SIZE,
    SLOT_CRC_OFFSET,
    WRITER_COUNTER_LIMIT,
    SlotHead,
    check_counters,
)
from journalstate._header import MAX_JOURNAL_SIZE
from journalstate._journal import find_all, max_epoch_in_ring, max_payload
from journalstate._layout import MAX_NODES, MAX_STATE_SIZE
from journalstate._reason import Reason
from journalstate._recovery import RecoveryMode
from journalstate._schema import compile_schema
from tests.damage import (
    blob_descriptor,
    fix_record_crc,
    flat_descriptor,
    flip_byte,
    forge_store,
    set_record_field,
)
from tests.test_journal import write_record
from tests.test_recovery import SALVAGE, TOLERATE, history

READ_COMMANDS = ("check", "info", "dump", "log")


@attrs.frozen
class Counter:
    """A one-field state for forged stores."""

    n: js.U64 = 0


DESCRIPTOR = compile_schema(Counter).descriptor
JOURNAL = 1 << 16


def forge_counters(path: Path, generation: int, epoch: int, seq: int) -> None:
    """A clean Counter store whose two slots carry these counters (the older one one less)."""
    older = SlotHead(max(generation - 1, 0), epoch, seq, 0, 8)
    newer = SlotHead(generation, epoch, seq, 0, 8)
    forge_store(
        str(path), descriptor=DESCRIPTOR, state_size=8, journal_size=JOURNAL, heads=(newer, older)
    )


def open_stored(path: Path, **kwargs: Any) -> js.Store[Any]:
    """Open with the class rebuilt from the file's stored schema."""
    store: js.Store[Any] = js.open(path, None, **kwargs)
    return store


def run_cli(*args: str | Path) -> tuple[int, str, str]:
    """Run the CLI in this process; returns (exit code, stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    saved, sys.stderr = sys.stderr, err
    try:
        code = _cli.main([str(a) for a in args], out=out)
    finally:
        sys.stderr = saved
    return code, out.getvalue(), err.getvalue()


# --- counters at their ends -----------------------------------------------------------------------


def test_last_epoch_opens_read_only_and_refuses_a_writing_session(tmp_path: Path) -> None:
    """At epoch 2^32-1 reads work and a writable open raises CounterExhausted, changing nothing."""
    path = tmp_path / "s.jst"
    forge_counters(path, 5, MAX_EPOCH, 3)
    before = path.read_bytes()
    with js.open(path, Counter, readonly=True) as store:
        assert (store.recovery.epoch, store.seq, store.generation) == (MAX_EPOCH, 3, 5)
    with pytest.raises(js.CounterExhausted, match="epoch counter") as info:
        js.open(path, Counter)
    assert (info.value.counter, info.value.value) == ("epoch", MAX_EPOCH)
    assert path.read_bytes() == before
    for command in READ_COMMANDS:
        assert run_cli(command, path)[0] == _cli.EXIT_OK, command
    code, _, err = run_cli("recover", path)
    assert code == _cli.EXIT_UNRECOVERABLE
    assert "epoch counter" in err
    assert "Traceback" not in err


def test_epoch_one_before_the_last_allows_one_more_session(tmp_path: Path) -> None:
    """At epoch 2^32-2 one writing session runs (commits, checkpoints); the next is refused."""
    path = tmp_path / "s.jst"
    forge_counters(path, 5, MAX_EPOCH - 1, 3)
    with js.open(path, Counter) as store:
        assert store.commit(Counter(7)) == 4
        store.checkpoint()
        assert store.commit(Counter(8)) == 5
    with js.open(path, Counter, readonly=True) as store:
        assert (store.recovery.epoch, store.state) == (MAX_EPOCH, Counter(8))
    with pytest.raises(js.CounterExhausted):
        js.open(path, Counter)


def test_last_epoch_with_a_damaged_slot_reads(tmp_path: Path) -> None:
    """A damaged slot beside one of the last epoch: the ring scan for epochs still works."""
    path = tmp_path / "s.jst"
    newer = SlotHead(6, MAX_EPOCH, 3, 0, 8)
    forge_store(
        str(path), descriptor=DESCRIPTOR, state_size=8, journal_size=JOURNAL, heads=(newer, None)
    )
    with js.open(path, Counter, readonly=True) as store:
        assert store.recovery.epoch == MAX_EPOCH
    with pytest.raises(js.CounterExhausted):
        js.open(path, Counter)
    assert run_cli("check", path)[0] == _cli.EXIT_TORN


@pytest.mark.parametrize(
    ("generation", "seq", "counter"),
    [
        (MAX_GENERATION, 1, "generation"),
        (MAX_GENERATION - 1, 1, "generation"),
        (WRITER_COUNTER_LIMIT, 1, "generation"),
        (5, MAX_SEQ, "seq"),
        (5, MAX_SEQ - 1, "seq"),
        (5, WRITER_COUNTER_LIMIT, "seq"),
    ],
)
def test_u64_counters_near_their_end_open_read_only(
    tmp_path: Path, generation: int, seq: int, counter: str
) -> None:
    """Generation or seq at or past 2^63 reads fine; a writing session is refused up front."""
    path = tmp_path / "s.jst"
    forge_counters(path, generation, 1, seq)
    with open_stored(path, readonly=True) as store:
        assert (store.generation, store.seq) == (generation, seq)
    with pytest.raises(js.CounterExhausted) as info:
        js.open(path, Counter)
    assert info.value.counter == counter
    for command in READ_COMMANDS:
        assert run_cli(command, path)[0] == _cli.EXIT_OK, command
    assert run_cli("recover", path)[0] == _cli.EXIT_UNRECOVERABLE


@pytest.mark.parametrize(("generation", "seq"), [(WRITER_COUNTER_LIMIT - 1, 1), (5, 2**63 - 1)])
def test_u64_counters_just_below_the_limit_write(tmp_path: Path, generation: int, seq: int) -> None:
    """Just below 2^63 a session runs: its checkpoints and commits count up without overflow."""
    path = tmp_path / "s.jst"
    forge_counters(path, generation, 1, seq)
    with js.open(path, Counter) as store:
        assert store.commit(Counter(1)) == seq + 1
        store.checkpoint()
        assert store.generation > generation
    with js.open(path, Counter, readonly=True) as store:
        assert (store.seq, store.state) == (seq + 1, Counter(1))


def test_check_counters_edges() -> None:
    """check_counters names the first exhausted counter and accepts everything below."""
    check_counters("p", max_epoch=MAX_EPOCH - 1, max_generation=2**63 - 1, seq=2**63 - 1)
    for kwargs, name in [
        ({"max_epoch": MAX_EPOCH, "max_generation": 0, "seq": 0}, "epoch"),
        ({"max_epoch": 0, "max_generation": 2**63, "seq": 0}, "generation"),
        ({"max_epoch": 0, "max_generation": 0, "seq": 2**63}, "seq"),
    ]:
        with pytest.raises(js.CounterExhausted) as info:
            check_counters("p", **kwargs)
        assert info.value.counter == name
        assert isinstance(info.value, OverflowError)


# --- declared sizes -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("descriptor", "state_size", "journal_size", "what"),
    [
        (DESCRIPTOR, 8, 2 * MAX_JOURNAL_SIZE, "journal size"),
        (DESCRIPTOR, 8, 64 << 30, "journal size"),
        (blob_descriptor(2**31 - 8), 2**31 - 4, JOURNAL, "state size"),
        (blob_descriptor(MAX_STATE_SIZE), MAX_STATE_SIZE + 4, JOURNAL, "state size"),
    ],
)
def test_declared_sizes_beyond_the_limits_are_damage(
    tmp_path: Path, descriptor: bytes, state_size: int, journal_size: int, what: str
) -> None:
    """A header declaring a journal over 1 GiB or a state over MAX_STATE_SIZE is refused before use.

    A writable open allocates nothing of such a file: the holes of a sparse store are only
    allocated once its header is validated, up to the size it declares.
    """
    path = tmp_path / "s.jst"
    forge_store(str(path), descriptor=descriptor, state_size=state_size, journal_size=journal_size)
    for readonly in (True, False):
        with pytest.raises(js.Unrecoverable, match=what):
            open_stored(path, readonly=readonly)
    assert path.stat().st_blocks * 512 < 1 << 20
    for command in READ_COMMANDS:
        code, _, err = run_cli(command, path)
        assert code == _cli.EXIT_UNRECOVERABLE, command
        assert what in err


def test_largest_state_is_refused_at_creation(tmp_path: Path) -> None:
    """A schema over MAX_STATE_SIZE bytes cannot be compiled, so no such store is created."""

    @attrs.frozen
    class Big:
        blob: Annotated[bytes, js.Bytes(MAX_STATE_SIZE)] = b""

    with pytest.raises(js.SchemaError, match="at most 2\\*\\*24"):
        js.open(tmp_path / "s.jst", Big)
    assert not (tmp_path / "s.jst").exists()


def test_too_many_fields_is_refused_at_creation() -> None:
    """A schema of more than MAX_NODES descriptor nodes is refused with a clear SchemaError."""
    cls = attrs.make_class(
        "Wide", {f"f{i}": attrs.field(type=js.U8, default=0) for i in range(MAX_NODES)}
    )
    with pytest.raises(js.SchemaError, match="at most 4096"):
        compile_schema(cls)


def test_descriptor_of_100k_fields_is_refused_quickly(tmp_path: Path) -> None:
    """A stored descriptor of 100k flat fields is refused before any class is built."""
    path = tmp_path / "s.jst"
    forge_store(
        str(path), descriptor=flat_descriptor(100_000), state_size=100_000, journal_size=JOURNAL
    )
    with pytest.raises(js.Unrecoverable, match="more than 4096 nodes"):
        open_stored(path, readonly=True)
    for command in READ_COMMANDS:
        code, _, err = run_cli(command, path)
        assert code == _cli.EXIT_UNRECOVERABLE, command
        assert "more than 4096 nodes" in err


def test_descriptor_at_the_field_limit_opens(tmp_path: Path) -> None:
    """A descriptor of exactly MAX_NODES nodes (the root and 4095 fields) opens without code."""
    path = tmp_path / "s.jst"
    fields = MAX_NODES - 1
    forge_store(
        str(path), descriptor=flat_descriptor(fields), state_size=fields, journal_size=JOURNAL
    )
    with open_stored(path, readonly=True) as store:
        assert store.state.f4094 == 0


def _peak_kib(*argv: str) -> tuple[int, int]:
    """Run the CLI in a child Python; its exit code and its own peak RSS in KiB.

    The peak is the child's VmHWM, which belongs to the program it runs: ``ru_maxrss`` would
    also count the pages it shared with this (large) process before its exec.
    """
    script = (
        "import sys\n"
        "from journalstate._cli import main\n"
        "code = main(sys.argv[1:])\n"
        "sys.stdout.flush()\n"
        "hwm = [l for l in open('/proc/self/status') if l.startswith('VmHWM:')][0].split()[1]\n"
        "print('PEAK', code, hwm)\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", script, *argv],
        capture_output=True,
        text=True,
        timeout=120,  # only against a hang; the assertion is about memory
        check=False,
    )
    assert "Traceback" not in proc.stderr, proc.stderr
    _, code, peak = proc.stdout.strip().splitlines()[-1].split()
    return int(code), int(peak)


RING = 256 << 20


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs Linux /proc")
def test_check_of_a_sparse_journal_stays_small(tmp_path: Path) -> None:
    """check of a sparse 256 MiB ring whose first record claims the largest length stays small.

    Every scan of the ring goes through it in chunks and releases what it read, and the
    hostile record's crc is computed in place: peak memory stays far below the ring's size.
    """
    path = tmp_path / "s.jst"
    header = forge_store(str(path), descriptor=DESCRIPTOR, state_size=8, journal_size=RING)
    # A record header at position 0 claiming the largest payload the ring holds: a torn tail.
    fields = (0, max_payload(RING), 0, 1, 0, 1, 0, 0, 1)
    with open(path, "r+b") as f:
        f.seek(header.journal_offset)
        f.write(_journal._RECORD_HEADER.pack(*fields))
    code, peak = _peak_kib("check", str(path))
    assert code == _cli.EXIT_TORN
    assert peak < 200 * 1024  # far above what it needs, below the ring's size


# --- private field names --------------------------------------------------------------------------


@attrs.frozen
class Private:
    """A state with a private and a name-mangled field."""

    _x: js.U64 = 0
    __y: js.U32 = 0
    z: js.U8 = 0


def test_private_fields_are_usable_without_the_class(tmp_path: Path) -> None:
    """A store whose class has `_x` and `__y` fields works with every CLI command and open(None)."""
    path = tmp_path / "s.jst"
    with js.open(path, Private) as store:
        store.commit(Private(x=5, Private__y=6, z=7))  # type: ignore[call-arg]
    with open_stored(path) as store:
        state = store.state
        assert (state._x, state._Private__y, state.z) == (5, 6, 7)
        store.commit(attrs.evolve(state, z=8))
    with js.open(path, Private, readonly=True) as store:
        assert store.state == Private(x=5, Private__y=6, z=8)  # type: ignore[call-arg]
    for command in (*READ_COMMANDS, "recover"):
        code, _, err = run_cli(command, path)
        assert code == _cli.EXIT_OK, (command, err)
    assert "_Private__y = 6" in run_cli("dump", path)[1]


# --- recovery loose ends --------------------------------------------------------------------------


@attrs.frozen
class Flagged:
    """A counter and a flag; a flag byte other than 0 or 1 does not decode."""

    step: js.U64 = 0
    flag: js.Bool = False


def test_salvage_keeps_the_records_before_the_one_that_breaks_decoding(tmp_path: Path) -> None:
    """Records 1-5 fine, record 6 writes 2 into a Bool: salvage recovers seq 5, not the slot."""
    path = tmp_path / "s.jst"
    with js.open(path, Flagged, durability="commit") as store:
        for step in range(1, 6):
            store.commit(Flagged(step=step))
        store.commit(Flagged(step=5, flag=True))
        copy = tmp_path / "crash.jst"
        copy.write_bytes(path.read_bytes())  # a crash image: the records are in the ring
        ring_offset = store.header.journal_offset
        tail = store.position % store.header.journal_size  # after record 6
    data = bytearray(copy.read_bytes())
    ring = memoryview(data)[ring_offset:]
    record6 = tail - 64  # a one-patch record of one byte: 48 + 8 + 1, padded to 64
    assert ring[record6 + 48 + 8] == 1  # the flag patch
    assert ring[record6 + 16] == 6  # the seq field
    ring[record6 + 48 + 8] = 2
    del ring
    fix_record_crc(data, ring_offset + record6)
    copy.write_bytes(data)
    with pytest.raises(js.StoreCorrupt, match="does not decode"):
        js.open(copy, Flagged, readonly=True)
    with js.open(copy, Flagged, readonly=True, recovery="salvage") as store:
        assert (store.seq, store.state) == (5, Flagged(step=5))
        damage = store.recovery.corruption[-1]
        assert (damage.reason, damage.offset) == (Reason.BAD_VALUE, ring_offset + record6)


def test_loss_after_a_lost_newer_slot_is_not_a_durable_record_lost() -> None:
    """Newer-generation records vouch only for the lost checkpoint: SLOT_LOST, not durable loss."""
    image, writer = history()  # process-mode history: nothing was synced but checkpoints
    image.damage_slot(0)  # generation 3, the checkpoint after record 6
    flip_byte(image.ring, writer.written[1].position + 60, journal_size=image.js)  # record 2
    result = image.recover(TOLERATE)
    r = result.report
    assert (r.slot, r.seq) == (1, 1)
    assert [d.reason for d in r.corruption] == [Reason.SLOT_LOST]
    assert Reason.DURABLE_RECORD_LOST not in [d.reason for d in r.corruption]
    assert result.image == writer.written[0].state


def test_same_generation_vouchers_still_report_a_durable_record_lost() -> None:
    """A record of the base slot's generation vouching for a damaged one is still corruption."""
    image, writer = history(sync=(3,))  # records 4 to 6 say records up to 3 were durable
    image.damage_slot(0)
    flip_byte(image.ring, writer.written[1].position + 60, journal_size=image.js)
    error = image.corrupt(TOLERATE)
    assert error.reason is Reason.DURABLE_RECORD_LOST
    reasons = [d.reason for d in image.recover(SALVAGE).report.corruption]
    assert reasons == [Reason.DURABLE_RECORD_LOST, Reason.SLOT_LOST]


def test_header_padding_damage_is_refused(tmp_path: Path) -> None:
    """A non-zero byte in the header padding after the descriptor makes the header damaged."""
    path = tmp_path / "s.jst"
    js.open(path, Counter).close()
    data = bytearray(path.read_bytes())
    flip_byte(data, 4095)
    path.write_bytes(data)
    with pytest.raises(js.Unrecoverable, match="padding"):
        js.open(path, Counter, readonly=True)
    assert run_cli("check", path)[0] == _cli.EXIT_UNRECOVERABLE


@pytest.mark.parametrize("back", [8, 16, 24, 40, 48])
def test_max_epoch_counts_records_whose_header_straddles_the_ring_end(back: int) -> None:
    """Headers straddling the ring's end are found: their kind field never straddles it."""
    js_ = 4096
    ring = bytearray(js_)
    write_record(ring, 3 * js_ + 400, epoch=3)
    write_record(ring, 3 * js_ + js_ - back, epoch=9)
    assert max_epoch_in_ring(ring, js_) == 9


def test_scans_find_anchors_across_chunk_boundaries(monkeypatch: pytest.MonkeyPatch) -> None:
    """Chunked scans find a needle that spans two chunks exactly once."""
    monkeypatch.setattr(_journal, "SCAN_CHUNK", 16)
    data = bytes(30) + b"NEEDLE" + bytes(20) + b"NEEDLE" + bytes(3)
    assert [at for at, _ in find_all(data, (b"NEEDLE",), 0, len(data))] == [30, 56]
    assert list(find_all(data, (b"NEEDLE", b"EDLE"), 0, len(data))) == [
        (30, b"NEEDLE"),
        (32, b"EDLE"),
        (56, b"NEEDLE"),
        (58, b"EDLE"),
    ]
    ring = bytearray(4096)
    write_record(ring, 4096 * 3 + 4096 - 16, epoch=9)
    assert max_epoch_in_ring(ring, 4096) == 9


def test_strict_torn_tail_suggests_the_default_mode(tmp_path: Path) -> None:
    """A torn tail in strict mode points at tolerate-tail, never at salvage."""
    path = tmp_path / "s.jst"
    with js.open(path, Counter) as store:
        store.commit(Counter(1))
        copy = tmp_path / "crash.jst"
        copy.write_bytes(path.read_bytes())
        offset = store.header.journal_offset + store.position
    data = bytearray(copy.read_bytes())
    data[offset : offset + RECORD_HEADER_SIZE] = b"\x01" * RECORD_HEADER_SIZE  # torn write
    copy.write_bytes(data)
    with pytest.raises(js.StoreCorrupt, match="torn tail") as info:
        js.open(copy, Counter, readonly=True, recovery=RecoveryMode.STRICT)
    assert "tolerate-tail" in str(info.value)
    assert "salvage" not in str(info.value)
    code, _, err = run_cli("dump", copy, "--mode", "strict")
    assert code == _cli.EXIT_CORRUPT
    assert "tolerate-tail" in err
    assert "salvage" not in err


def test_torn_record_header_at_the_tail_is_found_by_field() -> None:
    """set_record_field forges the header fields the scans search (kept working for fuzzing)."""
    ring = bytearray(4096)
    write_record(ring, 0, epoch=2)
    set_record_field(ring, 0, "epoch", 5)
    assert max_epoch_in_ring(ring, 4096) == 0  # the crc no longer holds
    fix_record_crc(ring, 0)
    assert max_epoch_in_ring(ring, 4096) == 5


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs Linux /proc")
def test_check_of_sparse_slots_declaring_the_largest_state_stays_small(tmp_path: Path) -> None:
    """Slots declaring a MAX_STATE_SIZE state whose crcs fail are refused without a copy.

    The crc runs over the mapping in chunks before the slot is copied, so two forged 256 MiB
    slots cost a chunk of memory, not the state's size.
    """
    path = tmp_path / "s.jst"
    header = forge_store(
        str(path),
        descriptor=blob_descriptor(MAX_STATE_SIZE - 4),
        state_size=MAX_STATE_SIZE,
        journal_size=JOURNAL,
    )
    with open(path, "r+b") as f:
        for offset in header.slot_offsets:
            f.seek(offset + SLOT_CRC_OFFSET)
            f.write(b"\xde\xad\xbe\xef")
    code, peak = _peak_kib("check", str(path))
    assert code == _cli.EXIT_UNRECOVERABLE
    assert peak < 200 * 1024  # a copy of either slot alone would be 256 MiB
