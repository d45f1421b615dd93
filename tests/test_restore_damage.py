"""Restore refuses every damaged or ambiguous replica with its typed error, leaving no file."""

from __future__ import annotations

import itertools
import os
import struct
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import attrs
import pytest

import journalstate as js
from journalstate._format import decode_record_header, record_crc
from journalstate._writer import encode_patches, encode_record
from journalstate.replicate._objects import ObjectStore, open_url
from journalstate.replicate._objformat import (
    decode_object,
    encode_object,
    encode_segment,
    manifest_key,
    segment_key,
    snapshot_key,
)
from tests.conftest import Progress
from tests.objectstores import S3Server
from tests.replicas import History, manifest_bytes, record_history, segment_bytes, ship

pytest.importorskip("obstore")

GEN_A = "1700000000000-aaaaaaaaaaaaaaaa"
GEN_B = "1700000001000-bbbbbbbbbbbbbbbb"


def states(n: int, start: int = 1) -> list[Progress]:
    """``n`` distinct states."""
    return [Progress(step=i, label=f"s{i}") for i in range(start, start + n)]


@pytest.fixture(scope="module")
def history(tmp_path_factory: pytest.TempPathFactory) -> History:
    """Twelve commits (seq 1..12), a reopen (a new epoch) before the eighth."""
    path = tmp_path_factory.mktemp("history") / "h.jst"
    return record_history(path, Progress, states(12), reopen_at=[7])


@pytest.fixture(scope="module")
def other(tmp_path_factory: pytest.TempPathFactory) -> History:
    """Another store (another file id) with other states at the same seqs."""
    path = tmp_path_factory.mktemp("other") / "o.jst"
    return record_history(path, Progress, states(12, start=100))


def shipped(url: str, h: History, **kw: Any) -> ObjectStore:
    """The replica at ``url`` holding generation A of ``h``: segments 1-3, 4-6, 7-9, 10-12."""
    store = open_url(url)
    ship(store, h, GEN_A, cuts=[3, 6, 9], **kw)
    return store


def refused(url: str, dest: Path, error: type[Exception], match: str, **kw: Any) -> Any:
    """Restore raises ``error`` matching ``match`` and leaves nothing at ``dest``."""
    with pytest.raises(error, match=match) as e:
        js.restore(url, dest, **kw)
    assert not os.path.lexists(dest)
    assert [p for p in os.listdir(dest.parent) if p.startswith(".jst-")] == []
    return e.value


def replace(store: ObjectStore, key: str, data: bytes) -> str:
    """Stand for an object damaged in the store: the replica at a new prefix, ``key`` changed.

    Objects are never overwritten, so the test copies every other object under a new URL.
    """
    url = f"{store.url}-damaged-{uuid.uuid4().hex[:8]}"
    copy = open_url(url)
    for k in store.list():
        copy.put_new(k, data if k == key else store.get(k))
    return url


def drop(store: ObjectStore, key: str) -> str:
    """The replica without ``key`` (at a new prefix)."""
    url = f"{store.url}-without-{uuid.uuid4().hex[:8]}"
    copy = open_url(url)
    for k in store.list():
        if k != key:
            copy.put_new(k, store.get(k))
    return url


SEG_4_6 = segment_key(GEN_A, 4, 6)


def test_a_missing_segment_is_a_gap(memory_url: str, history: History, tmp_path: Path) -> None:
    """Without segment 4-6: seq 3 restores; the newest and seq 5 or 9 are a ReplicaGap."""
    url = drop(shipped(memory_url, history), SEG_4_6)
    e = refused(
        url, tmp_path / "a.jst", js.ReplicaGap, r"reaches seq 3 .* up to seq 12 \(missing: 4..6\)"
    )
    assert e.last_seq == 3
    e = refused(
        url, tmp_path / "b.jst", js.ReplicaGap, r"only up to seq 3; seq 9 lies after a gap", seq=9
    )
    assert (e.last_seq, e.wanted_seq) == (3, 9)
    refused(url, tmp_path / "c.jst", js.ReplicaGap, "seq 5 lies after a gap", seq=5)
    assert js.restore(url, tmp_path / "d.jst", seq=3).seq == 3


