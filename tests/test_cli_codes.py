"""The exit code of every store command, for each kind of file a crash or damage leaves.

The rule (docs/cli.md, "Exit codes"): a command that recovers a state exits with what recovery
*found*: 0 when it dropped and ignored nothing, 1 when it dropped a torn tail or ignored an
invalid slot, 3 when it found corruption. `recover` reports what it found before repairing, so
a `check` after it exits 0. Failures exit 2, 3, 4 or 5 by kind. A process death whose last
write had completed leaves nothing torn, so its image exits 0, like a store closed normally.
"""

from __future__ import annotations

import io
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import journalstate as js
from journalstate import _cli
from tests.conftest import Progress
from tests.test_cli import at_step, crashed_store, damage, make_store, tear_last_record
from tests.test_store import last_record_offset

READERS = (["check"], ["info"], ["log"], ["dump"], ["recover", "--dry-run"])
"""Every command that reads a store without changing it."""


def run(capsys: pytest.CaptureFixture[str], *argv: str | Path) -> tuple[int, str, str]:
    """Run the command in this process; returns (exit code, stdout, stderr)."""
    capsys.readouterr()
    out = io.StringIO()
    code = _cli.main([str(a) for a in argv], out)
    return code, out.getvalue(), capsys.readouterr().err


def codes(capsys: pytest.CaptureFixture[str], path: Path) -> dict[str, int]:
    """The exit code of each read-only command on ``path``."""
    return {" ".join(argv): run(capsys, *argv, path)[0] for argv in READERS}


def all_codes(code: int) -> dict[str, int]:
    """``code`` for every read-only command."""
    return {" ".join(argv): code for argv in READERS}


KILLED_CHILD = textwrap.dedent(
    """
    import sys
    import attrs
    import journalstate as js

    @attrs.frozen
    class Counter:
        n: js.U64 = 0

    store = js.open(sys.argv[1], Counter, durability="process")
    for i in range(1, 6):
        store.commit(Counter(n=i))
    print("committed", flush=True)
    sys.stdin.read()
    """
)


