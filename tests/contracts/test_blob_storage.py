"""One behaviour contract for every BlobStorage, plus what only one backend can get wrong."""

from __future__ import annotations

import hashlib
import os
import tracemalloc
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from botocore.exceptions import ClientError

from assetd.storage import local as local_storage
from assetd.storage.base import (
    READ_CHUNK_BYTES,
    BlobNotFound,
    BlobStorage,
    BlobWriter,
    InvalidKey,
    put_bytes,
    read_all,
)
from assetd.storage.local import STAGING_DIR as LOCAL_STAGING_DIR
from assetd.storage.local import LocalBlobStorage
from assetd.storage.memory import InMemoryBlobStorage
from assetd.storage.s3 import PART_BYTES, S3BlobStorage

MiB = 1024 * 1024
KEY = "tenant-1/ab/cdef0123"
RANGED_SIZE = 2 * MiB + 123
S3Factory = Callable[..., S3BlobStorage]
INVALID_KEYS = ["../x", "/abs", "a//b", "a/../b", "", "a/./b", "a/b/"]


@pytest.fixture(params=["memory", "local", "s3"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[BlobStorage]:
    storage: BlobStorage
    if request.param == "memory":
        storage = InMemoryBlobStorage()
    elif request.param == "local":
        storage = LocalBlobStorage(tmp_path / "blobs")
    else:
        # Looked up lazily so the memory and local runs never start the S3 server.
        storage = request.getfixturevalue("s3_storage")
    yield storage
    storage.close()


def write_in_pieces(writer: BlobWriter, data: bytes, piece_bytes: int) -> None:
    for offset in range(0, len(data), piece_bytes):
        writer.write(data[offset : offset + piece_bytes])


Abandon = Callable[[BlobStorage], BlobWriter]


@pytest.fixture
def abandon() -> Iterator[Abandon]:
    """Make writers that "crash" after staging more than one S3 part (so bytes sit remotely)."""
    writers: list[BlobWriter] = []

    def make(storage: BlobStorage) -> BlobWriter:
        writer = storage.writer()
        writer.write(os.urandom(PART_BYTES + 1))
        writers.append(writer)
        return writer

    yield make
    # Releases the file handles a crashed process would have dropped; staging may be gone by now.
    for writer in writers:
        writer.abort()


def read_op(storage: BlobStorage, key: str) -> None:
    storage.read(key)


def size_op(storage: BlobStorage, key: str) -> None:
    storage.size(key)


def delete_op(storage: BlobStorage, key: str) -> None:
    storage.delete(key)


def commit_op(storage: BlobStorage, key: str) -> None:
    writer = storage.writer()
    try:
        writer.write(b"x")
        writer.commit(key)
    finally:
        writer.abort()


KEYED_OPS: list[Callable[[BlobStorage, str], None]] = [read_op, size_op, delete_op, commit_op]
KEYED_OP_IDS = ["read", "size", "delete", "commit"]


class TestBlobStorageContract:
    def test_multi_part_blob_round_trips_in_bounded_chunks(self, store: BlobStorage) -> None:
        data = os.urandom(20 * MiB)
        writer = store.writer()
        write_in_pieces(writer, data, 1_000_003)
        writer.commit(KEY)

        chunks = list(store.read(KEY))
        assert b"".join(chunks) == data
        assert len(chunks) > 1
        assert all(0 < len(chunk) <= READ_CHUNK_BYTES for chunk in chunks)
        assert store.size(KEY) == len(data)

    def test_empty_blob_round_trips(self, store: BlobStorage) -> None:
        put_bytes(store, KEY, b"")

        assert read_all(store, KEY) == b""
        assert store.size(KEY) == 0
        assert [info.key for info in store.list()] == [KEY]

    @pytest.mark.parametrize(
        ("start", "end", "expected"),
        [
            (0, 0, slice(0, 1)),
            (10, 19, slice(10, 20)),
            (MiB - 1, MiB, slice(MiB - 1, MiB + 1)),
            (100, RANGED_SIZE + 1000, slice(100, None)),
            (RANGED_SIZE - 1, None, slice(RANGED_SIZE - 1, None)),
            (RANGED_SIZE - 1, RANGED_SIZE - 1, slice(RANGED_SIZE - 1, None)),
            (0, None, slice(None)),
            (RANGED_SIZE, None, slice(0, 0)),
            (5, 4, slice(0, 0)),
        ],
        ids=[
            "first-byte",
            "inclusive-end",
            "across-chunk-boundary",
            "end-past-size",
            "start-at-last-byte",
            "last-byte-only",
            "whole-blob",
            "start-past-size-is-empty",
            "end-before-start-is-empty",
        ],
    )
    def test_ranged_read_returns_inclusive_byte_range(
        self, store: BlobStorage, start: int, end: int | None, expected: slice
    ) -> None:
        data = os.urandom(RANGED_SIZE)
        put_bytes(store, KEY, data)

        chunks = list(store.read(KEY, start, end))

        assert b"".join(chunks) == data[expected]
        assert all(len(chunk) <= READ_CHUNK_BYTES for chunk in chunks)

    @pytest.mark.parametrize("operation", [read_op, size_op], ids=["read", "size"])
    def test_missing_key_raises_blob_not_found_before_any_bytes(
        self, store: BlobStorage, operation: Callable[[BlobStorage, str], None]
    ) -> None:
        # read() raises on the call, not on first iteration, so a route can 404 before it streams.
        with pytest.raises(BlobNotFound):
            operation(store, KEY)

    def test_delete_removes_blob_and_is_idempotent(self, store: BlobStorage) -> None:
        put_bytes(store, KEY, b"doomed")

        store.delete(KEY)
        store.delete(KEY)

        with pytest.raises(BlobNotFound):
            store.size(KEY)
        assert list(store.list()) == []

    def test_commit_replaces_existing_key_with_identical_content(self, store: BlobStorage) -> None:
        data = os.urandom(PART_BYTES + 5)
        put_bytes(store, KEY, data)
        put_bytes(store, KEY, data)

        assert read_all(store, KEY) == data
        assert [info.key for info in store.list()] == [KEY]
        assert list(store.list_staging()) == []

    @pytest.mark.parametrize("size_bytes", [10, 2 * PART_BYTES + 1], ids=["small", "multipart"])
    def test_abort_leaves_nothing_behind(self, store: BlobStorage, size_bytes: int) -> None:
        writer = store.writer()
        writer.write(os.urandom(size_bytes))

        writer.abort()
        writer.abort()

        assert list(store.list()) == []
        assert list(store.list_staging()) == []

    def test_abort_after_commit_keeps_the_blob(self, store: BlobStorage) -> None:
        data = os.urandom(PART_BYTES + 1)
        writer = store.writer()
        writer.write(data)
        writer.commit(KEY)

        writer.abort()

        assert read_all(store, KEY) == data
        assert list(store.list_staging()) == []

    def test_publish_now_makes_sealed_bytes_visible_or_does_nothing(
        self, store: BlobStorage
    ) -> None:
        data = os.urandom(1000)
        writer = store.writer()
        writer.write(data)
        writer.seal()

        finish = writer.publish_now(KEY)

        if finish is None:  # no cheap half (S3): nothing published, commit() still works
            assert list(store.list()) == []
            writer.commit(KEY)
        else:
            assert read_all(store, KEY) == data  # visible before the durable half runs
            finish()
            writer.abort()  # after publishing, abort must not take the blob back
        assert read_all(store, KEY) == data
        assert list(store.list_staging()) == []

    def test_publish_now_does_nothing_before_seal(self, store: BlobStorage) -> None:
        writer = store.writer()
        writer.write(b"not sealed")
        if isinstance(store, InMemoryBlobStorage):
            pytest.skip("memory holds nothing durably: sealing has no work to do")

        assert writer.publish_now(KEY) is None
        assert list(store.list()) == []
        writer.abort()
        assert list(store.list_staging()) == []

    def test_abandoned_writer_is_listed_in_staging_until_deleted(
        self, store: BlobStorage, abandon: Abandon
    ) -> None:
        abandon(store)

        staged = list(store.list_staging())
        assert len(staged) == 1
        assert list(store.list()) == []

        store.delete_staging(staged[0].key)
        store.delete_staging(staged[0].key)

        assert list(store.list_staging()) == []

    def test_list_returns_committed_blobs_under_prefix_only(
        self, store: BlobStorage, abandon: Abandon
    ) -> None:
        blobs = {"t1/aa/one": b"1", "t1/bb/two": b"22", "t2/aa/three": b"333"}
        for key, data in blobs.items():
            put_bytes(store, key, data)
        abandon(store)

        under_t1 = sorted(store.list("t1/"), key=lambda info: info.key)
        everything = sorted(info.key for info in store.list())

        assert [(info.key, info.size_bytes) for info in under_t1] == [
            ("t1/aa/one", 1),
            ("t1/bb/two", 2),
        ]
        assert all(info.modified_at.tzinfo is not None for info in under_t1)
        assert everything == sorted(blobs)

    @pytest.mark.parametrize("key", INVALID_KEYS)
    @pytest.mark.parametrize("operation", KEYED_OPS, ids=KEYED_OP_IDS)
    def test_invalid_key_is_refused(
        self, store: BlobStorage, operation: Callable[[BlobStorage, str], None], key: str
    ) -> None:
        with pytest.raises(InvalidKey):
            operation(store, key)
        assert list(store.list_staging()) == []


class TestLocalBlobStorage:
    def test_writer_starts_writeback_every_few_mib_as_bytes_arrive(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        calls: list[tuple[int, int, int]] = []

        def record(fd: int, offset: int, count: int, flags: int) -> int:
            calls.append((offset, count, flags))
            return 0

        monkeypatch.setattr(local_storage._WriteBack, "_call", staticmethod(record))
        store = LocalBlobStorage(tmp_path / "root")
        writer = store.writer()
        data = os.urandom(MiB)
        for _ in range(20):
            writer.write(data)
        writer.commit(KEY)

        step = local_storage.WRITE_BACK_BYTES
        assert calls == [(0, step, 2), (step, step, 2)]  # 16 of 20 MiB handed to the disk
        assert read_all(store, KEY) == data * 20

    @pytest.mark.parametrize("operation", KEYED_OPS, ids=KEYED_OP_IDS)
    def test_key_cannot_follow_a_symlink_out_of_root(
        self, tmp_path: Path, operation: Callable[[BlobStorage, str], None]
    ) -> None:
        outside = tmp_path / "outside"
        outside.mkdir()
        (outside / "secret").write_bytes(b"secret")
        store = LocalBlobStorage(tmp_path / "root")
        (store.root / "tenant").symlink_to(outside)

        with pytest.raises(InvalidKey):
            operation(store, "tenant/secret")
        assert (outside / "secret").read_bytes() == b"secret"

    @pytest.mark.parametrize("operation", KEYED_OPS, ids=KEYED_OP_IDS)
    def test_key_cannot_address_the_staging_folder(
        self, tmp_path: Path, operation: Callable[[BlobStorage, str], None]
    ) -> None:
        store = LocalBlobStorage(tmp_path / "root")
        staged = store.writer()
        staged.write(b"in flight")
        (store.root / "tenant").symlink_to(store.root / LOCAL_STAGING_DIR)
        name = staged.staging_path.name

        for key in (f"{LOCAL_STAGING_DIR}/{name}", f"tenant/{name}"):
            with pytest.raises(InvalidKey):
                operation(store, key)
        assert staged.staging_path.exists()
        staged.abort()


class TestS3BlobStorage:
    def test_memory_stays_flat_while_streaming_64_mib(self, s3_storage: S3BlobStorage) -> None:
        chunk = os.urandom(MiB)
        expected = hashlib.sha256(chunk * 64).hexdigest()
        digest = hashlib.sha256()

        tracemalloc.start()
        try:
            writer = s3_storage.writer()
            for _ in range(64):
                writer.write(chunk)
            writer.commit(KEY)
            for piece in s3_storage.read(KEY):
                digest.update(piece)
            _, peak_bytes = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()

        assert digest.hexdigest() == expected
        assert peak_bytes < 32 * MiB

    def test_commit_above_copy_limit_publishes_by_multipart_copy(
        self, make_s3_storage: S3Factory
    ) -> None:
        # The real limit is 5 GiB; lowering it exercises UploadPartCopy on a small blob.
        store = make_s3_storage(multipart_copy_threshold_bytes=PART_BYTES)
        data = os.urandom(2 * PART_BYTES + 3)

        put_bytes(store, KEY, data)

        assert read_all(store, KEY) == data
        assert list(store.list_staging()) == []

    def test_writer_refuses_more_bytes_after_a_failed_part_upload(
        self, s3_storage: S3BlobStorage
    ) -> None:
        s3_storage.client.delete_bucket(Bucket=s3_storage.bucket)
        writer = s3_storage.writer()

        with pytest.raises(ClientError):
            writer.write(os.urandom(PART_BYTES))
        # Some of those bytes may be in S3 already, so carrying on would corrupt the blob.
        with pytest.raises(ValueError, match="abort"):
            writer.write(b"more")
        with pytest.raises(ValueError, match="abort"):
            writer.commit(KEY)
        writer.abort()

    def test_create_bucket_names_a_region_other_than_us_east_1(
        self, make_s3_storage: S3Factory
    ) -> None:
        store = make_s3_storage(region="eu-west-1")

        put_bytes(store, KEY, b"eu")

        assert read_all(store, KEY) == b"eu"
        location = store.client.get_bucket_location(Bucket=store.bucket)
        assert location["LocationConstraint"] == "eu-west-1"

    def test_key_cannot_address_the_staging_area(
        self, s3_storage: S3BlobStorage, abandon: Abandon
    ) -> None:
        abandon(s3_storage)
        name = next(iter(s3_storage.list_staging())).key

        for operation in KEYED_OPS:
            with pytest.raises(InvalidKey):
                operation(s3_storage, f"_staging/{name}")
        assert [info.key for info in s3_storage.list_staging()] == [name]

    def test_completed_but_unpublished_staging_object_is_listed_and_deletable(
        self, s3_storage: S3BlobStorage
    ) -> None:
        # A crash between completing the multipart upload and the publishing copy leaves this.
        s3_storage.client.put_object(
            Bucket=s3_storage.bucket, Key=s3_storage.staging_object_key("deadbeef"), Body=b"xyz"
        )

        assert [(i.key, i.size_bytes) for i in s3_storage.list_staging()] == [("deadbeef", 3)]
        assert list(s3_storage.list()) == []

        s3_storage.delete_staging("deadbeef")

        assert list(s3_storage.list_staging()) == []

    def test_prefix_keeps_stores_in_one_bucket_apart(
        self, make_s3_storage: S3Factory, abandon: Abandon
    ) -> None:
        alpha = make_s3_storage(prefix="alpha")
        beta = make_s3_storage(bucket=alpha.bucket, prefix="/beta/nested/")
        put_bytes(alpha, KEY, b"alpha")
        put_bytes(beta, KEY, b"beta")
        abandon(alpha)

        assert read_all(alpha, KEY) == b"alpha"
        assert read_all(beta, KEY) == b"beta"
        assert [info.key for info in alpha.list()] == [KEY]
        assert [info.key for info in beta.list()] == [KEY]
        assert len(list(alpha.list_staging())) == 1
        assert list(beta.list_staging()) == []

    def test_presigned_url_downloads_blob_with_name_and_type(
        self, s3_storage: S3BlobStorage
    ) -> None:
        put_bytes(s3_storage, KEY, b"%PDF-1.7 hello")

        url = s3_storage.presigned_get_url(
            KEY, expires_in=60, filename='résumé "final".pdf', content_type="application/pdf"
        )
        response = httpx.get(url)

        assert response.status_code == 200
        assert response.content == b"%PDF-1.7 hello"
        assert response.headers["content-type"] == "application/pdf"
        assert response.headers["content-disposition"] == (
            'attachment; filename="r_sum_ _final_.pdf"; '
            "filename*=UTF-8''r%C3%A9sum%C3%A9%20%22final%22.pdf"
        )

    @pytest.mark.parametrize("expires_in", [0, 7 * 24 * 3600 + 1])
    def test_presigned_url_refuses_expiry_outside_what_sigv4_allows(
        self, s3_storage: S3BlobStorage, expires_in: int
    ) -> None:
        with pytest.raises(ValueError, match="expires_in"):
            s3_storage.presigned_get_url(KEY, expires_in=expires_in)
