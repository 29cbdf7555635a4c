"""API keys of the caller's tenant (admin only)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends
from sqlalchemy.ext.asyncio import AsyncSession

from assetd.auth.dependencies import require_scope
from assetd.auth.principal import ADMIN, Principal
from assetd.auth.schemas import ApiKeyCreate, ApiKeyCreated, ApiKeyRead
from assetd.auth.service import ApiKeyService
from assetd.context import AppContext, get_context
from assetd.db.dependencies import ReadOnly, UnitOfWork

router = APIRouter(tags=["keys"])
Admin = Annotated[Principal, Depends(require_scope(ADMIN))]
Session = Annotated[AsyncSession, UnitOfWork]


@router.post("/keys", status_code=201, response_model=ApiKeyCreated, summary="Create an API key")
async def create_key(
    data: ApiKeyCreate,
    principal: Admin,
    session: Session,
    context: Annotated[AppContext, Depends(get_context)],
) -> ApiKeyCreated:
    row, secret = await ApiKeyService(session, context.job_service(session)).create(
        principal.tenant.id,
        name=data.name,
        scopes=data.scopes,
        roles=data.roles,
        expires_at=data.expires_at,
        actor=principal.actor,
    )
    return ApiKeyCreated.model_validate(
        {**ApiKeyRead.model_validate(row).model_dump(), "key": secret}
    )


@router.get("/keys", response_model=list[ApiKeyRead], summary="List API keys")
async def list_keys(
    principal: Admin, session: Annotated[AsyncSession, ReadOnly]
) -> list[ApiKeyRead]:
    rows = await ApiKeyService(session).list_for(principal.tenant.id)
    return [ApiKeyRead.model_validate(r) for r in rows]


@router.delete("/keys/{key_id}", response_model=ApiKeyRead, summary="Revoke an API key")
async def revoke_key(
    key_id: str,
    principal: Admin,
    session: Session,
    context: Annotated[AppContext, Depends(get_context)],
) -> ApiKeyRead:
    row = await ApiKeyService(session, context.job_service(session)).revoke(
        principal.tenant.id, key_id, actor=principal.actor
    )
    # This process forgets the key at once; others within api_key_cache_seconds.
    context.principals.clear()
    return ApiKeyRead.model_validate(row)
