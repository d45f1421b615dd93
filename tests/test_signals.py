"""Signals, asynchronous exceptions, re-entrant calls, fork and pickling.

The trace-function tests raise an exception at every line, in turn, of a store operation (and
of the journalstate code it calls), the way ``KeyboardInterrupt`` or an exception raised by a
signal handler can arrive between any two bytecodes. After each injection the store must agree
with a reopen of its file, keep working, and close into a clean file.
"""

from __future__ import annotations

import copy
import dis
import json
import linecache
import os
import pickle
import subprocess
import sys
import tempfile
import textwrap
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from types import FrameType
from typing import Annotated, Any

import attrs
import pytest

import journalstate as js
from journalstate._storage import Buffer, Region
from journalstate._store import Store

JOURNAL = 4096  # one page: commits soon trigger checkpoints and straddle the ring's end
MODES = ["commit", "interval", "process"]
PACKAGE = os.path.dirname(js.__file__)
TESTING = os.path.join(PACKAGE, "testing")
NO_CHECK = {dis.opmap[name] for name in ("NOP", "SETUP_FINALLY") if dis.opmap.get(name, 256) < 256}
"""Opcodes that start a ``try:`` line (a no-op since 3.11): no pending signal is handled there."""
LOAD_CONST = dis.opmap["LOAD_CONST"]


@attrs.frozen
class S:
    """A small state: a counter, a label and a blob changed only by the last commit."""

    step: js.U64 = 0
    label: Annotated[str, js.Str(16)] = ""
    blob: Annotated[bytes, js.Bytes(24)] = b""


class Injected(BaseException):
    """Stands for KeyboardInterrupt, or any exception a signal handler raises."""


class Injector:
    """A trace function that raises Injected at the ``at``-th line run inside ``entry``.

    Lines count in journalstate's own modules (not journalstate.testing) while a call of
    ``entry`` is on the stack; the user's code in a transaction's block does not count.
    """

    def __init__(self, entry: Callable[..., Any], at: int) -> None:
        self.entry = entry.__code__
        self.at = at
        self.lines = 0
        self.depth = 0
        self.fired = False

    def __call__(self, frame: FrameType, event: str, arg: object) -> Any:
        code = frame.f_code
        if not code.co_filename.startswith(PACKAGE) or code.co_filename.startswith(TESTING):
            return None
        if code is self.entry:
            self.depth += 1
        elif self.depth == 0:
            return None
        return self.local

    def local(self, frame: FrameType, event: str, arg: object) -> Any:
        if event == "return" and frame.f_code is self.entry:
            self.depth -= 1
        elif event == "line" and self.depth > 0 and not self.fired and deliverable(frame):
            self.lines += 1
            if self.lines == self.at:
                self.fired = True
                raise Injected(
                    f"injected at line {self.lines}: {frame.f_code.co_name}:{frame.f_lineno}"
                )
        return self.local


def deliverable(frame: FrameType) -> bool:
    """Whether CPython could deliver an asynchronous exception where this line starts.

    Signal handlers (and so KeyboardInterrupt) run only where the interpreter checks for
    pending events: never at the instruction that starts a ``try:`` line, nor at the
    ``LOAD_CONST None`` that starts a ``with`` block's exit before its ``__exit__`` call. A
    trace function that raised there would raise outside the block's exception handling,
    which no signal can.
    """
    code = frame.f_code
    op = code.co_code[frame.f_lasti]
    if op in NO_CHECK:
        return False
    if op == LOAD_CONST and code.co_consts[code.co_code[frame.f_lasti + 1]] is None:
        line = linecache.getline(code.co_filename, frame.f_lineno).lstrip()
        return not line.startswith("with ")
    return True


def injected(entry: Callable[..., Any], at: int, action: Callable[[], object]) -> bool:
    """Run ``action`` with an exception injected at line ``at`` of ``entry``; True if it fired."""
    injector = Injector(entry, at)
    previous = sys.gettrace()  # a coverage tracer, say
    sys.settrace(injector)
    try:
        action()
    except Injected:
        assert injector.fired
    finally:
        sys.settrace(previous)
    return injector.fired


