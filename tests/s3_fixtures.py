"""S3-protocol server on 127.0.0.1 (moto, in a child process) and S3 stores on it."""

from __future__ import annotations

import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from assetd.storage.s3 import S3BlobStorage

# moto runs in a child process: it keeps whole objects in memory, and in-process that would
# both show up in tracemalloc-based memory tests and hide client-side buffering behind it.
_MOTO_SERVER = """
import logging, sys
from moto.server import ThreadedMotoServer

logging.getLogger("werkzeug").setLevel(logging.ERROR)
server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
server.start()
print(server.get_host_and_port()[1], flush=True)
sys.stdin.read()  # serve until the test session closes our stdin (or dies)
server.stop()
"""

S3Factory = Callable[..., S3BlobStorage]


@pytest.fixture(scope="session")
def s3_server() -> Iterator[str]:
    """Endpoint URL of a moto S3 server on 127.0.0.1, shared by the whole session."""
    process = subprocess.Popen(
        [sys.executable, "-c", _MOTO_SERVER],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert process.stdin is not None
    assert process.stdout is not None
    try:
        port = process.stdout.readline().strip()
        if not port.isdigit():
            pytest.fail(f"moto server did not start (exit code {process.poll()})")
        yield f"http://127.0.0.1:{port}"
    finally:
        process.stdin.close()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        process.stdout.close()


@pytest.fixture
def fake_aws_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Dummy credentials and no shared AWS config, so nothing can reach real AWS."""
    for name in ("AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")


@pytest.fixture
def make_s3_storage(s3_server: str, fake_aws_env: None) -> Iterator[S3Factory]:
    """Build S3 stores on the test server; each call gets a fresh bucket unless one is given."""
    stores: list[S3BlobStorage] = []

    def make(**kwargs: Any) -> S3BlobStorage:
        options: dict[str, Any] = {
            "bucket": f"assetd-test-{uuid.uuid4().hex[:16]}",
            "endpoint_url": s3_server,
            "region": "us-east-1",
            "access_key": "testing",
            "secret_key": "testing",
            "create_bucket": True,
        }
        options.update(kwargs)
        store = S3BlobStorage(**options)
        stores.append(store)
        return store

    yield make
    for store in stores:
        store.close()


@pytest.fixture
def s3_storage(make_s3_storage: S3Factory) -> S3BlobStorage:
    """An S3 store on its own bucket of the test server."""
    return make_s3_storage()
