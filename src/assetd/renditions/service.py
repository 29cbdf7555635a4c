"""Rendition use cases: find and list renditions, make presets (job) and transformations.

RenditionService works in the caller's session and flushes. RenditionMaker runs outside any
request transaction (a job, or an on-the-fly transformation): it reads, renders with no
transaction open, then stores each result in a short transaction of its own.
"""

from __future__ import annotations

import hashlib
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import anyio
import anyio.to_thread
import structlog
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from assetd.assets.models import Asset, AssetKind, Version
from assetd.assets.repository import AssetRepository, BlobRepository, VersionRepository
from assetd.db.base import utcnow
from assetd.db.session import Database
from assetd.errors import InvalidInput, NotFound, QuotaExceeded
from assetd.jobs.models import JobState
from assetd.processing.kinds import RENDITION_KINDS
from assetd.renditions import imaging
from assetd.renditions.delivery import rendition_response
from assetd.renditions.imaging import ImagingError, RenditionImage
from assetd.renditions.models import Rendition
from assetd.renditions.repository import RenditionRepository
from assetd.storage.base import BlobNotFound, BlobStorage, BlobWriter
from assetd.storage.keys import blob_key
from assetd.storage.local import LocalBlobStorage
from assetd.tenants.repository import TenantRepository

__all__ = [
    "PRESETS",
    "NotMadeYet",
    "RenditionMaker",
    "RenditionService",
    "TransformSpec",
    "Transformed",
    "rendition_response",
]

log = structlog.get_logger()

PRESETS: dict[str, int] = imaging.PRESETS
# How long a client should wait before asking again for a rendition still being made.
RETRY_AFTER_SECONDS = 2

T = TypeVar("T")


class NotMadeYet(NotFound):
    """The rendition's job has not finished yet; ask again in ``retry_after`` seconds."""

    def __init__(self, detail: str = "not made yet") -> None:
        super().__init__(detail)
        self.retry_after = RETRY_AFTER_SECONDS


@dataclass(frozen=True)
class TransformSpec:
    """An on-the-fly transformation; ``key`` is its canonical form (signed, and cached under)."""

    width: int | None
    height: int | None
    fit: str = "inside"
    fmt: str = "webp"
    quality: int = imaging.DEFAULT_QUALITY

    @property
    def key(self) -> str:
        parts = []
        if self.width is not None:
            parts.append(f"w={self.width}")
        if self.height is not None:
            parts.append(f"h={self.height}")
        parts += [f"fit={self.fit}", f"fmt={self.fmt}", f"q={self.quality}"]
        return ",".join(parts)

    def check(self) -> None:
        """InvalidInput (400) for a transformation outside the limits."""
        try:
            imaging.check_transform(self.width, self.height, self.fit, self.fmt, self.quality)
        except ImagingError as exc:
            raise InvalidInput(str(exc)) from None


@dataclass(frozen=True)
class Transformed:
    """A transformation's rendition, and its bytes when this call made them (None: cached)."""

    rendition: Rendition
    data: bytes | None = None


