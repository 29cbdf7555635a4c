from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from pydantic import ConfigDict, Field

from assetd.packages.models import PackageStatus
from assetd.packages.plan import Resolution
from assetd.tenants.schemas import CamelModel, InputModel

MAX_PAGE_SIZE = 1000


class ArtifactRead(CamelModel):
    id: str = Field(description="The artifact's id: the package's.")
    filename: str
    size_bytes: int
    sha256: str
    download_url: str


class ImportRecord(CamelModel):
    asset_id: str = Field(description="The entry's id in the package.")
    asset_type: str
    name: str
    description: str = ""
    result_code: str = Field(description="CREATED, UPDATED, UNCHANGED, CONFLICT or ERROR.")
    reason: str | None = Field(
        None,
        description="Why a CONFLICT (even one resolved): trashed, changed_locally, forbidden.",
    )
    resolved_to: str | None = Field(
        description="The tenant's id for the asset when it differs from the package's."
    )
    messages: list[str]


class CollectionRecord(CamelModel):
    collection_id: str
    name: str
    description: str = ""
    result_code: str
    reason: str | None = Field(None, description="Why a CONFLICT: forbidden, name_taken.")
    resolved_to: str | None
    messages: list[str]


class DependencyNode(CamelModel):
    id: str
    resolved_to: str | None
    name: str
    description: str = ""
    type: str
    qualifier: str = Field(
        description="package: an entry of this package; tenant: already in the tenant."
    )
    depends_on: list[str]
    required_by: list[str]


class UnresolvedDependency(CamelModel):
    id: str
    required_by: list[str]


class PolicyFinding(CamelModel):
    asset_id: str | None
    policy: str = Field(description="size, extension, type or quota.")
    message: str


class ImportReport(CamelModel):
    status: str = Field(
        description="READY (install may go ahead), BLOCKED (see blockers) or INSTALLED."
    )
    summary: dict[str, int]
    records: list[ImportRecord]
    collections: list[CollectionRecord]
    dependencies: dict[str, list[DependencyNode]] = Field(
        description="Every asset of the package and every tenant asset it needs, by type."
    )
    unresolved_dependencies: list[UnresolvedDependency]
    policy_findings: list[PolicyFinding]
    blockers: list[str]
    unused_members: list[str] = Field(
        description="Files in the zip that the manifest does not name (never installed)."
    )


class PackageRead(CamelModel):
    id: str
    name: str
    version: str
    format_version: int
    description: str
    status: PackageStatus
    artifact: ArtifactRead
    report: ImportReport
    created_at: datetime
    created_by: str | None
    installed_at: datetime | None
    installed_by: str | None


class PackagePage(CamelModel):
    items: list[PackageRead]
    page_number: int
    page_size: int
    total: int


class InstallRequest(InputModel):
    model_config = ConfigDict(extra="forbid")

    on_conflict: Resolution = Field(
        Resolution.fail,
        description="For every CONFLICT: fail (refuse the install), skip (keep the tenant's "
        "asset) or overwrite (install the package's, restoring it from the trash if needed).",
    )
    ignore_unresolved: bool = Field(
        False, description="Install although some dependencies resolve nowhere."
    )
    resolutions: dict[Annotated[str, Field(max_length=200)], Resolution] = Field(
        default_factory=dict,
        max_length=10_000,
        description="Per entry or collection id (the package's): overrides onConflict.",
    )


class ExportRequest(InputModel):
    model_config = ConfigDict(extra="forbid")

    asset_ids: list[Annotated[str, Field(max_length=64)]] = Field(
        default_factory=list, max_length=10_000
    )
    collection_id: str | None = Field(None, max_length=64)
    q: str | None = Field(None, max_length=4000, description="A query as in GET /v1/assets.")
    include_dependencies: bool = Field(
        True, description="Add, transitively, the assets the selection depends on."
    )
    name: str = Field("export", min_length=1, max_length=200)
    version: str = Field("1.0", min_length=1, max_length=50)
    description: str = Field("", max_length=10_000)


class DependenciesRead(CamelModel):
    asset_id: str
    depends_on: list[str]
    required_by: list[str]


class DependenciesUpdate(InputModel):
    model_config = ConfigDict(extra="forbid")

    depends_on: list[Annotated[str, Field(min_length=1, max_length=200)]] = Field(max_length=100)


def report_of(report: dict[str, Any]) -> ImportReport:
    return ImportReport.model_validate(report)