def test_a_missing_last_segment_is_not_a_gap(
    memory_url: str, history: History, tmp_path: Path
) -> None:
    """Without the newest segment the replica simply ends earlier (nothing after it is held)."""
    url = drop(shipped(memory_url, history), segment_key(GEN_A, 10, 12))
    assert js.restore(url, tmp_path / "a.jst").seq == 9
    refused(url, tmp_path / "b.jst", js.ReplicaNotFound, "no generation holds seq 11", seq=11)


def flip(data: bytes, at: int) -> bytes:
    b = bytearray(data)
    b[at] ^= 0x10
    return bytes(b)


@pytest.mark.parametrize("where", ["first byte", "meta", "a record", "crc"])
def test_a_flipped_byte_in_a_segment_is_corrupt(
    where: str, memory_url: str, history: History, tmp_path: Path
) -> None:
    """A flipped byte anywhere in segment 4-6 is ReplicaCorrupt naming it; seq 3 still restores."""
    store = shipped(memory_url, history)
    data = store.get(SEG_4_6)
    at = {"first byte": 0, "meta": 20, "a record": len(data) - 40, "crc": len(data) - 1}[where]
    url = replace(store, SEG_4_6, flip(data, at))
    e = refused(url, tmp_path / "a.jst", js.ReplicaCorrupt, "magic|checksum")
    assert e.key == SEG_4_6
    refused(url, tmp_path / "b.jst", js.ReplicaCorrupt, "checksum|magic", seq=4)
    assert js.restore(url, tmp_path / "c.jst", seq=3).seq == 3


def test_a_damaged_snapshot_is_corrupt(memory_url: str, history: History, tmp_path: Path) -> None:
    """A flipped byte in the snapshot is ReplicaCorrupt: nothing restores from it."""
    store = shipped(memory_url, history)
    key = snapshot_key(GEN_A, 0)
    url = replace(store, key, flip(store.get(key), 100))
    assert refused(url, tmp_path / "a.jst", js.ReplicaCorrupt, "checksum").key == key


def test_a_segment_of_another_generation_is_corrupt(
    memory_url: str, history: History, tmp_path: Path
) -> None:
    """Generation B's segment stored under generation A's key is refused."""
    store = shipped(memory_url, history)
    theirs = segment_bytes(history, GEN_B, 4, 6)
    url = replace(store, SEG_4_6, theirs)
    refused(url, tmp_path / "a.jst", js.ReplicaCorrupt, f"generation {GEN_B}")


def test_a_segment_of_another_store_is_corrupt(
    memory_url: str, history: History, other: History, tmp_path: Path
) -> None:
    """Another store's segment (another file id) in this generation is refused."""
    store = shipped(memory_url, history)
    url = replace(store, SEG_4_6, segment_bytes(other, GEN_A, 4, 6))
    refused(url, tmp_path / "a.jst", js.ReplicaCorrupt, f"belongs to store {other.file_id.hex()}")


def test_another_history_with_this_file_id_is_corrupt(
    memory_url: str, history: History, other: History, tmp_path: Path
) -> None:
    """Another history's records under this file id: the rolling state crc refuses them."""
    store = shipped(memory_url, history)
    forged = attrs_evolve(other, file_id=history.file_id)
    url = replace(store, SEG_4_6, segment_bytes(forged, GEN_A, 4, 6))
    refused(url, tmp_path / "a.jst", js.ReplicaCorrupt, "another history")
    # Its prev_state_crc forged to match too: the next segment no longer continues it.
    seg = decode_object(segment_bytes(forged, GEN_A, 4, 6), SEG_4_6)
    meta = dict(seg.meta, prev_state_crc=history.state_crc(3))
    url = replace(store, SEG_4_6, encode_object(3, meta, seg.body))
    e = refused(url, tmp_path / "b.jst", js.ReplicaCorrupt, "another history")
    assert e.key == segment_key(GEN_A, 7, 9)
    # And a state_crc that does not match the records is caught at the segment itself.
    seg = decode_object(segment_bytes(history, GEN_A, 4, 6), SEG_4_6)
    url = replace(store, SEG_4_6, encode_object(3, dict(seg.meta, state_crc=1), seg.body))
    refused(url, tmp_path / "c.jst", js.ReplicaCorrupt, "the state after seq 6 has crc")


