"""Object store access: conditional create, get, list on memory://, file:// and an S3 server."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

import journalstate as js
from journalstate.replicate._objects import ObjectStore, open_url, put_once
from journalstate.testing import Fault, FaultyObjectStore, fail_calls
from tests.objectstores import S3Server

pytest.importorskip("obstore")


@pytest.fixture(params=["memory", "file", "s3"])
def any_url(request: pytest.FixtureRequest, memory_url: str, tmp_path: Path) -> str:
    """A fresh replica URL of each kind of store."""
    if request.param == "memory":
        return memory_url
    if request.param == "file":
        return f"file://{tmp_path}/replica/sub"
    server: S3Server = request.getfixturevalue("s3_server")
    return server.url()


def test_conditional_create_get_and_list(any_url: str) -> None:
    """put_new creates once and never overwrites; get and list see exactly what was created."""
    store = open_url(any_url)
    assert store.url == any_url
    assert store.list() == []
    assert store.put_new("generations/g/b", b"one") is True
    assert store.put_new("generations/g/b", b"two") is False
    assert store.get("generations/g/b") == b"one"
    assert store.put_new("generations/g/a", b"") is True
    assert store.put_new("other", b"x") is True
    assert store.list() == ["generations/g/a", "generations/g/b", "other"]
    assert store.list("generations") == ["generations/g/a", "generations/g/b"]
    assert store.list("generations/") == ["generations/g/a", "generations/g/b"]
    assert store.list("gen") == []  # prefixes are whole path parts
    assert store.get("generations/g/a") == b""


def test_missing_object_is_replica_not_found(any_url: str) -> None:
    """get of a key that does not exist raises ReplicaNotFound with the URL."""
    store = open_url(any_url)
    with pytest.raises(js.ReplicaNotFound, match="no object nothing") as e:
        store.get("nothing")
    assert e.value.url == any_url


def test_put_once_accepts_its_own_bytes_and_refuses_others(any_url: str) -> None:
    """A retried create that finds its own bytes succeeds; other bytes are a ReplicaConflict."""
    store = open_url(any_url)
    assert put_once(store, "k", b"abc") is True
    assert put_once(store, "k", b"abc") is False
    with pytest.raises(js.ReplicaConflict, match="other bytes") as e:
        put_once(store, "k", b"abd")
    assert e.value.key == "k"
    assert store.get("k") == b"abc"


def test_prefixes_are_separate(any_url: str) -> None:
    """Two prefixes of one bucket or directory never see each other's keys."""
    a, b = open_url(any_url + "/a"), open_url(any_url + "/ab")
    a.put_new("k", b"a")
    b.put_new("k", b"b")
    assert (a.get("k"), b.get("k")) == (b"a", b"b")
    assert a.list() == ["k"]
    assert b.list() == ["k"]
    assert open_url(any_url).list() == ["a/k", "ab/k"]


def test_memory_stores_are_shared_by_name(memory_url: str) -> None:
    """Two opens of one memory:// name see the same objects (the shipper's and restore's)."""
    open_url(memory_url).put_new("k", b"1")
    assert open_url(memory_url).get("k") == b"1"


def test_file_store_writes_under_the_path(tmp_path: Path) -> None:
    """file:// objects are files under the URL's directory, created as needed."""
    store = open_url(f"file://{tmp_path}/r")
    store.put_new("generations/g/generation", b"m")
    assert (tmp_path / "r/generations/g/generation").read_bytes() == b"m"


def test_s3_conditional_create_is_honoured_by_the_server(s3_server: S3Server) -> None:
    """The S3 server answers a second create of a key with 412: If-None-Match is honoured."""
    boto3 = pytest.importorskip("boto3")
    url = s3_server.url()
    store = open_url(url)
    assert store.put_new("k", b"1")
    client = boto3.client("s3", endpoint_url=s3_server.endpoint)
    key = url.split("/", 3)[3] + "/k"
    with pytest.raises(Exception, match=r"PreconditionFailed|412"):
        client.put_object(Bucket=s3_server.bucket, Key=key, Body=b"2", IfNoneMatch="*")
    assert store.get("k") == b"1"


