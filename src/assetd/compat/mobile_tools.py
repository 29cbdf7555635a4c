"""Seed 004, Oracle MCS-style package import (`/mobile/tools/1.0`), over PackageService.

Upload a package zip and get the import report as a `packageUpload`; install it by posting
back the `artifact` object the upload returned; download the zip by the artifact's
`downloadLink`. How assetd's assets, collections and report map onto the seed's shapes, and
the choices the seed leaves open, are written down in docs/compat/mobile-tools.md.
"""

from __future__ import annotations

import http
import re
from typing import Annotated, Any

import structlog
from fastapi import APIRouter, Depends, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from assetd.assets.models import AssetType
from assetd.auth.dependencies import require_scope
from assetd.auth.principal import INSTALL, READ, WRITE, Principal
from assetd.compat.routing import enveloped_route
from assetd.context import AppContext, get_context
from assetd.errors import AssetdError, InvalidInput
from assetd.packages.models import Package
from assetd.packages.plan import Resolution
from assetd.packages.report import render_report
from assetd.packages.routes import artifact_response, package_service, receive_package
from assetd.packages.service import InstallOptions, InstallRefused
from assetd.problems import status_for
from assetd.tenants.schemas import CamelModel, InputModel

log = structlog.get_logger()

TAG = "compat: mobile tools"
BASE = "/mobile/tools/1.0"
# The seed's own text sends clients to this misspelt path; they copy it verbatim.
TYPO_BASE = "/moble/tools/1.0"
MAX_PROPERTIES = 1000


# -- errors: Oracle's REST error object, which MCS answered with ------------------------------


class ToolsError(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    type: str = Field(description="Where the HTTP status is defined.")
    title: str
    status: int
    detail: str
    instance: str = Field(description="The request path.")
    error_code: str = Field(alias="o:errorCode", description="A stable code to act on.")
    error_details: list[dict[str, Any]] = Field(
        default_factory=list,
        alias="o:errorDetails",
        description="What exactly is wrong: each invalid field, or each reason a zip was refused.",
    )


def envelope(
    request: Request,
    status: int,
    title: str,
    detail: str,
    details: list[dict[str, Any]] | None = None,
) -> JSONResponse:
    body = ToolsError(
        type=f"https://www.rfc-editor.org/rfc/rfc9110#status.{status}",
        title=title,
        status=status,
        detail=detail,
        instance=request.url.path,
        error_code="urn:assetd:error:" + re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-"),
        error_details=details or [],
    )
    headers = {"WWW-Authenticate": 'Bearer realm="assetd"'} if status == 401 else None
    return JSONResponse(body.model_dump(by_alias=True), status_code=status, headers=headers)


def _reason(status: int) -> str:
    try:
        return http.HTTPStatus(status).phrase
    except ValueError:
        return "Error"


async def _domain_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, AssetdError)
    problems = exc.extra.get("problems") or []
    details = [
        {"detail": p.get("message"), "o:errorCode": p.get("code"), "o:errorPath": p.get("path")}
        for p in problems
        if isinstance(p, dict)
    ]
    return envelope(request, status_for(exc), exc.title, exc.detail, details)


async def _validation_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    details = [
        {"detail": e.get("msg", ""), "o:errorPath": ".".join(str(p) for p in e.get("loc", ()))}
        for e in list(exc.errors())[:50]
    ]
    first = details[0] if details else {"o:errorPath": "", "detail": "invalid request"}
    return envelope(
        request, 400, "Invalid request", f"{first['o:errorPath']}: {first['detail']}", details
    )


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    return envelope(request, exc.status_code, _reason(exc.status_code), str(exc.detail))


async def _unexpected(request: Request, exc: Exception) -> Response:
    log.exception("request.failed", path=request.url.path)
    return envelope(
        request, 500, "Internal error", "the server failed; the request id identifies it"
    )


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
    responses={"4XX": {"model": ToolsError, "description": "Oracle REST error object"}},
)

Context = Annotated[AppContext, Depends(get_context)]
Reader = Annotated[Principal, Depends(require_scope(READ))]
Writer = Annotated[Principal, Depends(require_scope(WRITE))]
Installer = Annotated[Principal, Depends(require_scope(INSTALL))]


# -- shapes ----------------------------------------------------------------------------------


