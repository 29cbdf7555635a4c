"""Blobs in an S3-compatible bucket (AWS, MinIO, Ceph), staged with multipart uploads."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC
from typing import TYPE_CHECKING, Literal, cast
from urllib.parse import quote

import boto3
import structlog
from boto3.s3.transfer import TransferConfig
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from assetd.storage.base import READ_CHUNK_BYTES, BlobInfo, BlobNotFound, InvalidKey
from assetd.storage.keys import check_key

if TYPE_CHECKING:
    from botocore.response import StreamingBody
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_s3.literals import BucketLocationConstraintType
    from mypy_boto3_s3.type_defs import CompletedPartTypeDef, CopySourceTypeDef

log = structlog.get_logger(__name__)

STAGING_DIR = "_staging"
PART_BYTES = 8 * 1024 * 1024
# S3 caps a multipart upload at 10,000 parts, so fixed 8 MiB parts allow blobs up to ~78 GiB.
MAX_PARTS = 10_000
# CopyObject handles sources up to 5 GiB; larger ones need a multipart copy (UploadPartCopy).
MAX_COPY_OBJECT_BYTES = 5 * 1024**3
COPY_PART_BYTES = 512 * 1024 * 1024
MAX_PRESIGN_SECONDS = 7 * 24 * 3600

_NOT_FOUND = frozenset({"404", "NoSuchKey", "NotFound"})
_NO_SUCH_UPLOAD = frozenset({"404", "NoSuchUpload"})


class S3BlobWriter:
    """Streams bytes to a staging key one part at a time; memory stays at one part."""

    def __init__(self, storage: S3BlobStorage) -> None:
        self._storage = storage
        self.staging_key = storage.staging_object_key(uuid.uuid4().hex)
        self._buffer = bytearray()
        self._size_bytes = 0
        self._upload_id: str | None = None
        self._parts: list[CompletedPartTypeDef] = []
        # True once a completed object sits at staging_key and must be copied or deleted.
        self._is_staged = False
        self._state: Literal["open", "failed", "committed", "aborted"] = "open"

    def write(self, data: bytes) -> None:
        self._check_open()
        view = memoryview(data)
        try:
            while view:
                room = PART_BYTES - len(self._buffer)
                self._buffer += view[:room]
                view = view[room:]
                if len(self._buffer) == PART_BYTES:
                    self._upload_part()
        except BaseException:
            # Part of data may already be in S3, so a retried write would duplicate bytes.
            self._state = "failed"
            raise
        self._size_bytes += len(data)

    def seal(self) -> None:
        """Complete the multipart upload of a large blob; a small one waits for its key."""
        self._check_open()
        if self._upload_id is not None:
            if self._buffer:
                self._upload_part()
            self._storage.client.complete_multipart_upload(
                Bucket=self._storage.bucket,
                Key=self.staging_key,
                UploadId=self._upload_id,
                MultipartUpload={"Parts": self._parts},
            )
            self._upload_id = None
            self._is_staged = True

    def commit(self, key: str) -> None:
        self._check_open()
        client, bucket = self._storage.client, self._storage.bucket
        target = self._storage.object_key(key)
        if self._upload_id is None and not self._is_staged:
            # Less than one part: a single PUT is atomic, so it can go straight to the final key.
            client.put_object(Bucket=bucket, Key=target, Body=bytes(self._buffer))
        else:
            self.seal()
            # The key is content-addressed, so it is only known once the last byte is hashed;
            # S3 has no rename, so publish by a server-side copy (no bytes pass through us).
            self._storage.copy_object(self.staging_key, target, self._size_bytes)
            self._delete_staged()
        self._buffer = bytearray()
        self._state = "committed"

    def abort(self) -> None:
        if self._state in ("committed", "aborted"):
            return
        self._buffer = bytearray()
        if self._upload_id is not None:
            self._storage.abort_upload(self.staging_key, self._upload_id)
            self._upload_id = None
        if self._is_staged:
            self._storage.client.delete_object(Bucket=self._storage.bucket, Key=self.staging_key)
            self._is_staged = False
        self._state = "aborted"

    def _check_open(self) -> None:
        if self._state == "failed":
            raise ValueError("writer failed part-way; abort it")
        if self._state != "open":
            raise ValueError("writer is closed")

    def _upload_part(self) -> None:
        client, bucket = self._storage.client, self._storage.bucket
        if len(self._parts) >= MAX_PARTS:
            raise ValueError(f"blob too large: more than {MAX_PARTS} parts of {PART_BYTES} bytes")
        if self._upload_id is None:
            response = client.create_multipart_upload(Bucket=bucket, Key=self.staging_key)
            self._upload_id = response["UploadId"]
        number = len(self._parts) + 1
        part = client.upload_part(
            Bucket=bucket,
            Key=self.staging_key,
            UploadId=self._upload_id,
            PartNumber=number,
            Body=bytes(self._buffer),
        )
        self._parts.append({"ETag": part["ETag"], "PartNumber": number})
        # Cleared only after success, so a failed final part in commit() can be retried.
        self._buffer.clear()

    def _delete_staged(self) -> None:
        try:
            self._storage.client.delete_object(Bucket=self._storage.bucket, Key=self.staging_key)
        except (BotoCoreError, ClientError) as exc:
            # The blob is already published; a leftover staging object is gc's to collect.
            log.warning("storage.staging_delete_failed", key=self.staging_key, error=str(exc))
        self._is_staged = False


class S3BlobStorage:
    def __init__(
        self,
        bucket: str,
        prefix: str = "",
        endpoint_url: str | None = None,
        region: str | None = None,
        access_key: str | None = None,
        secret_key: str | None = None,
        create_bucket: bool = False,
        multipart_copy_threshold_bytes: int = MAX_COPY_OBJECT_BYTES,
    ) -> None:
        if (access_key is None) != (secret_key is None):
            raise ValueError("give both access_key and secret_key, or neither")
        prefix = prefix.strip("/")
        if prefix:
            check_key(prefix)
        self.bucket = bucket
        self._root = f"{prefix}/" if prefix else ""
        self._staging_root = f"{self._root}{STAGING_DIR}/"
        self._multipart_copy_threshold_bytes = multipart_copy_threshold_bytes
        self._copy_config = TransferConfig(
            multipart_threshold=multipart_copy_threshold_bytes,
            multipart_chunksize=min(
                COPY_PART_BYTES, max(PART_BYTES, multipart_copy_threshold_bytes)
            ),
        )
        config = Config(
            signature_version="s3v4",
            retries={"mode": "standard"},
            # Readers and writers run in a thread pool; the default of 10 would make them queue.
            max_pool_connections=32,
            s3={"addressing_style": "path" if endpoint_url else "auto"},
            # Recent botocore adds CRC trailers to every upload by default, which older MinIO and
            # Ceph releases reject; elsewhere keep the default integrity checks.
            request_checksum_calculation="when_required" if endpoint_url else None,
            response_checksum_validation="when_required" if endpoint_url else None,
        )
        # A session per store: boto3's default session is shared state and not thread-safe.
        session = boto3.session.Session(
            aws_access_key_id=access_key, aws_secret_access_key=secret_key, region_name=region
        )
        self.client: S3Client = session.client("s3", endpoint_url=endpoint_url, config=config)
        if create_bucket:
            self._create_bucket(region)

    def writer(self) -> S3BlobWriter:
        return S3BlobWriter(self)

    def object_key(self, key: str) -> str:
        """The bucket key for a blob key; refuses keys that would land in the staging area."""
        check_key(key)
        if key.split("/", 1)[0] == STAGING_DIR:
            raise InvalidKey(f"invalid blob key: {key!r}")
        return self._root + key

    def staging_object_key(self, name: str) -> str:
        if "/" in name:
            raise InvalidKey(f"invalid staging key: {name!r}")
        check_key(name)
        return self._staging_root + name

    def read(self, key: str, start: int = 0, end: int | None = None) -> Iterator[bytes]:
        object_key = self.object_key(key)
        if start < 0:
            raise ValueError("start must not be negative")
        if end is not None and end < start:
            # S3 ignores a backwards Range and sends the whole object; the other stores send none.
            self.size(key)
            return iter(())
        try:
            if start == 0 and end is None:
                response = self.client.get_object(Bucket=self.bucket, Key=object_key)
            else:
                byte_range = f"bytes={start}-{'' if end is None else end}"
                response = self.client.get_object(
                    Bucket=self.bucket, Key=object_key, Range=byte_range
                )
        except ClientError as exc:
            if _code(exc) in _NOT_FOUND:
                raise BlobNotFound(key) from None
            if _code(exc) == "InvalidRange":
                # start is at or past the end: the blob exists, the range is just empty.
                return iter(())
            raise
        return _stream(response["Body"])

    def size(self, key: str) -> int:
        try:
            response = self.client.head_object(Bucket=self.bucket, Key=self.object_key(key))
        except ClientError as exc:
            if _code(exc) in _NOT_FOUND:
                raise BlobNotFound(key) from None
            raise
        return response["ContentLength"]

    def delete(self, key: str) -> None:
        self.client.delete_object(Bucket=self.bucket, Key=self.object_key(key))

    def list(self, prefix: str = "") -> Iterator[BlobInfo]:
        paginator = self.client.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=self.bucket, Prefix=self._root + prefix):
            for item in page.get("Contents", []):
                if item["Key"].startswith(self._staging_root):
                    continue
                yield BlobInfo(
                    item["Key"][len(self._root) :],
                    item["Size"],
                    item["LastModified"].astimezone(UTC),
                )

    def list_staging(self) -> Iterator[BlobInfo]:
        """Staged objects a crash left unpublished, and multipart uploads never completed."""
        objects = self.client.get_paginator("list_objects_v2")
        for page in objects.paginate(Bucket=self.bucket, Prefix=self._staging_root):
            for item in page.get("Contents", []):
                yield BlobInfo(
                    item["Key"][len(self._staging_root) :],
                    item["Size"],
                    item["LastModified"].astimezone(UTC),
                )
        uploads = self.client.get_paginator("list_multipart_uploads")
        for upload_page in uploads.paginate(Bucket=self.bucket, Prefix=self._staging_root):
            for upload in upload_page.get("Uploads", []):
                size_bytes = self._uploaded_bytes(upload["Key"], upload["UploadId"])
                if size_bytes is None:
                    continue  # completed or aborted since the listing
                yield BlobInfo(
                    upload["Key"][len(self._staging_root) :],
                    size_bytes,
                    upload["Initiated"].astimezone(UTC),
                )

    def delete_staging(self, key: str) -> None:
        staging_key = self.staging_object_key(key)
        uploads = self.client.get_paginator("list_multipart_uploads")
        for page in uploads.paginate(Bucket=self.bucket, Prefix=staging_key):
            for upload in page.get("Uploads", []):
                if upload["Key"] == staging_key:
                    self.abort_upload(staging_key, upload["UploadId"])
        self.client.delete_object(Bucket=self.bucket, Key=staging_key)

    def presigned_get_url(
        self,
        key: str,
        expires_in: int,
        filename: str | None = None,
        content_type: str | None = None,
    ) -> str:
        """A URL that downloads the blob without credentials until it expires.

        With a filename the response asks the browser to save it as an attachment.
        """
        if not 0 < expires_in <= MAX_PRESIGN_SECONDS:
            raise ValueError(f"expires_in must be 1..{MAX_PRESIGN_SECONDS} seconds")
        params = {"Bucket": self.bucket, "Key": self.object_key(key)}
        if filename is not None:
            params["ResponseContentDisposition"] = _content_disposition(filename)
        if content_type is not None:
            params["ResponseContentType"] = content_type
        return self.client.generate_presigned_url("get_object", Params=params, ExpiresIn=expires_in)

    def close(self) -> None:
        self.client.close()

    def copy_object(self, source: str, target: str, size_bytes: int) -> None:
        """Server-side copy inside the bucket; multipart above the CopyObject limit."""
        copy_source: CopySourceTypeDef = {"Bucket": self.bucket, "Key": source}
        if size_bytes < self._multipart_copy_threshold_bytes:
            self.client.copy_object(Bucket=self.bucket, Key=target, CopySource=copy_source)
        else:
            self.client.copy(copy_source, self.bucket, target, Config=self._copy_config)

    def abort_upload(self, staging_key: str, upload_id: str) -> None:
        try:
            self.client.abort_multipart_upload(
                Bucket=self.bucket, Key=staging_key, UploadId=upload_id
            )
        except ClientError as exc:
            if _code(exc) not in _NO_SUCH_UPLOAD:
                raise

    def _uploaded_bytes(self, staging_key: str, upload_id: str) -> int | None:
        parts = self.client.get_paginator("list_parts")
        total = 0
        try:
            for page in parts.paginate(Bucket=self.bucket, Key=staging_key, UploadId=upload_id):
                total += sum(part["Size"] for part in page.get("Parts", []))
        except ClientError as exc:
            if _code(exc) in _NO_SUCH_UPLOAD:
                return None
            raise
        return total

    def _create_bucket(self, region: str | None) -> None:
        try:
            self.client.head_bucket(Bucket=self.bucket)
            return
        except ClientError as exc:
            if _code(exc) not in _NOT_FOUND and _code(exc) != "NoSuchBucket":
                raise
        try:
            if region and region != "us-east-1":
                # us-east-1 is the default and refuses to be named as a location constraint.
                location = cast("BucketLocationConstraintType", region)
                self.client.create_bucket(
                    Bucket=self.bucket, CreateBucketConfiguration={"LocationConstraint": location}
                )
            else:
                self.client.create_bucket(Bucket=self.bucket)
        except ClientError as exc:
            if _code(exc) != "BucketAlreadyOwnedByYou":
                raise


def _code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def _stream(body: StreamingBody) -> Iterator[bytes]:
    try:
        yield from body.iter_chunks(READ_CHUNK_BYTES)
    finally:
        body.close()


def _content_disposition(filename: str) -> str:
    """RFC 6266: an ASCII fallback for old clients, the exact name as RFC 5987 UTF-8."""
    fallback = "".join(
        c if c.isascii() and c.isprintable() and c not in '"\\' else "_" for c in filename
    )
    return f"attachment; filename=\"{fallback}\"; filename*=UTF-8''{quote(filename, safe='')}"
