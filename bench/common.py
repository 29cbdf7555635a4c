"""Shared pieces of the benchmarks: servers as child processes, RSS/CPU sampling, clients, stats.

Stdlib + httpx only. Everything talks to 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import platform
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
import urllib.request
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
VENV_BIN = REPO / ".venv" / "bin"
RESULTS_DIR = REPO / "bench" / "results"
HOST = "127.0.0.1"
API_KEY = "bench-admin-key-0123456789abcdef"
TENANT = "bench"
MiB = 1024 * 1024
CLK_TCK = os.sysconf("SC_CLK_TCK")


LOG_FILE: Path | None = None  # set by the entry points: a copy of the log beside the results


def log(message: str) -> None:
    line = f"[{time.strftime('%H:%M:%S')}] {message}"
    print(line, file=sys.stderr, flush=True)
    if LOG_FILE is not None:
        with open(LOG_FILE, "a") as handle:
            handle.write(line + "\n")


def start_log(name: str) -> Path:
    global LOG_FILE
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    LOG_FILE = RESULTS_DIR / f"{name}-{datetime.now(UTC).strftime('%Y%m%dT%H%M%SZ')}.log"
    return LOG_FILE


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def percentile(values: list[float], p: float) -> float:
    """Linear-interpolated percentile (p in 0..100) of a non-empty list."""
    ordered = sorted(values)
    if len(ordered) == 1:
        return ordered[0]
    rank = (len(ordered) - 1) * p / 100
    low = int(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def latency_summary(seconds: list[float]) -> dict[str, float]:
    ms = [s * 1000 for s in seconds]
    return {
        "p50_ms": round(percentile(ms, 50), 3),
        "p95_ms": round(percentile(ms, 95), 3),
        "p99_ms": round(percentile(ms, 99), 3),
        "max_ms": round(max(ms), 3),
        "mean_ms": round(statistics.fmean(ms), 3),
    }


# -- /proc: process trees, RSS and CPU ------------------------------------------------------


def children_of(pid: int) -> list[int]:
    kids: list[int] = []
    try:
        for task in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{task}/children") as handle:
                kids.extend(int(k) for k in handle.read().split())
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        pass
    return kids


def process_tree(pid: int) -> list[int]:
    """pid and all its descendants that are alive now."""
    tree, todo = [], [pid]
    while todo:
        current = todo.pop()
        if os.path.exists(f"/proc/{current}"):
            tree.append(current)
            todo.extend(children_of(current))
    return tree


def read_status(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM in KiB (empty when the process is gone)."""
    found: dict[str, int] = {}
    try:
        with open(f"/proc/{pid}/status") as handle:
            for line in handle:
                if line.startswith(("VmRSS:", "VmHWM:")):
                    key, value = line.split(":", 1)
                    found[key] = int(value.split()[0])
    except (FileNotFoundError, ProcessLookupError):
        pass
    return found


def cpu_seconds(pids: list[int], *, main_thread_only: bool = False) -> float:
    """utime + stime of the processes (all their threads), or of their main threads only."""
    total = 0
    for pid in pids:
        path = f"/proc/{pid}/task/{pid}/stat" if main_thread_only else f"/proc/{pid}/stat"
        try:
            with open(path) as handle:
                fields = handle.read().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])  # utime, stime
        except (FileNotFoundError, ProcessLookupError):
            pass
    return total / CLK_TCK


def system_busy_seconds() -> float:
    """CPU seconds all CPUs spent busy so far (user+nice+system+irq+softirq+steal)."""
    with open("/proc/stat") as handle:
        fields = [int(x) for x in handle.readline().split()[1:]]
    user, nice, system, _idle, _iowait, irq, softirq, steal = fields[:8]
    return (user + nice + system + irq + softirq + steal) / CLK_TCK


