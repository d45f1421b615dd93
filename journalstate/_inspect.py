"""Read-only views of a store for the command line: summaries, the journal's history, slots.

Everything here returns plain data (dicts, lists, attrs values) and never prints; ``_cli``
formats it. Stores are opened with the schema stored in their file, so no user code is needed.
"""

from __future__ import annotations

import base64
import math
from collections.abc import Iterator
from typing import Any

import attrs

from journalstate._format import SlotHead
from journalstate._header import Header
from journalstate._reader import ChainReader, ChainRecord, apply_patches
from journalstate._report import RecoveryReport
from journalstate._slots import SlotStatus, read_slots
from journalstate._store import Store


def jsonable(value: Any) -> Any:
    """A state value as JSON: bytes become {"$bytes": base64}, non-finite floats {"$float": s}.

    Both encodings are lossless; everything else maps to its natural JSON form.
    """
    if isinstance(value, bytes):
        return {"$bytes": base64.b64encode(value).decode("ascii")}
    if isinstance(value, float) and not math.isfinite(value):
        return {"$float": repr(value)}
    if isinstance(value, dict):
        return {k: jsonable(v) for k, v in value.items()}
    if isinstance(value, (tuple, list)):
        return [jsonable(v) for v in value]
    if attrs.has(type(value)):
        return {f.name: jsonable(getattr(value, f.name)) for f in attrs.fields(type(value))}
    if hasattr(value, "value") and isinstance(value.value, str):  # enums
        return value.value
    return value


def state_dict(state: Any) -> dict[str, Any]:
    """A state instance as nested dicts; tuples, bytes and scalars stay as they are."""

    def convert(value: Any) -> Any:
        if attrs.has(type(value)):
            return {f.name: convert(getattr(value, f.name)) for f in attrs.fields(type(value))}
        if type(value) is tuple:
            return tuple(convert(v) for v in value)
        return value

    result: dict[str, Any] = convert(state)
    return result


def report_dict(report: RecoveryReport) -> dict[str, Any]:
    """The recovery report as plain data."""
    return {
        "mode": report.mode.value,
        "previous_generation": report.previous_generation,
        "slot": report.slot,
        "generation": report.generation,
        "epoch": report.epoch,
        "base_seq": report.base_seq,
        "seq": report.seq,
        "records_replayed": report.records_replayed,
        "bytes_replayed": report.bytes_replayed,
        "torn_tail": report.torn_tail,
        "torn_tail_offset": report.torn_tail_offset,
        "torn_tail_bytes": report.torn_tail_bytes,
        "corruption": [
            {
                "region": d.region,
                "offset": d.offset,
                "reason": d.reason.value,
                "bytes_dropped": d.bytes_dropped,
                "detail": d.detail,
            }
            for d in report.corruption
        ],
        "slots": [slot_dict(s) for s in report.slots],
        "clean": report.clean,
    }


def slot_dict(status: SlotStatus) -> dict[str, Any]:
    """One slot's status as plain data."""
    head = status.head
    return {
        "index": status.index,
        "offset": status.offset,
        "valid": status.valid,
        "reason": None if status.reason is None else status.reason.value,
        "generation": None if head is None else head.generation,
        "epoch": None if head is None else head.epoch,
        "seq": None if head is None else head.seq,
        "position": None if head is None else head.position,
    }


def header_dict(header: Header, file_size: int) -> dict[str, Any]:
    """The header's fields and the region layout."""
    return {
        "format_version": header.format_version,
        "page_size": header.page_size,
        "file_id": header.file_id.hex(),
        "file_size": file_size,
        "state_size": header.state_size,
        "regions": [
            {"name": "header", "offset": 0, "size": header.header_size},
            {"name": "slot0", "offset": header.slot0_offset, "size": header.slot_size},
            {"name": "slot1", "offset": header.slot1_offset, "size": header.slot_size},
            {"name": "journal", "offset": header.journal_offset, "size": header.journal_size},
        ],
    }


def info(store: Store[Any], file_size: int) -> dict[str, Any]:
    """Everything `journalstate info` shows."""
    report = store.recovery
    base = report.slots[report.slot].head
    live = report.position - (base.position if base is not None else report.position)
    return {
        "path": store.path,
        "header": header_dict(store.header, file_size),
        "schema": {
            "name": store.schema.root_name,
            "fields": [
                {"name": f.path, "type": f.type_name, "offset": f.offset, "size": f.size}
                for f in store.schema.fields()
            ],
        },
        "slots": [slot_dict(s) for s in report.slots],
        "journal": {
            "size": store.header.journal_size,
            "live_bytes": live,
            "fill": live / store.header.journal_size,
            "records": report.records_replayed,
            "next_seq": report.seq + 1,
        },
        "recovery": report_dict(report),
    }


def slot_states(store: Store[Any]) -> Iterator[tuple[SlotStatus, bytes | None]]:
    """Both slots with their state bytes (None for an invalid slot)."""
    yield from read_slots(store.slot_buffer(), store.header)


def leaf(tree: dict[str, Any], path: str) -> Any:
    value: Any = tree
    for part in path.split("."):
        value = value[part]
    return value


@attrs.frozen
class Change:
    """One field a record changed."""

    field: str
    old: Any
    new: Any


@attrs.frozen
class LogEntry:
    """One transaction found in the journal."""

    seq: int
    generation: int
    epoch: int
    offset: int
    """File offset of the record."""
    size: int
    durable_seq: int
    changes: tuple[Change, ...]


def history(store: Store[Any]) -> list[LogEntry]:
    """The transactions still readable in the journal, oldest first.

    Starts from the older slot when it belongs to the same epoch as the newest (its records are
    usually still in the ring), else from the newest, and follows the chain as far as it goes
    within one lap of the ring, or until a record leaves a state that does not decode.
    """
    header = store.header
    slots = list(slot_states(store))
    valid = [(s.head, image) for s, image in slots if s.head is not None and image is not None]
    if not valid:
        return []
    valid.sort(key=lambda v: v[0].generation)
    newest = valid[-1][0]
    start: tuple[SlotHead, bytes] = valid[-1]
    if len(valid) == 2 and valid[0][0].epoch == newest.epoch:
        start = valid[0]
    head, image_bytes = start
    image = bytearray(image_bytes)
    reader = ChainReader(
        store.ring_buffer(),
        header.journal_size,
        epoch=head.epoch,
        position=head.position,
        seq=head.seq,
        end=head.position + header.journal_size,
        state_size=header.state_size,
    )
    entries: list[LogEntry] = []
    before = store.schema.decode_dict(image)
    for record in reader:
        apply_patches(image, record.patches)
        try:
            after = store.schema.decode_dict(image)
        except ValueError:
            break
        entries.append(_entry(store, head.epoch, record, before, after))
        before = after
    return entries


def _entry(store: Store[Any], epoch: int, record: ChainRecord, before: Any, after: Any) -> LogEntry:
    """The log entry of ``record``, whose patches took the state from ``before`` to ``after``."""
    header = store.header
    touched = [
        f
        for f in store.schema.fields()
        if any(f.offset < o + len(d) and o < f.offset + f.size for o, d in record.patches)
    ]
    return LogEntry(
        seq=record.seq,
        generation=record.generation,
        epoch=epoch,
        offset=header.journal_offset + record.position % header.journal_size,
        size=record.size,
        durable_seq=record.durable_seq,
        changes=tuple(Change(f.path, leaf(before, f.path), leaf(after, f.path)) for f in touched),
    )
