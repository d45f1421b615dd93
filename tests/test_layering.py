"""Layering: the pure modules load no I/O module, and journalstate's imports form no cycle."""

from __future__ import annotations

import ast
import importlib
import json
import re
import subprocess
import sys
from pathlib import Path

import journalstate as js
from journalstate._header import decode_header
from journalstate._recovery import recover
from tests.conftest import Progress, crash_copy

PACKAGE = Path(js.__file__).parent

# The child loads journalstate's modules without the package's __init__ (which re-exports the
# store, the one owner of the file) and with the I/O modules blocked: importing any of them
# raises ImportError. The crc32c package is loaded first, as it imports mmap for a command line
# of its own.
CHILD = r"""
import json, sys, types
import crc32c
sys.modules["ctypes"] = sys.modules["fcntl"] = sys.modules["mmap"] = None
package = types.ModuleType("journalstate")
package.__path__ = [sys.argv[1]]
sys.modules["journalstate"] = package
import journalstate._recovery as recovery
from journalstate._header import decode_header
data = sys.stdin.buffer.read()
header = decode_header("image", data, len(data))
recovered = recovery.recover(
    "image",
    header,
    data[header.slot0_offset : header.journal_offset],
    data[header.journal_offset : header.file_size],
    validate=lambda image: None,
)
print(json.dumps({
    "seq": recovered.report.seq,
    "replayed": recovered.report.records_replayed,
    "image": bytes(recovered.image).hex(),
    "modules": sorted(m for m in sys.modules if m.startswith("journalstate.")),
}))
"""

PURE = {
    "journalstate._accel",
    "journalstate._speedups",
    "journalstate._checksums",
    "journalstate._codegen",
    "journalstate._descriptor",
    "journalstate._format",
    "journalstate._header",
    "journalstate._layout",
    "journalstate._markers",
    "journalstate._journal",
    "journalstate._reader",
    "journalstate._reason",
    "journalstate._recovery",
    "journalstate._report",
    "journalstate._schema",
    "journalstate._slots",
}


def test_recovery_imports_and_recovers_with_io_modules_blocked(tmp_path: Path) -> None:
    """_recovery loads with ctypes, fcntl and mmap blocked and recovers a store image's bytes."""
    path = tmp_path / "state.jst"
    store = js.open(path, Progress, durability="process")
    try:
        for step in range(1, 6):
            store.commit(Progress(step=step, label=f"step {step}"))
        data = crash_copy(path).read_bytes()  # records to replay: what a process death leaves
    finally:
        store.close()
    child = subprocess.run(
        [sys.executable, "-c", CHILD, str(PACKAGE)],
        input=data,
        capture_output=True,
        check=True,
        timeout=300,
    )
    got = json.loads(child.stdout)
    header = decode_header("image", data, len(data))
    expected = recover(
        "image",
        header,
        data[header.slot0_offset : header.journal_offset],
        data[header.journal_offset : header.file_size],
        validate=lambda image: None,
    )
    assert got["replayed"] == 5
    assert (got["seq"], got["image"]) == (expected.report.seq, bytes(expected.image).hex())
    assert set(got["modules"]) <= PURE | {"journalstate._errors"}


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph() -> dict[str, set[str]]:
    """journalstate's modules and the journalstate modules each imports.

    Every import counts: at module level, inside functions and under ``TYPE_CHECKING``. A
    package's ``__init__`` only re-exports, so packages are left out (an import of a name
    from a package counts as an import of the submodule of that name when there is one).
    """
    paths = {_module_name(p): p for p in PACKAGE.rglob("*.py") if p.name != "__init__.py"}
    graph: dict[str, set[str]] = {}
    for name, path in paths.items():
        deps: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                deps.add(node.module)
                deps.update(f"{node.module}.{alias.name}" for alias in node.names)
            elif isinstance(node, ast.Import):
                deps.update(alias.name for alias in node.names)
        graph[name] = {d for d in deps if d in paths and d != name}
    return graph


def cycles(graph: dict[str, set[str]]) -> set[frozenset[str]]:
    """The strongly connected sets of more than one module: each holds an import cycle."""
    reach: dict[str, set[str]] = {}
    for start in graph:
        seen: set[str] = set()
        todo = list(graph[start])
        while todo:
            node = todo.pop()
            if node not in seen:
                seen.add(node)
                todo.extend(graph[node])
        reach[start] = seen
    return {
        frozenset({a} | {b for b in reach[a] if a in reach[b]})
        for a in graph
        if any(a in reach[b] for b in reach[a])
    }


def test_import_graph_sees_every_kind_of_import() -> None:
    """The graph counts imports under TYPE_CHECKING and inside functions."""
    graph = import_graph()
    assert "journalstate._storage" in graph["journalstate._writer"]  # under TYPE_CHECKING
    assert "journalstate.bench.run" in graph["journalstate._commands"]  # inside a function
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == {frozenset("abc")}


