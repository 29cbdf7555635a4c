"""Native collection endpoints under /v1. HTTP only: parse, authorize, call the service, shape."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Header, Query, Response
from sqlalchemy.ext.asyncio import AsyncSession

from assetd.assets.routes import to_read
from assetd.assets.schemas import AssetPage
from assetd.assets.service import AssetService, ListParams
from assetd.auth.dependencies import require_scope
from assetd.auth.principal import READ, WRITE, Principal
from assetd.collections.models import Collection
from assetd.collections.schemas import (
    MAX_PAGE_SIZE,
    CollectionAssetsAdd,
    CollectionAssetsAdded,
    CollectionCreate,
    CollectionPage,
    CollectionRead,
    CollectionUpdate,
)
from assetd.collections.service import CollectionService
from assetd.context import AppContext, get_context
from assetd.db.dependencies import ReadOnly, UnitOfWork

router = APIRouter(tags=["collections"])

Reader = Annotated[Principal, Depends(require_scope(READ))]
Writer = Annotated[Principal, Depends(require_scope(WRITE))]
Context = Annotated[AppContext, Depends(get_context)]
Session = Annotated[AsyncSession, UnitOfWork]
ReadSession = Annotated[AsyncSession, ReadOnly]


def _service(session: AsyncSession, context: AppContext) -> CollectionService:
    assets = AssetService(session, context.sniffer, jobs=context.job_service(session))
    return CollectionService(session, assets)


def _read(collection: Collection) -> CollectionRead:
    return CollectionRead.model_validate(collection)


@router.post(
    "/collections", status_code=201, response_model=CollectionRead, summary="Create a collection"
)
async def create_collection(
    data: CollectionCreate,
    response: Response,
    principal: Writer,
    context: Context,
    session: Session,
) -> CollectionRead:
    collection = await _service(session, context).create(principal, data)
    response.headers["Location"] = f"/v1/collections/{collection.id}"
    return _read(collection)


@router.get("/collections", response_model=CollectionPage, summary="List collections by name")
async def list_collections(
    response: Response,
    principal: Reader,
    context: Context,
    session: ReadSession,
    page_number: Annotated[int, Query(alias="pageNumber", ge=1, le=1_000_000)] = 1,
    page_size: Annotated[int, Query(alias="pageSize", ge=1, le=MAX_PAGE_SIZE)] = 100,
) -> CollectionPage:
    items, total = await _service(session, context).list_page(principal, page_number, page_size)
    response.headers["X-Total-Count"] = str(total)
    return CollectionPage(
        items=[_read(c) for c in items],
        page_number=page_number,
        page_size=page_size,
        total=total,
    )


@router.get(
    "/collections/{collection_id}", response_model=CollectionRead, summary="Get a collection"
)
async def get_collection(
    collection_id: str, principal: Reader, context: Context, session: ReadSession
) -> CollectionRead:
    return _read(await _service(session, context).get(principal, collection_id))


@router.patch(
    "/collections/{collection_id}", response_model=CollectionRead, summary="Update a collection"
)
async def update_collection(
    collection_id: str,
    data: CollectionUpdate,
    principal: Writer,
    context: Context,
    session: Session,
) -> CollectionRead:
    return _read(await _service(session, context).update(principal, collection_id, data))


@router.delete(
    "/collections/{collection_id}",
    status_code=204,
    summary="Delete a collection (its assets stay)",
)
async def delete_collection(
    collection_id: str, principal: Writer, context: Context, session: Session
) -> Response:
    await _service(session, context).delete(principal, collection_id)
    return Response(status_code=204)


@router.put(
    "/collections/{collection_id}/assets",
    response_model=CollectionAssetsAdded,
    summary="Add assets to a collection (idempotent; all or none)",
)
async def add_collection_assets(
    collection_id: str,
    data: CollectionAssetsAdd,
    principal: Writer,
    context: Context,
    session: Session,
) -> CollectionAssetsAdded:
    added = await _service(session, context).add_assets(principal, collection_id, data)
    return CollectionAssetsAdded(collection_id=collection_id, added=added)


@router.delete(
    "/collections/{collection_id}/assets/{asset_id}",
    status_code=204,
    summary="Take an asset out of a collection (the asset stays)",
)
async def remove_collection_asset(
    collection_id: str, asset_id: str, principal: Writer, context: Context, session: Session
) -> Response:
    await _service(session, context).remove_asset(principal, collection_id, asset_id)
    return Response(status_code=204)


@router.get(
    "/collections/{collection_id}/assets",
    response_model=AssetPage,
    summary="List and search a collection's assets (as /v1/assets)",
)
async def list_collection_assets(
    collection_id: str,
    response: Response,
    principal: Reader,
    context: Context,
    session: ReadSession,
    q: Annotated[str | None, Query(max_length=4000, description="Query language, see docs")] = None,
    sort: Annotated[str | None, Query(max_length=500)] = None,
    page_number: Annotated[int, Query(alias="pageNumber", ge=1, le=1_000_000)] = 1,
    page_size: Annotated[int, Query(alias="pageSize", ge=1, le=1000)] = 60,
    cursor: Annotated[str | None, Query(max_length=2000)] = None,
    trashed: Annotated[
        str, Query(pattern="^(exclude|include|only)$", description="Show trashed assets?")
    ] = "exclude",
    x_total_count: Annotated[bool, Header(alias="X-Total-Count")] = False,
) -> AssetPage:
    result = await _service(session, context).search_assets(
        principal,
        collection_id,
        ListParams(
            q=q,
            sort=sort,
            page_number=page_number,
            page_size=page_size,
            cursor=cursor,
            include_trashed=trashed == "include",
            only_trashed=trashed == "only",
            with_total=x_total_count,
        ),
    )
    if result.total is not None:
        response.headers["X-Total-Count"] = str(result.total)
    return AssetPage(
        items=[to_read(context, principal.tenant.slug, a) for a in result.items],
        page_number=page_number,
        page_size=page_size,
        next_cursor=result.next_cursor,
        total=result.total,
    )
