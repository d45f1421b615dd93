"""`journalstate restore` and `journalstate replicas`: output, --json and the exit codes."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import journalstate as js
from journalstate._cli import main
from journalstate.replicate._objects import open_url
from journalstate.replicate._objformat import manifest_key, segment_key
from tests.conftest import Progress
from tests.objectstores import S3Server
from tests.replicas import History, record_history, ship

pytest.importorskip("obstore")

GEN_A = "1700000000000-aaaaaaaaaaaaaaaa"
GEN_B = "1700000001000-bbbbbbbbbbbbbbbb"


@pytest.fixture(scope="module")
def history(tmp_path_factory: pytest.TempPathFactory) -> History:
    """Six commits (seq 1..6)."""
    path = tmp_path_factory.mktemp("history") / "h.jst"
    return record_history(path, Progress, [Progress(step=i, label=f"s{i}") for i in range(1, 7)])


@pytest.fixture(scope="module")
def other(tmp_path_factory: pytest.TempPathFactory) -> History:
    """Another store's commits."""
    path = tmp_path_factory.mktemp("other") / "o.jst"
    return record_history(path, Progress, [Progress(step=i) for i in range(50, 53)])


def run(*argv: str | Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    """Run the command line in this process: (exit code, stdout, stderr)."""
    out = io.StringIO()
    code = main([str(a) for a in argv], out=out)
    return code, out.getvalue(), capsys.readouterr().err


def test_restore_prints_what_it_wrote(
    memory_url: str, history: History, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """restore exits 0 and says the seq, snapshot, records, generation and file id."""
    ship(open_url(memory_url), history, GEN_A, cuts=[2, 4])
    code, out, err = run("restore", memory_url, tmp_path / "a.jst", capsys=capsys)
    assert (code, err) == (0, "")
    assert f"{memory_url}: restored into {tmp_path / 'a.jst'}" in out
    assert "seq 6: the snapshot at seq 0 and 6 records in 3 segments" in out
    assert history.file_id.hex() in out
    code, out, _ = run(
        "restore", memory_url, tmp_path / "b.jst", "--seq", "3", "--json", capsys=capsys
    )
    doc = json.loads(out)
    assert code == 0
    assert doc["seq"] == 3
    assert doc["generation"] == GEN_A
    assert doc["file_id"] == history.file_id.hex()
    assert doc["generations"] == [GEN_A]
    with js.open(tmp_path / "b.jst", Progress, readonly=True) as store:
        assert store.state == Progress(step=3, label="s3")


def test_replicas_lists_generations(
    memory_url: str, history: History, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """replicas shows each generation's store, seqs, snapshots and segments; --json too."""
    code, out, _ = run("replicas", memory_url, capsys=capsys)
    assert (code, out) == (0, f"{memory_url}: no generations (nothing was shipped here)\n")
    store = open_url(memory_url)
    ship(store, history, GEN_A, cuts=[2], snapshots=[2])
    code, out, _ = run("replicas", memory_url, capsys=capsys)
    assert code == 0
    assert f"generation {GEN_A}" in out
    assert f"store {history.file_id.hex()}, writer pid 1 on test, reason start" in out
    assert "restorable seqs   0..6" in out
    assert "snapshots at      0, 2" in out
    assert "segments          1..2, 3..6" in out
    code, out, _ = run("replicas", memory_url, "--json", capsys=capsys)
    doc = json.loads(out)
    (gen,) = doc["generations"]
    assert gen["segments"] == [[1, 2], [3, 6]]
    assert gen["manifest"]["file_id"] == history.file_id.hex()
    assert (gen["first_seq"], gen["last_seq"], gen["gaps"]) == (0, 6, [])


def test_replicas_exits_3_on_a_gap_or_a_damaged_manifest(
    memory_url: str, history: History, capsys: pytest.CaptureFixture[str]
) -> None:
    """A gap or an unreadable manifest is shown and exits 3."""
    store = open_url(memory_url)
    ship(store, history, GEN_A, upto=2)
    store.put_new(segment_key(GEN_A, 5, 6), b"whatever")
    store.put_new(manifest_key(GEN_B), b"junk")
    code, out, _ = run("replicas", memory_url, capsys=capsys)
    assert code == 3
    assert "GAP: seqs 3..4 are missing (objects reach seq 6)" in out
    assert "DAMAGED manifest" in out


@pytest.mark.parametrize(
    ("case", "code", "message"),
    [
        ("bad url", 2, "not an object store URL"),
        ("empty", 2, "holds no generation"),
        ("seq beyond", 2, "no generation holds seq 99"),
        ("ambiguous", 2, "2 different stores"),
        ("unknown generation", 2, "no generation 1700000009999"),
        ("destination exists", 2, "already exists"),
        ("gap", 3, "lies after a gap"),
        ("corrupt", 3, "checksum mismatch"),
        ("bad option", 2, "expected KEY=VALUE"),
        ("bad seq", 2, "must be 0 or more"),
    ],
)
def test_restore_failures_exit_codes(
    case: str,
    code: int,
    message: str,
    memory_url: str,
    history: History,
    other: History,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Each failure is one line on stderr, nothing on stdout, its documented exit code."""
    store = open_url(memory_url)
    dest = tmp_path / "new.jst"
    args: list[Any] = ["restore", memory_url, dest]
    if case != "empty":
        ship(store, history, GEN_A, cuts=[2, 4])
    if case == "bad url":
        args[1] = "ftp://x/y"
    elif case == "seq beyond":
        args += ["--seq", "99"]
    elif case == "ambiguous":
        ship(store, other, GEN_B)
    elif case == "unknown generation":
        args += ["--generation", "1700000009999-0000000000000000"]
    elif case == "destination exists":
        dest.write_bytes(b"x")
    elif case == "gap":
        url = f"{memory_url}-gap"
        copy = open_url(url)
        for key in store.list():
            if key != segment_key(GEN_A, 3, 4):
                copy.put_new(key, store.get(key))
        args[1] = url
        args += ["--seq", "5"]
    elif case == "corrupt":
        url = f"{memory_url}-bad"
        copy = open_url(url)
        for key in store.list():
            data = store.get(key)
            copy.put_new(
                key, data[:-1] + bytes([data[-1] ^ 1]) if key.endswith("4.segment") else data
            )
        args[1] = url
    elif case == "bad option":
        args += ["-o", "novalue"]
    elif case == "bad seq":
        args += ["--seq", "-1"]
    got, out, err = run(*args, capsys=capsys)
    assert got == code
    assert out == ""
    assert message in err
    assert err.startswith("journalstate: ")
    assert err.count("\n") == 1
    assert "Traceback" not in err
    if case != "destination exists":
        assert not dest.exists()


def test_restore_command_end_to_end_on_file_and_s3(
    history: History, tmp_path: Path, s3_server: S3Server
) -> None:
    """The installed command restores from file:// and from the S3 server (env from AWS_*)."""
    for url in (f"file://{tmp_path}/replica", s3_server.url()):
        ship(open_url(url), history, GEN_A, cuts=[3])
        dest = tmp_path / f"{url.split(':')[0]}.jst"
        done = subprocess.run(
            [sys.executable, "-m", "journalstate", "restore", url, str(dest), "--seq", "4"],
            capture_output=True,
            text=True,
            timeout=300,
            env={**os.environ, **s3_server.env},
        )
        assert done.returncode == 0, done.stderr
        assert "seq 4: the snapshot at seq 0" in done.stdout
        with js.open(dest, Progress, readonly=True) as store:
            assert store.state == Progress(step=4, label="s4")
        listed = subprocess.run(
            [sys.executable, "-m", "journalstate", "replicas", url, "--json"],
            capture_output=True,
            text=True,
            timeout=300,
            env={**os.environ, **s3_server.env},
        )
        assert listed.returncode == 0, listed.stderr
        assert json.loads(listed.stdout)["generations"][0]["generation"] == GEN_A
