"""The shipper: a thread that copies a store's commits into object storage, never in their way.

What belongs here is :class:`Shipper`, its status (:class:`ReplicationStatus`) and the start
of one inside a writer (:func:`start_writer_shipper`). What it reads is ``_sources``'s; the
objects' bytes and names are ``_objformat``'s; the object stores are ``_objects``'s. The
loop, its crash windows and the guarantee are in docs/replication.md, "Shipping".

One pass of the loop:

1. Without a generation (the first pass, or after the source said it cannot go on without a
   gap): a new generation id, its manifest, then a snapshot of the state at a seq, uploaded in
   that order. Nothing counts as shipped until both uploads returned.
2. The records after the shipped seq, read from the source, cut into segments of at most
   16 MiB, each uploaded in turn. ``shipped_seq`` moves only after an upload returned.
3. A new snapshot in the same generation (of the shipper's own image at ``shipped_seq``,
   which the segments' rolling checksum vouches for) when the bytes shipped since the last
   snapshot pass ``snapshot_bytes``, or its age passes ``snapshot_age``.

An upload that fails is retried, with a backoff, with exactly the same bytes: an object is
written once, by conditional create, and a retry that finds its key already there compares
the bytes (equal: it landed before; different: :class:`ReplicaConflict`). ``last_error``
says what failed last, and is cleared by the next upload that succeeds.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Mapping
from typing import Any, Final

import attrs

from journalstate._checksums import crc
from journalstate._errors import ReplicaConflict, ReplicaCorrupt, ReplicaNotFound
from journalstate.replicate._objects import ObjectStore, open_url, put_once
from journalstate.replicate._objformat import (
    decode_object,
    encode_manifest,
    encode_segment,
    encode_snapshot,
    generation_id,
    manifest_key,
    parse_key,
    segment_key,
    snapshot_key,
)
from journalstate.replicate._sources import (
    MAX_SEGMENT_BYTES,
    NewGeneration,
    Segment,
    Snapshot,
    Source,
    SourceClosed,
    WriterSource,
)

log = logging.getLogger("journalstate.replicate")

DEFAULT_SNAPSHOT_BYTES: Final = 64 << 20
"""Bytes shipped in segments after which a new snapshot is taken (or 4 x the state size)."""
DEFAULT_SNAPSHOT_AGE: Final = 3600.0
"""Seconds after which a new snapshot is taken, whatever was shipped."""
DEFAULT_CLOSE_TIMEOUT: Final = 10.0
"""Seconds ``store.close()`` waits for the shipper to ship what is committed."""
_MAX_BACKOFF: Final = 30.0
"""The longest wait between two attempts after failures."""
_POLL: Final = 0.05
"""Seconds between two looks, while the thread waits, at how many bytes wait to be shipped."""


@attrs.frozen
class ReplicationStatus:
    """Where a shipper stands (``store.replication``). A copy: it does not change."""

    url: str
    generation: str | None
    """The generation being shipped (None before the first manifest was uploaded)."""
    shipped_seq: int | None
    """The newest seq the object store holds in this generation: every commit up to it can be
    restored. None until the generation's first snapshot landed."""
    lag_seq: int | None
    """Commits made but not shipped yet (the store's seq minus ``shipped_seq``)."""
    lag_seconds: float
    """Seconds since the replica last held every commit (0 when it does)."""
    last_error: str | None
    """What failed last (an upload, a listing), or None when the last attempt succeeded."""
    generations_started: int
    last_generation_reason: str | None
    """Why the current generation started: "start", "lapped", "rewound" or "replaced"."""
    segments_shipped: int
    snapshots_shipped: int
    bytes_shipped: int


