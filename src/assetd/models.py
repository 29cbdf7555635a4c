"""Imports every feature's models so that Base.metadata knows all tables (Alembic, tests)."""

from assetd.assets.models import Asset, Blob, Version
from assetd.auth.models import ApiKey
from assetd.collections.models import Collection, CollectionAsset, CollectionSecurityTemplate
from assetd.events.models import Event, WebhookDelivery, WebhookSubscription
from assetd.jobs.models import Job
from assetd.packages.models import AssetDependency, Package, PackageOrigin
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
    "AssetDependency",
    "AssetSecurityTemplate",
    "Blob",
    "Collection",
    "CollectionAsset",
    "CollectionSecurityTemplate",
    "Event",
    "Job",
    "MetadataTemplate",
    "Package",
    "PackageOrigin",
    "Rendition",
    "SecurityGrant",
    "SecurityTemplate",
    "StorageProvider",
    "Tenant",
    "UploadPart",
    "UploadSession",
    "Version",
    "WebhookDelivery",
    "WebhookSubscription",
]