@pytest.fixture
def shm_dir(tmp_path: Path) -> Iterator[Path]:
    """A directory in memory when the machine has one (the loops open thousands of stores)."""
    if not os.path.isdir("/dev/shm"):
        yield tmp_path
        return
    with tempfile.TemporaryDirectory(dir="/dev/shm") as d:
        yield Path(d)


def open_store(path: Path, mode: str, threshold: float, **kw: Any) -> Store[S]:
    """The store under test: a one-page journal, no background flush during a test."""
    return js.open(
        path,
        S,
        durability=mode,
        journal_size=JOURNAL,
        checkpoint_threshold=threshold,
        flush_interval=3600,
        **kw,
    )


def target(state: S) -> S:
    """The commit under test: changes the step and the label."""
    return attrs.evolve(state, step=state.step + 1000, label=f"t{state.step}")


def filler(state: S) -> S:
    """A commit that moves the tail on: the step, and every third time the label (two sizes)."""
    if state.step % 3:
        return attrs.evolve(state, step=state.step + 1)
    return attrs.evolve(state, step=state.step + 1, label=f"f{state.step}")


def record_size(directory: Path) -> int:
    """The journal bytes the target commit takes."""
    with open_store(directory / "scratch.jst", "process", 1.0) as store:
        before = store._head[0]
        store.commit(target(store.state))
        size = store._head[0] - before
    (directory / "scratch.jst").unlink()
    return size


def wants(kind: str, store: Store[S], size: int) -> bool:
    """Whether the next target commit is of the wanted kind."""
    tail, base = store._head[0], store._base.position
    straddles = tail % JOURNAL + size > JOURNAL
    marker = not straddles and tail % JOURNAL + size + 48 > JOURNAL  # only the end marker
    space = tail + size + 48 - base > JOURNAL
    fill = tail + size - base > JOURNAL * 0.5
    if kind == "plain":
        return store.seq >= 1
    if kind == "straddle":
        return straddles and not space
    if kind == "marker":
        return marker and not space
    if kind == "space":
        return space and not straddles
    assert kind == "fill"
    return fill and not straddles and not space


SCENARIOS = {"plain": 0.5, "straddle": 0.5, "marker": 0.5, "space": 1.0, "fill": 0.5}
"""The checkpoint threshold of each kind of target commit (1.0: only checkpoints for space)."""


def prepare(
    path: Path, mode: str, kind: str, size: int, fillers: int | None
) -> tuple[Store[S], int]:
    """A new store whose next target commit is of the wanted kind, and the fillers it took."""
    store = open_store(path, mode, SCENARIOS[kind])
    count = 0
    while fillers is None or count < fillers:
        if fillers is None and wants(kind, store, size):
            break
        store.commit(filler(store.state))
        count += 1
        assert count < 10_000, f"no {kind} commit found"
    if fillers is not None:
        assert wants(kind, store, size)
    return store, count


def check_consistent(store: Store[S], path: Path) -> None:
    """A reopen of the file (as after a process death) shows the store's in-memory state.

    The file is read first: it must already agree with whatever reading the state settles.
    """
    with js.open(path, S, readonly=True) as other:
        assert not other.recovery.corruption
        assert (other.state, other.seq) == (store.state, store.seq)


def check_after(store: Store[S], path: Path, *, more: bool = True) -> None:
    """Committing more works (if ``more``), and close then reopen gives it with a clean recovery.

    Closing at once after the interruption checks what the interrupted call left at the tail.
    """
    if not store.closed and not more:
        last = store.state
    elif not store.closed:
        check_consistent(store, path)
        last = attrs.evolve(store.state, blob=b"last %d" % store.seq)
        store.commit(last)
        assert store.state == last
        check_consistent(store, path)
    else:
        with js.open(path, S, readonly=True) as other:
            last = other.state
    store.close()
    store.close()
    assert store.closed
    with js.open(path, S, readonly=True, recovery="strict") as again:
        assert again.state == last
        assert again.recovery.clean
    with open_store(path, "commit", 0.5, lock_timeout=0) as writer:  # the lock was released
        assert writer.state == last


