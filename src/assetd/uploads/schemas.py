from __future__ import annotations

from datetime import datetime

from pydantic import ConfigDict, Field

from assetd.assets.schemas import AssetFields, AssetRead, VersionRead
from assetd.tenants.schemas import MAX_BYTES, CamelModel, InputModel
from assetd.uploads.models import UploadProtocol, UploadState

SHA256_PATTERN = "^[0-9a-f]{64}$"


class UploadCreate(InputModel):
    """A new asset (give `asset`, or nothing) or a new version of `assetId`."""

    model_config = ConfigDict(extra="forbid")

    filename: str = Field(min_length=1, max_length=1000)
    size_bytes: int = Field(ge=0, le=MAX_BYTES, description="Exact size of the whole file.")
    sha256: str | None = Field(None, pattern=SHA256_PATTERN, description="Checked on complete.")
    part_size_bytes: int | None = Field(
        None, ge=1, le=MAX_BYTES, description="Default: the server's (100 MiB); 5 MiB..5 GiB."
    )
    asset_id: str | None = Field(None, max_length=24)
    asset: AssetFields | None = None


class PartTargetRead(CamelModel):
    number: int
    size_bytes: int
    url: str


class UploadRead(CamelModel):
    id: str
    asset_id: str | None
    protocol: UploadProtocol
    state: UploadState
    filename: str
    size_bytes: int
    sha256: str | None
    part_size_bytes: int
    part_count: int
    offset_bytes: int
    expires_at: datetime
    created_at: datetime
    version: int | None = Field(None, description="The version made, once complete.")
    error: str | None = None
    received_parts: list[int] = Field(default_factory=list)
    parts: list[PartTargetRead] = Field(
        default_factory=list, description="Where to PUT each part; re-issued by GET."
    )
    complete_url: str | None = None


class PartRead(CamelModel):
    number: int
    size_bytes: int
    etag: str


class CompletedPart(InputModel):
    model_config = ConfigDict(extra="forbid")

    number: int = Field(ge=1, le=10_000)
    etag: str | None = Field(None, max_length=100)


class UploadComplete(InputModel):
    model_config = ConfigDict(extra="forbid")

    parts: list[CompletedPart] | None = Field(None, max_length=10_000)
    sha256: str | None = Field(None, pattern=SHA256_PATTERN)


class UploadResult(CamelModel):
    upload: UploadRead
    asset: AssetRead
    version: VersionRead
