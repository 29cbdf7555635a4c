"""Seed 000, "Add new asset (for edge runners)": register an object that already sits in one of
the tenant's storage providers, over ProviderService and AssetService.

Shapes in, service calls, shapes out. The choices the seed leaves open are written down in
docs/compat/edge-assets.md; every error answers `{status: false, error: {code, message}}`.
"""

from __future__ import annotations

import base64
import binascii
import re
from datetime import UTC, datetime
from typing import Annotated, Any

import anyio.to_thread
import structlog
from fastapi import APIRouter, Depends, Path, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from assetd.assets.ingest import ExpectedDigests
from assetd.assets.models import Asset, AssetType
from assetd.assets.policy import check_extension, clean_filename, extension_of, over_quota
from assetd.assets.policy import too_large as too_large_error
from assetd.assets.schemas import AssetFields
from assetd.assets.service import AssetService
from assetd.assets.uploads import upload_limit
from assetd.auth.dependencies import authenticate
from assetd.auth.principal import WRITE, Principal
from assetd.compat.routing import enveloped_route
from assetd.context import AppContext, get_context
from assetd.errors import (
    AssetdError,
    Forbidden,
    InvalidInput,
    NotFound,
    PolicyViolation,
    Unauthenticated,
)
from assetd.providers.service import ObjectMissing, ProviderService, fetch_object
from assetd.tenants.schemas import InputModel

log = structlog.get_logger()

TAG = "compat: edge assets"
PERMISSION = "mdm.global.asset.create"
# Number.MAX_SAFE_INTEGER, the seed's bound on every integer.
MAX_SAFE_INTEGER = 9007199254740991
ORGANIZATION_PATTERN = re.compile(r"^(([a-fA-F0-9]{24})|([a-zA-Z0-9\-]{3,}))$")
EDGE_TYPES = frozenset({"app", "book", "image", "script", "other", "certificate"})
# The stored asset keeps where it came from under this metadata key.
METADATA_KEY = "edgeAsset"

# The seed's documented errors: HTTP status, code, message.
NO_TOKEN = (401, 4002, "No auth token")
INVALID_TOKEN = (401, 4004, "Invalid Token")
NOT_FOUND = (404, 3001, "Entity not found")
EXTENSION_NOT_ALLOWED = (400, 5007, "File extension not allowed")
NO_FILE = (400, 5006, "No File Found in request")


# -- errors: {status: false, error: {code, message}} ------------------------------------------


class EdgeErrorDetail(BaseModel):
    code: int = Field(examples=[3001])
    message: str = Field(examples=["Entity not found"])
    details: list[str] = Field(
        default_factory=list, description="Not in the seed: what exactly was wrong."
    )


class EdgeError(BaseModel):
    status: bool = False
    error: EdgeErrorDetail


class NoToken(Unauthenticated):
    """No Authorization header at all (4002, where a bad one is 4004)."""


def envelope(
    error: tuple[int, int, str], details: list[str] | None = None, message: str | None = None
) -> JSONResponse:
    status, code, phrase = error
    body = EdgeError(
        error=EdgeErrorDetail(code=code, message=message or phrase, details=details or [])
    )
    headers = {"WWW-Authenticate": 'Bearer realm="assetd"'} if status == 401 else None
    return JSONResponse(body.model_dump(), status_code=status, headers=headers)


async def _domain_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, AssetdError)
    details = [exc.detail]
    if isinstance(exc, NoToken):
        return envelope(NO_TOKEN, details)
    if isinstance(exc, Unauthenticated | Forbidden):
        return envelope(INVALID_TOKEN, details)
    if isinstance(exc, ObjectMissing):
        return envelope(NO_FILE, details)
    if isinstance(exc, NotFound):
        return envelope(NOT_FOUND, details)
    if isinstance(exc, PolicyViolation):
        return envelope(EXTENSION_NOT_ALLOWED, details)
    # Everything else a client can cause is a 400 about the file it described: a size or
    # checksum that does not match, a size over the limit or quota, an unreadable provider.
    return envelope(NO_FILE, details, message=exc.detail)


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    details = []
    for error in list(exc.errors())[:20]:
        where = ".".join(str(part) for part in error.get("loc", ())[1:])
        details.append(f"{where}: {error.get('msg', '')}" if where else str(error.get("msg", "")))
    missing_file = any(
        tuple(e.get("loc", ()))[:2] == ("body", "file") and e.get("type") == "missing"
        for e in exc.errors()
    ) or any(tuple(e.get("loc", ())) == ("body",) for e in exc.errors())
    if missing_file:
        return envelope(NO_FILE, details)
    return envelope(NO_FILE, details, message="The request body is invalid")


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    if exc.status_code == 404:
        return envelope(NOT_FOUND)
    return envelope((exc.status_code, exc.status_code, str(exc.detail)))