class RenditionService:
    def __init__(self, session: AsyncSession, storage: BlobStorage) -> None:
        self.session = session
        self.storage = storage
        self.renditions = RenditionRepository(session)
        self.assets = AssetRepository(session)
        self.blobs = BlobRepository(session)
        self.tenants = TenantRepository(session)

    async def find(self, tenant_id: str, asset_id: str, preset: str) -> Rendition | None:
        """The preset (or transformation key) of the asset's current version, if made."""
        asset = await self.assets.get_visible(tenant_id, asset_id)
        if asset is None or asset.current_version_id is None:
            return None
        return await self.renditions.find(tenant_id, asset.current_version_id, preset)

    async def find_transform(
        self, tenant_id: str, version: Version, spec: TransformSpec
    ) -> Rendition | None:
        """The cached result of ``spec`` for this version, if made: one query in the caller's
        session, so that a cache hit opens no session of its own."""
        return await self.renditions.find(tenant_id, version.id, spec.key)

    async def get_preset(self, tenant_id: str, asset: Asset, preset: str) -> Rendition:
        """The preset of the asset's current version; NotMadeYet while its job is under way,
        NotFound when it never will be (unknown preset, a type without renditions, a failure)."""
        if preset not in PRESETS:
            raise NotFound(f"no rendition {preset!r}; presets are {', '.join(PRESETS)}")
        version_id = _renderable_version(asset)
        found = await self.renditions.find(tenant_id, version_id, preset)
        if found is not None:
            return found
        state = await self.renditions.job_state(tenant_id, version_id, RENDITION_KINDS[preset])
        if state in (JobState.pending, JobState.running):
            raise NotMadeYet()
        if state is JobState.failed:
            raise NotFound("the renditions of this file could not be made")
        raise NotFound(f"asset {asset.id} has no rendition {preset!r}")

    async def list_presets(self, tenant_id: str, asset: Asset) -> list[Rendition]:
        """The presets made so far for the asset's current version, smallest first."""
        if asset.current_version_id is None:
            return []
        made = await self.renditions.list_for_version(
            tenant_id, asset.current_version_id, list(PRESETS)
        )
        order = list(PRESETS)
        return sorted(made, key=lambda r: order.index(r.preset))

    async def store(
        self,
        tenant_id: str,
        asset_id: str,
        version_id: str,
        preset: str,
        staged: StagedImage,
    ) -> Rendition:
        """Reference the staged bytes' blob and add the rendition row.

        Raises IntegrityError when the row exists already (another run made this rendition
        meanwhile): the caller rolls back and reads that row (RenditionMaker does). No
        savepoint guards the insert, because the race is rare and a savepoint costs two more
        round trips on every rendition (~0.7 ms of the ~5 ms a store takes on SQLite).
        """
        # The asset's row lock orders us with purge (which takes it first): either purge sees
        # this rendition and releases its blob, or we find the asset gone.
        if await self.assets.get_visible(tenant_id, asset_id, lock=True) is None:
            await staged.discard()
            raise NotFound(f"asset {asset_id} not found")
        # No look for an existing row first: the callers have just looked (before rendering),
        # so one is rare, and the unique (version, preset) refuses it at no extra query.
        rendition = Rendition(
            tenant_id=tenant_id,
            asset_id=asset_id,
            version_id=version_id,
            preset=preset,
            sha256=staged.sha256,
            size_bytes=staged.size_bytes,
            mime_type=staged.image.mime_type,
            width=staged.image.width,
            height=staged.image.height,
            created_at=utcnow(),
        )
        blob_id, refcount = await self.blobs.reference(
            tenant_id, staged.sha256, staged.md5, staged.size_bytes
        )
        rendition.blob_id = blob_id
        # An existing row (a concurrent maker's) fails this insert: the caller's rollback then
        # undoes the reference too.
        await self.renditions.add(rendition)
        if refcount == 1:
            # As for versions: new bytes count against the quota and are published while
            # the blob row is locked, so gc cannot delete them in between.
            if not await self.tenants.charge(tenant_id, staged.size_bytes):
                await staged.discard()
                raise QuotaExceeded("the rendition does not fit in the tenant's storage quota")
            await staged.publish(blob_key(tenant_id, staged.sha256))
        else:
            await staged.discard()
        return rendition


def _renderable_version(asset: Asset) -> str:
    if asset.kind is AssetKind.LINK:
        raise NotFound(f"asset {asset.id} is a link and has no renditions")
    if asset.current_version_id is None:
        raise NotFound(f"asset {asset.id} has no content yet")
    if not imaging.can_render(asset.mime_type or ""):
        raise NotFound(f"files of type {asset.mime_type} have no renditions")
    return asset.current_version_id


class StagedImage:
    """Encoded rendition bytes written to the blob store's staging area, not yet published."""

    def __init__(self, storage: BlobStorage, image: RenditionImage) -> None:
        self.storage = storage
        self.image = image
        self.sha256 = hashlib.sha256(image.data).hexdigest()
        self.md5 = hashlib.md5(image.data, usedforsecurity=False).hexdigest()
        self.size_bytes = len(image.data)
        self._writer: BlobWriter | None = None

    @classmethod
    async def stage(cls, storage: BlobStorage, image: RenditionImage) -> StagedImage:
        staged = cls(storage, image)

        def write() -> BlobWriter:
            writer = storage.writer()
            try:
                writer.write(image.data)
                writer.seal()
            except BaseException:
                writer.abort()
                raise
            return writer

        staged._writer = await anyio.to_thread.run_sync(write)
        return staged

    async def publish(self, key: str) -> None:
        writer, self._writer = self._writer, None
        if writer is not None:
            await anyio.to_thread.run_sync(writer.commit, key)

    async def discard(self) -> None:
        writer, self._writer = self._writer, None
        if writer is not None:
            await anyio.to_thread.run_sync(writer.abort)


@dataclass(frozen=True)
class _Source:
    asset_id: str
    version_id: str
    key: str
    mime_type: str


