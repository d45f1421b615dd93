"""The invariant every fuzz target checks, and the guards it runs under.

THE INVARIANT (every target): opening an arbitrary byte mutation of a valid store either raises a
``JournalStateError``, or returns a state that was really committed to that store (one of the
states committed while building it), with damage before the durable mark reported in
``store.recovery.corruption``; never another exception, never a hang, never a huge allocation.

:func:`check_image` opens the damaged bytes every way ``open`` allows (three recovery modes,
read-only and writable, schema class and ``schema=None``, with and without
``previous_generation``), each under a wall-clock and memory guard, and checks the invariant on
each outcome and their agreement: a laxer mode keeps what a stricter one accepted, a writable
open agrees with a read-only one, and a writable open leaves a usable store (a commit after it
survives a process death and reopens cleanly).
"""

from __future__ import annotations

import contextlib
import functools
import os
import signal
import threading
import time
import traceback
import tracemalloc
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import attrs

import journalstate as js
from fuzz.stores import PATH, Base, Canon, RingRecord, canonical, ring_get
from journalstate._format import RECORD_HEADER_SIZE
from journalstate._header import Header
from journalstate.testing import SimStorage

try:  # not on every platform; without it a huge allocation may be slow instead of a MemoryError
    import resource
except ImportError:  # pragma: no cover
    resource = None  # type: ignore[assignment]

TIMEOUT = float(os.environ.get("JOURNALSTATE_FUZZ_TIMEOUT", "5"))
"""Seconds one open (or one CLI command) may take before it counts as a hang."""
MEMORY_FACTOR = 32
"""Allowed peak of Python allocations during one open: this many times the file size..."""
MEMORY_SLACK = 8 << 20
"""...plus this many bytes."""
ADDRESS_SPACE_HEADROOM = 1 << 30
"""During a guarded call the process may map this much more; beyond it, MemoryError."""

T = TypeVar("T")

# --- guards ----------------------------------------------------------------------------------


class Violation(AssertionError):
    """The invariant does not hold; the message says which part and for which open.

    ``kind`` names violations that KNOWN_BUGS can recognise ("" for the others).
    """

    def __init__(self, message: str, kind: str = "") -> None:
        super().__init__(message)
        self.kind = kind


class Hang(BaseException):
    """Raised by the wall-clock guard inside the guarded call (a BaseException: not swallowed)."""


def _vm_size() -> int | None:
    try:
        with open("/proc/self/statm", encoding="ascii") as f:
            return int(f.read().split()[0]) * (resource.getpagesize() if resource else 4096)
    except (OSError, ValueError, IndexError):
        return None


@contextlib.contextmanager
def _address_space_cap() -> Iterator[None]:
    """Lower RLIMIT_AS to the current size plus headroom, so a huge allocation fails fast."""
    vm = _vm_size()
    if resource is None or vm is None:
        yield
        return
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    cap = vm + ADDRESS_SPACE_HEADROOM
    if hard != resource.RLIM_INFINITY:
        cap = min(cap, hard)
    if soft != resource.RLIM_INFINITY and soft <= cap:
        yield
        return
    resource.setrlimit(resource.RLIMIT_AS, (cap, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))


def guarded(what: str, size: int, call: Callable[[], T]) -> T:
    """Run ``call`` with a wall-clock limit and a memory limit scaled by ``size`` (file bytes).

    Raises:
        Violation: it took longer than TIMEOUT or allocated more than the limit.
    """
    use_alarm = threading.current_thread() is threading.main_thread()

    def on_alarm(signum: int, frame: object) -> None:
        raise Hang(f"{what}: still running after {TIMEOUT} s")

    previous: Any = None
    if use_alarm:
        previous = signal.signal(signal.SIGALRM, on_alarm)
        signal.setitimer(signal.ITIMER_REAL, TIMEOUT)
    tracemalloc.start()
    started = time.monotonic()
    try:
        with _address_space_cap():
            result = call()
    except Hang as e:
        raise Violation(f"hang: {e}") from None
    finally:
        elapsed = time.monotonic() - started
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        if use_alarm:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, previous)
    if elapsed > TIMEOUT:
        raise Violation(f"hang: {what} took {elapsed:.1f} s")
    limit = MEMORY_FACTOR * size + MEMORY_SLACK
    if peak > limit:
        raise Violation(f"huge allocation: {what} peaked at {peak} bytes (limit {limit})")
    return result


# --- the invariant ---------------------------------------------------------------------------

