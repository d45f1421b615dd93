"""Object storage access: the one module that imports obstore.

What belongs here: the :class:`ObjectStore` protocol the shipper and restore use (create an
object only if it does not exist, read one, list keys), :func:`open_url` that turns a URL into
one, and :func:`put_once` (a create that a retry may repeat safely). obstore is imported
lazily, inside :func:`open_url`, so ``import journalstate`` never needs it.

Keys are relative to the URL's path (the prefix), ``/``-separated, never starting with ``/``.
Nothing here deletes an object.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import Any, Protocol
from urllib.parse import urlsplit

from journalstate._errors import (
    BadReplicaURL,
    ReplicaConflict,
    ReplicaNotFound,
    ReplicationError,
    ReplicationUnavailable,
)

SCHEMES = ("s3", "s3a", "gs", "az", "abfs", "abfss", "azure", "file", "memory")
"""The URL schemes :func:`open_url` accepts."""

# Options that configure obstore's HTTP client rather than the store (obstore takes them apart).
_CLIENT_OPTIONS = frozenset(
    {
        "allow_http",
        "allow_invalid_certificates",
        "connect_timeout",
        "timeout",
        "pool_idle_timeout",
        "proxy_url",
        "user_agent",
        "http1_only",
        "http2_only",
    }
)

_memory_lock = threading.Lock()
_memory_stores: dict[str, Any] = {}  # memory://NAME -> one obstore MemoryStore per process


class ObjectStore(Protocol):
    """What replication needs of an object store (obstore's, or a test double)."""

    url: str
    """The URL the store was opened with (its keys are relative to the URL's path)."""

    def put_new(self, key: str, data: bytes) -> bool:
        """Create the object ``key`` holding ``data`` unless it exists (conditional create).

        Returns True when this call created it, False when an object was already there (it is
        left as it was). Durable in the store when it returns True.

        Raises:
            ReplicationError: the store failed (network, permissions, a timeout): the object
                may or may not have been created.
        """
        ...

    def get(self, key: str) -> bytes:
        """The bytes of the object ``key``.

        Raises:
            ReplicaNotFound: there is no such object.
            ReplicationError: the store failed.
        """
        ...

    def list(self, prefix: str = "") -> list[str]:
        """Every key under ``prefix`` (a directory-like prefix, e.g. ``generations/``), sorted.

        Raises:
            ReplicationError: the store failed.
        """
        ...


def put_once(store: ObjectStore, key: str, data: bytes) -> bool:
    """Create ``key`` with ``data``; an identical object already there counts as success.

    A retried upload whose first attempt landed (a timeout after the write) finds its own bytes:
    that is success. Returns True when this call created the object, False when the same bytes
    were already there.

    Raises:
        ReplicaConflict: another object is at ``key`` (another shipper chose the same key).
        ReplicationError: the store failed.
    """
    if store.put_new(key, data):
        return True
    if store.get(key) != data:
        raise ReplicaConflict(
            store.url, f"{key} already holds other bytes; nothing was overwritten", key=key
        )
    return False


def _import_obstore(url: str) -> Any:
    try:
        import obstore
    except ImportError:
        raise ReplicationUnavailable(url) from None
    return obstore


def open_url(url: str, *, options: Mapping[str, str] | None = None) -> ObjectStore:
    """An :class:`ObjectStore` for ``url``, through obstore.

    Accepted: ``s3://bucket/prefix`` (and ``s3a``), ``gs://bucket/prefix``,
    ``az://container/prefix`` / ``abfs://...`` (Azure), ``file:///absolute/dir`` and
    ``memory://name/prefix`` (held in this process only: for tests). The store's settings come
    from the environment as obstore reads it (``AWS_ENDPOINT_URL``, ``AWS_ACCESS_KEY_ID``,
    ``AWS_REGION``, ``AWS_ALLOW_HTTP``, ``GOOGLE_SERVICE_ACCOUNT``, ``AZURE_STORAGE_ACCOUNT_NAME``
    ...), then from ``options`` (obstore's config keys, e.g. ``aws_endpoint``; HTTP client keys
    such as ``allow_http`` and ``timeout`` go to the client). A ``file://`` directory is created
    when the first object is written.

    Raises:
        BadReplicaURL: another scheme, no bucket, a relative file path, or options obstore
            refuses.
        ReplicationUnavailable: obstore is not installed.
    """
    if not isinstance(url, str):
        raise BadReplicaURL(repr(url), "a replica URL is a string")
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in SCHEMES:
        raise BadReplicaURL(
            url,
            "not an object store URL: use s3://bucket/prefix, gs://bucket/prefix, "
            "az://container/prefix, file:///absolute/dir or memory://name/prefix",
        )
    if parts.query or parts.fragment:
        raise BadReplicaURL(url, "a replica URL has no query or fragment; pass options instead")
    obstore = _import_obstore(url)
    opts = dict(options or {})
    if scheme == "memory":
        if opts:
            raise BadReplicaURL(url, f"memory:// takes no options (got {sorted(opts)})")
        with _memory_lock:
            inner = _memory_stores.setdefault(parts.netloc, obstore.store.MemoryStore())
        return _Obstore(url, inner, _clean_prefix(url, parts.path))
    if scheme == "file":
        if parts.netloc not in ("", "localhost") or not parts.path.startswith("/"):
            raise BadReplicaURL(url, "a file URL names an absolute path: file:///dir/prefix")
        if opts:
            raise BadReplicaURL(url, f"file:// takes no options (got {sorted(opts)})")
        _clean_prefix(url, parts.path)
        # The root, not the prefix: LocalStore needs its root to exist; the prefix's
        # directories are made as objects are written into them.
        inner = _build(obstore, url, "file:///", {})
        return _Obstore(url, inner, _clean_prefix(url, parts.path))
    if not parts.netloc:
        raise BadReplicaURL(url, "no bucket (or container) in the URL")
    client = {k: v for k, v in opts.items() if k.lower() in _CLIENT_OPTIONS}
    config = {k: v for k, v in opts.items() if k.lower() not in _CLIENT_OPTIONS}
    prefix = _clean_prefix(url, parts.path)
    kwargs: dict[str, Any] = {}
    if config:
        kwargs["config"] = config
    if client:
        kwargs["client_options"] = client
    inner = _build(obstore, url, f"{scheme}://{parts.netloc}", kwargs)
    return _Obstore(url, inner, prefix)


def _clean_prefix(url: str, path: str) -> str:
    """The URL's path as a key prefix: no leading or trailing slash, no empty or dot parts."""
    parts = [p for p in path.split("/") if p]
    if any(p in (".", "..") for p in parts):
        raise BadReplicaURL(url, "the path may not contain '.' or '..'")
    return "/".join(parts)


def _build(obstore: Any, url: str, root_url: str, kwargs: dict[str, Any], **extra: Any) -> Any:
    try:
        return obstore.store.from_url(root_url, **kwargs, **extra)
    except (KeyboardInterrupt, SystemExit):
        raise
    except BaseException as e:  # obstore reports bad config as a Rust panic (a BaseException)
        raise BadReplicaURL(url, f"cannot open the object store: {_one_line(e)}") from None


def _one_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0] if text else ''}"


