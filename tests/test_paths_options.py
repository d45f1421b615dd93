"""Typed errors for every user mistake: options, schema classes, platforms, paths, the CLI's I/O.

Library cases call ``js.open`` directly; the cases that could hang (a FIFO), kill the process
(SIGBUS on a sparse file) or depend on closed descriptors run a real subprocess.
"""

from __future__ import annotations

import errno
import fcntl
import math
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any

import attrs
import pytest
from hypothesis import given
from hypothesis import strategies as st

import journalstate as js
from journalstate._storage import PAGE_SIZE
from journalstate._tempfiles import open_temporary, remove_stray_temporaries, temporary_path
from tests.conftest import Progress
from tests.test_cli import ROOT, cli, fails, make_store

# --- options -------------------------------------------------------------------------------------

BAD_VALUES: list[tuple[dict[str, Any], str]] = [
    ({"durability": "comit"}, "durability"),
    ({"recovery": "lenient"}, "recovery"),
    ({"journal_size": 0}, "journal_size"),
    ({"journal_size": -4096}, "journal_size"),
    ({"journal_size": (1 << 30) + 1}, "journal_size"),
    ({"checkpoint_threshold": math.nan}, "checkpoint_threshold"),
    ({"checkpoint_threshold": 0.0}, "checkpoint_threshold"),
    ({"checkpoint_threshold": 1.5}, "checkpoint_threshold"),
    ({"flush_interval": math.nan}, "flush_interval"),
    ({"flush_interval": math.inf}, "flush_interval"),
    ({"flush_interval": 0}, "flush_interval"),
    ({"flush_interval": -1.0}, "flush_interval"),
    ({"flush_interval": 1e300}, "flush_interval"),
    ({"flush_interval": 10**400}, "flush_interval"),
    ({"lock_timeout": math.nan}, "lock_timeout"),
    ({"lock_timeout": -0.5}, "lock_timeout"),
    ({"lock_timeout": -math.inf}, "lock_timeout"),
]

BAD_TYPES: list[tuple[dict[str, Any], str]] = [
    ({"durability": 1}, "durability"),
    ({"recovery": None}, "recovery"),
    ({"journal_size": 8192.0}, "journal_size"),
    ({"journal_size": True}, "journal_size"),
    ({"journal_size": "1 MiB"}, "journal_size"),
    ({"checkpoint_threshold": "0.5"}, "checkpoint_threshold"),
    ({"flush_interval": True}, "flush_interval"),
    ({"lock_timeout": "5"}, "lock_timeout"),
    ({"initial": 3}, "initial"),
    ({"initial": attrs.make_class("Other", {"step": attrs.field(default=0)})()}, "initial"),
    ({"create": "yes"}, "create"),
    ({"readonly": 0}, "readonly"),
    ({"previous_generation": None}, "previous_generation"),
    ({"storage": "/tmp"}, "storage"),
]


@pytest.mark.parametrize(("kwargs", "argument"), BAD_VALUES)
def test_bad_option_value_is_invalid_argument(
    store_path: Path, kwargs: dict[str, Any], argument: str
) -> None:
    """A bad option value raises InvalidArgument (a ValueError) naming it, creating nothing."""
    with pytest.raises(js.InvalidArgument) as info:
        js.open(store_path, Progress, **kwargs)
    assert isinstance(info.value, ValueError)
    assert info.value.argument == argument
    assert str(info.value).startswith(f"{argument}: ")
    assert not store_path.exists()


@pytest.mark.parametrize(("kwargs", "argument"), BAD_TYPES)
def test_bad_option_type_is_invalid_argument_type(
    store_path: Path, kwargs: dict[str, Any], argument: str
) -> None:
    """An option of the wrong type raises InvalidArgumentType, a TypeError too, creating nothing."""
    with pytest.raises(js.InvalidArgumentType) as info:
        js.open(store_path, Progress, **kwargs)
    assert isinstance(info.value, TypeError)
    assert isinstance(info.value, js.InvalidArgument)
    assert info.value.argument == argument
    assert not store_path.exists()


