"""Renditions: derived images of a version, each a blob referenced like a version's."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from assetd.db.base import Base, IDModel, TenantOwned, TimestampedModel


class Rendition(IDModel, TimestampedModel, TenantOwned, Base):
    """A preset (thumb, medium, …) made after upload, or a transformation cached on request."""

    __tablename__ = "renditions"
    __table_args__ = (
        sa.UniqueConstraint("version_id", "preset", name="uq_renditions_version_preset"),
    )

    asset_id: Mapped[str] = mapped_column(
        sa.String(24), sa.ForeignKey("assets.id", ondelete="CASCADE"), index=True
    )
    version_id: Mapped[str] = mapped_column(
        sa.String(24), sa.ForeignKey("versions.id", ondelete="CASCADE")
    )
    # A preset name, or the canonical spec of a transformation ("w=300,h=200,fit=cover,…").
    preset: Mapped[str] = mapped_column(sa.String(200))
    blob_id: Mapped[str] = mapped_column(sa.String(24), sa.ForeignKey("blobs.id"), index=True)
    sha256: Mapped[str] = mapped_column(sa.String(64))
    size_bytes: Mapped[int] = mapped_column(sa.BigInteger)
    mime_type: Mapped[str] = mapped_column(sa.String(255))
    width: Mapped[int]
    height: Mapped[int]