def attrs_evolve(h: History, **changes: Any) -> History:
    return attrs.evolve(h, **changes)


def resegment(h: History, first: int, last: int, records: bytes, **meta: Any) -> bytes:
    """Segment ``first..last`` of ``h`` holding ``records`` instead (meta as given)."""
    recs = [h.records[s] for s in range(first, last + 1)]
    fields: dict[str, Any] = {
        "file_id": h.file_id,
        "generation": GEN_A,
        "first_seq": first,
        "last_seq": last,
        "first_position": recs[0].position,
        "prev_state_crc": h.state_crc(first - 1),
        "state_crc": h.state_crc(last),
        "epochs": (min(r.epoch for r in recs), max(r.epoch for r in recs)),
        "records": records,
    }
    fields.update(meta)
    return encode_segment(**fields)


def record(h: History, seq: int, **change: Any) -> bytes:
    """Record ``seq`` of ``h`` re-encoded (with a valid crc) with ``change`` applied."""
    raw = h.records[seq].raw
    head = decode_record_header(raw)
    fields: dict[str, Any] = {
        "epoch": head.epoch,
        "seq": head.seq,
        "position": head.position,
        "durable_seq": head.durable_seq,
        "generation": head.generation,
        "payload": raw[48 : 48 + head.length],
    }
    fields.update(change)
    return encode_record(**fields)


RECORD_DAMAGES: dict[str, tuple[Callable[[History], bytes], str]] = {
    "record crc": (
        lambda h: flip(h.records[4].raw, 30) + h.records[5].raw + h.records[6].raw,
        "record at byte 0 .*checksum mismatch",
    ),
    "a record missing": (
        lambda h: h.records[4].raw + h.records[6].raw,
        "holds seq 6",
    ),
    "records swapped": (
        lambda h: h.records[5].raw + h.records[4].raw + h.records[6].raw,
        "holds seq 5",
    ),
    "wrong position": (
        lambda h: (
            record(h, 4, position=h.records[4].position + 8) + h.records[5].raw + h.records[6].raw
        ),
        "holds position",
    ),
    "epoch goes back": (
        lambda h: h.records[4].raw + record(h, 5, epoch=0) + h.records[6].raw,
        "epoch 0 is older",
    ),
    "patch outside the state": (
        lambda h: (
            record(h, 4, payload=encode_patches([(10**6, b"x")]))
            + h.records[5].raw
            + h.records[6].raw
        ),
        "outside the",
    ),
    "cut short": (
        lambda h: (h.records[4].raw + h.records[5].raw + h.records[6].raw)[:-8],
        "runs past|holds records|cut short",
    ),
    "trailing bytes": (
        lambda h: h.records[4].raw + h.records[5].raw + h.records[6].raw + record(h, 7),
        "epoch|holds records|position",
    ),
    "bad kind": (
        lambda h: bad_kind(h.records[4].raw) + h.records[5].raw + h.records[6].raw,
        "bad kind",
    ),
}


def bad_kind(raw: bytes) -> bytes:
    b = bytearray(raw)
    struct.pack_into("<H", b, 12, 2)
    struct.pack_into("<I", b, 0, record_crc(b))
    return bytes(b)


@pytest.mark.parametrize("name", sorted(RECORD_DAMAGES))
def test_damaged_records_are_corrupt(
    name: str, memory_url: str, history: History, tmp_path: Path
) -> None:
    """Checksummed segments whose records fail the journal's checks are ReplicaCorrupt."""
    store = shipped(memory_url, history)
    build, message = RECORD_DAMAGES[name]
    url = replace(store, SEG_4_6, resegment(history, 4, 6, build(history)))
    e = refused(url, tmp_path / "a.jst", js.ReplicaCorrupt, message)
    assert e.key == SEG_4_6
    assert js.restore(url, tmp_path / "b.jst", seq=3).seq == 3


def test_segment_meta_that_lies_about_epochs_is_corrupt(
    memory_url: str, history: History, tmp_path: Path
) -> None:
    """A segment whose meta epochs differ from its records' is refused."""
    store = shipped(memory_url, history)
    records = b"".join(history.records[s].raw for s in (4, 5, 6))
    url = replace(store, SEG_4_6, resegment(history, 4, 6, records, epochs=(0, 9)))
    refused(url, tmp_path / "a.jst", js.ReplicaCorrupt, "epochs")


