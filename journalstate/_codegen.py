"""Per-schema generated code: the commit path's diff, written out field by field for one class.

What belongs here: :func:`diff_function`, which turns a compiled layout tree into the source of
a function ``diff(old, new) -> Patches`` and builds it with ``exec`` (as attrs writes each
class's ``__init__``). The function does what the generic walk (``Node.diff`` in ``_layout``)
does, in the same order, without its calls and loops: each field is compared by identity
first, then only the changed leaves are validated and packed with precompiled
``struct.Struct`` methods, at offsets computed at compile time, and a patch that starts where
the last one ended is joined to it as it is made (the walk's merge pass is left only for
what follows an array). Nested structs are inlined (up to a depth); each array gets a small
function of its own, called only when the array changed. A large schema is written out for
its first nodes only; the rest call the generic walk's nodes, so compiling stays quick.

The generic walk stays the reference. The generated code detects a bad value but does not
describe it: it raises a bare ``BadValue``, and the function then runs the generic walk
from the start, which raises the ``InvalidValue`` with its message and field path. The
differential test (tests/test_codegen.py) holds the two to the same patches and errors.
"""

from __future__ import annotations

import functools
import itertools
import keyword
import linecache
import operator
import os
import struct
from collections.abc import Callable
from typing import Any, Final

from journalstate._layout import (
    KIND_BOOL,
    KIND_BYTES,
    KIND_FLOAT,
    KIND_INT,
    KIND_UINT,
    ArrayNode,
    BadValue,
    BlobNode,
    Member,
    Node,
    Patches,
    ScalarNode,
    StructNode,
    merge_patches,
)

__all__ = ["DiffFunction", "diff_function", "flat_fields"]

DiffFunction = Callable[[object, object], Patches]

_INLINE_DEPTH: Final = 8
"""Nested structs inlined below this many levels; deeper ones get a function (Python limits
the nesting of blocks and the depth of indentation in one function)."""
_SITE_BUDGET: Final = 200
"""Nodes written out per schema at most, so that compiling the source stays quick (about
15 lines each, and CPython compiles some 20,000 lines a second): the nodes after them are
diffed by the generic walk's own methods, from the generated code."""
_U32: Final = struct.Struct("<I")  # a blob's length, as BlobNode writes it
_F64: Final = struct.Struct("<d")  # an f32's value compared as f64, as ScalarNode does
_JOIN_LIMIT: Final = 512
"""Patches are joined as they are made while the joined patch stays this short (see _patch)."""


def _str_length(old: object, capacity: int) -> int:
    """The data length of a valid old str, or the whole capacity (as ``BlobNode.diff``)."""
    if type(old) is not str:
        return capacity
    try:
        n = len(old.encode())
    except UnicodeEncodeError:
        return capacity
    return n if n <= capacity else capacity


def _float_differs(pack: Callable[[float], bytes], old: object, packed: bytes) -> bool:
    """Whether ``old`` packs to other bytes than ``packed`` (an old that cannot pack differs)."""
    try:
        return bool(pack(old) != packed)  # type: ignore[arg-type]
    except (OverflowError, struct.error):
        return True


def _members_diff(
    members: tuple[Member, ...], old: object, new: object, at: int, out: Patches
) -> None:
    """StructNode.diff's loop over ``members`` (what a generated function leaves to it)."""
    for name, _, offset, node in members:
        was, value = getattr(old, name), getattr(new, name)
        if was is not value:
            node.diff(was, value, at + offset, out)


class _Writer:
    """The source of the generated functions and the names they use."""

    def __init__(self) -> None:
        self.namespace: dict[str, Any] = {
            "BadValue": BadValue,
            "compress": itertools.compress,
            "count": itertools.count,
            "is_not": operator.is_not,
            "U32": _U32.pack,
            "F64": _F64.pack,
            "str_length": _str_length,
            "float_differs": _float_differs,
        }
        self.functions: list[list[str]] = []
        self._n = 0
        self.sites = 0
        """Nodes written out so far; past _SITE_BUDGET the generic walk's nodes are called."""
        self.stretch = 0
        """In ``diff`` itself: the bytes of the leaves since the last call of another
        generated function, the most a patch ending at the current leaf can hold."""

    def name(self, prefix: str) -> str:
        self._n += 1
        return f"{prefix}{self._n}"

    def const(self, prefix: str, value: object) -> str:
        name = self.name(prefix)
        self.namespace[name] = value
        return name


