"""Asset use cases: create, version, read, list, update, trash, restore, purge.

Framework-free: takes a session, a blob store and a sniffer; flushes, never commits.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import structlog
from sqlalchemy import ColumnElement
from sqlalchemy.ext.asyncio import AsyncSession

from assetd.assets import query
from assetd.assets.ingest import StagedUpload
from assetd.assets.models import Access, Asset, AssetKind, AssetState, AssetType, Version
from assetd.assets.policy import (
    check_extension,
    check_extension_matches,
    check_type,
    clean_filename,
    extension_of,
)
from assetd.assets.repository import AssetRepository, BlobRepository, VersionRepository
from assetd.assets.schemas import AssetCreate, AssetFields, AssetUpdate
from assetd.assets.sniff import Sniffer
from assetd.auth.principal import Principal
from assetd.collections.repository import CollectionRepository
from assetd.db.base import utcnow
from assetd.db.repository import insert_new
from assetd.errors import (
    Conflict,
    Forbidden,
    InvalidInput,
    NotFound,
    NotReady,
    PreconditionFailed,
    QuotaExceeded,
)
from assetd.events.models import EventType
from assetd.events.service import EventService
from assetd.ids import new_id
from assetd.jobs.service import JobService
from assetd.processing.kinds import EXTRACT, RENDITION_KINDS, SCAN, has_facts
from assetd.renditions.imaging import can_render
from assetd.renditions.repository import RenditionRepository
from assetd.storage.keys import blob_key
from assetd.templates.models import Action
from assetd.templates.service import MetadataTemplateService, SecurityTemplateService
from assetd.tenants.repository import TenantRepository

log = structlog.get_logger()

MAX_PAGE_SIZE = 1000

T = TypeVar("T")


@dataclass(frozen=True)
class ListParams:
    q: str | None = None
    sort: str | None = None
    page_number: int = 1
    page_size: int = 60
    cursor: str | None = None
    include_trashed: bool = False
    only_trashed: bool = False
    with_total: bool = False


@dataclass(frozen=True)
class PagePlan:
    """One page of a search: `where` filters (for counting), `page_where` also hides what
    the principal may not see and starts after the cursor."""

    where: list[ColumnElement[bool]]
    page_where: list[ColumnElement[bool]]
    keys: list[query.SortKey]
    page_size: int
    offset: int

    def cut(self, found: list[T]) -> tuple[list[T], str | None]:
        """The page out of page_size + 1 rows read, and the cursor to the next one."""
        if len(found) <= self.page_size:
            return found, None
        items = found[: self.page_size]
        return items, query.encode_cursor(self.keys, query.sort_values(self.keys, items[-1]))


@dataclass
class AssetList:
    items: list[Asset]
    next_cursor: str | None
    total: int | None


class AssetService:
    def __init__(
        self,
        session: AsyncSession,
        sniffer: Sniffer,
        fields: query.FieldMap = query.NATIVE_FIELDS,
        *,
        jobs: JobService | None = None,
    ) -> None:
        self.session = session
        # Where a new version's processing is scheduled (None: nothing is, e.g. in tools).
        self.jobs = jobs
        self.sniffer = sniffer
        self.fields = fields
        self.assets = AssetRepository(session)
        self.versions = VersionRepository(session)
        self.blobs = BlobRepository(session)
        self.tenants = TenantRepository(session)
        self.metadata_templates = MetadataTemplateService(session)
        self.security = SecurityTemplateService(session)
        self.events = EventService(session, jobs)

    # -- reading ---------------------------------------------------------------------------

    async def get(self, principal: Principal, asset_id: str, action: Action = Action.view) -> Asset:
        """The asset if the principal may see it (else 404) and do `action` on it (else 403)."""
        asset = await self.assets.get_visible(principal.tenant.id, asset_id)
        if asset is None:
            raise NotFound(f"asset {asset_id} not found")
        await self.security.authorize(principal, asset, action)
        return asset

    def plan_page(
        self,
        principal: Principal,
        params: ListParams,
        *,
        where: Sequence[ColumnElement[bool]] = (),
        dialect: str | None = None,
    ) -> PagePlan:
        """How to read one page of a search: its conditions, order, limit and offset.

        Shared by search() and the plain-row list read (assets.reads), so both always page,
        filter and hide exactly alike.
        """
        dialect = dialect or self.assets.dialect
        if not 1 <= params.page_size <= MAX_PAGE_SIZE:
            raise InvalidInput(f"pageSize must be between 1 and {MAX_PAGE_SIZE}")
        if params.page_number < 1:
            raise InvalidInput("pageNumber must be 1 or more")
        where = list(where)
        if params.only_trashed:
            where.append(Asset.state == AssetState.trashed)
        elif params.include_trashed:
            where.append(Asset.state.in_([AssetState.active, AssetState.trashed]))
        else:
            where.append(Asset.state == AssetState.active)
        groups = None
        if not principal.is_admin:
            groups = CollectionRepository.visible_ids(principal.tenant.id, principal.roles)
        condition = query.compile_query(
            params.q, self.fields, dialect=dialect, visible_groups=groups
        )
        if condition is not None:
            where.append(condition)
        keys = query.compile_sort(params.sort, self.fields, dialect=dialect)
        page_where = list(where)
        visible = self.security.visibility_condition(principal)
        if visible is not None:
            page_where.append(visible)
        offset = (params.page_number - 1) * params.page_size
        if params.cursor:
            page_where.append(query.cursor_condition(keys, params.cursor))
            offset = 0
        return PagePlan(where, page_where, keys, params.page_size, offset)

    async def count_matching(self, principal: Principal, plan: PagePlan) -> int:
        """How many assets the plan's filter matches that the principal may see."""
        where = list(plan.where)
        visible = self.security.visibility_condition(principal, whole_table=True)
        if visible is not None:
            where.append(visible)
        return await self.assets.count(principal.tenant.id, where=where)

    async def search(
        self,
        principal: Principal,
        params: ListParams,
        *,
        where: Sequence[ColumnElement[bool]] = (),
    ) -> AssetList:
        """A page of assets matching `params`, and `where` too (e.g. a collection's members)."""
        plan = self.plan_page(principal, params, where=where)
        found = await self.assets.find(
            principal.tenant.id,
            where=plan.page_where,
            order_by=query.order_by(plan.keys),
            limit=plan.page_size + 1,
            offset=plan.offset,
        )
        items, next_cursor = plan.cut(found)
        total = await self.count_matching(principal, plan) if params.with_total else None
        return AssetList(items, next_cursor, total)

    async def tenant_of(self, asset_id: str) -> str | None:
        """The tenant an asset id belongs to, for URLs that carry no tenant (seed 003 keys)."""
        return await self.assets.tenant_of(asset_id)

    async def list_versions(self, principal: Principal, asset_id: str) -> list[Version]:
        asset = await self.get(principal, asset_id)
        return await self.versions.list_for(principal.tenant.id, asset.id)

    async def content(
        self, tenant_id: str, asset: Asset, version_number: int | None = None
    ) -> Version:
        """The version whose bytes a download serves: the current one unless a number is given."""
        number = _content_number(asset, version_number)
        version = await self.versions.get_number(tenant_id, asset.id, number)
        if version is None:
            raise NotFound(f"asset {asset.id} has no version {number}")
        check_servable(version)
        return version

    async def authorize(self, principal: Principal, asset: Asset, action: Action) -> None:
        """404 unless the asset's security templates let the principal see it, 403 unless
        they let it do `action`; assets without templates are open to the whole tenant."""
        await self.security.authorize(principal, asset, action)

    async def download(
        self, principal: Principal, asset_id: str, version_number: int | None = None
    ) -> tuple[Asset, Version]:
        """find_content() for a principal who must be allowed to download (403) what it sees."""
        asset, version = await self.find_content(principal.tenant.id, asset_id, version_number)
        await self.security.authorize(principal, asset, Action.download)
        return asset, version

    async def find_content(
        self,
        tenant_id: str,
        asset_id: str,
        version_number: int | None = None,
        *,
        include_trashed: bool = True,
    ) -> tuple[Asset, Version]:
        """get() and content() in one query: the hot path of every download."""
        found = await self.assets.get_with_version(
            tenant_id, asset_id, version_number, include_trashed=include_trashed
        )
        if found is None:
            raise NotFound(f"asset {asset_id} not found")
        asset, version = found
        number = _content_number(asset, version_number)
        if version is None:
            raise NotFound(f"asset {asset.id} has no version {number}")
        check_servable(version)
        return asset, version

    # -- creating --------------------------------------------------------------------------

    async def create_from_json(
        self, principal: Principal, data: AssetCreate, *, asset_id: str | None = None
    ) -> Asset:
        """A LINK asset, or a BLOB asset with metadata only (content comes as a version).

        `asset_id` keeps an id from elsewhere (a package); by default a new one is made."""
        if data.kind is AssetKind.LINK and data.url is None:
            raise InvalidInput("a LINK asset needs a url")
        if data.kind is AssetKind.BLOB and data.url is not None:
            raise InvalidInput("a BLOB asset takes its content by upload, not by url")
        asset = self._new_asset(principal, data, data.kind, asset_id)
        asset.type = data.type or AssetType.other
        asset.url = str(data.url) if data.url is not None else None
        await self._add_new(principal, asset, data)
        log.info("asset.created", asset_id=asset.id, kind=asset.kind.value)
        return asset

    async def create_from_upload(
        self,
        principal: Principal,
        data: AssetFields,
        staged: StagedUpload,
        *,
        asset_id: str | None = None,
    ) -> Asset:
        try:
            asset = self._new_asset(principal, data, AssetKind.BLOB, asset_id)
            security_ids = await self._check_new(principal, asset, data)
            version, asset_type = await self._stage_version(principal, asset, staged, number=1)
            asset.type = data.type or asset_type
            if not asset.name:
                asset.name = version.original_name
            # The asset goes in with its current version's columns already set: one INSERT
            # each and no UPDATE after, without a flush (the write lock is held meanwhile).
            _make_current(asset, version)
            created = self.events.new_event(principal, EventType.asset_created, asset_id=asset.id)
            added = self.events.new_event(
                principal, EventType.version_added, asset_id=asset.id, version_number=version.number
            )
            # The rows of the asset, its version and both events by three statements.
            await insert_new(self.session, asset, version, created, added)
            await self.events.inserted(created, added)
            if security_ids:
                await self.security.assign(principal, asset, security_ids)
            await self._schedule_processing(principal, asset, version)
        except BaseException:
            await _discard_unpublished(staged)
            raise
        log.info("asset.created", asset_id=asset.id, kind="BLOB", size_bytes=staged.size_bytes)
        return asset

    async def add_version(
        self,
        principal: Principal,
        asset_id: str,
        staged: StagedUpload,
        expected_revision: int | None = None,
    ) -> Version:
        try:
            asset = await self._get_for_change(principal, asset_id, expected_revision, Action.edit)
            version = await self._add_content(principal, asset, staged)
        except BaseException:
            await _discard_unpublished(staged)
            raise
        self._touch(principal, asset)
        return version

    async def update_with_content(
        self,
        principal: Principal,
        asset_id: str,
        data: AssetUpdate,
        staged: StagedUpload,
        *,
        immutable: tuple[str, ...] = (),
    ) -> Version:
        """update() and add_version() as one change, so the revision moves once (seed 001 PUT)."""
        try:
            asset = await self.update(principal, asset_id, data, immutable=immutable)
            return await self._add_content(principal, asset, staged)
        except BaseException:
            await _discard_unpublished(staged)
            raise

    async def _add_content(
        self, principal: Principal, asset: Asset, staged: StagedUpload
    ) -> Version:
        if asset.kind is AssetKind.LINK:
            raise Conflict("a LINK asset has no content versions")
        if asset.state is AssetState.trashed:
            raise Conflict("restore the asset before adding a version")
        version = await self._attach_version(principal, asset, staged)
        log.info("asset.version_added", asset_id=asset.id, version=version.number)
        return version

    async def _add_new(self, principal: Principal, asset: Asset, data: AssetFields) -> None:
        """Insert the asset once its metadata fits its template and its security templates
        are ones the principal may assign."""
        security_ids = await self._check_new(principal, asset, data)
        await self.assets.add(asset)
        await self._record_new(principal, asset, security_ids)

    async def _check_new(self, principal: Principal, asset: Asset, data: AssetFields) -> list[str]:
        """The checks before a new asset is inserted; the security templates to assign."""
        asset.metadata_template_id = await self.metadata_templates.check_metadata(
            principal.tenant.id, data.metadata_template_id, data.metadata
        )
        return await self.security.check_assignable(principal, data.security_template_ids or [])

    async def _record_new(
        self, principal: Principal, asset: Asset, security_ids: list[str]
    ) -> None:
        await self.events.record(principal, EventType.asset_created, asset_id=asset.id)
        if security_ids:
            await self.security.assign(principal, asset, security_ids)

    def _new_asset(
        self, principal: Principal, data: AssetFields, kind: AssetKind, asset_id: str | None
    ) -> Asset:
        now = utcnow()
        asset = Asset(
            tenant_id=principal.tenant.id,
            kind=kind,
            type=data.type or AssetType.other,
            access=data.access or Access.PRIVATE,
            state=AssetState.active,
            name=data.name or "",
            description=data.description or "",
            tags=list(data.tags or []),
            ref_ids=[r.model_dump() for r in data.ref_ids or []],
            meta=dict(data.metadata or {}),
            segment_id=data.segment_id,
            revision=1,
            created_at=now,
            created_by=principal.actor,
            modified_at=now,
            modified_by=principal.actor,
        )
        # The id now, not at flush: a version may refer to it before the asset is in.
        asset.id = asset_id if asset_id is not None else new_id()
        return asset

    async def _attach_version(
        self, principal: Principal, asset: Asset, staged: StagedUpload
    ) -> Version:
        """A new version of an existing asset, made current."""
        version, asset_type = await self._stage_version(principal, asset, staged, number=None)
        await self.versions.add(version)
        await self._version_added(principal, asset, version)
        asset.type = asset_type
        if not asset.name:
            asset.name = version.original_name
        _make_current(asset, version)
        await self.session.flush()
        return version

    async def _stage_version(
        self, principal: Principal, asset: Asset, staged: StagedUpload, *, number: int | None
    ) -> tuple[Version, AssetType]:
        """The checks, the blob reference (publishing bytes nobody held) and the version row,
        not yet added; with the asset type its bytes suggest. number None: the next one."""
        tenant = principal.tenant
        filename = clean_filename(staged.filename)
        extension = extension_of(filename)
        check_extension(tenant, extension)
        mime_type, asset_type = self.sniffer.classify(staged.head, extension)
        check_extension_matches(extension, mime_type)
        check_type(tenant, mime_type, asset_type)

        blob_id, refcount = await self.blobs.reference(
            tenant.id, staged.sha256, staged.md5, staged.size_bytes
        )
        if refcount == 1:
            # Nobody held these bytes: they count against the quota, and ours get published
            # while the row is locked, so gc cannot delete them in between.
            if not await self.tenants.charge(tenant.id, staged.size_bytes):
                raise QuotaExceeded("the file does not fit in the tenant's storage quota")
            await staged.publish(blob_key(tenant.id, staged.sha256), self.session)
        else:
            await staged.discard()

        if number is None:
            number = await self.versions.next_number(tenant.id, asset.id)
        version = Version(
            id=new_id(),  # now, not at flush: the asset may point at it before either is in
            tenant_id=tenant.id,
            asset_id=asset.id,
            number=number,
            blob_id=blob_id,
            sha256=staged.sha256,
            md5=staged.md5,
            size_bytes=staged.size_bytes,
            mime_type=mime_type,
            original_name=filename,
            extension=extension,
            facts={},
            created_by=principal.actor,
            created_at=utcnow(),
        )
        if self.jobs is not None and self.jobs.scanning:
            version.scan_status = SCAN_PENDING
        return version, asset_type

    async def _version_added(self, principal: Principal, asset: Asset, version: Version) -> None:
        """The event and the processing jobs of a version just added."""
        await self.events.record(
            principal, EventType.version_added, asset_id=asset.id, version_number=version.number
        )
        await self._schedule_processing(principal, asset, version)

    async def _schedule_processing(
        self, principal: Principal, asset: Asset, version: Version
    ) -> None:
        """The processing jobs of a version just added."""
        if self.jobs is not None:
            # In this transaction: the job exists if and only if the version does.
            kinds = [SCAN] if self.jobs.scanning else []
            if can_render(version.mime_type):
                kinds = [*kinds, *RENDITION_KINDS.values()]
            if has_facts(version.mime_type):
                kinds = [*kinds, EXTRACT]
            await self.jobs.schedule(principal.tenant.id, asset.id, version.id, kinds)

    # -- changing --------------------------------------------------------------------------

    async def _get_for_change(
        self, principal: Principal, asset_id: str, expected_revision: int | None, action: Action
    ) -> Asset:
        asset = await self.assets.get_visible(principal.tenant.id, asset_id, lock=True)
        if asset is None:
            raise NotFound(f"asset {asset_id} not found")
        await self.security.authorize(principal, asset, action)
        if expected_revision is not None and expected_revision != asset.revision:
            raise PreconditionFailed(
                f"asset {asset_id} is at revision {asset.revision}, not {expected_revision}",
                revision=asset.revision,
            )
        return asset

    def _touch(self, principal: Principal, asset: Asset) -> None:
        asset.revision += 1
        asset.modified_at = utcnow()
        asset.modified_by = principal.actor

    async def update(
        self,
        principal: Principal,
        asset_id: str,
        data: AssetUpdate,
        expected_revision: int | None = None,
        *,
        immutable: tuple[str, ...] = (),
    ) -> Asset:
        if expected_revision is None and data.revision is not None:
            # A revision in the body is a plain conflict (409); If-Match is a failed
            # precondition (412).
            try:
                asset = await self._get_for_change(principal, asset_id, data.revision, Action.edit)
            except PreconditionFailed as exc:
                raise Conflict(exc.detail, **exc.extra) from None
        else:
            asset = await self._get_for_change(principal, asset_id, expected_revision, Action.edit)
        changes: dict[str, Any] = data.model_dump(exclude_unset=True, exclude={"revision"})
        for name in immutable:
            if name in changes and changes[name] != getattr(asset, name):
                raise InvalidInput(f"{name} cannot be changed")
        if "url" in changes:
            if asset.kind is not AssetKind.LINK:
                raise InvalidInput("only a LINK asset has a url")
            if changes["url"] is None:
                raise InvalidInput("a LINK asset needs a url")
            asset.url = str(changes.pop("url"))
        fields = sorted(changes)
        await self._change_templates(principal, asset, changes)
        renames = {"ref_ids": "ref_ids", "metadata": "meta"}
        for name, value in changes.items():
            if name in ("name", "description") and value is None:
                value = ""
            elif name in ("tags", "ref_ids", "metadata") and value is None:
                value = {} if name == "metadata" else []
            elif name in ("access", "type") and value is None:
                raise InvalidInput(f"{name} cannot be null")
            setattr(asset, renames.get(name, name), value)
        self._touch(principal, asset)
        await self.session.flush()
        await self.events.record(
            principal, EventType.asset_updated, asset_id=asset.id, details={"fields": fields}
        )
        log.info("asset.updated", asset_id=asset.id, fields=fields)
        return asset

    async def _change_templates(
        self, principal: Principal, asset: Asset, changes: dict[str, Any]
    ) -> None:
        """Check the metadata when it or its template changes; swap security templates if asked.

        Takes the template fields out of `changes`: they are set here, canonical and checked.
        """
        touches_metadata = "metadata" in changes or "metadata_template_id" in changes
        template_id = changes.pop("metadata_template_id", asset.metadata_template_id)
        if touches_metadata:
            metadata = changes["metadata"] if "metadata" in changes else asset.meta
            asset.metadata_template_id = await self.metadata_templates.check_metadata(
                principal.tenant.id, template_id, metadata
            )
        if "security_template_ids" in changes:
            security_ids = await self.security.check_assignable(
                principal,
                changes.pop("security_template_ids") or [],
                current=asset.security_template_ids,
            )
            await self.security.assign(principal, asset, security_ids)

    async def trash(
        self, principal: Principal, asset_id: str, expected_revision: int | None = None
    ) -> Asset:
        asset = await self._get_for_change(principal, asset_id, expected_revision, Action.delete)
        if asset.state is not AssetState.trashed:
            asset.state = AssetState.trashed
            asset.trashed_at = utcnow()
            self._touch(principal, asset)
            await self.session.flush()
            await self.events.record(principal, EventType.asset_trashed, asset_id=asset.id)
            log.info("asset.trashed", asset_id=asset.id)
        return asset

    async def restore(self, principal: Principal, asset_id: str) -> Asset:
        asset = await self._get_for_change(principal, asset_id, None, Action.delete)
        if asset.state is AssetState.trashed:
            asset.state = AssetState.active
            asset.trashed_at = None
            self._touch(principal, asset)
            await self.session.flush()
            await self.events.record(principal, EventType.asset_restored, asset_id=asset.id)
            log.info("asset.restored", asset_id=asset.id)
        return asset

    async def purge(self, principal: Principal, asset_id: str) -> None:
        """Delete the asset and its versions for good; bytes nobody else uses are released."""
        asset = await self._get_for_change(principal, asset_id, None, Action.delete)
        tenant_id = principal.tenant.id
        # Renditions first: deleting the versions would cascade them away with their blob ids.
        blob_ids = await RenditionRepository(self.session).delete_for_asset(tenant_id, asset.id)
        for blob_id in blob_ids + await self.versions.delete_for(tenant_id, asset.id):
            released = await self.blobs.release(tenant_id, blob_id)
            if released is not None:
                await self.tenants.release(tenant_id, released.size_bytes)
        await self.assets.delete(asset)
        await self.events.record(principal, EventType.asset_purged, asset_id=asset_id)
        log.info("asset.purged", asset_id=asset_id)

    async def promote_version(self, principal: Principal, asset_id: str, number: int) -> Asset:
        asset = await self._get_for_change(principal, asset_id, None, Action.edit)
        version = await self.versions.get_number(principal.tenant.id, asset.id, number)
        if version is None:
            raise NotFound(f"asset {asset_id} has no version {number}")
        if asset.version_number != number:
            _make_current(asset, version)
            self._touch(principal, asset)
            await self.session.flush()
            await self.events.record(
                principal,
                EventType.asset_updated,
                asset_id=asset.id,
                details={"currentVersion": number},
            )
        return asset


