"""Seed 001, the media assets API (Emporix-style), as a thin adapter over AssetService.

Shapes in, one service call, shapes out. The choices the seed leaves open are written down in
docs/compat/media.md; every error under /media answers in Emporix's error envelope.
"""

from __future__ import annotations

import http
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Annotated, Any

import structlog
from fastapi import APIRouter, Depends, Header, HTTPException, Path, Query, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from pydantic import AnyUrl, BaseModel, ConfigDict, Field, ValidationError
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect

from assetd.assets import query
from assetd.assets.delivery import content_response
from assetd.assets.ingest import StagedUpload
from assetd.assets.models import Access, Asset, AssetKind, AssetState
from assetd.assets.schemas import AssetCreate, AssetFields, AssetUpdate, RefId
from assetd.assets.service import MAX_PAGE_SIZE, AssetService, ListParams
from assetd.assets.uploads import discard_on_error, receive_upload
from assetd.auth.dependencies import optional_principal
from assetd.auth.principal import DELETE, READ, WRITE, Principal
from assetd.compat.routing import enveloped_route
from assetd.context import AppContext, get_context
from assetd.db.dependencies import ReadOnly, UnitOfWork
from assetd.errors import (
    AssetdError,
    Forbidden,
    InvalidInput,
    NotFound,
    PayloadTooLarge,
    QueryError,
    RangeNotSatisfiable,
    Unauthenticated,
)
from assetd.problems import status_for
from assetd.templates.models import Action
from assetd.tenants.schemas import CamelModel, InputModel

log = structlog.get_logger()

# "max 10MB" in the seed, read as binary megabytes: 10 MiB is allowed, one byte more is 413.
MAX_FILE_BYTES = 10 * 1024 * 1024
# The JSON body of a LINK (or the `body` form part) is small; don't buffer more than this.
MAX_JSON_BYTES = 1024 * 1024
TENANT_PATTERN = r"^[a-z][a-z0-9]+$"
TAG = "compat: media"

# The seed's field names over the native ones. In seed 001 `type` is BLOB|LINK, which natively
# is `kind`; `details` is the object a BLOB with content has, so it exists iff mimeType does.
MEDIA_FIELDS = query.NATIVE_FIELDS | {
    "type": query.NATIVE_FIELDS["kind"],
    "details": query.NATIVE_FIELDS["mimeType"],
    "details.filename": query.NATIVE_FIELDS["filename"],
    "details.mimeType": query.NATIVE_FIELDS["mimeType"],
    "details.bytes": query.NATIVE_FIELDS["size"],
}


# -- errors: Emporix's envelope for everything under /media --------------------------------


class MediaError(BaseModel):
    """Emporix's standard error body."""

    code: int = Field(description="The HTTP status code.")
    status: str = Field(description="The HTTP reason phrase.")
    message: str
    details: list[str] = Field(default_factory=list)


def _reason(status: int) -> str:
    try:
        return http.HTTPStatus(status).phrase
    except ValueError:
        return "Error"


def envelope(
    status: int,
    message: str,
    details: list[str] | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    body = MediaError(code=status, status=_reason(status), message=message, details=details or [])
    all_headers = dict(headers or {})
    if status == 401:
        all_headers.setdefault("WWW-Authenticate", 'Bearer realm="assetd"')
    return JSONResponse(body.model_dump(), status_code=status, headers=all_headers)


def _error_lines(errors: list[Any]) -> list[str]:
    lines = []
    for error in errors[:20]:
        if not isinstance(error, dict):
            lines.append(str(error))
            continue
        where = ".".join(str(part) for part in error.get("loc", ()))
        message = str(error.get("msg", ""))
        lines.append(f"{where}: {message}" if where else message)
    return lines


async def _domain_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, AssetdError)
    extra = dict(exc.extra)
    details = _error_lines(extra.pop("errors", None) or [])
    details.extend(f"{key}: {value}" for key, value in extra.items())
    headers = {}
    if isinstance(exc, RangeNotSatisfiable):
        headers["Content-Range"] = f"bytes */{exc.size}"
    return envelope(status_for(exc), exc.detail, details, headers)


async def _validation_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    details = _error_lines(list(exc.errors()))
    return envelope(400, "the request is invalid", details)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    return envelope(exc.status_code, str(exc.detail), headers=dict(exc.headers or {}))


async def _unexpected(request: Request, exc: Exception) -> Response:
    log.exception("request.failed", path=request.url.path)
    return envelope(500, "the server failed; the request id identifies it")


