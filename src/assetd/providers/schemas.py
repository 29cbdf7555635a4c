"""Storage provider shapes of the native API; the secret goes in and never comes out."""

from __future__ import annotations

from datetime import datetime

from pydantic import ConfigDict, Field

from assetd.providers.models import ProviderKind
from assetd.tenants.schemas import CamelModel, InputModel

MAX_PAGE_SIZE = 1000
# S3 bucket names, and the subfolder names local providers use as buckets.
BUCKET_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$"
_PRINTABLE = r"^[^\x00-\x1f\x7f]*$"


class _Settings(InputModel):
    model_config = ConfigDict(extra="forbid")

    region: str | None = Field(
        None, max_length=256, pattern=_PRINTABLE, description="Shown to clients; s3: the region."
    )
    bucket: str | None = Field(
        None,
        max_length=128,
        pattern=BUCKET_PATTERN,
        description="s3: the only bucket requests may name; null: any the credentials can read.",
    )
    endpoint_url: str | None = Field(
        None,
        max_length=2000,
        pattern=r"^https?://[^\s\x00-\x1f\x7f]+$",
        description="s3: the S3-compatible endpoint (MinIO, Ceph); null: AWS.",
    )
    access_key_id: str | None = Field(None, max_length=256, pattern=r"^[\x21-\x7e]+$")
    secret_access_key: str | None = Field(
        None,
        max_length=1024,
        pattern=r"^[\x21-\x7e]+$",
        description="s3: write-only, never returned; null with an access key id is refused.",
    )
    prefix: str | None = Field(
        None, max_length=512, pattern=_PRINTABLE, description="s3: prepended to every key."
    )
    root: str | None = Field(
        None,
        max_length=2000,
        pattern=_PRINTABLE,
        description="local: an absolute folder inside one of ASSETD_PROVIDER_LOCAL_ROOTS; "
        "its subfolders are the buckets.",
    )


class StorageProviderCreate(_Settings):
    name: str = Field(min_length=1, max_length=256, pattern=_PRINTABLE)
    kind: ProviderKind


class StorageProviderUpdate(_Settings):
    """Fields left out stay as they are; kind cannot change."""

    name: str | None = Field(None, min_length=1, max_length=256, pattern=_PRINTABLE)


class StorageProviderRead(CamelModel):
    id: str
    name: str
    region: str
    kind: ProviderKind
    bucket: str | None
    endpoint_url: str | None
    access_key_id: str | None
    has_secret: bool = Field(description="Whether a secret access key is stored.")
    prefix: str
    root: str | None
    created_at: datetime
    modified_at: datetime


class StorageProviderPage(CamelModel):
    items: list[StorageProviderRead]
    page_number: int
    page_size: int
    total: int
