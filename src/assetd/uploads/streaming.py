"""Moving an upload's bytes: request body → store with hashes on the side, and the hashes
of an assembled upload (kept from the appends when possible, else one pass over the store).
"""

from __future__ import annotations

import asyncio
import hashlib
import threading
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from concurrent import futures
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import anyio.to_thread
import structlog

from assetd.assets.sniff import SNIFF_BYTES
from assetd.errors import AssetdError
from assetd.storage.base import AssembledUpload, PartInfo, PartWriter

log = structlog.get_logger()


# Bytes per hand-off to the writing thread (each costs ~150 µs of CPU here). Bigger batches
# cost less CPU but, with parallel parts, more server memory.
STREAM_BATCH_BYTES = 1024 * 1024


async def stream_into(
    writer: PartWriter,
    chunks: AsyncIterator[bytes],
    *,
    limit: int,
    on_limit: Callable[[], AssetdError],
    want_sha256: bool = False,
    digests: Sequence[Any] = (),
    keep_partial: bool = False,
    on_written: Callable[[int], None] | None = None,
) -> tuple[PartInfo, str | None]:
    """Copy the request body into the writer in batches, one write in flight while reading.

    Nothing past `limit` is written: the check runs before each batch goes out, so an
    oversized part never touches its neighbour's bytes. on_written gets the bytes written
    so far after each batch (from a worker thread).
    """
    sha = hashlib.sha256() if want_sha256 else None
    updates = [d.update for d in (sha, *digests) if d is not None]
    # Hashes run in threads of their own beside the write: hashlib and file writes release
    # the GIL, so on two cores a batch costs its slowest step, not the sum.
    pool = ThreadPoolExecutor(len(updates), "assetd-stream-hash") if updates else None
    batch: list[bytes] = []
    batched = 0
    received = 0
    written = 0
    pending: asyncio.Future[None] | None = None

    def step(data: bytes) -> None:
        # One hand-off per batch: the event loop is woken once, not once per hash.
        nonlocal written
        hashing = [pool.submit(update, data) for update in updates] if pool else []
        try:
            writer.write(data)
        finally:
            futures.wait(hashing)
        for future in hashing:
            future.result()
        written += len(data)
        if on_written is not None:
            on_written(written)

    async def flush() -> None:
        nonlocal pending, batched
        if pending is not None:
            waiting, pending = pending, None
            await waiting
        if batch:
            # One copy to join the socket's chunks (none when a single chunk fills the batch).
            data = b"".join(batch)
            batch.clear()
            batched = 0
            pending = asyncio.ensure_future(anyio.to_thread.run_sync(step, data))

    try:
        try:
            async for chunk in chunks:
                received += len(chunk)
                if received > limit:
                    raise on_limit()
                batch.append(chunk)
                batched += len(chunk)
                if batched >= STREAM_BATCH_BYTES:
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
    finally:
        if pool is not None:
            pool.shutdown(wait=False)
    return info, sha.hexdigest() if sha is not None else None


# Bytes the prefix hasher reads back and hashes at a time.
FOLLOW_CHUNK_BYTES = 4 * 1024 * 1024
# How long an idle prefix hasher waits for more bytes before its thread ends.
FOLLOW_IDLE_SECONDS = 1.0


