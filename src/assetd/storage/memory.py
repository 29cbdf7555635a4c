"""Blobs in a dict: for tests and throwaway instances."""

from __future__ import annotations

import builtins
import hashlib
import threading
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime

from assetd.storage.base import (
    READ_CHUNK_BYTES,
    BlobInfo,
    BlobNotFound,
    InvalidParts,
    PartInfo,
    check_parts,
)
from assetd.storage.keys import check_key


class InMemoryBlobWriter:
    def __init__(self, storage: InMemoryBlobStorage) -> None:
        self._storage = storage
        self.staging_key = uuid.uuid4().hex
        self._closed = False
        storage.staging[self.staging_key] = (bytearray(), datetime.now(UTC))

    def write(self, data: bytes) -> None:
        if self._closed:
            raise ValueError("writer is closed")
        self._storage.staging[self.staging_key][0].extend(data)

    def seal(self) -> None:
        if self._closed:
            raise ValueError("writer is closed")

    def commit(self, key: str) -> None:
        if self._closed:
            raise ValueError("writer is closed")
        check_key(key)
        with self._storage.lock:
            data, _ = self._storage.staging.pop(self.staging_key)
            self._storage.blobs[key] = (bytes(data), datetime.now(UTC))
        self._closed = True

    def publish_now(self, key: str) -> Callable[[], None] | None:
        self.commit(key)
        return _nothing

    def abort(self) -> None:
        self._closed = True
        self._storage.staging.pop(self.staging_key, None)


class InMemoryBlobStorage:
    def __init__(self) -> None:
        self.blobs: dict[str, tuple[bytes, datetime]] = {}
        self.staging: dict[str, tuple[bytearray, datetime]] = {}
        self.uploads: dict[str, tuple[bytearray, datetime]] = {}
        self.lock = threading.Lock()

    def writer(self) -> InMemoryBlobWriter:
        return InMemoryBlobWriter(self)

    def _get(self, key: str) -> bytes:
        check_key(key)
        try:
            return self.blobs[key][0]
        except KeyError:
            raise BlobNotFound(key) from None

    def read(self, key: str, start: int = 0, end: int | None = None) -> Iterator[bytes]:
        data = self._get(key)
        stop = len(data) if end is None else min(end + 1, len(data))
        return (
            data[i : min(i + READ_CHUNK_BYTES, stop)] for i in range(start, stop, READ_CHUNK_BYTES)
        )

    def size(self, key: str) -> int:
        return len(self._get(key))

    def delete(self, key: str) -> None:
        check_key(key)
        self.blobs.pop(key, None)

    def list(self, prefix: str = "") -> Iterator[BlobInfo]:
        with self.lock:
            items = [(k, v) for k, v in self.blobs.items() if k.startswith(prefix)]
        for key, (data, at) in items:
            yield BlobInfo(key, len(data), at)

    def list_staging(self) -> Iterator[BlobInfo]:
        for key, (data, at) in list(self.staging.items()):
            yield BlobInfo(key, len(data), at)

    def delete_staging(self, key: str) -> None:
        self.staging.pop(key, None)

    def close(self) -> None:
        return None

    # -- multipart and tus uploads ---------------------------------------------------------

    direct_parts = False  # parts come through assetd, under its own signed URLs

    def _upload(self, handle: str) -> bytearray:
        try:
            return self.uploads[handle][0]
        except KeyError:
            raise BlobNotFound(handle) from None

    def start_upload(self) -> str:
        handle = uuid.uuid4().hex
        self.uploads[handle] = (bytearray(), datetime.now(UTC))
        return handle

    def part_writer(self, handle: str, number: int, offset: int) -> InMemoryPartWriter:
        return InMemoryPartWriter(self, self._upload(handle), number, offset)

    def presign_part(self, handle: str, number: int, expires_in: int) -> str | None:
        return None

    def list_parts(self, handle: str) -> builtins.list[PartInfo]:
        raise NotImplementedError("the memory store does not track parts")

    def append_writer(self, handle: str, offset: int) -> InMemoryPartWriter:
        data = self._upload(handle)
        if len(data) < offset:
            raise ValueError(f"upload {handle} holds {len(data)} bytes, not {offset}")
        del data[offset:]
        return InMemoryPartWriter(self, data, 0, offset, rollback=True)

    def complete_upload(
        self, handle: str, parts: builtins.list[PartInfo] | None
    ) -> InMemoryAssembled:
        data = self._upload(handle)
        if parts is not None:
            size = check_parts(parts)
            if size > len(data):
                raise InvalidParts(f"upload {handle} lacks bytes the parts name")
            del data[size:]
        return InMemoryAssembled(self, handle)

    def abort_upload(self, handle: str) -> None:
        self.uploads.pop(handle, None)

    def read_upload_into(self, handle: str, start: int, buffer: memoryview) -> int:
        with self.lock:
            data = self._upload(handle)[start : start + len(buffer)]
        buffer[: len(data)] = data
        return len(data)

    def list_uploads(self) -> Iterator[BlobInfo]:
        for handle, (data, at) in list(self.uploads.items()):
            yield BlobInfo(handle, len(data), at)


class InMemoryPartWriter:
    def __init__(
        self,
        storage: InMemoryBlobStorage,
        target: bytearray,
        number: int,
        offset: int,
        *,
        rollback: bool = False,
    ) -> None:
        self._storage = storage
        self._rollback = rollback
        self._target = target
        self._number = number
        self._offset = offset
        self._size = 0
        self._md5 = hashlib.md5(usedforsecurity=False)

    def write(self, data: bytes) -> None:
        start = self._offset + self._size
        with self._storage.lock:
            if len(self._target) < start:
                self._target.extend(bytes(start - len(self._target)))
            self._target[start : start + len(data)] = data
        self._md5.update(data)
        self._size += len(data)

    def finish(self) -> PartInfo:
        self._rollback = False
        return PartInfo(self._number, self._size, self._md5.hexdigest())

    def abort(self) -> None:
        if self._rollback:
            del self._target[self._offset :]
            self._rollback = False


class InMemoryAssembled:
    def __init__(self, storage: InMemoryBlobStorage, handle: str) -> None:
        self._storage = storage
        self._handle = handle
        self.size_bytes = len(storage.uploads[handle][0])

    def read(self) -> Iterator[bytes]:
        data = bytes(self._storage.uploads[self._handle][0])
        return (data[i : i + READ_CHUNK_BYTES] for i in range(0, len(data), READ_CHUNK_BYTES))

    def write(self, data: bytes) -> None:
        raise ValueError("an assembled upload is sealed")

    def seal(self) -> None:
        return None

    def commit(self, key: str) -> None:
        check_key(key)
        with self._storage.lock:
            data, _ = self._storage.uploads.pop(self._handle)
            self._storage.blobs[key] = (bytes(data), datetime.now(UTC))

    def publish_now(self, key: str) -> Callable[[], None] | None:
        self.commit(key)
        return _nothing

    def abort(self) -> None:
        self._storage.uploads.pop(self._handle, None)


def _nothing() -> None:
    """Memory holds nothing durably: publishing has no second half."""
