"""Base stores for the fuzz targets: small schemas, and valid store images built by the real
writer on a simulated disk, with every state committed along the way.

A base store is built through ``journalstate.open`` on a :class:`SimStorage` by committing a
drawn sequence of states in a drawn durability, ending each session with a close, a process death
or an OS crash image. While building, the crash promises are checked (a process death loses
nothing, an OS crash nothing durable): a failure there is a bug of its own (BuildFailure).
"""

from __future__ import annotations

import random
import struct
from collections.abc import Hashable
from typing import Annotated, Any

import attrs
from hypothesis import strategies as st

import journalstate as js
from journalstate._format import RECORD_HEADER_SIZE, decode_record_header, record_crc, record_size
from journalstate._header import (
    HEADER_CRC_OFFSET,
    HEADER_FIXED_SIZE,
    Header,
    decode_header,
    header_crc,
)
from journalstate._journal import max_payload
from journalstate.testing import SimStorage

PATH = "fuzz.jst"
Canon = Hashable

# --- schemas ---------------------------------------------------------------------------------


@attrs.frozen
class Small:
    """A counter and a short label: tiny records, many per lap of the ring."""

    step: js.U64 = 0
    label: Annotated[str, js.Str(16)] = ""


@attrs.frozen
class Point:
    """A nested struct, used as an array element."""

    x: js.F64 = 0.0
    y: js.I32 = 0


@attrs.frozen
class Blobby:
    """A 3000-byte blob and arrays: records of up to 3 KiB in a 4 KiB ring, so the ring wraps."""

    blob: Annotated[bytes, js.Bytes(3000)] = b""
    counts: Annotated[tuple[int, ...], js.Array(js.U16, 8)] = (0,) * 8
    points: Annotated[tuple[Point, ...], js.Array(Point, 3)] = (Point(),) * 3
    flag: js.Bool = False


@attrs.frozen
class Inner:
    """A nested struct field."""

    n: js.I64 = 0
    tag: Annotated[bytes, js.Bytes(5)] = b""


@attrs.frozen
class Mixed:
    """Signed ints, an f32, a str, a nested struct and an array of bools."""

    small: js.I8 = 0
    ratio: js.F32 = 0.0
    name: Annotated[str, js.Str(12)] = ""
    inner: Inner = Inner()
    bits: Annotated[tuple[bool, ...], js.Array(js.Bool, 4)] = (False,) * 4


