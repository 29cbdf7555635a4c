"""Parts hashed while they arrive (PrefixDigests), so that complete reads only what is left."""

from __future__ import annotations

import asyncio
import hashlib
import os
import time

import httpx
import pytest
from fastapi import FastAPI

from assetd.storage.base import PartInfo
from assetd.uploads.streaming import PrefixDigests, RunningDigests
from tests.factories import TenantCredentials
from tests.integration.uploads.test_sessions import PART, put_parts, start

PART_SIZE = 1000


class FakeUpload:
    """An upload file filled at offsets, read back like the store's page cache."""

    def __init__(self, size: int) -> None:
        self.data = bytearray(size)
        self.read_bytes = 0

    def read(self, start: int, buffer: memoryview) -> int:
        data = self.data[start : start + len(buffer)]
        buffer[: len(data)] = data
        self.read_bytes += len(data)
        return len(data)

    def write_part(self, prefix: PrefixDigests, number: int, part: bytes, step: int = 300) -> str:
        prefix.started(number)
        offset = (number - 1) * PART_SIZE
        for done in range(step, len(part) + step, step):
            done = min(done, len(part))
            self.data[offset : offset + done] = part[:done]
            prefix.progress(number, done)
        etag = hashlib.md5(part).hexdigest()
        prefix.finished(number, etag)
        return etag


