"""The event loop of `assetd serve --workers N`: the workers share the connections evenly.

uvicorn's workers accept on one shared socket. libuv (under uvloop) accepts every pending
connection at each wake-up, so a client that opens its keep-alive connections at once hands
them all to whichever worker woke first; that worker then serves every request on one core
while the others idle. Measured with 8 connections and 2 workers: all 8 in one worker in
most runs, and half the throughput.

Here the workers take connections one at a time, fewest open connections first (least
connections, as load balancers do it). Each worker publishes its count on a board that all
of them map (a small file, a slot each); a worker that has more than another lets the
connection wait for that one, and takes it itself only if nobody has within DEFER_LIMIT per
connection it has over the other, at most MAX_DEFER (the other may be busy, or dead). A
lone worker, or a socket uvicorn did not share, gets uvloop's own server.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import mmap
import os
import socket
import tempfile
import time
from collections.abc import Iterator
from typing import Any

import structlog
import uvloop

log = structlog.get_logger()

BOARD_ENV = "_ASSETD_CONNECTION_BOARD"  # set by `serve` for its workers; not a setting
# Seconds a connection waits for a worker with fewer connections, per connection of
# difference: a worker's loop can be busy for some milliseconds at a time.
DEFER_LIMIT = 0.005
MAX_DEFER = 0.05
_RECHECK = 0.001  # seconds between looks while deferring
_RETRY_AFTER = 0.1  # seconds of pause after accept() failed (out of descriptors, say)
_ABSENT = -1
_SLOT = 8  # bytes: one signed 64-bit count


class ConnectionBoard:
    """Every worker's open connections, in a file each worker maps; a worker owns its slot
    by a byte-range lock, which the kernel drops when the process dies, so a restarted
    worker takes over its slot."""

    def __init__(self, path: str) -> None:
        self._fd = os.open(path, os.O_RDWR)
        size = os.fstat(self._fd).st_size
        self._map = mmap.mmap(self._fd, size)
        self._counts = memoryview(self._map).cast("q")
        self.slot = self._claim(size // _SLOT)
        self.publish(0)

    @staticmethod
    @contextlib.contextmanager
    def shared(workers: int) -> Iterator[str]:
        """A board of `workers` empty slots for the block's length; yields its path."""
        folder = "/dev/shm" if os.path.isdir("/dev/shm") else None
        fd, path = tempfile.mkstemp(prefix="assetd-connections-", dir=folder)
        try:
            os.write(fd, _ABSENT.to_bytes(_SLOT, "little", signed=True) * workers)
            yield path
        finally:
            os.close(fd)
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)

    def _claim(self, slots: int) -> int:
        for slot in range(slots):
            try:
                fcntl.lockf(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB, _SLOT, slot * _SLOT)
            except OSError:
                continue
            return slot
        raise RuntimeError("every worker slot of the connection board is taken")

    def publish(self, count: int) -> None:
        self._counts[self.slot] = count

    def fewest_elsewhere(self) -> int | None:
        """The smallest count another live worker published, or None if there is none."""
        others = [
            count
            for slot, count in enumerate(self._counts)
            if slot != self.slot and count != _ABSENT
        ]
        return min(others) if others else None

    def close(self) -> None:
        # A slot left behind by a crash keeps its count until a new worker claims it;
        # MAX_DEFER bounds what a stale low count costs meanwhile.
        self.publish(_ABSENT)
        self._counts.release()
        self._map.close()
        os.close(self._fd)


class WorkerLoop(uvloop.Loop):
    """uvloop, whose server on the shared socket takes connections least-connections first."""

    async def create_server(
        self,
        protocol_factory: Any,
        host: Any = None,
        port: Any = None,
        *,
        sock: socket.socket | None = None,
        ssl: Any = None,
        backlog: int = 100,
        **kwargs: Any,
    ) -> Any:
        path = os.environ.get(BOARD_ENV)
        if sock is None or ssl is not None or not path:
            return await super().create_server(
                protocol_factory, host, port, sock=sock, ssl=ssl, backlog=backlog, **kwargs
            )
        return BalancedServer(self, protocol_factory, sock, backlog, ConnectionBoard(path))