def run_every_line(
    shm_dir: Path,
    mode: str,
    kind: str,
    entry: Callable[..., Any],
    operation: Callable[[Store[S]], object],
    possible: Callable[[S], list[S]],
) -> int:
    """Inject at every line of one operation in turn; return how many lines it ran."""
    size = record_size(shm_dir)
    fillers: int | None = None
    at = 0
    while True:
        at += 1
        path = shm_dir / f"{mode}-{kind}-{at}.jst"
        store, fillers = prepare(path, mode, kind, size, fillers)
        before = store.state
        fired = injected(entry, at, lambda: operation(store))  # noqa: B023
        if not store.closed:
            check_consistent(store, path)  # before anything else reads the store
        assert store.state in possible(before), f"line {at}: {store.state}"
        check_after(store, path, more=at % 2 == 0)
        path.unlink()
        if not fired:
            return at - 1


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("kind", ["plain", "straddle", "marker", "space", "fill"])
def test_commit_interrupted_at_every_line(shm_dir: Path, mode: str, kind: str) -> None:
    """A commit interrupted anywhere happened or did not, matches its file, and goes on."""
    lines = run_every_line(
        shm_dir,
        mode,
        kind,
        Store.commit,
        lambda store: store.commit(target(store.state)),
        lambda before: [before, target(before)],
    )
    assert lines > 10


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("kind", ["plain", "fill"])
def test_transaction_interrupted_at_every_line(shm_dir: Path, mode: str, kind: str) -> None:
    """A transaction interrupted anywhere happened or did not, and the store goes on."""

    def operation(store: Store[S]) -> None:
        with store.transaction() as draft:
            draft.step += 1000
            draft.label = f"t{draft.step - 1000}"

    lines = run_every_line(
        shm_dir,
        mode,
        kind,
        Store.transaction.__wrapped__,  # type: ignore[attr-defined]
        operation,
        lambda before: [before, target(before)],
    )
    assert lines > 10


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize(
    ("name", "entry"),
    [("checkpoint", Store.checkpoint), ("flush", Store.flush), ("close", Store.close)],
)
def test_checkpoint_flush_close_interrupted_at_every_line(
    shm_dir: Path, mode: str, name: str, entry: Callable[..., Any]
) -> None:
    """checkpoint, flush and close interrupted anywhere leave the store usable or closable."""
    lines = run_every_line(
        shm_dir,
        mode,
        "plain",
        entry,
        lambda store: getattr(store, name)(),
        lambda before: [before],
    )
    assert lines > 3


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("previous", [False, True])
def test_open_session_start_interrupted_at_every_line(
    shm_dir: Path, mode: str, previous: bool
) -> None:
    """An open interrupted while starting its session leaves the file to the next open."""
    at = 0
    while True:
        at += 1
        path = shm_dir / f"open-{mode}-{at}.jst"
        with open_store(path, mode, 0.5) as store:
            store.commit(S(step=1, label="one"))
            store.checkpoint()
            store.commit(S(step=2, label="two"))
        expected = S(step=1, label="one") if previous else S(step=2, label="two")
        opened: list[Store[S]] = []
        fired = injected(
            Store.begin_session,
            at,
            lambda: opened.append(open_store(path, mode, 0.5, previous_generation=previous)),  # noqa: B023
        )
        if fired:
            assert not opened
            with js.open(path, S, readonly=True) as other:
                assert other.state in (expected, S(step=2, label="two"))
                assert not other.recovery.corruption
                # A roll-back that became durable before the interruption is not repeated.
                again = previous and other.state != expected
            store = open_store(path, mode, 0.5, previous_generation=again, lock_timeout=0)
        else:
            store = opened[0]
        assert store.state == expected
        check_after(store, path)
        path.unlink()
        if not fired:
            break
    assert at > 10


# --- calls from inside a store call (what a signal handler does) ---------------------------------


class HookRegion:
    """A Region that calls ``hook`` once, after the next write or during the next sync."""

    def __init__(self, inner: Region, on: str) -> None:
        self.inner = inner
        self.on = on
        self.hook: Callable[[], None] | None = None

    @property
    def buffer(self) -> Buffer:
        return self.inner.buffer

    def _fire(self, op: str) -> None:
        if op == self.on and self.hook is not None:
            hook, self.hook = self.hook, None
            hook()

    def write(self, offset: int, data: bytes | bytearray) -> None:
        self.inner.write(offset, data)
        self._fire("write")

    def sync(self, offset: int, length: int) -> None:
        self._fire("sync")
        self.inner.sync(offset, length)

    def close(self) -> None:
        self.inner.close()