def wait_quiet(
    ours: Callable[[], list[int]] | None = None,
    threshold_cores: float = 0.3,
    max_wait_s: float = 60.0,
) -> float:
    """Wait until the machine's other processes use < threshold cores over a 1 s window
    (other engineers' test runs share these 2 cores); returns the last foreign load seen."""
    deadline = time.monotonic() + max_wait_s
    waited = False
    while True:
        pids = ours() if ours else []
        busy0, own0, t0 = system_busy_seconds(), cpu_seconds(pids), time.monotonic()
        time.sleep(1.0)
        foreign = (system_busy_seconds() - busy0 - (cpu_seconds(pids) - own0)) / (
            time.monotonic() - t0
        )
        if foreign < threshold_cores or time.monotonic() > deadline:
            if waited or foreign >= threshold_cores:
                log(
                    f"machine load from other processes: {foreign:.2f} cores after waiting "
                    f"{max_wait_s - max(0.0, deadline - time.monotonic()):.0f} s"
                )
            return foreign
        if not waited:
            log(f"other processes use {foreign:.2f} cores; waiting for a quieter machine")
            waited = True


class Interference:
    """CPU used by other processes on the machine while a block runs, in cores; ours are the
    given server pids, this process and the children it waited for (curl)."""

    def __init__(self, pids: Callable[[], list[int]]) -> None:
        self._pids = pids
        self.foreign_cores = 0.0
        self.server_cpu_s = 0.0
        self.server_main_thread_cpu_s = 0.0

    @staticmethod
    def _own() -> float:
        me = resource.getrusage(resource.RUSAGE_SELF)
        kids = resource.getrusage(resource.RUSAGE_CHILDREN)
        return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime

    def __enter__(self) -> Interference:
        self._p = self._pids()
        self._busy, self._srv, self._me = system_busy_seconds(), cpu_seconds(self._p), self._own()
        self._main = cpu_seconds(self._p, main_thread_only=True)
        self._t = time.monotonic()
        return self

    def __exit__(self, *exc: object) -> None:
        elapsed = time.monotonic() - self._t
        self.server_cpu_s = cpu_seconds(self._p) - self._srv
        self.server_main_thread_cpu_s = cpu_seconds(self._p, main_thread_only=True) - self._main
        busy = system_busy_seconds() - self._busy
        foreign = busy - self.server_cpu_s - (self._own() - self._me)
        self.foreign_cores = round(max(0.0, foreign) / elapsed, 2) if elapsed > 0 else 0.0


