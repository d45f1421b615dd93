"""The bytes of a replica's objects and the names of their keys: pure, no I/O.

What belongs here: generation ids, the key of each object (and parsing a key back), encoding
the three kinds of object (generation manifest, snapshot, segment) and decoding any of them
with every check that needs only the object's own bytes. docs/replication.md gives the layout
byte by byte; the names here are the same.

Every object::

    offset  size  field
    0       8     magic        b"jsrepl\\x00\\x01"
    8       1     kind         1 = generation manifest, 2 = snapshot, 3 = segment
    9       3     reserved     zeros
    12      4     meta_length  u32 little endian
    16      M     meta         JSON, UTF-8, keys sorted, no whitespace
    16+M    B     body         kind-specific bytes
    16+M+B  4     crc          crc32c (unmasked) of every byte before it

Checks that need other objects (a segment follows its predecessor, its records replay onto
the state) are restore's, in ``_restore``.
"""

from __future__ import annotations

import json
import os
import re
import struct
import time
from typing import Any, Final

import attrs

from journalstate._checksums import crc
from journalstate._errors import ReplicaCorrupt

MAGIC: Final = b"jsrepl\x00\x01"
OBJECT_HEAD_FMT: Final = "<8sB3sI"  # magic, kind, reserved, meta_length
OBJECT_HEAD_SIZE: Final = 16
assert struct.calcsize(OBJECT_HEAD_FMT) == OBJECT_HEAD_SIZE
CRC_SIZE: Final = 4
FORMAT: Final = 1

KIND_MANIFEST: Final = 1
KIND_SNAPSHOT: Final = 2
KIND_SEGMENT: Final = 3
KIND_NAMES: Final = {
    KIND_MANIFEST: "generation",
    KIND_SNAPSHOT: "snapshot",
    KIND_SEGMENT: "segment",
}

MAX_META_LENGTH: Final = 1 << 20  # a meta is a few hundred bytes; more is damage
MAX_SEGMENT_RECORDS: Final = 16 << 20  # bytes of records one segment holds at most

SOURCES: Final = ("writer", "sidecar")
REASONS: Final = ("start", "lapped", "rewound", "replaced")

_HEAD = struct.Struct(OBJECT_HEAD_FMT)
_GENERATION_RE: Final = re.compile(r"[0-9]{13}-[0-9a-f]{16}")
_SEQ_RE: Final = r"[0-9]{20}"
_KEY_RE: Final = re.compile(
    rf"generations/(?P<gen>[0-9]{{13}}-[0-9a-f]{{16}})/(?:"
    rf"(?P<manifest>generation)"
    rf"|snapshots/(?P<snap>{_SEQ_RE})\.snapshot"
    rf"|segments/(?P<first>{_SEQ_RE})-(?P<last>{_SEQ_RE})\.segment)"
)
GENERATIONS_PREFIX: Final = "generations/"


# --- generation ids and keys ----------------------------------------------------------------------


def generation_id(now: float | None = None) -> str:
    """A new generation id: unix time in ms (13 digits), a dash, 16 random lowercase hex.

    Names sort by start time (until the year 2286); the random part keeps two shippers that
    start in the same millisecond apart.
    """
    ms = int((time.time() if now is None else now) * 1000)
    if not 0 <= ms < 10**13:
        raise ValueError(f"time {now} has no 13-digit millisecond form")
    return f"{ms:013d}-{os.urandom(8).hex()}"


def is_generation_id(text: str) -> bool:
    """Whether ``text`` has the form of a generation id."""
    return _GENERATION_RE.fullmatch(text) is not None


def generation_prefix(generation: str) -> str:
    """The key prefix of every object of ``generation``."""
    return f"{GENERATIONS_PREFIX}{generation}/"


def manifest_key(generation: str) -> str:
    """The key of a generation's manifest."""
    return f"{generation_prefix(generation)}generation"


def snapshot_key(generation: str, seq: int) -> str:
    """The key of a generation's snapshot at ``seq``."""
    return f"{generation_prefix(generation)}snapshots/{seq:020d}.snapshot"


def segment_key(generation: str, first: int, last: int) -> str:
    """The key of a generation's segment holding records ``first`` to ``last``."""
    return f"{generation_prefix(generation)}segments/{first:020d}-{last:020d}.segment"


