"""Every native router under /v1, and the seed adapters at their documented paths."""

from __future__ import annotations

from fastapi import APIRouter

from assetd.assets.routes import router as assets_router
from assetd.auth.routes import router as keys_router
from assetd.collections.routes import router as collections_router
from assetd.compat.asset_upload import router as asset_upload_router
from assetd.compat.edge_assets import router as edge_assets_router
from assetd.compat.media import router as media_router
from assetd.compat.mobile_tools import router as mobile_tools_router
from assetd.compat.partner_assets import router as partner_assets_router
from assetd.events.routes import router as events_router
from assetd.jobs.routes import router as jobs_router
from assetd.packages.routes import router as packages_router
from assetd.providers.routes import router as providers_router
from assetd.renditions.routes import router as renditions_router
from assetd.templates.routes import router as templates_router
from assetd.tenants.routes import router as tenant_router
from assetd.uploads.routes import router as uploads_router
from assetd.uploads.tus import router as tus_router

# Included one by one under /v1 (create_app), not through one /v1 router: FastAPI matches
# an included router's routes once to pick it and again to run it, at every level, so a
# nested level made a download's routing cost half as much again.
native_routers: list[APIRouter] = [
    assets_router,
    events_router,
    collections_router,
    jobs_router,
    packages_router,
    keys_router,
    providers_router,
    renditions_router,
    tenant_router,
    templates_router,
    uploads_router,
    tus_router,
]

compat_routers: list[APIRouter] = [
    media_router,
    asset_upload_router,
    partner_assets_router,
    edge_assets_router,
    mobile_tools_router,
]
