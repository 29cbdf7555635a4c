"""Blobs as files under a root folder: staged, fsynced, then renamed into place."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import BinaryIO

from assetd.storage.base import READ_CHUNK_BYTES, BlobInfo, BlobNotFound, InvalidKey
from assetd.storage.keys import check_key

STAGING_DIR = ".staging"


class LocalBlobWriter:
    def __init__(self, storage: LocalBlobStorage) -> None:
        self._storage = storage
        self.staging_path = storage.root / STAGING_DIR / uuid.uuid4().hex
        self._file: BinaryIO | None = open(self.staging_path, "xb")
        self._sealed = False  # held open until commit/abort

    def write(self, data: bytes) -> None:
        if self._file is None:
            raise ValueError("writer is closed")
        self._file.write(data)

    def seal(self) -> None:
        if self._file is None:
            if self._sealed:
                return
            raise ValueError("writer is closed")
        self._file.flush()
        os.fsync(self._file.fileno())
        self._file.close()
        self._file = None
        self._sealed = True

    def commit(self, key: str) -> None:
        target = self._storage.path_for(key)
        self.seal()
        self._sealed = False
        target.parent.mkdir(parents=True, exist_ok=True)
        # Rename is atomic: readers see the old bytes or the new ones, never a torn file.
        # Identical content may already be there (content addressing); replacing it is harmless.
        os.replace(self.staging_path, target)
        _fsync_dir(target.parent)

    def abort(self) -> None:
        self._sealed = False
        if self._file is not None:
            self._file.close()
            self._file = None
        self.staging_path.unlink(missing_ok=True)


class LocalBlobStorage:
    def __init__(self, root: Path) -> None:
        self.root = root.resolve()
        (self.root / STAGING_DIR).mkdir(parents=True, exist_ok=True)

    def path_for(self, key: str) -> Path:
        check_key(key)
        path = (self.root / key).resolve()
        # Belt and braces after check_key: never let a key address a file outside root.
        if self.root not in path.parents or path.parts[len(self.root.parts)] == STAGING_DIR:
            raise InvalidKey(f"invalid blob key: {key!r}")
        return path

    def writer(self) -> LocalBlobWriter:
        return LocalBlobWriter(self)

    def read(self, key: str, start: int = 0, end: int | None = None) -> Iterator[bytes]:
        path = self.path_for(key)
        try:
            handle = open(path, "rb")  # closed by the generator below
        except FileNotFoundError:
            raise BlobNotFound(key) from None
        return _read_file(handle, start, end)

    def size(self, key: str) -> int:
        try:
            return self.path_for(key).stat().st_size
        except FileNotFoundError:
            raise BlobNotFound(key) from None

    def delete(self, key: str) -> None:
        self.path_for(key).unlink(missing_ok=True)

    def list(self, prefix: str = "") -> Iterator[BlobInfo]:
        for dirpath, dirnames, filenames in os.walk(self.root):
            if Path(dirpath) == self.root:
                dirnames[:] = [d for d in dirnames if d != STAGING_DIR]
            for filename in filenames:
                path = Path(dirpath) / filename
                key = path.relative_to(self.root).as_posix()
                if key.startswith(prefix):
                    yield _info(key, path)

    def list_staging(self) -> Iterator[BlobInfo]:
        for path in (self.root / STAGING_DIR).iterdir():
            yield _info(path.name, path)

    def delete_staging(self, key: str) -> None:
        if "/" in key or key in (".", ".."):
            raise InvalidKey(key)
        (self.root / STAGING_DIR / key).unlink(missing_ok=True)

    def close(self) -> None:
        return None


def _info(key: str, path: Path) -> BlobInfo:
    stat = path.stat()
    return BlobInfo(key, stat.st_size, datetime.fromtimestamp(stat.st_mtime, UTC))


def _read_file(handle: BinaryIO, start: int, end: int | None) -> Iterator[bytes]:
    with handle:
        handle.seek(start)
        remaining = None if end is None else end - start + 1
        while remaining is None or remaining > 0:
            size = READ_CHUNK_BYTES if remaining is None else min(READ_CHUNK_BYTES, remaining)
            chunk = handle.read(size)
            if not chunk:
                return
            if remaining is not None:
                remaining -= len(chunk)
            yield chunk


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
