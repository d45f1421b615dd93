"""Guards of the store's calls: re-entry from a signal handler, fork, and pickling.

What belongs here is :class:`Guarded`, the base of the store that owns its locks and knows
which threads are inside one of its calls (docs/design.md, "Signals, Ctrl-C and fork"). The
store's write paths, and what an interrupted one leaves, are in ``_store``.
"""

from __future__ import annotations

import os
import sys
import threading
import weakref
from threading import get_ident
from types import CodeType, FrameType
from typing import ClassVar, NoReturn, SupportsIndex

from journalstate._errors import ReentrantCall, StoreNotPicklable

_OPEN: weakref.WeakSet[Guarded] = weakref.WeakSet()
"""Every store opened in this process, so that a forked child can mark them."""


def _after_fork_in_child() -> None:
    for guarded in list(_OPEN):
        guarded._forked_in_child()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


class Guarded:
    """The locks of a store, the threads inside its calls, and its fork and pickling rules.

    A subclass lists in :attr:`_operations` the code of every call that marks its thread in
    ``_inside`` (inside its ``try``, removed in the ``finally``).
    """

    _operations: ClassVar[frozenset[CodeType]] = frozenset()

    def __init__(self, path: str) -> None:
        self._path = path
        self._lock = threading.RLock()
        self._sync_lock = threading.Lock()  # taken before _lock, never after it
        self._txn_owner: int | None = None
        # Ids of the threads now inside an operation of this store (see _enter).
        self._inside: set[int] = set()
        self._forked = False
        _OPEN.add(self)

    def _enter(self) -> int:
        """This thread's id, after checking that it is not inside an operation of this store.

        Every operation adds the id to ``_inside`` (inside its ``try``) and removes it in the
        ``finally``, so the check costs a set lookup. A signal handler runs in the main thread
        between two bytecodes of whatever it was doing; if that was a store operation, the
        handler's call could neither wait for it (a hang: the lock holder is this thread) nor
        run inside it (mixing two commits' bookkeeping), so it raises at once.

        Raises:
            ReentrantCall: this thread is inside an operation of this store.
        """
        me = get_ident()
        if me in self._inside:
            self._reentered(me)
        return me

    def _reentered(self, me: int) -> None:
        """Raise ReentrantCall when two operations of this store are on this thread's stack.

        An exception that interrupts a ``finally`` clause can leave the id in ``_inside``
        after the operation ended. The stack is the truth: when it holds no other operation of
        this store, the call goes ahead (and its own ``finally`` drops the stale id).
        """
        frame: FrameType | None = sys._getframe(1)
        depth = 0
        while frame is not None:
            if frame.f_code in self._operations and frame.f_locals.get("self") is self:
                depth += 1
                if depth == 2:
                    raise ReentrantCall(
                        f"{self._path}: a store call from inside another call of the same "
                        "thread (a signal handler?); set a flag in the handler and commit from "
                        "the main loop"
                    )
            frame = frame.f_back

    def _in_transaction(self, me: int) -> bool:
        """Whether thread ``me`` (the caller) is inside the block of its open transaction.

        Called before taking the lock. A transaction holds the lock from its start to its end,
        so a mark whose thread does not hold the lock was left by an exception that
        interrupted the transaction's cleanup: it is dropped.
        """
        if self._txn_owner != me:
            return False
        if self._lock._is_owned():  # type: ignore[attr-defined]
            return True
        self._txn_owner = None
        return False

    def _forget(self) -> None:
        """Leave the stores a fork marks (once closed)."""
        _OPEN.discard(self)

    def _forked_in_child(self) -> None:
        """In a child process after fork(): refuse writes, forget the parent's threads' locks."""
        self._forked = True
        # Another thread of the parent may have held these at the fork: in the child nobody
        # would ever release them.
        self._lock = threading.RLock()
        self._sync_lock = threading.Lock()
        self._inside = set()

    def __reduce_ex__(self, protocol: SupportsIndex) -> NoReturn:
        """Refuse pickling and copying: a store owns a mapping, a descriptor and a lock."""
        raise StoreNotPicklable(self._path)