def cmdline(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as handle:
            return handle.read().replace(b"\0", b" ").decode(errors="replace").strip()
    except FileNotFoundError:
        return ""


class RssSampler:
    """Samples VmRSS of a process tree every `interval` seconds in a thread.

    Reports, in MiB: the tree's total at the start (baseline), its peak and the growth, plus
    the same per process (the upload lands in one worker, so per-process growth is what the
    RSS target is about when there are several workers) and each process's VmHWM at the end.
    """

    def __init__(self, pids: Callable[[], list[int]], interval: float = 0.05) -> None:
        self._pids = pids
        self.interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self.samples = 0
        self.baseline: dict[int, int] = {}
        self.peak: dict[int, int] = {}
        self.tree_baseline = 0
        self.tree_peak = 0

    def _sample(self) -> None:
        total = 0
        for pid in self._pids():
            rss = read_status(pid).get("VmRSS")
            if rss is None:
                continue
            total += rss
            self.baseline.setdefault(pid, rss)
            self.peak[pid] = max(self.peak.get(pid, 0), rss)
        if self.samples == 0:
            self.tree_baseline = total
        self.tree_peak = max(self.tree_peak, total)
        self.samples += 1

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self._sample()

    def __enter__(self) -> RssSampler:
        self._sample()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self._sample()

    def report(self) -> dict[str, Any]:
        per_process = {
            str(pid): {
                "baseline_mib": round(self.baseline[pid] / 1024, 1),
                "peak_mib": round(self.peak[pid] / 1024, 1),
                "growth_mib": round((self.peak[pid] - self.baseline[pid]) / 1024, 1),
                "hwm_end_mib": round(read_status(pid).get("VmHWM", 0) / 1024, 1),
            }
            for pid in self.baseline
        }
        return {
            "samples": self.samples,
            "interval_s": self.interval,
            "tree_baseline_mib": round(self.tree_baseline / 1024, 1),
            "tree_peak_mib": round(self.tree_peak / 1024, 1),
            "tree_growth_mib": round((self.tree_peak - self.tree_baseline) / 1024, 1),
            "max_process_growth_mib": max(
                (p["growth_mib"] for p in per_process.values()), default=0.0
            ),
            "per_process": per_process,
        }


# -- servers ------------------------------------------------------------------------------


def wait_until_up(url: str, proc: subprocess.Popen[bytes], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode} before answering {url}")
        try:
            with urllib.request.urlopen(url, timeout=1) as response:
                if response.status < 500:
                    return
        except urllib.error.HTTPError as exc:
            if exc.code < 500:
                return
        except OSError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{url} did not answer within {timeout}s")


def stop_process(
    proc: subprocess.Popen[bytes], sig: int = signal.SIGTERM, timeout: float = 30
) -> None:
    """Stop one child we started, by its pid; then any of its leftover descendants by pid."""
    if proc.poll() is not None:
        return
    leftovers = process_tree(proc.pid)[1:]
    proc.send_signal(sig)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(10)
    for pid in leftovers:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


@dataclass
class AssetdServer:
    """`assetd serve` as a child process with a fresh (or given) data dir."""

    data_dir: Path
    workers: int = 1
    database_url: str | None = None
    port: int = field(default_factory=free_port)
    extra_env: dict[str, str] = field(default_factory=dict)
    proc: subprocess.Popen[bytes] | None = None

    @property
    def base_url(self) -> str:
        return f"http://{HOST}:{self.port}"

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update(
            ASSETD_DATA_DIR=str(self.data_dir),
            ASSETD_BOOTSTRAP_TENANT=TENANT,
            ASSETD_BOOTSTRAP_API_KEY=API_KEY,
            **self.extra_env,
        )
        if self.database_url:
            env["ASSETD_DATABASE_URL"] = self.database_url
        else:
            env.pop("ASSETD_DATABASE_URL", None)
        return env

    def start(self) -> AssetdServer:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        log_file = open(self.data_dir.parent / f"assetd-{self.data_dir.name}-{self.port}.log", "ab")
        cmd = [
            str(VENV_BIN / "assetd"),
            "serve",
            "--host",
            HOST,
            "--port",
            str(self.port),
            "--workers",
            str(self.workers),
        ]
        self.proc = subprocess.Popen(cmd, env=self.env(), stdout=log_file, stderr=subprocess.STDOUT)
        log_file.close()
        wait_until_up(f"{self.base_url}/healthz", self.proc)
        if self.workers > 1:  # /healthz answers once one worker is up; wait for them all
            deadline = time.monotonic() + 60
            while len(self.worker_pids()) < self.workers and time.monotonic() < deadline:
                time.sleep(0.2)
            time.sleep(2)  # and for each worker's lifespan startup
        return self

    def pids(self) -> list[int]:
        assert self.proc is not None
        return process_tree(self.proc.pid)

    def worker_pids(self) -> list[int]:
        """Processes that serve requests: the main one with --workers 1, else its children."""
        assert self.proc is not None
        if self.workers == 1:
            return [self.proc.pid]
        return [p for p in children_of(self.proc.pid) if "multiprocessing" in cmdline(p)]

    def stop(self) -> None:
        if self.proc is not None:
            stop_process(self.proc, signal.SIGINT)

    def __enter__(self) -> AssetdServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


# -- an HTTP/1.1 keep-alive client with as little client-side CPU as possible --------------


class RawConnection:
    """Minimal asyncio HTTP/1.1 client: one keep-alive connection, Content-Length or chunked.

    It exists because client and server share 2 cores: every microsecond the client spends
    is taken from the server. It is used beside httpx, never instead of it.
    """

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def _connect(self) -> None:
        self.reader, self.writer = await asyncio.open_connection(self.host, self.port)

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            with contextlib.suppress(Exception):
                await self.writer.wait_closed()
            self.reader = self.writer = None

    async def request(
        self, method: str, target: str, headers: bytes = b"", body: bytes = b""
    ) -> tuple[int, bytes]:
        if self.writer is None:
            await self._connect()
        assert self.reader is not None
        assert self.writer is not None
        head = (
            f"{method} {target} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n"
            f"Content-Length: {len(body)}\r\n".encode()
            if body or method in ("POST", "PUT")
            else f"{method} {target} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n".encode()
        )
        self.writer.write(head + headers + b"\r\n" + body)
        block = await self.reader.readuntil(b"\r\n\r\n")
        status = int(block[9:12])
        lower = block.lower()
        close = b"\r\nconnection: close" in lower
        payload: bytes
        at = lower.find(b"\r\ncontent-length:")
        if at >= 0:
            end = lower.index(b"\r\n", at + 2)
            length = int(lower[at + 17 : end])
            payload = await self.reader.readexactly(length) if length else b""
        elif b"\r\ntransfer-encoding: chunked" in lower:
            parts = []
            while True:
                size = int((await self.reader.readuntil(b"\r\n")).split(b";")[0], 16)
                if size == 0:
                    await self.reader.readuntil(b"\r\n")
                    break
                parts.append(await self.reader.readexactly(size))
                await self.reader.readexactly(2)
            payload = b"".join(parts)
        elif status in (204, 304) or 100 <= status < 200 or method == "HEAD":
            payload = b""
        else:
            payload = await self.reader.read()
            close = True
        if close:
            await self.close()
        return status, payload


# -- fixed-count concurrent workloads ------------------------------------------------------


@dataclass
class WorkloadResult:
    requests: int
    seconds: float
    latencies: list[float]
    statuses: Counter[int]
    server_cpu_s: float
    client_cpu_s: float
    server_main_thread_cpu_s: float = 0.0
    system_busy_s: float = 0.0

    def summary(self) -> dict[str, Any]:
        ok = sum(n for s, n in self.statuses.items() if 200 <= s < 300)
        return {
            "requests": self.requests,
            "ok": ok,
            "errors": self.requests - ok,
            "statuses": {str(k): v for k, v in sorted(self.statuses.items())},
            "seconds": round(self.seconds, 3),
            "per_s": round(self.requests / self.seconds, 1),
            **latency_summary(self.latencies),
            "server_cpu_s": round(self.server_cpu_s, 3),
            "server_cpu_ms_per_req": round(self.server_cpu_s / self.requests * 1000, 3),
            # The event loop's thread; the rest is SQLite/aiosqlite and AnyIO worker threads.
            "server_main_thread_cpu_ms_per_req": round(
                self.server_main_thread_cpu_s / self.requests * 1000, 3
            ),
            "client_cpu_s": round(self.client_cpu_s, 3),
            "client_cpu_ms_per_req": round(self.client_cpu_s / self.requests * 1000, 3),
            # CPU used meanwhile by everything else on the machine (other people's jobs).
            "foreign_cpu_cores": round(
                max(0.0, self.system_busy_s - self.server_cpu_s - self.client_cpu_s) / self.seconds,
                2,
            ),
        }


def _own_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def run_fixed_count(
    count: int,
    concurrency: int,
    call: Callable[[int, int], Awaitable[int]],
    server_pids: Callable[[], list[int]],
) -> WorkloadResult:
    """`count` calls, `concurrency` at a time; call(worker, i) returns the HTTP status."""
    numbers = itertools.count()
    latencies: list[float] = []
    statuses: Counter[int] = Counter()

    async def worker(w: int) -> None:
        while (i := next(numbers)) < count:
            started = time.perf_counter()
            try:
                status = await call(w, i)
            except Exception as exc:  # a failed request is a result, not a crash
                log(f"request {i} failed: {type(exc).__name__}: {exc}")
                status = 599
            latencies.append(time.perf_counter() - started)
            statuses[status] += 1

    pids = server_pids()
    cpu0, own0 = cpu_seconds(pids), _own_cpu()
    main0 = cpu_seconds(pids, main_thread_only=True)
    busy0 = system_busy_seconds()
    started = time.perf_counter()
    await asyncio.gather(*(worker(w) for w in range(concurrency)))
    elapsed = time.perf_counter() - started
    return WorkloadResult(
        count,
        elapsed,
        latencies,
        statuses,
        cpu_seconds(pids) - cpu0,
        _own_cpu() - own0,
        cpu_seconds(pids, main_thread_only=True) - main0,
        system_busy_seconds() - busy0,
    )


# -- run metadata ---------------------------------------------------------------------------


def _first_line(cmd: list[str]) -> str:
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired):
        return ""
    text = (done.stdout or done.stderr).strip()
    return text.splitlines()[0] if text else ""