def worker_loop() -> asyncio.AbstractEventLoop:
    """The loop factory uvicorn gets (`loop="assetd.serving:worker_loop"`)."""
    return WorkerLoop()


class BalancedServer:
    """Accepts on the shared socket, one connection per turn of the loop, when this worker
    has no more connections than the least busy other one. What uvicorn needs of a server
    is close() and wait_closed()."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        protocol_factory: Any,
        sock: socket.socket,
        backlog: int,
        board: ConnectionBoard,
    ) -> None:
        self._loop = loop
        self._protocol_factory = protocol_factory
        self._sock = sock
        self._fd = sock.fileno()
        self._board = board
        self._open = 0  # connections accepted and not yet lost (or failed to start)
        self._deferred_since: float | None = None
        self._last_look = 0.0
        self._starting: set[asyncio.Task[None]] = set()
        self._closed = False
        sock.setblocking(False)
        sock.listen(backlog)  # uvicorn binds the socket; the server makes it listen
        loop.add_reader(self._fd, self._on_readable)

    @property
    def open_connections(self) -> int:
        return self._open

    def _on_readable(self) -> None:
        if not self._my_turn():
            self._pause(_RECHECK)
            return
        try:
            connection, _ = self._sock.accept()
        except (BlockingIOError, InterruptedError, ConnectionAbortedError):
            self._deferred_since = None  # another worker took it, or the client gave up
            return
        except OSError as exc:
            # Out of descriptors or memory, most likely: accept() keeps failing until
            # connections close while the socket stays readable; pause, don't spin.
            log.warning("accept.failed", error=str(exc), retry_in_s=_RETRY_AFTER)
            self._pause(_RETRY_AFTER)
            return
        self._deferred_since = None
        self._count(+1)
        # One connection per callback: the loop runs what else is ready, and the other
        # workers get their look, before this worker takes the next.
        task = self._loop.create_task(self._start(connection))
        self._starting.add(task)
        task.add_done_callback(self._starting.discard)

    def _my_turn(self) -> bool:
        fewest = self._board.fewest_elsewhere()
        if fewest is None or self._open <= fewest:
            return True
        # Not loop.time(): libuv caches it per iteration, in whole milliseconds, which is
        # the size of the waits measured here.
        now = time.monotonic()
        # A wait that ended because another worker took the connection (the socket was not
        # readable for a while) does not count for the next connection.
        if self._deferred_since is None or now - self._last_look > MAX_DEFER:
            self._deferred_since = now
        self._last_look = now
        limit = min(DEFER_LIMIT * (self._open - fewest), MAX_DEFER)
        return now - self._deferred_since >= limit

    async def _start(self, connection: socket.socket) -> None:
        try:
            await self._loop.connect_accepted_socket(self._counting_protocol, connection)
        except OSError:
            connection.close()  # the client left before its transport was made
            self._count(-1)

    def _counting_protocol(self) -> asyncio.BaseProtocol:
        protocol: asyncio.BaseProtocol = self._protocol_factory()
        lost = protocol.connection_lost

        def connection_lost(exc: Exception | None) -> None:
            self._count(-1)
            lost(exc)

        protocol.connection_lost = connection_lost  # type: ignore[method-assign]
        return protocol

    def _count(self, change: int) -> None:
        self._open += change
        if not self._closed:
            self._board.publish(self._open)

    def _pause(self, seconds: float) -> None:
        self._loop.remove_reader(self._fd)
        self._loop.call_later(seconds, self._resume)

    def _resume(self) -> None:
        if not self._closed:
            self._loop.add_reader(self._fd, self._on_readable)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        with contextlib.suppress(ValueError, OSError):
            self._loop.remove_reader(self._fd)
        self._board.close()

    async def wait_closed(self) -> None:
        return None
