"""Building package zips for the tests: well-formed ones, and every kind of hostile one."""

from __future__ import annotations

import hashlib
import io
import json
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from tests.fixtures.real_files import make_image


@dataclass
class PackageBuilder:
    """A manifest and the files beside it; zip() makes the package (optionally tampered)."""

    name: str = "demo"
    version: str = "1.0"
    entries: list[dict[str, Any]] = field(default_factory=list)
    collections: list[dict[str, Any]] = field(default_factory=list)
    files: dict[str, bytes] = field(default_factory=dict)

    def add(
        self,
        asset_id: str,
        content: bytes | None,
        filename: str = "file.txt",
        *,
        type: str = "document",
        **fields: Any,
    ) -> dict[str, Any]:
        entry: dict[str, Any] = {"id": asset_id, "type": type, "name": fields.pop("name", filename)}
        if content is not None:
            path = f"files/{asset_id}/{filename}"
            self.files[path] = content
            entry["file"] = {
                "path": path,
                "sha256": hashlib.sha256(content).hexdigest(),
                "size": len(content),
                "filename": filename,
            }
        entry.update(fields)
        self.entries.append(entry)
        return entry

    def collection(self, collection_id: str, name: str, description: str = "") -> None:
        self.collections.append({"id": collection_id, "name": name, "description": description})

    def manifest(self) -> dict[str, Any]:
        return {
            "formatVersion": 1,
            "name": self.name,
            "version": self.version,
            "collections": self.collections,
            "entries": self.entries,
        }

    def zip(self, *, manifest: bytes | None = None, extra: dict[str, bytes] | None = None) -> bytes:
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
            archive.writestr(
                "manifest.json", manifest if manifest is not None else json.dumps(self.manifest())
            )
            for path, content in {**self.files, **(extra or {})}.items():
                archive.writestr(path, content)
        return buffer.getvalue()


def jpeg(tmp_path: Path, width: int = 40, height: int = 30) -> bytes:
    return make_image(tmp_path, "jpg", width, height).read_bytes()


async def upload_package(
    client: httpx.AsyncClient, headers: dict[str, str], data: bytes, filename: str = "pkg.zip"
) -> httpx.Response:
    return await client.post(
        "/v1/packages", files={"file": (filename, data, "application/zip")}, headers=headers
    )


async def install(
    client: httpx.AsyncClient, headers: dict[str, str], package_id: str, **body: Any
) -> httpx.Response:
    return await client.post(f"/v1/packages/{package_id}/install", json=body, headers=headers)
