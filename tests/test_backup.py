"""js.backup and `journalstate backup`: the copy's contents, its errors, and what a failure leaves.

A backup is a fresh store file holding the source's recovered state at its seq. These tests
check what opening the copy gives (state, seq, a clean report, the source's schema and sizes),
that the source is only read, that every refusal and every failure part way leaves nothing at
the destination and no temporary file, and the command's exit codes and JSON. The copies taken
beside a writer in another process are in tests/test_backup_live.py.
"""

from __future__ import annotations

import errno
import io
import json
import os
from pathlib import Path
from typing import Any

import pytest

import journalstate as js
from journalstate import _cli, _io, _tempfiles
from tests.conftest import Progress
from tests.test_cli import at_step, crashed_store, damage, make_store, tear_last_record
from tests.test_store import last_record_offset


def names(directory: Path) -> set[str]:
    """The names in ``directory`` (temporary files included)."""
    return set(os.listdir(directory))


def temporaries(directory: Path) -> list[str]:
    """The temporary store files (``.jst-<hex>.tmp``) in ``directory``."""
    return [n for n in os.listdir(directory) if n.startswith(".jst-")]


def opened(path: Path, **kwargs: Any) -> tuple[Any, int, js.RecoveryReport, js.Store[Any]]:
    """Open ``path`` read-only with its stored schema: (state, seq, report, store), closed."""
    with js.open(path, Progress, readonly=True, **kwargs) as store:
        return store.state, store.seq, store.recovery, store


def run(capsys: pytest.CaptureFixture[str], *argv: str | Path) -> tuple[int, str, str]:
    """Run the command in this process; returns (exit code, stdout, stderr)."""
    capsys.readouterr()
    out = io.StringIO()
    code = _cli.main([str(a) for a in argv], out)
    return code, out.getvalue(), capsys.readouterr().err


# --- what the copy holds -------------------------------------------------------------------------


def test_copy_holds_the_state_at_its_seq_and_opens_clean(tmp_path: Path) -> None:
    """The copy opens at the source's state and seq, clean, nothing to replay, same layout."""
    source = make_store(tmp_path / "s.jst", 7, journal_size=16384)
    before = source.read_bytes()
    report = js.backup(source, tmp_path / "b.jst")
    assert source.read_bytes() == before
    assert report.source == str(source)
    assert report.path == str(tmp_path / "b.jst")
    assert report.seq == 7
    assert report.file_size == os.path.getsize(tmp_path / "b.jst")
    assert report.recovery.seq == 7
    state, seq, recovery, copy = opened(tmp_path / "b.jst")
    assert (state, seq) == (at_step(7), 7)
    assert recovery.clean
    assert recovery.records_replayed == 0
    assert recovery.generation == report.generation
    assert all(s.valid and s.head is not None and s.head.seq == 7 for s in recovery.slots)
    _, _, _, original = opened(source)
    assert copy.header.schema == original.header.schema
    assert copy.header.state_size == original.header.state_size
    assert copy.header.journal_size == original.header.journal_size == 16384
    assert copy.header.file_size == original.header.file_size
    assert copy.header.file_id != original.header.file_id
    assert temporaries(tmp_path) == []


def test_copy_opens_for_writing_and_goes_on_from_the_seq(tmp_path: Path) -> None:
    """A writer opens the copy at the same seq and commits on from it; the source is unchanged."""
    source = make_store(tmp_path / "s.jst", 3)
    js.backup(source, tmp_path / "b.jst")
    with js.open(tmp_path / "b.jst", Progress) as store:
        assert (store.state, store.seq) == (at_step(3), 3)
        assert store.commit(at_step(4)) == 4
    assert opened(tmp_path / "b.jst")[:2] == (at_step(4), 4)
    assert opened(source)[:2] == (at_step(3), 3)


def test_backup_of_a_store_a_writer_holds_open(tmp_path: Path) -> None:
    """Beside an open writer (its lock held) the copy has its last commit; the writer goes on."""
    path = tmp_path / "s.jst"
    with js.open(path, Progress, durability="process") as writer:
        for step in range(1, 40):
            writer.commit(at_step(step))
        report = js.backup(path, tmp_path / "b.jst")
        writer.commit(at_step(40))  # the lock was never taken from it
    assert report.seq == 39
    assert opened(tmp_path / "b.jst")[:2] == (at_step(39), 39)
    assert opened(tmp_path / "b.jst")[2].clean