def test_no_import_cycles() -> None:
    """journalstate's modules import each other without a cycle, even under TYPE_CHECKING."""
    assert cycles(import_graph()) == set()


def _defined_names(tree: ast.AST) -> set[str]:
    """What a module defines: functions, classes and assignment targets (attributes too)."""
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, (ast.Name, ast.Attribute)) and isinstance(node.ctx, ast.Store):
            names.add(node.id if isinstance(node, ast.Name) else node.attr)
    return names


def _is_private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def _own_receiver(node: ast.expr, classes: set[str]) -> bool:
    """``self``, ``cls``, ``super()`` or a class of the module: reaching its own names."""
    if isinstance(node, ast.Name):
        return node.id in {"self", "cls"} | classes
    return (
        isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "super"
    )


def private_reaches(sources: dict[str, str]) -> list[str]:
    """Every place a module of ``sources`` (name: text) uses another one's private name.

    An attribute ``x._name`` counts when ``x`` is not ``self``, ``cls``, ``super()`` or a class
    of the module, and ``_name`` is defined in another module but not in this one (a module may
    use the private names of its own classes; the standard library's are not judged here).
    ``from m import _name`` counts unless ``m._name`` is a module.
    """
    trees = {name: ast.parse(text, name) for name, text in sources.items()}
    defined = {name: _defined_names(tree) for name, tree in trees.items()}
    found = []
    for name, tree in trees.items():
        elsewhere = set().union(*(d for other, d in defined.items() if other != name))
        classes = {n.name for n in ast.walk(tree) if isinstance(n, ast.ClassDef)}
        for node in ast.walk(tree):
            where = f"{name}:{getattr(node, 'lineno', 0)}"
            if isinstance(node, ast.Attribute) and _is_private(node.attr):
                if _own_receiver(node.value, classes) or node.attr in defined[name]:
                    continue
                if node.attr in elsewhere:
                    found.append(f"{where}: {ast.unparse(node)}")
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                for alias in node.names:
                    is_module = f"{node.module}.{alias.name}" in sources
                    if _is_private(alias.name) and not is_module:
                        found.append(f"{where}: from {node.module} import {alias.name}")
    return found


def test_private_reaches_sees_attributes_and_imports() -> None:
    """The check reports another module's private attribute and import, not a module's own."""
    sources = {
        "pkg._store": "class Store:\n    def f(self):\n        self._slot = 1\n",
        "pkg._mod": "import x\n",
        "pkg.user": (
            "from pkg import _mod\n"  # a private module: fine
            "from pkg._store import _helper\n"
            "def g(store, self):\n"
            "    store._slot\n"  # another module's private attribute
            "    self._slot\n"
            "    store._unknown\n"  # defined nowhere in the package: not judged
        ),
    }
    assert private_reaches(sources) == [
        "pkg.user:2: from pkg._store import _helper",
        "pkg.user:4: store._slot",
    ]


def test_no_module_reaches_into_another_modules_private_names() -> None:
    """No module of journalstate uses a private name that another of its modules defines."""
    sources = {_module_name(p): p.read_text() for p in PACKAGE.rglob("*.py")}
    assert private_reaches(sources) == []


def test_module_map_names_only_what_exists() -> None:
    """Every path, module and name the module map in docs/design.md mentions exists."""
    design = (PACKAGE.parent / "docs" / "design.md").read_text()
    section = design.split("## Module map", 1)[1].split("\n## ", 1)[0]
    paths = re.findall(r"journalstate/[\w/]+\.py", section)
    names = re.findall(r"`(_\w+(?:\.\w+)*)`", section)
    assert paths
    assert len(names) > 40
    for path in paths:
        assert (PACKAGE.parent / path).is_file(), path
    for name in names:
        module, *attributes = name.split(".")
        value: object = importlib.import_module(f"journalstate.{module}")
        for attribute in attributes:
            assert hasattr(value, attribute), name
            value = getattr(value, attribute)


_BLOCKED_FIRST = """
import sys
for name in ("ctypes", "fcntl", "mmap"):
    sys.modules[name] = None  # before anything else is imported: crc32c's own package too
import journalstate._recovery
import journalstate as js
assert js._checksums.crc(b"123456789") == 0xE3069283  # the crc32c check value
try:
    js.open(sys.argv[1], None)
except js.UnsupportedPlatform as e:
    print("refused:", e)
"""


def test_package_imports_with_io_modules_blocked_from_the_start(tmp_path: Path) -> None:
    """With ctypes, fcntl and mmap blocked before any import, journalstate imports, its crc32c
    is right, and opening a store says what the platform lacks."""
    child = subprocess.run(
        [sys.executable, "-c", _BLOCKED_FIRST, str(tmp_path / "s.jst")],
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )
    assert child.returncode == 0, child.stderr
    assert "refused:" in child.stdout
    assert "mmap.MAP_SHARED" in child.stdout