@pytest.mark.parametrize("path", [b"state.jst", 42, None, "", "a\0b"])
def test_bad_path_is_invalid_argument(path: Any) -> None:
    """A path that is not a str file name raises InvalidArgument."""
    with pytest.raises(js.InvalidArgument) as info:
        js.open(path, Progress)
    assert info.value.argument == "path"


@pytest.mark.parametrize("schema", [int, Progress(), "Progress", attrs])
def test_schema_that_is_not_an_attrs_class(store_path: Path, schema: Any) -> None:
    """A schema that is not an attrs class raises SchemaError (a TypeError), creating nothing."""
    with pytest.raises(js.SchemaError, match="not an attrs class"):
        js.open(store_path, schema)
    assert not store_path.exists()


def test_options_are_checked_for_an_existing_store(store_path: Path) -> None:
    """Options that only matter for a new store are checked on an existing one too."""
    js.open(store_path, Progress).close()
    with pytest.raises(js.InvalidArgument):
        js.open(store_path, Progress, journal_size=0)
    with pytest.raises(js.InvalidArgument):
        js.open(store_path, Progress, readonly=True, flush_interval=math.inf)


def test_journal_size_rounds_up_to_whole_pages(store_path: Path) -> None:
    """A journal size that is not a whole number of pages is rounded up, not refused."""
    with js.open(store_path, Progress, journal_size=PAGE_SIZE + 1) as store:
        assert store.header.journal_size == 2 * PAGE_SIZE


def test_float_subclasses_are_numbers(store_path: Path) -> None:
    """A float subclass (numpy's float64 is one) is a number of seconds like any float."""

    class Seconds(float):
        pass

    with js.open(store_path, Progress, durability="interval", flush_interval=Seconds(5)) as store:
        store.commit(Progress(step=1))


def test_lock_timeout_inf_is_accepted(store_path: Path) -> None:
    """lock_timeout=math.inf means wait as long as it takes; a free lock is taken at once."""
    with js.open(store_path, Progress, lock_timeout=math.inf) as store:
        store.commit(Progress(step=1))


def test_store_method_bad_durability(store_path: Path) -> None:
    """commit() and transaction() refuse a bad durability with InvalidArgument, changing nothing."""
    with js.open(store_path, Progress) as store:
        with pytest.raises(js.InvalidArgument):
            store.commit(Progress(step=1), durability="comit")
        with pytest.raises(js.InvalidArgumentType), store.transaction(durability=1):  # type: ignore[arg-type]
            pass
        assert store.seq == 0
        assert store.state == Progress()


def _numbers() -> st.SearchStrategy[Any]:
    """Numbers of every kind, and a few things that are not numbers."""
    return st.one_of(
        st.floats(allow_nan=True, allow_infinity=True),
        st.integers(min_value=-(2**70), max_value=2**70),
        st.booleans(),
        st.none(),
        st.text(max_size=3),
    )


OPTION_VALUES: dict[str, st.SearchStrategy[Any]] = {
    "durability": st.one_of(st.sampled_from(["commit", "interval", "process"]), _numbers()),
    "recovery": st.one_of(st.sampled_from(["strict", "tolerate-tail", "salvage"]), _numbers()),
    "journal_size": _numbers(),
    "checkpoint_threshold": _numbers(),
    "flush_interval": _numbers(),
    "lock_timeout": _numbers(),
    "create": _numbers(),
    "readonly": _numbers(),
    "initial": st.one_of(_numbers(), st.builds(Progress, step=st.integers(0, 9))),
}


@given(option=st.sampled_from(sorted(OPTION_VALUES)), data=st.data())
def test_any_option_value_opens_or_raises_invalid_argument(
    option: str, data: st.DataObject
) -> None:
    """Any value of any option either opens the store or raises InvalidArgument, nothing else."""
    value = data.draw(OPTION_VALUES[option], label=option)
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "s.jst"
        if data.draw(st.booleans(), label="existing"):
            js.open(path, Progress, journal_size=PAGE_SIZE).close()
        try:
            # Nothing else holds the lock, so no lock_timeout can make this wait.
            store = js.open(path, Progress, **{option: value})
        except js.InvalidArgument:
            return
        except js.StoreNotFound:
            assert option in ("create", "readonly")
            return
        store.close()


# --- mutable schema classes ----------------------------------------------------------------------