class _Entity(CamelModel):
    """assetGet: the fields every MCS entity carries. assetd keeps no such lifecycle for
    what a package ships, so most are null; see docs/compat/mobile-tools.md."""

    id: str | None
    name: str
    version: str | None
    desc: str | None = None
    links: list[dict[str, Any]] = Field(default_factory=list)
    published: bool | None = False
    in_trash: bool | None = False
    action_comment: str | None = None
    etag: str | None = None
    created_on: str | None = None
    modified_on: str | None = None
    modified_by: str | None = None
    deleted_on: str | None = None
    deleted_by: str | None = None


class AssetShort(CamelModel):
    id: str
    name: str | None
    version: str | None
    type: str | None = Field(description="Image, Document, …, or null when unresolved.")


class AssetDependency(_Entity):
    qualifier: str = Field(description="self: shipped in this package; tenant: already there.")
    asset_type: str = Field(description="Image, Document, Video, …")
    resolved_to: str | None = Field(
        description="The tenant's id for the asset when it differs from the package's."
    )
    uses: list[AssetShort] = Field(description="What the asset depends on.")
    used_by: list[AssetShort] = Field(description="The package's assets that depend on it.")
    roles: list[dict[str, Any]] = Field(default_factory=list)


class CollectionDependency(_Entity):
    qualifier: str = "self"
    resolved_to: str | None
    user_isolated: bool = False
    sync_control: bool = False
    guid: str | None = None
    roles: list[dict[str, Any]] = Field(default_factory=list)


class UnresolvedDependency(CamelModel):
    id: str = Field(description="The id an asset depends on that neither package nor tenant has.")
    required_by: list[str]


class Dependencies(CamelModel):
    """The seed's keys always, MCS kinds assetd lacks as []; then one key per assetd type."""

    mobilebackends: list[dict[str, Any]] = Field(default_factory=list)
    apis: list[dict[str, Any]] = Field(default_factory=list)
    implementations: list[dict[str, Any]] = Field(default_factory=list)
    connectors: list[dict[str, Any]] = Field(default_factory=list)
    collections: list[CollectionDependency]
    unresolved_dependencies: list[UnresolvedDependency]
    roles: list[dict[str, Any]] = Field(default_factory=list)
    packages: list[AssetDependency]
    clients: list[dict[str, Any]] = Field(default_factory=list)
    images: list[AssetDependency]
    documents: list[AssetDependency]
    videos: list[AssetDependency]
    audios: list[AssetDependency]
    apps: list[AssetDependency]
    books: list[AssetDependency]
    scripts: list[AssetDependency]
    certificates: list[AssetDependency]
    others: list[AssetDependency]


class LocalizedMessage(CamelModel):
    message: str
    params: list[str] = Field(default_factory=list)


class ChecklistRecord(CamelModel):
    asset_id: str = Field(description="The asset's (or collection's) id in the package.")
    asset_type: str = Field(description="Image, Document, …, or StorageCollection.")
    result_code: str = Field(description="CREATED, UPDATED, UNCHANGED, CONFLICT or ERROR.")
    resolved_to: str | None
    messages: list[LocalizedMessage]


class ImportReport(CamelModel):
    records: list[ChecklistRecord]
    dependencies: Dependencies


class PolicyResult(CamelModel):
    asset_id: str | None
    policy: str = Field(description="size, extension, type or quota.")
    message: str


class PolicyValidationReport(CamelModel):
    valid: bool
    validation_results: list[PolicyResult]


class Artifact(CamelModel):
    name: str
    id: str
    properties: dict[str, str]
    download_link: str


class PackageGet(_Entity):
    published: bool | None = None
    in_trash: bool | None = None
    package_type: str | None = None
    documentation: str | None = None
    system_version: str | None = None
    format_version: int


class PackageUpload(CamelModel):
    policies: list[dict[str, Any]] | None = Field(
        None, description="Always null: assetd packages carry no environment policies."
    )
    import_results: ImportReport
    status: str = Field(
        description="SUCCESS: installed, or installable as it is; FAILURE: install refuses "
        "it until the conflicts, errors or unresolved dependencies are dealt with."
    )
    policy_validation_report: PolicyValidationReport | None
    artifact: Artifact
    package: PackageGet


class ArtifactRef(InputModel):
    """The artifact object as the upload returned it; only `id` is needed."""

    model_config = ConfigDict(extra="ignore")

    id: str = Field(min_length=1, max_length=200)
    name: str | None = Field(None, max_length=1000)
    properties: dict[str, str | bool] | None = Field(
        None,
        max_length=MAX_PROPERTIES,
        description='Install options: "on.conflict" (fail|skip|overwrite), '
        '"on.conflict.<assetId>" (per asset or collection), "ignore.unresolved" (true|false).',
    )
    download_link: str | None = Field(None, max_length=2000)


