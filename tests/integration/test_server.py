"""The README journey through a real `assetd serve` process on 127.0.0.1."""

from __future__ import annotations

import hashlib
import random
import struct
import zlib
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from assetd.client import AssetdClient, AssetdError
from tests.server import RunningServer, run_server

pytestmark = pytest.mark.slow

MIB = 1024 * 1024
PROBLEM = "application/problem+json"


def png_bytes(size: int, seed: int) -> bytes:
    """A PNG signature and IHDR chunk (what libmagic looks at) padded to `size` bytes."""
    ihdr = struct.pack(">IIBBBBB", 64, 48, 8, 2, 0, 0, 0)
    chunk = b"IHDR" + ihdr
    head = b"\x89PNG\r\n\x1a\n" + struct.pack(">I", len(ihdr)) + chunk
    head += struct.pack(">I", zlib.crc32(chunk))
    return head + random.Random(seed).randbytes(size - len(head))


@pytest.fixture
def server(tmp_path: Path, server_database: str | None) -> Iterator[RunningServer]:
    with run_server(tmp_path / "data", database_url=server_database) as running:
        yield running


class TestFirstStart:
    def test_first_start_creates_tenant_and_prints_key_once(
        self, tmp_path: Path, server_database: str | None
    ) -> None:
        data_dir = tmp_path / "data"
        with run_server(data_dir, database_url=server_database) as first:
            assert "Created tenant default" in first.output()
            assert first.key is not None
            assert first.key.startswith("assetd_")
            assert first.output().count(first.key) == 1
            with httpx.Client(base_url=first.url, headers=first.headers) as http:
                assert http.get("/v1/assets").status_code == 200

        with run_server(data_dir, database_url=server_database) as second:
            assert second.key is None
            assert "Created tenant" not in second.output()
            assert "shown once" not in second.output()
            with httpx.Client(base_url=second.url) as http:
                auth = {"Authorization": f"Bearer {first.key}"}
                assert http.get("/v1/assets", headers=auth).status_code == 200

    def test_given_bootstrap_key_is_used_and_never_printed(
        self, tmp_path: Path, server_database: str | None
    ) -> None:
        key = "assetd_given-by-automation-0123456789"
        with run_server(
            tmp_path / "data", database_url=server_database, api_key=key, tenant="acme"
        ) as running:
            assert "Created tenant acme" in running.output()
            assert key not in running.output()
            assert "shown once" not in running.output()
            with httpx.Client(base_url=running.url, headers=running.headers) as http:
                assert http.get("/v1/assets").status_code == 200
                wrong = http.get("/v1/assets", headers={"Authorization": "Bearer nope-nope"})
                assert wrong.status_code == 401


class TestOperations:
    def test_health_readiness_metrics_and_request_ids(self, server: RunningServer) -> None:
        with httpx.Client(base_url=server.url) as http:
            health = http.get("/healthz")
            assert health.status_code == 200
            assert health.json() == {"status": "ok"}
            ready = http.get("/readyz")
            assert ready.status_code == 200
            assert ready.json() == {"status": "ready"}
            assert len(health.headers["x-request-id"]) >= 16
            assert health.headers["x-request-id"] != ready.headers["x-request-id"]

            echoed = http.get("/healthz", headers={"X-Request-ID": "journey-42"})
            assert echoed.headers["x-request-id"] == "journey-42"
            hostile = http.get("/healthz", headers={"X-Request-ID": "bad id\twith spaces"})
            assert hostile.headers["x-request-id"] != "bad id\twith spaces"

            metrics = http.get("/metrics")
            assert metrics.status_code == 200
            assert metrics.headers["content-type"].startswith("text/plain")
            assert "assetd_http_requests" in metrics.text
            assert 'route="/healthz"' in metrics.text

    def test_unknown_route_is_404_problem_json(self, server: RunningServer) -> None:
        with httpx.Client(base_url=server.url) as http:
            response = http.get("/no/such/route")
        assert response.status_code == 404
        assert response.headers["content-type"] == PROBLEM
        assert response.json()["status"] == 404
        assert response.json()["instance"] == "/no/such/route"
        assert "x-request-id" in response.headers

    def test_unauthenticated_is_401_problem_json(self, server: RunningServer) -> None:
        with httpx.Client(base_url=server.url) as http:
            response = http.get("/v1/assets")
        assert response.status_code == 401
        assert response.headers["content-type"] == PROBLEM
        assert response.headers["www-authenticate"].startswith("Bearer")