MODES = ("strict", "tolerate-tail", "salvage")


@attrs.frozen
class Lie:
    """A forged record with a valid crc that recovery may accept: its payload is not a commit."""

    epoch: int
    position: int


@attrs.frozen
class Bad:
    """A forged record with a valid crc and a flaw the chain must refuse (docs/format.md, rules
    6, 7 and 9): a bad kind or reserved field, an unexpected seq, or patches outside the state.
    Stopping on one of the recovered epoch is corruption; replaying one is a bug."""

    epoch: int
    position: int
    seq: int
    kind_ok: bool
    patch_bad: bool
    data: bytes = attrs.field(repr=False)
    """Its bytes as written: it counts only while they are intact."""


@attrs.frozen(repr=False)
class Mutation:
    """Damaged bytes, and what was forged into them (so the judge knows what a lie may do)."""

    image: bytes
    lies: tuple[Lie, ...] = ()
    bad: tuple[Bad, ...] = ()
    future_epochs: bool = False
    """Forged records of an epoch no session used yet: a later session may run into them."""
    label: str = ""
    """What was done, for the falsifying example."""

    def __repr__(self) -> str:
        forged = f", lies={self.lies!r}, bad={self.bad!r}" if self.lies or self.bad else ""
        return f"Mutation({self.label}; {len(self.image)} bytes{forged})"

    def _repr_pretty_(self, p: Any, cycle: bool) -> None:
        p.text(repr(self))


@attrs.frozen
class Opening:
    """One way to open the damaged image."""

    mode: str
    readonly: bool
    by_class: bool
    previous: bool

    def __str__(self) -> str:
        schema = "Schema" if self.by_class else "schema=None"
        how = "readonly" if self.readonly else "writable"
        prev = ", previous_generation" if self.previous else ""
        return f"open({schema}, {how}, recovery={self.mode!r}{prev})"


@attrs.frozen
class Outcome:
    """What one open returned or raised."""

    state: Canon | None
    report: js.RecoveryReport | None
    header: Header | None
    error: BaseException | None
    committed: Canon | None = None
    """For a writable open: the state it committed after recovering (then it died)."""
    reopened: Outcome | None = None
    """For a writable open: the strict read-only reopen after that commit and death."""

    @property
    def ok(self) -> bool:
        """The open returned a store."""
        return self.error is None


OPENINGS = tuple(
    Opening(mode, readonly, by_class, previous)
    for readonly in (True, False)
    for by_class in (True, False)
    for previous in (False, True)
    for mode in MODES
    if readonly or by_class
)


def _open(base: Base, disk: SimStorage, o: Opening) -> Outcome:
    """Open once. A writable store then commits one more state and dies (a process death)."""
    store: js.Store[Any]
    try:
        store = js.open(
            PATH,
            base.schema if o.by_class else None,
            storage=disk,
            readonly=o.readonly,
            recovery=o.mode,
            previous_generation=o.previous,
        )
    except js.JournalStateError as e:
        return Outcome(None, None, None, e)
    out = Outcome(canonical(store.state), store.recovery, store.header, None)
    if o.readonly:
        store.close()
        return out
    # The recovered store must be usable: a commit after it must survive a process death.
    new = base.plan.initial if canonical(base.plan.initial) != out.state else base.state
    try:
        store.commit(new)
    except js.JournalStateError as e:
        raise Violation(f"{o}: the recovered store refused a commit: {e!r}") from e
    disk.restart(PATH)
    return attrs.evolve(out, committed=canonical(new))


@attrs.frozen
class KnownBug:
    """A library bug already found (and reported); see tests/test_fuzz_smoke.py for its xfail."""

    name: str
    matches: Callable[[BaseException], bool]


KNOWN_BUGS: tuple[KnownBug, ...] = ()
"""Bugs the targets step over (counted in KNOWN_HITS) so that they can find others. Set
JOURNALSTATE_FUZZ_KNOWN=fail to make them fail again, e.g. to check a fix. None is open. Fixed:
a stored field named "self" (SyntaxError), huge stored arrays allocated before any check, a slot
overwritten by a copy of the other lost silently, and the same slot copy followed by a roll-back
to the previous generation reusing an epoch whose records were still in the ring."""
KNOWN_HITS: dict[str, int] = {}