def sigkilled_store(path: Path) -> Path:
    """A store whose writer committed five times and was then killed with SIGKILL."""
    proc = subprocess.Popen(
        [sys.executable, "-c", KILLED_CHILD, str(path)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    proc.kill()
    _, err = proc.communicate(timeout=300)  # a hang guard only
    assert line == "committed\n", err
    assert proc.returncode == -9
    return path


def test_sigkill_image_without_a_torn_tail_exits_0(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A writer killed between commits leaves nothing torn: every command exits 0."""
    path = sigkilled_store(tmp_path / "killed.jst")
    assert codes(capsys, path) == all_codes(0)
    code, out, _ = run(capsys, "dump", path)
    assert code == 0
    assert "n = 5\n" in out
    code, out, _ = run(capsys, "recover", path)
    assert code == 0
    assert "records replayed  5" in out  # it was a crash image, not a closed store
    assert run(capsys, "check", path)[0] == 0


def test_torn_tail_exits_1_until_recovered(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A torn tail: every reader exits 1; recover exits 1 (what it found); check then exits 0."""
    path = crashed_store(tmp_path, 3)
    tear_last_record(path)
    assert codes(capsys, path) == all_codes(1)
    code, out, _ = run(capsys, "recover", path)
    assert code == 1
    assert "and cut the torn tail" in out
    assert codes(capsys, path) == all_codes(0)
    with js.open(path, Progress, readonly=True) as store:
        assert store.state == at_step(2)


def test_strict_mode_refuses_a_torn_tail_with_3(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--mode strict refuses a torn tail: exit 3, a hint to the default mode, nothing written."""
    path = crashed_store(tmp_path, 3)
    tear_last_record(path)
    before = path.read_bytes()
    for argv in (["dump", "--mode", "strict"], ["recover", "--mode", "strict"]):
        code, out, err = run(capsys, *argv, path)
        assert (code, out) == (3, "")
        assert err.count("\n") == 1
        assert "torn tail" in err
        assert "--mode tolerate-tail" in err
        assert "salvage" not in err
    assert path.read_bytes() == before


def test_invalid_slot_exits_1_until_recovered(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A damaged (torn) checkpoint slot with no later evidence of it: 1, then 0 after recover."""
    path = make_store(tmp_path / "s.jst", 3)
    with js.open(path, Progress, readonly=True) as store:
        older = 1 - store.recovery.slot
        offset = store.header.slot_offsets[older]
    damage(path, offset + 60)
    assert codes(capsys, path) == all_codes(1)
    assert run(capsys, "recover", path)[0] == 1
    assert codes(capsys, path) == all_codes(0)


def test_corruption_exits_3_whether_refused_or_salvaged(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A damaged record that a later one vouches for: 3 for every command, refused or repaired."""
    path = crashed_store(tmp_path, 3, durability="commit")
    damage(path, last_record_offset(path) - 4)  # the payload of record 2
    assert codes(capsys, path) == all_codes(3)
    before = path.read_bytes()
    code, out, err = run(capsys, "recover", path)
    assert (code, out) == (3, "")
    assert "durable-record-lost" in err
    assert path.read_bytes() == before
    code, out, _ = run(capsys, "recover", "--mode", "salvage", path)
    assert code == 3
    assert "and cut the journal after the damage" in out
    assert codes(capsys, path) == all_codes(0)


def test_unrecoverable_exits_4(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Both slots damaged: every command, recover included, exits 4 and writes nothing."""
    path = make_store(tmp_path / "s.jst", 2)
    with js.open(path, Progress, readonly=True) as store:
        offsets = store.header.slot_offsets
    for offset in offsets:
        damage(path, offset + 60)
    before = path.read_bytes()
    assert codes(capsys, path) == all_codes(4)
    for mode in ("tolerate-tail", "salvage"):
        code, out, err = run(capsys, "recover", "--mode", mode, path)
        assert (code, out) == (4, "")
        assert "neither state slot is valid" in err
    assert path.read_bytes() == before


def test_locked_store_exits_5_for_recover_only(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A writer holds the store: recover exits 5 without suggesting a copy; readers exit 0."""
    path = make_store(tmp_path / "s.jst", 2)
    with js.open(path, Progress) as writer:
        writer.commit(at_step(3))
        code, out, err = run(capsys, "recover", path)
        assert (code, out) == (5, "")
        assert "locked by a live writer" in err
        assert "stop it" in err
        assert "--output" not in err
        assert "copy" not in err
        assert codes(capsys, path) == all_codes(0)


def test_lock_error_points_to_waiting_or_reading_never_to_copying(tmp_path: Path) -> None:
    """StoreLocked says how to wait or read a snapshot, and warns against copying the file."""
    path = make_store(tmp_path / "s.jst", 1)
    with js.open(path, Progress), pytest.raises(js.StoreLocked) as raised:
        js.open(path, Progress)
    message = str(raised.value)
    assert message.startswith(f"{path}: another writer holds the lock")
    assert "lock_timeout" in message
    assert "readonly=True" in message
    assert "Do not copy the file while the writer runs" in message
    assert "--output" not in message


def test_lost_slot_exits_3_even_where_the_mode_accepts_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A damaged newest slot that records prove complete: 3 for every command, recover too."""
    path = crashed_store(tmp_path, 3)
    with js.open(path, Progress, readonly=True) as store:
        newest = store.header.slot_offsets[store.recovery.slot]
    damage(path, newest + 60)
    assert codes(capsys, path) == all_codes(3)
    code, out, _ = run(capsys, "dump", path)
    assert code == 3
    assert out.startswith(f"# {path}: generation 1, seq 0\n")  # the older slot's state
    code, out, _ = run(capsys, "recover", path)
    assert code == 3
    assert "slot-lost" in out
    assert codes(capsys, path) == all_codes(0)
