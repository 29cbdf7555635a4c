"""Read-only access to objects in a storage provider. Calls block; run them off the loop."""

from __future__ import annotations

import os
import re
import stat as stat_module
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, NoReturn, Protocol

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

READ_CHUNK_BYTES = 1024 * 1024
MAX_KEY_CHARS = 1024
_BUCKET = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
_NOT_FOUND = frozenset({"404", "NoSuchKey", "NotFound", "NoSuchBucket"})


class ObjectNotFound(Exception):
    """No object under that bucket and key (or not a regular file)."""


class InvalidObjectName(ValueError):
    """A bucket or key that is malformed or would escape the provider."""


class ProviderUnavailable(Exception):
    """The provider could not be read: unreachable, refused credentials, broken stream."""


@dataclass(frozen=True)
class ObjectInfo:
    size_bytes: int
    etag: str | None = None


class ObjectReader(Protocol):
    def stat(self, bucket: str, key: str) -> ObjectInfo: ...

    def read(self, bucket: str, key: str) -> Iterator[bytes]: ...

    def close(self) -> None: ...


def check_object_name(bucket: str, key: str) -> None:
    """One rule for every kind: plain relative keys, no `.`/`..` segments, no control chars.

    S3 itself would accept `a/../b`, but a key that means a different object on a file system
    (or on an S3-compatible server that normalizes paths) is refused everywhere alike.
    """
    if not _BUCKET.fullmatch(bucket) or ".." in bucket:
        raise InvalidObjectName(f"invalid bucket name: {bucket[:128]!r}")
    if not key or len(key) > MAX_KEY_CHARS:
        raise InvalidObjectName("the key must be 1 to 1024 characters")
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in key) or "\\" in key:
        raise InvalidObjectName("the key must not contain control characters or backslashes")
    if key.startswith("/") or any(part in ("", ".", "..") for part in key.split("/")):
        raise InvalidObjectName("the key must be a relative path without empty, . or .. parts")


class LocalObjectReader:
    """Buckets are subfolders of root; nothing outside root is ever opened, symlinks included."""

    def __init__(self, root: Path) -> None:
        self.root = Path(os.path.realpath(root))

    def _path(self, bucket: str, key: str) -> Path:
        check_object_name(bucket, key)
        bucket_dir = Path(os.path.realpath(self.root / bucket))
        path = Path(os.path.realpath(self.root / bucket / key))
        # realpath follows every symlink; what it lands on must still be in the bucket's
        # folder, which must still be in the root.
        if not (bucket_dir.is_relative_to(self.root) and path.is_relative_to(bucket_dir)):
            raise InvalidObjectName("the key leads outside the storage provider's folder")
        if path == bucket_dir:
            raise InvalidObjectName("the key names the bucket itself")
        return path

    def stat(self, bucket: str, key: str) -> ObjectInfo:
        path = self._path(bucket, key)
        try:
            info = os.stat(path)
        except (FileNotFoundError, NotADirectoryError):
            raise ObjectNotFound(f"{bucket}/{key}") from None
        except OSError as exc:
            raise ProviderUnavailable(f"the object cannot be read: {exc.strerror}") from None
        if not stat_module.S_ISREG(info.st_mode):
            raise ObjectNotFound(f"{bucket}/{key}")
        return ObjectInfo(size_bytes=info.st_size)

    def read(self, bucket: str, key: str) -> Iterator[bytes]:
        path = self._path(bucket, key)
        try:
            # The path is fully resolved, so O_NOFOLLOW only refuses a symlink swapped in since.
            fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
        except (FileNotFoundError, NotADirectoryError):
            raise ObjectNotFound(f"{bucket}/{key}") from None
        except OSError as exc:
            raise ProviderUnavailable(f"the object cannot be read: {exc.strerror}") from None
        handle = os.fdopen(fd, "rb")
        if not stat_module.S_ISREG(os.fstat(handle.fileno()).st_mode):
            handle.close()
            raise ObjectNotFound(f"{bucket}/{key}")
        return _chunks(handle)

    def close(self) -> None:
        return None


def _chunks(handle: IO[bytes]) -> Iterator[bytes]:
    with handle:
        while chunk := handle.read(READ_CHUNK_BYTES):
            yield chunk


class S3ObjectReader:
    """Objects of an S3-compatible service, read with the provider's own credentials."""

    def __init__(
        self,
        *,
        endpoint_url: str | None,
        region: str | None,
        access_key_id: str,
        secret_access_key: str,
        prefix: str = "",
        bucket: str | None = None,
    ) -> None:
        self.prefix = prefix.strip("/") + "/" if prefix.strip("/") else ""
        self.bucket = bucket
        config = Config(
            signature_version="s3v4",
            retries={"mode": "standard", "max_attempts": 2},
            connect_timeout=10,
            read_timeout=60,
            s3={"addressing_style": "path" if endpoint_url else "auto"},
            request_checksum_calculation="when_required" if endpoint_url else None,
            response_checksum_validation="when_required" if endpoint_url else None,
        )
        # A session per reader: the provider's credentials, never the server's own.
        session = boto3.session.Session(
            aws_access_key_id=access_key_id,
            aws_secret_access_key=secret_access_key,
            region_name=region or "us-east-1",
        )
        self.client: S3Client = session.client("s3", endpoint_url=endpoint_url, config=config)

    def _object_key(self, bucket: str, key: str) -> str:
        check_object_name(bucket, key)
        if self.bucket is not None and bucket != self.bucket:
            raise ObjectNotFound(f"{bucket}/{key}")
        return self.prefix + key

    def stat(self, bucket: str, key: str) -> ObjectInfo:
        object_key = self._object_key(bucket, key)
        try:
            head = self.client.head_object(Bucket=bucket, Key=object_key)
        except ClientError as exc:
            _raise_for(exc, bucket, key)
        except BotoCoreError as exc:
            raise ProviderUnavailable(f"the storage provider is unreachable: {exc}") from None
        etag = str(head.get("ETag", "")).strip('"') or None
        return ObjectInfo(size_bytes=int(head["ContentLength"]), etag=etag)

    def read(self, bucket: str, key: str) -> Iterator[bytes]:
        object_key = self._object_key(bucket, key)
        try:
            response = self.client.get_object(Bucket=bucket, Key=object_key)
        except ClientError as exc:
            _raise_for(exc, bucket, key)
        except BotoCoreError as exc:
            raise ProviderUnavailable(f"the storage provider is unreachable: {exc}") from None
        return _s3_chunks(response["Body"])

    def close(self) -> None:
        self.client.close()


def _s3_chunks(body: object) -> Iterator[bytes]:
    try:
        yield from body.iter_chunks(READ_CHUNK_BYTES)  # type: ignore[attr-defined]
    except (BotoCoreError, ClientError, OSError) as exc:
        raise ProviderUnavailable(f"reading the object failed: {exc}") from None
    finally:
        body.close()  # type: ignore[attr-defined]


def _raise_for(exc: ClientError, bucket: str, key: str) -> NoReturn:
    code = str(exc.response.get("Error", {}).get("Code", ""))
    if code in _NOT_FOUND:
        raise ObjectNotFound(f"{bucket}/{key}") from None
    raise ProviderUnavailable(f"the storage provider refused the request ({code})") from None
