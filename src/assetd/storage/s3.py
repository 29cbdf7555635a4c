"""Blobs in an S3-compatible bucket (AWS, MinIO, Ceph), staged with multipart uploads."""

from __future__ import annotations

import builtins
import re
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Literal, cast
from urllib.parse import quote

import boto3
import structlog
from boto3.s3.transfer import TransferConfig
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from assetd.storage.base import (
    READ_CHUNK_BYTES,
    BlobInfo,
    BlobNotFound,
    InvalidKey,
    InvalidParts,
    PartInfo,
    check_parts,
)
from assetd.storage.keys import check_key

if TYPE_CHECKING:
    from botocore.response import StreamingBody
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_s3.literals import BucketLocationConstraintType
    from mypy_boto3_s3.type_defs import CompletedPartTypeDef, CopySourceTypeDef, PartTypeDef

log = structlog.get_logger(__name__)

STAGING_DIR = "_staging"
# Multipart and tus uploads, kept apart from the writer staging that gc empties after a short
# grace: a session lives for days and only abort_upload (the session expiry job) removes it.
# Under it, for an upload named by a uuid:
#   {name}                   the S3 multipart upload, and once completed the assembled object
#   {name}.tail.{start}.{n}  tus bytes from offset `start` that do not fill a part yet, after
#                            parts 1..n; the newest one records how far appends got
#   {name}.id.{upload_id}    empty, put just before completing, so that list_uploads can still
#                            name the handle "{name}.{upload_id}" once the multipart upload is gone
UPLOADS_DIR = "_uploads"
PART_BYTES = 8 * 1024 * 1024
# S3 caps a multipart upload at 10,000 parts, so fixed 8 MiB parts allow blobs up to ~78 GiB.
MAX_PARTS = 10_000
MAX_PART_BYTES = 5 * 1024**3
# CopyObject handles sources up to 5 GiB; larger ones need a multipart copy (UploadPartCopy).
MAX_COPY_OBJECT_BYTES = 5 * 1024**3
COPY_PART_BYTES = 512 * 1024 * 1024
MAX_PRESIGN_SECONDS = 7 * 24 * 3600

_NOT_FOUND = frozenset({"404", "NoSuchKey", "NotFound"})
_NO_SUCH_UPLOAD = frozenset({"404", "NoSuchUpload"})
# What CompleteMultipartUpload says about a parts list the client can fix.
_BAD_PARTS = frozenset({"InvalidPart", "InvalidPartOrder", "EntityTooSmall"})
_UPLOAD_NAME = re.compile(r"[0-9a-f]{32}")
_TAIL = re.compile(r"\.tail\.(\d+)\.(\d+)")
_MARKER = ".id."


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
        try:
            _fill_parts(self._buffer, data, self._upload_part)
        except BaseException:
            # Part of data may already be in S3, so a retried write would duplicate bytes.
            self._state = "failed"
            raise
        self._size_bytes += len(data)

    def buffered_bytes(self) -> bytes | None:
        """Everything written so far while it is still all in memory (less than one part)."""
        self._check_open()
        return bytes(self._buffer) if self._upload_id is None else None

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

    def publish_now(self, key: str) -> Callable[[], None] | None:
        return None  # S3 has no rename: publishing is a request (PUT or copy)

    def abort(self) -> None:
        if self._state in ("committed", "aborted"):
            return
        self._buffer = bytearray()
        if self._upload_id is not None:
            self._storage._abort_multipart(self.staging_key, self._upload_id)
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


@dataclass(frozen=True)
class _Upload:
    """Where one staged upload lives; the handle is "{name}.{upload_id}"."""

    handle: str
    key: str  # the multipart upload, and once completed the assembled object
    upload_id: str

    @property
    def marker_key(self) -> str:
        return f"{self.key}{_MARKER}{self.upload_id}"

    def tail_key(self, start: int, parts: int) -> str:
        return f"{self.key}.tail.{start}.{parts}"


@dataclass(frozen=True)
class _Tail:
    """Appended bytes from offset `start` that follow parts 1..`parts` of the upload."""

    key: str
    start: int
    parts: int
    size_bytes: int

    @property
    def end(self) -> int:
        return self.start + self.size_bytes


