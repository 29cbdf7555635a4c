"""Hostile and broken packages are refused with a clear list of problems, and leave nothing:
no package, no blob row, no bytes in the store."""

from __future__ import annotations

import hashlib
import io
import json
import os
import stat
import zipfile
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from assetd.assets.models import Blob
from assetd.db.session import Database
from tests.factories import TenantCredentials
from tests.integration.packages.conftest import PackageBuilder, upload_package

pytestmark = pytest.mark.anyio

A1 = "0190aa00000000000000b001"


def _zip(members: list[tuple[zipfile.ZipInfo | str, bytes]]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for info, data in members:
            archive.writestr(info, data)
    return buffer.getvalue()


def _manifest(path: str, content: bytes) -> bytes:
    entry = {
        "id": A1,
        "type": "document",
        "file": {"path": path, "sha256": hashlib.sha256(content).hexdigest()},
    }
    return json.dumps(
        {"formatVersion": 1, "name": "evil", "version": "1", "entries": [entry]}
    ).encode()


def _with_path(path: str, content: bytes = b"hello") -> bytes:
    return _zip([("manifest.json", _manifest(path, content)), (path, content)])


def _symlink() -> bytes:
    link = zipfile.ZipInfo("files/link.txt")
    link.create_system = 3
    link.external_attr = (stat.S_IFLNK | 0o777) << 16
    return _zip(
        [("manifest.json", _manifest("files/link.txt", b"/etc/passwd")), (link, b"/etc/passwd")]
    )


def _bomb() -> bytes:
    content = b"\0" * (20 * 1024 * 1024)
    return _zip(
        [("manifest.json", _manifest("files/zeros.txt", content)), ("files/zeros.txt", content)]
    )


def _duplicate() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("manifest.json", _manifest("files/a.txt", b"one"))
        archive.writestr("files/a.txt", b"one")
        with pytest.warns(UserWarning, match="Duplicate name"):
            archive.writestr("files/a.txt", b"two")
    return buffer.getvalue()


def _case_duplicate() -> bytes:
    return _zip(
        [
            ("manifest.json", _manifest("files/a.txt", b"one")),
            ("files/a.txt", b"one"),
            ("files/A.TXT", b"two"),
        ]
    )


def _sha_mismatch() -> bytes:
    return _zip(
        [("manifest.json", _manifest("files/a.txt", b"expected")), ("files/a.txt", b"actual")]
    )


def _size_mismatch() -> bytes:
    content = b"twelve bytes"
    manifest = json.loads(_manifest("files/a.txt", content))
    manifest["entries"][0]["file"]["size"] = 99
    return _zip([("manifest.json", json.dumps(manifest).encode()), ("files/a.txt", content)])


def _encrypted() -> bytes:
    data = bytearray(_with_path("files/a.txt"))
    # Set the "encrypted" flag bit in the central directory entry of files/a.txt.
    at = data.rfind(b"PK\x01\x02")
    data[at + 8] |= 0x1
    return bytes(data)


def _overlapping() -> bytes:
    """Two central-directory entries pointing at the same local data: a non-recursive bomb."""
    data = bytearray(_with_path("files/a.txt"))
    central = data.find(b"PK\x01\x02")
    first_local = int.from_bytes(data[central + 42 : central + 46], "little")
    second = data.find(b"PK\x01\x02", central + 4)
    data[second + 42 : second + 46] = first_local.to_bytes(4, "little")
    return bytes(data)


HOSTILE: dict[str, tuple[Any, str]] = {
    "dot-dot": (lambda: _with_path("files/../../etc/passwd"), "unsafe_path"),
    "absolute": (lambda: _with_path("/etc/passwd"), "unsafe_path"),
    "backslash": (lambda: _with_path("files\\..\\evil.txt"), "unsafe_path"),
    "drive": (lambda: _with_path("C:/Windows/evil.txt"), "unsafe_path"),
    "symlink": (_symlink, "symlink"),
    "bomb": (_bomb, "compression_ratio"),
    "duplicate": (_duplicate, "duplicate_member"),
    "case-duplicate": (_case_duplicate, "duplicate_member"),
    "no-manifest": (lambda: _zip([("files/a.txt", b"x")]), "manifest_missing"),
    "manifest-not-json": (lambda: _zip([("manifest.json", b"{nope")]), "manifest_invalid"),
    "manifest-wrong-shape": (
        lambda: _zip([("manifest.json", b'{"formatVersion": 1, "entries": "all"}')]),
        "manifest_invalid",
    ),
    "future-format": (
        lambda: _zip(
            [("manifest.json", b'{"formatVersion": 9, "name": "x", "version": "1", "entries": []}')]
        ),
        "manifest_invalid",
    ),
    "member-missing": (
        lambda: _zip([("manifest.json", _manifest("files/gone.txt", b"x"))]),
        "member_missing",
    ),
    "sha-mismatch": (_sha_mismatch, "sha256_mismatch"),
    "size-mismatch": (_size_mismatch, "size_mismatch"),
    "encrypted": (_encrypted, "encrypted"),
    "overlapping": (_overlapping, "overlapping_members"),
    "not-a-zip": (lambda: b"PK\x03\x04 this is not really a zip", "not_a_zip"),
    "empty": (lambda: b"", "not_a_zip"),
}


async def _counts(db: Database, storage_root: Path) -> tuple[int, int]:
    async with db.session(write=False) as session:
        blobs = await session.scalar(select(func.count()).select_from(Blob))
    files = [p for p in storage_root.rglob("*") if p.is_file()]
    return int(blobs or 0), len(files)


@pytest.mark.parametrize("case", sorted(HOSTILE))
async def test_hostile_package_is_refused_and_leaves_nothing(
    case: str,
    client: httpx.AsyncClient,
    tenant: TenantCredentials,
    db: Database,
    settings: Any,
) -> None:
    make, code = HOSTILE[case]
    before = await _counts(db, settings.data_dir)
    response = await upload_package(client, tenant.headers, make())
    assert response.status_code == 422, response.text
    body = response.json()
    assert response.headers["content-type"] == "application/problem+json"
    assert code in {p["code"] for p in body["problems"]}, body
    assert (await client.get("/v1/packages", headers=tenant.headers)).json()["total"] == 0
    assert await _counts(db, settings.data_dir) == before


async def test_too_many_members(
    client: httpx.AsyncClient, tenant: TenantCredentials, app: Any
) -> None:
    app.state.context.settings.package_max_members = 3
    data = _zip(
        [("manifest.json", _manifest("files/0", b"x"))] + [(f"files/{i}", b"x") for i in range(5)]
    )
    response = await upload_package(client, tenant.headers, data)
    assert response.status_code == 422
    assert response.json()["problems"][0]["code"] == "too_many_members"


async def test_too_large_uncompressed(
    client: httpx.AsyncClient, tenant: TenantCredentials, app: Any
) -> None:
    app.state.context.settings.package_max_uncompressed_bytes = 1000
    content = bytes(range(256)) * 8
    response = await upload_package(client, tenant.headers, _with_path("files/a.bin", content))
    assert response.status_code == 422
    assert "too_large_uncompressed" in {p["code"] for p in response.json()["problems"]}


async def test_oversized_upload_is_413_and_leaves_nothing(
    client: httpx.AsyncClient, tenant: TenantCredentials, app: Any, db: Database, settings: Any
) -> None:
    app.state.context.settings.package_max_bytes = 1024
    before = await _counts(db, settings.data_dir)
    builder = PackageBuilder()
    builder.add(A1, os.urandom(4096), "big.bin")
    response = await upload_package(client, tenant.headers, builder.zip())
    assert response.status_code == 413, response.text
    assert await _counts(db, settings.data_dir) == before


async def test_upload_without_a_file_field(
    client: httpx.AsyncClient, tenant: TenantCredentials
) -> None:
    response = await client.post(
        "/v1/packages", files={"other": ("a.zip", b"x")}, headers=tenant.headers
    )
    assert response.status_code == 400