class Shipper:
    """Ships one source to one object store, in a thread or one pass at a time.

    Args:
        source: what to read (:class:`WriterSource` or :class:`FollowerSource`).
        objects: where to write.
        interval: seconds between two passes of the thread.
        snapshot_bytes: segment bytes after which a new snapshot is shipped (default
            max(64 MiB, 4 x the state size)).
        snapshot_age: seconds after which a new snapshot is shipped (default 1 hour).
        segment_bytes: record bytes a segment holds at most (one record at least; default
            16 MiB).
    """

    def __init__(
        self,
        source: Source,
        objects: ObjectStore,
        *,
        interval: float = 1.0,
        snapshot_bytes: int | None = None,
        snapshot_age: float = DEFAULT_SNAPSHOT_AGE,
        segment_bytes: int = MAX_SEGMENT_BYTES,
    ) -> None:
        self._source = source
        self._segment_bytes = segment_bytes
        self._objects = objects
        self._interval = interval
        self._snapshot_bytes = (
            max(DEFAULT_SNAPSHOT_BYTES, 4 * source.state_size)
            if snapshot_bytes is None
            else snapshot_bytes
        )
        self._snapshot_age = snapshot_age
        self._lock = threading.Lock()  # the status fields; taken briefly, never during I/O
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._closing = threading.Event()
        self._thread: threading.Thread | None = None
        self._checked_prefix = False
        # Where the shipped history stands (only the shipping thread writes these).
        self._generation: str | None = None
        self._previous: str | None = None
        self._reason = "start"
        self._seq: int | None = None
        self._position = 0
        self._epoch = 0
        self._image = bytearray()
        self._state_crc = 0
        self._since_snapshot = 0
        self._snapshot_at = 0.0
        # Objects built but not yet known to be uploaded, oldest first, each with what
        # becomes true once it is: retried with exactly these bytes.
        self._uploads: list[tuple[str, bytes, Any]] = []
        # Status.
        self._generations_started = 0
        self._segments = 0
        self._snapshots = 0
        self._bytes = 0
        self._last_error: str | None = None
        self._failures = 0
        self._held_all_at = time.monotonic()
        self._fatal: str | None = None
        self.fatal_error: ReplicaConflict | None = None
        """The error that stopped the shipper for good, if one did."""

    # --- status ----------------------------------------------------------------------------

    @property
    def url(self) -> str:
        return self._objects.url

    def status(self) -> ReplicationStatus:
        """A copy of where the shipper stands now."""
        with self._lock:
            shipped = self._seq
            try:
                current = self._source.current_seq()
            except Exception:
                current = shipped if shipped is not None else 0
            lag = None if shipped is None else max(current - shipped, 0)
            seconds = 0.0 if lag == 0 else max(time.monotonic() - self._held_all_at, 0.0)
            return ReplicationStatus(
                url=self._objects.url,
                generation=self._generation,
                shipped_seq=shipped,
                lag_seq=lag,
                lag_seconds=seconds,
                last_error=self._fatal or self._last_error,
                generations_started=self._generations_started,
                last_generation_reason=None if self._generation is None else self._reason,
                segments_shipped=self._segments,
                snapshots_shipped=self._snapshots,
                bytes_shipped=self._bytes,
            )

    # --- the thread ------------------------------------------------------------------------

    def start(self, name: str) -> None:
        """Start the background thread (a daemon: it never keeps the process alive)."""
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            if self._closing.is_set():
                return
            if self.try_pass():
                self._wait(self._interval, early=True)
            else:
                self._wait(self.retry_delay(), early=False)

    def _wait(self, delay: float, *, early: bool) -> None:
        """Sleep ``delay`` seconds, or until woken; with ``early``, also until half a
        segment's worth of records waits (a fast writer's records then fit the segments its
        pass reads whole, instead of piling up for the whole interval)."""
        end = time.monotonic() + delay
        while True:
            remaining = end - time.monotonic()
            if remaining <= 0:
                return
            if self._wake.wait(min(remaining, _POLL)):
                self._wake.clear()
                return
            waiting = self._source.unshipped(self._position) if early and self._seq else 0
            if waiting >= self._segment_bytes // 2:
                return

    def retry_delay(self) -> float:
        return float(min(self._interval * (2 ** min(self._failures, 10)), _MAX_BACKOFF))

    def try_pass(self) -> bool:
        """One pass; False (the error recorded) when it failed."""
        if self._fatal is not None:
            return True
        try:
            self.ship_pass()
            return True
        except SourceClosed:
            self._stop.set()
            return True
        except ReplicaConflict as e:
            self._fatal = str(e)
            self.fatal_error = e
            self._source.shipped(None)  # nothing will be shipped: checkpoints stop waiting
            log.error("replication to %s stopped: %s", self.url, e)
            return True
        except Exception as e:
            self._failures += 1
            with self._lock:
                self._last_error = f"{type(e).__name__}: {e}"
            log.warning("replication to %s: %s (will retry)", self.url, self._last_error)
            return False

    def close(self, timeout: float = DEFAULT_CLOSE_TIMEOUT) -> bool:
        """Ship what is committed now (waiting at most ``timeout`` seconds), then stop.

        Returns True when everything committed before the call was shipped. A forked child
        never calls this (its copy has no thread).
        """
        deadline = time.monotonic() + timeout
        thread = self._thread
        self._closing.set()
        self._wake.set()
        if thread is not None and thread is not threading.current_thread():
            thread.join(max(deadline - time.monotonic(), 0.0))
            if thread.is_alive():  # an upload still in flight: give up on it
                self._stop.set()
                return False
        done = self.flush(deadline)
        self._stop.set()
        return done

    def flush(self, deadline: float) -> bool:
        """Passes until one ships everything it read, or ``deadline`` passes; True if done."""
        while True:
            if self._fatal is not None:
                return False
            target = self._safe_current()
            passed = self.try_pass() and not self._uploads and self._seq is not None
            if passed and (self._stop.is_set() or (self._seq or 0) >= target):
                return True
            if time.monotonic() >= deadline:
                return False
            time.sleep(min(self.retry_delay() if self._failures else 0.0, 1.0))

    def _safe_current(self) -> int:
        try:
            return self._source.current_seq()
        except Exception:
            return 0

    # --- one pass ----------------------------------------------------------------------------

    def ship_pass(self) -> None:
        """Upload what is pending, then everything the source holds after the shipped seq.

        Raises:
            SourceClosed: the store was closed.
            ReplicaConflict: the prefix belongs to another store, or an object there
                conflicts; the shipper stops.
            Exception: an upload or the source failed; the next pass retries.
        """
        self._upload_pending()
        # A pass ends at the commit that was the newest when it began: a writer that never
        # pauses cannot keep it going forever (the thread would never sleep, close() never end).
        target = self._source.current_seq()
        while True:
            if self._generation is None or self._seq is None:
                self._start_generation()
                self._upload_pending()
            read_at = time.monotonic()
            try:
                segments = self._source.read(
                    self._position, self._seq or 0, self._segment_bytes, self._image
                )
            except NewGeneration as e:
                self._new_generation(e)
                continue
            if not segments:
                with self._lock:
                    self._held_all_at = read_at
                return
            # The read reached the newest commit when it began: once the last segment is
            # uploaded, the replica held every commit made before ``read_at``.
            held = read_at if segments[-1].last_seq >= self._source.current_seq() else None
            for segment in segments:
                self._queue_segment(segment, held if segment is segments[-1] else None)
            self._upload_pending()
            if self._snapshot_due():
                self._queue_snapshot()
                self._upload_pending()
            if self._seq is not None and self._seq >= target:
                return

    def _new_generation(self, e: NewGeneration) -> None:
        log.warning("replication to %s: a new generation (%s)", self.url, e)
        self._previous = self._generation or self._previous
        self._generation = None
        self._seq = None
        self._reason = e.reason
        self._uploads.clear()

    def _upload_pending(self) -> None:
        while self._uploads:
            key, data, done = self._uploads[0]
            # Crash window: an object is created whole or not at all. Absent, a restore ends
            # at the object before it (the shipped_seq last reported); present but reported
            # failed (a timeout whose write landed), the retry finds the same bytes.
            put_once(self._objects, key, data)
            self._uploads.pop(0)
            self._failures = 0
            with self._lock:
                self._last_error = None
                self._bytes += len(data)
                done()

    def _check_prefix(self) -> None:
        """Refuse a prefix holding generations of another store (once per shipper)."""
        if self._checked_prefix:
            return
        own = self._source.file_id
        for key in self._objects.list("generations/"):
            try:
                parsed = parse_key(key)
            except ValueError:
                continue  # not a shipper's object: restore reports what it makes of it
            if parsed.kind != "generation":
                continue
            try:
                meta = decode_object(self._objects.get(key), key, url=self.url).meta
            except (ReplicaCorrupt, ReplicaNotFound):
                continue  # not ours to judge: restore reports it
            if meta.get("file_id") != own:
                raise ReplicaConflict(
                    self.url,
                    f"the prefix holds generation {parsed.generation} of another store "
                    f"(file id {meta.get('file_id')}, this one is {own}); replicate each "
                    "store to its own prefix",
                    key=key,
                )
        self._checked_prefix = True

    def _start_generation(self) -> None:
        """Queue a new generation's manifest and first snapshot."""
        self._check_prefix()
        source = self._source
        snap = source.snapshot()
        gen = generation_id()
        manifest = encode_manifest(
            file_id=source.file_id,
            generation=gen,
            host=socket.gethostname(),
            pid=os.getpid(),
            source=source.kind,
            reason=self._reason,
            previous=self._previous,
            base_seq=snap.seq,
            state_size=source.state_size,
            journal_size=source.journal_size,
        )
        self._generation = gen
        self._seq = None

        def started() -> None:
            self._generations_started += 1
            log.info(
                "replication to %s: generation %s (%s) from seq %d",
                self.url,
                gen,
                self._reason,
                snap.seq,
            )

        # Crash window: a generation whose manifest landed and whose snapshot did not holds
        # no state; restore passes over it and takes the generation before.
        self._uploads.append((manifest_key(gen), manifest, started))
        self._image = bytearray(snap.image)
        self._queue_snapshot(snap)

    def _queue_snapshot(self, snap: Snapshot | None = None) -> None:
        """Queue a snapshot: ``snap`` (a new generation's), else the image at the shipped seq."""
        gen = self._generation
        assert gen is not None
        if snap is None:
            assert self._seq is not None
            snap = Snapshot(self._seq, self._epoch, self._position, bytes(self._image))
        data = encode_snapshot(
            file_id=self._source.file_id,
            generation=gen,
            seq=snap.seq,
            epoch=snap.epoch,
            descriptor=self._source.descriptor,
            image=snap.image,
            journal_size=self._source.journal_size,
        )
        state_crc = crc(snap.image)
        first = self._seq is None

        def shipped() -> None:
            self._snapshots += 1
            self._since_snapshot = 0
            self._snapshot_at = time.monotonic()
            if first:
                self._seq, self._position, self._epoch = snap.seq, snap.position, snap.epoch
                self._state_crc = state_crc
                self._source.shipped(snap.position)

        self._uploads.append((snapshot_key(gen, snap.seq), data, shipped))

    def _snapshot_due(self) -> bool:
        return self._since_snapshot >= self._snapshot_bytes or (
            time.monotonic() - self._snapshot_at >= self._snapshot_age
        )

    def _queue_segment(self, segment: Segment, held_at: float | None) -> None:
        """Queue a segment the source built (its records are already in ``_image``)."""
        gen = self._generation
        assert gen is not None
        data = encode_segment(
            file_id=self._source.file_id,
            generation=gen,
            first_seq=segment.first_seq,
            last_seq=segment.last_seq,
            first_position=segment.first_position,
            prev_state_crc=self._state_crc,
            state_crc=segment.state_crc,
            epochs=segment.epochs,
            records=segment.data,
        )
        # Built in order: the next segment's prev_state_crc is this one's state_crc.
        self._state_crc = segment.state_crc

        def shipped() -> None:
            self._seq, self._position = segment.last_seq, segment.end_position
            self._epoch = segment.epochs[1]
            self._segments += 1
            self._since_snapshot += len(segment.data)
            self._source.shipped(segment.end_position)
            if held_at is not None:
                self._held_all_at = max(self._held_all_at, held_at)

        key = segment_key(gen, segment.first_seq, segment.last_seq)
        self._uploads.append((key, data, shipped))


def start_writer_shipper(
    store: Any,
    url: str,
    *,
    interval: float,
    options: Mapping[str, str] | None,
    objects: ObjectStore | None = None,
) -> Shipper:
    """Start the thread that replicates ``store`` (open for writing) to ``url``."""
    target = open_url(url, options=options) if objects is None else objects
    shipper = Shipper(WriterSource(store), target, interval=interval)
    store.attach_shipper(shipper)
    shipper.start(f"journalstate-replicate:{store.path}")
    return shipper
