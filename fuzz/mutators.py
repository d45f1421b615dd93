"""Ways to damage a base store, as Hypothesis strategies over its bytes (one per target).

Each returns a :class:`~fuzz.harness.Mutation`: the damaged image, a label for the falsifying
example, and what was forged with a valid crc: ``lies`` (records recovery may accept whose
payloads are not commits, so a chain running over one may end in a state never committed) and
``bad`` (records with a flaw recovery must refuse).
"""

from __future__ import annotations

import struct

import attrs
from hypothesis import strategies as st

from fuzz.harness import Bad, Lie, Mutation
from fuzz.stores import Base, ring_get, ring_put
from journalstate._checksums import align
from journalstate._descriptor import NODE_HEAD_FMT
from journalstate._format import (
    KIND_COMMIT,
    MAX_EPOCH,
    MAX_GENERATION,
    RECORD_HEADER_FMT,
    RECORD_HEADER_SIZE,
    SLOT_CRC_OFFSET,
    SLOT_HEAD_SIZE,
    WRITER_COUNTER_LIMIT,
    record_crc,
    record_size,
    slot_crc,
    slot_size_for,
)
from journalstate._header import (
    HEADER_CRC_OFFSET,
    HEADER_FIXED_SIZE,
    MAX_JOURNAL_SIZE,
    Header,
    encode_header,
    header_crc,
)
from journalstate._journal import max_payload
from journalstate._layout import (
    KIND_ARRAY,
    KIND_BOOL,
    KIND_BYTES,
    KIND_FLOAT,
    KIND_INT,
    KIND_STR,
    KIND_STRUCT,
    KIND_UINT,
    MAX_NODES,
    MAX_STATE_SIZE,
)
from journalstate._schema import compile_schema
from journalstate._writer import encode_patches

SECTOR = 512
PAGE = 4096

# --- helpers ---------------------------------------------------------------------------------


def _slot_bytes(base: Base, index: int) -> tuple[int, int]:
    """[start, end) of a slot's checksummed bytes: head, state, trailing generation."""
    h = base.header
    start = h.slot_offsets[index]
    return start, start + SLOT_HEAD_SIZE + h.state_size + 8


def _regions(base: Base) -> dict[str, tuple[int, int]]:
    """Named [start, end) byte ranges of the base image."""
    h = base.header
    return {
        "anywhere": (0, len(base.image)),
        "header": (0, HEADER_FIXED_SIZE + len(h.schema)),
        "slot0": _slot_bytes(base, 0),
        "slot1": _slot_bytes(base, 1),
        "slot0-head": (h.slot0_offset, h.slot0_offset + SLOT_HEAD_SIZE),
        "slot1-head": (h.slot1_offset, h.slot1_offset + SLOT_HEAD_SIZE),
        "journal": (h.journal_offset, h.journal_offset + h.journal_size),
    }


@st.composite
def _offsets(draw: st.DrawFn, base: Base) -> int:
    """A file offset inside a drawn region, or inside a real record of the ring."""
    names = [*_regions(base), "record"] if base.records else list(_regions(base))
    where = draw(st.sampled_from(names))
    if where == "record":
        r = draw(st.sampled_from(base.records))
        i = draw(st.integers(0, r.size - 1))
        return base.header.journal_offset + (r.ring_offset + i) % base.header.journal_size
    lo, hi = _regions(base)[where]
    return draw(st.integers(lo, hi - 1))


def _u(width: int) -> st.SearchStrategy[int]:
    """Any unsigned integer of ``width`` bytes."""
    return st.integers(0, 2 ** (8 * width) - 1)


# --- 1. bit flips ----------------------------------------------------------------------------


@st.composite
def bit_flips(draw: st.DrawFn, base: Base) -> Mutation:
    """1 to 8 flipped bits, anywhere or aimed at the header, a slot, the journal or a record."""
    buf = bytearray(base.image)
    flips = []
    for _ in range(draw(st.integers(1, 8))):
        offset, bit = draw(_offsets(base)), draw(st.integers(0, 7))
        buf[offset] ^= 1 << bit
        flips.append((offset, bit))
    return Mutation(bytes(buf), label=f"flip (offset, bit) {flips}")


# --- 2. truncation and extension --------------------------------------------------------------


