"""Upload sessions: bytes arriving in parts or appends until they become a version."""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from assetd.db.base import Base, IDModel, TenantOwned, TimestampedModel


class UploadProtocol(enum.StrEnum):
    parts = "parts"  # presigned PUT URLs, one per part, then complete
    tus = "tus"  # tus 1.0 appends; completes itself when the last byte is in


class UploadState(enum.StrEnum):
    open = "open"
    # complete() claimed the session and is assembling and hashing the bytes.
    completing = "completing"
    completed = "completed"
    cancelled = "cancelled"
    expired = "expired"
    failed = "failed"


def _enum(cls: type[enum.StrEnum]) -> sa.Enum:
    return sa.Enum(cls, native_enum=False, length=16, validate_strings=True)


class UploadSession(IDModel, TimestampedModel, TenantOwned, Base):
    __tablename__ = "upload_sessions"
    __table_args__ = (
        # The expiry job's scan: open sessions past their deadline.
        sa.Index("ix_upload_sessions_state_expires", "state", "expires_at"),
    )

    # SET NULL: a cancelled session's asset may be removed, the session's record stays.
    asset_id: Mapped[str | None] = mapped_column(
        sa.String(24), sa.ForeignKey("assets.id", ondelete="SET NULL"), index=True
    )
    # The session made the asset (metadata-only until complete); cancelling removes it again.
    created_asset: Mapped[bool] = mapped_column(default=False)
    protocol: Mapped[UploadProtocol] = mapped_column(_enum(UploadProtocol))
    state: Mapped[UploadState] = mapped_column(_enum(UploadState))
    filename: Mapped[str] = mapped_column(sa.String(500), default="")
    # The file's size; when size_exact is false (a client that did not say), the most it may be.
    size_bytes: Mapped[int] = mapped_column(sa.BigInteger)
    size_exact: Mapped[bool] = mapped_column(default=True)
    sha256: Mapped[str | None] = mapped_column(sa.String(64), default=None)
    part_size_bytes: Mapped[int] = mapped_column(sa.BigInteger)
    part_count: Mapped[int]
    # tus: bytes received so far.
    offset_bytes: Mapped[int] = mapped_column(sa.BigInteger, default=0)
    storage_handle: Mapped[str] = mapped_column(sa.String(1024))
    # tus Upload-Metadata as sent, so HEAD can return it.
    upload_metadata: Mapped[dict[str, Any]] = mapped_column(default=dict)
    # A single-part upload through assetd completes itself when its bytes are in.
    auto_complete: Mapped[bool] = mapped_column(default=False)
    expires_at: Mapped[datetime]
    created_by: Mapped[str | None] = mapped_column(sa.String(200), default=None)
    completed_at: Mapped[datetime | None] = mapped_column(default=None)
    version_number: Mapped[int | None] = mapped_column(default=None)
    error: Mapped[str | None] = mapped_column(sa.String(1000), default=None)


class UploadPart(TenantOwned, Base):
    """A part received through assetd (local store); S3 keeps its own record of direct parts."""

    __tablename__ = "upload_parts"

    session_id: Mapped[str] = mapped_column(
        sa.String(24), sa.ForeignKey("upload_sessions.id", ondelete="CASCADE"), primary_key=True
    )
    number: Mapped[int] = mapped_column(primary_key=True)
    # The file's size; when size_exact is false (a client that did not say), the most it may be.
    size_bytes: Mapped[int] = mapped_column(sa.BigInteger)
    size_exact: Mapped[bool] = mapped_column(default=True)
    etag: Mapped[str] = mapped_column(sa.String(64))
    received_at: Mapped[datetime]
