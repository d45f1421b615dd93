"""The replica object format: keys, round trips, and every damage refused as ReplicaCorrupt."""

from __future__ import annotations

import json
import struct
from collections.abc import Callable

import pytest
from hypothesis import given
from hypothesis import strategies as st

import journalstate as js
from journalstate._checksums import crc
from journalstate.replicate._objformat import (
    MAGIC,
    OBJECT_HEAD_SIZE,
    ParsedKey,
    decode_object,
    encode_manifest,
    encode_object,
    encode_segment,
    encode_snapshot,
    generation_id,
    is_generation_id,
    manifest_key,
    parse_key,
    segment_key,
    snapshot_key,
)

FILE_ID = bytes(range(16))
GEN = "1700000000000-0123456789abcdef"


def manifest() -> bytes:
    return encode_manifest(
        file_id=FILE_ID,
        generation=GEN,
        host="h",
        pid=7,
        source="writer",
        reason="start",
        previous=None,
        base_seq=3,
        state_size=16,
        journal_size=4096,
        written_at=1.5,
    )


def snapshot(seq: int = 3, image: bytes = b"s" * 16) -> bytes:
    return encode_snapshot(
        file_id=FILE_ID,
        generation=GEN,
        seq=seq,
        epoch=2,
        descriptor=b"desc",
        image=image,
        journal_size=4096,
        written_at=2.0,
    )


def segment(first: int = 4, last: int = 5, records: bytes = b"r" * 64) -> bytes:
    return encode_segment(
        file_id=FILE_ID,
        generation=GEN,
        first_seq=first,
        last_seq=last,
        first_position=128,
        prev_state_crc=11,
        state_crc=12,
        epochs=(2, 3),
        records=records,
        written_at=3.0,
    )


def fix_crc(data: bytes | bytearray) -> bytes:
    """Recompute an object's trailing crc after a deliberate change."""
    body = bytes(data[:-4])
    return body + struct.pack("<I", crc(body))


def with_meta(data: bytes, change: Callable[[dict[str, object]], object]) -> bytes:
    """Rewrite an object's meta (re-framed, crc fixed): damage that only the meta checks see."""
    (meta_length,) = struct.unpack_from("<I", data, 12)
    meta = json.loads(data[OBJECT_HEAD_SIZE : OBJECT_HEAD_SIZE + meta_length])
    body = data[OBJECT_HEAD_SIZE + meta_length : -4]
    change(meta)
    return encode_object(data[8], meta, body)


def test_generation_ids_sort_by_time_and_differ() -> None:
    """Generation ids are 13 ms digits and 16 hex; later ones sort after earlier ones."""
    a, b, c = generation_id(1.0), generation_id(2.0), generation_id(2.0)
    assert a == "0000000001000-" + a[14:]
    assert is_generation_id(a)
    assert a < b
    assert b != c
    assert not is_generation_id("0000000001000-XYZ")
    assert is_generation_id(generation_id())


def test_keys_parse_back() -> None:
    """Every key helper's key parses back to what it names."""
    assert manifest_key(GEN) == f"generations/{GEN}/generation"
    assert snapshot_key(GEN, 5) == f"generations/{GEN}/snapshots/{5:020d}.snapshot"
    assert segment_key(GEN, 6, 9) == f"generations/{GEN}/segments/{6:020d}-{9:020d}.segment"
    assert parse_key(manifest_key(GEN)) == ParsedKey("generation", GEN)
    assert parse_key(snapshot_key(GEN, 5)) == ParsedKey("snapshot", GEN, 5, 5)
    assert parse_key(segment_key(GEN, 6, 9)) == ParsedKey("segment", GEN, 6, 9)


@pytest.mark.parametrize(
    "key",
    [
        "generations/x/generation",
        f"generations/{GEN}/snapshots/5.snapshot",
        f"generations/{GEN}/segments/{9:020d}-{6:020d}.segment",
        f"generations/{GEN}/generation/extra",
        "README",
        "",
    ],
)
def test_foreign_keys_do_not_parse(key: str) -> None:
    """A key no shipper writes is refused with ValueError."""
    with pytest.raises(ValueError, match=r"replica object|first seq"):
        parse_key(key)


@given(seq=st.integers(0, 10**19), n=st.integers(0, 10**6))
def test_key_order_is_seq_order(seq: int, n: int) -> None:
    """Zero-padded seqs make key order seq order (so a listing is in history order)."""
    assert (snapshot_key(GEN, seq) < snapshot_key(GEN, seq + n + 1)) is True
    assert segment_key(GEN, seq, seq) < segment_key(GEN, seq + n + 1, seq + n + 1)