def known_bug(e: BaseException) -> str | None:
    """The name of the known bug ``e`` is (counting the hit), or None."""
    if os.environ.get("JOURNALSTATE_FUZZ_KNOWN") == "fail":
        return None
    for bug in KNOWN_BUGS:
        if bug.matches(e):
            KNOWN_HITS[bug.name] = KNOWN_HITS.get(bug.name, 0) + 1
            return bug.name
    return None


def _describe(e: BaseException) -> str:
    """The last lines of ``e``'s traceback."""
    return "".join(traceback.format_exception(type(e), e, e.__traceback__)[-6:])


def open_all(base: Base, m: Mutation) -> dict[Opening, Outcome]:
    """Open ``m.image`` every way; a writable open commits, dies, and is reopened strictly."""
    size = max(len(m.image), len(base.image))
    outcomes: dict[Opening, Outcome] = {}
    for o in OPENINGS:
        disk = SimStorage()
        disk.set_image(PATH, m.image)
        try:
            out = guarded(str(o), size, functools.partial(_open, base, disk, o))
            if out.ok and not o.readonly:
                again = Opening("strict", True, True, False)
                reopen = functools.partial(_open, base, disk, again)
                reopened = guarded(f"{again} after {o}", size, reopen)
                out = attrs.evolve(out, reopened=reopened)
        except Violation:
            raise
        except BaseException as e:
            if isinstance(e, KeyboardInterrupt | SystemExit):
                raise
            if known_bug(e) is not None:
                outcomes[o] = Outcome(None, None, None, e)
                continue
            raise Violation(
                f"{o} raised {type(e).__name__}, not a JournalStateError:\n{_describe(e)}"
            ) from e
        outcomes[o] = out
    return outcomes


def _lied(out: Outcome, m: Mutation) -> bool:
    """Whether the chain recovery replayed runs over a forged record (so the state may be one)."""
    report = out.report
    assert report is not None
    head = report.slots[report.slot].head
    if report.previous_generation or head is None:
        return False
    return any(
        lie.epoch == report.epoch and head.position <= lie.position < report.position
        for lie in m.lies
    )


def _intact(base: Base, image: bytes) -> list[RingRecord]:
    """The base's real records whose bytes are unchanged in ``image`` (same layout assumed)."""
    h = base.header
    ring = image[h.journal_offset : h.journal_offset + h.journal_size]
    if len(ring) < h.journal_size:
        return []
    return [r for r in base.records if ring_get(ring, r.ring_offset, r.size) == r.data]


def _stale_slots(base: Base, image: bytes, out: Outcome) -> list[RingRecord]:
    """Intact records of an epoch newer than both (valid) slots.

    A session writes records only after a slot carrying its epoch was msync'ed, and every later
    checkpoint carries that epoch or a newer one; so in any crash image some slot carries the
    highest epoch in the ring. Both slots valid yet older means a durable slot was overwritten
    by a valid older one (a slot copied over the other).
    """
    report = out.report
    assert report is not None
    heads = [s.head for s in report.slots if s.head is not None]
    if out.header != base.header or len(heads) < 2:
        return []
    newest = max(h.epoch for h in heads)
    return [r for r in _intact(base, image) if r.epoch > newest]


def _must_report(base: Base, image: bytes, out: Outcome) -> list[RingRecord]:
    """Intact real records that, by the format's rules, make the loss before them corruption."""
    report, header = out.report, out.header
    assert report is not None
    if report.previous_generation or header != base.header:
        return []
    head = report.slots[report.slot].head
    assert head is not None
    window_end = head.position + header.journal_size - RECORD_HEADER_SIZE
    evidence = []
    for r in _intact(base, image):
        if r.position + r.size > window_end or r.position < report.position:
            continue
        if r.epoch == report.epoch:
            if r.position == report.position:
                evidence.append(r)  # the chain stopped on a valid record of its own epoch
            elif r.seq > report.seq and (
                r.durable_seq > report.seq or r.generation > head.generation
            ):
                evidence.append(r)  # vouches for a lost record, or for a lost newer slot
        elif r.epoch == report.epoch + 1 and r.generation > head.generation:
            evidence.append(r)  # a lost (damaged or overwritten) slot was that session's start
    return evidence


