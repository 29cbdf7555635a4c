from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

from assetd.tenants.models import TENANT_SLUG_PATTERN


class CamelModel(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, from_attributes=True)


class TenantPolicy(CamelModel):
    max_file_size_bytes: int | None = Field(None, ge=0)
    allowed_extensions: list[str] | None = None
    allowed_types: list[str] | None = None
    quota_bytes: int | None = Field(None, ge=0)


class TenantCreate(TenantPolicy):
    slug: str = Field(pattern=TENANT_SLUG_PATTERN)
    name: str = Field("", max_length=200)


class TenantUpdate(TenantPolicy):
    model_config = ConfigDict(extra="forbid")
    name: str | None = Field(None, max_length=200)


class TenantRead(TenantPolicy):
    id: str
    slug: str
    name: str
    used_bytes: int
    created_at: datetime
