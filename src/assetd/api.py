"""Every native router under /v1, and the seed adapters at their documented paths."""

from __future__ import annotations

from fastapi import APIRouter

from assetd.assets.routes import router as assets_router
from assetd.auth.routes import router as keys_router
from assetd.compat.media import router as media_router
from assetd.tenants.routes import router as tenant_router

api_router = APIRouter()
api_router.include_router(assets_router)
api_router.include_router(keys_router)
api_router.include_router(tenant_router)

compat_routers: list[APIRouter] = [media_router]