@attrs.frozen
class ParsedKey:
    """What an object's key says about it."""

    kind: str
    """"generation" (the manifest), "snapshot" or "segment"."""
    generation: str
    first_seq: int | None = None
    """A snapshot's seq, or a segment's first seq; None for a manifest."""
    last_seq: int | None = None
    """A snapshot's seq, or a segment's last seq; None for a manifest."""


def parse_key(key: str) -> ParsedKey:
    """Parse a key relative to the replica's prefix.

    Raises:
        ValueError: the key is not one a shipper writes.
    """
    m = _KEY_RE.fullmatch(key)
    if m is None:
        raise ValueError(f"{key!r} is not the key of a replica object")
    gen = m["gen"]
    if m["manifest"]:
        return ParsedKey("generation", gen)
    if m["snap"]:
        seq = int(m["snap"])
        return ParsedKey("snapshot", gen, seq, seq)
    first, last = int(m["first"]), int(m["last"])
    if first > last:
        raise ValueError(f"{key!r}: a segment's first seq is after its last")
    return ParsedKey("segment", gen, first, last)


# --- encoding -------------------------------------------------------------------------------------


def encode_object(kind: int, meta: dict[str, Any], body: bytes | bytearray | memoryview) -> bytes:
    """Frame ``meta`` and ``body`` as an object of ``kind`` (see the module's docstring)."""
    meta_bytes = json.dumps(meta, sort_keys=True, separators=(",", ":")).encode()
    head = _HEAD.pack(MAGIC, kind, b"\0\0\0", len(meta_bytes))
    data = b"".join((head, meta_bytes, body))
    return data + struct.pack("<I", crc(data))


def _common(
    kind: int, file_id: bytes | str, generation: str, written_at: float | None
) -> dict[str, Any]:
    fid = file_id if isinstance(file_id, str) else file_id.hex()
    return {
        "format": FORMAT,
        "kind": KIND_NAMES[kind],
        "file_id": fid.lower(),
        "generation": generation,
        "written_at": time.time() if written_at is None else written_at,
    }


def encode_manifest(
    *,
    file_id: bytes | str,
    generation: str,
    host: str,
    pid: int,
    source: str,
    reason: str,
    previous: str | None,
    base_seq: int,
    state_size: int,
    journal_size: int,
    written_at: float | None = None,
) -> bytes:
    """A generation manifest (kind 1): who ships this generation, why, and from which seq."""
    assert source in SOURCES
    assert reason in REASONS
    meta = _common(KIND_MANIFEST, file_id, generation, written_at)
    meta.update(
        host=host,
        pid=pid,
        source=source,
        reason=reason,
        previous=previous,
        base_seq=base_seq,
        state_size=state_size,
        journal_size=journal_size,
    )
    return encode_object(KIND_MANIFEST, meta, b"")


def encode_snapshot(
    *,
    file_id: bytes | str,
    generation: str,
    seq: int,
    epoch: int,
    descriptor: bytes,
    image: bytes | bytearray | memoryview,
    journal_size: int,
    written_at: float | None = None,
) -> bytes:
    """A snapshot (kind 2): the schema descriptor and the state image at ``seq``."""
    meta = _common(KIND_SNAPSHOT, file_id, generation, written_at)
    meta.update(
        seq=seq,
        epoch=epoch,
        state_size=len(image),
        journal_size=journal_size,
        state_crc=crc(image),
        descriptor_length=len(descriptor),
    )
    return encode_object(KIND_SNAPSHOT, meta, bytes(descriptor) + bytes(image))


def encode_segment(
    *,
    file_id: bytes | str,
    generation: str,
    first_seq: int,
    last_seq: int,
    first_position: int,
    prev_state_crc: int,
    state_crc: int,
    epochs: tuple[int, int] | list[int],
    records: bytes | bytearray | memoryview,
    count: int | None = None,
    written_at: float | None = None,
) -> bytes:
    """A segment (kind 3): journal records ``first_seq`` to ``last_seq``, contiguous.

    ``state_crc`` is the crc32c of the state image after ``last_seq``, ``prev_state_crc`` that
    after ``first_seq - 1`` (the previous segment's, or the snapshot's).
    """
    assert first_seq <= last_seq
    meta = _common(KIND_SEGMENT, file_id, generation, written_at)
    meta.update(
        first_seq=first_seq,
        last_seq=last_seq,
        first_position=first_position,
        prev_seq=first_seq - 1,
        prev_state_crc=prev_state_crc,
        state_crc=state_crc,
        count=last_seq - first_seq + 1 if count is None else count,
        epochs=[int(epochs[0]), int(epochs[1])],
    )
    return encode_object(KIND_SEGMENT, meta, records)