def test_round_trips() -> None:
    """Each kind decodes to the meta and body it was encoded with."""
    m = decode_object(manifest(), manifest_key(GEN))
    assert m.kind == "generation"
    assert m.body == b""
    assert m.meta == {
        "format": 1,
        "kind": "generation",
        "file_id": FILE_ID.hex(),
        "generation": GEN,
        "written_at": 1.5,
        "host": "h",
        "pid": 7,
        "source": "writer",
        "reason": "start",
        "previous": None,
        "base_seq": 3,
        "state_size": 16,
        "journal_size": 4096,
    }
    s = decode_object(snapshot(), snapshot_key(GEN, 3))
    assert (s.kind, s.descriptor, s.image) == ("snapshot", b"desc", b"s" * 16)
    assert s.meta["state_crc"] == crc(b"s" * 16)
    assert s.meta["descriptor_length"] == 4
    g = decode_object(segment(), segment_key(GEN, 4, 5))
    assert (g.kind, g.body) == ("segment", b"r" * 64)
    assert g.meta["prev_seq"] == 3
    assert g.meta["count"] == 2
    assert g.meta["epochs"] == [2, 3]


def test_golden_bytes() -> None:
    """The framing is pinned: magic, kind, reserved, meta length, sorted compact JSON, crc."""
    data = manifest()
    assert data[:8] == MAGIC == b"jsrepl\x00\x01"
    assert data[8:12] == b"\x01\x00\x00\x00"
    (meta_length,) = struct.unpack_from("<I", data, 12)
    meta = data[16 : 16 + meta_length]
    assert meta.startswith(b'{"base_seq":3,"file_id":"000102030405060708090a0b0c0d0e0f"')
    assert len(data) == 16 + meta_length + 4
    assert struct.unpack_from("<I", data, len(data) - 4)[0] == crc(data[:-4]) == 0xF85D670F
    assert meta_length == 259
    assert len(data) == 279


def test_a_key_under_a_longer_prefix_is_accepted() -> None:
    """decode_object accepts a key with more prefix before ``generations/``."""
    assert decode_object(manifest(), "a/b/" + manifest_key(GEN)).kind == "generation"


def _flip(at: int) -> Callable[[bytes], bytes]:
    def damage(data: bytes) -> bytes:
        b = bytearray(data)
        b[at if at >= 0 else len(b) + at] ^= 0x01
        return bytes(b)

    return damage


DAMAGES: dict[str, tuple[Callable[[bytes], bytes], str]] = {
    "empty": (lambda d: b"", "too short"),
    "cut short": (lambda d: d[:-1], "checksum|past"),
    "cut to the head": (lambda d: d[:19], "too short|past"),
    "magic": (_flip(0), "magic"),
    "kind byte": (lambda d: fix_crc(d[:8] + b"\x09" + d[9:]), "unknown kind"),
    "reserved": (lambda d: fix_crc(d[:9] + b"\x01" + d[10:]), "reserved"),
    "meta length": (lambda d: d[:12] + struct.pack("<I", 1 << 30) + d[16:], "meta_length"),
    "meta byte": (_flip(20), "checksum"),
    "body byte": (_flip(-6), "checksum"),
    "crc byte": (_flip(-1), "checksum"),
    "appended": (lambda d: d + b"\0", "checksum"),
}


@pytest.mark.parametrize("name", sorted(DAMAGES))
@pytest.mark.parametrize("which", ["manifest", "snapshot", "segment"])
def test_every_damage_is_corrupt(name: str, which: str) -> None:
    """Each damage of each kind of object raises ReplicaCorrupt naming the key."""
    data, key = {
        "manifest": (manifest(), manifest_key(GEN)),
        "snapshot": (snapshot(), snapshot_key(GEN, 3)),
        "segment": (segment(), segment_key(GEN, 4, 5)),
    }[which]
    damage, message = DAMAGES[name]
    with pytest.raises(js.ReplicaCorrupt, match=message) as e:
        decode_object(damage(data), key, url="memory://x")
    assert e.value.key == key
    assert e.value.url == "memory://x"
    assert isinstance(e.value, js.ReplicationError)


