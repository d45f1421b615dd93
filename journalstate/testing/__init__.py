"""Crash-testing tools: a simulated disk with a page cache, for the store and for users' schemas.

``SimStorage`` plugs in under :func:`journalstate.open` (``storage=``) and produces the disk
images an OS crash or a process death may leave. See docs/testing.md for the crash model.
"""

from journalstate.testing._disk import SimStorage
from journalstate.testing._events import (
    CRASH_POINTS,
    Chooser,
    CrashHook,
    Event,
    Op,
    PieceHook,
    Pieces,
    SimulatedCrash,
    byte_pieces,
    crash_point,
    sector_pieces,
)
from journalstate.testing._objects import Fault, FaultyObjectStore, Plan, fail_calls
from journalstate.testing._pages import SECTOR_SIZE

__all__ = [
    "CRASH_POINTS",
    "SECTOR_SIZE",
    "Chooser",
    "CrashHook",
    "Event",
    "Fault",
    "FaultyObjectStore",
    "Op",
    "PieceHook",
    "Pieces",
    "Plan",
    "SimStorage",
    "SimulatedCrash",
    "byte_pieces",
    "crash_point",
    "fail_calls",
    "sector_pieces",
]
