"""The blob store interface. Calls block; async callers run them off the event loop."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol, runtime_checkable

READ_CHUNK_BYTES = 1024 * 1024


class BlobNotFound(Exception):
    """No blob under that key."""


class InvalidKey(ValueError):
    """A key that could escape the store or is not one assetd makes."""


class UploadBusy(ValueError):
    """Another request is appending to this upload right now."""


class InvalidParts(ValueError):
    """Parts that cannot be assembled: unknown numbers or ETags the store does not hold."""


@dataclass(frozen=True)
class BlobInfo:
    key: str
    size_bytes: int
    modified_at: datetime


@runtime_checkable
class BlobWriter(Protocol):
    """Bytes being staged; invisible under any key until commit()."""

    def write(self, data: bytes) -> None: ...

    def seal(self) -> None:
        """No more writes: make the staged bytes durable, so that commit() only publishes.

        Called before the database transaction that references the blob, to keep slow work
        (fsync, completing an S3 multipart upload) out of it. commit() seals if needed.
        """

    def commit(self, key: str) -> None:
        """Durably publish the staged bytes under key, replacing what may be there."""

    def publish_now(self, key: str) -> Callable[[], None] | None:
        """commit() in two halves, where the first is cheap enough for the event loop.

        Makes the sealed bytes visible under key at once (a rename) and returns the blocking
        second half that makes this durable (an fsync of the directory), for the caller to
        run later, off the loop. None, with nothing done: this store has no cheap first half
        (S3 copies objects) or the bytes are not sealed, and commit() is the way.
        """

    def abort(self) -> None:
        """Drop the staged bytes; safe to call twice or after commit."""


@dataclass(frozen=True)
class PartInfo:
    """One part of a multipart upload as the store holds it; etag is bare (no quotes)."""

    number: int
    size_bytes: int
    etag: str


class PartWriter(Protocol):
    """Bytes of one part (or one tus append) on their way into a staged upload."""

    def write(self, data: bytes) -> None: ...

    def finish(self) -> PartInfo:
        """The part is stored; until then a reader sees the old part, or none."""

    def abort(self) -> None:
        """Forget what this writer wrote; safe to call twice or after finish."""


class AssembledUpload(BlobWriter, Protocol):
    """A completed multipart upload: sealed bytes to hash, then publish or drop like a writer."""

    size_bytes: int

    def read(self) -> Iterator[bytes]: ...


@runtime_checkable
class MultipartStorage(Protocol):
    """Uploads that arrive in parts (any order, in parallel) or in appends (tus).

    A handle names one staged upload; callers store it and pass it back. Staged uploads live
    apart from the blobs and from the writer staging area: they outlive a request, so only
    the upload-session expiry job removes them.
    """

    # True when clients PUT parts straight to the store (presign_part gives URLs), so that
    # only the store knows which parts arrived.
    direct_parts: bool

    def start_upload(self) -> str: ...

    def part_writer(self, handle: str, number: int, offset: int) -> PartWriter:
        """Receive part `number` through assetd; it starts at byte `offset` of the file."""

    def presign_part(self, handle: str, number: int, expires_in: int) -> str | None:
        """A URL the client PUTs the part to directly, or None when the bytes go via assetd."""

    def list_parts(self, handle: str) -> list[PartInfo]:
        """The parts the store holds, by number; authoritative for presigned parts."""

    def append_writer(self, handle: str, offset: int) -> PartWriter:
        """Bytes that continue the upload at `offset` (tus PATCH); the store cuts them in parts.

        The caller's offset is the truth: stored bytes past it were never acknowledged (a crash
        or a failed checksum after finish()) and are dropped. ValueError when fewer are stored.
        Appends to one upload must not overlap in time.
        """

    def complete_upload(self, handle: str, parts: list[PartInfo] | None) -> AssembledUpload:
        """Assemble the parts (None: everything appended) into one sealed, readable object.

        Raises InvalidParts when the store cannot build the file from the parts named.
        """

    def abort_upload(self, handle: str) -> None:
        """Drop the staged upload and every part; no error when it is already gone."""

    def list_uploads(self) -> Iterator[BlobInfo]:
        """Staged uploads (key = handle) with their last change, for the cleanup of leftovers."""


@runtime_checkable
class ReadableUploads(Protocol):
    """A store whose staged uploads can be read back while parts still arrive (local, memory)."""

    def read_upload_into(self, handle: str, start: int, buffer: memoryview) -> int:
        """Fill `buffer` with the staged upload's bytes from `start`, as written so far;
        returns how many there were."""


@runtime_checkable
class BlobStorage(MultipartStorage, Protocol):
    def writer(self) -> BlobWriter: ...

    def read(self, key: str, start: int = 0, end: int | None = None) -> Iterator[bytes]:
        """Chunks of bytes start..end (inclusive; None = to the end). Raises BlobNotFound."""

    def size(self, key: str) -> int:
        """Size in bytes. Raises BlobNotFound."""

    def delete(self, key: str) -> None:
        """Remove the blob; no error when it is already gone."""

    def list(self, prefix: str = "") -> Iterator[BlobInfo]:
        """Every committed blob under prefix (staging areas excluded)."""

    def list_staging(self) -> Iterator[BlobInfo]:
        """Staged uploads that were never committed or aborted (a crash leaves them)."""

    def delete_staging(self, key: str) -> None: ...

    def close(self) -> None: ...


def check_parts(parts: Sequence[PartInfo]) -> int:
    """The parts' total size; InvalidParts for no parts or a repeated or non-positive number."""
    numbers = {part.number for part in parts}
    if not parts:
        raise InvalidParts("no parts to complete the upload with")
    if len(numbers) != len(parts):
        raise InvalidParts("a part number is named twice")
    if min(numbers) < 1:
        raise InvalidParts("part numbers start at 1")
    return sum(part.size_bytes for part in parts)


def put_bytes(storage: BlobStorage, key: str, data: bytes) -> None:
    """Store a small blob in one go (tests, fixtures)."""
    writer = storage.writer()
    try:
        writer.write(data)
        writer.commit(key)
    finally:
        writer.abort()


def read_all(storage: BlobStorage, key: str) -> bytes:
    return b"".join(storage.read(key))