def machine_info() -> dict[str, Any]:
    cpu = ""
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as handle:
        for line in handle:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    mem_kib = 0
    with contextlib.suppress(OSError), open("/proc/meminfo") as handle:
        mem_kib = int(handle.readline().split()[1])
    osname = ""
    with contextlib.suppress(OSError), open("/etc/os-release") as handle:
        for line in handle:
            if line.startswith("PRETTY_NAME="):
                osname = line.split("=", 1)[1].strip().strip('"')
    commit = _first_line(["git", "-C", str(REPO), "rev-parse", "HEAD"])
    dirty = bool(_first_line(["git", "-C", str(REPO), "status", "--porcelain", "--", "src"]))
    return {
        "date_utc": datetime.now(UTC).isoformat(timespec="seconds"),
        "cpu": cpu,
        "cpus": os.cpu_count(),
        "mem_gib": round(mem_kib / 1024 / 1024, 1),
        "kernel": platform.release(),
        "os": osname,
        "python": platform.python_version(),
        "nginx": _first_line([shutil.which("nginx") or "nginx", "-v"]),
        "curl": _first_line(["curl", "--version"]),
        "postgresql": _first_line(
            ["psql", "-h", HOST, "-U", "postgres", "-tAc", "show server_version"]
        ),
        "git_commit": commit,
        "src_modified_vs_commit": dirty,
    }