@attrs.define
class Mutable:
    """A mutable state class: refused."""

    n: js.U64 = 0


@attrs.define
class MutableInner:
    """A mutable class nested in a frozen one: refused too."""

    x: js.I32 = 0


@attrs.frozen
class Outer:
    """Frozen, holding a mutable class."""

    inner: MutableInner = attrs.Factory(MutableInner)


@attrs.frozen
class OuterArray:
    """Frozen, holding an array of a mutable class."""

    pts: Annotated[tuple[MutableInner, ...], js.Array(MutableInner, 2)] = (
        MutableInner(),
        MutableInner(),
    )


def test_mutable_class_is_refused(store_path: Path) -> None:
    """A non-frozen attrs class is refused at open with a SchemaError saying to freeze it."""
    with pytest.raises(js.SchemaError, match=r"Mutable is a mutable attrs class.*attrs\.frozen"):
        js.open(store_path, Mutable)
    assert not store_path.exists()


@pytest.mark.parametrize(("cls", "field"), [(Outer, "inner"), (OuterArray, "pts[]")])
def test_mutable_nested_class_is_refused(store_path: Path, cls: type, field: str) -> None:
    """A mutable class nested anywhere in a frozen one is refused, naming the field."""
    with pytest.raises(js.SchemaError, match=re.escape(f"MutableInner (field {field!r})")):
        js.open(store_path, cls)


def test_stored_schema_class_is_frozen(store_path: Path) -> None:
    """Opening with schema None rebuilds a frozen class, which passes the check."""
    make_store(store_path, 2)
    store: js.Store[Any]
    with js.open(store_path, None) as store:
        state: Any = store.state
    assert state.step == 2
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        state.step = 3


# --- platforms -----------------------------------------------------------------------------------


def _python(code: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=300,  # a hang guard only
        check=False,
        cwd=cwd,
        env=env,
    )


OPEN_SNIPPET = """
import attrs
import journalstate as js
@attrs.frozen
class S:
    n: js.U64 = 0
try:
    js.open("s.jst", S)
except js.UnsupportedPlatform as e:
    print("UnsupportedPlatform:", e)
else:
    print("opened")
"""