# -- mapping ---------------------------------------------------------------------------------

# Record types in MCS style (PascalCase singular), and the dependencies key of each type.
TYPE_NAMES = {t: t.value.capitalize() for t in AssetType}
TYPE_KEYS = {t: f"{t.value}s" for t in AssetType}
COLLECTION_TYPE = "StorageCollection"
_QUALIFIERS = {"package": "self", "tenant": "tenant"}
_STATUS = {"READY": "SUCCESS", "INSTALLED": "SUCCESS", "BLOCKED": "FAILURE"}


def _type_name(value: str) -> str:
    try:
        return TYPE_NAMES[AssetType(value)]
    except ValueError:
        return value.capitalize()


def package_upload(package: Package, report: dict[str, Any]) -> PackageUpload:
    """The seed's packageUpload for a package and one of its (native) reports."""
    version = package.version
    nodes: dict[str, dict[str, Any]] = {
        node["id"]: node for group in report.get("dependencies", {}).values() for node in group
    }

    def short(asset_id: str) -> AssetShort:
        node = nodes.get(asset_id)
        if node is None:
            return AssetShort(id=asset_id, name=None, version=None, type=None)
        return AssetShort(
            id=asset_id,
            name=node["name"],
            version=version if node["qualifier"] == "package" else None,
            type=_type_name(node["type"]),
        )

    # The package's assets whose tenant copy is in the trash (a CONFLICT the report names).
    trashed = {r["assetId"] for r in report.get("records", []) if r.get("reason") == "trashed"}
    grouped: dict[str, list[AssetDependency]] = {key: [] for key in TYPE_KEYS.values()}
    for node in nodes.values():
        shipped = node["qualifier"] == "package"
        try:
            key = TYPE_KEYS[AssetType(node["type"])]
        except ValueError:
            key = "others"
        grouped[key].append(
            AssetDependency(
                id=node["id"],
                name=node["name"],
                desc=node.get("description") or None,
                in_trash=node["id"] in trashed,
                # What the package ships is at the package's version; a tenant asset has
                # revisions, not a version the report knows.
                version=version if shipped else None,
                qualifier=_QUALIFIERS.get(node["qualifier"], node["qualifier"]),
                asset_type=_type_name(node["type"]),
                resolved_to=node.get("resolvedTo"),
                uses=[short(d) for d in node.get("dependsOn", [])],
                used_by=[short(r) for r in node.get("requiredBy", [])],
            )
        )
    collections = [
        CollectionDependency(
            id=c["collectionId"],
            name=c["name"],
            desc=c.get("description") or None,
            version=version,
            resolved_to=c.get("resolvedTo"),
        )
        for c in report.get("collections", [])
    ]
    records = [
        ChecklistRecord(
            asset_id=r["assetId"],
            asset_type=_type_name(r["assetType"]),
            result_code=r["resultCode"],
            resolved_to=r.get("resolvedTo"),
            messages=[LocalizedMessage(message=m) for m in r.get("messages", [])],
        )
        for r in report.get("records", [])
    ]
    # Collections are created before the assets that join them, so they are listed first.
    records[:0] = [
        ChecklistRecord(
            asset_id=c["collectionId"],
            asset_type=COLLECTION_TYPE,
            result_code=c["resultCode"],
            resolved_to=c.get("resolvedTo"),
            messages=[LocalizedMessage(message=m) for m in c.get("messages", [])],
        )
        for c in report.get("collections", [])
    ]
    findings = [
        PolicyResult(asset_id=f.get("assetId"), policy=f["policy"], message=f["message"])
        for f in report.get("policyFindings", [])
    ]
    return PackageUpload(
        policies=None,
        import_results=ImportReport(
            records=records,
            dependencies=Dependencies(
                collections=collections,
                unresolved_dependencies=[
                    UnresolvedDependency(id=u["id"], required_by=list(u["requiredBy"]))
                    for u in report.get("unresolvedDependencies", [])
                ],
                **grouped,
            ),
        ),
        status=_STATUS.get(report.get("status", ""), "FAILURE"),
        policy_validation_report=(
            PolicyValidationReport(valid=False, validation_results=findings) if findings else None
        ),
        artifact=Artifact(
            name=package.filename,
            id=package.id,
            properties={"is.package": "true"},
            download_link=f"{BASE}/artifacts/{package.id}",
        ),
        package=PackageGet(
            # As in the seed: the package is described by its manifest, not an entity yet;
            # the artifact id is what identifies it.
            id=None,
            name=package.name,
            version=package.version,
            desc=package.description or None,
            format_version=package.format_version,
        ),
    )