def _refused(base: Base, m: Mutation, out: Outcome) -> str | None:
    """What recovery did wrong with a flawed forged record, if anything."""
    report, header = out.report, out.header
    assert report is not None
    if report.previous_generation or header != base.header or not m.bad:
        return None
    head = report.slots[report.slot].head
    assert head is not None
    window_end = head.position + header.journal_size - RECORD_HEADER_SIZE
    ring = m.image[header.journal_offset : header.journal_offset + header.journal_size]
    for bad in m.bad:
        if bad.epoch != report.epoch or ring_get(ring, bad.position, len(bad.data)) != bad.data:
            continue
        replayed = head.position <= bad.position < report.position
        if replayed and not m.lies and (not bad.kind_ok or bad.patch_bad):
            return f"replayed {bad!r}"
        if bad.position != report.position or bad.position + RECORD_HEADER_SIZE > window_end:
            continue
        fits = bad.position + len(bad.data) <= window_end
        flawed = not bad.kind_ok or bad.seq != report.seq + 1 or (bad.patch_bad and fits)
        if flawed and not report.corruption:
            return f"stopped on {bad!r} and reported no corruption"
    return None


def check_outcome(base: Base, m: Mutation, o: Opening, out: Outcome) -> None:
    """The invariant for one open (see the module docstring)."""
    if not out.ok:
        assert out.error is not None
        if o.mode == "salvage" and type(out.error) is js.StoreCorrupt:
            raise Violation(f"{o} raised StoreCorrupt, which salvage never does: {out.error}")
        return
    report = out.report
    assert report is not None
    assert out.header is not None
    same_schema = o.by_class or out.header.schema == base.header.schema
    if same_schema and out.state not in base.committed and not _lied(out, m):
        raise Violation(f"{o} returned a state that was never committed: {out.state!r}\n{report}")
    evidence = _must_report(base, m.image, out)
    if evidence and not report.corruption:
        raise Violation(
            f"{o} dropped records that later intact records prove durable, and reported no "
            f"corruption: evidence {evidence[0]!r}\nreport {report}"
        )
    refused = _refused(base, m, out)
    if refused is not None:
        raise Violation(f"{o} {refused}\n{report}")
    if out.reopened is not None and not m.future_epochs:
        again = out.reopened
        stale = o.previous and _stale_slots(base, m.image, out)  # a reused epoch: known bug
        kind = "stale-slot-copy-previous-generation" if stale else ""
        after = f"after {o}, a commit and a process death, a strict reopen"
        if not again.ok:
            raise Violation(f"{after} raised {again.error!r}", kind)
        assert again.report is not None
        if again.state != out.committed or not again.report.clean:
            raise Violation(
                f"{after} found {again.state!r} (clean={again.report.clean}), not the commit "
                f"{out.committed!r}\n{again.report}",
                kind,
            )


def _same(a: Outcome, b: Outcome) -> bool:
    if a.ok != b.ok:
        return False
    if a.ok:
        return a.state == b.state
    return type(a.error) is type(b.error)


def check_consistency(outcomes: dict[Opening, Outcome]) -> None:
    """Modes, read-only vs writable and class vs schema=None must agree with each other."""
    for o, out in outcomes.items():
        if o.mode == "strict" or o.mode == "tolerate-tail":
            laxer = attrs.evolve(o, mode="tolerate-tail" if o.mode == "strict" else "salvage")
            lax = outcomes[laxer]
            if out.ok and (not lax.ok or lax.state != out.state):
                raise Violation(
                    f"{o} returned {out.state!r} but {laxer} gave {lax.error or lax.state!r}"
                )
        if not o.readonly:
            ro = outcomes[attrs.evolve(o, readonly=True)]
            # A counter at its end refuses a writing session only: reads still work.
            exhausted = isinstance(out.error, js.CounterExhausted) and ro.ok
            if not exhausted and not _same(out, ro):
                raise Violation(
                    f"{o} and its read-only twin disagree: {out.error or out.state!r} vs "
                    f"{ro.error or ro.state!r}"
                )
        if o.readonly and not o.by_class:
            cls_out = outcomes[attrs.evolve(o, by_class=True)]
            if out.ok and cls_out.ok and out.state != cls_out.state:
                raise Violation(f"{o} returned {out.state!r} but the class gave {cls_out.state!r}")


EXAMPLES_RUN = [0]
"""Inputs the targets have tried in this process (the runner resets and reports it)."""


def check_image(base: Base, m: Mutation) -> dict[Opening, Outcome]:
    """Open the damaged image every way and check the invariant; returns the outcomes."""
    EXAMPLES_RUN[0] += 1
    outcomes = open_all(base, m)
    for o, out in outcomes.items():
        try:
            check_outcome(base, m, o, out)
        except Violation as e:
            if known_bug(e) is None:
                raise
    check_consistency(outcomes)
    return outcomes