# --- decoding -------------------------------------------------------------------------------------


@attrs.frozen
class ReplicaObject:
    """A decoded object whose framing, checksum and meta held."""

    kind: str
    """"generation", "snapshot" or "segment"."""
    meta: dict[str, Any]
    body: bytes

    @property
    def descriptor(self) -> bytes:
        """A snapshot's schema descriptor."""
        return self.body[: self.meta["descriptor_length"]]

    @property
    def image(self) -> bytes:
        """A snapshot's state image."""
        return self.body[self.meta["descriptor_length"] :]


_INT = (int,)
_COMMON_KEYS: Final[dict[str, tuple[type, ...]]] = {
    "format": _INT,
    "kind": (str,),
    "file_id": (str,),
    "generation": (str,),
    "written_at": (int, float),
}
_KIND_KEYS: Final[dict[int, dict[str, tuple[type, ...]]]] = {
    KIND_MANIFEST: {
        "host": (str,),
        "pid": _INT,
        "source": (str,),
        "reason": (str,),
        "previous": (str, type(None)),
        "base_seq": _INT,
        "state_size": _INT,
        "journal_size": _INT,
    },
    KIND_SNAPSHOT: {
        "seq": _INT,
        "epoch": _INT,
        "state_size": _INT,
        "journal_size": _INT,
        "state_crc": _INT,
        "descriptor_length": _INT,
    },
    KIND_SEGMENT: {
        "first_seq": _INT,
        "last_seq": _INT,
        "first_position": _INT,
        "prev_seq": _INT,
        "prev_state_crc": _INT,
        "state_crc": _INT,
        "count": _INT,
        "epochs": (list,),
    },
}
_FILE_ID_RE: Final = re.compile(r"[0-9a-f]{32}")


def decode_object(data: bytes, key: str, *, url: str = "") -> ReplicaObject:
    """Decode and check the object stored at ``key``.

    Checks, in order: the length, magic, kind and reserved bytes, ``meta_length``, the crc,
    the meta (JSON object, ``format`` 1, its kind, every key of the kind with its type, a
    32-hex ``file_id``, a generation id), that the key names this object (its generation and
    seqs), and the body: empty for a manifest; for a snapshot, descriptor and image of the
    sizes given and ``state_crc`` over the image; for a segment, at most 16 MiB, a multiple of
    8 bytes, ``prev_seq = first_seq - 1``, ``count`` the records ``first_seq..last_seq`` and
    ``epochs`` as [min, max]. The records themselves are restore's to check.

    Raises:
        ReplicaCorrupt: the first check that fails, naming ``key``.
    """

    def corrupt(message: str) -> ReplicaCorrupt:
        return ReplicaCorrupt(url, message, key=key)

    if len(data) < OBJECT_HEAD_SIZE + CRC_SIZE:
        raise corrupt(f"{len(data)} bytes: too short for an object")
    magic, kind, reserved, meta_length = _HEAD.unpack_from(data)
    if magic != MAGIC:
        raise corrupt(f"bad magic {magic!r} (expected {MAGIC!r})")
    if kind not in KIND_NAMES:
        raise corrupt(f"unknown kind {kind}")
    if reserved != b"\0\0\0":
        raise corrupt("reserved bytes are not zero")
    if meta_length > min(MAX_META_LENGTH, len(data) - OBJECT_HEAD_SIZE - CRC_SIZE):
        raise corrupt(f"meta_length {meta_length} runs past the object")
    (stored,) = struct.unpack_from("<I", data, len(data) - CRC_SIZE)
    if crc(memoryview(data)[: len(data) - CRC_SIZE]) != stored:
        raise corrupt("checksum mismatch (the object is damaged or cut short)")
    try:
        meta = json.loads(data[OBJECT_HEAD_SIZE : OBJECT_HEAD_SIZE + meta_length])
    except (ValueError, UnicodeDecodeError) as e:
        raise corrupt(f"meta is not JSON: {e}") from None
    if not isinstance(meta, dict):
        raise corrupt("meta is not a JSON object")
    for name, types in {**_COMMON_KEYS, **_KIND_KEYS[kind]}.items():
        value = meta.get(name, ...)
        if value is ... or not isinstance(value, types) or isinstance(value, bool):
            raise corrupt(f"meta key {name!r} is missing or has the wrong type")
    if meta["format"] != FORMAT:
        raise corrupt(f"format {meta['format']} is not {FORMAT}: upgrade journalstate to read it")
    if meta["kind"] != KIND_NAMES[kind]:
        raise corrupt(f"meta kind {meta['kind']!r} differs from the kind byte {kind}")
    if not _FILE_ID_RE.fullmatch(meta["file_id"]):
        raise corrupt(f"file_id {meta['file_id']!r} is not 32 lowercase hex digits")
    if not is_generation_id(meta["generation"]):
        raise corrupt(f"generation {meta['generation']!r} is not a generation id")
    body = data[OBJECT_HEAD_SIZE + meta_length : len(data) - CRC_SIZE]
    _check_key(key, kind, meta, corrupt)
    _check_body(kind, meta, body, corrupt)
    return ReplicaObject(KIND_NAMES[kind], meta, body)


