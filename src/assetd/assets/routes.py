"""Native asset endpoints under /v1. HTTP only: parse, authorize, call the service, shape."""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, Header, Path, Query, Request, Response
from pydantic import BaseModel, Field, ValidationError
from sqlalchemy.ext.asyncio import AsyncSession

from assetd.assets import reads
from assetd.assets.delivery import (
    ContentPlan,
    ServedAsset,
    ServedVersion,
    content_response,
    plan_content,
    planned_response,
    read_small_body,
)
from assetd.assets.models import Access, Asset
from assetd.assets.schemas import (
    AssetCreate,
    AssetPage,
    AssetRead,
    AssetUpdate,
    SignedUrlRead,
    VersionRead,
)
from assetd.assets.service import AssetService, ListParams
from assetd.assets.uploads import discard_on_error, parse_fields, receive_upload
from assetd.auth.dependencies import optional_principal, require_scope
from assetd.auth.principal import DELETE, READ, WRITE, Principal
from assetd.context import AppContext, get_context
from assetd.db.dependencies import ReadOnly, UnitOfWork
from assetd.errors import Forbidden, InvalidInput, NotFound, Unauthenticated
from assetd.templates.models import Action
from assetd.tenants.schemas import MAX_COUNTER
from assetd.tenants.service import TenantService

router = APIRouter(tags=["assets"])

Reader = Annotated[Principal, Depends(require_scope(READ))]
Writer = Annotated[Principal, Depends(require_scope(WRITE))]
Deleter = Annotated[Principal, Depends(require_scope(DELETE))]
Context = Annotated[AppContext, Depends(get_context)]
Session = Annotated[AsyncSession, UnitOfWork]
ReadSession = Annotated[AsyncSession, ReadOnly]
VersionNumber = Annotated[int, Path(ge=1, le=MAX_COUNTER)]

UPLOAD_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["file"],
                    "properties": {
                        "file": {"type": "string", "format": "binary"},
                        "meta": {
                            "type": "string",
                            "description": "JSON object of AssetFields (name, access, tags, …)",
                        },
                    },
                }
            },
            "application/json": {"schema": {"$ref": "#/components/schemas/AssetCreate"}},
            "application/octet-stream": {
                "schema": {"type": "string", "format": "binary"},
                "description": "Raw bytes; name the file with ?filename= or X-Filename.",
            },
        },
    }
}


def asset_etag(asset: Asset) -> str:
    return f'"r{asset.revision}"'


_IF_MATCH = re.compile(r'(?:W/)?"?r?([0-9]{1,10})"?')


def revision_from_if_match(if_match: str | None) -> int | None:
    if if_match is None:
        return None
    match = _IF_MATCH.fullmatch(if_match.strip())
    if match is None:
        raise InvalidInput('If-Match must be an ETag from this API, like "r3"')
    return int(match.group(1))


# AssetRead fields that are plain Asset columns of the same name (the rest are mapped below);
# worked out once, since lists call to_read for every row.
_SAME_NAME_FIELDS = tuple(
    name
    for name in AssetRead.model_fields
    if name in Asset.__mapper__.column_attrs.keys() and name not in ("version",)
)


def to_read(context: AppContext, principal_tenant_slug: str, asset: Asset) -> AssetRead:
    values = {name: getattr(asset, name) for name in _SAME_NAME_FIELDS}
    values["metadata"] = asset.meta
    values["version"] = asset.version_number
    if asset.version_number is not None:
        base = context.settings.resolved_public_url()
        values["content_url"] = f"{base}/v1/assets/{asset.id}/content"
        if asset.access is Access.PUBLIC:
            values["public_url"] = f"{base}/v1/files/{principal_tenant_slug}/{asset.id}"
    return AssetRead.model_validate(values)


# Where each of those fields sits in a row of ASSET_COLUMNS (reads.search's pages).
_ROW_FIELDS = tuple((name, reads.ROW_KEYS.index(name)) for name in _SAME_NAME_FIELDS)
_ROW_META = reads.ROW_KEYS.index("meta")
_ROW_VERSION = reads.ROW_KEYS.index("version_number")
_ROW_ID = reads.ROW_KEYS.index("id")
_ROW_ACCESS = reads.ROW_KEYS.index("access")


