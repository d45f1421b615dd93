"""Listing a replica: its generations, their manifests, and the seqs their objects cover.

What belongs here: :class:`GenerationInfo`, :func:`list_replicas` and the helpers restore
shares (reading and decoding one object, grouping keys by generation, following segments from
a snapshot by their keys). It reads the listing and one manifest per generation, nothing else.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import attrs

from journalstate._errors import ReplicaCorrupt, ReplicaNotFound
from journalstate.replicate._objects import ObjectStore, open_url
from journalstate.replicate._objformat import (
    GENERATIONS_PREFIX,
    ParsedKey,
    ReplicaObject,
    decode_object,
    manifest_key,
    parse_key,
)


@attrs.frozen
class GenerationInfo:
    """One generation of a replica, as its keys and its manifest describe it."""

    generation: str
    manifest: dict[str, Any] | None
    """The manifest's meta; None when it is missing or damaged (see ``problem``)."""
    snapshots: tuple[int, ...]
    """The seqs of its snapshots, ascending."""
    segments: tuple[tuple[int, int], ...]
    """The (first_seq, last_seq) of its segments, ascending."""
    first_seq: int | None
    """The oldest seq a restore can reach: its first snapshot's (None: no snapshot)."""
    last_seq: int | None
    """The newest seq its objects reach contiguously from a snapshot (by their keys)."""
    gaps: tuple[tuple[int, int], ...]
    """Seq ranges (first, last) missing between objects it holds after ``first_seq``."""
    problem: str | None = None
    """Why the manifest cannot be read, when it cannot."""

    @property
    def file_id(self) -> str | None:
        """The store's file id (lowercase hex), from the manifest."""
        return None if self.manifest is None else str(self.manifest["file_id"])

    @property
    def newest_seq(self) -> int | None:
        """The highest seq any of its objects names (beyond ``last_seq`` when there is a gap)."""
        seqs = [*self.snapshots, *(last for _, last in self.segments)]
        return max(seqs) if seqs else None


def _group(keys: list[str]) -> dict[str, list[ParsedKey]]:
    groups: dict[str, list[ParsedKey]] = {}
    for key in keys:
        try:
            parsed = parse_key(key)
        except ValueError:
            continue  # not a replica object (a stray file, a store's temporary upload)
        groups.setdefault(parsed.generation, []).append(parsed)
    return groups


def reach(
    snapshots: list[int], segments: list[tuple[int, int]]
) -> tuple[int | None, dict[int, int]]:
    """The furthest seq reachable from any snapshot, and for each seq reached from where.

    Returns ``(last, best_from)`` where ``best_from[s]`` is the last seq of the longest segment
    starting right after ``s``.
    """
    longest: dict[int, int] = {}
    for first, last in segments:
        longest[first - 1] = max(longest.get(first - 1, -1), last)
    reach: int | None = None
    for seq in snapshots:
        at = seq
        while at in longest and longest[at] > at:
            at = longest[at]
        reach = at if reach is None else max(reach, at)
    return reach, longest


def _info(
    generation: str, parsed: list[ParsedKey], manifest: dict[str, Any] | None, problem: str | None
) -> GenerationInfo:
    snapshots = sorted(
        {p.first_seq for p in parsed if p.kind == "snapshot" and p.first_seq is not None}
    )
    segments = sorted(
        {
            (p.first_seq, p.last_seq)
            for p in parsed
            if p.kind == "segment" and p.first_seq is not None and p.last_seq is not None
        }
    )
    last, _ = reach(snapshots, segments)
    gaps: list[tuple[int, int]] = []
    if snapshots:
        covered = snapshots[0]
        for first, end in segments:
            if end <= covered:
                continue
            if first > covered + 1:
                gaps.append((covered + 1, first - 1))
            covered = max(covered, end)
        for seq in snapshots:
            if seq > covered + 1:
                gaps.append((covered + 1, seq - 1))
            covered = max(covered, seq)
    return GenerationInfo(
        generation=generation,
        manifest=manifest,
        snapshots=tuple(snapshots),
        segments=tuple(segments),
        first_seq=snapshots[0] if snapshots else None,
        last_seq=last,
        gaps=tuple(sorted(set(gaps))),
        problem=problem,
    )


def read_object(store: ObjectStore, key: str) -> ReplicaObject:
    return decode_object(store.get(key), key, url=store.url)


def generations(store: ObjectStore) -> list[GenerationInfo]:
    infos = []
    for generation, parsed in sorted(_group(store.list(GENERATIONS_PREFIX)).items()):
        manifest: dict[str, Any] | None = None
        problem: str | None = None
        try:
            manifest = read_object(store, manifest_key(generation)).meta
        except (ReplicaCorrupt, ReplicaNotFound) as e:
            problem = str(e)
        infos.append(_info(generation, parsed, manifest, problem))
    return infos


def list_replicas(url: str, *, options: Mapping[str, str] | None = None) -> list[GenerationInfo]:
    """The generations at ``url``, oldest first, each with its snapshots, segments and seqs.

    Reads the listing and each generation's manifest (a damaged or missing manifest is
    reported in ``problem``, not raised). An empty prefix gives an empty list.

    Raises:
        BadReplicaURL, ReplicationUnavailable: see :func:`open_url`.
        ReplicationError: the store failed.
    """
    return generations(open_url(url, options=options))