@st.composite
def truncations(draw: st.DrawFn, base: Base) -> Mutation:
    """The file cut at any offset, then optionally garbage appended (or appended to the whole)."""
    size = len(base.image)
    h = base.header
    marks = [0, 8, HEADER_FIXED_SIZE, HEADER_FIXED_SIZE + len(h.schema), h.header_size]
    marks += [h.slot0_offset + SLOT_HEAD_SIZE, h.slot1_offset, h.journal_offset, size]
    near = st.sampled_from(marks).flatmap(lambda m: st.integers(max(0, m - 9), min(size, m + 9)))
    cut = draw(st.one_of(st.integers(0, size), near))
    repeated = st.tuples(st.binary(min_size=1, max_size=4), st.integers(1, 3 * PAGE)).map(
        lambda pn: (pn[0] * pn[1])[: pn[1]]
    )
    garbage = draw(st.one_of(st.just(b""), st.binary(max_size=64), repeated))
    whole = draw(st.booleans())
    image = (base.image if whole else base.image[:cut]) + garbage
    kept = size if whole else cut
    return Mutation(image, label=f"kept {kept} of {size} bytes, appended {len(garbage)}")


# --- 3. pages: zeroed, duplicated, slots swapped or copied -------------------------------------


@st.composite
def page_damage(draw: st.DrawFn, base: Base) -> Mutation:
    """1 to 3 of: a zeroed page or sector, a page or sector copied over another, slots swapped,
    one slot copied over the other."""
    buf = bytearray(base.image)
    h = base.header
    slots = (h.slot0_offset, h.slot1_offset)
    ops: list[tuple[object, ...]] = []
    for _ in range(draw(st.integers(1, 3))):
        op = draw(
            st.sampled_from(["zero", "zero-sector", "copy", "copy-sector", "swap", "slot-over"])
        )
        unit = SECTOR if op.endswith("sector") else PAGE
        count = len(buf) // unit
        if op.startswith("zero"):
            at = draw(st.integers(0, count - 1)) * unit
            buf[at : at + unit] = bytes(unit)
            ops.append((op, at))
        elif op.startswith("copy"):
            src, dst = (draw(st.integers(0, count - 1)) * unit for _ in range(2))
            buf[dst : dst + unit] = buf[src : src + unit]
            ops.append((op, src, dst))
        elif op == "swap":
            a = bytes(buf[slots[0] : slots[0] + h.slot_size])
            buf[slots[0] : slots[0] + h.slot_size] = buf[slots[1] : slots[1] + h.slot_size]
            buf[slots[1] : slots[1] + h.slot_size] = a
            ops.append((op,))
        else:
            src = draw(st.integers(0, 1))
            dst = slots[1 - src]
            buf[dst : dst + h.slot_size] = buf[slots[src] : slots[src] + h.slot_size]
            ops.append((op, src))
    return Mutation(bytes(buf), label=f"pages {ops}")


# --- 4. forged records with valid checksums -------------------------------------------------------

FLAWS = (
    "none",
    "seq",
    "epoch",
    "position",
    "generation",
    "durable-seq",
    "kind",
    "reserved",
    "huge-length",
    "lying-length",
    "patch-past-state",
    "patch-cut-short",
)


@attrs.define
class _Forge:
    """A record being forged: its header fields (``length`` None: the payload's) and payload."""

    length: int | None  # None: the payload's own length
    epoch: int
    kind: int
    reserved: int
    seq: int
    position: int
    durable_seq: int
    generation: int
    payload: bytes
    noop: bool  # replaying it cannot change the state it lands on
    fix_crc: bool = True


def _write_forge(ring: bytearray, f: _Forge) -> bool:
    """Write the forged record; returns whether it carries a valid crc."""
    length = len(f.payload) if f.length is None else f.length
    head = struct.pack(
        RECORD_HEADER_FMT,
        0,
        length & 0xFFFFFFFF,
        f.epoch & 0xFFFFFFFF,
        f.kind,
        f.reserved,
        f.seq % 2**64,
        f.position % 2**64,
        f.durable_seq % 2**64,
        f.generation % 2**64,
    )
    body = (
        head + f.payload + bytes(record_size(len(f.payload)) - RECORD_HEADER_SIZE - len(f.payload))
    )
    ring_put(ring, f.position, body[: len(ring)])
    if not f.fix_crc or length > max_payload(len(ring)):
        return False
    crc = record_crc(ring_get(ring, f.position, record_size(length)))
    ring_put(ring, f.position, struct.pack("<I", crc))
    return True


