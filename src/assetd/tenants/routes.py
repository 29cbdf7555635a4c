"""The caller's own tenant and its policies."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends
from sqlalchemy.ext.asyncio import AsyncSession

from assetd.auth.dependencies import require_scope
from assetd.auth.principal import ADMIN, READ, Principal
from assetd.context import AppContext, get_context
from assetd.db.dependencies import ReadOnly, UnitOfWork
from assetd.tenants.schemas import TenantRead, TenantUpdate
from assetd.tenants.service import TenantService

router = APIRouter(tags=["tenant"])
Session = Annotated[AsyncSession, UnitOfWork]


@router.get("/tenant", response_model=TenantRead, summary="The caller's tenant, with usage")
async def get_tenant(
    principal: Annotated[Principal, Depends(require_scope(READ))],
    session: Annotated[AsyncSession, ReadOnly],
) -> TenantRead:
    return TenantRead.model_validate(await TenantService(session).get(principal.tenant.id))


@router.patch("/tenant", response_model=TenantRead, summary="Change the tenant's policies")
async def update_tenant(
    data: TenantUpdate,
    principal: Annotated[Principal, Depends(require_scope(ADMIN))],
    session: Session,
    context: Annotated[AppContext, Depends(get_context)],
) -> TenantRead:
    tenant = await TenantService(session).update(principal.tenant.id, data)
    context.principals.clear()  # cached principals carry the old policy
    return TenantRead.model_validate(tenant)
