"""Rendition request and response bodies."""

from __future__ import annotations

from datetime import datetime

from pydantic import Field

from assetd.renditions.imaging import DEFAULT_QUALITY
from assetd.tenants.schemas import CamelModel, InputModel


class RenditionRead(CamelModel):
    preset: str
    width: int
    height: int
    mime_type: str
    size_bytes: int
    # Public for PUBLIC assets; signed (until expiresAt) for PRIVATE ones.
    url: str
    expires_at: datetime | None = None


class TransformUrlCreate(InputModel):
    # Limits are checked by the service (400), like the signed GET's parameters.
    w: int | None = Field(None, ge=-(2**31), le=2**31)
    h: int | None = Field(None, ge=-(2**31), le=2**31)
    fit: str = Field("inside", max_length=16)
    fmt: str = Field("webp", max_length=16)
    q: int = Field(DEFAULT_QUALITY, ge=-(2**31), le=2**31)
    expires_in: int | None = Field(None, ge=1, le=365 * 24 * 3600)


class TransformUrlRead(CamelModel):
    url: str
    expires_at: datetime
    spec: str
