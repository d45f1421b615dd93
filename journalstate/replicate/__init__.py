"""Replication of a store's journal to object storage, and restore from it.

The object format and keys are in ``_objformat`` (pure), object storage access in ``_objects``
(the only module that imports the optional obstore package), restore and listing in
``_restore``. docs/replication.md describes the objects byte by byte and the guarantees.
"""

from journalstate.replicate._objects import ObjectStore, open_url, put_once

__all__ = ["ObjectStore", "open_url", "put_once"]