class PrefixDigests:
    """SHA-256 and MD5 of a parts upload's contiguous prefix, hashed while later parts arrive.

    Part writers of this process report how far they got; a thread reads the bytes that
    continue the hashed prefix back (from the page cache, just written) and hashes them, so
    that complete hashes only what is left instead of the whole file. Only an optimization:
    a part re-sent over hashed bytes stops it, and at complete every part the prefix covers
    must be, by size and ETag, the part the session holds, or the file is hashed from the
    store as before. Parts that other processes received are read at complete.
    """

    def __init__(self, read_into: Callable[[int, memoryview], int], part_size: int) -> None:
        self._read_into = read_into
        self._part_size = part_size
        self._sha = hashlib.sha256()
        self._md5 = hashlib.md5(usedforsecurity=False)
        self._hashed = 0  # bytes 0..hashed are in the hashes
        self._claimed = 0  # bytes hashed..claimed are being read and hashed now
        self._written: dict[int, int] = {}  # part number -> bytes written from its start
        self._etags: dict[int, str] = {}  # part number -> ETag, once finished here
        self._end: int | None = None  # set at complete: every byte up to it is in place
        self._broken = False
        self._running = False
        self._buffer: memoryview | None = None
        self._changed = threading.Condition()

    def started(self, number: int) -> None:
        """Part `number` is (re)written from its start: forget what was known of it."""
        with self._changed:
            if self._claimed > (number - 1) * self._part_size:
                self._broken = True  # its old bytes are already in the hashes
            if number in self._written and number not in self._etags:
                self._broken = True  # two requests write this part at once
            self._written.pop(number, None)
            self._etags.pop(number, None)

    def failed(self, number: int) -> None:
        """Part `number` was not stored: its bytes on disk are whatever the writer left."""
        with self._changed:
            if self._claimed > (number - 1) * self._part_size:
                self._broken = True
            self._written.pop(number, None)
            self._etags.pop(number, None)

    def progress(self, number: int, written: int) -> None:
        with self._changed:
            self._written[number] = written
            self._kick()

    def finished(self, number: int, etag: str) -> None:
        with self._changed:
            self._etags[number] = etag

    def finish(self, parts: Sequence[PartInfo], size_bytes: int) -> tuple[str, str] | None:
        """The whole file's hashes once the parts are assembled, or None (hash it anew).

        Blocking: waits for the hasher and reads whatever it has not reached yet.
        """
        with self._changed:
            for part in parts:
                covered = self._claimed > (part.number - 1) * self._part_size
                if covered and (
                    self._etags.get(part.number) != part.etag
                    or self._written.get(part.number) != part.size_bytes
                ):
                    self._broken = True
            self._end = size_bytes
            while self._running and not self._broken:
                self._changed.notify_all()
                self._changed.wait()
            if self._broken:
                return None
            self._running = True
        self._follow()
        with self._changed:
            if self._broken or self._hashed != size_bytes:
                return None
        return self._sha.hexdigest(), self._md5.hexdigest()

    def _available(self) -> int:
        """Where the contiguous written bytes from the hashed prefix on end (lock held)."""
        if self._end is not None:
            return self._end
        number = self._claimed // self._part_size + 1
        return (number - 1) * self._part_size + self._written.get(number, 0)

    def _kick(self) -> None:
        if self._running:
            self._changed.notify_all()
        elif not self._broken and self._available() > self._claimed:
            self._running = True
            threading.Thread(target=self._follow, name="assetd-prefix-hash", daemon=True).start()

    def _follow(self) -> None:
        # One buffer while the parts keep coming, read into again and again: a fresh big
        # object per read leaves freed memory in malloc's arenas, and the server's RSS grows.
        if self._buffer is None:
            self._buffer = memoryview(bytearray(FOLLOW_CHUNK_BYTES))
        buffer = self._buffer
        with ThreadPoolExecutor(1, "assetd-prefix-sha") as pool:
            while True:
                with self._changed:
                    end = self._available()
                    if end <= self._claimed and self._end is None and not self._broken:
                        self._changed.wait(FOLLOW_IDLE_SECONDS)
                        end = self._available()
                    if self._broken or end <= self._claimed:
                        self._running = False
                        self._buffer = None  # idle uploads (or abandoned ones) hold no memory
                        self._changed.notify_all()
                        return
                    start = self._claimed
                    size = min(end - start, FOLLOW_CHUNK_BYTES)
                    self._claimed = start + size
                try:
                    data = buffer[:size]
                    got = self._read_into(start, data)
                    if got != size:
                        raise ValueError(f"read {got} bytes at {start}, not {size}")
                    sha = pool.submit(self._sha.update, data)
                    self._md5.update(data)
                    sha.result()
                except Exception:
                    log.warning("upload.prefix_hash_failed", exc_info=True)
                    with self._changed:
                        self._broken = True
                    continue
                with self._changed:
                    self._hashed = self._claimed


class RunningDigests:
    """SHA-256 and MD5 of uploads so far, kept by the process that received the bytes.

    With them the PATCH that brings the last byte (tus), or complete (parts, through
    PrefixDigests), needs no second pass over the file. Only an optimization: an upload
    whose bytes went to another process (or before a restart) has no state here, and is
    hashed from the store when it completes.
    """

    def __init__(self, max_uploads: int = 256) -> None:
        self._states: OrderedDict[str, tuple[int, Any, Any]] = OrderedDict()
        self._prefixes: OrderedDict[str, PrefixDigests] = OrderedDict()
        self._max = max_uploads
        self._lock = threading.Lock()

    def prefix(
        self, upload_id: str, read_into: Callable[[int, memoryview], int], part_size: int
    ) -> PrefixDigests:
        """The prefix hasher of a parts upload, made when its first part arrives here."""
        with self._lock:
            prefix = self._prefixes.get(upload_id)
            if prefix is None:
                prefix = self._prefixes[upload_id] = PrefixDigests(read_into, part_size)
            self._prefixes.move_to_end(upload_id)
            while len(self._prefixes) > self._max:
                self._prefixes.popitem(last=False)
            return prefix

    def take_prefix(self, upload_id: str) -> PrefixDigests | None:
        with self._lock:
            return self._prefixes.pop(upload_id, None)

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