SCAN_PENDING = "pending"
SCAN_CLEAN = "clean"
SCAN_INFECTED = "infected"


def check_servable(version: Version) -> None:
    """A version still being scanned waits; an infected one is never served."""
    if version.scan_status == SCAN_PENDING:
        raise NotReady(f"version {version.number} is being scanned for viruses; try again")
    if version.scan_status == SCAN_INFECTED:
        raise Forbidden(
            f"version {version.number} is quarantined: {version.scan_result or 'infected'}"
        )


def _content_number(asset: Asset, version_number: int | None) -> int:
    if asset.kind is AssetKind.LINK:
        raise NotFound(f"asset {asset.id} is a link and has no content; see its url")
    number = version_number if version_number is not None else asset.version_number
    if number is None:
        raise NotFound(f"asset {asset.id} has no content yet")
    return number


def _make_current(asset: Asset, version: Version) -> None:
    asset.current_version_id = version.id
    asset.version_number = version.number
    asset.size_bytes = version.size_bytes
    asset.mime_type = version.mime_type
    asset.filename = version.original_name
    asset.extension = version.extension
    asset.sha256 = version.sha256
    asset.facts = dict(version.facts)


async def _discard_unpublished(staged: StagedUpload) -> None:
    if not staged.published:
        await staged.discard()