_HANDLERS: dict[Any, Callable[[Request, Exception], Awaitable[Response]]] = {
    AssetdError: _domain_error,
    RequestValidationError: _validation_error,
    StarletteHTTPException: _http_error,
    Exception: _unexpected,
}
# Errors under /media are rendered by this adapter (see compat/routing.py for how).
MediaRoute = enveloped_route(_HANDLERS)


ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    # "4XX" also stops FastAPI from documenting its 422: validation errors here are 400s.
    "4XX": {"model": MediaError, "description": "Client error, in Emporix's error envelope"},
    "5XX": {"model": MediaError, "description": "Server error, in Emporix's error envelope"},
}

router = APIRouter(tags=[TAG], route_class=MediaRoute, responses=ERROR_RESPONSES)


# -- shapes ----------------------------------------------------------------------------------


class MediaDetails(CamelModel):
    filename: str
    mime_type: str = Field(description="Sniffed from the content, not taken from the client.")
    size_bytes: int = Field(alias="bytes")


class MediaMetadata(CamelModel):
    created_at: str = Field(examples=["2022-03-31T13:18:02.379Z"])
    modified_at: str = Field(examples=["2022-03-31T13:18:02.379Z"])
    version: int = Field(description="Changes with every update; send it back in PUT.")


class MediaAssetRead(CamelModel):
    id: str
    type: AssetKind
    access: Access
    url: str | None = Field(
        None, description="LINK: the link. BLOB: where to download it (public for PUBLIC)."
    )
    details: MediaDetails | None = Field(None, description="BLOB only.")
    ref_ids: list[RefId]
    metadata: MediaMetadata


class MediaAssetCreated(BaseModel):
    id: str


class _Body(InputModel):
    model_config = ConfigDict(extra="forbid")


class MediaDetailsIn(_Body):
    filename: str | None = Field(
        None, max_length=255, description="Names the file; overrides the file part's name."
    )
    mime_type: str | None = Field(
        None, max_length=255, description="Advisory only: the stored type is sniffed."
    )
    size_bytes: int | None = Field(None, alias="bytes", description="Read-only; ignored.")


class MediaMetadataIn(_Body):
    version: int | None = Field(
        None, ge=1, description="PUT: the version last read; a stale one is refused with 409."
    )
    created_at: str | None = Field(None, description="Read-only; ignored.")
    modified_at: str | None = Field(None, description="Read-only; ignored.")


class MediaAssetIn(_Body):
    """The asset JSON of POST and PUT (the `body` part of a multipart request)."""

    id: str | None = Field(None, description="Read-only; ignored.")
    type: AssetKind | None = Field(None, description="Required in POST; immutable.")
    access: Access | None = Field(None, description="Defaults to PRIVATE; immutable.")
    url: AnyUrl | None = Field(None, description="LINK: the link (required). BLOB: ignored.")
    ref_ids: list[RefId] | None = Field(None, max_length=100)
    details: MediaDetailsIn | None = None
    metadata: MediaMetadataIn | None = None


def _inline_schema(model: type[BaseModel]) -> dict[str, Any]:
    """The model's JSON schema with its $defs inlined, to sit inside openapi_extra."""
    schema = model.model_json_schema(by_alias=True)
    definitions: dict[str, Any] = schema.pop("$defs", {})

    def resolve(node: Any) -> Any:
        if isinstance(node, dict):
            ref = node.get("$ref")
            if isinstance(ref, str) and ref.startswith("#/$defs/"):
                return resolve(definitions[ref.removeprefix("#/$defs/")])
            return {key: resolve(value) for key, value in node.items()}
        if isinstance(node, list):
            return [resolve(item) for item in node]
        return node

    result: dict[str, Any] = resolve(schema)
    return result


def _write_body(verb: str) -> dict[str, Any]:
    asset_json = _inline_schema(MediaAssetIn)
    return {
        "requestBody": {
            "required": True,
            "content": {
                "multipart/form-data": {
                    "schema": {
                        "type": "object",
                        "required": ["file", "body"] if verb == "create" else ["body"],
                        "properties": {
                            "file": {
                                "type": "string",
                                "format": "binary",
                                "description": f"The content, at most {MAX_FILE_BYTES} bytes.",
                            },
                            "body": {**asset_json, "description": "The asset JSON (type BLOB)."},
                        },
                    },
                    "encoding": {"body": {"contentType": "application/json"}},
                },
                "application/json": {
                    "schema": {**asset_json, "description": "A LINK asset."},
                },
            },
        }
    }


