"""Object stores for replication tests: an S3 server on 127.0.0.1, local files, memory.

The S3 server is moto's standalone server (``moto[server]``), started once per test session in
a thread of the test process on a free port, with one bucket. While it runs, the ``AWS_*``
environment variables point obstore (in this process and in any subprocess a test starts) at
it; they are restored when the session ends. Each test gets its own prefix in the bucket, so
tests never see each other's objects.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import attrs
import pytest

S3_BUCKET = "journalstate-test"


@attrs.frozen
class S3Server:
    """A running S3-compatible server and what a client needs to reach it."""

    endpoint: str
    bucket: str
    env: dict[str, str]
    """The ``AWS_*`` variables that point obstore (and boto3) at it."""

    def url(self, name: str = "") -> str:
        """A fresh ``s3://`` URL: its own prefix in the bucket."""
        return f"s3://{self.bucket}/{name or 'replica'}-{uuid.uuid4().hex[:12]}"


@pytest.fixture(scope="session")
def s3_server() -> Iterator[S3Server]:
    """moto's S3 server on 127.0.0.1 (a free port), one bucket, the AWS_* variables set."""
    pytest.importorskip("obstore")
    moto_server = pytest.importorskip("moto.server")
    boto3 = pytest.importorskip("boto3")
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        endpoint = f"http://{host}:{port}"
        env = {
            "AWS_ENDPOINT_URL": endpoint,
            "AWS_ALLOW_HTTP": "true",
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_REGION": "us-east-1",
            "AWS_DEFAULT_REGION": "us-east-1",
        }
        client = boto3.client(
            "s3",
            endpoint_url=endpoint,
            region_name="us-east-1",
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )
        client.create_bucket(Bucket=S3_BUCKET)
        saved = {name: os.environ.get(name) for name in env}
        os.environ.update(env)
        try:
            yield S3Server(endpoint, S3_BUCKET, env)
        finally:
            for name, value in saved.items():
                if value is None:
                    os.environ.pop(name, None)
                else:
                    os.environ[name] = value
    finally:
        server.stop()


@pytest.fixture
def s3_url(s3_server: S3Server) -> str:
    """A fresh prefix on the test S3 server."""
    return s3_server.url()


@pytest.fixture
def file_url(tmp_path: Path) -> str:
    """A ``file://`` replica in the test's temporary directory (created by the first write)."""
    return f"file://{tmp_path}/replica"


@pytest.fixture
def memory_url() -> str:
    """A ``memory://`` replica of this process, fresh for the test."""
    return f"memory://{uuid.uuid4().hex}/replica"