def handler_commit(store: Store[S], label: str, outcome: list[str]) -> Callable[[], None]:
    """What a signal handler that saves progress does; records what happened."""

    def handler() -> None:
        try:
            store.commit(attrs.evolve(store.state, label=label))
            outcome.append("committed")
        except js.ReentrantCall:
            outcome.append("refused")

    return handler


@pytest.mark.parametrize(("mode", "on"), [("commit", "sync"), ("process", "write")])
def test_commit_from_a_handler_inside_a_commit_is_refused(
    store_path: Path, mode: str, on: str
) -> None:
    """A commit from inside the same thread's commit raises ReentrantCall: no hang, no mix."""
    store = open_store(store_path, mode, 0.5)
    store.commit(S(step=1, label="one"))
    ring = HookRegion(store._ring, on)
    store._ring = ring
    outcome: list[str] = []
    ring.hook = handler_commit(store, "handler", outcome)
    done = threading.Event()

    def main_commit() -> None:
        store.commit(S(step=2, label="two"))
        done.set()

    worker = threading.Thread(target=main_commit, daemon=True)
    worker.start()
    assert done.wait(300), "the commit hung"  # a hang guard only
    assert outcome == ["refused"]
    assert store.state == S(step=2, label="two")
    check_consistent(store, store_path)
    store.commit(S(step=3, label="three"))  # the thread is not marked inside any more
    store.close()
    with js.open(store_path, S, readonly=True, recovery="strict") as again:
        assert again.state == S(step=3, label="three")


def test_handler_commit_outside_store_calls_works(store_path: Path) -> None:
    """A handler's commit while the thread is not inside the store is an ordinary commit."""
    with open_store(store_path, "commit", 0.5) as store:
        outcome: list[str] = []
        handler_commit(store, "saved", outcome)()
        assert outcome == ["committed"]
        assert store.state.label == "saved"


def test_other_calls_from_inside_a_commit(store_path: Path) -> None:
    """Every operation called from inside a commit is refused; reading the state is not."""
    store = open_store(store_path, "commit", 0.5)
    ring = HookRegion(store._ring, "sync")
    store._ring = ring
    seen: list[object] = []

    def handler() -> None:
        seen.append(store.state)
        for call in (store.flush, store.checkpoint, store.close):
            with pytest.raises(js.ReentrantCall):
                call()
        with pytest.raises(js.ReentrantCall), store.transaction():
            pass

    ring.hook = handler
    store.commit(S(step=1))
    assert seen == [S(step=1)]
    assert not store.closed
    store.close()


def test_commit_inside_own_transaction_is_a_reentrant_call(store_path: Path) -> None:
    """commit() and transaction() inside the thread's own transaction raise ReentrantCall."""
    with open_store(store_path, "commit", 0.5) as store, store.transaction() as draft:
        draft.step = 5
        with pytest.raises(js.ReentrantCall):
            store.commit(S(step=9))
        with pytest.raises(js.TransactionError), store.transaction():
            pass
        store.flush()  # the block itself is not inside a store call
    assert store.state == S(step=5)


def test_a_mark_left_by_an_interrupted_finally_is_dropped(store_path: Path) -> None:
    """A thread id left in the set of threads inside the store does not block that thread."""
    with open_store(store_path, "commit", 0.5) as store:
        store._inside.add(threading.get_ident())
        store.commit(S(step=1))
        assert store.state == S(step=1)
        assert threading.get_ident() not in store._inside


def test_exception_after_the_msync_leaves_durable_seq_behind(store_path: Path) -> None:
    """A handler's exception right after the commit point's msync does not report durability."""
    store = open_store(store_path, "commit", 0.5)
    store.commit(S(step=1))
    durable = store.durable_seq
    ring = HookRegion(store._ring, "sync")
    store._ring = ring

    def handler() -> None:
        ring.inner.sync(0, JOURNAL)  # the msync itself completes...
        raise Injected("...and the handler raises before the store records it")

    ring.hook = handler
    with pytest.raises(Injected):
        store.commit(S(step=2))
    assert (store.seq, store.durable_seq) == (2, durable)  # happened, durability not claimed
    check_consistent(store, store_path)
    store.flush()
    assert store.durable_seq == 2
    store.close()