def wait_for(condition: object, seconds: float = 5.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, "the prefix hasher never got there"
        time.sleep(0.01)


def split(data: bytes) -> list[bytes]:
    return [data[i : i + PART_SIZE] for i in range(0, len(data), PART_SIZE)]


def test_parts_in_any_order_are_hashed_once_each() -> None:
    data = os.urandom(4 * PART_SIZE + 123)
    upload = FakeUpload(len(data))
    prefix = PrefixDigests(upload.read, PART_SIZE)
    parts = split(data)
    infos = {}
    # The prefix can only grow once part 1 is there: 3, 5 and 2 wait for it.
    for number in (3, 5, 2, 1):
        etag = upload.write_part(prefix, number, parts[number - 1])
        infos[number] = PartInfo(number, len(parts[number - 1]), etag)
    wait_for(lambda: upload.read_bytes == 3 * PART_SIZE)
    etag = upload.write_part(prefix, 4, parts[3])
    infos[4] = PartInfo(4, PART_SIZE, etag)

    result = prefix.finish([infos[n] for n in sorted(infos)], len(data))

    assert result == (hashlib.sha256(data).hexdigest(), hashlib.md5(data).hexdigest())
    assert upload.read_bytes == len(data)


def test_parts_written_elsewhere_are_read_at_finish() -> None:
    data = os.urandom(3 * PART_SIZE)
    upload = FakeUpload(len(data))
    prefix = PrefixDigests(upload.read, PART_SIZE)
    parts = split(data)
    etag = upload.write_part(prefix, 1, parts[0])
    # Parts 2 and 3 went to another process: only the store holds them.
    upload.data[PART_SIZE:] = data[PART_SIZE:]
    others = [PartInfo(n, PART_SIZE, hashlib.md5(parts[n - 1]).hexdigest()) for n in (2, 3)]

    result = prefix.finish([PartInfo(1, PART_SIZE, etag), *others], len(data))

    assert result == (hashlib.sha256(data).hexdigest(), hashlib.md5(data).hexdigest())


def test_a_part_resent_over_hashed_bytes_gives_up() -> None:
    data = os.urandom(2 * PART_SIZE)
    upload = FakeUpload(len(data))
    prefix = PrefixDigests(upload.read, PART_SIZE)
    upload.write_part(prefix, 1, data[:PART_SIZE])
    wait_for(lambda: upload.read_bytes == PART_SIZE)
    changed = os.urandom(PART_SIZE)
    etags = [upload.write_part(prefix, 1, changed), upload.write_part(prefix, 2, data[PART_SIZE:])]

    parts = [PartInfo(n, PART_SIZE, etag) for n, etag in enumerate(etags, start=1)]
    assert prefix.finish(parts, len(data)) is None


def test_a_hashed_part_the_store_no_longer_holds_gives_up() -> None:
    data = os.urandom(2 * PART_SIZE)
    upload = FakeUpload(len(data))
    prefix = PrefixDigests(upload.read, PART_SIZE)
    first = upload.write_part(prefix, 1, data[:PART_SIZE])
    second = upload.write_part(prefix, 2, data[PART_SIZE:])
    wait_for(lambda: upload.read_bytes == len(data))
    # Part 2 was sent again to another process, with other bytes: its ETag changed.
    resent = PartInfo(2, PART_SIZE, hashlib.md5(b"other bytes").hexdigest())
    assert second != resent.etag

    assert prefix.finish([PartInfo(1, PART_SIZE, first), resent], len(data)) is None


def test_a_failed_part_is_forgotten_and_can_come_again() -> None:
    data = os.urandom(2 * PART_SIZE)
    upload = FakeUpload(len(data))
    prefix = PrefixDigests(upload.read, PART_SIZE)
    # Half of part 1 arrives, then the client goes away; the prefix waits for the part.
    prefix.started(1)
    upload.data[:10] = os.urandom(10)
    prefix.failed(1)
    assert upload.read_bytes == 0
    etags = [upload.write_part(prefix, n, chunk) for n, chunk in enumerate(split(data), start=1)]

    parts = [PartInfo(n, PART_SIZE, etag) for n, etag in enumerate(etags, start=1)]
    result = prefix.finish(parts, len(data))

    assert result == (hashlib.sha256(data).hexdigest(), hashlib.md5(data).hexdigest())


@pytest.mark.anyio
async def test_complete_uses_the_hashes_of_parts_received_here(
    client: httpx.AsyncClient,
    tenant: TenantCredentials,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from assetd.uploads import service

    def no_second_pass(assembled: object) -> tuple[str, str, bytes]:
        raise AssertionError("the file was hashed again")

    monkeypatch.setattr(service, "digest", no_second_pass)
    data = os.urandom(3 * PART + 4321)
    session = await start(client, tenant, sizeBytes=len(data), partSizeBytes=PART)
    parts = await put_parts(client, session, data)

    response = await client.post(
        f"/v1/uploads/{session['id']}/complete", json={"parts": parts}, headers=tenant.headers
    )

    assert response.status_code == 200, response.text
    version = response.json()["version"]
    assert version["sha256"] == hashlib.sha256(data).hexdigest()
    assert version["md5"] == hashlib.md5(data).hexdigest()


@pytest.mark.anyio
async def test_a_resent_part_after_hashing_still_gives_the_right_hashes(
    client: httpx.AsyncClient, tenant: TenantCredentials, app: FastAPI
) -> None:
    data = bytearray(os.urandom(2 * PART + 10))
    session = await start(client, tenant, sizeBytes=len(data), partSizeBytes=PART)
    await put_parts(client, session, bytes(data))
    digests: RunningDigests = app.state.context.upload_digests
    prefix = digests.prefix(session["id"], lambda start, buffer: 0, PART)
    for _ in range(500):  # until the first part's bytes are in the hashes
        if prefix._hashed >= PART:
            break
        await asyncio.sleep(0.01)
    assert prefix._hashed >= PART
    # The client sends part 1 again with other bytes: the prefix hashed the old ones.
    data[:PART] = os.urandom(PART)
    resent = await client.put(session["parts"][0]["url"], content=bytes(data[:PART]))
    assert resent.status_code == 200, resent.text

    response = await client.post(f"/v1/uploads/{session['id']}/complete", headers=tenant.headers)

    assert response.status_code == 200, response.text
    version = response.json()["version"]
    assert version["sha256"] == hashlib.sha256(data).hexdigest()
    assert version["md5"] == hashlib.md5(data).hexdigest()
