"""Storage provider use cases: manage a tenant's providers, open them, fetch an object from one.

Framework-free: takes a session (flushes, never commits) and the allow-listed local roots.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio.to_thread
import structlog
from sqlalchemy.ext.asyncio import AsyncSession

from assetd.assets.ingest import ExpectedDigests, Ingest, StagedUpload
from assetd.assets.models import AssetType
from assetd.assets.policy import extension_of, too_large
from assetd.assets.sniff import Sniffer
from assetd.db.base import utcnow
from assetd.errors import AssetdError, Conflict, InvalidInput, NotFound
from assetd.processing.extract import ExtractionError, extract_facts
from assetd.providers.models import ProviderKind, StorageProvider
from assetd.providers.readers import (
    InvalidObjectName,
    LocalObjectReader,
    ObjectNotFound,
    ObjectReader,
    ProviderUnavailable,
    S3ObjectReader,
)
from assetd.providers.repository import StorageProviderRepository
from assetd.providers.schemas import StorageProviderCreate, StorageProviderUpdate
from assetd.storage.base import BlobStorage

log = structlog.get_logger()

# Facts are read in the request only for these (the seed's config.apk / config.msi).
EXTRACTED_TYPES = frozenset(
    {
        "application/vnd.android.package-archive",
        "application/x-msi",
        "application/x-ms-installer",
        "application/vnd.ms-msi",
    }
)
EXTRACTED_EXTENSIONS = frozenset({"apk", "msi"})


class ObjectMissing(NotFound):
    """The provider holds no object under that bucket and key."""


class ObjectMismatch(InvalidInput):
    """The object is not what the client described: another size or checksum, or a bad name."""


class ProviderError(AssetdError):
    """The provider could not be read (unreachable, credentials refused, misconfigured)."""

    title = "Storage provider unavailable"


class ProviderService:
    def __init__(self, session: AsyncSession, local_roots: Sequence[Path] = ()) -> None:
        self.session = session
        self.local_roots = [Path(os.path.realpath(root)) for root in local_roots]
        self.repository = StorageProviderRepository(session)

    # -- managing -----------------------------------------------------------------------

    async def create(self, tenant_id: str, data: StorageProviderCreate) -> StorageProvider:
        if await self.repository.name_taken(tenant_id, data.name):
            raise Conflict(f"a storage provider named {data.name!r} exists")
        now = utcnow()
        provider = StorageProvider(
            tenant_id=tenant_id,
            name=data.name,
            kind=data.kind,
            region="",
            prefix="",
            created_at=now,
            modified_at=now,
        )
        self._apply(provider, data)
        await self.repository.add(provider)
        log.info("storage_provider.created", provider_id=provider.id, kind=provider.kind.value)
        return provider

    async def get(self, tenant_id: str, provider_id: str) -> StorageProvider:
        provider = await self.repository.get(tenant_id, provider_id)
        if provider is None:
            raise NotFound(f"storage provider {provider_id[:64]} not found")
        return provider

    async def list_page(
        self, tenant_id: str, page_number: int, page_size: int
    ) -> tuple[list[StorageProvider], int]:
        items = await self.repository.page(
            tenant_id, limit=page_size, offset=(page_number - 1) * page_size
        )
        return items, await self.repository.count(tenant_id)

    async def update(
        self, tenant_id: str, provider_id: str, data: StorageProviderUpdate
    ) -> StorageProvider:
        provider = await self.get(tenant_id, provider_id)
        if data.name is not None and data.name != provider.name:
            if await self.repository.name_taken(tenant_id, data.name, except_id=provider.id):
                raise Conflict(f"a storage provider named {data.name!r} exists")
            provider.name = data.name
        self._apply(provider, data)
        provider.modified_at = utcnow()
        await self.session.flush()
        return provider

    async def delete(self, tenant_id: str, provider_id: str) -> None:
        provider = await self.get(tenant_id, provider_id)
        await self.repository.delete(provider)
        log.info("storage_provider.deleted", provider_id=provider_id)

    def _apply(self, provider: StorageProvider, data: StorageProviderCreate | Any) -> None:
        """Copies the given settings, then checks the whole provider for its kind."""
        given = data.model_fields_set
        for name in ("region", "bucket", "endpoint_url", "access_key_id", "prefix", "root"):
            if name in given:
                value = getattr(data, name)
                if name in ("region", "prefix"):
                    value = value or ""
                setattr(provider, name, value)
        if "secret_access_key" in given:
            provider.secret_access_key = data.secret_access_key
        if provider.kind is ProviderKind.s3:
            if provider.root is not None:
                raise InvalidInput("an s3 provider has no root; give bucket settings")
            if not provider.access_key_id or not provider.secret_access_key:
                # Without its own credentials the provider would read with the server's,
                # and so see whatever the server may see, other tenants' blobs included.
                raise InvalidInput("an s3 provider needs accessKeyId and secretAccessKey")
        else:
            if provider.bucket or provider.endpoint_url or provider.access_key_id:
                raise InvalidInput("a local provider takes only root (and name, region)")
            if provider.secret_access_key or provider.prefix:
                raise InvalidInput("a local provider takes only root (and name, region)")
            if not provider.root:
                raise InvalidInput("a local provider needs root")
            provider.root = str(self.check_local_root(provider.root))

    def check_local_root(self, root: str) -> Path:
        """The root, resolved, if it lies inside an allow-listed base; else InvalidInput."""
        if not self.local_roots:
            raise InvalidInput("local storage providers are disabled on this server")
        path = Path(root)
        if not path.is_absolute():
            raise InvalidInput("root must be an absolute path")
        resolved = Path(os.path.realpath(path))
        if not any(resolved.is_relative_to(base) for base in self.local_roots):
            raise InvalidInput("root is not inside a folder this server allows for providers")
        return resolved

    # -- reading ------------------------------------------------------------------------

    async def open(self, tenant_id: str, provider_id: str) -> tuple[StorageProvider, ObjectReader]:
        """The provider and a reader of its objects; close the reader when done."""
        provider = await self.get(tenant_id, provider_id)
        return provider, self.reader_for(provider)

    def reader_for(self, provider: StorageProvider) -> ObjectReader:
        if provider.kind is ProviderKind.local:
            # Checked again: the allow-list may have shrunk since the provider was saved.
            try:
                root = self.check_local_root(provider.root or "")
            except InvalidInput as exc:
                raise ProviderError(
                    f"the storage provider is misconfigured: {exc.detail}"
                ) from None
            return LocalObjectReader(root)
        try:
            return S3ObjectReader(
                endpoint_url=provider.endpoint_url,
                region=provider.region or None,
                access_key_id=provider.access_key_id or "",
                secret_access_key=provider.secret_access_key or "",
                prefix=provider.prefix,
                bucket=provider.bucket,
            )
        except ValueError as exc:
            raise ProviderError(f"the storage provider is misconfigured: {exc}") from None


# -- fetching an object into the blob store ----------------------------------------------


@dataclass
class FetchedObject:
    """An object's bytes staged in the blob store, what they are, and their facts."""

    staged: StagedUpload
    mime_type: str
    asset_type: AssetType
    facts: dict[str, Any] = field(default_factory=dict)


