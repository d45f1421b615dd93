"""The background flusher of the ``interval`` durability: a thread that flushes a store.

What belongs here is the thread and its loop; the flush itself (an msync of the journal
written since the last one) is the store's.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Callable


def start_flusher(
    tick: weakref.WeakMethod[Callable[[], bool]],
    interval: float,
    stop: threading.Event,
    name: str,
) -> threading.Thread:
    """Start a daemon thread that calls ``tick()`` every ``interval`` seconds.

    The thread holds the store only weakly (through ``tick``): a store dropped without
    close() (or whose process "died" in a simulation) does not keep a thread alive. It ends
    when ``stop`` is set, when the store is gone, or when ``tick()`` returns False.
    """

    def run() -> None:
        while not stop.wait(interval):
            flush = tick()
            if flush is None or not flush():
                return
            del flush

    flusher = threading.Thread(target=run, name=name)
    flusher.daemon = True
    flusher.start()
    return flusher