class S3PartWriter:
    """One part received through assetd, its length unknown until finish().

    UploadPart wants the length up front, and a part may be 5 GiB: rather than hold it, the
    bytes stream into a staging object (one buffered part at a time) that finish() copies
    into the upload server-side. A part shorter than that buffer goes up in one request.
    """

    def __init__(self, storage: S3BlobStorage, upload: _Upload, number: int) -> None:
        self._storage = storage
        self._upload = upload
        self._number = number
        self._spool = S3BlobWriter(storage)
        self._size_bytes = 0
        self._is_finished = False

    def write(self, data: bytes) -> None:
        if self._size_bytes + len(data) > MAX_PART_BYTES:
            raise ValueError(f"a part holds at most {MAX_PART_BYTES} bytes")
        self._spool.write(data)
        self._size_bytes += len(data)

    def finish(self) -> PartInfo:
        if self._is_finished:
            raise ValueError("writer is closed")
        client, bucket, upload = self._storage.client, self._storage.bucket, self._upload
        small = self._spool.buffered_bytes()
        try:
            if small is not None:
                sent = client.upload_part(
                    Bucket=bucket,
                    Key=upload.key,
                    UploadId=upload.upload_id,
                    PartNumber=self._number,
                    Body=small,
                )
                etag = sent["ETag"]
            else:
                self._spool.seal()
                copied = client.upload_part_copy(
                    Bucket=bucket,
                    Key=upload.key,
                    UploadId=upload.upload_id,
                    PartNumber=self._number,
                    CopySource={"Bucket": bucket, "Key": self._spool.staging_key},
                )
                etag = copied["CopyPartResult"]["ETag"]
        except ClientError as exc:
            if _code(exc) in _NO_SUCH_UPLOAD:
                raise BlobNotFound(upload.handle) from None
            raise
        self._is_finished = True
        self._spool.abort()  # the staged copy has served its purpose
        return PartInfo(self._number, self._size_bytes, _bare(etag))

    def abort(self) -> None:
        self._spool.abort()


class S3AppendWriter:
    """tus appends: full parts go up as the bytes arrive, the rest into a new tail object.

    Only finish() makes the append count, by putting the tail (one atomic PUT) that names the
    parts before it. Parts sent by a writer that never finished lie past that count: the
    next append overwrites them and completion leaves them out. Memory stays at one part.
    """

    def __init__(
        self, storage: S3BlobStorage, upload: _Upload, base: _Tail, buffer: bytearray
    ) -> None:
        self._storage = storage
        self._upload = upload
        self._base = base
        self._buffer = buffer  # the base tail up to the offset, then the new bytes
        self._parts = base.parts
        self._parts_bytes = base.start
        self._size_bytes = 0
        self._state: Literal["open", "failed", "finished", "aborted"] = "open"

    def write(self, data: bytes) -> None:
        self._check_open()
        try:
            _fill_parts(self._buffer, data, self._send_part)
        except BaseException:
            # The tail still records the upload as it was; only this writer is spoilt.
            self._state = "failed"
            raise
        self._size_bytes += len(data)

    def finish(self) -> PartInfo:
        self._check_open()
        tail_key = self._upload.tail_key(self._parts_bytes, self._parts)
        # An empty append at the end changes nothing; one that cut bytes off must record it.
        unchanged = not self._size_bytes and len(self._buffer) == self._base.size_bytes
        if not (unchanged and tail_key == self._base.key):
            try:
                self._storage.client.put_object(
                    Bucket=self._storage.bucket, Key=tail_key, Body=bytes(self._buffer)
                )
            except BaseException:
                self._state = "failed"
                raise
        self._buffer = bytearray()
        self._state = "finished"
        return PartInfo(0, self._size_bytes, "")

    def abort(self) -> None:
        if self._state != "finished":
            self._state = "aborted"
        self._buffer = bytearray()

    def _check_open(self) -> None:
        if self._state == "failed":
            raise ValueError("writer failed part-way; abort it")
        if self._state != "open":
            raise ValueError("writer is closed")

    def _send_part(self) -> None:
        # One number stays free: completion adds the tail as the last part.
        number = self._parts + 1
        if number >= MAX_PARTS:
            raise ValueError(f"upload too large: more than {MAX_PARTS} parts of {PART_BYTES} bytes")
        client, upload = self._storage.client, self._upload
        try:
            client.upload_part(
                Bucket=self._storage.bucket,
                Key=upload.key,
                UploadId=upload.upload_id,
                PartNumber=number,
                Body=bytes(self._buffer),
            )
        except ClientError as exc:
            if _code(exc) in _NO_SUCH_UPLOAD:
                raise BlobNotFound(upload.handle) from None
            raise
        self._parts = number
        self._parts_bytes += len(self._buffer)
        self._buffer.clear()


