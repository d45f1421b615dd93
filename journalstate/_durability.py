"""Durability: when a commit becomes durable, and how an argument names one.

What belongs here is the :class:`Durability` modes and the parsing of a durability argument;
the store (``_store``) does what each mode asks.
"""

from __future__ import annotations

from journalstate._errors import InvalidArgument, InvalidArgumentType
from journalstate._format import ValueEnum


class Durability(ValueEnum):
    """When a commit becomes durable against an OS crash or power loss."""

    COMMIT = "commit"
    """msync of the commit's journal pages before commit() returns."""
    INTERVAL = "interval"
    """A background flush every ``flush_interval`` seconds; ``flush()`` forces one."""
    PROCESS = "process"
    """Never msync on commit: survives process death, not an OS crash."""


def durability_of(value: Durability | str | None, default: Durability | None) -> Durability:
    """The durability named by ``value`` (``default`` for None).

    Raises:
        InvalidArgument: not a durability name (InvalidArgumentType: not even a string).
    """
    if value is None:
        assert default is not None
        return default
    if not isinstance(value, str):  # a Durability is a str too
        raise InvalidArgumentType(
            "durability", f"expected a string or a Durability, got {type(value).__name__}"
        )
    try:
        return Durability(value)
    except ValueError:
        choices = ", ".join(d.value for d in Durability)
        raise InvalidArgument(
            "durability", f"unknown durability {value!r}; use one of {choices}"
        ) from None
