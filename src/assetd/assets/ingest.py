"""Stream an upload from the socket through the hashes into the blob store's staging area.

The bytes are written once: staged as they arrive, then published under their content
address by a rename (local) or a server-side copy (S3). Memory per upload is two batches.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
from collections.abc import Callable
from concurrent import futures
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import anyio.to_thread
from sqlalchemy.ext.asyncio import AsyncSession

from assetd.assets.sniff import SNIFF_BYTES
from assetd.db.session import after_commit
from assetd.errors import AssetdError, DigestMismatch, InvalidInput
from assetd.storage.base import BlobStorage, BlobWriter

BATCH_BYTES = 1024 * 1024


@dataclass
class ExpectedDigests:
    """Digests the client announced; checked once the last byte is in."""

    sha256: str | None = None
    md5: str | None = None

    @classmethod
    def from_headers(cls, headers: dict[str, str]) -> ExpectedDigests:
        """Reads Content-Digest (RFC 9530), Digest (RFC 3230), Content-MD5, X-Checksum-Sha256."""
        expected = cls()
        for header in ("content-digest", "digest"):
            for item in headers.get(header, "").split(","):
                algorithm, _, value = item.strip().partition("=")
                value = value.strip().strip(":")
                if algorithm.lower() == "sha-256" and value:
                    expected.sha256 = _b64_to_hex(value, header)
                elif algorithm.lower() == "md5" and value:
                    expected.md5 = _b64_to_hex(value, header)
        if headers.get("content-md5"):
            expected.md5 = _b64_to_hex(headers["content-md5"], "Content-MD5")
        if headers.get("x-checksum-sha256"):
            value = headers["x-checksum-sha256"].strip().lower()
            if len(value) != 64 or any(c not in "0123456789abcdef" for c in value):
                raise InvalidInput("X-Checksum-Sha256 must be 64 hex digits")
            expected.sha256 = value
        return expected


def _b64_to_hex(value: str, header: str) -> str:
    try:
        return base64.b64decode(value, validate=True).hex()
    except (binascii.Error, ValueError):
        raise InvalidInput(f"{header} must be base64") from None


@dataclass
class StagedUpload:
    """Verified bytes waiting in staging: publish() makes them a blob, discard() drops them."""

    writer: BlobWriter
    sha256: str
    md5: str
    size_bytes: int
    head: bytes
    filename: str = ""
    published: bool = field(default=False)

    async def publish(self, key: str, session: AsyncSession | None = None) -> None:
        """Make the bytes the blob under key, replacing identical bytes that may be there.

        Given the session whose transaction references the blob, a store that can publish
        by a rename does it at once, on the loop, and the fsync that makes it durable waits
        for the commit (after_commit): SQLite's write lock is not held while the disk syncs.
        """
        finish = self.writer.publish_now(key) if session is not None else None
        if session is not None and finish is not None:
            after_commit(session, finish)
        else:
            await anyio.to_thread.run_sync(self.writer.commit, key)
        self.published = True

    async def discard(self) -> None:
        await anyio.to_thread.run_sync(self.writer.abort)


class Ingest:
    """Feed chunks in; the size limit is enforced on every chunk, before anything is stored."""

    def __init__(
        self,
        storage: BlobStorage,
        *,
        limit_bytes: int | None,
        on_limit: Callable[[int], AssetdError],
        expected: ExpectedDigests | None = None,
    ) -> None:
        self._storage = storage
        self._limit = limit_bytes
        self._on_limit = on_limit
        self._expected = expected or ExpectedDigests()
        self._writer: BlobWriter | None = None
        self._sha256 = hashlib.sha256()
        self._md5 = hashlib.md5(usedforsecurity=False)
        self._chunks: list[bytes] = []
        self._buffered = 0
        self._hasher: ThreadPoolExecutor | None = None
        self._pending: asyncio.Future[None] | None = None
        self._head = bytearray()
        self.size_bytes = 0

    async def feed(self, data: bytes) -> None:
        if not data:
            return
        self.size_bytes += len(data)
        if self._limit is not None and self.size_bytes > self._limit:
            await self.abort()
            raise self._on_limit(self._limit)
        if len(self._head) < SNIFF_BYTES:
            self._head += data[: SNIFF_BYTES - len(self._head)]
        self._chunks.append(data)
        self._buffered += len(data)
        if self._buffered >= BATCH_BYTES:
            await self._flush()

    def _take_batch(self) -> bytes:
        # One copy to join the chunks (none for a single chunk), where a bytearray plus
        # bytes() made two.
        batch = b"".join(self._chunks)
        self._chunks.clear()
        self._buffered = 0
        return batch

    async def _flush(self) -> None:
        batch = self._take_batch()
        await self._wait_pending()
        # While the event loop reads the next batch, this one is written by a worker thread
        # and hashed by two more: hashlib and file writes release the GIL, so on a multi-core
        # machine an upload runs at the speed of its slowest step (MD5), not of all three.
        # One hand-off per batch, not one per step: each wakes the event loop (~150 µs CPU).
        self._pending = asyncio.ensure_future(anyio.to_thread.run_sync(self._store, batch))

    def _store(self, batch: bytes) -> None:
        if self._writer is None:
            self._writer = self._storage.writer()
        if self._hasher is None:
            self._hasher = ThreadPoolExecutor(2, "assetd-ingest-hash")
        hashing = [self._hasher.submit(self._sha256.update, batch)]
        hashing.append(self._hasher.submit(self._md5.update, batch))
        try:
            self._writer.write(batch)
        finally:
            futures.wait(hashing)
        for future in hashing:
            future.result()

    def _store_last(self, batch: bytes) -> BlobWriter:
        """The last batch, then seal (fsync): outside the transaction that will reference
        the bytes. A small upload takes this one hand-off and no other."""
        writer = self._writer
        if writer is None:
            writer = self._writer = self._storage.writer()
        if len(batch) >= BATCH_BYTES // 4:
            self._store(batch)
        else:
            # Hashing a few KiB here costs less than handing it to other threads.
            self._sha256.update(batch)
            self._md5.update(batch)
            writer.write(batch)
        writer.seal()  # an empty upload still gets a zero-byte staging blob
        return writer

    async def _wait_pending(self) -> None:
        if self._pending is not None:
            pending, self._pending = self._pending, None
            await pending

    async def finish(self, filename: str = "") -> StagedUpload:
        """Everything staged and verified against any announced digest."""
        try:
            await self._wait_pending()
            writer = await anyio.to_thread.run_sync(self._store_last, self._take_batch())
        except BaseException:
            await self.abort()
            raise
        finally:
            self._stop_hasher()
        staged = StagedUpload(
            writer=writer,
            sha256=self._sha256.hexdigest(),
            md5=self._md5.hexdigest(),
            size_bytes=self.size_bytes,
            head=bytes(self._head),
            filename=filename,
        )
        for name, expected, actual in (
            ("SHA-256", self._expected.sha256, staged.sha256),
            ("MD5", self._expected.md5, staged.md5),
        ):
            if expected is not None and expected != actual:
                await staged.discard()
                raise DigestMismatch(
                    f"{name} of the received bytes is {actual}, the client announced {expected}"
                )
        return staged

    async def abort(self) -> None:
        """Drop whatever was staged; never raises, so it can run while handling an error."""
        try:
            await self._wait_pending()
        except Exception:
            pass
        self._stop_hasher()
        self._chunks.clear()
        self._buffered = 0
        if self._writer is not None:
            writer, self._writer = self._writer, None
            await anyio.to_thread.run_sync(writer.abort)

    def _stop_hasher(self) -> None:
        if self._hasher is not None:
            self._hasher.shutdown(wait=False)
            self._hasher = None
