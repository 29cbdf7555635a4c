"""Blobs as files under a root folder: staged, fsynced, then renamed into place."""

from __future__ import annotations

import builtins
import ctypes
import fcntl
import hashlib
import os
import re
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import BinaryIO

from assetd.storage.base import (
    READ_CHUNK_BYTES,
    BlobInfo,
    BlobNotFound,
    InvalidKey,
    InvalidParts,
    PartInfo,
    UploadBusy,
    check_parts,
)
from assetd.storage.keys import check_key

STAGING_DIR = ".staging"
# Multipart and tus uploads: one file per upload, filled at offsets, kept across requests.
UPLOADS_DIR = ".uploads"
_RESERVED = (STAGING_DIR, UPLOADS_DIR)
# A writer asks the kernel to start writing back every this many bytes (see _WriteBack).
WRITE_BACK_BYTES = 8 * 1024 * 1024


class _WriteBack:
    """sync_file_range(SYNC_FILE_RANGE_WRITE) behind a file as it is written.

    The kernel would keep a whole upload dirty in the page cache (writeback starts at 10% of
    RAM) and the fsync at seal() would then write all of it while the client waits. Started
    every few MiB, writeback runs while the rest arrives, and seal() finds little left: the
    512 MiB upload went from 77% to 82% of nginx's PUT. The call only starts I/O and does not
    wait for it; where it does not exist (not Linux), nothing changes but the speed.
    """

    _call = getattr(ctypes.CDLL(None, use_errno=True), "sync_file_range", None)
    if _call is not None:
        _call.argtypes = [ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint]
    _WRITE = 2  # SYNC_FILE_RANGE_WRITE

    def __init__(self, start: int = 0) -> None:
        # Offsets in the file: where this writer began, and how far it handed to writeback.
        self.flushed = start
        self.written = start

    def wrote(self, fd: int, count: int) -> None:
        self.written += count
        pending = self.written - self.flushed
        if pending >= WRITE_BACK_BYTES and self._call is not None:
            self._call(fd, self.flushed, pending, self._WRITE)
            self.flushed = self.written


class LocalBlobWriter:
    def __init__(self, storage: LocalBlobStorage) -> None:
        self._storage = storage
        self.staging_path = storage.root / STAGING_DIR / uuid.uuid4().hex
        self._file: BinaryIO | None = open(self.staging_path, "xb", buffering=0)
        self._sealed = False  # held open until commit/abort
        self._write_back = _WriteBack()

    def write(self, data: bytes) -> None:
        if self._file is None:
            raise ValueError("writer is closed")
        # Unbuffered: one write() per batch, no copy into a Python buffer, and the kernel
        # holds every byte written when writeback is started below.
        view = memoryview(data)
        while view:
            written = self._file.write(view)
            if not written:
                raise OSError(f"write to {self.staging_path} stalled")
            view = view[written:]
        self._write_back.wrote(self._file.fileno(), len(data))

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
        self._storage.path_for(key)  # a bad key fails before anything is sealed
        self.seal()
        finish = self.publish_now(key)
        if finish is None:
            raise ValueError("writer is closed")
        finish()

    def publish_now(self, key: str) -> Callable[[], None] | None:
        if not self._sealed:
            return None
        target = self._storage.path_for(key)
        target.parent.mkdir(parents=True, exist_ok=True)
        # Rename is atomic: readers see the old bytes or the new ones, never a torn file.
        # Identical content may already be there (content addressing); replacing it is harmless.
        os.replace(self.staging_path, target)
        self._sealed = False
        return partial(_fsync_dir, target.parent)

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
        (self.root / UPLOADS_DIR).mkdir(exist_ok=True)

    def path_for(self, key: str) -> Path:
        check_key(key)
        path = (self.root / key).resolve()
        # Belt and braces after check_key: never let a key address a file outside root.
        if self.root not in path.parents or path.parts[len(self.root.parts)] in _RESERVED:
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
                dirnames[:] = [d for d in dirnames if d not in _RESERVED]
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

    # -- multipart and tus uploads ---------------------------------------------------------

    direct_parts = False  # parts come through assetd, under its own signed URLs

    def upload_path(self, handle: str) -> Path:
        if not _HANDLE.fullmatch(handle):
            raise InvalidKey(f"invalid upload handle: {handle!r}")
        return self.root / UPLOADS_DIR / handle

    def start_upload(self) -> str:
        handle = uuid.uuid4().hex
        self.upload_path(handle).touch(exist_ok=False)
        return handle

    def part_writer(self, handle: str, number: int, offset: int) -> LocalPartWriter:
        return LocalPartWriter(self.upload_path(handle), number, offset)

    def presign_part(self, handle: str, number: int, expires_in: int) -> str | None:
        return None  # assetd receives the parts itself, under its own signed URLs

    def list_parts(self, handle: str) -> builtins.list[PartInfo]:
        # One file filled at offsets keeps no per-part record; the caller's database does.
        raise NotImplementedError("the local store does not track parts")

    def append_writer(self, handle: str, offset: int) -> LocalPartWriter:
        path = self.upload_path(handle)
        size = path.stat().st_size
        if size < offset:
            raise ValueError(f"upload {handle} holds {size} bytes, not {offset}")
        # Bytes past offset were never acknowledged (a crash mid-append): they go. No fsync
        # per append: tus appends come one after another, so each would wait for the disk
        # (measured: 235 -> 198 MiB/s); the last one's publish makes the file durable.
        return LocalPartWriter(path, 0, offset, with_etag=False, rollback=True, sync=False)

    def complete_upload(
        self, handle: str, parts: builtins.list[PartInfo] | None
    ) -> LocalAssembledUpload:
        path = self.upload_path(handle)
        if parts is not None:
            # A re-sent last part may have been shorter than a first try: cut what lies beyond.
            size = check_parts(parts)
            if size > path.stat().st_size:
                raise InvalidParts(f"upload {handle} lacks bytes the parts name")
            with open(path, "r+b") as handle_file:
                handle_file.truncate(size)
        return LocalAssembledUpload(self, path)

    def abort_upload(self, handle: str) -> None:
        self.upload_path(handle).unlink(missing_ok=True)

    def read_upload_into(self, handle: str, start: int, buffer: memoryview) -> int:
        fd = os.open(self.upload_path(handle), os.O_RDONLY)
        try:
            return os.preadv(fd, [buffer], start)
        finally:
            os.close(fd)

    def list_uploads(self) -> Iterator[BlobInfo]:
        for path in (self.root / UPLOADS_DIR).iterdir():
            yield _info(path.name, path)


