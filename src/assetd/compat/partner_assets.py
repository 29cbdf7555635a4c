"""Seed 003, the partner asset API (`/api/v1/partner/asset`), over AssetService.

Upload private or public, then get by key: the original, or a rendition by the key the
CompanyAsset's thumbURL/mediumURL/largeURL/largeX2URL carry. Choices the seed leaves open
are written down in docs/compat/partner-assets.md.
"""

from __future__ import annotations

import base64
import http
import re
from datetime import UTC, datetime
from typing import Annotated, Any

import structlog
from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.exceptions import HTTPException as StarletteHTTPException

from assetd.assets.delivery import content_response
from assetd.assets.models import Access, Asset, AssetState, AssetType
from assetd.assets.schemas import AssetFields
from assetd.assets.service import AssetService
from assetd.assets.uploads import discard_on_error, receive_upload
from assetd.auth.dependencies import optional_principal
from assetd.auth.principal import READ, WRITE, Principal
from assetd.compat.routing import enveloped_route
from assetd.context import AppContext, get_context
from assetd.db.dependencies import ReadOnly, UnitOfWork
from assetd.errors import AssetdError, Forbidden, InvalidInput, NotFound, Unauthenticated
from assetd.problems import status_for
from assetd.renditions.service import PRESETS, RenditionService, rendition_response
from assetd.templates.models import Action

log = structlog.get_logger()

TAG = "compat: partner assets"
BASE = "/api/v1/partner/asset"
# "The response is cacheable for 30 days."
CACHE_SECONDS = 30 * 24 * 3600
_KEY = re.compile(r"^(?P<id>[0-9a-f]{24})(?:-(?P<preset>[A-Za-z0-9]+))?$")
# handleError=true: a broken image link would show as a broken image; a transparent pixel
# does not (see docs/compat/partner-assets.md).
_PIXEL = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAQAAAC1HAwCAAAAC0lEQVR42mNkYAAAAAYAAjCB0C8AAAAASUVORK5CYII="
)


# -- errors: Spring Boot's error body, which this API's clients see from their own server ----


class PartnerError(BaseModel):
    timestamp: int = Field(description="Epoch milliseconds.")
    status: int
    error: str
    message: str
    path: str


def envelope(request: Request, status: int, message: str) -> JSONResponse:
    try:
        reason = http.HTTPStatus(status).phrase
    except ValueError:
        reason = "Error"
    body = PartnerError(
        timestamp=_epoch_ms(datetime.now(UTC)),
        status=status,
        error=reason,
        message=message,
        path=request.url.path,
    )
    headers = {"WWW-Authenticate": 'Bearer realm="assetd"'} if status == 401 else None
    return JSONResponse(body.model_dump(), status_code=status, headers=headers)


async def _domain_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, AssetdError)
    return envelope(request, status_for(exc), exc.detail)


async def _validation_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    first: dict[str, Any] = next(iter(exc.errors()), {})
    where = ".".join(str(p) for p in first.get("loc", ()))
    return envelope(request, 400, f"{where}: {first.get('msg', 'invalid request')}")


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    return envelope(request, exc.status_code, str(exc.detail))


async def _unexpected(request: Request, exc: Exception) -> Response:
    log.exception("request.failed", path=request.url.path)
    return envelope(request, 500, "the server failed; the request id identifies it")


router = APIRouter(
    tags=[TAG],
    route_class=enveloped_route(
        {
            AssetdError: _domain_error,
            RequestValidationError: _validation_error,
            StarletteHTTPException: _http_error,
            Exception: _unexpected,
        }
    ),
    responses={"4XX": {"model": PartnerError, "description": "Spring-style error body"}},
)

Context = Annotated[AppContext, Depends(get_context)]
Session = Annotated[AsyncSession, UnitOfWork]
ReadSession = Annotated[AsyncSession, ReadOnly]
MaybePrincipal = Annotated[Principal | None, Depends(optional_principal)]


