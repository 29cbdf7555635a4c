"""Imports every feature's models so that Base.metadata knows all tables (Alembic, tests)."""

from assetd.assets.models import Asset, Blob, Version
from assetd.auth.models import ApiKey
from assetd.jobs.models import Job
from assetd.providers.models import StorageProvider
from assetd.renditions.models import Rendition
from assetd.templates.models import (
    AssetSecurityTemplate,
    MetadataTemplate,
    SecurityGrant,
    SecurityTemplate,
)
from assetd.tenants.models import Tenant
from assetd.uploads.models import UploadPart, UploadSession

__all__ = [
    "ApiKey",
    "Asset",
    "AssetSecurityTemplate",
    "Blob",
    "Job",
    "MetadataTemplate",
    "Rendition",
    "SecurityGrant",
    "SecurityTemplate",
    "StorageProvider",
    "Tenant",
    "UploadPart",
    "UploadSession",
    "Version",
]