async def fetch_object(
    reader: ObjectReader,
    storage: BlobStorage,
    sniffer: Sniffer,
    *,
    bucket: str,
    key: str,
    filename: str,
    size_bytes: int,
    expected: ExpectedDigests,
    limit_bytes: int,
    on_limit: Callable[[int], AssetdError] = too_large,
    temp_dir: Path | None = None,
) -> FetchedObject:
    """Stream the object through the hashes into staging; verify its size and digests.

    APKs and MSIs are also written to a temporary file, which their parsers need, and their
    facts are read before this returns.
    """
    info = await _call(reader.stat, bucket, key)
    if info.size_bytes != size_bytes:
        raise ObjectMismatch(
            f"the object is {info.size_bytes} bytes, the request says {size_bytes}"
        )
    if info.size_bytes > limit_bytes:
        raise on_limit(limit_bytes)
    extension = extension_of(filename)
    copy = (
        tempfile.NamedTemporaryFile(dir=temp_dir, prefix="assetd-provider-")
        if extension in EXTRACTED_EXTENSIONS
        else None
    )
    try:
        ingest = Ingest(storage, limit_bytes=limit_bytes, on_limit=on_limit, expected=expected)
        try:
            chunks = await _call(reader.read, bucket, key)
            try:
                while (chunk := await anyio.to_thread.run_sync(_next_chunk, chunks)) is not None:
                    await ingest.feed(chunk)
                    if copy is not None:
                        await anyio.to_thread.run_sync(copy.write, chunk)
            finally:
                # Releases the file or the HTTP connection even when the read stopped early.
                await anyio.to_thread.run_sync(_close, chunks)
        except ProviderUnavailable as exc:
            await ingest.abort()
            raise ProviderError(str(exc)) from None
        except BaseException:
            await ingest.abort()
            raise
        try:
            staged = await ingest.finish(filename)
        except AssetdError as exc:
            raise ObjectMismatch(exc.detail) from None
        if staged.size_bytes != size_bytes:
            await staged.discard()
            raise ObjectMismatch(
                f"the object sent {staged.size_bytes} bytes, the request says {size_bytes}"
            )
        mime_type, asset_type = sniffer.classify(staged.head, extension)
        facts: dict[str, Any] = {}
        if copy is not None and mime_type in EXTRACTED_TYPES:
            await anyio.to_thread.run_sync(copy.flush)
            facts = await anyio.to_thread.run_sync(_facts, Path(copy.name), mime_type)
        return FetchedObject(staged, mime_type, asset_type, facts)
    finally:
        if copy is not None:
            copy.close()


async def _call(function: Any, bucket: str, key: str) -> Any:
    try:
        return await anyio.to_thread.run_sync(function, bucket, key)
    except ObjectNotFound:
        raise ObjectMissing(f"no object {key[:256]!r} in bucket {bucket[:128]!r}") from None
    except InvalidObjectName as exc:
        raise ObjectMismatch(str(exc)) from None
    except ProviderUnavailable as exc:
        raise ProviderError(str(exc)) from None


def _next_chunk(chunks: Iterator[bytes]) -> bytes | None:
    return next(chunks, None)


def _close(chunks: Iterator[bytes]) -> None:
    close = getattr(chunks, "close", None)
    if close is not None:
        close()


def _facts(path: Path, mime_type: str) -> dict[str, Any]:
    try:
        return extract_facts(path, mime_type)
    except ExtractionError as exc:
        # The file is still registered; its config just can't be read from it.
        log.info("storage_provider.extract_failed", error=str(exc))
        return {}