def install_options(properties: dict[str, str | bool] | None) -> InstallOptions:
    """Install choices carried in the artifact's properties (unknown ones are ignored)."""
    on_conflict = Resolution.fail
    ignore_unresolved = False
    resolutions: dict[str, Resolution] = {}
    for name, raw in (properties or {}).items():
        value = str(raw).strip().lower()
        if name == "on.conflict":
            on_conflict = _resolution(name, value)
        elif name.startswith("on.conflict."):
            resolutions[name.removeprefix("on.conflict.")] = _resolution(name, value)
        elif name == "ignore.unresolved":
            if value not in ("true", "false"):
                raise InvalidInput(f'properties["{name}"] must be "true" or "false"')
            ignore_unresolved = value == "true"
    return InstallOptions(
        on_conflict=on_conflict, ignore_unresolved=ignore_unresolved, resolutions=resolutions
    )


def _resolution(name: str, value: str) -> Resolution:
    try:
        return Resolution(value)
    except ValueError:
        raise InvalidInput(
            f'properties["{name[:240]}"] must be one of fail, skip, overwrite'
        ) from None


# -- routes ----------------------------------------------------------------------------------

UPLOAD_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["file"],
                    "properties": {"file": {"type": "string", "format": "binary"}},
                }
            }
        },
    }
}


@router.post(
    f"{BASE}/import/package/upload",
    response_model=PackageUpload,
    openapi_extra=UPLOAD_BODY,
    summary="Upload a package (multipart `file`): kept as an artifact, reported on, not installed",
    responses={
        413: {"model": ToolsError, "description": "Over the package size limit or the quota."},
        422: {"model": ToolsError, "description": "A hostile or broken zip (o:errorDetails)."},
    },
)
async def upload_tools_package(
    request: Request, principal: Writer, context: Context
) -> PackageUpload:
    if not request.headers.get("content-type", "").lower().startswith("multipart/form-data"):
        raise InvalidInput("send multipart/form-data with the package in the 'file' part")
    staged = await receive_package(request, context, principal, file_field="file")
    package = await package_service(context).upload(principal, staged)
    return package_upload(package, package.report)


async def install_tools_package(
    artifact: ArtifactRef, principal: Installer, context: Context
) -> Response:
    options = install_options(artifact.properties)
    service = package_service(context)
    try:
        package, plan = await service.install(principal, artifact.id, options)
    except InstallRefused as exc:
        # The seed's clients read the same packageUpload on failure: which records conflict,
        # what is unresolved. The package is re-read for its artifact and manifest fields.
        refused = await service.get(principal, artifact.id)
        body = package_upload(refused, exc.extra["report"])
        return JSONResponse(body.model_dump(mode="json", by_alias=True), status_code=409)
    # This install's plan, not the stored report: a second install shows UNCHANGED records.
    report = render_report(plan, list(package.report.get("unusedMembers", [])), installed=True)
    body = package_upload(package, report)
    return JSONResponse(body.model_dump(mode="json", by_alias=True))


_INSTALL_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"model": PackageUpload, "description": "Installed (or already installed)."},
    409: {
        "model": PackageUpload,
        "description": "Refused: conflicts, errors or unresolved dependencies; status FAILURE.",
    },
}
router.add_api_route(
    f"{BASE}/import/package/install",
    install_tools_package,
    methods=["POST"],
    response_class=JSONResponse,
    responses=_INSTALL_RESPONSES,
    summary="Install an uploaded package: send the artifact object the upload returned",
)
router.add_api_route(
    f"{TYPO_BASE}/import/package/install",
    install_tools_package,
    methods=["POST"],
    response_class=JSONResponse,
    include_in_schema=False,
)


@router.get(
    f"{BASE}/artifacts/{{artifact_id}}",
    response_class=Response,
    responses={200: {"content": {"application/zip": {}}, "description": "The zip as uploaded."}},
    summary="Download an uploaded package's zip",
)
async def download_tools_artifact(
    artifact_id: str, principal: Reader, context: Context
) -> Response:
    package, key = await package_service(context).artifact(principal, artifact_id)
    return await artifact_response(context, package, key)