def test_a_segment_from_another_position_is_a_gap(
    memory_url: str, history: History, tmp_path: Path
) -> None:
    """A segment that does not start where the previous one ended is a ReplicaGap."""
    store = shipped(memory_url, history)
    recs = [record(history, s, position=history.records[s].position + 4096) for s in (4, 5, 6)]
    url = replace(
        store,
        SEG_4_6,
        resegment(history, 4, 6, b"".join(recs), first_position=history.records[4].position + 4096),
    )
    refused(url, tmp_path / "a.jst", js.ReplicaGap, "starts at journal position")


def test_two_file_ids_are_ambiguous(
    memory_url: str, history: History, other: History, tmp_path: Path
) -> None:
    """Generations of two stores under one prefix: ReplicaAmbiguous, unless one is chosen."""
    store = shipped(memory_url, history)
    ship(store, other, GEN_B)
    e = refused(memory_url, tmp_path / "a.jst", js.ReplicaAmbiguous, "2 different stores")
    assert e.generations == (GEN_A, GEN_B)
    assert GEN_A in str(e)
    assert "--generation" in str(e)
    assert js.restore(memory_url, tmp_path / "b.jst", generation=GEN_A).seq == 12
    report = js.restore(memory_url, tmp_path / "c.jst", generation=GEN_B)
    assert report.file_id == other.file_id.hex()


def test_two_concurrent_generations_are_ambiguous(
    memory_url: str, history: History, tmp_path: Path
) -> None:
    """A generation whose manifest predates the previous one's last object: two shippers."""
    store = open_url(memory_url)
    clock = itertools.count(10)
    ship(store, history, GEN_A, cuts=[3, 6, 9], clock=clock)  # written_at 10..15
    ship(store, history, GEN_B, base=6, clock=itertools.count(12))  # started at 12
    e = refused(
        memory_url, tmp_path / "a.jst", js.ReplicaAmbiguous, "two shippers wrote here at once"
    )
    assert e.generations == (GEN_A, GEN_B)
    assert js.restore(memory_url, tmp_path / "b.jst", generation=GEN_B).generation == GEN_B


def test_sequential_generations_choose_the_newest(
    memory_url: str, history: History, tmp_path: Path
) -> None:
    """One generation after another: the newest is restored; seq= takes the newest holding it."""
    store = open_url(memory_url)
    clock = itertools.count(1)
    ship(store, history, GEN_A, cuts=[3], upto=9, clock=clock)
    ship(store, history, GEN_B, base=6, upto=8, clock=clock)  # e.g. a rewound store
    assert js.restore(memory_url, tmp_path / "a.jst").generation == GEN_B
    assert js.restore(memory_url, tmp_path / "b.jst").seq == 8
    assert js.restore(memory_url, tmp_path / "c.jst", seq=9).generation == GEN_A
    assert js.restore(memory_url, tmp_path / "d.jst", seq=2).generation == GEN_A
    assert js.restore(memory_url, tmp_path / "e.jst", seq=7).generation == GEN_B


def test_a_generation_without_a_snapshot_is_skipped(
    memory_url: str, history: History, tmp_path: Path
) -> None:
    """A newer generation that got no further than its manifest holds nothing to restore."""
    store = shipped(memory_url, history)
    store.put_new(manifest_key(GEN_B), manifest_bytes(history, GEN_B, 12, written_at=1e10))
    assert js.restore(memory_url, tmp_path / "a.jst").generation == GEN_A


def test_a_damaged_manifest_is_corrupt(memory_url: str, history: History, tmp_path: Path) -> None:
    """A generation whose manifest is damaged or missing is refused unless another is chosen."""
    store = shipped(memory_url, history)
    url = replace(store, manifest_key(GEN_A), b"junk")
    refused(url, tmp_path / "a.jst", js.ReplicaCorrupt, "no readable manifest")
    refused(url, tmp_path / "b.jst", js.ReplicaCorrupt, "too short", generation=GEN_A)
    url = drop(store, manifest_key(GEN_A))
    refused(url, tmp_path / "c.jst", js.ReplicaCorrupt, "no readable manifest")


