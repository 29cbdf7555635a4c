"""Seed 002, create an asset / a version / a metadata-only asset with presigned upload URLs
(Tenovos-style `POST /asset` and `POST /asset/complete`), over UploadService.

Shapes in, one service call, shapes out. The choices the seed leaves open are written down in
docs/compat/asset-upload.md.
"""

from __future__ import annotations

import http
import re
from datetime import datetime
from typing import Annotated, Any, Literal

import structlog
from fastapi import APIRouter, Depends, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from assetd.assets.schemas import AssetFields, AssetUpdate
from assetd.assets.service import AssetService
from assetd.auth.dependencies import authenticate
from assetd.auth.principal import WRITE, Principal
from assetd.compat.routing import enveloped_route
from assetd.context import AppContext, get_context
from assetd.errors import AssetdError, Forbidden, InvalidInput, NotFound, Unauthenticated
from assetd.ids import is_id
from assetd.problems import status_for
from assetd.tenants.schemas import InputModel
from assetd.uploads.routes import upload_service
from assetd.uploads.service import ClientPart

log = structlog.get_logger()

TAG = "compat: asset upload"
# "less than or equal to 5GB", read as binary gigabytes like the seed's "100MB" chunks.
MAX_FILE_BYTES = 5 * 1024**3
CHUNK_BYTES = 100 * 1024**2
MAX_METADATA_ITEMS = 500
_UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


# -- errors: a JSON object with the description, for every status ---------------------------


class UploadError(BaseModel):
    code: int = Field(description="The HTTP status code.")
    error: str = Field(description="The HTTP reason phrase.")
    message: str
    details: list[Any] = Field(default_factory=list)


def envelope(status: int, message: str, details: list[Any] | None = None) -> JSONResponse:
    try:
        reason = http.HTTPStatus(status).phrase
    except ValueError:
        reason = "Error"
    body = UploadError(code=status, error=reason, message=message, details=details or [])
    return JSONResponse(body.model_dump(), status_code=status)


async def _domain_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, AssetdError)
    extra = dict(exc.extra)
    details = list(extra.pop("errors", None) or extra.pop("problems", None) or [])
    return envelope(status_for(exc), exc.detail, details)


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    details = [
        {"field": ".".join(str(p) for p in e.get("loc", ())[1:]), "message": e.get("msg")}
        for e in list(exc.errors())[:50]
    ]
    return envelope(400, "the request body is invalid", details)


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    return envelope(exc.status_code, str(exc.detail))


async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    log.exception("request.failed", path=request.url.path)
    return envelope(500, "the server failed; the request id identifies it")


UploadRoute = enveloped_route(
    {
        AssetdError: _domain_error,
        RequestValidationError: _validation_error,
        StarletteHTTPException: _http_error,
        Exception: _unexpected,
    }
)
router = APIRouter(
    tags=[TAG],
    route_class=UploadRoute,
    responses={
        "4XX": {"model": UploadError, "description": "JSON object with the error description"}
    },
)


# -- identities: asset ids shown as UUIDs ----------------------------------------------------


def object_id(asset_id: str) -> str:
    """A 24-hex asset id in the UUID form the seed's clients expect (zero-padded, reversible)."""
    h = asset_id + "0" * 8
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def asset_id_of(value: str) -> str:
    """Accepts the UUID form this adapter hands out and plain 24-hex ids; else 404."""
    value = value.strip().lower()
    if _UUID.fullmatch(value) and value.endswith("00000000"):
        value = value.replace("-", "")[:24]
    if not is_id(value):
        raise NotFound(f"asset {value[:64]} not found")
    return value


# -- credentials: X-API-Key, Authorization and AccessToken, all three required ---------------


async def caller(
    request: Request, context: Annotated[AppContext, Depends(get_context)]
) -> Principal:
    """The user of the AccessToken, in the tenant of the X-API-Key, vouched for by Authorization.

    Each is any credential assetd accepts (an API key, or a JWT when JWT validation is set
    up); all three must be valid and belong to one tenant, else 401 — the seed's "Missing
    Authorization or AccessToken or expired token".
    """
    values = {}
    for header in ("x-api-key", "authorization", "accesstoken"):
        raw = request.headers.get(header, "").strip()
        scheme, _, rest = raw.partition(" ")
        token = rest.strip() if scheme.lower() == "bearer" else raw
        if not token:
            raise Unauthenticated(f"Unauthorized: the {_HEADER_NAMES[header]} header is missing")
        values[header] = token
    principals = {h: await authenticate(context, token) for h, token in values.items()}
    tenants = {p.tenant.id for p in principals.values()}
    if len(tenants) != 1:
        raise Unauthenticated("Unauthorized: the credentials belong to different tenants")
    user = principals["accesstoken"]
    if not user.has(WRITE):
        raise Forbidden("the caller lacks the upload privilege (scope assets:write)")
    return user