@pytest.mark.parametrize(
    ("block", "missing"),
    [
        ("import sys; sys.modules['fcntl'] = None", "fcntl.flock"),
        ("import os; del os.posix_fallocate", "os.posix_fallocate"),
        ("import mmap; del mmap.MAP_SHARED", "mmap.MAP_SHARED"),
    ],
)
def test_missing_platform_feature(tmp_path: Path, block: str, missing: str) -> None:
    """Without flock, posix_fallocate or shared mmap, import works and open says what is missing."""
    proc = _python(block + "\n" + OPEN_SNIPPET, tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("UnsupportedPlatform: journalstate supports Linux")
    assert missing in proc.stdout
    assert not (tmp_path / "s.jst").exists()


def test_missing_ctypes_still_works(tmp_path: Path) -> None:
    """Without ctypes (the GIL-free msync) a store still opens and commits."""
    proc = _python("import sys; sys.modules['ctypes'] = None\n" + OPEN_SNIPPET, tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "opened\n"


def test_cli_on_unsupported_platform(tmp_path: Path) -> None:
    """The command line reports a missing platform feature as one line and exit 2."""
    code = (
        "import sys; sys.modules['fcntl'] = None\n"
        "from journalstate._cli import main\n"
        f"sys.exit(main(['recover', {str(tmp_path / 'x.jst')!r}]))"
    )
    make_store(tmp_path / "x.jst", 1)
    proc = _python(code, tmp_path)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.startswith("journalstate: journalstate supports Linux")
    assert "Traceback" not in proc.stderr


# --- paths ---------------------------------------------------------------------------------------


@pytest.fixture
def fifo(tmp_path: Path) -> Path:
    """A named pipe with no writer (opening it for reading would block)."""
    path = tmp_path / "fifo"
    os.mkfifo(path)
    return path


@pytest.fixture
def unix_socket(tmp_path: Path) -> Iterator[Path]:
    """A bound Unix socket."""
    path = tmp_path / "sock"
    with socket.socket(socket.AF_UNIX) as s:
        s.bind(str(path))
        yield path


@pytest.mark.parametrize("command", ["check", "dump", "info", "log", "recover"])
def test_cli_refuses_a_fifo_without_waiting(fifo: Path, command: str) -> None:
    """Every command refuses a FIFO at once (exit 2) instead of waiting for a writer."""
    fails(cli(command, fifo), 2, str(fifo), "FIFO")


def test_recover_output_refuses_a_fifo(fifo: Path, tmp_path: Path) -> None:
    """recover --output refuses a FIFO source at once and leaves no copy."""
    fails(cli("recover", fifo, "--output", tmp_path / "copy.jst"), 2, "FIFO")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fifo"]


@pytest.mark.parametrize("readonly", [True, False])
def test_open_refuses_a_socket(unix_socket: Path, readonly: bool) -> None:
    """js.open on a Unix socket raises UnsafePath saying what it is."""
    with pytest.raises(js.UnsafePath, match="is a socket"):
        js.open(unix_socket, None, readonly=readonly)


@pytest.mark.parametrize("command", ["check", "dump", "info", "log", "recover"])
def test_cli_refuses_a_socket_with_exit_2(unix_socket: Path, command: str) -> None:
    """A Unix socket is a usage error (exit 2), like any other non-regular file."""
    fails(cli(command, unix_socket), 2, "socket")


def test_recover_output_refuses_a_symlink_source(tmp_path: Path) -> None:
    """recover --output refuses a symbolic link as source, like every other command."""
    make_store(tmp_path / "s.jst", 3)
    (tmp_path / "link").symlink_to("s.jst")
    fails(cli("recover", tmp_path / "link", "--output", tmp_path / "copy.jst"), 2, "symbolic link")
    assert not (tmp_path / "copy.jst").exists()


def test_recover_output_does_not_follow_a_symlink_destination(tmp_path: Path) -> None:
    """recover --output refuses a (dangling) symbolic link as destination and creates nothing."""
    make_store(tmp_path / "s.jst", 3)
    (tmp_path / "out").symlink_to("target.jst")
    fails(cli("recover", tmp_path / "s.jst", "--output", tmp_path / "out"), 2, "already exists")
    assert not (tmp_path / "target.jst").exists()


def test_create_under_a_file(tmp_path: Path) -> None:
    """Creating a store under a path whose parent is a file is a StoreFileError with the path."""
    (tmp_path / "file").write_bytes(b"")
    path = tmp_path / "file" / "s.jst"
    with pytest.raises(js.StoreFileError, match="is not a directory") as info:
        js.open(path, Progress)
    assert info.value.path == str(path)


def test_create_in_missing_directory(tmp_path: Path) -> None:
    """Creating a store in a missing directory is a StoreFileError naming the directory."""
    with pytest.raises(js.StoreFileError, match="does not exist"):
        js.open(tmp_path / "no" / "s.jst", Progress)


def test_long_file_name_is_created(tmp_path: Path) -> None:
    """A legal 250-character file name works: the temporary name does not grow with it."""
    path = tmp_path / ("s" * 250)
    with js.open(path, Progress) as store:
        store.commit(Progress(step=1))
    assert sorted(p.name for p in tmp_path.iterdir()) == [path.name]


def test_too_long_file_name_is_a_store_file_error(tmp_path: Path) -> None:
    """A file name over the file system's limit is a StoreFileError, and no temporary remains."""
    path = tmp_path / ("s" * 300)
    with pytest.raises(js.StoreFileError, match="too long"):
        js.open(path, Progress)
    assert list(tmp_path.iterdir()) == []


def test_temporary_path_is_short_and_recognisable(tmp_path: Path) -> None:
    """Temporary names are .jst-<16 hex>.tmp in the given directory, fresh each time."""
    first, second = temporary_path(str(tmp_path)), temporary_path(str(tmp_path))
    assert first != second
    assert os.path.dirname(first) == str(tmp_path)
    assert re.fullmatch(r"\.jst-[0-9a-f]{16}\.tmp", os.path.basename(first))


def test_temporary_removed_before_its_lock_is_replaced(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A temporary that a cleaner removes before its creator locks it is replaced by a new one."""
    real_flock = fcntl.flock
    removed: list[str] = []

    def cleaner_first(fd: int, operation: int) -> None:
        if not removed:  # a cleaner found the new file still unlocked and removed it
            removed.append(os.readlink(f"/proc/self/fd/{fd}"))
            os.unlink(removed[0])
        real_flock(fd, operation)

    monkeypatch.setattr(fcntl, "flock", cleaner_first)
    path, fd = open_temporary(str(tmp_path))
    try:
        assert removed
        assert path != removed[0]
        assert os.path.samestat(os.stat(path), os.fstat(fd))
    finally:
        os.close(fd)


@pytest.fixture
def tmpfs(tmp_path: Path) -> Iterator[Path]:
    """A 2 MiB tmpfs mounted on a fresh directory (skips where mounting is not permitted)."""
    mount = tmp_path / "mnt"
    mount.mkdir()
    if shutil.which("mount") is None:
        pytest.skip("no mount command")
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mount)],
        capture_output=True,
        check=False,
    )
    if done.returncode != 0:
        pytest.skip("mounting a tmpfs is not permitted here")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], capture_output=True, check=False)


def test_create_on_read_only_file_system(tmpfs: Path) -> None:
    """Creating a store on a read-only file system is a StoreFileError with the path."""
    subprocess.run(["mount", "-o", "remount,ro", str(tmpfs)], check=True)
    with pytest.raises(js.StoreFileError, match="read-only file system") as info:
        js.open(tmpfs / "s.jst", Progress)
    assert info.value.path == str(tmpfs / "s.jst")


# --- stray temporary files -----------------------------------------------------------------------


def _stray(directory: Path) -> Path:
    path = Path(temporary_path(str(directory)))
    path.write_bytes(b"half a store")
    return path


def test_writable_open_removes_stray_temporaries(store_path: Path) -> None:
    """A writable open removes unlocked journalstate temporaries; a read-only open does not."""
    make_store(store_path, 1)
    stray = _stray(store_path.parent)
    others = [store_path.parent / n for n in (".s.jst.abcdef.tmp", ".jst-xyz.tmp", "jst-1.tmp")]
    for other in others:
        other.write_bytes(b"not ours")
    js.open(store_path, Progress, readonly=True).close()
    assert stray.exists()
    js.open(store_path, Progress).close()
    assert not stray.exists()
    assert all(other.exists() for other in others)


def test_locked_temporary_is_kept(store_path: Path) -> None:
    """A temporary whose creator still holds its flock is left alone."""
    make_store(store_path, 1)
    stray = _stray(store_path.parent)
    fd = os.open(stray, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        js.open(store_path, Progress).close()
        assert stray.exists()
    finally:
        os.close(fd)
    assert remove_stray_temporaries(str(store_path.parent)) == [str(stray)]


def test_crash_between_link_and_unlink(store_path: Path) -> None:
    """A temporary name left as a second link of the store is removed by the store's writer."""
    make_store(store_path, 2)
    second = Path(temporary_path(str(store_path.parent)))
    os.link(store_path, second)
    with js.open(store_path, Progress) as store:
        assert store.state.step == 2
    assert not second.exists()
    assert os.stat(store_path).st_nlink == 1


def test_creation_leaves_no_temporary(tmp_path: Path) -> None:
    """Creating stores and recovering into copies leaves only the stores."""
    make_store(tmp_path / "a.jst", 1)
    assert cli("recover", tmp_path / "a.jst", "--output", tmp_path / "b.jst").code == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.jst", "b.jst"]


# --- allocation on a writable open ---------------------------------------------------------------


def test_writable_open_allocates_blocks(store_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A writable open calls posix_fallocate over the file and turns ENOSPC into NoSpace."""
    make_store(store_path, 1)
    calls: list[tuple[int, int]] = []

    def full(fd: int, offset: int, length: int) -> None:
        calls.append((offset, length))
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "posix_fallocate", full)
    with pytest.raises(js.NoSpace, match="no room"):
        js.open(store_path, Progress)
    assert calls == [(0, store_path.stat().st_size)]
    with js.open(store_path, Progress, readonly=True) as store:
        assert store.state.step == 1


def _sparse_copy(source: Path, dest: Path) -> None:
    """Copy ``source`` writing only its non-zero pages, as ``cp --sparse=always`` does."""
    data = source.read_bytes()
    with open(dest, "wb") as f:
        f.truncate(len(data))
        for at in range(0, len(data), PAGE_SIZE):
            page = data[at : at + PAGE_SIZE]
            if page.count(0) != len(page):
                f.seek(at)
                f.write(page)


def _fill(directory: Path) -> None:
    """Fill the file system of ``directory`` until it has no free block."""
    with open(directory / "filler", "wb", buffering=0) as f:
        code = 0
        while not code:
            try:
                f.write(bytes(PAGE_SIZE))
            except OSError as e:
                code = e.errno or -1
    assert code == errno.ENOSPC


def test_sparse_copy_on_a_full_file_system(tmpfs: Path, tmp_path: Path) -> None:
    """A sparse copy on a full file system gives NoSpace to the writer and recover, not SIGBUS."""
    make_store(tmp_path / "s.jst", 3)
    copy = tmpfs / "copy.jst"
    _sparse_copy(tmp_path / "s.jst", copy)
    assert os.stat(copy).st_blocks * 512 < os.stat(copy).st_size
    _fill(tmpfs)
    code = (
        "import journalstate as js\n"
        "from tests.conftest import Progress\n"
        "try:\n"
        f"    js.open({str(copy)!r}, Progress)\n"
        "except js.NoSpace as e:\n"
        "    print('NoSpace')\n"
    )
    proc = _python(code, ROOT)
    assert (proc.returncode, proc.stdout) == (0, "NoSpace\n"), proc.stderr
    run = cli("recover", copy)
    assert run.code == 5, run
    fails(run, 5, "no room")


# --- the command line's own descriptors ----------------------------------------------------------


def _shell(script: str, *args: str | Path) -> subprocess.CompletedProcess[str]:
    """Run ``script`` with sh; $0 is this Python, $1... are ``args``."""
    return subprocess.run(
        ["sh", "-c", script, sys.executable, *map(str, args)],
        capture_output=True,
        text=True,
        timeout=300,  # a hang guard only
        check=False,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )


def test_closed_standard_descriptors_are_held(tmp_path: Path) -> None:
    """The command puts /dev/null on closed descriptors 0-2, so no store file can get them."""
    code = (
        "import os\n"
        "from journalstate._cli import _hold_standard_descriptors\n"
        "os.close(1)\n"
        "_hold_standard_descriptors()\n"
        "fd = os.open('x', os.O_CREAT | os.O_WRONLY)\n"
        "os.write(fd, f'{os.readlink(\"/proc/self/fd/1\")} {fd}'.encode())\n"
    )
    proc = _python(code, tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "x").read_text() == f"{os.devnull} 3"


def test_stdout_closed(store_path: Path) -> None:
    """With stdout closed the command does nothing, says so on stderr and exits 2."""
    make_store(store_path, 2)
    proc = _shell('exec "$0" -m journalstate dump "$1" >&-', store_path)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr == "journalstate: standard output is closed; nothing was done\n"


@pytest.mark.parametrize(
    "args", [["check", "missing.jst"], ["check", "--bogus"], [], ["recover", "missing.jst"]]
)
def test_stderr_closed_keeps_the_exit_code(tmp_path: Path, args: list[str]) -> None:
    """With stderr closed a failure still exits 2, and nothing goes to stdout instead."""
    proc = _shell('cd "$1" && shift && exec "$0" -m journalstate "$@" 2>&-', tmp_path, *args)
    assert (proc.returncode, proc.stdout) == (2, "")


@pytest.mark.parametrize("command", ["dump", "log", "info", "check"])
def test_broken_pipe_is_silent(tmp_path: Path, command: str) -> None:
    """Output to a pipe whose reader is gone gives exit 141 and nothing on stderr."""
    path = make_store(tmp_path / "s.jst", 3)
    read_end, write_end = os.pipe()
    os.close(read_end)  # the reader went away before the first byte
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "journalstate", command, str(path)],
            stdout=write_end,
            stderr=subprocess.PIPE,
            cwd=ROOT,
            timeout=300,  # a hang guard only
            check=False,
        )
    finally:
        os.close(write_end)
    assert (proc.returncode, proc.stderr) == (141, b"")
