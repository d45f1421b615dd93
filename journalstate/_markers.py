"""The field markers: what users annotate the fields of a state class with.

What belongs here: the marker classes (``Int``, ``Float``, ``Boolean``, ``Str``, ``Bytes``,
``Array``), the aliases built from them (``U8`` ... ``I64``, ``F32``, ``F64``, ``Bool``) and
``f32_round``. A marker only says how a field is stored; the compiler (``_schema``) turns
marked classes into layout nodes (``_layout``). ``docs/schema.md`` documents the public names.
"""

from __future__ import annotations

import struct
from typing import Annotated, Any, Final, TypeAlias

import attrs

_F32: Final = struct.Struct("<f")

# --- markers (eq=False: typing caches Annotated[...] by ==, and Str(1) == Str(True)) -----------


@attrs.frozen(eq=False)
class Int:
    """Marks an int field stored in ``width`` bytes (1, 2, 4 or 8), two's complement if signed."""

    width: int
    signed: bool


@attrs.frozen(eq=False)
class Float:
    """Marks a float field stored as IEEE f32 (``width`` 4) or f64 (``width`` 8)."""

    width: int


@attrs.frozen(eq=False)
class Boolean:
    """Marks a bool field: one byte, 0 or 1. A plain ``bool`` annotation means the same."""


@attrs.frozen(eq=False)
class Str:
    """Marks a str field holding at most ``capacity`` bytes of UTF-8."""

    capacity: int


@attrs.frozen(eq=False)
class Bytes:
    """Marks a bytes field holding at most ``capacity`` bytes."""

    capacity: int


@attrs.frozen(eq=False)
class Array:
    """Marks a tuple field of exactly ``length`` elements, each as ``element`` says."""

    element: Any
    length: int


U8: TypeAlias = Annotated[int, Int(1, False)]
U16: TypeAlias = Annotated[int, Int(2, False)]
U32: TypeAlias = Annotated[int, Int(4, False)]
U64: TypeAlias = Annotated[int, Int(8, False)]
I8: TypeAlias = Annotated[int, Int(1, True)]
I16: TypeAlias = Annotated[int, Int(2, True)]
I32: TypeAlias = Annotated[int, Int(4, True)]
I64: TypeAlias = Annotated[int, Int(8, True)]
F32: TypeAlias = Annotated[float, Float(4)]
F64: TypeAlias = Annotated[float, Float(8)]
Bool: TypeAlias = Annotated[bool, Boolean()]

MARKERS: Final = (Int, Float, Boolean, Str, Bytes, Array)
"""Every marker class, for ``isinstance`` checks."""

MARKED: Final[dict[type, type]] = {
    Int: int,
    Float: float,
    Boolean: bool,
    Str: str,
    Bytes: bytes,
    Array: tuple,
}
"""The Python type each marker may annotate."""


def f32_round(x: float) -> float:
    """The f32 value nearest ``x``: what an F32 field can hold. OverflowError beyond f32 range."""
    return float(_F32.unpack(_F32.pack(x))[0])
