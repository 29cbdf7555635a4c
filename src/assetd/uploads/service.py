"""Upload sessions: create, receive parts or appends, complete into a version, cancel, expire.

A session's bytes are staged in the blob store's multipart area (MultipartStorage), never
in the database and never in memory. Completing is three steps so that no slow work runs
inside a write transaction: claim the session, assemble and hash the bytes, then attach
the version and close the session in one transaction.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import partial
from typing import Any

import anyio.to_thread
import structlog
from sqlalchemy.ext.asyncio import AsyncSession

from assetd.assets.ingest import StagedUpload
from assetd.assets.models import Asset, AssetKind, AssetState, Version
from assetd.assets.policy import check_extension, clean_filename, extension_of, size_limit
from assetd.assets.repository import AssetRepository
from assetd.assets.schemas import AssetCreate, AssetFields
from assetd.assets.service import AssetService
from assetd.assets.signing import UrlSigner
from assetd.assets.sniff import Sniffer
from assetd.auth.principal import ADMIN, Principal
from assetd.config import Settings
from assetd.db.base import utcnow
from assetd.db.session import Database
from assetd.errors import (
    AssetdError,
    Conflict,
    DigestMismatch,
    Gone,
    InvalidInput,
    Locked,
    NotFound,
    PayloadTooLarge,
    QuotaExceeded,
)
from assetd.jobs.service import JobService
from assetd.storage.base import (
    InvalidParts,
    MultipartStorage,
    PartInfo,
    ReadableUploads,
)
from assetd.templates.models import Action
from assetd.tenants.service import TenantService, TenantSnapshot
from assetd.uploads.models import UploadPart, UploadProtocol, UploadSession, UploadState
from assetd.uploads.repository import UploadPartRepository, UploadSessionRepository
from assetd.uploads.streaming import (
    PrefixDigests,
    RunningDigests,
    digest,
    read_head,
    stream_into,
)

log = structlog.get_logger()

# S3's rules for multipart uploads, which every store follows so that sessions move freely.
MIN_PART_BYTES = 5 * 1024**2
MAX_PART_BYTES = 5 * 1024**3
MAX_PARTS = 10_000
# Sessions the expiry job handles per pass; the next pass takes the rest.
EXPIRE_BATCH = 100


@dataclass(frozen=True)
class PartTarget:
    number: int
    size_bytes: int
    url: str


@dataclass
class Ticket:
    """A new session and where its bytes go."""

    upload: UploadSession
    asset: Asset
    parts: list[PartTarget] = field(default_factory=list)


@dataclass(frozen=True)
class ClientPart:
    number: int
    etag: str | None = None


@dataclass(frozen=True)
class TusChecksum:
    algorithm: str  # "sha1" | "sha256"
    digest: bytes


class ChecksumMismatch(DigestMismatch):
    """tus: the PATCH body does not match its Upload-Checksum (answered with 460)."""


def part_sizes(size_bytes: int, part_size: int) -> list[int]:
    """Every part is part_size bytes but the last, which is the rest (an empty file: one part)."""
    if size_bytes == 0:
        return [0]
    full, rest = divmod(size_bytes, part_size)
    return [part_size] * full + ([rest] if rest else [])


def choose_part_size(size_bytes: int, requested: int | None, default: int) -> int:
    if requested is not None:
        if not MIN_PART_BYTES <= requested <= MAX_PART_BYTES:
            raise InvalidInput(
                f"partSize must be between {MIN_PART_BYTES} and {MAX_PART_BYTES} bytes"
            )
        if len(part_sizes(size_bytes, requested)) > MAX_PARTS:
            raise InvalidInput(f"a file of {size_bytes} bytes needs a partSize over {requested}")
        return requested
    part_size = max(MIN_PART_BYTES, min(default, MAX_PART_BYTES))
    # The default grows for huge files rather than refusing them for having too many parts.
    while len(part_sizes(size_bytes, part_size)) > MAX_PARTS:
        part_size *= 2
    return part_size


class UploadService:
    def __init__(
        self,
        db: Database,
        storage: MultipartStorage,
        sniffer: Sniffer,
        signer: UrlSigner,
        settings: Settings,
        digests: RunningDigests | None = None,
        jobs: Callable[[AsyncSession], JobService] | None = None,
    ) -> None:
        self.digests = digests
        self._job_service = jobs
        self.db = db
        self.storage = storage
        self.sniffer = sniffer
        self.signer = signer
        self.settings = settings

    # -- creating --------------------------------------------------------------------------

    async def create(
        self,
        principal: Principal,
        *,
        filename: str,
        size_bytes: int | None,
        sha256: str | None = None,
        part_size: int | None = None,
        asset_id: str | None = None,
        fields: AssetFields | None = None,
        protocol: UploadProtocol = UploadProtocol.parts,
        upload_metadata: dict[str, Any] | None = None,
        auto_complete: bool = False,
        keep_asset: bool = False,
    ) -> Ticket:
        """A session for a new asset (made now, metadata-only until complete) or a new version.

        size_bytes None (parts only): the client did not say; one part of up to the size
        limit, whatever arrives is the file. keep_asset: the new asset stays, metadata-only,
        if the upload is cancelled or expires (seed 002's create-then-upload).
        """
        filename = clean_filename(filename)
        if not filename:
            raise InvalidInput("a filename is needed")
        check_extension(principal.tenant, extension_of(filename))
        size_exact = size_bytes is not None
        if size_bytes is None:
            if protocol is not UploadProtocol.parts:
                raise InvalidInput("a tus upload needs its length")
            # Quota is then checked when the bytes are in (charge on attach).
            size_bytes = min(
                size_limit(principal.tenant, self.settings.max_file_size_bytes), MAX_PART_BYTES
            )
            chosen, count = max(size_bytes, 1), 1
        elif size_bytes < 0:
            raise InvalidInput("the size cannot be negative")
        else:
            await self._check_room(principal, size_bytes)
            if protocol is UploadProtocol.parts:
                default = self.settings.upload_part_size_bytes
                chosen = choose_part_size(size_bytes, part_size, default)
                count = len(part_sizes(size_bytes, chosen))
            else:
                chosen, count = max(size_bytes, 1), 1
        handle = await anyio.to_thread.run_sync(self.storage.start_upload)
        try:
            async with self.db.session() as session:
                assets = AssetService(session, self.sniffer, jobs=self._jobs(session))
                if asset_id is None:
                    data = AssetCreate.model_validate(
                        {
                            **(fields or AssetFields()).model_dump(exclude_unset=True),
                            "kind": AssetKind.BLOB,
                        }
                    )
                    if not data.name:
                        data.name = filename
                    asset = await assets.create_from_json(principal, data)
                else:
                    asset = await assets.get(principal, asset_id, Action.edit)
                    _check_takes_versions(asset)
                upload = UploadSession(
                    tenant_id=principal.tenant.id,
                    asset_id=asset.id,
                    created_asset=asset_id is None and not keep_asset,
                    protocol=protocol,
                    state=UploadState.open,
                    filename=filename,
                    size_bytes=size_bytes,
                    size_exact=size_exact,
                    sha256=sha256,
                    part_size_bytes=chosen,
                    part_count=count,
                    offset_bytes=0,
                    storage_handle=handle,
                    upload_metadata=dict(upload_metadata or {}),
                    auto_complete=auto_complete and count == 1,
                    expires_at=utcnow()
                    + timedelta(seconds=self.settings.upload_session_ttl_seconds),
                    created_by=principal.actor,
                    created_at=utcnow(),
                )
                await UploadSessionRepository(session).add(upload)
        except BaseException:
            await anyio.to_thread.run_sync(self.storage.abort_upload, handle)
            raise
        log.info(
            "upload.created",
            upload_id=upload.id,
            asset_id=asset.id,
            protocol=protocol.value,
            size_bytes=size_bytes,
            parts=count,
        )
        ticket = Ticket(upload, asset)
        if protocol is UploadProtocol.parts:
            ticket.parts = await anyio.to_thread.run_sync(self._part_targets, upload)
        return ticket

    async def _check_room(self, principal: Principal, size_bytes: int) -> None:
        tenant = principal.tenant
        limit = size_limit(tenant, self.settings.max_file_size_bytes)
        if size_bytes > limit:
            raise PayloadTooLarge(
                f"the file is larger than the limit of {limit} bytes", limit=limit
            )
        if tenant.quota_bytes is not None:
            async with self.db.session(write=False) as session:
                used = await TenantService(session).used_bytes(tenant.id)
            remaining = max(0, tenant.quota_bytes - used)
            if size_bytes > remaining:
                raise QuotaExceeded(
                    f"the file does not fit in the tenant's remaining quota of {remaining} bytes",
                    limit=remaining,
                )

    def part_targets(self, upload: UploadSession) -> list[PartTarget]:
        """Presigned URLs for every part (blocking: S3 signs locally, but call off the loop)."""
        return self._part_targets(upload)

    def _part_targets(self, upload: UploadSession) -> list[PartTarget]:
        expires_in = max(1, int((upload.expires_at - utcnow()).total_seconds()))
        expires = int(time.time()) + expires_in
        base = self.settings.resolved_public_url()
        targets = []
        sizes = part_sizes(upload.size_bytes, upload.part_size_bytes)
        for number, size in enumerate(sizes, start=1):
            url = self.storage.presign_part(upload.storage_handle, number, expires_in)
            if url is None:
                signature = self.signer.signature("part", upload.id, number, expires)
                url = (
                    f"{base}/v1/uploads/{upload.id}/parts/{number}"
                    f"?expires={expires}&signature={signature}"
                )
            targets.append(PartTarget(number, size, url))
        return targets

    # -- reading ---------------------------------------------------------------------------

    async def get(self, principal: Principal, upload_id: str) -> tuple[UploadSession, list[int]]:
        """The session and the numbers of the parts received so far."""
        async with self.db.session(write=False) as session:
            upload = await UploadSessionRepository(session).find(principal.tenant.id, upload_id)
            if upload is None:
                raise NotFound(f"upload {upload_id} not found")
            if self._presigns():
                numbers = None
            else:
                parts = await UploadPartRepository(session).list_for(upload.tenant_id, upload.id)
                numbers = [part.number for part in parts]
        if numbers is None:
            if upload.state is UploadState.open:
                numbers = [part.number for part in await self._stored_parts(upload)]
            elif upload.state is UploadState.completed:
                numbers = list(range(1, upload.part_count + 1))
            else:
                numbers = []  # S3 forgot the parts with the multipart upload
        return upload, numbers

    def _jobs(self, session: AsyncSession) -> JobService | None:
        return self._job_service(session) if self._job_service is not None else None

    async def open_session_of(self, principal: Principal, asset_id: str) -> str | None:
        """The newest open upload of an asset (clients that kept only the asset id)."""
        async with self.db.session(write=False) as session:
            upload = await UploadSessionRepository(session).latest_open_for_asset(
                principal.tenant.id, asset_id
            )
        return upload.id if upload is not None else None

    def _presigns(self) -> bool:
        return self.storage.direct_parts

    # -- parts through assetd (local store) ------------------------------------------------

    def verify_part_url(self, upload_id: str, number: int, expires: int, signature: str) -> bool:
        if expires < int(time.time()):
            return False
        expected = self.signer.signature("part", upload_id, number, expires)
        return _equal(expected, signature)

    async def receive_part(
        self,
        upload_id: str,
        number: int,
        chunks: AsyncIterator[bytes],
        *,
        md5: str | None = None,
        sha256: str | None = None,
    ) -> PartInfo:
        """Stream one part into place; the URL's signature was checked by the caller."""
        async with self.db.session(write=False) as session:
            upload = await UploadSessionRepository(session).find_any_tenant(upload_id)
        if upload is None:
            raise NotFound(f"upload {upload_id} not found")
        _check_open(upload)
        if upload.protocol is not UploadProtocol.parts:
            raise Conflict("this upload takes tus PATCH requests, not parts")
        sizes = part_sizes(upload.size_bytes, upload.part_size_bytes)
        if not 1 <= number <= len(sizes):
            raise InvalidInput(f"part number must be between 1 and {len(sizes)}")
        size = sizes[number - 1]
        limit_text = f"must be {size} bytes" if upload.size_exact else f"may be {size} bytes"
        # A re-sent part overwrites the old one in place; until it is whole, it is missing.
        async with self.db.session() as session:
            await UploadPartRepository(session).forget(upload.tenant_id, upload.id, number)
        offset = (number - 1) * upload.part_size_bytes
        prefix = self._prefix(upload)
        if prefix is not None:
            prefix.started(number)
        try:
            writer = await anyio.to_thread.run_sync(
                self.storage.part_writer, upload.storage_handle, number, offset
            )
            info, received_sha256 = await stream_into(
                writer,
                chunks,
                limit=size,
                on_limit=lambda: PayloadTooLarge(
                    f"part {number} {limit_text}; more arrived", limit=size
                ),
                want_sha256=sha256 is not None,
                on_written=partial(prefix.progress, number) if prefix is not None else None,
            )
            if upload.size_exact and info.size_bytes != size:
                raise InvalidInput(f"part {number} must be {size} bytes, {info.size_bytes} arrived")
            if md5 is not None and md5 != info.etag:
                raise DigestMismatch(f"part {number}: MD5 is {info.etag}, Content-MD5 said {md5}")
            if sha256 is not None and sha256 != received_sha256:
                raise DigestMismatch(
                    f"part {number}: SHA-256 is {received_sha256}, "
                    f"the checksum header said {sha256}"
                )
        except BaseException:
            if prefix is not None:
                prefix.failed(number)
            raise
        if prefix is not None:
            prefix.finished(number, info.etag)
        async with self.db.session() as session:
            current = await UploadSessionRepository(session).find_any_tenant(upload_id)
            if current is None:
                raise NotFound(f"upload {upload_id} not found")
            _check_open(current)
            await UploadPartRepository(session).record(
                UploadPart(
                    tenant_id=upload.tenant_id,
                    session_id=upload.id,
                    number=number,
                    size_bytes=info.size_bytes,
                    etag=info.etag,
                    received_at=utcnow(),
                )
            )
        if upload.auto_complete:
            principal = await self._creator(upload)
            await self._claim(upload)
            await self._finish(principal, upload, [info], upload.sha256)
        return info

    def _prefix(self, upload: UploadSession) -> PrefixDigests | None:
        """This process's hasher of the upload's prefix, when the store can read parts back."""
        if self.digests is None or not isinstance(self.storage, ReadableUploads):
            return None
        return self.digests.prefix(
            upload.id,
            partial(self.storage.read_upload_into, upload.storage_handle),
            upload.part_size_bytes,
        )

    async def _creator(self, upload: UploadSession) -> Principal:
        """Who completes a self-completing upload: its creator, authorized when it began."""
        async with self.db.session(write=False) as session:
            tenant = await TenantService(session).get(upload.tenant_id)
        return Principal(
            tenant=TenantSnapshot.of(tenant),
            subject=upload.created_by or "upload",
            scopes=frozenset({ADMIN}),
        )

    # -- completing ------------------------------------------------------------------------

    async def complete(
        self,
        principal: Principal,
        upload_id: str,
        parts: list[ClientPart] | None = None,
        sha256: str | None = None,
    ) -> tuple[Asset, Version]:
        async with self.db.session(write=False) as session:
            upload = await UploadSessionRepository(session).find(principal.tenant.id, upload_id)
        if upload is None:
            raise NotFound(f"upload {upload_id} not found")
        _check_open(upload)
        if upload.protocol is not UploadProtocol.parts:
            raise Conflict("a tus upload completes by itself when its last byte arrives")
        if sha256 is not None and upload.sha256 is not None and sha256 != upload.sha256:
            raise InvalidInput("sha256 differs from the one given when the upload was created")
        stored = await self._stored_parts(upload)
        _check_parts(upload, stored, parts)
        await self._claim(upload)
        return await self._finish(principal, upload, stored, sha256 or upload.sha256)

    async def _stored_parts(self, upload: UploadSession) -> list[PartInfo]:
        if self._presigns():
            return await anyio.to_thread.run_sync(self.storage.list_parts, upload.storage_handle)
        async with self.db.session(write=False) as session:
            rows = await UploadPartRepository(session).list_for(upload.tenant_id, upload.id)
        return [PartInfo(row.number, row.size_bytes, row.etag) for row in rows]

    async def _claim(self, upload: UploadSession) -> None:
        """open → completing, so that a second complete (or a cancel) cannot run alongside."""
        async with self.db.session() as session:
            current = await UploadSessionRepository(session).find(
                upload.tenant_id, upload.id, lock=True
            )
            if current is None:
                raise NotFound(f"upload {upload.id} not found")
            _check_open(current)
            current.state = UploadState.completing

    async def _finish(
        self,
        principal: Principal,
        upload: UploadSession,
        parts: list[PartInfo] | None,
        expected_sha256: str | None,
    ) -> tuple[Asset, Version]:
        try:
            assembled = await anyio.to_thread.run_sync(
                self.storage.complete_upload, upload.storage_handle, parts
            )
        except InvalidParts as exc:
            # The store refused the parts as listed: the client may still fix them.
            await self._set_state(upload, UploadState.open)
            raise InvalidInput(f"the parts cannot be assembled: {exc}") from None
        except BaseException:
            await self._fail(upload, "the parts could not be assembled")
            raise
        known = self.digests.finished(upload.id, upload.size_bytes) if self.digests else None
        prefix = self.digests.take_prefix(upload.id) if self.digests else None
        try:
            if known is None and prefix is not None and parts is not None:
                # Parts hashed while they arrived: only the rest is read now.
                known = await anyio.to_thread.run_sync(prefix.finish, parts, assembled.size_bytes)
            if known is not None:
                sha, md5 = known
                head = await anyio.to_thread.run_sync(read_head, assembled)
            else:
                sha, md5, head = await anyio.to_thread.run_sync(digest, assembled)
        except BaseException:
            await anyio.to_thread.run_sync(assembled.abort)
            await self._fail(upload, "the assembled file could not be read")
            raise
        if upload.size_exact and assembled.size_bytes != upload.size_bytes:
            await anyio.to_thread.run_sync(assembled.abort)
            await self._fail(upload, "size mismatch")
            raise InvalidInput(
                f"the upload has {assembled.size_bytes} bytes, {upload.size_bytes} were announced"
            )
        if expected_sha256 is not None and sha != expected_sha256:
            await anyio.to_thread.run_sync(assembled.abort)
            await self._fail(upload, "SHA-256 mismatch")
            raise DigestMismatch(
                f"SHA-256 of the uploaded bytes is {sha}, the client announced {expected_sha256}"
            )
        staged = StagedUpload(
            writer=assembled,
            sha256=sha,
            md5=md5,
            size_bytes=assembled.size_bytes,
            head=head,
            filename=upload.filename,
        )
        try:
            async with self.db.session() as session:
                assert upload.asset_id is not None  # a live session keeps its asset
                assets = AssetService(session, self.sniffer, jobs=self._jobs(session))
                version = await assets.add_version(principal, upload.asset_id, staged)
                current = await UploadSessionRepository(session).find(
                    upload.tenant_id, upload.id, lock=True
                )
                assert current is not None
                current.state = UploadState.completed
                current.completed_at = utcnow()
                current.version_number = version.number
                current.offset_bytes = assembled.size_bytes
                asset = await AssetRepository(session).get(upload.tenant_id, upload.asset_id)
                assert asset is not None
        except AssetdError as exc:
            # Policy, quota or a vanished asset: the bytes are gone (add_version discards
            # them), and so is the session.
            if not staged.published:
                await staged.discard()
            await self._fail(upload, exc.detail)
            raise
        except BaseException:
            if not staged.published:
                await staged.discard()
            await self._fail(upload, "the version could not be saved")
            raise
        log.info(
            "upload.completed",
            upload_id=upload.id,
            asset_id=asset.id,
            version=version.number,
            size_bytes=version.size_bytes,
        )
        return asset, version

    # -- tus -------------------------------------------------------------------------------

    async def append(
        self,
        principal: Principal,
        upload_id: str,
        offset: int,
        chunks: AsyncIterator[bytes],
        checksum: TusChecksum | None = None,
    ) -> tuple[UploadSession, Version | None]:
        """Bytes at `offset` of a tus upload; the last byte completes it into a version.

        One append at a time per upload, in every process: the offset check, the write and
        the new offset happen under the upload's lock, and a second request meanwhile gets
        Locked at once (tus clients retry it). Without the lock two appends at the same
        offset both wrote, and the loser's bytes could replace those the winner recorded.
        """
        async with self.db.session(write=False) as session:
            upload = await UploadSessionRepository(session).find(principal.tenant.id, upload_id)
        # A parts session is no tus upload: answered as tus answers unknown uploads.
        if upload is None or upload.protocol is not UploadProtocol.tus:
            raise NotFound(f"upload {upload_id} not found")
        async with self.db.locks.hold(f"upload:{upload.id}") as held:
            if not held:
                raise Locked(f"another request is appending to upload {upload_id}; retry")
            upload = await self._append_locked(upload, offset, chunks, checksum)
        if upload.state is not UploadState.completing:
            return upload, None
        _, version = await self._finish(principal, upload, None, upload.sha256)
        async with self.db.session(write=False) as session:
            done = await UploadSessionRepository(session).find(upload.tenant_id, upload.id)
        assert done is not None
        return done, version

    async def _append_locked(
        self,
        found: UploadSession,
        offset: int,
        chunks: AsyncIterator[bytes],
        checksum: TusChecksum | None,
    ) -> UploadSession:
        # Read again under the lock: an append that ended just before it was taken has
        # moved the offset since `found` was read.
        async with self.db.session(write=False) as session:
            upload = await UploadSessionRepository(session).find(found.tenant_id, found.id)
        if upload is None:
            raise NotFound(f"upload {found.id} not found")
        _check_open(upload)
        if offset != upload.offset_bytes:
            raise Conflict(
                f"Upload-Offset is {offset}, the upload is at {upload.offset_bytes}",
                offset=upload.offset_bytes,
            )
        total = upload.size_bytes
        room = total - offset
        try:
            writer = await anyio.to_thread.run_sync(
                self.storage.append_writer, upload.storage_handle, offset
            )
        except ValueError as exc:
            raise Conflict(f"the stored upload does not continue at {offset}: {exc}") from None
        digest = hashlib.new(checksum.algorithm) if checksum is not None else None
        # The whole file's hashes, carried from the previous append when this process saw it.
        running = self.digests.take(upload.id, offset) if self.digests is not None else None
        hashes = [d for d in (digest, *(running or ())) if d is not None]
        info, _ = await stream_into(
            writer,
            chunks,
            limit=room,
            on_limit=lambda: PayloadTooLarge(
                f"the upload is {total} bytes; this request goes past the end", limit=total
            ),
            digests=hashes,
            # tus keeps what arrived before a disconnect, unless a checksum must cover it all.
            keep_partial=checksum is None,
        )
        if checksum is not None and digest is not None and digest.digest() != checksum.digest:
            await anyio.to_thread.run_sync(writer.abort)
            raise ChecksumMismatch("the request body does not match its Upload-Checksum")
        new_offset = offset + info.size_bytes
        async with self.db.session() as session:
            current = await UploadSessionRepository(session).find(
                upload.tenant_id, upload.id, lock=True
            )
            if current is None:
                raise NotFound(f"upload {found.id} not found")
            # Still checked: a cancel or the expiry sweep does not take the append lock.
            _check_open(current)
            if current.offset_bytes != offset:
                raise Conflict("another request appended to this upload meanwhile")
            current.offset_bytes = new_offset
            if new_offset == upload.size_bytes:
                current.state = UploadState.completing
            upload = current
        if running is not None and self.digests is not None:
            self.digests.put(upload.id, new_offset, *running)
        return upload

    # -- cancelling and expiring -----------------------------------------------------------

    async def cancel(self, principal: Principal, upload_id: str) -> None:
        """Abort: staged bytes deleted, and an asset the session made is removed again."""
        async with self.db.session() as session:
            upload = await UploadSessionRepository(session).find(
                principal.tenant.id, upload_id, lock=True
            )
            if upload is None:
                raise NotFound(f"upload {upload_id} not found")
            if upload.state is UploadState.completed:
                raise Conflict("the upload is complete; delete the asset or version instead")
            if upload.state is UploadState.completing:
                raise Conflict("the upload is being completed")
            if upload.state is not UploadState.open:
                return  # cancelled, expired or failed: already nothing left
            upload.state = UploadState.cancelled
            await _drop_created_asset(session, upload)
        if self.digests is not None:
            self.digests.take_prefix(upload.id)
        await anyio.to_thread.run_sync(self.storage.abort_upload, upload.storage_handle)
        log.info("upload.cancelled", upload_id=upload_id)

    async def expire(self, now: datetime | None = None, *, orphan_grace_seconds: int = 3600) -> int:
        return await expire_sessions(
            self.db, self.storage, now=now, orphan_grace_seconds=orphan_grace_seconds
        )

    async def _set_state(self, upload: UploadSession, state: UploadState) -> None:
        async with self.db.session() as session:
            current = await UploadSessionRepository(session).find(
                upload.tenant_id, upload.id, lock=True
            )
            if current is not None:
                current.state = state

    async def _fail(self, upload: UploadSession, reason: str) -> None:
        """The session ends with nothing: no version, no staged bytes, no asset it made."""
        try:
            async with self.db.session() as session:
                current = await UploadSessionRepository(session).find(
                    upload.tenant_id, upload.id, lock=True
                )
                if current is not None:
                    current.state = UploadState.failed
                    current.error = reason[:1000]
                    await _drop_created_asset(session, current)
        finally:
            await anyio.to_thread.run_sync(self.storage.abort_upload, upload.storage_handle)
        log.info("upload.failed", upload_id=upload.id, reason=reason)


async def expire_sessions(
    db: Database,
    storage: MultipartStorage,
    *,
    now: datetime | None = None,
    orphan_grace_seconds: int = 3600,
) -> int:
    """End sessions past their expiry and drop staged uploads no live session knows about.

    Safe to run in many processes at once: each session is ended under its row lock.
    """
    now = now or utcnow()
    ended = 0
    while True:
        async with db.session(write=False) as session:
            batch = await UploadSessionRepository(session).expired(now, EXPIRE_BATCH)
        if not batch:
            break
        for upload in batch:
            async with db.session() as session:
                current = await UploadSessionRepository(session).find(
                    upload.tenant_id, upload.id, lock=True
                )
                if current is None or current.state not in (
                    UploadState.open,
                    UploadState.completing,
                ):
                    continue
                current.state = UploadState.expired
                await _drop_created_asset(session, current)
            await anyio.to_thread.run_sync(storage.abort_upload, upload.storage_handle)
            ended += 1
    ended += await _drop_orphans(db, storage, now, orphan_grace_seconds)
    if ended:
        log.info("upload.expired", count=ended)
    return ended


async def _drop_orphans(
    db: Database, storage: MultipartStorage, now: datetime, grace_seconds: int
) -> int:
    # A crash between start_upload and the session's insert leaves bytes nobody points at.
    stale = [
        info.key
        for info in await anyio.to_thread.run_sync(lambda: list(storage.list_uploads()))
        if info.modified_at < now - timedelta(seconds=grace_seconds)
    ]
    dropped = 0
    for start in range(0, len(stale), 500):
        chunk = stale[start : start + 500]
        async with db.session(write=False) as session:
            known = await UploadSessionRepository(session).live_handles(chunk)
        for handle in chunk:
            if handle not in known:
                await anyio.to_thread.run_sync(storage.abort_upload, handle)
                dropped += 1
    return dropped


def _equal(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode(), b.encode())


def _check_open(upload: UploadSession) -> None:
    if upload.state is UploadState.completed:
        raise Conflict(f"upload {upload.id} is already complete")
    if upload.state is UploadState.completing:
        raise Conflict(f"upload {upload.id} is being completed")
    if upload.state is not UploadState.open:
        raise Gone(f"upload {upload.id} is {upload.state.value}")
    if upload.expires_at <= utcnow():
        raise Gone(f"upload {upload.id} has expired")


def _check_takes_versions(asset: Asset) -> None:
    if asset.kind is AssetKind.LINK:
        raise Conflict("a LINK asset has no content versions")
    if asset.state is AssetState.trashed:
        raise Conflict("restore the asset before adding a version")


def _check_parts(
    upload: UploadSession, stored: list[PartInfo], claimed: list[ClientPart] | None
) -> None:
    """Every part there, each the right size, and the client's list (if any) the same parts."""
    sizes = part_sizes(upload.size_bytes, upload.part_size_bytes)
    by_number = {part.number: part for part in stored}
    problems = []
    missing = [n for n in range(1, len(sizes) + 1) if n not in by_number]
    if missing:
        problems.append(f"missing parts: {_ranges(missing)}")
    extra = sorted(n for n in by_number if not 1 <= n <= len(sizes))
    if extra:
        problems.append(f"unexpected parts: {_ranges(extra)}")
    for number, size in enumerate(sizes, start=1):
        part = by_number.get(number)
        if not upload.size_exact:
            if part is not None and part.size_bytes > size:
                problems.append(f"part {number} has {part.size_bytes} bytes, at most {size}")
        elif part is not None and part.size_bytes != size:
            problems.append(f"part {number} has {part.size_bytes} bytes, it must have {size}")
    if claimed is not None:
        numbers = [part.number for part in claimed]
        if len(set(numbers)) != len(numbers):
            problems.append("the parts list names a part twice")
        if sorted(set(numbers)) != list(range(1, len(sizes) + 1)):
            problems.append(f"the parts list must name parts 1 to {len(sizes)}")
        for given in claimed:
            held = by_number.get(given.number)
            if given.etag is not None and held is not None and _bare(given.etag) != held.etag:
                problems.append(f"part {given.number}: ETag {given.etag} is not the stored part's")
    if problems:
        raise InvalidInput("the upload is not complete: " + "; ".join(problems), problems=problems)


def _bare(etag: str) -> str:
    return etag.strip().removeprefix("W/").strip('"').lower()


def _ranges(numbers: list[int]) -> str:
    shown = ", ".join(str(n) for n in numbers[:20])
    return shown + (f" and {len(numbers) - 20} more" if len(numbers) > 20 else "")


async def _drop_created_asset(session: AsyncSession, upload: UploadSession) -> None:
    if not upload.created_asset or upload.asset_id is None:
        return
    assets = AssetRepository(session)
    asset = await assets.get(upload.tenant_id, upload.asset_id)
    if asset is not None and asset.version_number is None:
        await assets.delete(asset)