_HEADER_NAMES = {
    "x-api-key": "X-API-Key",
    "authorization": "Authorization",
    "accesstoken": "AccessToken",
}
Caller = Annotated[Principal, Depends(caller)]
Context = Annotated[AppContext, Depends(get_context)]


# -- shapes ------------------------------------------------------------------------------------


class _Body(InputModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class MetadataValue(_Body):
    """One of MetadataStringValue, MetadataRestrictedVocabularyValue, MetadataDateValue,
    MetadataMultiValue, MetadataGridValue: a field of the template and its value(s)."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    field_id: str | None = Field(None, alias="fieldId", max_length=200)
    id: str | None = Field(None, max_length=200)
    name: str | None = Field(None, max_length=200)
    type: str | None = Field(
        None, max_length=40, description="string | restrictedVocabulary | date | multiValue | grid"
    )
    value: Any = None
    values: list[Any] | None = Field(None, max_length=1000)
    rows: list[dict[str, Any]] | None = Field(None, max_length=1000)

    def key(self) -> str:
        key = self.field_id or self.id or self.name
        if not key:
            raise InvalidInput("every metadata value needs fieldId (or id, or name)")
        return key

    def content(self) -> Any:
        if self.rows is not None:
            return self.rows
        if self.values is not None:
            return self.values
        return self.value


class CreateAssetRequest(_Body):
    original_file_id: str | None = Field(
        None, alias="originalFileId", max_length=64, description="Make a new version of this."
    )
    metadata_template_id: str = Field(alias="metadataTemplateId", max_length=64)
    metadata: list[MetadataValue] = Field(max_length=MAX_METADATA_ITEMS)
    security_template_ids: list[Annotated[str, Field(max_length=64)]] = Field(
        alias="securityTemplateIds", max_length=50
    )
    filename: str = Field(min_length=1, max_length=1000)
    content_path: str | None = Field(None, alias="contentPath", max_length=2000)
    skip_transcode: bool | None = Field(None, alias="skipTranscode")
    filesize: int | None = Field(None, ge=0, le=2**62)


class UploadPartUrl(BaseModel):
    part_number: int = Field(serialization_alias="partNumber")
    url: str
    size: int = Field(description="Bytes to PUT to this URL (the last part: the rest).")


class CreateAssetResponse(BaseModel):
    object_id: str = Field(serialization_alias="objectId", description="The asset, as a UUID.")
    asset_id: str = Field(serialization_alias="assetId", description="The native 24-hex id.")
    upload_id: str = Field(serialization_alias="uploadId")
    version_of: str | None = Field(None, serialization_alias="versionOf")
    upload_url: str = Field(serialization_alias="uploadUrl", description="The first/only URL.")
    upload_urls: list[str] = Field(serialization_alias="uploadUrls")
    parts: list[UploadPartUrl]
    chunk_size: int = Field(serialization_alias="chunkSize")
    multipart: bool
    expires_at: datetime = Field(serialization_alias="expiresAt")


class CompletedPartIn(_Body):
    part_number: int = Field(alias="partNumber", ge=1, le=10_000)
    etag: str | None = Field(None, alias="eTag", max_length=100)


class CompleteRequest(_Body):
    object_id: str | None = Field(None, alias="objectId", max_length=64)
    upload_id: str | None = Field(None, alias="uploadId", max_length=64)
    action: Literal["complete", "cancel"] = "complete"
    parts: list[CompletedPartIn] | None = Field(None, max_length=10_000)
    sha256: str | None = Field(None, pattern="^[0-9a-f]{64}$")


class CompleteResponse(BaseModel):
    object_id: str = Field(serialization_alias="objectId")
    asset_id: str = Field(serialization_alias="assetId")
    upload_id: str = Field(serialization_alias="uploadId")
    status: Literal["COMPLETED", "CANCELLED"]
    version: int | None = None
    size: int | None = None
    sha256: str | None = None


# -- endpoints -------------------------------------------------------------------------------


@router.post(
    "/asset",
    response_model=CreateAssetResponse,
    response_model_by_alias=True,
    summary="Create an asset, a new version (originalFileId), or a metadata-only asset",
)
async def create_asset(
    data: CreateAssetRequest, principal: Caller, context: Context
) -> CreateAssetResponse:
    if data.content_path is not None:
        # Federated files (bytes left where they are in another bucket) need storage
        # providers; until they exist, refusing beats silently ignoring the path.
        raise InvalidInput("contentPath (federated files) is not supported by this server")
    if not data.security_template_ids:
        raise Forbidden("assign at least one security template you are granted")
    if data.filesize is not None and data.filesize > MAX_FILE_BYTES:
        raise InvalidInput(f"the file is larger than 5GB ({MAX_FILE_BYTES} bytes)")
    metadata = _metadata_document(data.metadata)
    fields = None
    asset_id = None
    if data.original_file_id is not None:
        asset_id = asset_id_of(data.original_file_id)
    else:
        fields = _fields(data, metadata)
    service = upload_service(context)
    ticket = await service.create(
        principal,
        filename=data.filename,
        size_bytes=data.filesize,
        part_size=CHUNK_BYTES if data.filesize and data.filesize > CHUNK_BYTES else None,
        asset_id=asset_id,
        fields=fields,
        upload_metadata={"skipTranscode": bool(data.skip_transcode)},
        auto_complete=True,
        keep_asset=True,
    )
    if asset_id is not None:
        # A new version keeps the asset's fields; the request's metadata and templates apply
        # to the asset only if they differ (and are then checked like any update).
        try:
            await _update_for_version(context, principal, asset_id, data, metadata)
        except BaseException:
            await service.cancel(principal, ticket.upload.id)
            raise
    parts = [
        UploadPartUrl(part_number=p.number, url=p.url, size=p.size_bytes) for p in ticket.parts
    ]
    return CreateAssetResponse(
        object_id=object_id(ticket.asset.id),
        asset_id=ticket.asset.id,
        upload_id=ticket.upload.id,
        version_of=object_id(asset_id) if asset_id else None,
        upload_url=parts[0].url,
        upload_urls=[p.url for p in parts],
        parts=parts,
        chunk_size=ticket.upload.part_size_bytes,
        multipart=len(parts) > 1,
        expires_at=ticket.upload.expires_at,
    )


@router.post(
    "/asset/complete",
    response_model=CompleteResponse,
    response_model_by_alias=True,
    summary="Complete (or cancel) the upload of a created asset or version",
)
async def complete_asset(
    data: CompleteRequest, principal: Caller, context: Context
) -> CompleteResponse:
    service = upload_service(context)
    upload_id = data.upload_id
    if upload_id is None:
        if data.object_id is None:
            raise InvalidInput("give uploadId, or the objectId the upload was for")
        upload_id = await service.open_session_of(principal, asset_id_of(data.object_id))
        if upload_id is None:
            raise NotFound("that asset has no upload waiting to be completed")
    if data.action == "cancel":
        upload, _ = await service.get(principal, upload_id)
        await service.cancel(principal, upload_id)
        cancelled = upload.asset_id or ""
        return CompleteResponse(
            object_id=object_id(cancelled),
            asset_id=cancelled,
            upload_id=upload_id,
            status="CANCELLED",
        )
    parts = None
    if data.parts is not None:
        parts = [ClientPart(p.part_number, p.etag) for p in data.parts]
    asset, version = await service.complete(principal, upload_id, parts, data.sha256)
    return CompleteResponse(
        object_id=object_id(asset.id),
        asset_id=asset.id,
        upload_id=upload_id,
        status="COMPLETED",
        version=version.number,
        size=version.size_bytes,
        sha256=version.sha256,
    )


# -- mapping -----------------------------------------------------------------------------------


def _metadata_document(values: list[MetadataValue]) -> dict[str, Any]:
    """The seed's array of typed values → the native {field: value} object."""
    document: dict[str, Any] = {}
    for item in values:
        key = item.key()
        if key in document:
            raise InvalidInput(f"metadata names the field {key!r} twice")
        document[key] = item.content()
    return document


def _fields(data: CreateAssetRequest, metadata: dict[str, Any]) -> AssetFields:
    try:
        return AssetFields.model_validate(
            {
                "metadata": metadata,
                "metadata_template_id": data.metadata_template_id,
                "security_template_ids": data.security_template_ids,
            }
        )
    except ValidationError as exc:
        errors = exc.errors(include_url=False, include_context=False, include_input=False)
        raise InvalidInput("the request body is invalid", errors=errors) from None


async def _update_for_version(
    context: AppContext,
    principal: Principal,
    asset_id: str,
    data: CreateAssetRequest,
    metadata: dict[str, Any],
) -> None:
    async with context.db.session() as session:
        service = AssetService(session, context.sniffer, jobs=context.job_service(session))
        asset = await service.get(principal, asset_id)
        changes: dict[str, Any] = {}
        if asset.meta != metadata or asset.metadata_template_id != data.metadata_template_id:
            changes["metadata"] = metadata
            changes["metadata_template_id"] = data.metadata_template_id
        if sorted(asset.security_template_ids or []) != sorted(data.security_template_ids):
            changes["security_template_ids"] = data.security_template_ids
        if changes:
            await service.update(principal, asset_id, AssetUpdate.model_validate(changes))