def row_to_read(context: AppContext, principal_tenant_slug: str, row: Any) -> AssetRead:
    """to_read() for a row of ASSET_COLUMNS; the same answer, with no ORM attribute access."""
    values = {name: row[index] for name, index in _ROW_FIELDS}
    values["metadata"] = row[_ROW_META]
    number = values["version"] = row[_ROW_VERSION]
    if number is not None:
        base = context.settings.resolved_public_url()
        asset_id = row[_ROW_ID]
        values["content_url"] = f"{base}/v1/assets/{asset_id}/content"
        if row[_ROW_ACCESS] is Access.PUBLIC:
            values["public_url"] = f"{base}/v1/files/{principal_tenant_slug}/{asset_id}"
    return AssetRead.model_validate(values)


def _service(session: AsyncSession, context: AppContext) -> AssetService:
    return AssetService(session, context.sniffer, jobs=context.job_service(session))


@router.post(
    "/assets",
    status_code=201,
    response_model=AssetRead,
    openapi_extra=UPLOAD_BODY,
    summary="Create an asset: upload a file (multipart or raw body), or JSON for a LINK",
)
async def create_asset(
    request: Request, response: Response, principal: Writer, context: Context, session: Session
) -> AssetRead:
    service = _service(session, context)
    if request.headers.get("content-type", "").lower().startswith("application/json"):
        data = await _json_body(request, AssetCreate)
        asset = await service.create_from_json(principal, data)
    else:
        fields, staged = await receive_upload(request, context, principal)
        if staged is None:
            raise InvalidInput("the form has no 'file' part")
        async with discard_on_error(staged):
            meta = parse_fields(fields.get("meta"))
        asset = await service.create_from_upload(principal, meta, staged)
    response.headers["ETag"] = asset_etag(asset)
    response.headers["Location"] = f"/v1/assets/{asset.id}"
    return to_read(context, principal.tenant.slug, asset)


async def _json_body(request: Request, model: type[BaseModel]) -> Any:
    try:
        return model.model_validate_json(await request.body())
    except ValidationError as exc:
        errors = exc.errors(include_url=False, include_context=False, include_input=False)
        raise InvalidInput("the request body is invalid", errors=errors) from None