def test_nothing_there(memory_url: str, history: History, tmp_path: Path) -> None:
    """An empty prefix, an unknown generation and a seq beyond the replica are ReplicaNotFound."""
    refused(memory_url, tmp_path / "a.jst", js.ReplicaNotFound, "holds no generation")
    shipped(memory_url, history)
    refused(
        memory_url,
        tmp_path / "b.jst",
        js.ReplicaNotFound,
        f"no generation {GEN_B}",
        generation=GEN_B,
    )
    e = refused(
        memory_url,
        tmp_path / "c.jst",
        js.ReplicaNotFound,
        r"seq 13 \(the objects reach seq 12\)",
        seq=13,
    )
    assert e.seq == 13
    refused(memory_url, tmp_path / "d.jst", js.ReplicaNotFound, "whole number", seq=-1)


def test_a_destination_is_checked_before_anything_is_read(memory_url: str, tmp_path: Path) -> None:
    """An existing file or a missing directory at the destination is refused first."""
    (tmp_path / "there.jst").write_bytes(b"keep")
    with pytest.raises(js.DestinationExists):
        js.restore(memory_url, tmp_path / "there.jst")
    assert (tmp_path / "there.jst").read_bytes() == b"keep"
    with pytest.raises(js.BadDestination, match="does not exist"):
        js.restore(memory_url, tmp_path / "no" / "x.jst")


def test_a_foreign_file_in_the_prefix_is_ignored(
    memory_url: str, history: History, tmp_path: Path
) -> None:
    """Keys that no shipper writes (a README, a stray upload) do not disturb restore."""
    store = shipped(memory_url, history)
    store.put_new("README", b"hello")
    store.put_new(f"generations/{GEN_A}/segments/tmp#1", b"partial")
    assert js.restore(memory_url, tmp_path / "a.jst").seq == 12


def test_list_replicas(memory_url: str, history: History) -> None:
    """list_replicas shows each generation's snapshots, segments, seq range and gaps."""
    assert js.list_replicas(memory_url) == []
    store = open_url(memory_url)
    clock = itertools.count(1)
    ship(store, history, GEN_A, cuts=[3, 6], snapshots=[6], upto=9, clock=clock)
    ship(store, history, GEN_B, base=9, cuts=[10], clock=clock)
    url = drop(store, segment_key(GEN_B, 11, 12))
    store2 = open_url(url)
    store2.put_new(segment_key(GEN_B, 12, 12), segment_bytes(history, GEN_B, 12, 12))
    a, b = js.list_replicas(url)
    assert (a.generation, a.snapshots, a.segments) == (GEN_A, (0, 6), ((1, 3), (4, 6), (7, 9)))
    assert (a.first_seq, a.last_seq, a.gaps, a.newest_seq) == (0, 9, (), 9)
    assert a.file_id == history.file_id.hex()
    assert a.manifest is not None
    assert a.manifest["reason"] == "start"
    assert (b.snapshots, b.segments) == ((9,), ((10, 10), (12, 12)))
    assert (b.first_seq, b.last_seq, b.gaps, b.newest_seq) == (9, 10, ((11, 11),), 12)


@pytest.mark.parametrize("kind", ["file", "s3"])
def test_restore_from_file_and_s3(
    kind: str, history: History, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """Restore and a damaged replica behave the same on file:// and on the S3 server."""
    if kind == "file":
        url = f"file://{tmp_path}/replica"
    else:
        server: S3Server = request.getfixturevalue("s3_server")
        url = server.url()
    store = shipped(url, history, snapshots=[6])
    report = js.restore(url, tmp_path / "a.jst")
    assert (report.seq, report.snapshot_seq) == (12, 6)
    assert js.restore(url, tmp_path / "b.jst", seq=5).seq == 5
    restored: js.Store[Any]
    with js.open(tmp_path / "b.jst", None, readonly=True) as restored:
        assert bytes(restored.state_image()) == history.images[5]
    damaged = replace(store, SEG_4_6, flip(store.get(SEG_4_6), 50))
    refused(damaged, tmp_path / "c.jst", js.ReplicaCorrupt, "checksum", seq=5)
    assert [g.generation for g in js.list_replicas(url)] == [GEN_A]