def test_other_threads_commit_while_one_is_inside(store_path: Path) -> None:
    """Another thread may commit while this one is in its commit point: it is not refused."""
    store = open_store(store_path, "commit", 0.5)
    ring = HookRegion(store._ring, "sync")
    store._ring = ring
    results: list[int] = []

    def other() -> None:
        worker = threading.Thread(
            target=lambda: results.append(store.commit(S(step=7), durability="process"))
        )
        worker.start()
        worker.join(300)  # a hang guard only

    ring.hook = other
    store.commit(S(step=1))
    assert results == [2]
    assert store.state == S(step=7)
    store.close()


# --- real signals ---------------------------------------------------------------------------------

SIGNAL_SCRIPT = textwrap.dedent(
    """
    import json, signal, sys
    from typing import Annotated
    import attrs
    import journalstate as js

    @attrs.frozen
    class S:
        step: js.U64 = 0
        label: Annotated[str, js.Str(16)] = ""

    path, mode, rounds, commits = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    refused_error = getattr(js, "ReentrantCall", js.TransactionError)
    passed = {(0, "")}
    counts = {"handled": 0, "refused": 0, "saved": 0}
    flag = []
    store = None

    def handler(signum, frame):
        state = store.state
        new = S(step=state.step, label="h%d" % (counts["handled"] + counts["refused"]))
        passed.add((new.step, new.label))
        try:
            store.commit(new)
            counts["handled"] += 1
        except refused_error:
            counts["refused"] += 1
            flag.append(new)

    results = []
    for r in range(rounds):
        store = js.open(path, S, durability=mode, journal_size=8192)
        signal.signal(signal.SIGALRM, handler)
        signal.setitimer(signal.ITIMER_REAL, 0.0003, 0.0003)
        for i in range(commits):
            new = S(step=r * commits + i, label="m%d" % i)
            passed.add((new.step, new.label))
            store.commit(new)
            if flag:  # the handler could not commit: the main loop does it
                saved = flag.pop()
                store.commit(saved)
                counts["saved"] += 1
        signal.setitimer(signal.ITIMER_REAL, 0, 0)
        signal.signal(signal.SIGALRM, signal.SIG_IGN)
        final = store.state
        store.close()
        with js.open(path, S, readonly=True, recovery="strict") as again:
            results.append({
                "committed": (again.state.step, again.state.label) in passed,
                "equal": again.state == final,
            })
    print(json.dumps({"results": results, "counts": counts}))
    """
)


@pytest.mark.skipif(not hasattr(os, "fork") or sys.platform == "win32", reason="POSIX signals")
@pytest.mark.parametrize(("mode", "commits"), [("commit", 400), ("process", 20_000)])
def test_signal_handler_that_commits(tmp_path: Path, mode: str, commits: int) -> None:
    """A SIGALRM handler committing during a commit loop never hangs nor mixes states."""
    try:
        done = subprocess.run(
            [sys.executable, "-c", SIGNAL_SCRIPT, str(tmp_path / "s.jst"), mode, "4", str(commits)],
            capture_output=True,
            text=True,
            timeout=120,
        )
    except subprocess.TimeoutExpired:
        pytest.fail("the process hung")
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["results"] == [{"committed": True, "equal": True}] * 4, report


