"""Tests of journalstate._txn: a draft builds what ``attrs.evolve`` of its changes builds."""

from __future__ import annotations

from typing import Any

import attrs
import pytest
from hypothesis import given
from hypothesis import strategies as st

from journalstate import _markers as mk
from journalstate._errors import TransactionError
from journalstate._txn import Draft, build, close
from tests import strategies as jst


@given(st.data())
def test_build_is_evolve_of_the_changes(data: st.DataObject) -> None:
    """Random schemas and assignments: the built state equals attrs.evolve, parts by reference."""
    schema = data.draw(jst.schemas())
    old: Any = data.draw(jst.values_for(schema))
    new: Any = data.draw(jst.evolved(schema, old))
    names = [m[0] for m in schema.root.members]
    assigned = data.draw(st.lists(st.sampled_from(names), unique=True))
    draft = Draft(old)
    for name in assigned:
        setattr(draft, name, getattr(new, name))
    built = build(draft)
    expected = attrs.evolve(old, **{name: getattr(new, name) for name in assigned})
    # Compared as bytes: a NaN field makes == false between equal states.
    assert type(built) is type(expected)
    assert schema.encode(built) == schema.encode(expected)
    for name in names:
        want = getattr(new, name) if name in assigned else getattr(old, name)
        assert getattr(built, name) is want
    if all(getattr(new, n) is getattr(old, n) for n in assigned):
        assert built is old


def test_private_attribute_names_build_through_their_init_names() -> None:
    """A field whose attribute name is private is set by attribute name, built by its alias."""
    cls = attrs.make_class(
        "Priv",
        {"_n": attrs.field(type=mk.U8, default=0), "m": attrs.field(type=mk.U8, default=0)},
        frozen=True,
    )
    old = cls(n=3)
    draft = Draft(old)
    draft.m = 7
    assert build(draft) == cls(n=3, m=7)  # the unchanged private field, passed by alias
    draft._n = 5
    assert build(draft) == cls(n=5, m=7)


def test_a_closed_draft_and_unknown_names_are_refused() -> None:
    """Unknown names raise AttributeError; any use after close raises TransactionError."""
    cls = attrs.make_class("One", {"a": attrs.field(type=mk.U8, default=0)}, frozen=True)
    draft = Draft(cls())
    with pytest.raises(AttributeError, match="has no field 'b'"):
        draft.b = 1
    close(draft)
    with pytest.raises(TransactionError):
        draft.a = 1
    with pytest.raises(TransactionError):
        _ = draft.a