At = tuple[str | None, int]
"""Where a node's image starts: a local holding an offset (None in ``diff`` itself, where
every offset is known) plus a constant."""


def _at(at: At) -> str:
    base, offset = at
    if base is None:
        return str(offset)
    return f"{base} + {offset}" if offset else base


def _patch(w: _Writer, at: At, data: str, end: str, lines: list[str], ind: str) -> None:
    """Lines adding the patch ``data`` (an expression) at ``at``; ``end`` is where it ends.

    In ``diff`` itself, where every offset is a constant, a patch that starts where the last
    one ended is joined to it at once, as the merge of the generic walk would join them:
    ``end`` (a local) is always where the last patch ends. The join copies the last patch,
    so only runs of at most _JOIN_LIMIT bytes are joined this way; longer ones are left to
    the merge at the end (``merged``). Elsewhere patches are only appended.
    """
    if at[0] is not None:
        lines.append(f"{ind}out.append(({_at(at)}, {data}))")
        return
    offset = at[1]
    lines.append(f"{ind}if end == {offset}:")
    if w.stretch <= _JOIN_LIMIT:
        lines.append(f"{ind}    last = out[-1]")
        lines.append(f"{ind}    out[-1] = (last[0], last[1] + {data})")
    else:
        lines.append(f"{ind}    out.append(({offset}, {data}))")
        lines.append(f"{ind}    merged = False")
    lines.append(f"{ind}else:")
    lines.append(f"{ind}    out.append(({offset}, {data}))")
    lines.append(f"{ind}end = {end}")


def _call(function: str, old: str, new: str, at: At, lines: list[str], ind: str) -> None:
    """Lines calling another generated function, which appends its own patches."""
    lines.append(f"{ind}{function}({old}, {new}, {_at(at)}, out)")
    if at[0] is None:  # its patches may join others: the merge at the end joins them
        lines.append(f"{ind}end = -1")
        lines.append(f"{ind}merged = False")


def _leaf(
    w: _Writer, node: Node, old: str, new: str, at: At, lines: list[str], ind: str, depth: int
) -> bool:
    """Lines adding the patches of ``node`` for locals ``old`` and ``new`` (``is not``).

    Returns whether they call another function (its patches are not joined as they are made).
    """
    if w.sites >= _SITE_BUDGET:  # the rest of a large schema: the generic walk, node by node
        _call(f"{w.const('node', node)}.diff", old, new, at, lines, ind)
        return True
    w.sites += 1
    if isinstance(node, ScalarNode):
        _scalar(w, node, old, new, at, lines, ind)
    elif isinstance(node, BlobNode):
        _blob(w, node, old, new, at, lines, ind)
    elif isinstance(node, ArrayNode):
        _call(_array(w, node), old, new, at, lines, ind)
        return True
    elif isinstance(node, StructNode):
        if depth >= _INLINE_DEPTH:
            _call(_struct_function(w, node), old, new, at, lines, ind)
            return True
        _struct(w, node, old, new, at, lines, ind, depth + 1)
    else:  # pragma: no cover - the four node kinds above are all there is
        raise TypeError(f"no code for {node!r}")
    return False


def _scalar(
    w: _Writer, node: ScalarNode, old: str, new: str, at: At, lines: list[str], ind: str
) -> None:
    pack = w.const("pack", node.st.pack)
    end = _at((at[0], at[1] + node.size))
    if node.kind != KIND_FLOAT:
        # ScalarNode.diff: equal images when old and new are equal and of one type.
        pytype = "bool" if node.kind == KIND_BOOL else "int"
        lines.append(f"{ind}if type({old}) is not type({new}) or not ({old} == {new}):")
        lines.append(f"{ind}    if type({new}) is not {pytype}:")
        lines.append(f"{ind}        raise BadValue('')")
        if node.kind != KIND_BOOL:
            lines.append(f"{ind}    if not {node.lo} <= {new} <= {node.hi}:")
            lines.append(f"{ind}        raise BadValue('')")
        _patch(w, at, f"{pack}({new})", end, lines, ind + "    ")
        return
    packed = w.name("p")
    lines.append(f"{ind}if type({new}) is not float:")
    lines.append(f"{ind}    raise BadValue('')")
    if node.size == 8:  # every float packs as f64, to its own image
        lines.append(f"{ind}{packed} = {pack}({new})")
        lines.append(f"{ind}if type({old}) is not float or {pack}({old}) != {packed}:")
        _patch(w, at, packed, end, lines, ind + "    ")
        return
    unpack = w.const("unpack", node.st.unpack)
    lines.append(f"{ind}try:")
    lines.append(f"{ind}    {packed} = {pack}({new})")
    lines.append(f"{ind}except OverflowError:")
    lines.append(f"{ind}    raise BadValue('') from None")
    lines.append(f"{ind}if F64({unpack}({packed})[0]) != F64({new}):")
    lines.append(f"{ind}    raise BadValue('')")
    lines.append(f"{ind}if type({old}) is not float or float_differs({pack}, {old}, {packed}):")
    _patch(w, at, packed, end, lines, ind + "    ")


