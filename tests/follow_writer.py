"""A writer process for the follow tests: commits at full speed a state with an invariant.

Run as ``python -m tests.follow_writer PATH MODE JOURNAL_SIZE [OPTION=N ...]`` from the
repository's root. It prints ``ready SEQ`` once the store is open, then commits
:func:`expected` of each next seq until SIGTERM (or ``count=N`` commits), closes the store
and prints ``closed SEQ``. With ``reopen=N`` it closes and reopens the store (a new session)
after every N commits; with ``small=1`` it commits :func:`expected_small` instead. The test
process checks every state a reader shows against these functions, so a state from no commit,
a mixed one or a torn one is caught.
"""

from __future__ import annotations

import signal
import sys
import zlib
from types import FrameType
from typing import Annotated

import attrs

import journalstate as js

BLOB = 1800  # up to 1800 bytes a record: a 16 KiB journal laps every few commits


@attrs.frozen
class Live:
    """The state: ``seq`` is the commit's own seq, ``a`` and ``b`` and ``blob`` derive from it."""

    seq: js.U64 = 0
    a: js.U64 = 0
    b: js.U32 = 0
    blob: Annotated[bytes, js.Bytes(BLOB)] = b""


@attrs.frozen
class LiveV2:
    """``Live`` widened: a larger blob and one more field (a migration without loss)."""

    seq: js.U64 = 0
    a: js.U64 = 0
    b: js.U64 = 0
    blob: Annotated[bytes, js.Bytes(2 * BLOB)] = b""
    note: Annotated[str, js.Str(8)] = "v2"


def expected(seq: int) -> Live:
    """The state the writer commits as ``seq`` (the default state at seq 0)."""
    if seq == 0:
        return Live()
    a = (seq * 2654435761) % 2**64
    blob = bytes([seq % 251]) * ((seq * 7919) % BLOB)
    return Live(seq=seq, a=a, b=zlib.crc32(blob, a % 2**32), blob=blob)


def expected_small(seq: int) -> Live:
    """A state whose record is small (no blob), so many commits fit in a journal."""
    if seq == 0:
        return Live()
    a = (seq * 2654435761) % 2**64
    return Live(seq=seq, a=a, b=zlib.crc32(b"", a % 2**32))


def main(argv: list[str]) -> int:
    """Commit until SIGTERM; see the module's docstring."""
    path, mode, journal_size = argv[0], argv[1], int(argv[2])
    options = {key: int(value) for key, value in (arg.split("=") for arg in argv[3:])}
    reopen_every = options.get("reopen", 0)
    count = options.get("count", 0)
    state_for = expected_small if options.get("small") else expected
    stop = False

    def on_term(signum: int, frame: FrameType | None) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, on_term)
    store = js.open(path, Live, durability=mode, journal_size=journal_size)
    print("ready", store.seq, flush=True)
    commits = 0
    while not stop and not (count and commits >= count):
        store.commit(state_for(store.seq + 1))
        commits += 1
        if reopen_every and commits % reopen_every == 0:
            store.close()
            store = js.open(path, Live, durability=mode)
    store.close()
    print("closed", store.seq, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
