"""``journalstate replicate PATH URL``: ship a store another process writes, from beside it.

What belongs here: the sidecar's loop (a :class:`Shipper` reading a
:class:`FollowerSource`), its stop on SIGINT or SIGTERM with a final flush, and what it prints.
The command line's parser is ``_cli``'s; the shipping is ``_shipper``'s.
"""

from __future__ import annotations

import json
import signal
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from types import FrameType
from typing import Any, Final, TextIO

import attrs

from journalstate.replicate._objects import open_url
from journalstate.replicate._shipper import DEFAULT_CLOSE_TIMEOUT, Shipper
from journalstate.replicate._sources import FollowerSource

ONCE_TIMEOUT: Final = 60.0
"""Seconds ``--once`` keeps retrying failed uploads before it gives up."""


@contextmanager
def _stop_on_signals(stop: threading.Event) -> Iterator[None]:
    """SIGINT and SIGTERM set ``stop`` instead of ending the process (main thread only)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: FrameType | None) -> None:
        stop.set()

    previous = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for s, h in previous.items():
            signal.signal(s, h)


def run_sidecar(
    path: str,
    url: str,
    *,
    interval: float = 1.0,
    once: bool = False,
    options: Mapping[str, str] | None = None,
    stop: threading.Event | None = None,
    ready: Any = None,
) -> tuple[bool, Shipper]:
    """Ship the store at ``path`` to ``url`` until ``stop`` is set (or once), then flush.

    Returns whether the final flush shipped everything read, and the shipper (its status).
    ``ready``, when given, is called once the first generation is in the object store.

    Raises:
        ReplicaConflict: the prefix holds another store's generations.
        StoreNotFound, NotAStore, ... : the store cannot be opened.
        ReplicationUnavailable, BadReplicaURL: as :func:`journalstate.open`.
    """
    objects = open_url(url, options=options)
    source = FollowerSource(path)
    shipper = Shipper(source, objects, interval=interval)
    stop = threading.Event() if stop is None else stop
    try:
        with _stop_on_signals(stop):
            if once:
                done = shipper.flush(time.monotonic() + ONCE_TIMEOUT)
            else:
                announced = False
                while not stop.is_set():
                    shipped = shipper.try_pass()
                    if shipper.fatal_error is not None:
                        break
                    if not announced and shipper.status().shipped_seq is not None:
                        announced = True
                        if ready is not None:
                            ready()
                    stop.wait(interval if shipped else shipper.retry_delay())
                done = shipper.flush(time.monotonic() + DEFAULT_CLOSE_TIMEOUT)
    finally:
        source.close()
    if shipper.fatal_error is not None:
        raise shipper.fatal_error
    return done, shipper


def report(shipper: Shipper, as_json: bool, out: TextIO) -> None:
    """Print where the sidecar stopped, everything shipped: one line, or one JSON document."""
    status = shipper.status()
    if as_json:
        document = attrs.asdict(status)
        document["complete"] = True
        out.write(json.dumps(document, sort_keys=True) + "\n")
        return
    out.write(
        f"shipped seq {status.shipped_seq} to {status.url} (generation {status.generation}, "
        f"{status.segments_shipped} segments, {status.snapshots_shipped} snapshots, "
        f"{status.bytes_shipped} bytes)\n"
    )
