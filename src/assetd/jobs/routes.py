"""Job state under /v1: what background work an asset has, and how it went."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends
from sqlalchemy.ext.asyncio import AsyncSession

from assetd.assets.service import AssetService
from assetd.auth.dependencies import require_scope
from assetd.auth.principal import READ, Principal
from assetd.context import AppContext, get_context
from assetd.db.dependencies import ReadOnly
from assetd.jobs.schemas import JobRead
from assetd.jobs.service import JobService

router = APIRouter(tags=["jobs"])

Reader = Annotated[Principal, Depends(require_scope(READ))]
Context = Annotated[AppContext, Depends(get_context)]
ReadSession = Annotated[AsyncSession, ReadOnly]


@router.get(
    "/assets/{asset_id}/jobs",
    response_model=list[JobRead],
    summary="Background jobs of an asset (extraction, renditions) and their state",
)
async def list_asset_jobs(
    asset_id: str, principal: Reader, context: Context, session: ReadSession
) -> list[JobRead]:
    # The asset's own access rules decide: 404 for another tenant's or a hidden asset.
    asset = await AssetService(session, context.sniffer).get(principal, asset_id)
    jobs = await JobService(session, context.jobs).list_for_asset(principal.tenant.id, asset.id)
    return [
        JobRead.model_validate(job).model_copy(update={"version_number": number})
        for job, number in jobs
    ]