def test_s3_options_override_the_environment(s3_server: S3Server) -> None:
    """options= reaches obstore: an endpoint and HTTP client options given there work."""
    url = s3_server.url()
    opts = {"aws_endpoint": s3_server.endpoint, "allow_http": "true"}
    assert open_url(url, options=opts).put_new("k", b"1")
    assert open_url(url).get("k") == b"1"


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("http://example.com/x", "not an object store URL"),
        ("ftp://host/x", "not an object store URL"),
        ("relative/path", "not an object store URL"),
        ("file://host/x", "absolute path"),
        ("file:relative", "absolute path"),
        ("s3:///prefix", "no bucket"),
        ("s3://bucket/a/../b", "'..'"),
        ("s3://bucket/a?x=1", "no query"),
    ],
)
def test_bad_urls_are_refused(url: str, message: str) -> None:
    """A URL of another scheme, without a bucket, or with dot parts is BadReplicaURL."""
    with pytest.raises(js.BadReplicaURL, match=message) as e:
        open_url(url)
    assert e.value.url == url
    assert isinstance(e.value, ValueError)


def test_bad_options_are_refused(memory_url: str) -> None:
    """Options obstore does not know, or options for memory://, are BadReplicaURL."""
    with pytest.raises(js.BadReplicaURL, match="cannot open"):
        open_url("s3://bucket/p", options={"no_such_option": "1"})
    with pytest.raises(js.BadReplicaURL, match="no options"):
        open_url(memory_url, options={"a": "b"})


def test_store_failures_are_replication_errors(tmp_path: Path) -> None:
    """A store that fails (an unreachable endpoint) raises ReplicationError, not obstore's."""
    store = open_url(
        "s3://bucket/p",
        options={
            "aws_endpoint": "http://127.0.0.1:9",
            "allow_http": "true",
            "aws_access_key_id": "a",
            "aws_secret_access_key": "b",
            "aws_region": "us-east-1",
            "connect_timeout": "2s",
            "timeout": "5s",
        },
    )
    with pytest.raises(js.ReplicationError, match="cannot write k"):
        store.put_new("k", b"1")


def test_without_obstore_replication_is_unavailable(tmp_path: Path) -> None:
    """With obstore missing, journalstate imports and open_url names the extra to install."""
    blocker = tmp_path / "blocker"
    blocker.mkdir()
    (blocker / "obstore.py").write_text("raise ImportError('blocked for the test')\n")
    code = (
        "import journalstate as js\n"
        "from journalstate.replicate._objects import open_url\n"
        "try:\n    open_url('memory://x/y')\n"
        "except js.ReplicationUnavailable as e:\n    print(e)\n"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(blocker), *sys.path])}
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300
    )
    assert "pip install 'journalstate[replicate]'" in out.stdout, out.stderr


def test_faulty_store_fails_before_and_after_the_put(memory_url: str) -> None:
    """FaultyObjectStore fails a put before or after the write, and gets and lists, on plan."""
    inner: ObjectStore = open_url(memory_url)
    store = FaultyObjectStore(
        inner,
        [Fault.FAIL_BEFORE_PUT, Fault.FAIL_AFTER_PUT, None, None, Fault.FAIL_LIST, None],
    )
    with pytest.raises(js.ReplicationError, match="fail-before-put"):
        store.put_new("a", b"1")
    assert inner.list() == []
    with pytest.raises(js.ReplicationError, match="fail-after-put"):
        store.put_new("a", b"1")
    assert inner.get("a") == b"1"  # the write landed
    assert put_once(store, "a", b"1") is False  # the retry finds its own bytes (two calls)
    with pytest.raises(js.ReplicationError, match="fail-list"):
        store.list()
    assert store.list() == ["a"]
    assert store.faults_injected == 3
    assert [c[0] for c in store.calls] == ["put", "put", "put", "get", "list", "list"]
    assert store.calls[0] == ("put", "a", Fault.FAIL_BEFORE_PUT)
    planned = FaultyObjectStore(inner, fail_calls({1: Fault.FAIL_GET}))
    assert planned.get("a") == b"1"
    with pytest.raises(js.ReplicationError, match="fail-get"):
        planned.get("a")
