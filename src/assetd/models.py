"""Imports every feature's models so that Base.metadata knows all tables (Alembic, tests)."""

from assetd.assets.models import Asset, Blob, Version
from assetd.auth.models import ApiKey
from assetd.tenants.models import Tenant

__all__ = ["ApiKey", "Asset", "Blob", "Tenant", "Version"]