async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    log.exception("request.failed", path=request.url.path)
    return envelope((500, 5000, "Internal server error"))


EdgeRoute = enveloped_route(
    {
        AssetdError: _domain_error,
        RequestValidationError: _validation_error,
        StarletteHTTPException: _http_error,
        Exception: _unexpected,
    }
)
router = APIRouter(
    tags=[TAG],
    route_class=EdgeRoute,
    responses={
        "4XX": {"model": EdgeError, "description": "{status: false, error: {code, message}}"},
        "5XX": {"model": EdgeError, "description": "{status: false, error: {code, message}}"},
    },
)


# -- credentials: Authorization: Bearer <token>, in the organization of the path -------------


async def caller(
    request: Request,
    organization_id: Annotated[str, Path(alias="organizationId")],
    context: Annotated[AppContext, Depends(get_context)],
) -> Principal:
    """The principal of the bearer token, if it may create assets in `organizationId`.

    The organization is the tenant, named by its id or its slug. Another tenant's, or one
    that cannot exist, answers 404 3001 exactly like a missing one (the seed has no 403).
    """
    raw = request.headers.get("authorization", "").strip()
    if not raw:
        raise NoToken("the Authorization header is missing")
    scheme, _, token = raw.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthenticated("the Authorization header must be 'Bearer <token>'")
    principal = await authenticate(context, token.strip())
    if not principal.has(WRITE):
        raise Forbidden(f"the token lacks the permission {PERMISSION}")
    tenant = principal.tenant
    if not ORGANIZATION_PATTERN.fullmatch(organization_id) or organization_id.lower() not in (
        tenant.id,
        tenant.slug,
    ):
        raise NotFound(f"organization {organization_id[:64]!r} not found")
    return principal


Caller = Annotated[Principal, Depends(caller)]
Context = Annotated[AppContext, Depends(get_context)]


# -- shapes ------------------------------------------------------------------------------------