# -- shapes ----------------------------------------------------------------------------------


class CompanyAsset(BaseModel):
    id: str
    company_id: str = Field(serialization_alias="companyId", description="The tenant.")
    created: int = Field(description="Epoch milliseconds.")
    modified: int = Field(description="Epoch milliseconds.")
    deleted: bool
    updated: bool = Field(description="Changed since it was created.")
    name: str
    key: str = Field(description="What GET /api/v1/partner/asset/{assetKey} takes.")
    type: str = Field(description="IMAGE, DOCUMENT, VIDEO, AUDIO, APP, … (sniffed).")
    public_url: str | None = Field(None, serialization_alias="publicURL")
    active: bool
    priority: int = 0
    secured: bool = Field(description="True for private assets.")
    thumb_url: str | None = Field(None, serialization_alias="thumbURL")
    medium_url: str | None = Field(None, serialization_alias="mediumURL")
    large_url: str | None = Field(None, serialization_alias="largeURL")
    large_x2_url: str | None = Field(None, serialization_alias="largeX2URL")
    orig_url: str | None = Field(None, serialization_alias="origURL")
    platform_file_url: str | None = Field(None, serialization_alias="platformFileUrl")


# Types whose renditions the processing jobs make (images, PDF page 1, a video's poster).
_RENDERED = {AssetType.image, AssetType.video}
_RENDERED_MIME = {"application/pdf"}


def company_asset(context: AppContext, tenant_slug: str, asset: Asset) -> CompanyAsset:
    base = f"{context.settings.resolved_public_url()}{BASE}"
    rendered = asset.type in _RENDERED or asset.mime_type in _RENDERED_MIME
    urls: dict[str, str | None] = {}
    for preset, field in (
        ("thumb", "thumb_url"),
        ("medium", "medium_url"),
        ("large", "large_url"),
        ("largeX2", "large_x2_url"),
    ):
        urls[field] = f"{base}/{asset.id}-{preset}" if rendered else None
    orig = f"{base}/{asset.id}"
    return CompanyAsset(
        id=asset.id,
        company_id=tenant_slug,
        created=_epoch_ms(asset.created_at),
        modified=_epoch_ms(asset.modified_at),
        deleted=asset.state is AssetState.trashed,
        updated=asset.revision > 1,
        name=asset.name,
        key=asset.id,
        type=asset.type.value.upper(),
        public_url=orig if asset.access is Access.PUBLIC else None,
        active=asset.state is AssetState.active,
        secured=asset.access is Access.PRIVATE,
        orig_url=orig,
        platform_file_url=f"{context.settings.resolved_public_url()}/v1/assets/{asset.id}/content",
        **urls,
    )


def _epoch_ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


# -- routes ----------------------------------------------------------------------------------

UPLOAD_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["file"],
                    "properties": {
                        "name": {"type": "string"},
                        "file": {"type": "string", "format": "binary"},
                    },
                }
            }
        },
    }
}


async def _upload(
    request: Request,
    context: AppContext,
    principal: Principal | None,
    session: AsyncSession,
    access: Access,
) -> CompanyAsset:
    if principal is None:
        raise Unauthenticated("credentials required: 'Authorization: Bearer …' or 'X-API-Key'")
    if not principal.has(WRITE):
        raise Forbidden(f"this operation needs the {WRITE!r} scope")
    if not request.headers.get("content-type", "").lower().startswith("multipart/form-data"):
        raise InvalidInput("send multipart/form-data with the parts 'name' and 'file'")
    fields, staged = await receive_upload(request, context, principal)
    if staged is None:
        raise InvalidInput("the form has no 'file' part")
    async with discard_on_error(staged):
        name = (fields.get("name") or "").strip()
        if len(name) > 500 or "\x00" in name:
            raise InvalidInput("name must be at most 500 characters, without NUL")
        data = AssetFields(name=name or None, access=access)
    service = AssetService(session, context.sniffer, jobs=context.job_service(session))
    asset = await service.create_from_upload(principal, data, staged)
    return company_asset(context, principal.tenant.slug, asset)


