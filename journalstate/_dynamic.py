"""Schema classes rebuilt from a file's stored descriptor, so a store opens without user code.

The descriptor comes from a file that may be hostile, and attrs builds ``__init__`` from field
names, so every name must be a plain identifier before it reaches attrs.
"""

from __future__ import annotations

import keyword
from typing import Annotated, Any

import attrs

from journalstate._descriptor import decode_descriptor
from journalstate._layout import (
    KIND_ARRAY,
    KIND_BOOL,
    KIND_BYTES,
    KIND_FLOAT,
    KIND_INT,
    KIND_STR,
    KIND_STRUCT,
    KIND_UINT,
    ArrayNode,
    Node,
    StructNode,
)
from journalstate._markers import Array, Boolean, Bytes, Float, Int, Str

_RESERVED = frozenset({"self"})  # the first parameter of the __init__ attrs generates


def _check_name(name: str, where: str) -> str:
    """``name`` when attrs can take it as a field name.

    A private name (``_x``, or a mangled ``_Class__x``) is fine: attrs names its ``__init__``
    argument after it without the leading underscores, which must then be an identifier too.
    """
    argument = name.lstrip("_")
    if (
        not name.isidentifier()
        or not argument.isidentifier()
        or keyword.iskeyword(argument)
        or name.startswith("__")
        or argument in _RESERVED
    ):
        raise ValueError(f"schema descriptor: {where} has the name {name!r}, not an identifier")
    return name


def _class_name(label: str) -> str:
    last = label.rsplit(".", 1)[-1]
    return last if last.isidentifier() and not keyword.iskeyword(last) else "State"


def _field(node: Node, where: str) -> tuple[Any, Any]:
    """(annotation, default) for a node."""
    kind = node.kind
    if kind in (KIND_INT, KIND_UINT):
        return Annotated[int, Int(node.size, kind == KIND_INT)], 0
    if kind == KIND_FLOAT:
        return Annotated[float, Float(node.size)], 0.0
    if kind == KIND_BOOL:
        return Annotated[bool, Boolean()], False
    if kind == KIND_STR:
        return Annotated[str, Str(node.param)], ""
    if kind == KIND_BYTES:
        return Annotated[bytes, Bytes(node.param)], b""
    if kind == KIND_ARRAY:
        assert isinstance(node, ArrayNode)
        element, default = _field(node.element, f"{where}[]")
        length = node.param
        # A factory: nothing is allocated for the array until a default value is wanted.
        return Annotated[tuple[Any, ...], Array(element, length)], attrs.Factory(
            lambda: (_value(default),) * length
        )
    if kind == KIND_STRUCT:
        assert isinstance(node, StructNode)
        cls = _class_for(node, where)
        return cls, attrs.Factory(cls)
    raise ValueError(f"schema descriptor: {where} has unknown kind {kind}")


def _value(default: Any) -> Any:
    """A default, calling it when it is a factory."""
    return default.factory() if isinstance(default, attrs.Factory) else default  # type: ignore[arg-type]


def _class_for(node: StructNode, where: str) -> type:
    fields: dict[str, Any] = {}
    for name, _init, _offset, child in node.members:
        path = f"{where}.{name}" if where else name
        annotation, default = _field(child, path)
        fields[_check_name(name, f"field {path!r}")] = attrs.field(default=default, type=annotation)
    return attrs.make_class(_class_name(node.type_name()), fields, frozen=True)


def class_from_descriptor(descriptor: bytes, *, state_size: int | None = None) -> type:
    """A frozen attrs class whose schema has exactly this descriptor's layout.

    Every field defaults to its zero value.

    Args:
        descriptor: the stored schema descriptor.
        state_size: when given, the size the layout must have (checked before any class is
            built, so a descriptor that lies about its size allocates nothing).

    Raises:
        ValueError: the descriptor is malformed, does not have ``state_size`` bytes, or names
            something that is not a plain identifier.
    """
    layout = decode_descriptor(descriptor)
    if state_size is not None and layout.size != state_size:
        raise ValueError(
            f"schema descriptor: describes {layout.size} bytes, the file's state has {state_size}"
        )
    try:
        return _class_for(layout.root, "")
    except ValueError:
        raise
    except Exception as e:  # anything attrs refuses is a bad descriptor, never a crash
        raise ValueError(f"schema descriptor: cannot build a class from it ({e})") from e