INTERRUPT_SCRIPT = textwrap.dedent(
    """
    import json, signal, sys
    from typing import Annotated
    import attrs
    import journalstate as js

    @attrs.frozen
    class S:
        step: js.U64 = 0
        label: Annotated[str, js.Str(16)] = ""

    path, mode, commits = sys.argv[1], sys.argv[2], int(sys.argv[3])
    armed = [False]

    def handler(signum, frame):
        if armed[0]:  # one Ctrl-C at a time: none while the main loop checks the store
            armed[0] = False
            raise KeyboardInterrupt

    store = js.open(path, S, durability=mode, journal_size=8192)
    signal.signal(signal.SIGALRM, handler)
    signal.setitimer(signal.ITIMER_REAL, 0.0002, 0.0002)
    passed, interrupts, mismatches, done = {(0, "")}, 0, 0, [0]

    def loop():
        while done[0] < commits:
            new = S(step=done[0], label="m%d" % done[0])
            passed.add((new.step, new.label))
            store.commit(new)
            done[0] += 1

    while done[0] < commits:
        try:
            armed[0] = True
            loop()
            armed[0] = False  # from here on the handler raises nothing
        except KeyboardInterrupt:  # the handler disarmed itself
            interrupts += 1
            with js.open(path, S, readonly=True) as other:
                if (other.state, other.seq) != (store.state, store.seq):
                    mismatches += 1
                if other.recovery.corruption:
                    mismatches += 1
    signal.setitimer(signal.ITIMER_REAL, 0, 0)
    final = store.state
    store.close()
    with js.open(path, S, readonly=True, recovery="strict") as again:
        ok = again.state == final and (final.step, final.label) in passed
    print(json.dumps({"ok": ok, "mismatches": mismatches, "interrupts": interrupts}))
    """
)


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
@pytest.mark.parametrize(("mode", "commits"), [("commit", 1500), ("process", 30_000)])
def test_keyboard_interrupts_during_commits(shm_dir: Path, mode: str, commits: int) -> None:
    """Ctrl-C at random points of a commit loop: the store always matches its file."""
    try:
        done = subprocess.run(
            [sys.executable, "-c", INTERRUPT_SCRIPT, str(shm_dir / "s.jst"), mode, str(commits)],
            capture_output=True,
            text=True,
            timeout=120,
        )
    except subprocess.TimeoutExpired:
        pytest.fail("the process hung")
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["ok"], report
    assert report["mismatches"] == 0, report


# --- fork -----------------------------------------------------------------------------------------


LOCK_PROBE = textwrap.dedent(
    """
    import sys
    import journalstate as js
    try:
        js.open(sys.argv[1], None, lock_timeout=0).close()
        print("opened")
    except js.StoreLocked:
        print("locked")
    """
)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork()")
@pytest.mark.parametrize("mode", MODES)
def test_forked_child_cannot_write(store_path: Path, mode: str) -> None:
    """In a child every write raises ForkedStore; its close writes nothing and keeps the lock."""
    store = open_store(store_path, mode, 0.5)
    store.commit(S(step=1, label="parent"))
    before = store_path.read_bytes()
    pid = os.fork()
    if pid == 0:  # the child: report through the exit code only
        code = 99
        try:
            code = 0
            for write in (
                lambda: store.commit(S(step=2)),
                store.flush,
                store.checkpoint,
            ):
                try:
                    write()
                    code |= 1
                except js.ForkedStore:
                    pass
            try:
                with store.transaction() as draft:
                    draft.step = 3
                code |= 2
            except js.ForkedStore:
                pass
            if store.state != S(step=1, label="parent"):
                code |= 4
            store.close()
            store.close()
            if not store.closed:
                code |= 8
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert store_path.read_bytes() == before  # the child wrote nothing
    probe = subprocess.run(
        [sys.executable, "-c", LOCK_PROBE, str(store_path)],
        capture_output=True,
        text=True,
        timeout=300,  # a hang guard only
    )
    assert probe.stdout.strip() == "locked", probe.stderr  # the parent still holds the lock
    store.commit(S(step=5, label="after"))
    store.close()
    with js.open(store_path, S, readonly=True, recovery="strict") as again:
        assert again.state == S(step=5, label="after")


def test_forked_store_error_says_what_to_do() -> None:
    """ForkedStore is a RuntimeError whose message says to open the path again."""
    error = js.ForkedStore("/x/s.jst")
    assert isinstance(error, RuntimeError)
    assert isinstance(error, js.JournalStateError)
    assert "open the path" in str(error)


# --- pickling -------------------------------------------------------------------------------------


def test_pickling_a_store_is_refused(store_path: Path) -> None:
    """pickle and copy raise StoreNotPicklable, a TypeError that says to pass the path."""
    with open_store(store_path, "commit", 0.5) as store:
        with pytest.raises(js.StoreNotPicklable, match="pass its path") as info:
            pickle.dumps(store)
        assert isinstance(info.value, TypeError)
        assert info.value.path == str(store_path)
        with pytest.raises(js.StoreNotPicklable):
            copy.copy(store)
        store.commit(S(step=1))  # still usable