class TestJourney:
    def test_upload_search_download_trash_restore(
        self, server: RunningServer, tmp_path: Path
    ) -> None:
        photo_name = "Фото-日本-ÄÖÜ.png"
        photo_bytes = png_bytes(3 * MIB + 12345, seed=1)
        photo = tmp_path / photo_name
        photo.write_bytes(photo_bytes)
        notes = tmp_path / "notes.txt"
        notes.write_text("plain words, nothing else\n" * 1000)

        with AssetdClient(server.url, server.key) as client:
            uploaded = client.upload(photo, tags=["brand"])
            assert uploaded["name"] == photo_name
            assert uploaded["filename"] == photo_name
            assert uploaded["type"] == "image"
            assert uploaded["mimeType"] == "image/png"
            assert uploaded["sizeBytes"] == len(photo_bytes)
            assert uploaded["sha256"] == hashlib.sha256(photo_bytes).hexdigest()
            assert uploaded["tags"] == ["brand"]
            text = client.upload(notes)
            assert text["type"] == "document"

            images = client.list_assets("type:image")
            assert [a["id"] for a in images["items"]] == [uploaded["id"]]
            by_name = client.list_assets("name:~日本")
            assert [a["id"] for a in by_name["items"]] == [uploaded["id"]]
            anchored = client.list_assets('name:~"^Фото" type:image size:>3000000')
            assert [a["id"] for a in anchored["items"]] == [uploaded["id"]]
            assert client.list_assets("name:~^nothing-like-this")["items"] == []

            # A range straddling the server's 1 MiB read chunks, then the whole file.
            part = tmp_path / "part.bin"
            span = (MIB - 100, 2 * MIB + 99)
            written = client.download(uploaded["id"], part, byte_range=span)
            assert written == span[1] - span[0] + 1
            assert part.read_bytes() == photo_bytes[span[0] : span[1] + 1]
            whole = tmp_path / "whole.png"
            assert client.download(uploaded["id"], whole) == len(photo_bytes)
            assert whole.read_bytes() == photo_bytes

            client.trash(uploaded["id"])
            listed = {a["id"] for a in client.list_assets()["items"]}
            assert listed == {text["id"]}
            trashed = client.list_assets(trashed="only")["items"]
            assert [a["id"] for a in trashed] == [uploaded["id"]]
            assert client.list_assets("type:image")["items"] == []

            restored = client.restore(uploaded["id"])
            assert restored["state"] == "active"
            listed = {a["id"] for a in client.list_assets()["items"]}
            assert listed == {uploaded["id"], text["id"]}

    def test_content_headers_and_missing_asset_problem(
        self, server: RunningServer, tmp_path: Path
    ) -> None:
        content = png_bytes(2 * MIB, seed=2)
        path = tmp_path / "é.png"
        path.write_bytes(content)
        with AssetdClient(server.url, server.key) as client:
            asset = client.upload(path)
            with pytest.raises(AssetdError) as raised:
                client.get("0" * 24)
            assert raised.value.status == 404

        with httpx.Client(base_url=server.url, headers=server.headers) as http:
            ranged = http.get(f"/v1/assets/{asset['id']}/content", headers={"Range": "bytes=-10"})
            assert ranged.status_code == 206
            assert ranged.content == content[-10:]
            size = len(content)
            assert ranged.headers["content-range"] == f"bytes {size - 10}-{size - 1}/{size}"
            assert "x-request-id" in ranged.headers

            missing = http.get(f"/v1/assets/{'0' * 24}")
            assert missing.status_code == 404
            assert missing.headers["content-type"] == PROBLEM
            problem = missing.json()
            assert problem["status"] == 404
            assert problem["title"] == "Not found"
            assert "x-request-id" in missing.headers

            missing_content = http.get(f"/v1/assets/{'0' * 24}/content")
            assert missing_content.status_code == 404
            assert missing_content.headers["content-type"] == PROBLEM
