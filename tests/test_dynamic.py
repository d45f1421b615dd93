"""Schema classes rebuilt from stored descriptors: exact layouts, and hostile names refused."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from journalstate._descriptor import NODE_HEAD_FMT
from journalstate._dynamic import class_from_descriptor
from journalstate._layout import KIND_STRUCT, KIND_UINT
from journalstate._schema import compile_schema
from tests.strategies import schema_classes, values_for


@given(cls=schema_classes(), data=st.data())
def test_rebuilt_class_has_the_same_layout(cls: type, data: st.DataObject) -> None:
    """The rebuilt class encodes to the same descriptor and decodes stored states equally."""
    schema = compile_schema(cls)
    rebuilt = compile_schema(class_from_descriptor(schema.descriptor))
    assert rebuilt.descriptor == schema.descriptor
    value = data.draw(values_for(schema, allow_nan=False))
    image = schema.encode(value)
    assert rebuilt.decode_dict(image) == schema.decode_dict(image)
    assert rebuilt.encode(rebuilt.decode(image)) == image


def descriptor_with_field(name: bytes) -> bytes:
    """A root struct with one u8 field called ``name``."""
    head = struct.Struct(NODE_HEAD_FMT)
    root = head.pack(KIND_STRUCT, 0, 4, 0, 1, 1) + b"Root"
    return root + head.pack(KIND_UINT, 0, len(name), 0, 1, 0) + name


def test_plain_field_name_is_accepted() -> None:
    """A descriptor with an ordinary field name gives a class with that field."""
    cls = class_from_descriptor(descriptor_with_field(b"step"))
    assert cls().step == 0


@pytest.mark.parametrize(
    "name",
    [b"x=__import__('os').system('true')", b"class", b"__init__", b"_class", b"1abc", b"a b"],
)
def test_hostile_field_names_are_refused(name: bytes) -> None:
    """Names that are not plain identifiers never reach attrs' generated code."""
    with pytest.raises(ValueError, match="schema descriptor"):
        class_from_descriptor(descriptor_with_field(name))
