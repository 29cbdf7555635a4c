from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator
from pydantic.alias_generators import to_camel

from assetd.tenants.models import TENANT_SLUG_PATTERN

# Byte counts are stored as signed 64-bit integers; 2**62 (4 EiB) leaves room for sums.
MAX_BYTES = 2**62
# Revisions and version numbers are stored as 32-bit integers.
MAX_COUNTER = 2**31 - 1


class CamelModel(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, from_attributes=True)


class InputModel(CamelModel):
    """A request body: checked for what no database should receive."""

    @model_validator(mode="after")
    def _no_nul_characters(self) -> InputModel:
        # PostgreSQL text cannot hold NUL and SQLite would store it: refuse it everywhere, so
        # both databases answer the same clear 4xx.
        if _has_nul(self.__dict__):
            raise ValueError("text must not contain NUL (\\u0000) characters")
        return self


def _has_nul(value: Any, depth: int = 0) -> bool:
    if isinstance(value, str):
        return "\x00" in value
    if depth > 64:
        return False
    if isinstance(value, dict):
        return any(_has_nul(k, depth + 1) or _has_nul(v, depth + 1) for k, v in value.items())
    if isinstance(value, list | tuple):
        return any(_has_nul(v, depth + 1) for v in value)
    if isinstance(value, BaseModel):
        return _has_nul(value.__dict__, depth + 1)
    return False


class TenantPolicy(InputModel):
    max_file_size_bytes: int | None = Field(None, ge=0, le=MAX_BYTES)
    allowed_extensions: list[str] | None = None
    allowed_types: list[str] | None = None
    quota_bytes: int | None = Field(None, ge=0, le=MAX_BYTES)


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
