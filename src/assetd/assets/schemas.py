from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from pydantic import AnyUrl, ConfigDict, Field, field_validator

from assetd.assets.models import Access, AssetKind, AssetState, AssetType
from assetd.tenants.schemas import MAX_COUNTER, CamelModel, InputModel

MAX_TAGS = 100
MAX_SECURITY_TEMPLATES = 50


class RefId(InputModel):
    model_config = ConfigDict(extra="forbid")
    id: str = Field(min_length=1, max_length=200)
    type: str = Field(min_length=1, max_length=100)


class AssetFields(InputModel):
    """Descriptive fields shared by create and update."""

    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(None, max_length=500)
    description: str | None = Field(None, max_length=10_000)
    tags: list[str] | None = Field(None, max_length=MAX_TAGS)
    ref_ids: list[RefId] | None = Field(None, max_length=100)
    metadata: dict[str, Any] | None = None
    metadata_template_id: str | None = Field(
        None,
        max_length=64,
        description="A metadata template (uuid) that `metadata` must fit; null: free-form.",
    )
    security_template_ids: list[Annotated[str, Field(max_length=64)]] | None = Field(
        None,
        max_length=MAX_SECURITY_TEMPLATES,
        description="Security templates (uuids) deciding who may view, download, edit and "
        "delete the asset; each must grant one of the caller's roles (admins: any).",
    )
    segment_id: str | None = Field(None, max_length=200)
    access: Access | None = None
    type: AssetType | None = None

    @field_validator("tags")
    @classmethod
    def _tags_are_short(cls, tags: list[str] | None) -> list[str] | None:
        if tags is not None and any(not 0 < len(t) <= 100 for t in tags):
            raise ValueError("each tag must be 1 to 100 characters")
        return tags


class AssetCreate(AssetFields):
    """JSON create: a LINK (with url) or a metadata-only BLOB whose content comes later."""

    kind: AssetKind = AssetKind.BLOB
    url: AnyUrl | None = None


class AssetUpdate(AssetFields):
    url: AnyUrl | None = None
    revision: int | None = Field(
        None, ge=1, le=MAX_COUNTER, description="Expected current revision."
    )


class AssetRead(CamelModel):
    id: str
    kind: AssetKind
    type: AssetType
    access: Access
    state: AssetState
    name: str
    description: str
    tags: list[str]
    ref_ids: list[RefId]
    metadata: dict[str, Any]
    metadata_template_id: str | None = None
    security_template_ids: list[str] = Field(default_factory=list)
    segment_id: str | None
    url: str | None
    revision: int
    version: int | None
    size_bytes: int | None
    mime_type: str | None
    filename: str | None
    extension: str | None
    sha256: str | None
    facts: dict[str, Any] = Field(
        default_factory=dict, description="Extracted from the current version's bytes."
    )
    created_at: datetime
    created_by: str | None
    modified_at: datetime
    modified_by: str | None
    trashed_at: datetime | None
    content_url: str | None = None
    public_url: str | None = None


class AssetPage(CamelModel):
    items: list[AssetRead]
    page_number: int
    page_size: int
    next_cursor: str | None = None
    total: int | None = None


class VersionRead(CamelModel):
    number: int
    size_bytes: int
    mime_type: str
    original_name: str
    extension: str
    sha256: str
    md5: str
    facts: dict[str, Any]
    created_at: datetime
    created_by: str | None
    is_current: bool = False


class SignedUrlRead(CamelModel):
    url: str
    expires_at: datetime
    version: int