@st.composite
def forged_records(draw: st.DrawFn, base: Base) -> Mutation:
    """1 to 3 records with valid crcs and one flaw (or none), at the tail, over a real record,
    or anywhere in the live window."""
    ring = bytearray(base.journal)
    size = len(ring)
    report = base.report
    head = report.slots[report.slot].head
    assert head is not None
    image = compile_schema(base.schema).encode(base.state)
    known = [s.head.epoch for s in report.slots if s.head is not None]
    max_epoch = max(known + [r.epoch for r in base.records])
    lies: list[Lie] = []
    bad: list[Bad] = []
    future = False
    labels = []
    for _ in range(draw(st.integers(1, 3))):
        places = ["tail", "window", "over-record"] if base.records else ["tail", "window"]
        place = draw(st.sampled_from(places))
        off = draw(st.integers(0, len(image)))
        n = draw(st.integers(0, len(image) - off))
        noop_payload = draw(st.sampled_from([b"", encode_patches([(off, image[off : off + n])])]))
        if place == "over-record":
            r = draw(st.sampled_from(base.records))
            f = _Forge(
                None, r.epoch, KIND_COMMIT, 0, r.seq, r.position, r.durable_seq, r.generation,
                r.data[RECORD_HEADER_SIZE : RECORD_HEADER_SIZE + r.length], True,
            )  # fmt: skip
            expected_seq = r.seq
        elif place == "tail":
            f = _Forge(
                None, head.epoch, KIND_COMMIT, 0, report.seq + 1, report.position, report.seq,
                report.generation, noop_payload, True,
            )  # fmt: skip
            expected_seq = report.seq + 1
        else:
            position = head.position + 8 * draw(st.integers(0, (size - RECORD_HEADER_SIZE) // 8))
            f = _Forge(
                None, head.epoch, KIND_COMMIT, 0, draw(st.integers(report.seq + 1, report.seq + 4)),
                position, draw(st.integers(0, report.seq + 4)), report.generation, noop_payload,
                not noop_payload,
            )  # fmt: skip
            expected_seq = f.seq
        flaw = draw(st.sampled_from(FLAWS))
        wild = st.one_of(st.sampled_from([0, 1, 2**31, 2**32 - 1, 2**63, 2**64 - 1]), _u(8))
        if flaw == "seq":
            f.seq = draw(st.one_of(st.integers(max(0, f.seq - 3), f.seq + 3), wild))
        elif flaw == "epoch":
            f.epoch = draw(st.one_of(st.integers(max(0, f.epoch - 2), f.epoch + 2), _u(4)))
        elif flaw == "position":
            k = draw(st.sampled_from([-2, -1, 1, 2]))
            f.position = draw(st.sampled_from([f.position + k * size, f.position + 8 * k]))
            f.position = max(f.position, 0)
        elif flaw == "generation":
            f.generation = draw(st.one_of(st.integers(0, report.generation + 3), wild))
        elif flaw == "durable-seq":
            f.durable_seq = draw(st.one_of(st.integers(0, report.seq + 3), wild))
        elif flaw == "kind":
            f.kind = draw(st.sampled_from([0, 2, 3, 0x100, 0xFFFF]))
        elif flaw == "reserved":
            f.reserved = draw(st.integers(1, 0xFFFF))
        elif flaw == "huge-length":
            f.length = draw(st.integers(max_payload(size) + 1, 2**32 - 1))
        elif flaw == "lying-length":
            f.length = draw(st.integers(0, max_payload(size)))
            f.noop = False
        elif flaw == "patch-past-state":
            at = draw(st.integers(0, len(image) + 8))
            n = draw(st.integers(max(1, len(image) - at + 1), len(image) + 16))
            f.payload = encode_patches([(at, b"\xab" * n)]) if n < 4 * PAGE else b""
            f.noop = f.payload == b""
        elif flaw == "patch-cut-short":
            f.payload = f.payload + draw(st.binary(min_size=1, max_size=7))
            f.noop = False
        f.fix_crc = draw(st.booleans()) if flaw != "none" else True
        valid = _write_forge(ring, f)
        future |= f.epoch > max_epoch
        kind_ok = f.kind == KIND_COMMIT and f.reserved == 0
        patch_bad = flaw in ("patch-past-state", "patch-cut-short") and f.payload != b""
        if valid and f.length is None and (not kind_ok or patch_bad or f.seq != expected_seq):
            data = ring_get(ring, f.position, record_size(len(f.payload)))
            bad.append(Bad(f.epoch, f.position, f.seq, kind_ok, patch_bad, data))
        elif valid and not f.noop:
            lies.append(Lie(f.epoch, f.position))
        labels.append(f"{place}/{flaw}: {f!r}")
    h = base.header
    out = bytearray(base.image)
    out[h.journal_offset : h.journal_offset + size] = ring
    return Mutation(bytes(out), tuple(lies), tuple(bad), future, label="; ".join(labels))


# --- 5. record lengths pointing past the end ------------------------------------------------------


@st.composite
def record_lengths(draw: st.DrawFn, base: Base) -> Mutation:
    """A real record's length set to a large or wrong value, with and without a fixed crc."""
    ring = bytearray(base.journal)
    size = len(ring)
    if not base.records:
        return Mutation(base.image, label="no record to damage")
    r = draw(st.sampled_from(base.records))
    mp = max_payload(size)
    marks = [mp + 1, mp + 8, size, 2**31, 2**32 - 1, mp, mp - 1, size - 2 * RECORD_HEADER_SIZE]
    marks += [r.length + 1, r.length + 8, max(r.length - 1, 0), 0]
    length = draw(st.one_of(st.sampled_from(marks), _u(4)))
    ring_put(ring, r.ring_offset + 4, struct.pack("<I", length))
    fix = draw(st.booleans())
    if fix and length <= mp:
        ring_put(
            ring,
            r.ring_offset,
            struct.pack("<I", record_crc(ring_get(ring, r.ring_offset, record_size(length)))),
        )
    h = base.header
    out = bytearray(base.image)
    out[h.journal_offset : h.journal_offset + size] = ring
    lies = (Lie(r.epoch, r.position),) if fix and length <= mp else ()
    return Mutation(bytes(out), lies, label=f"record at {r.position} length {length} fix={fix}")


# --- 6. header fields rewritten with a fixed crc --------------------------------------------------

_HEADER_FIELDS = {  # name: (offset, width)
    "format_version": (8, 4),
    "header_size": (12, 4),
    "page_size": (16, 4),
    "flags": (20, 4),
    "file_id": (24, 8),
    "slot_size": (40, 8),
    "slot0_offset": (48, 8),
    "slot1_offset": (56, 8),
    "journal_offset": (64, 8),
    "journal_size": (72, 8),
    "state_size": (80, 8),
    "schema_length": (88, 4),
}
_NAMES = [
    "x", "y", "step", "label", "self", "cls", "object", "attr_dict", "NOTHING", "fields", "int",
    "_x", "__x", "class", "None", "print", "a" * 255, "\u00e9t\u00e9", "1x", "",
]  # fmt: skip


def _node(kind: int, size: int, param: int, name: str = "", offset: int = 0) -> bytes:
    raw = name.encode()
    head = (kind, 0, len(raw), offset & 0xFFFFFFFF, size & 0xFFFFFFFF, param & 0xFFFFFFFF)
    return struct.pack(NODE_HEAD_FMT, *head) + raw


@st.composite
def _descriptor_node(draw: st.DrawFn, depth: int, name: str, offset: int) -> tuple[bytes, int]:
    """A descriptor node (mostly well formed, with hostile names, counts and sizes); the root
    is almost always a struct."""
    kinds = [KIND_INT, KIND_UINT, KIND_FLOAT, KIND_BOOL, KIND_BYTES, KIND_STR]
    kinds += [KIND_ARRAY, KIND_STRUCT] if depth < 3 else []
    root_struct = depth == 0 and draw(st.integers(0, 9)) > 0
    kind = KIND_STRUCT if root_struct else draw(st.sampled_from(kinds))
    if kind in (KIND_INT, KIND_UINT):
        size = draw(st.sampled_from([1, 2, 4, 8]))
        return _node(kind, size, 0, name, offset), size
    if kind == KIND_FLOAT:
        size = draw(st.sampled_from([4, 8]))
        return _node(kind, size, 0, name, offset), size
    if kind == KIND_BOOL:
        return _node(kind, 1, 0, name, offset), 1
    if kind in (KIND_BYTES, KIND_STR):
        cap = draw(st.sampled_from([1, 5, 16, 3000, 2**20, 2**31 - 4]))
        return _node(kind, 4 + cap, cap, name, offset), 4 + cap
    if kind == KIND_ARRAY:
        element, esize = draw(_descriptor_node(depth + 1, "", 0))
        n = draw(st.sampled_from([1, 3, 2**16, 2**24, 2**31]))
        n = max(1, min(n, 2**31 // max(esize, 1)))
        return _node(kind, n * esize, n, name, offset) + element, n * esize
    names = draw(st.lists(st.sampled_from(_NAMES), min_size=1, max_size=4, unique=True))
    parts, at = [], 0
    for field in names:
        raw, size = draw(_descriptor_node(depth + 1, field, at))
        parts.append(raw)
        at += size
    return _node(kind, at, len(names), name, offset) + b"".join(parts), at


@st.composite
def header_rewrites(draw: st.DrawFn, base: Base) -> Mutation:
    """Header fields (sizes, offsets, schema_length, page_size, version) or the schema descriptor
    rewritten, usually with the header crc fixed so deeper checks are reached."""
    buf = bytearray(base.image)
    h = base.header
    labels = []
    if draw(st.booleans()):
        for name in draw(st.lists(st.sampled_from(sorted(_HEADER_FIELDS)), min_size=1, max_size=3)):
            at, width = _HEADER_FIELDS[name]
            (old,) = struct.unpack_from("<Q" if width == 8 else "<I", buf, at)
            top = 2 ** (8 * width) - 1
            near = [old + d for d in (-PAGE, -1, 1, PAGE)] + [old * 2, old // 2, 0, 1, 512]
            near += [2, 8192, 1 << 20, 2**31, top, top // 2 + 1]
            value = draw(st.one_of(st.sampled_from([v for v in near if 0 <= v <= top]), _u(width)))
            buf[at : at + width] = value.to_bytes(width, "little")
            labels.append(f"{name}={value}")
    else:
        kind = draw(st.sampled_from(["replace", "flip"]))
        length = int.from_bytes(buf[88:92], "little")
        if kind == "flip":
            for _ in range(draw(st.integers(1, 4))):
                at = HEADER_FIXED_SIZE + draw(st.integers(0, length - 1))
                buf[at] = draw(st.integers(0, 255))
            labels.append("descriptor bytes changed")
        else:
            root_name = draw(st.sampled_from(["S", "Small", *_NAMES]))
            descriptor, state_size = draw(_descriptor_node(0, root_name, 0))
            if HEADER_FIXED_SIZE + len(descriptor) > h.header_size:
                descriptor = descriptor[: h.header_size - HEADER_FIXED_SIZE]
            buf[HEADER_FIXED_SIZE : h.header_size] = bytes(h.header_size - HEADER_FIXED_SIZE)
            buf[HEADER_FIXED_SIZE : HEADER_FIXED_SIZE + len(descriptor)] = descriptor
            buf[88:92] = len(descriptor).to_bytes(4, "little")
            labels.append(f"descriptor {descriptor.hex()}")
            fits = slot_size_for(state_size, h.page_size) == h.slot_size
            if fits and draw(st.booleans()):
                _retarget(buf, base, state_size)
                labels.append(f"state_size={state_size} in the header and both slots")
    schema_length = int.from_bytes(buf[88:92], "little")
    fix = draw(st.integers(0, 9)) > 0
    if fix and HEADER_FIXED_SIZE + schema_length <= len(buf):
        descriptor = bytes(buf[HEADER_FIXED_SIZE : HEADER_FIXED_SIZE + schema_length])
        crc = header_crc(bytes(buf[:HEADER_FIXED_SIZE]), descriptor)
        buf[HEADER_CRC_OFFSET : HEADER_CRC_OFFSET + 4] = struct.pack("<I", crc)
        labels.append("crc fixed")
    return Mutation(bytes(buf), label=", ".join(labels))


def _retarget(buf: bytearray, base: Base, state_size: int) -> None:
    """Give the header and both slots (with fixed crcs) another state size."""
    h = base.header
    buf[80:88] = state_size.to_bytes(8, "little")
    for start in h.slot_offsets:
        (generation,) = struct.unpack_from("<Q", buf, start)
        buf[start + 32 : start + 40] = state_size.to_bytes(8, "little")
        tail = start + SLOT_HEAD_SIZE + state_size
        buf[tail : tail + 8] = generation.to_bytes(8, "little")
        crc = slot_crc(bytes(buf[start : tail + 8]), state_size)
        buf[start + SLOT_CRC_OFFSET : start + SLOT_CRC_OFFSET + 4] = struct.pack("<I", crc)


# --- 7. counters at their ends ---------------------------------------------------------------

_EPOCH_EDGES = (MAX_EPOCH, MAX_EPOCH - 1)
_U64_EDGES = (MAX_GENERATION, MAX_GENERATION - 1, WRITER_COUNTER_LIMIT, WRITER_COUNTER_LIMIT - 1)


@st.composite
def counter_edges(draw: st.DrawFn, base: Base) -> Mutation:
    """Both slots (crcs fixed) moved to a counter's end: epoch 2^32-1 or 2^32-2, or generation or
    seq near 2^64 or 2^63. Generations move by the same amount, so their order is kept."""
    buf = bytearray(base.image)
    h = base.header
    counter = draw(st.sampled_from(["epoch", "generation", "seq"]))
    if counter == "epoch":
        value = draw(st.sampled_from(_EPOCH_EDGES))
    else:
        value = draw(st.one_of(st.sampled_from(_U64_EDGES), st.integers(2**63 - 4, 2**64 - 1)))
    heads = [struct.unpack_from("<QIIQ", buf, start) for start in h.slot_offsets]
    top = max(g for g, _, _, _ in heads)
    for start, (generation, _, _, _) in zip(h.slot_offsets, heads, strict=True):
        if counter == "epoch":
            struct.pack_into("<I", buf, start + 8, value)
        elif counter == "generation":
            moved = value - (top - generation)
            struct.pack_into("<Q", buf, start, moved)
            struct.pack_into("<Q", buf, start + SLOT_HEAD_SIZE + h.state_size, moved)
        else:
            struct.pack_into("<Q", buf, start + 16, value)
        end = start + SLOT_HEAD_SIZE + h.state_size + 8
        crc = slot_crc(bytes(buf[start:end]), h.state_size)
        buf[start + SLOT_CRC_OFFSET : start + SLOT_CRC_OFFSET + 4] = struct.pack("<I", crc)
    return Mutation(bytes(buf), label=f"both slots' {counter} moved to {value}")


# --- 8. hostile declared sizes ------------------------------------------------------------------

_HOSTILE_JOURNALS = (MAX_JOURNAL_SIZE, MAX_JOURNAL_SIZE + PAGE, 1 << 32, 64 << 30, 2**64 - PAGE)
_HOSTILE_STATES = (MAX_STATE_SIZE, MAX_STATE_SIZE + 1, 2**31 - 4, 2**40)


def _rebuilt(base: Base, descriptor: bytes, state_size: int, journal_size: int) -> bytes:
    """The base image under a new crc-valid header: the layout recomputed for these sizes, the
    slots and ring bytes kept (the file is as long as it was, so usually shorter than declared)."""
    h = base.header
    header_size = align(HEADER_FIXED_SIZE + len(descriptor), h.page_size)
    slot_size = slot_size_for(state_size, h.page_size)
    header = Header(
        header_size=header_size,
        page_size=h.page_size,
        file_id=h.file_id,
        slot_size=slot_size,
        slot0_offset=header_size,
        slot1_offset=header_size + slot_size,
        journal_offset=header_size + 2 * slot_size,
        journal_size=journal_size,
        state_size=state_size,
        schema=descriptor,
    )
    return encode_header(header) + base.image[h.slot0_offset :]


@st.composite
def hostile_sizes(draw: st.DrawFn, base: Base) -> Mutation:
    """A crc-valid header declaring a journal or state beyond the limits, or a descriptor of
    thousands of fields (at, just past or far past MAX_NODES): all refused cheaply."""
    h = base.header
    kind = draw(st.sampled_from(["journal", "state", "fields"]))
    if kind == "journal":
        size = draw(st.sampled_from(_HOSTILE_JOURNALS))
        image = _rebuilt(base, h.schema, h.state_size, size)
        return Mutation(image, label=f"journal_size={size}")
    if kind == "state":
        size = draw(st.sampled_from(_HOSTILE_STATES))
        cap = min(size, 2**32 - 1) - 4
        descriptor = _node(KIND_STRUCT, cap + 4, 1, "Big") + _node(KIND_BYTES, cap + 4, cap, "b")
        image = _rebuilt(base, descriptor, size, h.journal_size)
        return Mutation(image, label=f"state_size={size}")
    fields = draw(st.sampled_from([MAX_NODES - 1, MAX_NODES, 100_000]))
    nodes = [_node(KIND_STRUCT, fields, fields, "Wide")]
    nodes += [_node(KIND_UINT, 1, 0, f"f{i}", i) for i in range(fields)]
    image = _rebuilt(base, b"".join(nodes), fields, h.journal_size)
    return Mutation(image, label=f"a flat descriptor of {fields} fields")
