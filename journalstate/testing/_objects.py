"""A wrapper around an object store that fails on plan: the shipper's crash model.

What belongs here: :class:`FaultyObjectStore` and its :class:`Fault` plan. It stands for the
network and the store failing at chosen calls: an upload that fails before anything is written,
an upload that times out after its write landed (the caller sees an error, the object exists),
and reads or listings that fail.
"""

from __future__ import annotations

import enum
import threading
from collections.abc import Callable, Iterable

from journalstate._errors import ReplicationError
from journalstate.replicate._objects import ObjectStore


class Fault(str, enum.Enum):
    """What a faulty call does."""

    FAIL_BEFORE_PUT = "fail-before-put"
    """put_new raises and writes nothing."""
    FAIL_AFTER_PUT = "fail-after-put"
    """put_new writes the object, then raises (a timeout whose write landed)."""
    FAIL_GET = "fail-get"
    """get raises."""
    FAIL_LIST = "fail-list"
    """list raises."""


Plan = Callable[[str, int, str], "Fault | None"]
"""``plan(operation, call_number, key)``: the fault for this call, or None to pass it through.

``operation`` is "put", "get" or "list"; ``call_number`` counts every call from 0."""


def fail_calls(faults: dict[int, Fault]) -> Plan:
    """A plan that injects ``faults[n]`` at call number ``n`` (counted over all operations)."""
    return lambda operation, n, key: faults.get(n)


class FaultyObjectStore:
    """An :class:`~journalstate.replicate._objects.ObjectStore` that fails where ``plan`` says.

    ``plan`` is a :data:`Plan` or an iterable of ``Fault | None`` consumed one per call (None:
    the call goes through; once exhausted, every call goes through). Every injected failure is
    a :class:`journalstate.ReplicationError`, as a real store failure is. ``calls`` records
    ``(operation, key, fault)`` for every call, and ``faults_injected`` counts the failures.
    """

    def __init__(self, inner: ObjectStore, plan: Plan | Iterable[Fault | None]) -> None:
        self.inner = inner
        self.url = inner.url
        self._lock = threading.Lock()
        if callable(plan):
            self._plan: Plan = plan
        else:
            queue = iter(list(plan))
            self._plan = lambda operation, n, key: next(queue, None)
        self.calls: list[tuple[str, str, Fault | None]] = []
        self.faults_injected = 0

    def _fault(self, operation: str, key: str) -> Fault | None:
        with self._lock:
            fault = self._plan(operation, len(self.calls), key)
            self.calls.append((operation, key, fault))
            if fault is not None:
                self.faults_injected += 1
            return fault

    def _error(self, fault: Fault, key: str) -> ReplicationError:
        return ReplicationError(self.url, f"injected failure ({fault.value}) at {key}")

    def put_new(self, key: str, data: bytes) -> bool:
        """Create ``key`` unless it exists, failing before or after the write as planned."""
        fault = self._fault("put", key)
        if fault is Fault.FAIL_BEFORE_PUT:
            raise self._error(fault, key)
        created = self.inner.put_new(key, data)
        if fault is Fault.FAIL_AFTER_PUT:
            raise self._error(fault, key)
        return created

    def get(self, key: str) -> bytes:
        """The object's bytes, or an injected failure."""
        fault = self._fault("get", key)
        if fault is not None:
            raise self._error(fault, key)
        return self.inner.get(key)

    def list(self, prefix: str = "") -> list[str]:
        """The keys under ``prefix``, or an injected failure."""
        fault = self._fault("list", prefix)
        if fault is not None:
            raise self._error(fault, prefix)
        return self.inner.list(prefix)