def _blob(
    w: _Writer, node: BlobNode, old: str, new: str, at: At, lines: list[str], ind: str
) -> None:
    cap, data, n, was = node.param, w.name("d"), w.name("n"), w.name("o")
    # BlobNode.diff: nothing when old and new are equal and of one type.
    lines.append(f"{ind}if type({old}) is not type({new}) or not ({new} == {old}):")
    if node.kind == KIND_BYTES:
        lines.append(f"{ind}    if type({new}) is not bytes:")
        lines.append(f"{ind}        raise BadValue('')")
        lines.append(f"{ind}    {data} = {new}")
        lines.append(f"{ind}    {n} = len({data})")
        old_length = f"len({old}) if type({old}) is bytes and len({old}) <= {cap} else {cap}"
    else:
        lines.append(f"{ind}    if type({new}) is not str:")
        lines.append(f"{ind}        raise BadValue('')")
        lines.append(f"{ind}    try:")
        lines.append(f"{ind}        {data} = {new}.encode()")
        lines.append(f"{ind}    except UnicodeEncodeError:")
        lines.append(f"{ind}        raise BadValue('') from None")
        lines.append(f"{ind}    {n} = len({data})")
        old_length = f"str_length({old}, {cap})"
    lines.append(f"{ind}    if {n} > {cap}:")
    lines.append(f"{ind}        raise BadValue('')")
    lines.append(f"{ind}    {was} = {old_length}")
    # The length, the data and zeros over the rest of the old data (as BlobNode.diff).
    lines.append(f"{ind}    if {was} > {n}:")
    lines.append(f"{ind}        {data} = U32({n}) + {data} + bytes({was} - {n})")
    lines.append(f"{ind}        {n} = {was}")
    lines.append(f"{ind}    else:")
    lines.append(f"{ind}        {data} = U32({n}) + {data}")
    _patch(w, at, data, f"{_at(at)} + 4 + {n}", lines, ind + "    ")


def _struct(
    w: _Writer, node: StructNode, old: str, new: str, at: At, lines: list[str], ind: str,
    depth: int,
) -> None:  # fmt: skip
    """StructNode.diff for ``new is not old``: check ``new``, then each member that changed."""
    cls, whole = w.const("cls", node.cls), w.const("node", node)
    base, start = at
    lines.append(f"{ind}if type({new}) is not {cls}:")
    lines.append(f"{ind}    raise BadValue('')")
    lines.append(f"{ind}if type({old}) is not {cls}:")
    stretch = w.stretch
    _patch(w, at, f"{whole}.to_bytes({new})", _at((base, start + node.size)), lines, ind + "    ")
    lines.append(f"{ind}else:")
    inner = ind + "    "
    for i, (name, _, offset, child) in enumerate(node.members):
        if w.sites >= _SITE_BUDGET:  # the remaining members: the generic walk's loop
            rest = functools.partial(_members_diff, node.members[i:])
            _call(w.const("rest", rest), old, new, at, lines, inner)
            w.stretch = 0
            break
        was, value = w.name("w"), w.name("v")
        if name.isidentifier() and not keyword.iskeyword(name) and not name.startswith("__"):
            lines.append(f"{inner}{was} = {old}.{name}")
            lines.append(f"{inner}{value} = {new}.{name}")
        else:
            lines.append(f"{inner}{was} = getattr({old}, {name!r})")
            lines.append(f"{inner}{value} = getattr({new}, {name!r})")
        # attrs.evolve keeps unchanged fields by reference: they cost this one check.
        lines.append(f"{inner}if {was} is not {value}:")
        before = w.stretch
        called = _leaf(w, child, was, value, (base, start + offset), lines, inner + "    ", depth)
        w.stretch = 0 if called else before + child.size
    # The whole struct may be one patch (the branch above): the longest a patch ending here
    # can be, whichever branch ran.
    w.stretch = stretch + node.size


