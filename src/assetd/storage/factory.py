"""Pick the blob store named by ASSETD_STORAGE_URL."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import parse_qs, urlsplit

from assetd.config import Settings
from assetd.storage.base import BlobStorage
from assetd.storage.local import LocalBlobStorage
from assetd.storage.memory import InMemoryBlobStorage


def storage_from_url(url: str) -> BlobStorage:
    parts = urlsplit(url)
    if parts.scheme == "file":
        return LocalBlobStorage(Path(parts.netloc + parts.path))
    if parts.scheme == "memory":
        return InMemoryBlobStorage()
    if parts.scheme == "s3":
        from assetd.storage.s3 import S3BlobStorage

        query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        return S3BlobStorage(
            bucket=parts.netloc,
            prefix=parts.path.strip("/"),
            endpoint_url=query.get("endpoint"),
            region=query.get("region"),
            access_key=query.get("access_key"),
            secret_key=query.get("secret_key"),
            create_bucket=query.get("create_bucket", "false").lower() == "true",
        )
    raise ValueError(f"unsupported storage URL scheme: {parts.scheme!r}")


def storage_from_settings(settings: Settings) -> BlobStorage:
    return storage_from_url(settings.resolved_storage_url())