@given(data=st.data())
def test_any_flipped_byte_is_corrupt(data: st.DataObject) -> None:
    """Any single flipped bit anywhere in an object is caught (crc32c catches all of them)."""
    obj = data.draw(st.sampled_from([manifest(), snapshot(), segment()]))
    at = data.draw(st.integers(0, len(obj) - 1))
    bit = data.draw(st.integers(0, 7))
    damaged = bytearray(obj)
    damaged[at] ^= 1 << bit
    key = data.draw(
        st.sampled_from([manifest_key(GEN), snapshot_key(GEN, 3), segment_key(GEN, 4, 5)])
    )
    with pytest.raises(js.ReplicaCorrupt):
        decode_object(bytes(damaged), key)


META_DAMAGES: dict[str, tuple[str, Callable[[dict[str, object]], object], str]] = {
    "format": ("manifest", lambda m: m.update(format=2), "format 2"),
    "kind name": ("manifest", lambda m: m.update(kind="snapshot"), "differs"),
    "missing key": ("manifest", lambda m: m.pop("host"), "'host'"),
    "bool for int": ("manifest", lambda m: m.update(pid=True), "'pid'"),
    "file id": ("manifest", lambda m: m.update(file_id="XYZ"), "file_id"),
    "generation": ("manifest", lambda m: m.update(generation="g"), "generation id"),
    "other generation": (
        "manifest",
        lambda m: m.update(generation="1700000000000-ffffffffffffffff"),
        "generation 1700000000000-ffffffffffffffff",
    ),
    "reason": ("manifest", lambda m: m.update(reason="whim"), "reason"),
    "snapshot seq": ("snapshot", lambda m: m.update(seq=4), "seq 4"),
    "state size": ("snapshot", lambda m: m.update(state_size=15), "body has"),
    "state crc": ("snapshot", lambda m: m.update(state_crc=1), "state_crc"),
    "segment seqs": ("segment", lambda m: m.update(last_seq=6), "records 4..6"),
    "prev seq": ("segment", lambda m: m.update(prev_seq=1), "follow on"),
    "count": ("segment", lambda m: m.update(count=3), "count 3"),
    "epochs": ("segment", lambda m: m.update(epochs=[3, 2]), "epochs"),
    "epochs shape": ("segment", lambda m: m.update(epochs=[1]), "epochs"),
    "position": ("segment", lambda m: m.update(first_position=3), "position 3"),
}


@pytest.mark.parametrize("name", sorted(META_DAMAGES))
def test_meta_damage_is_corrupt(name: str) -> None:
    """A checksummed object whose meta is inconsistent is ReplicaCorrupt too."""
    which, change, message = META_DAMAGES[name]
    data, key = {
        "manifest": (manifest(), manifest_key(GEN)),
        "snapshot": (snapshot(), snapshot_key(GEN, 3)),
        "segment": (segment(), segment_key(GEN, 4, 5)),
    }[which]
    with pytest.raises(js.ReplicaCorrupt, match=message):
        decode_object(with_meta(data, change), key)


def test_meta_that_is_not_an_object_is_corrupt() -> None:
    """Meta bytes that are not a JSON object are ReplicaCorrupt."""
    for meta in (b"[1]", b"\xff\xfe", b"{"):
        data = MAGIC + b"\x01\0\0\0" + struct.pack("<I", len(meta)) + meta
        data += struct.pack("<I", crc(data))
        with pytest.raises(js.ReplicaCorrupt, match="meta"):
            decode_object(data, manifest_key(GEN))


def test_an_object_under_another_key_is_corrupt() -> None:
    """An object stored under a key that names something else is refused."""
    with pytest.raises(js.ReplicaCorrupt, match="holds a snapshot"):
        decode_object(snapshot(), manifest_key(GEN))
    with pytest.raises(js.ReplicaCorrupt, match="seq 3"):
        decode_object(snapshot(), snapshot_key(GEN, 4))
    with pytest.raises(js.ReplicaCorrupt, match=r"records 4\.\.5"):
        decode_object(segment(), segment_key(GEN, 4, 6))
    with pytest.raises(js.ReplicaCorrupt, match="not the key"):
        decode_object(segment(), "elsewhere")


def test_segment_bodies_are_whole_records() -> None:
    """A segment body that is empty or not a multiple of 8 bytes is refused."""
    with pytest.raises(js.ReplicaCorrupt, match="bytes of records"):
        decode_object(segment(records=b""), segment_key(GEN, 4, 5))
    with pytest.raises(js.ReplicaCorrupt, match="bytes of records"):
        decode_object(segment(records=b"r" * 12), segment_key(GEN, 4, 5))