def _struct_function(w: _Writer, node: StructNode) -> str:
    name = w.name("struct")
    lines = [f"def {name}(old, new, at, out):"]
    stretch = w.stretch
    _struct(w, node, "old", "new", ("at", 0), lines, "    ", 0)
    w.stretch = stretch
    w.functions.append(lines)
    return name


def _array(w: _Writer, node: ArrayNode) -> str:
    """A function for ArrayNode.diff: only the replaced elements are looked at."""
    name, whole, length = w.name("array"), w.const("node", node), node.param
    lines = [
        f"def {name}(old, new, at, out):",
        f"    if type(new) is not tuple or len(new) != {length}:",
        "        raise BadValue('')",
        f"    if type(old) is not tuple or len(old) != {length}:",
        f"        out.append((at, {whole}.to_bytes(new)))",
        "        return",
        "    for i in compress(count(), map(is_not, old, new)):",
        "        was = old[i]",
        "        value = new[i]",
        f"        at_i = at + i * {node.element.size}",
    ]
    stretch = w.stretch
    _leaf(w, node.element, "was", "value", ("at_i", 0), lines, "        ", 0)
    w.stretch = stretch
    w.functions.append(lines)
    return name


def diff_source(root: StructNode, walk: Callable[[object, object], Patches]) -> _Writer:
    """The generated source (``w.functions``, the last one ``diff``) and its namespace."""
    w = _Writer()
    w.namespace["walk"] = walk
    w.namespace["merge"] = merge_patches
    lines = [
        "def diff(old, new):",
        "    if new is old:",
        "        return []",
        "    out = []",
        "    end = -1",
        "    merged = True",
        "    try:",
    ]
    _struct(w, root, "old", "new", (None, 0), lines, "        ", 1)
    lines += [
        "    except BadValue:",
        "        return walk(old, new)  # raises the error with its message and field path",
        "    return out if merged else merge(out)",
    ]
    w.functions.append(lines)
    return w


def diff_function(root: StructNode, walk: Callable[[object, object], Patches]) -> DiffFunction:
    """The generated ``diff(old, new)`` of the class ``root`` was compiled from.

    It returns exactly what ``walk(old, new)`` (the generic walk) returns, and raises what it
    raises; for a bad value it calls ``walk`` itself.
    """
    w = diff_source(root, walk)
    source = "\n".join("\n".join(f) for f in w.functions) + "\n"
    label = root.cls.__qualname__ if root.cls is not None else "struct"
    # Named inside the package, so tools that follow the package's own lines (tracebacks,
    # the signal tests' injections) see these lines too; linecache shows them as source.
    filename = os.path.join(os.path.dirname(__file__), f"<generated diff of {label} {id(root)}>")
    linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)
    code = compile(source, filename, "exec")
    exec(code, w.namespace)
    function: DiffFunction = w.namespace["diff"]
    function.__doc__ = f"Patches turning encode(old) into encode(new) for {label} (generated)."
    return function


FlatField = tuple[str, int, int, int, int, int]
"""A field of a flat schema as the compiled diff takes it: ``(name, offset, code, size, lo,
hi)``; codes 0 to 5 are u-int, int, bool, f64, Bytes and Str (``size`` the capacity of
those two)."""


def flat_fields(root: StructNode) -> tuple[FlatField, ...] | None:
    """``root``'s fields for the compiled diff (``_speedups.FlatDiff``), or None when one of
    them is not an int, bool, f64, Bytes or Str (the generated diff serves that schema)."""
    if root.cls is None:
        return None
    fields: list[FlatField] = []
    for name, _, offset, node in root.members:
        if isinstance(node, ScalarNode):
            if node.kind == KIND_UINT:
                fields.append((name, offset, 0, node.size, node.lo, node.hi))
            elif node.kind == KIND_INT:
                fields.append((name, offset, 1, node.size, node.lo, node.hi))
            elif node.kind == KIND_BOOL:
                fields.append((name, offset, 2, 1, 0, 1))
            elif node.kind == KIND_FLOAT and node.size == 8:
                fields.append((name, offset, 3, 8, 0, 0))
            else:
                return None
        elif isinstance(node, BlobNode):
            fields.append((name, offset, 4 if node.kind == KIND_BYTES else 5, node.param, 0, 0))
        else:
            return None
    return tuple(fields)
