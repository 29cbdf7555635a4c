"""Package use cases: upload (store the zip, report what install would do), install
(all entries or none, idempotent), export (a selection streamed as a package).

Framework-free. Like uploads, it opens its own sessions: reading a zip and copying its
members take seconds and must not hold SQLite's write lock longer than the SQL needs.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import anyio.to_thread
import structlog
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from assetd.assets.ingest import StagedUpload
from assetd.assets.models import Asset, AssetKind
from assetd.assets.policy import clean_filename
from assetd.assets.repository import BlobRepository
from assetd.assets.schemas import AssetCreate, AssetFields, AssetUpdate
from assetd.assets.service import AssetService
from assetd.assets.sniff import SNIFF_BYTES, Sniffer
from assetd.auth.principal import Principal
from assetd.collections.schemas import (
    MAX_ASSETS_PER_CALL,
    CollectionAssetsAdd,
    CollectionCreate,
    CollectionUpdate,
)
from assetd.collections.service import CollectionService
from assetd.config import Settings
from assetd.db.base import utcnow
from assetd.db.session import Database
from assetd.errors import (
    AssetdError,
    Conflict,
    InvalidInput,
    NotFound,
    QuotaExceeded,
)
from assetd.events.models import EventType
from assetd.events.service import EventService
from assetd.ids import is_id
from assetd.jobs.service import JobService
from assetd.packages.archive import (
    Inspection,
    Limits,
    MemberFacts,
    PackageRefused,
    inspect,
    open_package,
    stage_member,
)
from assetd.packages.manifest import MANIFEST_PATH, Manifest, PackageEntry
from assetd.packages.models import OriginKind, Package, PackageStatus
from assetd.packages.plan import (
    ExistingAsset,
    ExistingCollection,
    Plan,
    Resolution,
    ResultCode,
    TenantView,
    make_plan,
)
from assetd.packages.report import chosen_ids, render_report
from assetd.packages.repository import PackageFactsRepository, PackageRepository
from assetd.storage.base import BlobStorage
from assetd.storage.keys import blob_key
from assetd.templates.models import Action
from assetd.templates.service import SecurityTemplateService
from assetd.tenants.repository import TenantRepository
from assetd.tenants.service import TenantService

log = structlog.get_logger()

MAX_PAGE_SIZE = 1000


class InstallRefused(Conflict):
    """The report has conflicts, errors or unresolved dependencies nobody said how to treat."""

    title = "Install refused"


@dataclass(frozen=True)
class InstallOptions:
    on_conflict: Resolution = Resolution.fail
    ignore_unresolved: bool = False
    # Per entry or collection (the package's id): beats on_conflict.
    resolutions: dict[str, Resolution] = field(default_factory=dict)


class PackageService:
    def __init__(
        self,
        db: Database,
        storage: BlobStorage,
        sniffer: Sniffer,
        settings: Settings,
        jobs: Callable[[AsyncSession], JobService] | None = None,
    ) -> None:
        self.db = db
        self.storage = storage
        self.sniffer = sniffer
        self.settings = settings
        self._jobs = jobs

    @property
    def limits(self) -> Limits:
        return Limits(
            max_members=self.settings.package_max_members,
            max_uncompressed_bytes=self.settings.package_max_uncompressed_bytes,
            max_ratio=self.settings.package_max_ratio,
        )

    def _assets(self, session: AsyncSession, sniffer: Sniffer | None = None) -> AssetService:
        jobs = self._jobs(session) if self._jobs is not None else None
        return AssetService(session, sniffer or self.sniffer, jobs=jobs)

    # -- upload and report -------------------------------------------------------------------

    async def upload(self, principal: Principal, staged: StagedUpload) -> Package:
        """Keep the zip as the package's artifact and report what installing it would do.

        A hostile or broken zip raises PackageRefused and leaves nothing behind: the bytes
        are deleted while their blob row is still locked, then the row is rolled back.
        """
        tenant_id = principal.tenant.id
        key = blob_key(tenant_id, staged.sha256)
        try:
            async with self.db.session() as session:
                blob_id, refcount = await BlobRepository(session).reference(
                    tenant_id, staged.sha256, staged.md5, staged.size_bytes
                )
                new_bytes = refcount == 1
                if new_bytes:
                    if not await TenantRepository(session).charge(tenant_id, staged.size_bytes):
                        raise QuotaExceeded("the package does not fit in the tenant's quota")
                    await staged.publish(key, session)
                else:
                    await staged.discard()
                try:
                    inspection = await anyio.to_thread.run_sync(
                        self._inspect, key, staged.size_bytes
                    )
                except PackageRefused:
                    if new_bytes:
                        await anyio.to_thread.run_sync(self.storage.delete, key)
                    raise
                plan = await self._plan(session, principal, inspection)
                manifest = inspection.manifest
                package = Package(
                    tenant_id=tenant_id,
                    name=manifest.name,
                    version=manifest.version,
                    format_version=manifest.format_version,
                    description=manifest.description,
                    filename=clean_filename(staged.filename) or f"{manifest.name}.zip",
                    blob_id=blob_id,
                    sha256=staged.sha256,
                    size_bytes=staged.size_bytes,
                    status=PackageStatus.reported,
                    report=render_report(plan, inspection.unused),
                    created_by=principal.actor,
                    created_at=utcnow(),
                )
                await PackageRepository(session).add(package)
        except BaseException:
            if not staged.published:
                await staged.discard()
            raise
        log.info(
            "package.reported",
            package_id=package.id,
            entries=len(manifest.entries),
            status=package.report["status"],
        )
        return package

    def _inspect(self, key: str, size: int) -> Inspection:
        with open_package(self.storage, key, size) as archive:
            return inspect(archive, self.limits)

    def _index(self, key: str, size: int) -> Inspection:
        """The manifest and the head of every file it names, read again for an install.

        The artifact is immutable and was measured member by member when it was reported;
        install copies every member it needs and checks its SHA-256 again then.
        """
        with open_package(self.storage, key, size) as archive:
            with archive.open(MANIFEST_PATH) as stream:
                manifest = Manifest.model_validate(json.loads(stream.read()))
            files: dict[str, MemberFacts] = {}
            for entry in manifest.entries:
                if entry.file is None or entry.file.path in files:
                    continue
                member = archive.getinfo(entry.file.path)
                with archive.open(member) as stream:
                    head = stream.read(SNIFF_BYTES)
                files[entry.file.path] = MemberFacts(entry.file.sha256, member.file_size, head)
        return Inspection(manifest, files)

    async def _plan(
        self,
        session: AsyncSession,
        principal: Principal,
        inspection: Inspection,
        options: InstallOptions | None = None,
        chosen_ids: dict[str, str] | None = None,
        sniffer: Sniffer | None = None,
    ) -> Plan:
        options = options or InstallOptions()
        view = await self._view(session, principal, inspection)
        return make_plan(
            inspection.manifest,
            inspection.files,
            view,
            (sniffer or self.sniffer).classify,
            resolutions=options.resolutions,
            default_resolution=options.on_conflict,
            chosen_ids=chosen_ids,
        )

    async def _view(
        self, session: AsyncSession, principal: Principal, inspection: Inspection
    ) -> TenantView:
        """The tenant as far as this manifest is concerned, in a handful of bulk queries."""
        manifest = inspection.manifest
        tenant_id = principal.tenant.id
        facts = PackageFactsRepository(session)
        security = SecurityTemplateService(session)
        entry_ids = [e.id for e in manifest.entries]
        dependency_ids = [d for e in manifest.entries for d in e.depends_on]

        origins = {
            o.source_id: (o.target_id, o.revision)
            for o in await facts.origins(tenant_id, OriginKind.asset, [*entry_ids, *dependency_ids])
        }
        wanted = [i for i in [*entry_ids, *dependency_ids] if is_id(i)]
        wanted += [target for target, _ in origins.values()]
        rows = await facts.assets(tenant_id, wanted)
        row_ids = [a.id for a in rows]
        visible = _ids_allowed(await self._allowed(facts, security, principal, row_ids))
        editable = _ids_allowed(
            await self._allowed(facts, security, principal, row_ids, Action.edit)
        )
        memberships = await facts.memberships(tenant_id, row_ids)
        dependencies = await facts.dependencies(tenant_id, row_ids)
        assets = {
            a.id: _existing(
                a,
                can_see=visible(a.id),
                can_edit=editable(a.id),
                collections=memberships.get(a.id, set()),
                depends_on=dependencies.get(a.id, set()),
            )
            for a in rows
        }

        collection_origins = {
            o.source_id: o.target_id
            for o in await facts.origins(
                tenant_id, OriginKind.collection, [c.id for c in manifest.collections]
            )
        }
        found = await facts.collections(
            tenant_id,
            [*[c.id for c in manifest.collections if is_id(c.id)], *collection_origins.values()],
            [c.name for c in manifest.collections],
        )
        collection_service = CollectionService(session, self._assets(session))
        collections = {}
        for collection in found:
            try:
                await collection_service.get(principal, collection.id, Action.edit)
                can_edit = True
            except AssetdError:
                can_edit = False
            collections[collection.id] = ExistingCollection(
                collection.id, collection.name, collection.description, can_edit
            )

        new_ids = [i for i in entry_ids if is_id(i)] + [
            c.id for c in manifest.collections if is_id(c.id)
        ]
        return TenantView(
            tenant=principal.tenant,
            max_file_size_bytes=_size_limit(principal, self.settings),
            used_bytes=await TenantService(session).used_bytes(tenant_id),
            assets=assets,
            asset_origins=origins,
            collections=collections,
            collection_origins=collection_origins,
            taken_ids=frozenset(await facts.taken_ids(new_ids)),
            known_blobs=frozenset(
                await facts.known_blobs(tenant_id, [f.sha256 for f in inspection.files.values()])
            ),
        )

    async def _allowed(
        self,
        facts: PackageFactsRepository,
        security: SecurityTemplateService,
        principal: Principal,
        ids: list[str],
        action: Action = Action.view,
    ) -> set[str] | None:
        """Which of ids the principal may `action`; None: all of them."""
        condition = security.visibility_condition(principal, action)
        if condition is None:
            return None
        return await facts.visible_ids(principal.tenant.id, ids, condition)

    # -- reading -----------------------------------------------------------------------------

    async def get(self, principal: Principal, package_id: str) -> Package:
        async with self.db.session(write=False) as session:
            return await self._get(session, principal, package_id)

    async def _get(self, session: AsyncSession, principal: Principal, package_id: str) -> Package:
        package = None
        if is_id(package_id):
            package = await PackageRepository(session).get_for(principal.tenant.id, package_id)
        if package is None:
            raise NotFound(f"package {package_id} not found")
        return package

    async def list_page(
        self, principal: Principal, page_number: int = 1, page_size: int = 100
    ) -> tuple[list[Package], int]:
        if not 1 <= page_size <= MAX_PAGE_SIZE:
            raise InvalidInput(f"pageSize must be between 1 and {MAX_PAGE_SIZE}")
        if page_number < 1:
            raise InvalidInput("pageNumber must be 1 or more")
        async with self.db.session(write=False) as session:
            repository = PackageRepository(session)
            tenant_id = principal.tenant.id
            items = await repository.page(
                tenant_id, limit=page_size, offset=(page_number - 1) * page_size
            )
            return items, await repository.count(tenant_id)

    async def artifact(self, principal: Principal, package_id: str) -> tuple[Package, str]:
        """The package and the blob key of its zip, for a download."""
        package = await self.get(principal, package_id)
        return package, blob_key(principal.tenant.id, package.sha256)

    async def delete(self, principal: Principal, package_id: str) -> None:
        """Forget the package and release its zip; what it installed stays."""
        async with self.db.session() as session:
            package = await self._get(session, principal, package_id)
            await BlobRepository(session).release(principal.tenant.id, package.blob_id)
            await PackageRepository(session).delete(package)
        log.info("package.deleted", package_id=package_id)

    # -- dependencies ------------------------------------------------------------------------

    async def dependencies(
        self, principal: Principal, asset_id: str
    ) -> tuple[list[str], list[str]]:
        """What the asset depends on, and which assets (that the caller sees) depend on it."""
        tenant_id = principal.tenant.id
        async with self.db.session(write=False) as session:
            asset = await self._assets(session).get(principal, asset_id)
            facts = PackageFactsRepository(session)
            depends_on = (await facts.dependencies(tenant_id, [asset.id])).get(asset.id, set())
            visible = SecurityTemplateService(session).visibility_condition(principal)
            return sorted(depends_on), await facts.required_by(tenant_id, asset.id, visible)

    async def set_dependencies(
        self, principal: Principal, asset_id: str, depends_on: Sequence[str]
    ) -> list[str]:
        """Replace what the asset declares it depends on (ids need not exist yet)."""
        wanted = list(dict.fromkeys(depends_on))
        if asset_id in wanted:
            raise InvalidInput("an asset cannot depend on itself")
        async with self.db.session() as session:
            assets = self._assets(session)
            asset = await assets.get(principal, asset_id, Action.edit)
            await PackageFactsRepository(session).replace_dependencies(
                principal.tenant.id, asset.id, wanted
            )
            await assets.events.record(
                principal,
                EventType.asset_updated,
                asset_id=asset.id,
                details={"fields": ["dependsOn"]},
            )
        return sorted(wanted)

    # -- install -----------------------------------------------------------------------------

    async def install(
        self, principal: Principal, package_id: str, options: InstallOptions
    ) -> tuple[Package, Plan]:
        """Apply the package: every entry or none. A second install finds everything
        UNCHANGED and writes nothing."""
        tenant_id = principal.tenant.id
        # The plan sniffs every file's head; creating the assets would ask libmagic again.
        sniffer = RememberingSniffer(self.sniffer)
        async with self.db.session(write=False) as session:
            package = await self._get(session, principal, package_id)
            key = blob_key(tenant_id, package.sha256)
            index = await anyio.to_thread.run_sync(self._index, key, package.size_bytes)
            plan = await self._plan(
                session,
                principal,
                index,
                options,
                chosen_ids=chosen_ids(package.report),
                sniffer=sniffer,
            )
        blockers = plan.blockers(options.ignore_unresolved)
        if blockers:
            report = render_report(plan, index.unused)
            raise InstallRefused(
                f"the package cannot be installed as it is: {blockers[0]}"
                + (f" (and {len(blockers) - 1} more)" if len(blockers) > 1 else "")
                + "; resolve with onConflict/resolutions or ignoreUnresolved",
                report=report,
            )
        if not plan.changes and package.status is PackageStatus.installed:
            # Nothing to write: answer with this report (all UNCHANGED), not the stored one.
            package.report = render_report(plan, index.unused, installed=True)
            return package, plan

        staged = await anyio.to_thread.run_sync(self._stage, key, package.size_bytes, plan)
        try:
            async with self.db.session() as session:
                package = await self._apply(
                    session, principal, package_id, plan, staged, index, sniffer
                )
        except IntegrityError:
            raise Conflict(
                "the tenant changed while the package was being installed; nothing was "
                "installed, try again"
            ) from None
        finally:
            for upload in staged.values():
                if not upload.published:
                    await upload.discard()
        log.info("package.installed", package_id=package_id, **plan.counts())
        return package, plan

    def _stage(self, key: str, size: int, plan: Plan) -> dict[str, StagedUpload]:
        """Copy every member install needs into staging, before any transaction opens."""
        staged: dict[str, StagedUpload] = {}
        try:
            with open_package(self.storage, key, size) as archive:
                for item in plan.entries:
                    file = item.entry.file
                    if item.code not in (ResultCode.CREATED, ResultCode.UPDATED):
                        continue
                    if file is None or not item.new_content:
                        continue
                    staged[item.entry.id] = stage_member(
                        archive,
                        file.path,
                        file.sha256,
                        self.storage,
                        clean_filename(file.filename or file.path),
                    )
        except BaseException:
            for upload in staged.values():
                upload.writer.abort()
            raise
        return staged

    async def _apply(
        self,
        session: AsyncSession,
        principal: Principal,
        package_id: str,
        plan: Plan,
        staged: dict[str, StagedUpload],
        index: Inspection,
        sniffer: Sniffer,
    ) -> Package:
        tenant_id = principal.tenant.id
        package = await self._get(session, principal, package_id)
        assets = self._assets(session, sniffer)
        collections = CollectionService(session, assets)
        facts = PackageFactsRepository(session)

        for item in plan.collections:
            if item.code is ResultCode.CREATED:
                await collections.create(
                    principal,
                    CollectionCreate(name=item.name, description=item.description),
                    collection_id=item.target_id,
                )
            elif item.code is ResultCode.UPDATED:
                await collections.update(
                    principal,
                    item.target_id,
                    CollectionUpdate(name=item.name, description=item.description),
                )
            else:
                continue
            await facts.save_origin(
                tenant_id, OriginKind.collection, item.source_id, item.target_id, package.id, None
            )

        members: dict[str, list[str]] = {}
        for entry_plan in plan.entries:
            if entry_plan.code not in (ResultCode.CREATED, ResultCode.UPDATED):
                continue
            entry, target = entry_plan.entry, entry_plan.target_id
            if entry_plan.code is ResultCode.CREATED:
                asset = await _create(assets, principal, entry, target, staged.get(entry.id))
            else:
                if entry_plan.restore:
                    await assets.restore(principal, target)
                if entry.id in staged:
                    await assets.add_version(principal, target, staged[entry.id])
                asset = await assets.update(principal, target, _update_of(entry))
            await facts.replace_dependencies(tenant_id, target, entry_plan.depends_on)
            for collection_id in entry_plan.collection_ids:
                existing = entry_plan.existing
                if existing is None or collection_id not in existing.collections:
                    members.setdefault(collection_id, []).append(target)
            await facts.save_origin(
                tenant_id, OriginKind.asset, entry.id, target, package.id, asset.revision
            )
        for collection_id, asset_ids in members.items():
            for start in range(0, len(asset_ids), MAX_ASSETS_PER_CALL):
                batch = asset_ids[start : start + MAX_ASSETS_PER_CALL]
                await collections.add_assets(
                    principal, collection_id, CollectionAssetsAdd(asset_ids=batch)
                )

        package.status = PackageStatus.installed
        package.installed_at = utcnow()
        package.installed_by = principal.actor
        package.report = render_report(plan, index.unused, installed=True)
        await session.flush()
        if not plan.changes:
            # A package whose every entry is already here: marked installed, nothing happened.
            return package
        await EventService(session, assets.jobs).record(
            principal,
            EventType.package_installed,
            details={
                "packageId": package.id,
                "name": package.name,
                "version": package.version,
                **plan.counts(),
            },
        )
        return package


class RememberingSniffer(Sniffer):
    """A Sniffer that asks libmagic once per distinct head, for the life of one install."""

    def __init__(self, inner: Sniffer) -> None:
        # No libmagic handle of its own: every question goes to `inner`, once.
        self._inner = inner
        self._known: dict[bytes, str] = {}

    def mime_type(self, head: bytes) -> str:
        key = hashlib.sha1(head[:SNIFF_BYTES], usedforsecurity=False).digest()
        if key not in self._known:
            self._known[key] = self._inner.mime_type(head)
        return self._known[key]


def _existing(
    asset: Asset,
    *,
    can_see: bool,
    can_edit: bool,
    collections: set[str],
    depends_on: set[str],
) -> ExistingAsset:
    return ExistingAsset(
        id=asset.id,
        kind=asset.kind,
        type=asset.type,
        state=asset.state,
        access=asset.access,
        name=asset.name,
        description=asset.description,
        tags=list(asset.tags),
        ref_ids=list(asset.ref_ids),
        metadata=dict(asset.meta),
        url=asset.url,
        sha256=asset.sha256,
        revision=asset.revision,
        can_see=can_see,
        can_edit=can_edit,
        collections=frozenset(collections),
        depends_on=frozenset(depends_on),
    )


def _ids_allowed(allowed: set[str] | None) -> Callable[[str], bool]:
    return (lambda _: True) if allowed is None else allowed.__contains__


def _size_limit(principal: Principal, settings: Settings) -> int:
    limit = principal.tenant.max_file_size_bytes
    server_max = settings.max_file_size_bytes
    return server_max if limit is None else min(limit, server_max)


def _fields(entry: PackageEntry) -> dict[str, Any]:
    return {
        "name": entry.name or None,
        "description": entry.description,
        "tags": list(entry.tags),
        "ref_ids": list(entry.ref_ids),
        "metadata": dict(entry.metadata),
        "access": entry.access,
        "type": entry.type,
    }


def _update_of(entry: PackageEntry) -> AssetUpdate:
    fields = _fields(entry)
    if not entry.name:
        # An entry without a name keeps the asset's (its file's name, usually).
        del fields["name"]
    if entry.kind is AssetKind.LINK:
        fields["url"] = entry.url
    return AssetUpdate(**fields)


async def _create(
    assets: AssetService,
    principal: Principal,
    entry: PackageEntry,
    target: str,
    staged: StagedUpload | None,
) -> Asset:
    if staged is not None:
        return await assets.create_from_upload(
            principal, AssetFields(**_fields(entry)), staged, asset_id=target
        )
    data = AssetCreate(**_fields(entry), kind=entry.kind, url=entry.url)
    return await assets.create_from_json(principal, data, asset_id=target)