def _check_key(key: str, kind: int, meta: dict[str, Any], corrupt: Any) -> None:
    """The key (relative to the prefix, or with more prefix before it) names this object."""
    at = key.find(GENERATIONS_PREFIX)
    try:
        parsed = parse_key(key[at:] if at >= 0 else key)
    except ValueError as e:
        raise corrupt(str(e)) from None
    if parsed.kind != KIND_NAMES[kind] or parsed.generation != meta["generation"]:
        raise corrupt(f"holds a {KIND_NAMES[kind]} of generation {meta['generation']}")
    if kind == KIND_SNAPSHOT and parsed.first_seq != meta["seq"]:
        raise corrupt(f"holds the snapshot of seq {meta['seq']}")
    if kind == KIND_SEGMENT and (parsed.first_seq, parsed.last_seq) != (
        meta["first_seq"],
        meta["last_seq"],
    ):
        raise corrupt(f"holds records {meta['first_seq']}..{meta['last_seq']}")


def _check_body(kind: int, meta: dict[str, Any], body: bytes, corrupt: Any) -> None:
    if kind == KIND_MANIFEST:
        if body:
            raise corrupt("a generation manifest has a body")
        if meta["source"] not in SOURCES or meta["reason"] not in REASONS:
            raise corrupt(f"unknown source {meta['source']!r} or reason {meta['reason']!r}")
        return
    if kind == KIND_SNAPSHOT:
        if meta["descriptor_length"] + meta["state_size"] != len(body):
            raise corrupt(
                f"body has {len(body)} bytes, meta says {meta['descriptor_length']} of "
                f"descriptor and {meta['state_size']} of state"
            )
        if crc(memoryview(body)[meta["descriptor_length"] :]) != meta["state_crc"]:
            raise corrupt("the state image does not match its state_crc")
        return
    first, last, epochs = meta["first_seq"], meta["last_seq"], meta["epochs"]
    if not 1 <= first <= last or meta["prev_seq"] != first - 1:
        raise corrupt(f"seqs {first}..{last} after {meta['prev_seq']} do not follow on")
    if meta["count"] != last - first + 1:
        raise corrupt(f"count {meta['count']} for records {first}..{last}")
    if not (
        len(epochs) == 2
        and all(isinstance(e, int) and not isinstance(e, bool) for e in epochs)
        and 0 <= epochs[0] <= epochs[1]
    ):
        raise corrupt(f"epochs {epochs!r} is not [min, max]")
    # A segment holds at most 16 MiB of records, except one record larger than that alone.
    too_large = len(body) > MAX_SEGMENT_RECORDS and first != last
    if not body or too_large or len(body) % 8 or meta["first_position"] % 8:
        raise corrupt(f"{len(body)} bytes of records at position {meta['first_position']}")