@router.post(
    f"{BASE}/upload/private",
    response_model=CompanyAsset,
    response_model_by_alias=True,
    openapi_extra=UPLOAD_BODY,
    summary="Upload a private asset (multipart: name, file)",
)
async def upload_private(
    request: Request, context: Context, principal: MaybePrincipal, session: Session
) -> CompanyAsset:
    return await _upload(request, context, principal, session, Access.PRIVATE)


@router.post(
    f"{BASE}/upload/public",
    response_model=CompanyAsset,
    response_model_by_alias=True,
    openapi_extra=UPLOAD_BODY,
    summary="Upload a public asset (multipart: name, file)",
)
async def upload_public(
    request: Request, context: Context, principal: MaybePrincipal, session: Session
) -> CompanyAsset:
    return await _upload(request, context, principal, session, Access.PUBLIC)


@router.get(
    f"{BASE}/{{asset_key}}",
    response_class=Response,
    summary="The asset's bytes (or a rendition's, by the key in thumbURL, …), cacheable 30 days",
)
@router.head(f"{BASE}/{{asset_key}}", response_class=Response, include_in_schema=False)
async def get_asset(
    asset_key: str,
    request: Request,
    context: Context,
    principal: MaybePrincipal,
    session: ReadSession,
    handle_error: Annotated[bool, Query(alias="handleError")] = False,
) -> Response:
    try:
        return await _get(asset_key, request, context, principal, session)
    except AssetdError as exc:
        if not handle_error:
            raise
        # Graceful: a transparent pixel where an image was expected, and the error beside it.
        return Response(
            _PIXEL,
            media_type="image/png",
            headers={
                "Cache-Control": "no-store",
                "X-Error-Status": str(status_for(exc)),
                # Header values must be visible ASCII: the detail may quote the client's key.
                "X-Error-Message": "".join(c if " " <= c <= "~" else "?" for c in exc.detail)[:200],
            },
        )


async def _get(
    asset_key: str,
    request: Request,
    context: AppContext,
    principal: Principal | None,
    session: AsyncSession,
) -> Response:
    match = _KEY.fullmatch(asset_key)
    if match is None:
        raise NotFound(f"asset {asset_key[:64]} not found")
    asset_id, preset = match["id"], match["preset"]
    if preset is not None and preset not in PRESETS:
        raise NotFound(f"asset {asset_key[:64]} not found")
    service = AssetService(session, context.sniffer)
    # Keys carry no tenant: the asset's own tenant answers, and for a private asset the
    # caller must belong to it (else 404, as for any other tenant's id).
    tenant_id = await service.tenant_of(asset_id)
    if tenant_id is None:
        raise NotFound(f"asset {asset_key} not found")
    asset, version = await service.find_content(tenant_id, asset_id, include_trashed=False)
    if asset.access is Access.PRIVATE:
        if principal is None:
            raise Unauthenticated("this asset is private: send credentials")
        if principal.tenant.id != tenant_id:
            raise NotFound(f"asset {asset_key} not found")
        if not principal.has(READ):
            raise Forbidden(f"this operation needs the {READ!r} scope")
        await service.authorize(principal, asset, Action.download)
    cache = (
        "public" if asset.access is Access.PUBLIC else "private"
    ) + f", max-age={CACHE_SECONDS}"
    if preset is None:
        response = await content_response(request, context.storage, asset, version)
    else:
        rendition = await RenditionService(session, context.storage).find(
            tenant_id, asset_id, preset
        )
        if rendition is None:
            raise NotFound(f"the {preset} rendition of {asset_id} is not there (yet)")
        response = await rendition_response(request, context.storage, asset, rendition)
    response.headers["Cache-Control"] = cache
    return response