def test_torn_tail_of_a_crashed_store_is_left_behind(tmp_path: Path) -> None:
    """A crash image's torn tail: the report says so and the copy holds the state before it."""
    source = crashed_store(tmp_path, 3)
    tear_last_record(source)
    report = js.backup(source, tmp_path / "b.jst")
    assert report.recovery.torn_tail
    assert report.seq == 2
    state, seq, recovery, _ = opened(tmp_path / "b.jst")
    assert (state, seq, recovery.clean) == (at_step(2), 2, True)


def test_corruption_is_refused_unless_salvaged(tmp_path: Path) -> None:
    """Journal corruption: refused by default (nothing written); salvage copies the state before."""
    source = crashed_store(tmp_path, 3, durability="commit")
    damage(source, last_record_offset(source) - 4)  # the payload of record 2
    with pytest.raises(js.StoreCorrupt, match="durable-record-lost"):
        js.backup(source, tmp_path / "b.jst")
    assert names(tmp_path) == {"live.jst", "crashed.jst"}
    report = js.backup(source, tmp_path / "b.jst", recovery="salvage")
    assert report.recovery.corruption
    state, seq, recovery, _ = opened(tmp_path / "b.jst")
    assert (state, seq, recovery.clean) == (at_step(1), 1, True)


def test_previous_generation_copies_the_older_slot(tmp_path: Path) -> None:
    """previous_generation=True copies the older slot's state, at its seq."""
    source = make_store(tmp_path / "s.jst", 2)
    with js.open(source, Progress) as store:  # a checkpoint at seq 2 in the other slot
        store.commit(at_step(3))
    older = opened(source, previous_generation=True)
    report = js.backup(source, tmp_path / "b.jst", previous_generation=True)
    assert report.seq == older[1]
    assert opened(tmp_path / "b.jst")[:2] == older[:2]
    assert opened(tmp_path / "b.jst")[:2] != opened(source)[:2]


# --- refusals: nothing written ------------------------------------------------------------------


def test_existing_destination_is_refused_and_kept(tmp_path: Path) -> None:
    """A file at the destination: DestinationExists, the file unchanged, nothing else written."""
    source = make_store(tmp_path / "s.jst", 1)
    other = tmp_path / "other"
    other.write_bytes(b"keep me")
    with pytest.raises(js.DestinationExists, match="already exists") as raised:
        js.backup(source, other)
    assert isinstance(raised.value, FileExistsError)
    assert isinstance(raised.value, js.BadDestination)
    assert raised.value.path == str(other)
    assert other.read_bytes() == b"keep me"
    with pytest.raises(js.DestinationExists):
        js.backup(source, source)
    assert names(tmp_path) == {"s.jst", "other"}


@pytest.mark.parametrize("target", ["missing.jst", "there.jst"])
def test_symlink_at_destination_is_never_followed(tmp_path: Path, target: str) -> None:
    """A symbolic link at the destination (dangling or not) is refused; its target is untouched."""
    source = make_store(tmp_path / "s.jst", 1)
    (tmp_path / "there.jst").write_bytes(b"target")
    (tmp_path / "link").symlink_to(target)
    with pytest.raises(js.DestinationExists, match="symbolic link"):
        js.backup(source, tmp_path / "link")
    assert os.readlink(tmp_path / "link") == target
    assert (tmp_path / "there.jst").read_bytes() == b"target"
    assert names(tmp_path) == {"s.jst", "there.jst", "link"}


def test_missing_directory_is_refused(tmp_path: Path) -> None:
    """A destination whose directory is missing, or a file: BadDestination, nothing created."""
    source = make_store(tmp_path / "s.jst", 1)
    with pytest.raises(js.BadDestination, match="does not exist"):
        js.backup(source, tmp_path / "no" / "such" / "b.jst")
    (tmp_path / "file").write_bytes(b"x")
    with pytest.raises(js.BadDestination, match="is not a directory"):
        js.backup(source, tmp_path / "file" / "b.jst")
    assert names(tmp_path) == {"s.jst", "file"}


