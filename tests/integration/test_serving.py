"""`serve --workers N` spreads connections over the workers (assetd.serving)."""

from __future__ import annotations

import asyncio
import socket
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from assetd import serving
from assetd.serving import BalancedServer, ConnectionBoard, WorkerLoop
from tests.server import run_server

API_KEY = "assetd_servingtest_0123456789abcdefghijklmnop"


def _in_another_process(board: str, code: str) -> str:
    """Run `code` with `b` = a ConnectionBoard on `board` in a fresh process; its output."""
    script = f"from assetd.serving import ConnectionBoard\nb = ConnectionBoard({board!r})\n{code}"
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=True
    )
    return done.stdout.strip()


class TestConnectionBoard:
    def test_workers_claim_their_own_slots_and_see_each_others_counts(self) -> None:
        with ConnectionBoard.shared(2) as path:
            mine = ConnectionBoard(path)
            assert mine.slot == 0
            assert mine.fewest_elsewhere() is None  # nobody else yet
            mine.publish(3)
            # A worker that dies gives its slot back: the next one to start takes it.
            assert _in_another_process(path, "print(b.slot, b.fewest_elsewhere())") == "1 3"
            assert _in_another_process(path, "print(b.slot)") == "1"
            mine.close()
            # Slot 0 is free again; slot 1 still shows the 0 its last worker left behind.
            assert _in_another_process(path, "print(b.slot, b.fewest_elsewhere())") == "0 0"

    def test_a_worker_past_the_board_size_cannot_start(self) -> None:
        with ConnectionBoard.shared(1) as path:
            mine = ConnectionBoard(path)
            with pytest.raises(subprocess.CalledProcessError) as failed:
                _in_another_process(path, "pass")
            assert "every worker slot" in failed.value.stderr
            mine.close()

    def test_a_stale_count_left_by_a_crash_is_overwritten_by_the_next_worker(self) -> None:
        with ConnectionBoard.shared(2) as path:
            mine = ConnectionBoard(path)
            _in_another_process(path, "b.publish(9)\nimport os\nos._exit(0)")  # no close()
            assert mine.fewest_elsewhere() == 9
            # The replacement takes the slot and publishes its own count (0; it exits
            # without closing too, so the 0 stays).
            assert _in_another_process(path, "print(b.slot)") == "1"
            assert mine.fewest_elsewhere() == 0
            mine.close()

    def test_the_file_is_removed_afterwards(self) -> None:
        with ConnectionBoard.shared(2) as path:
            assert Path(path).exists()
        assert not Path(path).exists()


class _Recorder(asyncio.Protocol):
    made: list[float]

    def __init__(self, made: list[float]) -> None:
        self.made = made

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.made.append(time.monotonic())


def _listening() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    return sock


class TestBalancedServer:
    def test_a_busier_worker_lets_a_connection_wait_then_takes_it(self) -> None:
        async def scenario(path: str) -> tuple[list[float], list[float], int]:
            loop = asyncio.get_running_loop()
            made: list[float] = []
            sock = _listening()
            server = await loop.create_server(lambda: _Recorder(made), sock=sock)
            assert isinstance(server, BalancedServer)
            port = sock.getsockname()[1]
            connected = []
            clients = []
            for _ in range(2):
                clients.append(socket.create_connection(("127.0.0.1", port)))
                connected.append(time.monotonic())
                while len(made) < len(clients):
                    await asyncio.sleep(0.0005)
            count = server.open_connections
            for client in clients:
                client.close()
            for _ in range(200):
                if server.open_connections == 0:
                    break
                await asyncio.sleep(0.005)
            closed = server.open_connections
            server.close()
            await server.wait_closed()
            sock.close()
            assert count == 2
            return connected, made, closed

        with ConnectionBoard.shared(2) as path:
            # Slot 1: a worker with no connections that never accepts (it is busy, or it
            # died without closing the board, leaving its 0). The server gets slot 0.
            holder = ConnectionBoard(path)
            assert _in_another_process(path, "print(b.slot)") == "1"
            holder.close()
            loop = WorkerLoop()
            try:
                with pytest.MonkeyPatch.context() as patch:
                    patch.setenv(serving.BOARD_ENV, path)
                    connected, made, closed = loop.run_until_complete(scenario(path))
            finally:
                loop.close()
        # The first connection: no worker had fewer, so it was taken. The second: the other
        # worker had fewer (0 < 1) and was left DEFER_LIMIT to take it, then this one did.
        assert len(made) == 2
        assert made[1] - connected[1] >= serving.DEFER_LIMIT * 0.9
        assert closed == 0  # lost connections are counted down

    def test_without_a_board_uvloop_serves_as_usual(self) -> None:
        async def scenario() -> object:
            loop = asyncio.get_running_loop()
            sock = _listening()
            server = await loop.create_server(asyncio.Protocol, sock=sock)
            server.close()
            return server

        loop = WorkerLoop()
        try:
            with pytest.MonkeyPatch.context() as patch:
                patch.delenv(serving.BOARD_ENV, raising=False)
                server = loop.run_until_complete(scenario())
        finally:
            loop.close()
        assert not isinstance(server, BalancedServer)