class S3AssembledUpload:
    """A completed upload sitting at its staging key; commit copies it to the blob key."""

    def __init__(self, storage: S3BlobStorage, upload: _Upload, size_bytes: int) -> None:
        self._storage = storage
        self._upload = upload
        self.size_bytes = size_bytes
        self._state: Literal["open", "committed", "aborted"] = "open"

    def read(self) -> Iterator[bytes]:
        try:
            response = self._storage.client.get_object(
                Bucket=self._storage.bucket, Key=self._upload.key
            )
        except ClientError as exc:
            if _code(exc) in _NOT_FOUND:
                raise BlobNotFound(self._upload.handle) from None
            raise
        return _stream(response["Body"])

    def write(self, data: bytes) -> None:
        raise ValueError("an assembled upload is sealed")

    def seal(self) -> None:
        return None  # CompleteMultipartUpload already made it durable

    def commit(self, key: str) -> None:
        if self._state != "open":
            raise ValueError("upload is closed")
        storage = self._storage
        storage.copy_object(self._upload.key, storage.object_key(key), self.size_bytes)
        self._state = "committed"
        try:
            storage._delete_upload_objects(self._upload.key)
        except (BotoCoreError, ClientError) as exc:
            # The blob is published; what is left is listed by list_uploads under the handle.
            log.warning("storage.upload_delete_failed", handle=self._upload.handle, error=str(exc))

    def publish_now(self, key: str) -> Callable[[], None] | None:
        return None  # S3 has no rename: publishing is a request (PUT or copy)

    def abort(self) -> None:
        if self._state == "open":
            self._storage.abort_upload(self._upload.handle)
            self._state = "aborted"


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
        self._uploads_root = f"{self._root}{UPLOADS_DIR}/"
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
        """The bucket key for a blob key; refuses keys that would land in a staging area."""
        check_key(key)
        if key.split("/", 1)[0] in (STAGING_DIR, UPLOADS_DIR):
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
                if item["Key"].startswith((self._staging_root, self._uploads_root)):
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
                    self._abort_multipart(staging_key, upload["UploadId"])
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
        _check_expiry(expires_in)
        params = {"Bucket": self.bucket, "Key": self.object_key(key)}
        if filename is not None:
            params["ResponseContentDisposition"] = _content_disposition(filename)
        if content_type is not None:
            params["ResponseContentType"] = content_type
        return self.client.generate_presigned_url("get_object", Params=params, ExpiresIn=expires_in)

    # -- multipart and tus uploads ---------------------------------------------------------

    direct_parts = True  # clients PUT parts to presigned URLs; ListParts is the record

    def start_upload(self) -> str:
        name = uuid.uuid4().hex
        response = self.client.create_multipart_upload(
            Bucket=self.bucket, Key=self._uploads_root + name
        )
        return f"{name}.{response['UploadId']}"

    def part_writer(self, handle: str, number: int, offset: int) -> S3PartWriter:
        # S3 places a part by its number; the offset only matters to stores that keep one file.
        _check_part_number(number)
        upload = self._upload(handle)
        # Checked first so that a client does not send up to 5 GiB to a dead upload.
        self._check_upload(upload)
        return S3PartWriter(self, upload, number)

    def presign_part(self, handle: str, number: int, expires_in: int) -> str:
        upload = self._upload(handle)
        _check_part_number(number)
        _check_expiry(expires_in)
        params = {
            "Bucket": self.bucket,
            "Key": upload.key,
            "UploadId": upload.upload_id,
            "PartNumber": number,
        }
        return self.client.generate_presigned_url(
            "upload_part", Params=params, ExpiresIn=expires_in
        )

    def list_parts(self, handle: str) -> builtins.list[PartInfo]:
        upload = self._upload(handle)
        try:
            return [
                PartInfo(part["PartNumber"], part["Size"], _bare(part["ETag"]))
                for part in self._parts_of(upload.key, upload.upload_id)
            ]
        except ClientError as exc:
            if _code(exc) in _NO_SUCH_UPLOAD:
                raise BlobNotFound(handle) from None
            raise

    def append_writer(self, handle: str, offset: int) -> S3AppendWriter:
        upload = self._upload(handle)
        if offset < 0:
            raise ValueError("offset must not be negative")
        tails = self._tails(upload.key)
        if not tails:
            # Nothing appended yet: make sure the upload exists before taking bytes for it.
            self._check_upload(upload)
            if offset:
                raise ValueError(f"upload {handle} holds 0 bytes, not {offset}")
            return S3AppendWriter(self, upload, _Tail("", 0, 0, 0), bytearray())
        # Bytes past offset were never acknowledged (a crash, or a checksum that failed after
        # finish): restart from the newest tail that still covers offset. Its older siblings
        # were needed only to undo the appends that followed it.
        base = next((tail for tail in reversed(tails) if tail.start <= offset <= tail.end), None)
        if base is None:
            raise ValueError(f"upload {handle} holds {tails[-1].end} bytes, not {offset}")
        for tail in reversed(tails):
            if tail is not base:
                self.client.delete_object(Bucket=self.bucket, Key=tail.key)
        buffer = self._read_prefix(base.key, offset - base.start)
        return S3AppendWriter(self, upload, base, buffer)

    def complete_upload(
        self, handle: str, parts: builtins.list[PartInfo] | None
    ) -> S3AssembledUpload:
        upload = self._upload(handle)
        try:
            if parts is None:
                self._complete_appended(upload)
            else:
                self._complete_parts(upload, parts)
        except ClientError as exc:
            if _code(exc) not in _NO_SUCH_UPLOAD:
                raise
            # Completed already (a retry after a lost response or a crash), or aborted.
        try:
            head = self.client.head_object(Bucket=self.bucket, Key=upload.key)
        except ClientError as exc:
            if _code(exc) not in _NOT_FOUND:
                raise
            self.client.delete_object(Bucket=self.bucket, Key=upload.marker_key)
            raise BlobNotFound(handle) from None
        return S3AssembledUpload(self, upload, head["ContentLength"])

    def abort_upload(self, handle: str) -> None:
        name, upload_id = self._split_handle(handle)
        key = self._uploads_root + name
        # The marker goes last and the multipart upload after it, so that whatever a crash
        # leaves is still listed under this handle by list_uploads.
        self._delete_upload_objects(key)
        if upload_id is not None:
            self._abort_multipart(key, upload_id)

    def list_uploads(self) -> Iterator[BlobInfo]:
        """Each staged upload once, under its handle, with its size and latest change.

        Objects map back to a handle through the upload's marker or its open multipart
        upload. Without either (a bucket lifecycle rule aborted the multipart upload behind
        our back) the key is the bare upload name, which abort_upload also takes.
        """
        found: dict[str, tuple[int, datetime]] = {}
        objects: dict[str, builtins.list[tuple[int, datetime]]] = {}
        handles: dict[str, str] = {}

        def note(handle: str, size_bytes: int, at: datetime) -> None:
            size_before, at_before = found.get(handle, (0, at))
            found[handle] = (size_before + size_bytes, max(at, at_before))

        pages = self.client.get_paginator("list_objects_v2")
        for page in pages.paginate(Bucket=self.bucket, Prefix=self._uploads_root):
            for item in page.get("Contents", []):
                name, suffix = _split_upload_key(item["Key"][len(self._uploads_root) :])
                if name is None:
                    continue  # not one of ours
                if suffix.startswith(_MARKER):
                    handles[name] = f"{name}.{suffix[len(_MARKER) :]}"
                at = item["LastModified"].astimezone(UTC)
                objects.setdefault(name, []).append((item["Size"], at))
        uploads = self.client.get_paginator("list_multipart_uploads")
        for upload_page in uploads.paginate(Bucket=self.bucket, Prefix=self._uploads_root):
            for open_upload in upload_page.get("Uploads", []):
                name, suffix = _split_upload_key(open_upload["Key"][len(self._uploads_root) :])
                if name is None or suffix:
                    continue
                handle = f"{name}.{open_upload['UploadId']}"
                try:
                    listed = list(self._parts_of(open_upload["Key"], open_upload["UploadId"]))
                except ClientError as exc:
                    if _code(exc) in _NO_SUCH_UPLOAD:
                        continue  # completed or aborted since the listing
                    raise
                # Initiated is when the session began; a presigned part is a later change.
                at = max(
                    [open_upload["Initiated"].astimezone(UTC)]
                    + [part["LastModified"].astimezone(UTC) for part in listed]
                )
                note(handle, sum(part["Size"] for part in listed), at)
                handles.setdefault(name, handle)
        for name, items in objects.items():
            for size_bytes, at in items:
                note(handles.get(name, name), size_bytes, at)
        for handle, (size_bytes, at) in found.items():
            yield BlobInfo(handle, size_bytes, at)

    def _upload(self, handle: str) -> _Upload:
        name, upload_id = self._split_handle(handle)
        if upload_id is None:
            raise InvalidKey(f"invalid upload handle: {handle!r}")
        return _Upload(handle, self._uploads_root + name, upload_id)

    def _split_handle(self, handle: str) -> tuple[str, str | None]:
        # UploadIds are opaque and may hold dots or slashes: only the first dot separates.
        name, dot, upload_id = handle.partition(".")
        if not _UPLOAD_NAME.fullmatch(name) or (dot and not upload_id.isprintable()):
            raise InvalidKey(f"invalid upload handle: {handle!r}")
        if not dot:
            return name, None  # only abort_upload takes a bare name (see list_uploads)
        if not upload_id:
            raise InvalidKey(f"invalid upload handle: {handle!r}")
        return name, upload_id

    def _check_upload(self, upload: _Upload) -> None:
        try:
            self.client.list_parts(
                Bucket=self.bucket, Key=upload.key, UploadId=upload.upload_id, MaxParts=1
            )
        except ClientError as exc:
            if _code(exc) in _NO_SUCH_UPLOAD:
                raise BlobNotFound(upload.handle) from None
            raise

    def _parts_of(self, key: str, upload_id: str) -> Iterator[PartTypeDef]:
        pages = self.client.get_paginator("list_parts")
        for page in pages.paginate(Bucket=self.bucket, Key=key, UploadId=upload_id):
            yield from page.get("Parts", [])

    def _tails(self, key: str) -> builtins.list[_Tail]:
        """The upload's tail objects, oldest (lowest start offset) first."""
        tails = []
        pages = self.client.get_paginator("list_objects_v2")
        for page in pages.paginate(Bucket=self.bucket, Prefix=f"{key}.tail."):
            for item in page.get("Contents", []):
                match = _TAIL.fullmatch(item["Key"][len(key) :])
                if match is not None:
                    start, parts = int(match[1]), int(match[2])
                    tails.append(_Tail(item["Key"], start, parts, item["Size"]))
        return sorted(tails, key=lambda tail: tail.start)

    def _read_prefix(self, key: str, size_bytes: int) -> bytearray:
        buffer = bytearray()
        if size_bytes:
            response = self.client.get_object(
                Bucket=self.bucket, Key=key, Range=f"bytes=0-{size_bytes - 1}"
            )
            for chunk in _stream(response["Body"]):
                buffer += chunk
        return buffer

    def _complete_parts(self, upload: _Upload, parts: builtins.list[PartInfo]) -> None:
        check_parts(parts)
        if max(part.number for part in parts) > MAX_PARTS:
            raise InvalidParts(f"part numbers end at {MAX_PARTS}")
        completed: builtins.list[CompletedPartTypeDef] = [
            {"ETag": f'"{_bare(part.etag)}"', "PartNumber": part.number}
            for part in sorted(parts, key=lambda part: part.number)
        ]
        # A completed or aborted upload answers NoSuchUpload here, before the marker is put
        # (CompleteMultipartUpload itself may instead succeed again, or fail on some clones).
        self.client.list_parts(
            Bucket=self.bucket, Key=upload.key, UploadId=upload.upload_id, MaxParts=1
        )
        self._put_marker(upload)
        try:
            self.client.complete_multipart_upload(
                Bucket=self.bucket,
                Key=upload.key,
                UploadId=upload.upload_id,
                MultipartUpload={"Parts": completed},
            )
        except ClientError as exc:
            if _code(exc) in _BAD_PARTS:
                message = exc.response.get("Error", {}).get("Message", _code(exc))
                raise InvalidParts(message) from None
            raise

    def _complete_appended(self, upload: _Upload) -> None:
        tails = self._tails(upload.key)
        last = tails[-1] if tails else _Tail("", 0, 0, 0)
        # Listed first: a completed upload raises NoSuchUpload here, before anything changes.
        listed = {part["PartNumber"]: part for part in self._parts_of(upload.key, upload.upload_id)}
        # Parts past the last tail's count are left over from appends that were undone.
        kept = [listed.get(number) for number in range(1, last.parts + 1)]
        completed: builtins.list[CompletedPartTypeDef] = []
        for number, part in enumerate(kept, start=1):
            if part is None:
                raise InvalidParts(f"appended part {number} is missing from the store")
            completed.append({"ETag": part["ETag"], "PartNumber": number})
        if sum(part["Size"] for part in kept if part is not None) != last.start:
            raise InvalidParts("the appended parts do not add up to the bytes recorded")
        self._put_marker(upload)
        if not completed:
            # Less than a part in all: S3 cannot complete an upload without parts, so the
            # tail (or nothing) becomes the assembled object by itself.
            if last.size_bytes:
                self.client.copy_object(
                    Bucket=self.bucket,
                    Key=upload.key,
                    CopySource={"Bucket": self.bucket, "Key": last.key},
                )
            else:
                self.client.put_object(Bucket=self.bucket, Key=upload.key, Body=b"")
            self._abort_multipart(upload.key, upload.upload_id)
        else:
            if last.size_bytes:
                # The last part may be short, so the tail joins as it is, copied server-side.
                number = last.parts + 1
                copied = self.client.upload_part_copy(
                    Bucket=self.bucket,
                    Key=upload.key,
                    UploadId=upload.upload_id,
                    PartNumber=number,
                    CopySource={"Bucket": self.bucket, "Key": last.key},
                )
                completed.append({"ETag": copied["CopyPartResult"]["ETag"], "PartNumber": number})
            self.client.complete_multipart_upload(
                Bucket=self.bucket,
                Key=upload.key,
                UploadId=upload.upload_id,
                MultipartUpload={"Parts": completed},
            )
        for tail in tails:
            self.client.delete_object(Bucket=self.bucket, Key=tail.key)

    def _put_marker(self, upload: _Upload) -> None:
        self.client.put_object(Bucket=self.bucket, Key=upload.marker_key, Body=b"")

    def _delete_upload_objects(self, key: str) -> None:
        """The assembled object, tails and marker of an upload; markers last."""
        found = [key]
        pages = self.client.get_paginator("list_objects_v2")
        for page in pages.paginate(Bucket=self.bucket, Prefix=f"{key}."):
            found += [item["Key"] for item in page.get("Contents", [])]
        for object_key in sorted(found, key=lambda k: k.startswith(key + _MARKER)):
            self.client.delete_object(Bucket=self.bucket, Key=object_key)

    def close(self) -> None:
        self.client.close()

    def copy_object(self, source: str, target: str, size_bytes: int) -> None:
        """Server-side copy inside the bucket; multipart above the CopyObject limit."""
        copy_source: CopySourceTypeDef = {"Bucket": self.bucket, "Key": source}
        if size_bytes < self._multipart_copy_threshold_bytes:
            self.client.copy_object(Bucket=self.bucket, Key=target, CopySource=copy_source)
        else:
            self.client.copy(copy_source, self.bucket, target, Config=self._copy_config)

    def _abort_multipart(self, key: str, upload_id: str) -> None:
        try:
            self.client.abort_multipart_upload(Bucket=self.bucket, Key=key, UploadId=upload_id)
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


def _fill_parts(buffer: bytearray, data: bytes, send_part: Callable[[], None]) -> None:
    """Add data to buffer, calling send_part each time it holds PART_BYTES (it must empty it)."""
    view = memoryview(data)
    while view:
        room = PART_BYTES - len(buffer)
        buffer += view[:room]
        view = view[room:]
        if len(buffer) == PART_BYTES:
            send_part()


def _bare(etag: str) -> str:
    return etag.strip('"')


def _check_part_number(number: int) -> None:
    if not 1 <= number <= MAX_PARTS:
        raise ValueError(f"part number must be 1..{MAX_PARTS}")


def _check_expiry(expires_in: int) -> None:
    if not 0 < expires_in <= MAX_PRESIGN_SECONDS:
        raise ValueError(f"expires_in must be 1..{MAX_PRESIGN_SECONDS} seconds")


def _split_upload_key(rest: str) -> tuple[str | None, str]:
    """An object key under the uploads prefix as (upload name, suffix); None if not ours."""
    name, suffix = rest[:32], rest[32:]
    if not _UPLOAD_NAME.fullmatch(name):
        return None, ""
    if suffix and not (_TAIL.fullmatch(suffix) or suffix.startswith(_MARKER)):
        return None, ""
    return name, suffix