class RenditionMaker:
    """Makes renditions from stored bytes; no transaction is open while it renders."""

    def __init__(
        self,
        db: Database,
        storage: BlobStorage,
        *,
        limiter: anyio.CapacityLimiter | None = None,
        temp_dir: Path | None = None,
    ) -> None:
        self.db = db
        self.storage = storage
        # Bounds concurrent renders (on-the-fly transformations); None: anyio's default pool.
        self.limiter = limiter
        self.temp_dir = temp_dir

    async def make_presets(
        self, tenant_id: str, version_id: str, presets: Sequence[str] | None = None
    ) -> list[str]:
        """Make every preset the version lacks; the presets made. Idempotent.

        Raises ImagingError when the file cannot be rendered (a retry will not help).
        """
        async with self.db.session(write=False) as session:
            version = await VersionRepository(session).get(tenant_id, version_id)
            if version is None or not imaging.can_render(version.mime_type):
                return []  # purged since, or a type without renditions: nothing to do
            source = _Source(
                version.asset_id,
                version.id,
                blob_key(tenant_id, version.sha256),
                version.mime_type,
            )
            done = await RenditionRepository(session).presets_of(tenant_id, version_id)
        missing = [preset for preset in presets or PRESETS if preset not in done]
        if not missing:
            return []
        images = await self._render(
            source, lambda path: imaging.make_presets(path, source.mime_type, missing)
        )
        try:
            for preset, image in images.items():
                await self._store(tenant_id, source, preset, image)
        except NotFound:
            return []  # the asset was purged while we rendered
        log.info("version.renditions_made", version_id=version_id, presets=missing)
        return missing

    async def transform(
        self, tenant_id: str, asset: Asset, spec: TransformSpec, *, version: Version | None = None
    ) -> Transformed:
        """The cached result of ``spec`` for the asset's current version, made if need be;
        with the bytes when made here, so that the response need not read them back.

        ``version``: the current version, when the caller has just read it and found no cached
        result (find_transform); then no session is opened before rendering.
        """
        spec.check()
        version_id = _renderable_version(asset)
        if version is None or version.id != version_id:
            async with self.db.session(write=False) as session:
                found = await RenditionRepository(session).find(tenant_id, version_id, spec.key)
                if found is not None:
                    return Transformed(found)
                version = await VersionRepository(session).get(tenant_id, version_id)
                if version is None:
                    raise NotFound(f"asset {asset.id} has no content yet")
        source = _Source(
            asset.id, version.id, blob_key(tenant_id, version.sha256), version.mime_type
        )
        try:
            image = await self._render(
                source,
                lambda path: imaging.transform(
                    path,
                    source.mime_type,
                    spec.width,
                    spec.height,
                    spec.fit,  # type: ignore[arg-type]
                    spec.fmt,  # type: ignore[arg-type]
                    spec.quality,
                ),
            )
        except ImagingError as exc:
            raise NotFound(f"this file cannot be transformed: {exc}") from None
        return await self._store(tenant_id, source, spec.key, image)

    async def _store(
        self, tenant_id: str, source: _Source, preset: str, image: RenditionImage
    ) -> Transformed:
        staged = await StagedImage.stage(self.storage, image)
        try:
            async with self.db.session() as session:
                rendition = await RenditionService(session, self.storage).store(
                    tenant_id, source.asset_id, source.version_id, preset, staged
                )
        except IntegrityError:
            # Another run stored this rendition first (rolled back: our reference is gone).
            async with self.db.session(write=False) as session:
                found = await RenditionRepository(session).find(
                    tenant_id, source.version_id, preset
                )
            if found is None:
                raise
            rendition = found
        finally:
            await staged.discard()  # a no-op once published
        # Another maker may have stored its result first: our bytes go out only if they are
        # the ones stored (the hash was taken once, when staging).
        return Transformed(rendition, image.data if rendition.sha256 == staged.sha256 else None)

    async def _render(self, source: _Source, render: Callable[[Path], T]) -> T:
        def run() -> T:
            imaging.configure_vips()
            if isinstance(self.storage, LocalBlobStorage):
                return _render_in_place(self.storage.path_for(source.key), source.key, render)
            suffix = ".bin"
            with tempfile.NamedTemporaryFile(
                dir=self.temp_dir, prefix="assetd-rendition-", suffix=suffix
            ) as handle:
                for chunk in self.storage.read(source.key):
                    handle.write(chunk)
                handle.flush()
                return render(Path(handle.name))

        return await anyio.to_thread.run_sync(run, limiter=self.limiter)


def _render_in_place(path: Path, key: str, render: Callable[[Path], T]) -> T:
    """Render straight from the local store's file: no copy of the source (2 MB of a photo
    cost ~1 ms of CPU and a temporary file per rendition). Blobs are content-addressed and
    replaced by rename, never rewritten, so the file cannot change under the decoder; it can
    only vanish (purge, gc), which is told apart from a corrupt file as BlobNotFound, as the
    copy would have said."""
    if not path.is_file():
        raise BlobNotFound(key)
    try:
        return render(path)
    except ImagingError:
        if not path.is_file():
            raise BlobNotFound(key) from None
        raise
