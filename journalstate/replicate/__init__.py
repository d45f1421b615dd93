"""Replication of a store's journal to object storage, and restore from it.

The object format and keys are in ``_objformat`` (pure), object storage access in ``_objects``
(the only module that imports the optional obstore package), restore and listing in
``_restore`` (exported as ``journalstate.restore`` and ``journalstate.list_replicas``).
docs/replication.md describes the objects byte by byte and the guarantees.

This package's ``__init__`` imports only the object store access, which imports nothing of
the store: the writer's modules can import the replication modules without a cycle.
"""

from journalstate.replicate._objects import ObjectStore, open_url, put_once

__all__ = ["ObjectStore", "open_url", "put_once"]