def _owner(client: socket.socket, server_port: int, pids: list[int]) -> int:
    """The pid of the process holding the server end of the client's connection."""
    client_port = client.getsockname()[1]
    wanted = f"0100007F:{server_port:04X} 0100007F:{client_port:04X}"
    inode = None
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if f"{fields[1]} {fields[2]}" == wanted:
            inode = fields[9]
    assert inode is not None, "the server's end of the connection is not in /proc/net/tcp"
    for pid in pids:
        for fd in Path(f"/proc/{pid}/fd").iterdir():
            try:
                if fd.readlink().name == f"socket:[{inode}]":
                    return pid
            except OSError:
                continue
    raise AssertionError("no worker holds the connection")


def _workers(parent: int) -> list[int]:
    children = Path(f"/proc/{parent}/task/{parent}/children").read_text().split()
    return [pid for pid in map(int, children) if b"spawn_main" in _cmdline(pid)]


def _cmdline(pid: int) -> bytes:
    return Path(f"/proc/{pid}/cmdline").read_bytes()


def _burst(port: int, workers: list[int]) -> Counter[int]:
    """Open 8 connections at once, as a client's pool does, and make a request on each; which
    worker holds each connection."""
    clients = [socket.create_connection(("127.0.0.1", port)) for _ in range(8)]
    try:
        for client in clients:
            client.sendall(b"GET /healthz HTTP/1.1\r\nHost: test\r\n\r\n")
        for client in clients:
            assert client.recv(4096).startswith(b"HTTP/1.1 200")
        return Counter(_owner(client, port, workers) for client in clients)
    finally:
        for client in clients:
            client.close()


@pytest.mark.skipif(sys.platform != "linux", reason="reads /proc")
def test_a_burst_of_keep_alive_connections_is_shared_by_the_workers(tmp_path: Path) -> None:
    """Before this balancing, libuv handed most or all of such a burst to one worker."""
    with run_server(tmp_path / "data", api_key=API_KEY, workers=2) as server:
        deadline = time.monotonic() + 60
        while server.output().count("Application startup complete") < 2:
            assert time.monotonic() < deadline, server.output()
            time.sleep(0.1)
        workers = _workers(server.pid)
        assert len(workers) == 2
        port = int(server.url.rsplit(":", 1)[1])
        # A worker's first connections find it busy for a while (measured: ~0.2 s), and
        # then the other takes the rest; warm both up first.
        for _ in range(3):
            _burst(port, workers)
            time.sleep(0.2)
        splits = []
        for _ in range(3):
            # Each burst starts after the last one's connections are closed and counted down
            # on the server side, as a client pool's next burst would.
            splits.append(_burst(port, workers))
            time.sleep(0.2)
    for owners in splits:
        assert set(owners) == set(workers), splits
        assert min(owners.values()) >= 3, splits