def _timestamp(moment: datetime) -> str:
    """The seed's format: milliseconds and Z, 2022-03-31T13:18:02.379Z."""
    moment = (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).astimezone(UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def to_media(context: AppContext, tenant_slug: str, asset: Asset) -> MediaAssetRead:
    base = context.settings.resolved_public_url()
    url = asset.url
    details = None
    if asset.kind is AssetKind.BLOB and asset.version_number is not None:
        if asset.access is Access.PUBLIC:
            # The native public URL serves PUBLIC content without credentials.
            url = f"{base}/v1/files/{tenant_slug}/{asset.id}"
        else:
            url = f"{base}/media/{tenant_slug}/assets/{asset.id}/download"
        details = MediaDetails(
            filename=asset.filename or "",
            mime_type=asset.mime_type or "application/octet-stream",
            size_bytes=asset.size_bytes or 0,
        )
    return MediaAssetRead(
        id=asset.id,
        type=asset.kind,
        access=asset.access,
        url=url,
        details=details,
        ref_ids=[RefId.model_validate(ref) for ref in asset.ref_ids],
        metadata=MediaMetadata(
            created_at=_timestamp(asset.created_at),
            modified_at=_timestamp(asset.modified_at),
            version=asset.revision,
        ),
    )


# -- dependencies ----------------------------------------------------------------------------

TenantPath = Annotated[
    str,
    Path(
        min_length=3,
        max_length=16,
        pattern=TENANT_PATTERN,
        description="The tenant that the caller is acting upon (lowercase).",
    ),
]


async def _authenticated(
    principal: Annotated[Principal | None, Depends(optional_principal)],
) -> Principal:
    if principal is None:
        raise Unauthenticated("credentials required: 'Authorization: Bearer …' or 'X-API-Key'")
    return principal


def _acting(scope: str, seed_scope: str) -> Callable[..., Awaitable[Principal]]:
    """Credentials (401) for the tenant in the path (400 if malformed, 403 if another one)."""

    async def dependency(
        tenant: TenantPath, principal: Annotated[Principal, Depends(_authenticated)]
    ) -> Principal:
        if tenant != principal.tenant.slug:
            # 403, not 404: the credentials say which tenant they act for, so the answer
            # reveals nothing about whether the other tenant exists.
            raise Forbidden(f"these credentials do not act for tenant {tenant!r}")
        if not principal.has(scope):
            raise Forbidden(f"this operation needs the {seed_scope!r} scope")
        return principal

    dependency.__name__ = f"acting_with_{seed_scope.replace('.', '_')}"
    return dependency


Reader = Annotated[Principal, Depends(_acting(READ, "media.asset_read"))]
Writer = Annotated[Principal, Depends(_acting(WRITE, "media.asset_manage"))]
Deleter = Annotated[Principal, Depends(_acting(DELETE, "media.asset_manage"))]
Context = Annotated[AppContext, Depends(get_context)]
Session = Annotated[AsyncSession, UnitOfWork]
ReadSession = Annotated[AsyncSession, ReadOnly]
AssetId = Annotated[str, Path(alias="assetId", max_length=64)]


def _service(session: AsyncSession, context: AppContext) -> AssetService:
    return AssetService(session, context.sniffer, MEDIA_FIELDS, jobs=context.job_service(session))


async def _live(service: AssetService, principal: Principal, asset_id: str) -> Asset:
    """The asset, unless deleted: a DELETE here trashes, and trashed is gone for this API."""
    asset = await service.get(principal, asset_id)
    if asset.state is AssetState.trashed:
        raise NotFound(f"asset {asset_id} not found")
    return asset


# -- request bodies --------------------------------------------------------------------------


def _media_type(request: Request) -> str:
    return request.headers.get("content-type", "").split(";", 1)[0].strip().lower()


def _is_json(media_type: str) -> bool:
    return media_type == "application/json" or (
        media_type.startswith("application/") and media_type.endswith("+json")
    )


def _unsupported(media_type: str) -> HTTPException:
    return HTTPException(
        415,
        f"unsupported content type {media_type or '(none)'!r}: send multipart/form-data "
        "(BLOB: parts 'file' and 'body') or application/json (LINK)",
    )


async def _read_json(request: Request) -> bytes:
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > MAX_JSON_BYTES:
        raise PayloadTooLarge(f"the JSON body is larger than {MAX_JSON_BYTES} bytes")
    body = bytearray()
    try:
        async for chunk in request.stream():
            body += chunk
            if len(body) > MAX_JSON_BYTES:
                raise PayloadTooLarge(f"the JSON body is larger than {MAX_JSON_BYTES} bytes")
    except ClientDisconnect:
        raise InvalidInput("the client went away before the body was sent") from None
    return bytes(body)


def _parse_asset_json(raw: str | bytes | None, where: str) -> MediaAssetIn:
    if raw is None or not raw.strip():
        raise InvalidInput(f"the {where} is missing: send the asset JSON")
    try:
        return MediaAssetIn.model_validate_json(raw)
    except ValidationError as exc:
        errors = exc.errors(include_url=False, include_context=False, include_input=False)
        raise InvalidInput(f"the {where} is invalid", errors=errors) from None


async def _receive_form(
    request: Request, context: AppContext, principal: Principal
) -> tuple[MediaAssetIn, StagedUpload | None]:
    """The `body` part and the staged `file` part; the bytes are dropped if the JSON is bad."""
    fields, staged = await receive_upload(request, context, principal, size_limit=MAX_FILE_BYTES)
    async with discard_on_error(staged):
        body = _parse_asset_json(fields.get("body"), "'body' part")
    return body, staged


def _ref_ids(body: MediaAssetIn) -> list[dict[str, str]] | None:
    if body.ref_ids is None:
        return None
    return [ref.model_dump() for ref in body.ref_ids]


# -- routes ----------------------------------------------------------------------------------


@router.get(
    "/media/{tenant}/assets",
    response_model=list[MediaAssetRead],
    response_model_exclude_none=True,
    summary="Retrieve all assets (q, sort, pageNumber, pageSize, X-Total-Count)",
)
async def list_media_assets(
    response: Response,
    principal: Reader,
    context: Context,
    session: ReadSession,
    q: Annotated[
        str | None,
        Query(max_length=query.MAX_QUERY_LENGTH, description="The seed's query language."),
    ] = None,
    sort: Annotated[
        str | None, Query(max_length=500, examples=["name,metadata.createdAt:desc"])
    ] = None,
    page_number: Annotated[int, Query(alias="pageNumber", ge=1, le=1_000_000)] = 1,
    page_size: Annotated[int, Query(alias="pageSize", ge=1, le=MAX_PAGE_SIZE)] = 60,
    x_total_count: Annotated[bool, Header(alias="X-Total-Count")] = False,
) -> list[MediaAssetRead]:
    _check_details_terms(q)
    result = await _service(session, context).search(
        principal,
        ListParams(
            q=q,
            sort=sort,
            page_number=page_number,
            page_size=page_size,
            with_total=x_total_count,
        ),
    )
    if result.total is not None:
        response.headers["X-Total-Count"] = str(result.total)
    return [to_media(context, principal.tenant.slug, asset) for asset in result.items]


def _check_details_terms(q: str | None) -> None:
    # `details` is an object: only its presence can be asked (its paths are separate fields).
    for term in query.parse_query(q or ""):
        if term.field != "details":
            continue
        for predicate in term.predicates:
            if predicate.op not in ("null", "exists"):
                raise QueryError(
                    f"Invalid q at offset {predicate.offset}: 'details' is an object; ask "
                    "details:exists, details:null, or a path such as details.filename",
                    parameter="q",
                    offset=predicate.offset,
                )


@router.post(
    "/media/{tenant}/assets",
    status_code=201,
    response_model=MediaAssetCreated,
    openapi_extra=_write_body("create"),
    summary="Create an asset: BLOB as multipart/form-data (file + body), LINK as JSON",
)
async def create_media_asset(
    request: Request, response: Response, principal: Writer, context: Context, session: Session
) -> MediaAssetCreated:
    media_type = _media_type(request)
    service = _service(session, context)
    if _is_json(media_type):
        body = _parse_asset_json(await _read_json(request), "body")
        if body.type is not AssetKind.LINK:
            raise InvalidInput(
                "application/json creates a LINK asset (type LINK); a BLOB is created with "
                "multipart/form-data: a 'file' part and a 'body' part"
            )
        if body.url is None:
            raise InvalidInput("a LINK asset needs a url")
        data = AssetCreate.model_validate(
            {
                "kind": AssetKind.LINK,
                "access": body.access,
                "url": body.url,
                "refIds": _ref_ids(body),
            }
        )
        asset = await service.create_from_json(principal, data)
    elif media_type == "multipart/form-data":
        body, staged = await _receive_form(request, context, principal)
        async with discard_on_error(staged):
            if staged is None:
                raise InvalidInput("the form has no 'file' part")
            if body.type is not AssetKind.BLOB:
                raise InvalidInput(
                    "multipart/form-data creates a BLOB asset (type BLOB); "
                    "a LINK is created with application/json"
                )
            if body.details is not None and body.details.filename:
                staged.filename = body.details.filename
            fields = AssetFields.model_validate({"access": body.access, "refIds": _ref_ids(body)})
        asset = await service.create_from_upload(principal, fields, staged)
    else:
        raise _unsupported(media_type)
    response.headers["Location"] = f"/media/{principal.tenant.slug}/assets/{asset.id}"
    return MediaAssetCreated(id=asset.id)


@router.get(
    "/media/{tenant}/assets/{assetId}",
    response_model=MediaAssetRead,
    response_model_exclude_none=True,
    summary="Retrieve an asset",
)
async def get_media_asset(
    asset_id: AssetId, principal: Reader, context: Context, session: ReadSession
) -> MediaAssetRead:
    asset = await _live(_service(session, context), principal, asset_id)
    return to_media(context, principal.tenant.slug, asset)


@router.put(
    "/media/{tenant}/assets/{assetId}",
    status_code=204,
    response_class=Response,
    openapi_extra=_write_body("update"),
    summary="Update an asset; type and access are immutable, metadata.version guards races",
)
async def update_media_asset(
    asset_id: AssetId, request: Request, principal: Writer, context: Context, session: Session
) -> Response:
    # 404 before a byte of the body is read, in a read transaction of its own: the write
    # transaction must not start (and lock) until the bytes are in.
    async with context.db.session(write=False) as check:
        current = await _live(_service(check, context), principal, asset_id)
    media_type = _media_type(request)
    staged: StagedUpload | None = None
    if _is_json(media_type):
        body = _parse_asset_json(await _read_json(request), "body")
    elif media_type == "multipart/form-data":
        body, staged = await _receive_form(request, context, principal)
    else:
        raise _unsupported(media_type)
    async with discard_on_error(staged):
        if body.type is not None and body.type is not current.kind:
            raise InvalidInput(f"type cannot be changed: this asset is a {current.kind.value}")
        changes: dict[str, Any] = {}
        if body.access is not None:
            changes["access"] = body.access
        if body.ref_ids is not None:
            changes["refIds"] = _ref_ids(body)
        if body.metadata is not None and body.metadata.version is not None:
            changes["revision"] = body.metadata.version
        if current.kind is AssetKind.LINK:
            if staged is not None:
                raise InvalidInput("a LINK asset has no file; update it with application/json")
            if body.url is not None:
                changes["url"] = body.url
        filename = body.details.filename if body.details is not None else None
        if staged is not None and filename:
            staged.filename = filename
        elif staged is None and filename and filename != current.filename:
            raise InvalidInput("details.filename names new content: send the file with it")
        data = AssetUpdate.model_validate(changes)
    service = _service(session, context)
    if staged is None:
        await service.update(principal, asset_id, data, immutable=("access",))
    else:
        await service.update_with_content(principal, asset_id, data, staged, immutable=("access",))
    return Response(status_code=204)


@router.delete(
    "/media/{tenant}/assets/{assetId}",
    status_code=204,
    response_class=Response,
    summary="Delete an asset (it goes to the trash, restorable through /v1)",
)
async def delete_media_asset(
    asset_id: AssetId, principal: Deleter, context: Context, session: Session
) -> Response:
    service = _service(session, context)
    await _live(service, principal, asset_id)
    await service.trash(principal, asset_id)
    return Response(status_code=204)


# HEAD is served too, but documented once: a GET+HEAD route would repeat its operation id.
@router.head(
    "/media/{tenant}/assets/{assetId}/download", response_class=Response, include_in_schema=False
)
@router.get(
    "/media/{tenant}/assets/{assetId}/download",
    response_class=Response,
    summary="Download an asset's content (supports Range)",
    responses={200: {"description": "The bytes, with their sniffed content type."}},
)
async def download_media_asset(
    asset_id: AssetId, request: Request, principal: Reader, context: Context, session: ReadSession
) -> Response:
    service = _service(session, context)
    asset = await _live(service, principal, asset_id)
    await service.authorize(principal, asset, Action.download)
    found = await service.content(principal.tenant.id, asset)
    return await content_response(request, context.storage, asset, found)


_ALL_METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]


@router.api_route("/media/{rest:path}", methods=_ALL_METHODS, include_in_schema=False)
async def unknown_media_endpoint(request: Request) -> Response:
    """Any other /media path: 405 (with Allow) or 404, in the envelope like the rest."""
    path = request.scope["path"]
    allowed = sorted(
        {
            method
            for route in router.routes
            if isinstance(route, APIRoute)
            and route.endpoint is not unknown_media_endpoint
            and route.path_regex.match(path)
            for method in route.methods or ()
        }
    )
    if allowed:
        raise HTTPException(
            405,
            f"{request.method} is not allowed here; use {', '.join(allowed)}",
            headers={"Allow": ", ".join(allowed)},
        )
    raise NotFound(f"no endpoint at {path}")