class _Obstore:
    """An :class:`ObjectStore` over an obstore store rooted at the bucket, keys under a prefix."""

    def __init__(self, url: str, inner: Any, prefix: str) -> None:
        self.url = url
        self._inner = inner
        self._prefix = prefix
        import obstore.exceptions as errors

        self._obstore = _import_obstore(url)
        self._exists = (errors.AlreadyExistsError, errors.PreconditionError, FileExistsError)
        self._missing = (errors.NotFoundError, FileNotFoundError)

    def _path(self, key: str) -> str:
        if not key or key.startswith("/") or any(p in ("", ".", "..") for p in key.split("/")):
            raise ValueError(f"bad object key {key!r}")
        return f"{self._prefix}/{key}" if self._prefix else key

    def _failed(self, what: str, key: str, error: BaseException) -> ReplicationError:
        return ReplicationError(self.url, f"{what} {key}: {_one_line(error)}")

    def put_new(self, key: str, data: bytes) -> bool:
        path = self._path(key)
        try:
            self._obstore.put(self._inner, path, data, mode="create")
        except self._exists:
            return False
        except Exception as e:
            raise self._failed("cannot write", key, e) from e
        return True

    def get(self, key: str) -> bytes:
        path = self._path(key)
        try:
            return bytes(self._obstore.get(self._inner, path).bytes())
        except self._missing:
            raise ReplicaNotFound(self.url, f"no object {key}") from None
        except Exception as e:
            raise self._failed("cannot read", key, e) from e

    def list(self, prefix: str = "") -> list[str]:
        root = self._prefix
        under = "/".join(p for p in (root, prefix.strip("/")) if p)
        try:
            found = self._obstore.list(self._inner, prefix=under or None).collect()
        except self._missing:
            return []
        except Exception as e:
            raise self._failed("cannot list", prefix or "/", e) from e
        keys = []
        cut = len(root) + 1 if root else 0
        for meta in found:
            path = str(meta["path"])
            if root and not path.startswith(root + "/"):
                continue
            keys.append(path[cut:])
        return sorted(keys)

    def __repr__(self) -> str:
        return f"ObjectStore({self.url!r})"
