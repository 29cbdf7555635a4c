"""Moving an upload's bytes: request body → store with hashes on the side, and the hashes
of an assembled upload (kept from the appends when possible, else one pass over the store).
"""

from __future__ import annotations

import asyncio
import hashlib
import threading
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import anyio.to_thread

from assetd.assets.ingest import BATCH_BYTES
from assetd.assets.sniff import SNIFF_BYTES
from assetd.errors import AssetdError
from assetd.storage.base import AssembledUpload, PartInfo, PartWriter


async def stream_into(
    writer: PartWriter,
    chunks: AsyncIterator[bytes],
    *,
    limit: int,
    on_limit: Callable[[], AssetdError],
    want_sha256: bool = False,
    digests: Sequence[Any] = (),
    keep_partial: bool = False,
) -> tuple[PartInfo, str | None]:
    """Copy the request body into the writer in batches, one write in flight while reading.

    Nothing past `limit` is written: the check runs before each batch goes out, so an
    oversized part never touches its neighbour's bytes.
    """
    sha = hashlib.sha256() if want_sha256 else None
    updates = [d.update for d in (sha, *digests) if d is not None]
    buffer = bytearray()
    received = 0
    pending: asyncio.Future[None] | None = None

    async def write(batch: bytes) -> None:
        # The write and each hash in threads of their own: hashlib and file writes release
        # the GIL, so on two cores the batch costs its slowest step, not the sum.
        steps = [anyio.to_thread.run_sync(step, batch) for step in (writer.write, *updates)]
        results = await asyncio.gather(*steps, return_exceptions=True)
        for result in results:
            if isinstance(result, BaseException):
                raise result

    async def flush() -> None:
        nonlocal pending
        if pending is not None:
            waiting, pending = pending, None
            await waiting
        if buffer:
            batch = bytes(buffer)
            buffer.clear()
            pending = asyncio.ensure_future(write(batch))

    try:
        try:
            async for chunk in chunks:
                received += len(chunk)
                if received > limit:
                    raise on_limit()
                buffer += chunk
                if len(buffer) >= BATCH_BYTES:
                    await flush()
        except AssetdError:
            raise
        except Exception:
            # The client went away mid-body. tus keeps what arrived; a part is all or nothing.
            if not keep_partial:
                raise
        await flush()
        await flush()
        info = await anyio.to_thread.run_sync(writer.finish)
    except BaseException:
        if pending is not None:
            try:
                await pending
            except Exception:
                pass
        await anyio.to_thread.run_sync(writer.abort)
        raise
    return info, sha.hexdigest() if sha is not None else None


class RunningDigests:
    """SHA-256 and MD5 of tus uploads so far, kept by the process that received the bytes.

    With them the PATCH that brings the last byte needs no second pass over the file. Only
    an optimization: an upload whose appends went to another process (or before a restart)
    has no state here, and is hashed from the store when it completes.
    """

    def __init__(self, max_uploads: int = 256) -> None:
        self._states: OrderedDict[str, tuple[int, Any, Any]] = OrderedDict()
        self._max = max_uploads
        self._lock = threading.Lock()

    def take(self, upload_id: str, offset: int) -> tuple[Any, Any] | None:
        """The hashes of bytes 0..offset, taken out until the append extending them succeeds."""
        with self._lock:
            state = self._states.pop(upload_id, None)
        if offset == 0:
            return hashlib.sha256(), hashlib.md5(usedforsecurity=False)
        if state is None or state[0] != offset:
            return None
        return state[1], state[2]

    def put(self, upload_id: str, offset: int, sha256: Any, md5: Any) -> None:
        with self._lock:
            self._states[upload_id] = (offset, sha256, md5)
            self._states.move_to_end(upload_id)
            while len(self._states) > self._max:
                self._states.popitem(last=False)

    def finished(self, upload_id: str, size_bytes: int) -> tuple[str, str] | None:
        with self._lock:
            state = self._states.pop(upload_id, None)
        if state is None or state[0] != size_bytes:
            return None
        return state[1].hexdigest(), state[2].hexdigest()


def read_head(assembled: AssembledUpload) -> bytes:
    """The first bytes, for sniffing."""
    chunks = assembled.read()
    head = bytearray()
    try:
        for chunk in chunks:
            head += chunk[: SNIFF_BYTES - len(head)]
            if len(head) >= SNIFF_BYTES:
                break
    finally:
        close = getattr(chunks, "close", None)
        if close is not None:
            close()
    return bytes(head)


def digest(assembled: AssembledUpload) -> tuple[str, str, bytes]:
    """SHA-256, MD5 and the head of the assembled bytes, hashed on two cores at once."""
    sha = hashlib.sha256()
    md5 = hashlib.md5(usedforsecurity=False)
    head = bytearray()
    chunks: Iterator[bytes] = assembled.read()
    with ThreadPoolExecutor(max_workers=2, thread_name_prefix="assetd-digest") as pool:
        waiting: list[Any] = []
        for chunk in chunks:
            # hashlib releases the GIL on big buffers: reading the next chunk overlaps both.
            for future in waiting:
                future.result()
            if len(head) < SNIFF_BYTES:
                head += chunk[: SNIFF_BYTES - len(head)]
            waiting = [pool.submit(sha.update, chunk), pool.submit(md5.update, chunk)]
        for future in waiting:
            future.result()
    return sha.hexdigest(), md5.hexdigest(), bytes(head)
