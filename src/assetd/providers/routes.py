"""Storage providers of the caller's tenant: admins manage them; secrets are write-only."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query, Response
from sqlalchemy.ext.asyncio import AsyncSession

from assetd.auth.dependencies import require_scope
from assetd.auth.principal import ADMIN, Principal
from assetd.context import AppContext, get_context
from assetd.db.dependencies import ReadOnly, UnitOfWork
from assetd.providers.models import StorageProvider
from assetd.providers.schemas import (
    MAX_PAGE_SIZE,
    StorageProviderCreate,
    StorageProviderPage,
    StorageProviderRead,
    StorageProviderUpdate,
)
from assetd.providers.service import ProviderService

router = APIRouter(tags=["storage providers"])

Admin = Annotated[Principal, Depends(require_scope(ADMIN))]
Session = Annotated[AsyncSession, UnitOfWork]
ReadSession = Annotated[AsyncSession, ReadOnly]
Context = Annotated[AppContext, Depends(get_context)]
ProviderId = Annotated[str, Path(max_length=64, description="The provider's 24-hex id.")]
PageNumber = Annotated[int, Query(alias="pageNumber", ge=1, le=1_000_000)]
PageSize = Annotated[int, Query(alias="pageSize", ge=1, le=MAX_PAGE_SIZE)]


def _service(session: AsyncSession, context: AppContext) -> ProviderService:
    return ProviderService(session, context.settings.provider_local_roots)


def _read(provider: StorageProvider) -> StorageProviderRead:
    return StorageProviderRead(
        id=provider.id,
        name=provider.name,
        region=provider.region,
        kind=provider.kind,
        bucket=provider.bucket,
        endpoint_url=provider.endpoint_url,
        access_key_id=provider.access_key_id,
        has_secret=bool(provider.secret_access_key),
        prefix=provider.prefix,
        root=provider.root,
        created_at=provider.created_at,
        modified_at=provider.modified_at,
    )


@router.post(
    "/storage-providers",
    status_code=201,
    response_model=StorageProviderRead,
    summary="Register a storage provider (an S3 bucket or an allow-listed local folder)",
)
async def create_storage_provider(
    data: StorageProviderCreate,
    response: Response,
    principal: Admin,
    session: Session,
    context: Context,
) -> StorageProviderRead:
    provider = await _service(session, context).create(principal.tenant.id, data)
    response.headers["Location"] = f"/v1/storage-providers/{provider.id}"
    return _read(provider)


@router.get(
    "/storage-providers",
    response_model=StorageProviderPage,
    summary="List storage providers by name",
)
async def list_storage_providers(
    response: Response,
    principal: Admin,
    session: ReadSession,
    context: Context,
    page_number: PageNumber = 1,
    page_size: PageSize = 100,
) -> StorageProviderPage:
    items, total = await _service(session, context).list_page(
        principal.tenant.id, page_number, page_size
    )
    response.headers["X-Total-Count"] = str(total)
    return StorageProviderPage(
        items=[_read(p) for p in items],
        page_number=page_number,
        page_size=page_size,
        total=total,
    )


@router.get(
    "/storage-providers/{provider_id}",
    response_model=StorageProviderRead,
    summary="Get a storage provider (never its secret)",
)
async def get_storage_provider(
    provider_id: ProviderId, principal: Admin, session: ReadSession, context: Context
) -> StorageProviderRead:
    return _read(await _service(session, context).get(principal.tenant.id, provider_id))


@router.patch(
    "/storage-providers/{provider_id}",
    response_model=StorageProviderRead,
    summary="Change a storage provider; fields left out stay as they are",
)
async def update_storage_provider(
    provider_id: ProviderId,
    data: StorageProviderUpdate,
    principal: Admin,
    session: Session,
    context: Context,
) -> StorageProviderRead:
    provider = await _service(session, context).update(principal.tenant.id, provider_id, data)
    return _read(provider)


@router.delete(
    "/storage-providers/{provider_id}",
    status_code=204,
    response_class=Response,
    summary="Delete a storage provider (assets registered from it stay)",
)
async def delete_storage_provider(
    provider_id: ProviderId, principal: Admin, session: Session, context: Context
) -> Response:
    await _service(session, context).delete(principal.tenant.id, provider_id)
    return Response(status_code=204)