def write_results(name: str, data: dict[str, Any], markdown: str) -> tuple[Path, Path]:
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    json_path = RESULTS_DIR / f"{name}-{stamp}.json"
    md_path = RESULTS_DIR / f"{name}-{stamp}.md"
    json_path.write_text(json.dumps(data, indent=2, default=str) + "\n")
    md_path.write_text(markdown)
    return json_path, md_path


def chunks_of_file(path: Path, size: int = MiB) -> Iterator[bytes]:
    with open(path, "rb") as handle:
        while chunk := handle.read(size):
            yield chunk


class PySpy:
    """`py-spy record` on one process while a block runs (raw stacks, GIL holders only)."""

    def __init__(self, pid: int, out: Path) -> None:
        self.pid, self.out = pid, out
        self.proc: subprocess.Popen[bytes] | None = None

    @staticmethod
    def binary() -> str | None:
        # The venv's (uv pip install py-spy; `uv sync` removes it again), or one on PATH.
        for found in (str(VENV_BIN / "py-spy"), shutil.which("py-spy")):
            if found and os.path.exists(found):
                return found
        return None

    def __enter__(self) -> PySpy:
        binary = self.binary()
        assert binary is not None
        self.proc = subprocess.Popen(
            [
                binary,
                "record",
                "--pid",
                str(self.pid),
                "--format",
                "raw",
                "--rate",
                "250",
                "--nonblocking",
                "--gil",
                "--threads",
                "--full-filenames",
                "--output",
                str(self.out),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        time.sleep(1.0)
        return self

    def __exit__(self, *exc: object) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGINT)
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