def test_source_must_be_a_store(tmp_path: Path) -> None:
    """A missing source, a non-store, a directory or a symbolic link: typed errors, no file."""
    dest = tmp_path / "b.jst"
    with pytest.raises(js.StoreNotFound):
        js.backup(tmp_path / "missing.jst", dest)
    (tmp_path / "junk").write_bytes(b"not a store" * 100)
    with pytest.raises(js.NotAStore):
        js.backup(tmp_path / "junk", dest)
    with pytest.raises(js.UnsafePath, match="directory"):
        js.backup(tmp_path, dest)
    make_store(tmp_path / "s.jst", 1)
    (tmp_path / "link.jst").symlink_to("s.jst")
    with pytest.raises(js.UnsafePath, match="symbolic link"):
        js.backup(tmp_path / "link.jst", dest)
    assert names(tmp_path) == {"junk", "s.jst", "link.jst"}


# --- failures part way: nothing at the destination, no temporary file -----------------------------


def test_no_space_leaves_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The file system is full when the copy is allocated: NoSpace, no file, no temporary."""
    source = make_store(tmp_path / "s.jst", 1)

    def full(fd: int, size: int, path: str) -> None:
        raise js.NoSpace(path, "no room (simulated)")

    monkeypatch.setattr(_io, "preallocate", full)
    with pytest.raises(js.NoSpace):
        js.backup(source, tmp_path / "b.jst")
    assert names(tmp_path) == {"s.jst"}


def test_failed_file_sync_leaves_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The copy's fsync fails (EIO): a typed error, no file, no temporary."""
    source = make_store(tmp_path / "s.jst", 1)

    def broken(fd: int) -> None:
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(os, "fsync", broken)
    with pytest.raises(js.StoreFileError, match="Input/output error"):
        js.backup(source, tmp_path / "b.jst")
    assert names(tmp_path) == {"s.jst"}


@pytest.mark.parametrize(
    ("error", "raised"),
    [(OSError(errno.EIO, "Input/output error"), js.StoreFileError), (KeyboardInterrupt(), None)],
)
def test_failure_after_the_link_takes_the_copy_away(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    error: BaseException,
    raised: type[BaseException] | None,
) -> None:
    """The directory sync after the link fails (or Ctrl-C comes): the linked copy is removed."""
    source = make_store(tmp_path / "s.jst", 1)
    seen: list[set[str]] = []

    def broken(directory: str) -> None:
        seen.append(names(tmp_path))
        raise error

    monkeypatch.setattr(_io, "fsync_dir", broken)
    with pytest.raises(raised or type(error)):
        js.backup(source, tmp_path / "b.jst")
    assert "b.jst" in seen[0]  # the failure came after the copy was linked in place
    assert names(tmp_path) == {"s.jst"}


