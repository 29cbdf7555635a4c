"""Real tus clients against a real `assetd serve`: tuspy and tus-js-client (under Node), each
interrupted mid-upload and resumed."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType
from typing import Any, BinaryIO, NoReturn

import httpx
import pytest
from tusclient.client import TusClient
from tusclient.exceptions import TusCommunicationError

from tests.server import RunningServer, run_server, shared_database

pytestmark = pytest.mark.slow

MiB = 1024 * 1024
FILE_BYTES = 20 * MiB
CHUNK_BYTES = MiB
KEY = "assetd_tus-clients-test-key-0123456789"
TUS = {"Tus-Resumable": "1.0.0"}
NODE_DIR = Path(__file__).resolve().parents[2] / "node"
NODE_SCRIPT = NODE_DIR / "tus_upload.mjs"
NODE_MAJOR_NEEDED = 18  # tus-js-client 4's "engines"


class Relay:
    """A TCP relay on 127.0.0.1 standing in for the network between client and server.

    It is the server's public address (ASSETD_PUBLIC_URL), so the upload URLs the server hands
    out lead through it; `target` says which server process it reaches. With `cut_after`, it
    drops the connection in flight once that many bytes went upstream (once), as a network
    failure would; afterwards it relays normally again.
    """

    def __init__(self, cut_after: int | None = None) -> None:
        self.cut_after = cut_after
        self.forwarded = 0
        self.has_cut = False
        self.target: RunningServer | None = None
        self._listener = socket.create_server(("127.0.0.1", 0))
        # Closing a socket does not wake a thread blocked in accept(): poll, and check _closed.
        self._listener.settimeout(0.05)
        self._closed = threading.Event()
        self.url = f"http://127.0.0.1:{self._listener.getsockname()[1]}"
        self._lock = threading.Lock()
        self._sockets: list[socket.socket] = []
        self._thread = threading.Thread(target=self._accept, daemon=True)

    def __enter__(self) -> Relay:
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._closed.set()
        self._thread.join(timeout=5)
        self._listener.close()
        with self._lock:
            for sock in self._sockets:
                sock.close()

    def _accept(self) -> None:
        while not self._closed.is_set():
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
            client.settimeout(None)
            assert self.target is not None, "set relay.target before sending requests"
            port = int(self.target.url.rsplit(":", 1)[1])
            upstream = socket.create_connection(("127.0.0.1", port))
            with self._lock:
                self._sockets += [client, upstream]
            threading.Thread(target=self._up, args=(client, upstream), daemon=True).start()
            threading.Thread(target=self._down, args=(upstream, client), daemon=True).start()

    def _up(self, client: socket.socket, upstream: socket.socket) -> None:
        try:
            while data := client.recv(256 * 1024):
                with self._lock:
                    room = None
                    if self.cut_after is not None and not self.has_cut:
                        room = self.cut_after - self.forwarded
                    if room is not None and len(data) >= room:
                        data, self.has_cut = data[:room], True
                    self.forwarded += len(data)
                    cutting = self.has_cut and room is not None
                upstream.sendall(data)
                if cutting:
                    # Give the server time to read what did arrive, then the line goes dead.
                    time.sleep(0.3)
                    for sock in (client, upstream):
                        sock.shutdown(socket.SHUT_RDWR)
                    return
            upstream.shutdown(socket.SHUT_WR)
        except OSError:
            pass

    def _down(self, upstream: socket.socket, client: socket.socket) -> None:
        try:
            while data := upstream.recv(256 * 1024):
                client.sendall(data)
            client.shutdown(socket.SHUT_WR)
        except OSError:
            pass


@pytest.fixture
def server_database(database_url: str) -> Iterator[str | None]:
    with shared_database(database_url) as url:
        yield url


@pytest.fixture
def payload(tmp_path: Path) -> tuple[Path, bytes]:
    data = os.urandom(FILE_BYTES)
    path = tmp_path / "payload.bin"
    path.write_bytes(data)
    return path, data


@pytest.fixture
def payload_stream(payload: tuple[Path, bytes]) -> Iterator[BinaryIO]:
    # tuspy opens a file_path anew for every request and never closes it; given a stream, it
    # reads that one, which the test closes.
    with open(payload[0], "rb") as stream:
        yield stream


def head(server: RunningServer, url: str) -> httpx.Response:
    """HEAD straight at the server process, whatever address the URL names."""
    path = httpx.URL(url).path
    response = httpx.head(f"{server.url}{path}", headers={**TUS, **server.headers})
    assert response.status_code == 200, (response.status_code, response.headers)
    return response


def settled_offset(server: RunningServer, url: str, *, above: int = 0) -> int:
    """The offset once the interrupted PATCH is over on the server too.

    The client gave up at once; the server finishes that request on its own time (it keeps
    what arrived). Resuming before that would race it.
    """
    deadline = time.monotonic() + 10
    last = -1
    while time.monotonic() < deadline:
        offset = int(head(server, url).headers["upload-offset"])
        if offset > above and offset == last:
            return offset
        last = offset
        time.sleep(0.2)
    raise AssertionError(f"upload offset did not settle above {above}: last {last}")


def assert_one_version_with(server: RunningServer, asset_id: str, data: bytes) -> dict[str, Any]:
    with httpx.Client(base_url=server.url, headers=server.headers) as http:
        content = http.get(f"/v1/assets/{asset_id}/content")
        assert content.status_code == 200
        assert content.content == data
        versions = http.get(f"/v1/assets/{asset_id}/versions").json()
        assert [v["number"] for v in versions] == [1]
        asset: dict[str, Any] = http.get(f"/v1/assets/{asset_id}").json()
        assert asset["version"] == 1
        return asset


class TestTuspy:
    def test_cut_off_mid_patch_then_resumed_by_a_new_uploader(
        self,
        tmp_path: Path,
        server_database: str | None,
        payload: tuple[Path, bytes],
        payload_stream: BinaryIO,
    ) -> None:
        data = payload[1]
        # Seven whole chunks and about half of the eighth reach the server.
        relay = Relay(cut_after=7 * CHUNK_BYTES + CHUNK_BYTES // 2)
        env = {"ASSETD_PUBLIC_URL": relay.url}
        with (
            relay,
            run_server(
                tmp_path / "data", database_url=server_database, api_key=KEY, extra_env=env
            ) as server,
        ):
            relay.target = server
            client = TusClient(f"{relay.url}/v1/tus", headers=server.headers)
            first = client.uploader(
                file_stream=payload_stream,
                chunk_size=CHUNK_BYTES,
                metadata={"filename": "payload.bin", "name": "From tuspy", "tags": "py,tus"},
            )
            with pytest.raises(TusCommunicationError):
                first.upload()
            assert relay.has_cut
            url = first.url
            assert url is not None
            assert url.startswith(f"{relay.url}/v1/tus/")

            # The seven acknowledged chunks are kept, and so is what arrived of the eighth.
            offset = settled_offset(server, url, above=7 * CHUNK_BYTES)
            assert offset < relay.cut_after

            # A new uploader, as after a client restart, knowing only the URL; with checksums.
            second = client.uploader(
                file_stream=payload_stream, url=url, chunk_size=CHUNK_BYTES, upload_checksum=True
            )
            assert second.offset == offset
            second.upload()
            assert second.offset == len(data)
            assert second.request is not None
            assert second.request.response_headers["x-asset-version"] == "1"

            done = head(server, url)
            assert done.headers["upload-offset"] == str(len(data))
            asset = assert_one_version_with(server, done.headers["x-asset-id"], data)
            assert asset["name"] == "From tuspy"
            assert asset["tags"] == ["py", "tus"]

    def test_resumed_after_the_server_restarts(
        self,
        tmp_path: Path,
        server_database: str | None,
        payload: tuple[Path, bytes],
        payload_stream: BinaryIO,
    ) -> None:
        data = payload[1]
        data_dir = tmp_path / "data"
        relay = Relay()  # the public address stays while the process behind it changes
        env = {"ASSETD_PUBLIC_URL": relay.url}
        with relay:
            with run_server(
                data_dir, database_url=server_database, api_key=KEY, extra_env=env
            ) as server:
                relay.target = server
                client = TusClient(f"{relay.url}/v1/tus", headers=server.headers)
                first = client.uploader(
                    file_stream=payload_stream,
                    chunk_size=CHUNK_BYTES,
                    metadata={"filename": "payload.bin"},
                    upload_checksum=True,
                )
                first.upload(stop_at=9 * CHUNK_BYTES)
                assert first.offset == 9 * CHUNK_BYTES
                url = first.url
                assert url is not None
            # The first process stopped (run_server checked that it shut down cleanly).
            with run_server(
                data_dir, database_url=server_database, api_key=KEY, extra_env=env
            ) as restarted:
                relay.target = restarted
                assert head(restarted, url).headers["upload-offset"] == str(9 * CHUNK_BYTES)
                second = TusClient(f"{relay.url}/v1/tus", headers=restarted.headers).uploader(
                    file_stream=payload_stream, url=url, chunk_size=CHUNK_BYTES
                )
                assert second.offset == 9 * CHUNK_BYTES
                second.upload()
                assert second.offset == len(data)
                done = head(restarted, url)
                assert_one_version_with(restarted, done.headers["x-asset-id"], data)


def _missing(reason: str) -> NoReturn:
    # As with PostgreSQL: CI must run this test, a developer's machine may lack Node.
    if os.environ.get("CI") == "true":
        pytest.fail(f"{reason} (required when CI=true)")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def node() -> str:
    """The node binary, with tests/node's locked packages installed (scripts/install does it;
    this covers a plain pytest run on a fresh checkout)."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        _missing("node and npm are needed for the tus-js-client test")
    version = subprocess.run([node, "--version"], capture_output=True, text=True, check=True)
    major = int(version.stdout.strip().lstrip("v").split(".")[0])
    if major < NODE_MAJOR_NEEDED:
        _missing(f"tus-js-client needs node >= {NODE_MAJOR_NEEDED}, found {version.stdout}")
    if not (NODE_DIR / "node_modules" / "tus-js-client").is_dir():
        installed = subprocess.run(
            [npm, "ci", "--no-audit", "--no-fund"],
            cwd=NODE_DIR,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert installed.returncode == 0, installed.stdout + installed.stderr
    return node


def run_node(node: str, *args: str | int) -> dict[str, Any]:
    done = subprocess.run(
        [node, str(NODE_SCRIPT), *(str(arg) for arg in args)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.stdout.strip(), f"no result (exit {done.returncode}):\n{done.stderr}"
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    assert done.returncode == 0, (result, done.stderr)
    return result


class TestTusJsClient:
    def test_aborted_mid_patch_then_resumed_from_its_url(
        self,
        node: str,
        tmp_path: Path,
        server_database: str | None,
        payload: tuple[Path, bytes],
    ) -> None:
        path, data = payload
        with run_server(tmp_path / "data", database_url=server_database, api_key=KEY) as server:
            common: list[str | int] = [
                "--key",
                KEY,
                "--file",
                str(path),
                "--chunk-size",
                CHUNK_BYTES,
            ]
            first = run_node(
                node,
                *common,
                "--endpoint",
                f"{server.url}/v1/tus",
                # One byte into the seventh chunk: abort() lands while that PATCH is sending.
                "--stop-after",
                6 * CHUNK_BYTES + 1,
                "--name",
                "From Node",
                "--tags",
                "node,tus",
            )
            assert first["event"] == "aborted", first
            assert first["cutOff"] is True, first
            assert first["assetVersion"] is None
            url = first["url"]
            assert url.startswith(f"{server.url}/v1/tus/")

            offset = settled_offset(server, url)
            assert 6 * CHUNK_BYTES <= offset < len(data)

            # Resume from the URL alone; the script gives tus-js-client no endpoint, so it
            # cannot quietly start a new upload instead.
            second = run_node(node, *common, "--upload-url", url)
            assert second["event"] == "success", second
            assert second["url"] == url
            assert second["resumedFrom"] == offset
            assert second["assetVersion"] == "1"
            assert second["assetId"] == first["assetId"]
            # Only the rest went over the wire: whole chunks from the resumed offset on.
            assert second["patches"] == -(-(len(data) - offset) // CHUNK_BYTES)

            asset = assert_one_version_with(server, first["assetId"], data)
            assert asset["name"] == "From Node"
            assert asset["tags"] == ["node", "tus"]
            assert asset["filename"] == "payload.bin"