@router.get("/assets", response_model=AssetPage, summary="List and search assets")
async def list_assets(
    response: Response,
    principal: Reader,
    context: Context,
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
    # The page is read as plain rows (reads.search): no ORM objects to build, then re-read.
    async with context.db.session(write=False) as session:
        result = await reads.search(
            context.db,
            _service(session, context),
            principal,
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
        items=[row_to_read(context, principal.tenant.slug, row) for row in result.items],
        page_number=page_number,
        page_size=page_size,
        next_cursor=result.next_cursor,
        total=result.total,
    )


@router.get("/assets/{asset_id}", response_model=AssetRead, summary="Get an asset")
async def get_asset(
    asset_id: str, response: Response, principal: Reader, context: Context, session: ReadSession
) -> AssetRead:
    asset = await _service(session, context).get(principal, asset_id)
    response.headers["ETag"] = asset_etag(asset)
    return to_read(context, principal.tenant.slug, asset)


@router.patch("/assets/{asset_id}", response_model=AssetRead, summary="Update an asset")
async def update_asset(
    asset_id: str,
    data: AssetUpdate,
    response: Response,
    principal: Writer,
    context: Context,
    session: Session,
    if_match: Annotated[str | None, Header()] = None,
) -> AssetRead:
    asset = await _service(session, context).update(
        principal, asset_id, data, revision_from_if_match(if_match)
    )
    response.headers["ETag"] = asset_etag(asset)
    return to_read(context, principal.tenant.slug, asset)


@router.delete(
    "/assets/{asset_id}",
    status_code=204,
    summary="Move an asset to the trash, or with purge=true delete it for good",
)
async def delete_asset(
    asset_id: str,
    principal: Deleter,
    context: Context,
    session: Session,
    purge: bool = False,
    if_match: Annotated[str | None, Header()] = None,
) -> Response:
    service = _service(session, context)
    if purge:
        await service.purge(principal, asset_id)
    else:
        await service.trash(principal, asset_id, revision_from_if_match(if_match))
    return Response(status_code=204)


@router.post("/assets/{asset_id}/restore", response_model=AssetRead, summary="Restore from trash")
async def restore_asset(
    asset_id: str, principal: Deleter, context: Context, session: Session
) -> AssetRead:
    asset = await _service(session, context).restore(principal, asset_id)
    return to_read(context, principal.tenant.slug, asset)


@router.get(
    "/assets/{asset_id}/versions", response_model=list[VersionRead], summary="List versions"
)
async def list_versions(
    asset_id: str, principal: Reader, context: Context, session: ReadSession
) -> list[VersionRead]:
    service = _service(session, context)
    asset = await service.get(principal, asset_id)
    versions = await service.list_versions(principal, asset_id)
    return [
        VersionRead.model_validate(v).model_copy(
            update={"is_current": v.number == asset.version_number}
        )
        for v in versions
    ]


@router.post(
    "/assets/{asset_id}/versions",
    status_code=201,
    response_model=VersionRead,
    openapi_extra=UPLOAD_BODY,
    summary="Upload new content for an asset; it becomes the current version",
)
async def add_version(
    asset_id: str,
    request: Request,
    principal: Writer,
    context: Context,
    session: Session,
    if_match: Annotated[str | None, Header()] = None,
) -> VersionRead:
    expected = revision_from_if_match(if_match)
    # 404 before reading a byte of the body, in a read transaction of its own: the write
    # transaction must not start (and lock) until the bytes are in.
    async with context.db.session(write=False) as check:
        await _service(check, context).get(principal, asset_id)
    _, staged = await receive_upload(request, context, principal)
    service = _service(session, context)
    if staged is None:
        raise InvalidInput("the form has no 'file' part")
    version = await service.add_version(principal, asset_id, staged, expected)
    return VersionRead.model_validate(version).model_copy(update={"is_current": True})


@router.post(
    "/assets/{asset_id}/versions/{number}/promote",
    response_model=AssetRead,
    summary="Make an older version current again",
)
async def promote_version(
    asset_id: str, number: VersionNumber, principal: Writer, context: Context, session: Session
) -> AssetRead:
    asset = await _service(session, context).promote_version(principal, asset_id, number)
    return to_read(context, principal.tenant.slug, asset)


@router.get(
    "/assets/{asset_id}/content",
    summary="Download the current (or ?version=N) content; supports Range",
    response_class=Response,
    operation_id="download_content",
)
@router.head(
    "/assets/{asset_id}/content",
    summary="Download the current (or ?version=N) content; supports Range",
    response_class=Response,
    operation_id="download_content_head",
)
async def download_content(
    asset_id: str,
    request: Request,
    principal: Reader,
    version: Annotated[int | None, Query(ge=1, le=MAX_COUNTER)] = None,
    download: bool = False,
) -> Response:
    return await _download(request, principal, asset_id, version, download)


@router.get(
    "/assets/{asset_id}/versions/{number}/content",
    summary="Download one version's content",
    response_class=Response,
    operation_id="download_version",
)
@router.head(
    "/assets/{asset_id}/versions/{number}/content",
    summary="Download one version's content",
    response_class=Response,
    operation_id="download_version_head",
)
async def download_version(
    asset_id: str,
    number: VersionNumber,
    request: Request,
    principal: Reader,
    download: bool = False,
) -> Response:
    return await _download(request, principal, asset_id, number, download)


async def _download(
    request: Request, principal: Principal, asset_id: str, number: int | None, download: bool
) -> Response:
    """AssetService.download() and content_response(), on the plain-row read path (reads)."""
    # The context from the request, not a dependency: downloads are the hottest route, and
    # each dependency costs FastAPI's solving.
    context: AppContext = request.app.state.context

    def prepare(found: reads.Found | None) -> tuple[ContentPlan, bytes | None] | None:
        # Runs in the worker thread of the query: checks, headers and a small body in one hop.
        if found is not None and reads.needs_grants(principal, found[0]):
            return None
        asset, version = reads.servable(found, asset_id, number)
        plan = plan_content(request, asset, version, download=download)
        return plan, read_small_body(context.storage, plan)

    prepared = await reads.find_content(
        context.db, principal.tenant.id, asset_id, number, then=prepare
    )
    if prepared is not None:
        return await planned_response(context.storage, *prepared)
    # The asset's security templates decide, in SQL: the service's path, in its order.
    async with context.db.session(write=False) as session:
        asset, version = await _service(session, context).download(principal, asset_id, number)
    return await content_response(request, context.storage, asset, version, download=download)


class SignedUrlRequest(BaseModel):
    version: int | None = Field(None, ge=1, le=MAX_COUNTER)
    expires_in: int | None = Field(None, alias="expiresIn", ge=1, le=7 * 24 * 3600)


@router.post(
    "/assets/{asset_id}/signed-url",
    response_model=SignedUrlRead,
    summary="A URL that serves this content without credentials until it expires",
)
async def create_signed_url(
    asset_id: str,
    principal: Reader,
    context: Context,
    session: ReadSession,
    body: Annotated[SignedUrlRequest | None, Body()] = None,
) -> SignedUrlRead:
    body = body or SignedUrlRequest()
    service = _service(session, context)
    # Whoever holds the URL downloads without credentials: issuing it is downloading.
    asset = await service.get(principal, asset_id, Action.download)
    found = await service.content(principal.tenant.id, asset, body.version)
    ttl = body.expires_in or context.settings.signed_url_ttl_seconds
    expires = int(time.time()) + ttl
    signature = context.signer.sign_content(principal.tenant.id, asset.id, found.number, expires)
    url = (
        f"{context.settings.resolved_public_url()}/v1/files/{principal.tenant.slug}/{asset.id}"
        f"?version={found.number}&expires={expires}&signature={signature}"
    )
    return SignedUrlRead(
        url=url, expires_at=datetime.fromtimestamp(expires, UTC), version=found.number
    )


@router.get(
    "/files/{tenant}/{asset_id}",
    summary="Serve PUBLIC content without credentials, or PRIVATE content by signed URL",
    response_class=Response,
    operation_id="serve_file",
)
@router.head(
    "/files/{tenant}/{asset_id}",
    summary="Serve PUBLIC content without credentials, or PRIVATE content by signed URL",
    response_class=Response,
    operation_id="serve_file_head",
)
async def serve_file(
    tenant: str,
    asset_id: str,
    request: Request,
    context: Context,
    principal: Annotated[Principal | None, Depends(optional_principal)],
    version: Annotated[int | None, Query(ge=1, le=MAX_COUNTER)] = None,
    expires: Annotated[int | None, Query(ge=0, le=2**40)] = None,
    signature: Annotated[str | None, Query(max_length=128)] = None,
    download: bool = False,
) -> Response:
    async with context.db.session(write=False) as session:
        tenant_id = await TenantService(session).find_id(tenant)
    if tenant_id is None:  # answered like a missing asset: slugs are not for probing
        raise NotFound(f"asset {asset_id} not found")
    signed = signature is not None or expires is not None
    if signed:
        # Checked before any lookup: a forged URL learns nothing, not even whether it exists.
        if signature is None or expires is None or version is None:
            raise Forbidden("a signed URL needs version, expires and signature")
        if not context.signer.verify_content(tenant_id, asset_id, version, expires, signature):
            raise Forbidden("the signature is invalid or has expired")
    found = await reads.find_content(
        context.db, tenant_id, asset_id, version, include_trashed=False
    )
    served, served_version = reads.servable(found, asset_id, version)
    asset: ServedAsset = served
    content: ServedVersion = served_version
    if not signed and served.access is not Access.PUBLIC:
        if principal is None:
            raise Unauthenticated("this content is private: use credentials or a signed URL")
        if principal.tenant.id != tenant_id:
            raise NotFound(f"asset {asset_id} not found")
        if not principal.has(READ):
            raise Forbidden(f"this operation needs the {READ!r} scope")
        # PUBLIC content and signed URLs need no grant; credentials are held to the asset's.
        if reads.needs_grants(principal, served):
            async with context.db.session(write=False) as session:
                service = _service(session, context)
                asset, content = await service.find_content(
                    tenant_id, asset_id, version, include_trashed=False
                )
                await service.authorize(principal, asset, Action.download)
    return await content_response(request, context.storage, asset, content, download=download)
