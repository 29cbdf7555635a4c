"""Package upload, install and export stream: server memory does not grow with their size."""

from __future__ import annotations

import hashlib
import json
import zipfile
from pathlib import Path

import httpx
import pytest

from tests.integration.test_memory import MIB, RssSampler, file_chunks, write_file
from tests.server import run_server

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads /proc/<pid>"),
]


def make_package(directory: Path, size_mib: int) -> Path:
    """One random (incompressible) file of size_mib, stored, beside its manifest."""
    content = directory / f"content-{size_mib}.bin"
    sha256 = write_file(content, size_mib * MIB)
    asset_id = f"0190aa0000000000{size_mib:08x}"
    manifest = {
        "formatVersion": 1,
        "name": f"big-{size_mib}",
        "version": "1",
        "entries": [
            {
                "id": asset_id,
                "type": "other",
                "file": {"path": "files/big.bin", "sha256": sha256, "size": size_mib * MIB},
            }
        ],
    }
    package = directory / f"package-{size_mib}.zip"
    with zipfile.ZipFile(package, "w", zipfile.ZIP_STORED) as archive:
        archive.writestr("manifest.json", json.dumps(manifest))
        archive.write(content, "files/big.bin")
    content.unlink()
    return package


def test_package_memory_stays_flat(
    tmp_path: Path, server_database: str | None, capsys: pytest.CaptureFixture[str]
) -> None:
    growth: dict[int, dict[str, int]] = {}
    with (
        run_server(tmp_path / "data", database_url=server_database) as server,
        httpx.Client(base_url=server.url, headers=server.headers, timeout=300) as http,
    ):
        for size_mib in (16, 256):
            package = make_package(tmp_path, size_mib)
            phases: dict[str, int] = {}
            with RssSampler(server.pid) as sampler:
                uploaded = http.post(
                    "/v1/packages",
                    params={"filename": package.name},
                    content=file_chunks(package),
                    headers={"Content-Type": "application/zip"},
                )
            assert uploaded.status_code == 201, uploaded.text
            assert uploaded.json()["report"]["status"] == "READY"
            phases["upload"] = sampler.growth
            with RssSampler(server.pid) as sampler:
                installed = http.post(f"/v1/packages/{uploaded.json()['id']}/install")
            assert installed.status_code == 200, installed.text
            phases["install"] = sampler.growth

            asset_id = uploaded.json()["report"]["records"][0]["assetId"]
            digest = hashlib.sha256()
            with RssSampler(server.pid) as sampler:
                with http.stream(
                    "POST", "/v1/packages/export", json={"assetIds": [asset_id]}
                ) as stream:
                    assert stream.status_code == 200
                    size = 0
                    for chunk in stream.iter_raw(MIB):
                        digest.update(chunk)
                        size += len(chunk)
            phases["export"] = sampler.growth
            assert size > size_mib * MIB
            growth[size_mib] = phases
            package.unlink()

    with capsys.disabled():
        for size_mib, phases in growth.items():
            shown = ", ".join(f"{k} +{v / MIB:.1f} MiB" for k, v in phases.items())
            print(f"\npackage of {size_mib} MiB: {shown}", end="")
    small, big = growth[16], growth[256]
    for phase in ("upload", "install", "export"):
        assert big[phase] < 64 * MIB, (phase, growth)
        assert big[phase] <= small[phase] + 16 * MIB, (phase, growth)