_HANDLE = re.compile(r"[0-9a-f]{32}")


class LocalPartWriter:
    """Writes at an offset of the upload's file; parts never overlap, so writers run in parallel."""

    def __init__(
        self,
        path: Path,
        number: int,
        offset: int,
        *,
        with_etag: bool = True,
        rollback: bool = False,
        sync: bool = True,
    ) -> None:
        try:
            self._fd: int | None = os.open(path, os.O_RDWR)
        except FileNotFoundError:
            raise BlobNotFound(path.name) from None
        self._offset = offset
        # An append that fails is undone, so the upload ends where the last good one did.
        self._rollback = rollback
        if rollback:
            # One append at a time per upload, across processes; the kernel drops the lock
            # if this process dies, so a crash never blocks the resume.
            try:
                fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(self._fd)
                raise UploadBusy(f"upload {path.name} is receiving another request") from None
            os.ftruncate(self._fd, offset)
        self._number = number
        self._size = 0
        self._sync = sync
        # S3 names a part by its MD5; doing the same lets clients check parts the same way.
        self._md5 = hashlib.md5(usedforsecurity=False) if with_etag else None
        # MD5 runs at ~800 MiB/s on one core: hashed in a thread of its own while this one
        # writes (both release the GIL), so a batch costs the slower of the two, not the sum.
        self._hasher = ThreadPoolExecutor(1, "assetd-part-md5") if with_etag else None
        self._write_back = _WriteBack(offset)

    def write(self, data: bytes) -> None:
        if self._fd is None:
            raise ValueError("writer is closed")
        hashing = None
        if self._hasher is not None and self._md5 is not None:
            hashing = self._hasher.submit(self._md5.update, data)
        try:
            # pwrite, unbuffered: once write() returns the bytes are in the page cache, where
            # the upload's prefix hasher may read them back.
            view = memoryview(data)
            while view:
                done = os.pwrite(self._fd, view, self._offset + self._size)
                self._size += done
                view = view[done:]
            self._write_back.wrote(self._fd, len(data))
        finally:
            if hashing is not None:
                hashing.result()

    def finish(self) -> PartInfo:
        if self._fd is None:
            raise ValueError("writer is closed")
        if self._sync:
            # Durable before the part is acknowledged. One fsync per part also spreads the
            # writeback over the upload, where the parallel parts hide it, instead of leaving
            # it all to the publish at complete.
            os.fsync(self._fd)
        self._close()
        etag = self._md5.hexdigest() if self._md5 is not None else ""
        return PartInfo(self._number, self._size, etag)

    def abort(self) -> None:
        if self._fd is not None:
            if self._rollback:
                os.ftruncate(self._fd, self._offset)
            self._close()

    def _close(self) -> None:
        if self._hasher is not None:
            self._hasher.shutdown(wait=False)
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


class LocalAssembledUpload:
    """The upload's file, made durable; commit renames it into place like any staged blob."""

    def __init__(self, storage: LocalBlobStorage, path: Path) -> None:
        self._storage = storage
        self._path = path
        self.size_bytes = path.stat().st_size
        self._done = False

    def read(self) -> Iterator[bytes]:
        return _read_file(open(self._path, "rb"), 0, None)

    def write(self, data: bytes) -> None:
        raise ValueError("an assembled upload is sealed")

    def seal(self) -> None:
        with open(self._path, "rb") as handle:
            os.fsync(handle.fileno())

    def commit(self, key: str) -> None:
        target = self._storage.path_for(key)
        self.seal()
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(self._path, target)
        _fsync_dir(target.parent)
        self._done = True

    def publish_now(self, key: str) -> Callable[[], None] | None:
        return None  # gigabytes to fsync first: commit() runs off the loop

    def abort(self) -> None:
        if not self._done:
            self._path.unlink(missing_ok=True)
            self._done = True


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