def test_a_file_that_appears_meanwhile_is_kept(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another process puts a file at the destination during the copy: it wins, and is kept."""
    source = make_store(tmp_path / "s.jst", 1)
    dest = tmp_path / "b.jst"
    allocate = _tempfiles.preallocate

    def racing(fd: int, size: int, path: str) -> None:
        dest.write_bytes(b"theirs")
        allocate(fd, size, path)

    monkeypatch.setattr(_io, "preallocate", racing)
    with pytest.raises(js.DestinationExists, match="appeared"):
        js.backup(source, dest)
    assert dest.read_bytes() == b"theirs"
    assert names(tmp_path) == {"s.jst", "b.jst"}


# --- the lock message ----------------------------------------------------------------------------


def test_lock_error_points_to_backup(tmp_path: Path) -> None:
    """StoreLocked names js.backup and `journalstate backup` as the way to copy a live store."""
    path = make_store(tmp_path / "s.jst", 1)
    with js.open(path, Progress), pytest.raises(js.StoreLocked) as raised:
        js.open(path, Progress)
    assert "js.backup()" in str(raised.value)
    assert "`journalstate backup`" in str(raised.value)


# --- the command ---------------------------------------------------------------------------------


def test_command_writes_the_copy_and_reports_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`journalstate backup` exits 0, says what it wrote, and the copy checks clean."""
    source = make_store(tmp_path / "s.jst", 4)
    dest = tmp_path / "b.jst"
    code, out, err = run(capsys, "backup", source, dest)
    assert (code, err) == (0, "")
    assert out.startswith(f"{source}: backed up into {dest}\n")
    assert "copy              seq 4, generation " in out
    assert "corruption        none\n" in out
    code, out, _ = run(capsys, "check", dest)
    assert (code, out.startswith(f"{dest}: clean\n")) == (0, True)
    assert opened(dest)[:2] == (at_step(4), 4)


def test_command_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """--json prints one document: source, path, seq, file_size, generation and the report."""
    source = make_store(tmp_path / "s.jst", 2)
    dest = tmp_path / "b.jst"
    code, out, err = run(capsys, "backup", "--json", source, dest)
    assert (code, err) == (0, "")
    doc = json.loads(out)
    assert set(doc) == {"source", "path", "seq", "file_size", "generation", "recovery"}
    assert (doc["source"], doc["path"], doc["seq"]) == (str(source), str(dest), 2)
    assert doc["file_size"] == os.path.getsize(dest)
    assert doc["recovery"]["clean"] is True
    assert doc["recovery"]["seq"] == 2


def test_command_exit_codes_for_bad_input(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Missing source, existing destination, missing directory, not a store: 2, one line each."""
    source = make_store(tmp_path / "s.jst", 1)
    (tmp_path / "junk").write_bytes(b"junk" * 100)
    cases = [
        ((tmp_path / "missing.jst", tmp_path / "b.jst"), "no such file"),
        ((source, tmp_path / "junk"), "already exists"),
        ((source, tmp_path / "no" / "b.jst"), "does not exist"),
        ((tmp_path / "junk", tmp_path / "b.jst"), "not a journalstate store"),
        ((tmp_path, tmp_path / "b.jst"), "is a directory"),
    ]
    for (src, dest), phrase in cases:
        code, out, err = run(capsys, "backup", src, dest)
        assert (code, out) == (2, ""), err
        assert err.startswith("journalstate: "), err
        assert err.count("\n") == 1, err
        assert phrase in err
        assert "Traceback" not in err
    code, _, err = run(capsys, "backup", source)
    assert code == 2
    assert "DEST" in err
    assert names(tmp_path) == {"s.jst", "junk"}


def test_command_codes_follow_what_recovery_found(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A torn tail: 0 and a copy (the report names it); corruption: 3 and nothing written; a
    full disk: 5."""
    torn = crashed_store(tmp_path, 3)
    tear_last_record(torn)
    code, out, _ = run(capsys, "backup", torn, tmp_path / "b1.jst")
    assert code == 0
    assert "torn tail         " in out
    assert opened(tmp_path / "b1.jst")[:2] == (at_step(2), 2)
    (tmp_path / "sub").mkdir()
    corrupt = crashed_store(tmp_path / "sub", 3, durability="commit")
    damage(corrupt, last_record_offset(corrupt) - 4)
    code, out, err = run(capsys, "backup", corrupt, tmp_path / "b2.jst")
    assert (code, out) == (3, "")
    assert "durable-record-lost" in err
    assert not (tmp_path / "b2.jst").exists()

    def full(fd: int, size: int, path: str) -> None:
        raise js.NoSpace(path, "no room (simulated)")

    monkeypatch.setattr(_io, "preallocate", full)
    code, out, err = run(capsys, "backup", torn, tmp_path / "b3.jst")
    assert (code, out) == (5, "")
    assert "no room" in err
    assert names(tmp_path) == {"live.jst", "crashed.jst", "b1.jst", "sub"}


def test_recover_output_of_a_store_a_writer_holds_open(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """recover --output beside an open writer: its last commit in a new store; the source intact."""
    path = tmp_path / "s.jst"
    with js.open(path, Progress, durability="process") as writer:
        for step in range(1, 30):
            writer.commit(at_step(step))
        before = path.read_bytes()
        code, out, err = run(capsys, "recover", path, "--output", tmp_path / "new.jst")
        assert (code, err) == (0, "")
        assert "wrote a fresh store holding the state at seq 29 " in out
        assert path.read_bytes() == before
        code, out, _ = run(
            capsys, "recover", path, "--previous-generation", "--output", tmp_path / "old.jst"
        )
        assert code == 0
        assert "the previous generation's state at seq 0 " in out
        assert path.read_bytes() == before
        writer.commit(at_step(30))
    state, seq, recovery, _ = opened(tmp_path / "new.jst")
    assert (state, seq, recovery.clean) == (at_step(29), 29, True)
    state, seq, recovery, _ = opened(tmp_path / "old.jst")
    assert (state, seq, recovery.clean) == (Progress(), 0, True)