def _blobs() -> st.SearchStrategy[bytes]:
    """Blob values that stay cheap for Hypothesis: a short pattern repeated up to 3000 bytes."""
    return st.tuples(st.binary(min_size=1, max_size=8), st.integers(0, 3000)).map(
        lambda pn: (pn[0] * (pn[1] // len(pn[0]) + 1))[: pn[1]]
    )


def _f32s() -> st.SearchStrategy[float]:
    """Floats an F32 field holds exactly."""
    return st.floats(width=32, allow_nan=False).map(js.f32_round)


_POINTS = st.builds(Point, x=st.floats(allow_nan=True), y=st.integers(-(2**31), 2**31 - 1))
_LABELS = st.text(alphabet="ab\u00e9\u20ac", max_size=4)

_VALUES: dict[type, st.SearchStrategy[Any]] = {
    Small: st.builds(Small, step=st.integers(0, 2**64 - 1), label=_LABELS),
    Blobby: st.builds(
        Blobby,
        blob=_blobs(),
        counts=st.tuples(*[st.integers(0, 0xFFFF)] * 8),
        points=st.tuples(_POINTS, _POINTS, _POINTS),
        flag=st.booleans(),
    ),
    Mixed: st.builds(
        Mixed,
        small=st.integers(-128, 127),
        ratio=_f32s(),
        name=_LABELS,
        inner=st.builds(Inner, n=st.integers(-(2**63), 2**63 - 1), tag=st.binary(max_size=5)),
        bits=st.tuples(*[st.booleans()] * 4),
    ),
}
SCHEMAS: tuple[type, ...] = (Small, Blobby, Mixed)
JOURNAL_SIZES: dict[type, tuple[int, ...]] = {
    Small: (4096, 8192),
    Blobby: (4096,),
    Mixed: (4096, 12288),
}


def canonical(value: object) -> Canon:
    """A hashable form of a state that ignores class names (attrs.asdict-like), NaN-safe."""
    if attrs.has(type(value)):
        names = [f.name for f in attrs.fields(type(value))]  # type: ignore[arg-type]
        return ("struct", tuple((n, canonical(getattr(value, n))) for n in names))
    if isinstance(value, tuple):
        return ("tuple", tuple(canonical(v) for v in value))
    if isinstance(value, float):
        return ("float", struct.pack("<d", value))
    if isinstance(value, bool | int | str | bytes):
        return (type(value).__name__, value)
    raise TypeError(f"unexpected value in a state: {value!r}")


# --- building base stores ----------------------------------------------------------------------


@attrs.frozen
class Commit:
    """Commit this state."""

    state: Any


@attrs.frozen
class Flush:
    """store.flush(): make every commit so far durable."""


@attrs.frozen
class Checkpoint:
    """store.checkpoint(): write the state into the older slot."""


Step = Commit | Flush | Checkpoint


@attrs.frozen
class Session:
    """One writable open, its steps, and how it ends."""

    durability: str
    steps: tuple[Step, ...]
    end: str
    """"close", "process-death" (page cache kept) or "os-crash" (a crash image)."""
    crash_seed: int = 0
    torn_sectors: bool = True


@attrs.frozen
class Plan:
    """How to build one base store."""

    schema: type
    journal_size: int
    threshold: float
    initial: Any
    sessions: tuple[Session, ...]


@st.composite
def plans(draw: st.DrawFn, schema: type | None = None) -> Plan:
    """A schema, a journal size and up to three sessions of commits, flushes and checkpoints."""
    cls = draw(st.sampled_from(SCHEMAS)) if schema is None else schema
    values = _VALUES[cls]
    step = st.one_of(values.map(Commit), st.just(Flush()), st.just(Checkpoint()))
    sessions = []
    for _ in range(draw(st.integers(1, 3))):
        sessions.append(
            Session(
                durability=draw(st.sampled_from(["commit", "process"])),
                steps=tuple(draw(st.lists(step, max_size=8))),
                end=draw(st.sampled_from(["close", "process-death", "os-crash"])),
                crash_seed=draw(st.integers(0, 2**32 - 1)),
                torn_sectors=draw(st.booleans()),
            )
        )
    return Plan(
        schema=cls,
        journal_size=draw(st.sampled_from(JOURNAL_SIZES[cls])),
        threshold=draw(st.sampled_from([0.1, 0.3, 0.5, 1.0])),
        initial=draw(values),
        sessions=tuple(sessions),
    )


@attrs.frozen
class RingRecord:
    """A checksummed record found in the base image's ring (real, written by the store)."""

    ring_offset: int
    epoch: int
    seq: int
    position: int
    durable_seq: int
    generation: int
    length: int
    data: bytes

    @property
    def size(self) -> int:
        """Bytes the record takes in the ring."""
        return record_size(self.length)


@attrs.frozen(repr=False)
class Base:
    """A valid store image and everything the invariant needs to judge a damaged copy of it."""

    plan: Plan
    image: bytes
    header: Header
    committed: frozenset[Canon]
    """Every state ever committed while building (the initial one included)."""
    records: tuple[RingRecord, ...]
    state: Any
    """The state the undamaged image recovers to."""
    report: js.RecoveryReport

    @property
    def schema(self) -> type:
        """The schema class."""
        return self.plan.schema

    def __repr__(self) -> str:
        return f"Base(plan={self.plan!r})"

    def _repr_pretty_(self, p: Any, cycle: bool) -> None:
        p.text(repr(self))

    @property
    def journal(self) -> bytes:
        """The undamaged ring."""
        h = self.header
        return self.image[h.journal_offset : h.journal_offset + h.journal_size]


def ring_get(ring: bytes | bytearray, offset: int, n: int) -> bytes:
    """``n`` bytes of a ring from ``offset``, wrapping at its end."""
    size = len(ring)
    start = offset % size
    if start + n <= size:
        return bytes(ring[start : start + n])
    return bytes(ring[start:]) + bytes(ring[: start + n - size])


def ring_put(ring: bytearray, offset: int, data: bytes) -> None:
    """Write ``data`` into a ring at ``offset``, wrapping at its end (as the store does)."""
    size = len(ring)
    for i in range(0, len(data), size):
        chunk = data[i : i + size]
        start = (offset + i) % size
        first = min(len(chunk), size - start)
        ring[start : start + first] = chunk[:first]
        ring[: len(chunk) - first] = chunk[first:]


def scan_records(ring: bytes) -> tuple[RingRecord, ...]:
    """Every checksummed record sitting at its own position in a ring (any epoch, any lap)."""
    size = len(ring)
    found = []
    for offset in range(0, size, 8):
        raw = ring_get(ring, offset, RECORD_HEADER_SIZE)
        if not any(raw):
            continue
        head = decode_record_header(raw)
        if head.length > max_payload(size) or head.position % size != offset:
            continue
        data = ring_get(ring, offset, record_size(head.length))
        if record_crc(data) != head.crc:
            continue
        found.append(
            RingRecord(
                offset,
                head.epoch,
                head.seq,
                head.position,
                head.durable_seq,
                head.generation,
                head.length,
                data,
            )
        )
    return tuple(found)


FILE_ID = bytes(range(0xF0, 0x100))
"""The file id every base image gets, so that building is deterministic (the writer's is random)."""


def _pin_file_id(image: bytes) -> bytes:
    """``image`` with its random file id replaced by FILE_ID and the header crc fixed."""
    buf = bytearray(image)
    buf[24:40] = FILE_ID
    length = int.from_bytes(buf[88:92], "little")
    crc = header_crc(bytes(buf[:HEADER_FIXED_SIZE]), bytes(buf[96 : 96 + length]))
    buf[HEADER_CRC_OFFSET : HEADER_CRC_OFFSET + 4] = crc.to_bytes(4, "little")
    return bytes(buf)


class BuildFailure(AssertionError):
    """The undamaged store broke a promise while it was being built: a bug in its own right."""


def build(plan: Plan) -> Base:
    """Build the store ``plan`` describes; check the crash promises on the way; return the base.

    Raises:
        BuildFailure: a recovered state after a crash is not what the store promised.
    """
    disk = SimStorage()
    committed = [canonical(plan.initial)]
    timeline = [committed[0]]  # the history that survived every crash so far
    floor = 0  # index in timeline of the newest state durable against an OS crash
    exact = True  # the next open must recover timeline[-1] exactly
    last_end = "close"
    for number, session in enumerate(plan.sessions):
        store: js.Store[Any] = js.open(
            PATH,
            plan.schema,
            storage=disk,
            durability=session.durability,
            journal_size=plan.journal_size,
            initial=plan.initial,
            checkpoint_threshold=plan.threshold,
        )
        got = canonical(store.state)
        if exact and got != timeline[-1]:
            raise BuildFailure(f"session {number}: reopen after {last_end} lost commits")
        matches = [i for i in range(floor, len(timeline)) if timeline[i] == got]
        if not matches:
            raise BuildFailure(f"session {number}: recovered a state older than a durable one")
        del timeline[matches[-1] + 1 :]
        floor = len(timeline) - 1
        for step in session.steps:
            if isinstance(step, Commit):
                generation = store.generation
                store.commit(step.state)
                committed.append(canonical(step.state))
                timeline.append(committed[-1])
                checkpointed_after = store.generation != generation and store.journal_fill == 0
                if session.durability == "commit" or checkpointed_after:
                    floor = len(timeline) - 1
                elif store.generation != generation:
                    floor = len(timeline) - 2  # checkpoint made room before the record
            else:
                store.flush() if isinstance(step, Flush) else store.checkpoint()
                floor = len(timeline) - 1
        last_end = session.end
        if session.end == "close":
            store.close()
            floor, exact = len(timeline) - 1, True
        elif session.end == "process-death":
            disk.restart(PATH)
            exact = True
        else:
            rng = random.Random(session.crash_seed)
            image = disk.crash_image(PATH, rng.randrange, torn_sectors=session.torn_sectors)
            disk.restart(PATH, image)
            exact = False
    image = _pin_file_id(disk.cache_image(PATH))
    header = decode_header(PATH, image, len(image))
    check = SimStorage()
    check.set_image(PATH, image)
    final: js.Store[Any]
    with js.open(PATH, plan.schema, storage=check, readonly=True) as final:
        state: Any = final.state
        report = final.recovery
    got = canonical(state)
    if exact and got != timeline[-1]:
        raise BuildFailure(f"the final image ({last_end}) does not recover the last commit")
    if got not in timeline[floor:]:
        raise BuildFailure("the final image recovers a state older than a durable one")
    if last_end == "close" and not report.clean:
        raise BuildFailure(f"a cleanly closed store does not recover cleanly: {report}")
    ring = image[header.journal_offset : header.journal_offset + header.journal_size]
    return Base(plan, image, header, frozenset(committed), scan_records(ring), state, report)


@st.composite
def bases(draw: st.DrawFn, schema: type | None = None) -> Base:
    """A base store built from a drawn plan."""
    return build(draw(plans(schema)))
