"""Blobs in a dict: for tests and throwaway instances."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime

from assetd.storage.base import READ_CHUNK_BYTES, BlobInfo, BlobNotFound
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

    def abort(self) -> None:
        self._closed = True
        self._storage.staging.pop(self.staging_key, None)


class InMemoryBlobStorage:
    def __init__(self) -> None:
        self.blobs: dict[str, tuple[bytes, datetime]] = {}
        self.staging: dict[str, tuple[bytearray, datetime]] = {}
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