class _Body(InputModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


def _text(limit: int, alias: str | None = None) -> Any:
    return Field(alias=alias, max_length=limit, strict=True)


def _count(alias: str | None = None) -> Any:
    return Field(alias=alias, ge=0, le=MAX_SAFE_INTEGER, strict=True)


class EdgeFileIn(_Body):
    mimetype: str = Field(max_length=128, strict=True, description="Advisory: content is sniffed.")
    bucket: str = _text(128)
    key: str = _text(128)
    location: str = _text(256)
    original_name: str = _text(128, "originalName")
    size: int = _count()
    storage_provider_id: str = Field(
        alias="storageProviderId", pattern=r"^[a-fA-F0-9]{24}$", strict=True
    )
    checksum: str = Field(
        max_length=256,
        strict=True,
        description="MD5 (32 hex digits) or SHA-256 (64 hex digits) of the object; also "
        "base64, or prefixed md5: / sha256:.",
    )


class ApkConfigIn(_Body):
    version_code: str = _text(256, "versionCode")
    version_name: str = _text(256, "versionName")
    package_name: str = _text(256, "packageName")
    min_sdk_version: str | None = Field(None, alias="minSdkVersion", max_length=256, strict=True)
    target_sdk_version: str | None = Field(
        None, alias="targetSdkVersion", max_length=256, strict=True
    )
    product_name: str | None = Field(None, alias="productName", max_length=256, strict=True)


class EdgeConfigIn(_Body):
    apk: ApkConfigIn | None = None


class EdgeAssetCreate(_Body):
    file: EdgeFileIn
    name: str | None = Field(None, max_length=256, strict=True)
    description: str | None = Field(None, max_length=256, strict=True)
    config: EdgeConfigIn | None = None
    segment_id: int | None = Field(None, alias="segmentId", ge=0, le=MAX_SAFE_INTEGER, strict=True)


class UploadedByInfo(BaseModel):
    email: str
    first_name: str = Field(serialization_alias="firstName")
    last_name: str = Field(serialization_alias="lastName")
    picture: str | None = None


class StorageProviderRef(BaseModel):
    id: str
    name: str
    region: str


class MsiConfig(BaseModel):
    product_code: str = Field(serialization_alias="productCode")
    product_version: str = Field(serialization_alias="productVersion")
    product_name: str = Field(serialization_alias="productName")
    manufacturer: str


class ApkConfig(BaseModel):
    version_code: str = Field(serialization_alias="versionCode")
    version_name: str = Field(serialization_alias="versionName")
    package_name: str = Field(serialization_alias="packageName")
    # The seed's response spells it minSDKVersion (its request: minSdkVersion).
    min_sdk_version: str | None = Field(None, serialization_alias="minSDKVersion")
    target_sdk_version: str | None = Field(None, serialization_alias="targetSdkVersion")
    product_name: str | None = Field(None, serialization_alias="productName")


class EdgeConfig(BaseModel):
    msi: MsiConfig | None = None
    apk: ApkConfig | None = None


class EdgeAssetRead(BaseModel):
    id: str
    organization: str
    type: str = Field(description="app | book | image | script | other | certificate")
    name: str
    description: str
    uploaded_by_info: UploadedByInfo = Field(serialization_alias="uploadedByInfo")
    file: str = Field(description="The object's location, as the request gave it.")
    size: int
    original_extension: str = Field(serialization_alias="originalExtension")
    storage_provider: StorageProviderRef = Field(serialization_alias="storageProvider")
    config: EdgeConfig
    version: int
    updated_at: str = Field(serialization_alias="updatedAt")
    created_at: str = Field(serialization_alias="createdAt")
    segment_id: int | None = Field(None, serialization_alias="segmentId")


class EdgeAssetCreated(BaseModel):
    status: bool = True
    data: EdgeAssetRead


# -- the endpoint ------------------------------------------------------------------------------

PATH = "/v1/organizations/{organizationId}/mdm/assets//edge/asset"


@router.post(
    PATH,
    response_model=EdgeAssetCreated,
    response_model_by_alias=True,
    response_model_exclude_none=True,
    summary="Add new asset (for edge runners)",
    description=f"Required Permission: {PERMISSION}",
)
@router.post(
    PATH.replace("//", "/"),
    response_model=EdgeAssetCreated,
    response_model_by_alias=True,
    response_model_exclude_none=True,
    summary="Add new asset (for edge runners), single-slash form",
    description=f"Required Permission: {PERMISSION}",
    include_in_schema=False,
)
async def create_edge_asset(
    data: EdgeAssetCreate, principal: Caller, context: Context
) -> EdgeAssetCreated:
    tenant = principal.tenant
    filename = clean_filename(data.file.original_name)
    # Refused from the name alone, before a byte moves.
    check_extension(tenant, extension_of(filename))
    expected = expected_digests(data.file.checksum)
    async with context.db.session(write=False) as session:
        provider, reader = await ProviderService(
            session, context.settings.provider_local_roots
        ).open(tenant.id, data.file.storage_provider_id)
        provider_ref = StorageProviderRef(
            id=provider.id, name=provider.name, region=provider.region
        )
    try:
        limit, by_quota = await upload_limit(context, principal)
        fetched = await fetch_object(
            reader,
            context.storage,
            context.sniffer,
            bucket=data.file.bucket,
            key=data.file.key,
            filename=filename,
            size_bytes=data.file.size,
            expected=expected,
            limit_bytes=limit,
            on_limit=over_quota if by_quota else too_large_error,
        )
    finally:
        await anyio.to_thread.run_sync(reader.close)
    config = _config(data.config, fetched.facts)
    edge_type = fetched.asset_type.value if fetched.asset_type.value in EDGE_TYPES else "other"
    fields = AssetFields(
        name=data.name or filename,
        description=data.description or "",
        type=AssetType(edge_type),
        segment_id=str(data.segment_id) if data.segment_id is not None else None,
        metadata={
            METADATA_KEY: {
                "storageProviderId": provider_ref.id,
                "bucket": data.file.bucket,
                "key": data.file.key,
                "location": data.file.location,
                "mimetype": data.file.mimetype,
                "checksum": data.file.checksum,
                "config": config.model_dump(by_alias=True, exclude_none=True),
            }
        },
    )
    async with context.db.session() as session:
        service = AssetService(session, context.sniffer, jobs=context.job_service(session))
        asset = await service.create_from_upload(principal, fields, fetched.staged)
    log.info("edge_asset.created", asset_id=asset.id, provider_id=provider_ref.id)
    return EdgeAssetCreated(
        data=_read(asset, principal, data, provider_ref, config, edge_type),
    )


# -- mapping -----------------------------------------------------------------------------------

_HEX32 = re.compile(r"^[0-9a-f]{32}$")
_HEX64 = re.compile(r"^[0-9a-f]{64}$")


def expected_digests(checksum: str) -> ExpectedDigests:
    """The checksum as MD5 or SHA-256, told apart by length; hex or base64, maybe prefixed."""
    value = checksum.strip()
    algorithm = None
    for separator in (":", "="):
        head, found, rest = value.partition(separator)
        name = head.strip().lower().replace("-", "")
        if found and name in ("md5", "sha256"):
            algorithm, value = name, rest.strip()
            break
    lowered = value.lower()
    if _HEX32.fullmatch(lowered) and algorithm in (None, "md5"):
        return ExpectedDigests(md5=lowered)
    if _HEX64.fullmatch(lowered) and algorithm in (None, "sha256"):
        return ExpectedDigests(sha256=lowered)
    try:
        raw = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raw = b""
    if len(raw) == 16 and algorithm in (None, "md5"):
        return ExpectedDigests(md5=raw.hex())
    if len(raw) == 32 and algorithm in (None, "sha256"):
        return ExpectedDigests(sha256=raw.hex())
    raise InvalidInput(
        "file.checksum must be the object's MD5 (32 hex digits) or SHA-256 (64 hex digits)"
    )


def _config(given: EdgeConfigIn | None, facts: dict[str, Any]) -> EdgeConfig:
    """The request's config.apk as given; what it leaves out, read from the file itself."""
    config = EdgeConfig()
    if given is not None and given.apk is not None:
        apk = given.apk
        config.apk = ApkConfig(
            version_code=apk.version_code,
            version_name=apk.version_name,
            package_name=apk.package_name,
            min_sdk_version=apk.min_sdk_version,
            target_sdk_version=apk.target_sdk_version,
            product_name=apk.product_name,
        )
    elif "packageName" in facts:
        config.apk = ApkConfig(
            version_code=_fact(facts, "versionCode") or "",
            version_name=_fact(facts, "versionName") or "",
            package_name=_fact(facts, "packageName") or "",
            min_sdk_version=_fact(facts, "minSdkVersion"),
            target_sdk_version=_fact(facts, "targetSdkVersion"),
            product_name=_fact(facts, "productName"),
        )
    if "productCode" in facts:
        config.msi = MsiConfig(
            product_code=_fact(facts, "productCode") or "",
            product_version=_fact(facts, "productVersion") or "",
            product_name=_fact(facts, "productName") or "",
            manufacturer=_fact(facts, "manufacturer") or "",
        )
    return config


def _fact(facts: dict[str, Any], key: str) -> str | None:
    value = facts.get(key)
    return None if value is None else str(value)[:256]


_EMAIL = re.compile(
    r"^(?!\.)(?!.*\.\.)([A-Za-z0-9_'+\-\.]*)[A-Za-z0-9_+-]@([A-Za-z0-9][A-Za-z0-9\-]*\.)+[A-Za-z]{2,}$"
)


def uploaded_by(principal: Principal) -> UploadedByInfo:
    """Who registered it. API keys have no e-mail address: they get one under .invalid."""
    email = principal.email or ""
    if len(email) > 256 or not _EMAIL.fullmatch(email):
        local = re.sub(r"[^A-Za-z0-9_+-]+", "-", principal.subject).strip("-")[:64] or "user"
        email = f"{local}@{principal.tenant.slug}.invalid"
    name = (principal.name or "").strip()
    first, _, last = name.partition(" ")
    return UploadedByInfo(
        email=email, first_name=first[:256] or principal.subject[:256], last_name=last[:256]
    )


def _timestamp(moment: datetime) -> str:
    moment = (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).astimezone(UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def _read(
    asset: Asset,
    principal: Principal,
    data: EdgeAssetCreate,
    provider: StorageProviderRef,
    config: EdgeConfig,
    edge_type: str,
) -> EdgeAssetRead:
    return EdgeAssetRead(
        id=asset.id,
        organization=asset.tenant_id,
        type=edge_type,
        name=asset.name[:256],
        description=asset.description[:256],
        uploaded_by_info=uploaded_by(principal),
        file=data.file.location,
        size=asset.size_bytes or 0,
        original_extension=(asset.extension or "")[:128],
        storage_provider=provider,
        config=config,
        version=asset.version_number or 1,
        updated_at=_timestamp(asset.modified_at),
        created_at=_timestamp(asset.created_at),
        segment_id=data.segment_id,
    )
