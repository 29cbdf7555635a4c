"""Metadata templates (typed field sets) and security templates (grants of roles to actions)."""

from __future__ import annotations

import enum
import uuid
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from assetd.db.base import Base, TenantOwned, TimestampedModel, utcnow


def new_uuid() -> str:
    return str(uuid.uuid4())


class Action(enum.StrEnum):
    """What a security template grant allows on an asset."""

    view = "view"
    download = "download"
    edit = "edit"
    delete = "delete"


class MetadataTemplate(TimestampedModel, TenantOwned, Base):
    __tablename__ = "metadata_templates"
    __table_args__ = (
        sa.UniqueConstraint("tenant_id", "name", name="uq_metadata_templates_tenant_name"),
    )

    # uuids, not the 24-hex asset ids: seed 002 names templates by uuid.
    id: Mapped[str] = mapped_column(sa.String(36), primary_key=True, default=new_uuid)
    name: Mapped[str] = mapped_column(sa.String(200))
    description: Mapped[str] = mapped_column(sa.Text, default="")
    # The field definitions exactly as the API shows them (camelCase JSON); always read whole.
    fields: Mapped[list[dict[str, Any]]] = mapped_column(sa.JSON, default=list)
    modified_at: Mapped[datetime] = mapped_column(default=utcnow)


class SecurityTemplate(TimestampedModel, TenantOwned, Base):
    __tablename__ = "security_templates"
    __table_args__ = (
        sa.UniqueConstraint("tenant_id", "name", name="uq_security_templates_tenant_name"),
    )

    id: Mapped[str] = mapped_column(sa.String(36), primary_key=True, default=new_uuid)
    name: Mapped[str] = mapped_column(sa.String(200))
    description: Mapped[str] = mapped_column(sa.Text, default="")
    modified_at: Mapped[datetime] = mapped_column(default=utcnow)


class SecurityGrant(TenantOwned, Base):
    """One role allowed one action by one template: a row each, so access checks are SQL."""

    __tablename__ = "security_grants"

    template_id: Mapped[str] = mapped_column(
        sa.String(36),
        sa.ForeignKey("security_templates.id", ondelete="CASCADE"),
        primary_key=True,
    )
    # Key order serves the access check: template = ? AND action = ? AND role IN (…).
    action: Mapped[Action] = mapped_column(
        sa.Enum(Action, native_enum=False, length=16, validate_strings=True), primary_key=True
    )
    role: Mapped[str] = mapped_column(sa.String(100), primary_key=True)


class AssetSecurityTemplate(Base):
    """The security templates an asset carries."""

    __tablename__ = "asset_security_templates"
    __table_args__ = (
        # "Which assets use this template" (delete refused while in use), within a tenant.
        sa.Index("ix_asset_security_templates_tenant_template", "tenant_id", "template_id"),
    )

    # Not TenantOwned: its single-column tenant index would duplicate the one above.
    tenant_id: Mapped[str] = mapped_column(
        sa.String(24), sa.ForeignKey("tenants.id", ondelete="CASCADE")
    )
    asset_id: Mapped[str] = mapped_column(
        sa.String(24), sa.ForeignKey("assets.id", ondelete="CASCADE"), primary_key=True
    )
    # No cascade: a template still carried by assets cannot be deleted (409).
    template_id: Mapped[str] = mapped_column(
        sa.String(36), sa.ForeignKey("security_templates.id"), primary_key=True
    )
