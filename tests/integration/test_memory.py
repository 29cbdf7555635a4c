"""Uploads and downloads stream: the server's memory does not grow with the file size."""

from __future__ import annotations

import hashlib
import os
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.server import RunningServer, run_server

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads /proc/<pid>"),
]

MIB = 1024 * 1024
CHUNK = MIB
SAMPLE_SECONDS = 0.02


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"no VmRSS for pid {pid}")


class RssSampler:
    """Samples a process's resident set size every 20 ms in a thread; keeps the peak."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.baseline = rss_bytes(pid)
        self.peak = self.baseline
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rss-sampler")

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, rss_bytes(self.pid))
            self.samples += 1
            self._stop.wait(SAMPLE_SECONDS)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, rss_bytes(self.pid))

    @property
    def growth(self) -> int:
        return self.peak - self.baseline


def write_file(path: Path, size: int) -> str:
    """`size` bytes of content unique to this file; returns its SHA-256."""
    digest = hashlib.sha256()
    block = os.urandom(CHUNK)
    with open(path, "wb") as handle:
        for index in range(size // CHUNK):
            chunk = index.to_bytes(8, "big") + block[8:]
            digest.update(chunk)
            handle.write(chunk)
    return digest.hexdigest()


def file_chunks(path: Path) -> Iterator[bytes]:
    with open(path, "rb") as handle:
        while chunk := handle.read(CHUNK):
            yield chunk


@dataclass
class Transfer:
    upload_growth: int
    download_growth: int
    samples: int
    seconds: float

    @property
    def growth(self) -> int:
        return max(self.upload_growth, self.download_growth)


def round_trip(http: httpx.Client, server: RunningServer, path: Path, sha256: str) -> Transfer:
    """Upload path as a raw body, then download it to nowhere, sampling the server's RSS."""
    size = path.stat().st_size
    started = time.monotonic()
    with RssSampler(server.pid) as up:
        response = http.post(
            "/v1/assets",
            params={"filename": "big.bin"},
            content=file_chunks(path),
            headers={"Content-Type": "application/octet-stream", "Content-Length": str(size)},
        )
    assert response.status_code == 201, response.text
    asset = response.json()
    assert (asset["sizeBytes"], asset["sha256"]) == (size, sha256)

    received = hashlib.sha256()
    length = 0
    with RssSampler(server.pid) as down:
        with http.stream("GET", f"/v1/assets/{asset['id']}/content") as stream:
            assert stream.status_code == 200
            for chunk in stream.iter_raw(CHUNK):
                received.update(chunk)
                length += len(chunk)
    assert (length, received.hexdigest()) == (size, sha256)
    return Transfer(up.growth, down.growth, up.samples + down.samples, time.monotonic() - started)


def test_memory_stays_flat_as_files_grow(
    tmp_path: Path, server_database: str | None, capsys: pytest.CaptureFixture[str]
) -> None:
    files = tmp_path / "files"
    files.mkdir()
    with (
        run_server(tmp_path / "data", database_url=server_database) as server,
        httpx.Client(base_url=server.url, headers=server.headers, timeout=300) as http,
    ):
        warm = files / "warm.bin"
        round_trip(http, server, warm, write_file(warm, 4 * MIB))  # first-request costs
        warm.unlink()

        results: dict[int, Transfer] = {}
        for size_mib in (64, 512):
            path = files / f"{size_mib}.bin"
            sha256 = write_file(path, size_mib * MIB)
            results[size_mib] = round_trip(http, server, path, sha256)
            path.unlink()
            # The stored copy is not needed either: keep the disk use to one big file.
            for blob in (tmp_path / "data" / "blobs").rglob("*"):
                if blob.is_file() and blob.stat().st_size >= 64 * MIB:
                    blob.unlink()

    small, big = results[64], results[512]
    with capsys.disabled():
        for size_mib, transfer in results.items():
            print(
                f"\n{size_mib} MiB: upload +{transfer.upload_growth / MIB:.1f} MiB, "
                f"download +{transfer.download_growth / MIB:.1f} MiB RSS, "
                f"{transfer.samples} samples, {transfer.seconds:.1f}s",
                end="",
            )
    assert big.samples > 50
    assert big.growth < 64 * MIB
    assert big.growth <= small.growth + 16 * MIB
