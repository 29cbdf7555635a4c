"""Thumbnails (issue 4): 3000×2000 JPEGs → 256 px wide JPEGs, beside thumbor measured on the
same images in the same run.

    .venv/bin/python -m bench.thumbnails                         # 100 images, 3 runs (~3-5 min)
    .venv/bin/python -m bench.thumbnails --images 20 --runs 1    # smoke run (~1 min)

Target: thumbnails/s ≥ 2× thumbor's. Peak worker RSS is reported beside thumbor's (info).

Inputs: `--images` distinct 3000×2000 JPEGs (quality 85, 4:2:0, 1.2-2.5 MB: colour blobs, a
gradient and fine noise, a different seed each) plus `--warmup` more for the warm-ups, made
once with pyvips (or reused from `--images-dir`). Every target makes the same thumbnail of the
same files: 256 px wide, height by the aspect ratio (171), JPEG quality 80 (thumbor's default
QUALITY and assetd's default q).

Targets, in each run (the order rotates from run to run):

- **thumbor** (the reference), from PyPI (`--thumbor-version`, default 7.7.7) in its own venv
  (`--thumbor-venv`, made with `python3 -m venv` + pip when missing; never the project's venv).
  Its HTTP server on 127.0.0.1 with `--processes` = the core count (`--thumbor-processes`, a
  list: each value is a column), the PIL engine, the file loader rooted at the images,
  `ALLOW_UNSAFE_URL`, no storage (`thumbor.storages.no_storage`) and no result storage, so
  every request loads and resizes; `GET /unsafe/256x0/<name>.jpg`.
- **assetd engine**: `assetd.renditions.imaging.transform(path, "image/jpeg", 256, None,
  "inside", "jpeg", 80)`, the function the worker and the transform endpoint call, in
  `--processes` worker processes (default: the core count), each thumbnailing its share
  (`i::processes`) of the files; no HTTP, no storage. Each worker is a `python -c` process
  that imports only that module (so its RSS is the engine's, not this script's), configures
  libvips as the worker does, makes one warm-up thumbnail and resets its VmHWM; then all
  start together.
- **assetd HTTP**: a real `assetd serve --workers N` (default: the core count; default
  settings except `ASSETD_JOBS_IN_PROCESS=false`, so the upload's preset jobs are queued but
  not run while we measure), fresh in each run. The images are uploaded (untimed), a signed
  URL is fetched for each with `POST /v1/assets/{id}/transform-url {"w": 256, "fmt": "jpeg",
  "q": 80}` (untimed), then the signed `GET /v1/files/bench/{id}/transform?...` URLs are
  timed. Each asset is new in its run, so each timed GET renders (and stores the result as a
  rendition: that is the endpoint's path). As info, the same URLs are then fetched a second
  time (cache hits).

HTTP client, the same for both servers: httpx, `--concurrency` requests at a time (default
2 × cores), a new connection per request (with keep-alive, 2× cores connections can land on one
of the server's processes and leave another idle for the whole run); the warm-up images are
requested first, untimed. Every response is checked: 200, a JPEG of 256×171.

Ceiling, once per invocation: the CPU one thumbnail costs in one process without HTTP
(process_time, median over 10 images × 3): assetd's `imaging.transform` with libvips (and, for
comparison, libvips' own `Image.thumbnail` from the file + the same JPEG save, which decodes at
1/4), and thumbor's PIL engine steps with Pillow (open, `draft`, LANCZOS resize, save with
optimize and progressive) in thumbor's venv; and of that, the JPEG decode at 1/8 scale alone
(libjpeg's DCT scaling, which both use: the entropy decode of the whole file plus each block's
DC), which bounds what either can do per core. The report turns that floor into the most
thumbnails/s the cores could make if a thumbnail cost nothing but that decode, beside 2× the
thumbor rate measured.

Figures: thumbnails/s = images / wall time from the first request (or the workers' start) to
the last answer, median over `--runs`; server CPU per thumbnail (all the server's processes,
from /proc), and each process's share; peak RSS: VmHWM of each server/worker process, reset
(`echo 5 > /proc/PID/clear_refs`) just before the timed part, so it is the peak during it; the
worst process and the sum over the tree (VmRSS sampled every 50 ms). Before each measurement
the script waits (up to 60 s) for other processes to use < 0.3 cores and records their load.

Output: bench/results/thumbnails-<UTC>.{json,md,log} (gitignored); the table is also printed.
Only 127.0.0.1 is contacted (and PyPI by pip when the thumbor venv is made).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from statistics import median
from typing import Any

import httpx

from bench import report
from bench.common import (
    API_KEY,
    HOST,
    TENANT,
    AssetdServer,
    Interference,
    RssSampler,
    children_of,
    cmdline,
    cpu_seconds,
    free_port,
    latency_summary,
    log,
    machine_info,
    process_tree,
    run_fixed_count,
    start_log,
    stop_process,
    wait_until_up,
    write_results,
)
from bench.run import settle
from bench.uploads import peak_rss, reset_peak_rss

SOURCE_WIDTH, SOURCE_HEIGHT = 3000, 2000
SOURCE_QUALITY = 85
WIDTH = 256
HEIGHT = round(SOURCE_HEIGHT * WIDTH / SOURCE_WIDTH)  # 171: both libraries round
QUALITY = 80  # thumbor's default QUALITY, assetd's default q
TARGET_RATIO = 2.0
THUMBOR_VERSION = "7.7.7"
AUTH = {"Authorization": f"Bearer {API_KEY}"}
MiB = 1024 * 1024


def core_count() -> int:
    return len(os.sched_getaffinity(0))


# -- inputs ---------------------------------------------------------------------------------


def make_image(job: tuple[int, str]) -> int:
    """One 3000×2000 JPEG (Q85) from a seed: colour blobs + a gradient + fine noise."""
    import pyvips

    seed, path = job
    rnd = random.Random(seed)
    w, h = SOURCE_WIDTH, SOURCE_HEIGHT
    bands = []
    for b in range(3):
        noise = pyvips.Image.gaussnoise(w // 16, h // 16, sigma=1, mean=0, seed=seed * 8 + b)
        noise = noise.gaussblur(2)
        low, high = noise.min(), noise.max()
        bands.append((noise - low) * (255 / (high - low)))
    blobs = bands[0].bandjoin(bands[1:]).resize(16, kernel="cubic")
    xy = pyvips.Image.xyz(w, h)
    start = [rnd.uniform(0, 255) for _ in range(3)]
    end = [rnd.uniform(0, 255) for _ in range(3)]
    t = (xy[0] * (rnd.uniform(0.3, 1) / w) + xy[1] * (rnd.uniform(0.3, 1) / h)) / 2
    gradient = t * [e - s for s, e in zip(start, end, strict=True)] + start
    # The fine noise's strength sets the file size: sigma 6 → ~1.2 MB, 20 → ~2.5 MB.
    sigma = rnd.uniform(6, 20)
    fine = pyvips.Image.gaussnoise(w, h, sigma=sigma, mean=0, seed=seed * 8 + 5)
    image = (blobs * 0.5 + gradient * 0.5 + fine).cast("uchar").copy(interpretation="srgb")
    tmp = f"{path}.tmp.jpg"
    image.jpegsave(tmp, Q=SOURCE_QUALITY, keep="none")
    os.replace(tmp, path)
    return os.path.getsize(path)


def make_inputs(folder: Path, count: int, warmup: int, procs: int) -> dict[str, Any]:
    """img-NNN.jpg (measured) and warm-NNN.jpg (warm-ups); existing files are kept (the seed
    fixes the content)."""
    folder.mkdir(parents=True, exist_ok=True)
    names = [f"img-{i:03d}.jpg" for i in range(count)]
    warm = [f"warm-{i:03d}.jpg" for i in range(warmup)]
    seeds = {name: i for i, name in enumerate(names)}
    seeds.update({name: 100_000 + i for i, name in enumerate(warm)})
    todo = [(seeds[n], str(folder / n)) for n in names + warm if not (folder / n).exists()]
    if todo:
        log(f"generating {len(todo)} JPEGs of {SOURCE_WIDTH}x{SOURCE_HEIGHT} in {folder}")
        started = time.perf_counter()
        with multiprocessing.get_context("spawn").Pool(procs) as pool:
            pool.map(make_image, todo)
        log(f"generated in {time.perf_counter() - started:.1f} s")
    os.sync()
    sizes = sorted((folder / n).stat().st_size for n in names)
    return {
        "dir": str(folder),
        "names": names,
        "warmup_names": warm,
        "count": count,
        "size_mb_min": round(sizes[0] / 1e6, 2),
        "size_mb_median": round(median(sizes) / 1e6, 2),
        "size_mb_max": round(sizes[-1] / 1e6, 2),
        "total_mb": round(sum(sizes) / 1e6, 1),
    }


# -- thumbor --------------------------------------------------------------------------------


def ensure_thumbor(venv: Path, version: str, python: str) -> dict[str, Any]:
    """thumbor==version in its own venv (made with `python -m venv` + pip when missing)."""
    binary = venv / "bin" / "thumbor"

    def installed() -> str:
        if not binary.exists():
            return ""
        done = subprocess.run(
            [str(binary), "--version"], capture_output=True, text=True, check=False
        )
        return (done.stdout or done.stderr).strip()

    if version not in installed():
        log(f"installing thumbor=={version} into {venv} (python -m venv + pip)")
        if not (venv / "bin" / "python").exists():
            subprocess.run([python, "-m", "venv", str(venv)], check=True)
        subprocess.run(
            [str(venv / "bin" / "pip"), "install", "-q", f"thumbor=={version}"], check=True
        )
        if version not in installed():
            raise RuntimeError(f"{binary} --version says {installed()!r}, not {version}")
    freeze = subprocess.run(
        [str(venv / "bin" / "pip"), "freeze"], capture_output=True, text=True, check=True
    ).stdout.split()
    py = subprocess.run(
        [str(venv / "bin" / "python"), "--version"], capture_output=True, text=True, check=True
    ).stdout.strip()
    return {"venv": str(venv), "version": installed(), "python": py, "packages": freeze}


THUMBOR_CONF = """\
# Written by bench/thumbnails.py: every request loads the file and resizes it.
LOADER = 'thumbor.loaders.file_loader'
FILE_LOADER_ROOT_PATH = {root!r}
ALLOW_UNSAFE_URL = True
SECURITY_KEY = 'assetd-bench'
STORAGE = 'thumbor.storages.no_storage'
RESULT_STORAGE = None
ENGINE = 'thumbor.engines.pil'
QUALITY = {quality}
ENGINE_THREADPOOL_SIZE = 0
MAX_WAIT_SECONDS_BEFORE_SERVER_SHUTDOWN = 0
MAX_WAIT_SECONDS_BEFORE_IO_SHUTDOWN = 0
"""


@dataclass
class ThumborServer:
    """`thumbor` as a child process; with --processes > 1 it forks that many workers."""

    venv: Path
    images: Path
    workdir: Path
    processes: int
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None

    @property
    def base_url(self) -> str:
        return f"http://{HOST}:{self.port}"

    @property
    def conf(self) -> Path:
        return self.workdir / f"thumbor-{self.port}.conf"

    def start(self) -> ThumborServer:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.conf.write_text(THUMBOR_CONF.format(root=str(self.images), quality=QUALITY))
        cmd = [
            str(self.venv / "bin" / "thumbor"),
            "--ip",
            HOST,
            "--port",
            str(self.port),
            "--conf",
            str(self.conf),
            "--processes",
            str(self.processes),
            "--log-level",
            "warning",
        ]
        log_file = open(self.workdir / f"thumbor-{self.port}.log", "ab")
        self.proc = subprocess.Popen(
            cmd, cwd=self.workdir, stdout=log_file, stderr=subprocess.STDOUT
        )
        log_file.close()
        wait_until_up(f"{self.base_url}/healthcheck", self.proc)
        deadline = time.monotonic() + 30
        while len(self.worker_pids()) < self.processes and time.monotonic() < deadline:
            time.sleep(0.2)
        if len(self.worker_pids()) != self.processes:
            raise RuntimeError(f"thumbor has {self.worker_pids()} workers, not {self.processes}")
        return self

    def pids(self) -> list[int]:
        assert self.proc is not None
        return process_tree(self.proc.pid)

    def worker_pids(self) -> list[int]:
        """The processes that serve requests: the forked children, or the one process."""
        assert self.proc is not None
        return children_of(self.proc.pid) if self.processes > 1 else [self.proc.pid]

    def url(self, name: str) -> str:
        return f"{self.base_url}/unsafe/{WIDTH}x0/{name}"

    def stop(self) -> None:
        if self.proc is not None:
            stop_process(self.proc)

    def __enter__(self) -> ThumborServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


# -- the HTTP measurement (thumbor and assetd alike) ----------------------------------------


def jpeg_size(data: bytes) -> tuple[int, int] | None:
    import pyvips

    try:
        image = pyvips.Image.new_from_buffer(data, "", access="sequential")
    except pyvips.Error:
        return None
    if image.get("vips-loader") != "jpegload_buffer":
        return None
    return int(image.width), int(image.height)


def check_outputs(bodies: list[bytes | None]) -> dict[str, Any]:
    """Every body a 256×171 JPEG? Sizes (bytes) for comparing the encoders' output."""
    dims: dict[str, int] = {}
    sizes = []
    for body in bodies:
        found = jpeg_size(body) if body else None
        key = f"{found[0]}x{found[1]}" if found else "not a JPEG"
        dims[key] = dims.get(key, 0) + 1
        if body:
            sizes.append(len(body))
    return {
        "dims": dims,
        "ok": dims.get(f"{WIDTH}x{HEIGHT}", 0) == len(bodies),
        "bytes_median": int(median(sizes)) if sizes else None,
    }


async def fetch_all(
    urls: list[str], concurrency: int, pids: Callable[[], list[int]]
) -> tuple[dict[str, Any], list[bytes | None]]:
    """GET every URL, `concurrency` at a time, a new connection per request."""
    bodies: list[bytes | None] = [None] * len(urls)
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=0)
    async with httpx.AsyncClient(limits=limits, timeout=120) as client:

        async def call(w: int, i: int) -> int:
            response = await client.get(urls[i])
            if response.status_code == 200:
                if response.headers.get("content-type", "").split(";")[0] != "image/jpeg":
                    return 598
                bodies[i] = response.content
            return response.status_code

        result = await run_fixed_count(len(urls), concurrency, call, pids)
    return result.summary(), bodies


def per_process_cpu(pids: list[int]) -> dict[int, float]:
    return {pid: cpu_seconds([pid]) for pid in pids}


def measure_http(
    name: str,
    urls: list[str],
    concurrency: int,
    pids: Callable[[], list[int]],
    worker_pids: Callable[[], list[int]],
) -> dict[str, Any]:
    """settle, reset VmHWM, then the timed GETs with RSS sampled and CPU per process."""
    settle(pids)
    before = reset_peak_rss(pids())
    cpu0 = per_process_cpu(pids())
    with RssSampler(pids) as sampler:
        summary, bodies = asyncio.run(fetch_all(urls, concurrency, pids))
    cpu1 = per_process_cpu(pids())
    rss = peak_rss(before)
    workers = {str(p) for p in worker_pids() if "resource_tracker" not in cmdline(p)}
    hwm = [p["hwm_mib"] for pid, p in rss["per_process"].items() if pid in workers]
    spent = {str(p): round(cpu1[p] - cpu0.get(p, 0.0), 2) for p in cpu1}
    total = sum(spent.values()) or 1.0
    result = {
        "target": name,
        "per_s": summary["per_s"],
        "seconds": summary["seconds"],
        "errors": summary["errors"],
        "statuses": summary["statuses"],
        "p50_ms": summary["p50_ms"],
        "p95_ms": summary["p95_ms"],
        "server_cpu_ms_per_thumb": summary["server_cpu_ms_per_req"],
        "client_cpu_ms_per_req": summary["client_cpu_ms_per_req"],
        "foreign_cpu_cores": summary["foreign_cpu_cores"],
        # Share of the server's CPU by process: the supervisor's, and how evenly the requests
        # spread over the workers.
        "cpu_share_by_process": {p: round(s / total, 2) for p, s in spent.items() if s > 0},
        "peak_rss_worker_mib": max(hwm, default=0.0),
        "rss_before_worker_mib": max(
            (p["rss_before_mib"] for pid, p in rss["per_process"].items() if pid in workers),
            default=0.0,
        ),
        "peak_rss_tree_sampled_mib": sampler.report()["tree_peak_mib"],
        "peak_rss_tree_hwm_sum_mib": round(
            sum(p["hwm_mib"] for p in rss["per_process"].values()), 1
        ),
        "rss": rss,
        "outputs": check_outputs(bodies),
        "summary": summary,
    }
    return result


# -- assetd over HTTP -----------------------------------------------------------------------


def upload_and_sign(server: AssetdServer, folder: Path, names: list[str]) -> list[str]:
    """Upload each file as a new asset and return the signed transform URL of each."""
    urls = []
    with httpx.Client(base_url=server.base_url, headers=AUTH, timeout=120) as client:
        for name in names:
            created = client.post(
                f"/v1/assets?filename={name}",
                content=(folder / name).read_bytes(),
                headers={"Content-Type": "application/octet-stream"},
            )
            if created.status_code != 201:
                raise RuntimeError(f"upload of {name}: {created.status_code} {created.text[:300]}")
            asset_id = created.json()["id"]
            signed = client.post(
                f"/v1/assets/{asset_id}/transform-url",
                json={"w": WIDTH, "fit": "inside", "fmt": "jpeg", "q": QUALITY},
            )
            if signed.status_code != 200:
                raise RuntimeError(
                    f"transform-url of {name}: {signed.status_code} {signed.text[:300]}"
                )
            url = signed.json()["url"]
            if not url.startswith(f"{server.base_url}/v1/files/{TENANT}/{asset_id}/transform?"):
                raise RuntimeError(f"unexpected transform URL {url}")
            urls.append(url)
    return urls


def run_assetd_http(
    args: argparse.Namespace, inputs: dict[str, Any], root: Path, n: int
) -> dict[str, Any]:
    folder = Path(inputs["dir"])
    data_dir = root / f"assetd-run{n}"
    env = {"ASSETD_JOBS_IN_PROCESS": "false"}
    try:
        with AssetdServer(data_dir, workers=args.assetd_workers, extra_env=env) as server:
            log(f"run {n}: assetd --workers {args.assetd_workers} on {server.base_url}")
            started = time.perf_counter()
            warm = upload_and_sign(server, folder, inputs["warmup_names"])
            urls = upload_and_sign(server, folder, inputs["names"])
            log(
                f"uploaded and signed {len(warm) + len(urls)} in "
                f"{time.perf_counter() - started:.1f} s"
            )
            warm_summary, _ = asyncio.run(fetch_all(warm, args.concurrency, server.pids))
            if warm_summary["errors"]:
                raise RuntimeError(f"assetd warm-up failed: {warm_summary['statuses']}")
            result = measure_http(
                "assetd_http", urls, args.concurrency, server.pids, server.worker_pids
            )
            # (info) the same URLs again: now cached renditions.
            settle(server.pids)
            cached, cached_bodies = asyncio.run(fetch_all(urls, args.concurrency, server.pids))
            result["cached"] = {
                "per_s": cached["per_s"],
                "p50_ms": cached["p50_ms"],
                "errors": cached["errors"],
                "server_cpu_ms_per_req": cached["server_cpu_ms_per_req"],
                "outputs_ok": check_outputs(cached_bodies)["ok"],
            }
            result["server_pids"] = server.pids()
    finally:
        shutil.rmtree(data_dir, ignore_errors=True)
    return result


def run_thumbor(
    args: argparse.Namespace, inputs: dict[str, Any], root: Path, n: int, processes: int
) -> dict[str, Any]:
    with ThumborServer(
        Path(args.thumbor_venv), Path(inputs["dir"]), root / "thumbor", processes
    ) as server:
        log(f"run {n}: thumbor --processes {processes} on {server.base_url}")
        warm = [server.url(name) for name in inputs["warmup_names"]]
        warm_summary, _ = asyncio.run(fetch_all(warm, args.concurrency, server.pids))
        if warm_summary["errors"]:
            raise RuntimeError(f"thumbor warm-up failed: {warm_summary['statuses']}")
        urls = [server.url(name) for name in inputs["names"]]
        result = measure_http(
            f"thumbor_p{processes}", urls, args.concurrency, server.pids, server.worker_pids
        )
        result["server_pids"] = server.pids()
    return result


# -- the assetd engine in worker processes --------------------------------------------------


# A worker process runs this with the project's python and imports only assetd's imaging
# module (not this script, httpx, …), so its RSS is the engine's. It reads its job (one JSON
# line), imports and configures libvips, makes one warm-up thumbnail, resets its VmHWM, says
# it is ready, waits for "go" and thumbnails its share; one JSON line back.
ENGINE_WORKER = """
import json, os, sys, time
from pathlib import Path

def status():
    found = {}
    with open(f"/proc/{os.getpid()}/status") as handle:
        for line in handle:
            if line.startswith(("VmRSS:", "VmHWM:")):
                key, value = line.split(":", 1)
                found[key] = int(value.split()[0])
    return found

job = json.loads(sys.stdin.readline())
from assetd.renditions import imaging

def thumbnail(path):
    return imaging.transform(
        Path(path), "image/jpeg", width=job["width"], height=None, fit="inside", fmt="jpeg",
        quality=job["quality"],
    )

pid = os.getpid()
imaging.configure_vips()
rss_imported = status()["VmRSS"]
thumbnail(job["warm"])
after_warm = status()
try:
    with open(f"/proc/{pid}/clear_refs", "w") as handle:
        handle.write("5")
    hwm_reset = True
except OSError:
    hwm_reset = False
rss_start = status()["VmRSS"]
print(json.dumps({"ready": pid}), flush=True)
sys.stdin.readline()
started, cpu0 = time.perf_counter(), time.process_time()
times, outputs = [], []
for path in job["paths"]:
    t0 = time.perf_counter()
    try:
        image = thumbnail(path)
    except Exception as exc:
        print(json.dumps({"pid": pid, "error": f"{path}: {type(exc).__name__}: {exc}"}))
        sys.exit(1)
    times.append(time.perf_counter() - t0)
    outputs.append((len(image.data), image.width, image.height))
ended, cpu1 = time.perf_counter(), time.process_time()
end = status()
print(json.dumps({
    "pid": pid,
    "count": len(job["paths"]),
    "started": started,
    "ended": ended,
    "seconds": round(ended - started, 3),
    "cpu_s": round(cpu1 - cpu0, 3),
    "times": times,
    "outputs": outputs,
    "rss_after_import_mib": round(rss_imported / 1024, 1),
    "hwm_after_warmup_mib": round(after_warm["VmHWM"] / 1024, 1),
    "rss_start_mib": round(rss_start / 1024, 1),
    "hwm_mib": round(end["VmHWM"] / 1024, 1),
    "rss_end_mib": round(end["VmRSS"] / 1024, 1),
    "hwm_reset": hwm_reset,
    "vips_concurrency": imaging.pyvips.concurrency_get(),
}), flush=True)
"""


def _read_line(proc: subprocess.Popen[str], err: Any) -> dict[str, Any]:
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line:
        proc.wait(30)
        err.seek(0)
        raise RuntimeError(f"thumbnail worker {proc.pid} exited: {err.read().strip()[-2000:]}")
    found: dict[str, Any] = json.loads(line)
    if "error" in found:
        raise RuntimeError(f"the assetd engine failed: {found['error']}")
    return found


def run_engine(args: argparse.Namespace, inputs: dict[str, Any], n: int) -> dict[str, Any]:
    folder = Path(inputs["dir"])
    paths = [str(folder / name) for name in inputs["names"]]
    warm = [str(folder / name) for name in inputs["warmup_names"]] or paths[:1]
    settle()
    procs: list[subprocess.Popen[str]] = []
    errs: list[Any] = []
    try:
        for k in range(args.processes):
            errs.append(tempfile.TemporaryFile("w+"))
            proc = subprocess.Popen(
                [sys.executable, "-c", ENGINE_WORKER],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=errs[-1],
                text=True,
            )
            procs.append(proc)
            job = {
                "paths": paths[k :: args.processes],
                "warm": warm[k % len(warm)],
                "width": WIDTH,
                "quality": QUALITY,
            }
            assert proc.stdin is not None
            proc.stdin.write(json.dumps(job) + "\n")
            proc.stdin.flush()
        pids = [proc.pid for proc in procs]
        log(f"run {n}: assetd engine in {len(procs)} worker processes {pids}")
        for proc, err in zip(procs, errs, strict=True):
            _read_line(proc, err)  # ready
        settle(lambda: pids)
        with RssSampler(lambda: pids) as sampler, Interference(lambda: pids) as noise:
            go_at = time.perf_counter()
            for proc in procs:
                assert proc.stdin is not None
                proc.stdin.write("go\n")
                proc.stdin.flush()
            workers = [_read_line(proc, err) for proc, err in zip(procs, errs, strict=True)]
        for proc in procs:
            proc.wait(30)
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        for err in errs:
            err.close()
    # CLOCK_MONOTONIC (perf_counter) is one clock for all processes on Linux.
    wall = max(w["ended"] for w in workers) - go_at
    count = sum(w["count"] for w in workers)
    times = [t for w in workers for t in w["times"]]
    outputs = [o for w in workers for o in w["outputs"]]
    dims: dict[str, int] = {}
    for _size, width, height in outputs:
        dims[f"{width}x{height}"] = dims.get(f"{width}x{height}", 0) + 1
    lat = latency_summary(times)
    cpu = sum(w["cpu_s"] for w in workers)
    for w in workers:
        del w["times"], w["outputs"]
    return {
        "target": "assetd_engine",
        "per_s": round(count / wall, 1),
        "seconds": round(wall, 3),
        "errors": 0,
        "p50_ms": lat["p50_ms"],
        "p95_ms": lat["p95_ms"],
        "server_cpu_ms_per_thumb": round(cpu / count * 1000, 3),
        "client_cpu_ms_per_req": None,
        "foreign_cpu_cores": noise.foreign_cores,
        "cpu_share_by_process": {
            str(w["pid"]): round(w["cpu_s"] / cpu, 2) if cpu else 0.0 for w in workers
        },
        "start_skew_ms": round((max(w["started"] for w in workers) - go_at) * 1000, 1),
        "peak_rss_worker_mib": max(w["hwm_mib"] for w in workers),
        "rss_before_worker_mib": max(w["rss_start_mib"] for w in workers),
        "peak_rss_tree_sampled_mib": sampler.report()["tree_peak_mib"],
        "peak_rss_tree_hwm_sum_mib": round(sum(w["hwm_mib"] for w in workers), 1),
        "outputs": {
            "dims": dims,
            "ok": dims.get(f"{WIDTH}x{HEIGHT}", 0) == len(paths) == count,
            "bytes_median": int(median(o[0] for o in outputs)),
        },
        "workers": workers,
    }


# -- the CPU a thumbnail costs, in one process without HTTP ------------------------------

CEILING_IMAGES = 10
CEILING_REPEAT = 3
# Run by each library's own interpreter; prints the median CPU ms (process_time) of the whole
# thumbnail and of the JPEG decode at 1/8 scale (the shrink-on-load / draft step) alone.
CEILING_COMMON = """
import json, sys, time
from statistics import median
files, repeat = sys.argv[1:], {repeat}
def timed(fn):
    for f in files[:2]:
        fn(f)
    out = []
    for _ in range(repeat):
        for f in files:
            c0 = time.process_time()
            fn(f)
            out.append((time.process_time() - c0) * 1000)
    return round(median(out), 2)
"""
CEILING_VIPS = """
from pathlib import Path
import pyvips
from assetd.renditions import imaging
imaging.configure_vips()
def thumbnail(f):
    imaging.transform(Path(f), "image/jpeg", {width}, None, "inside", "jpeg", {quality})
def vips_thumbnail(f):
    pyvips.Image.thumbnail(f, {width}, height=4096, size="down").jpegsave_buffer(
        Q={quality}, keep="none", optimize_coding=True)
def load(f):
    pyvips.Image.jpegload(f, shrink=8, access="sequential").copy_memory()
print(json.dumps({{"thumbnail_ms": timed(thumbnail), "load_ms": timed(load),
                  "vips_thumbnail_ms": timed(vips_thumbnail),
                  "libvips": pyvips.version(0) * 100 + pyvips.version(1)}}))
"""
# The steps of thumbor's PIL engine for /256x0/: Image.open, draft(None, size) (libjpeg's
# DCT scaling), resize with LANCZOS, save with quality, optimize and progressive.
CEILING_PILLOW = """
import io
from PIL import Image, features
def thumbnail(f):
    with open(f, "rb") as handle:
        image = Image.open(io.BytesIO(handle.read()))
    image.draft(None, ({width}, {height}))
    image = image.resize(({width}, {height}), Image.LANCZOS)
    out = io.BytesIO()
    image.save(out, "JPEG", quality={quality}, optimize=True, progressive=True)
def load(f):
    image = Image.open(f)
    image.draft(None, ({width}, {height}))
    image.load()
print(json.dumps({{"thumbnail_ms": timed(thumbnail), "load_ms": timed(load),
                  "libjpeg_turbo": features.version("libjpeg_turbo")}}))
"""


def cpu_ceiling(thumbor_venv: Path, files: list[str]) -> dict[str, Any]:
    """CPU ms per thumbnail in one process, no HTTP: libvips (assetd) and Pillow (thumbor)."""
    common = CEILING_COMMON.format(repeat=CEILING_REPEAT)
    fill = {"width": WIDTH, "height": HEIGHT, "quality": QUALITY}
    out: dict[str, Any] = {"images": len(files), "repeat": CEILING_REPEAT}
    for name, python, code in (
        ("vips", sys.executable, CEILING_VIPS),
        ("pillow", str(thumbor_venv / "bin" / "python"), CEILING_PILLOW),
    ):
        done = subprocess.run(
            [python, "-c", common + code.format(**fill), *files],
            capture_output=True,
            text=True,
            check=True,
        )
        out[name] = json.loads(done.stdout)
    return out


# -- orchestration --------------------------------------------------------------------------


def summarize(measurements: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    groups: dict[str, list[dict[str, Any]]] = {}
    for m in measurements:
        groups.setdefault(m["target"], []).append(m)
    out = {}
    for target, runs in groups.items():

        def med(key: str, runs: list[dict[str, Any]] = runs) -> float | None:
            values = [r[key] for r in runs if r.get(key) is not None]
            return round(median(values), 3) if values else None

        out[target] = {
            "runs": len(runs),
            "per_s": med("per_s"),
            "per_s_all": [r["per_s"] for r in runs],
            "p50_ms": med("p50_ms"),
            "p95_ms": med("p95_ms"),
            "server_cpu_ms_per_thumb": med("server_cpu_ms_per_thumb"),
            "client_cpu_ms_per_req": med("client_cpu_ms_per_req"),
            "foreign_cpu_cores_max": max(r["foreign_cpu_cores"] for r in runs),
            "peak_rss_worker_mib": max(r["peak_rss_worker_mib"] for r in runs),
            "rss_before_worker_mib": max(r["rss_before_worker_mib"] for r in runs),
            "peak_rss_tree_sampled_mib": max(r["peak_rss_tree_sampled_mib"] for r in runs),
            "peak_rss_tree_hwm_sum_mib": max(r["peak_rss_tree_hwm_sum_mib"] for r in runs),
            "errors": sum(r["errors"] for r in runs),
            "outputs_ok": all(r["outputs"]["ok"] for r in runs),
            "bytes_median": runs[0]["outputs"]["bytes_median"],
            "cached_per_s": med("per_s", [r["cached"] for r in runs if "cached" in r]),
            "cached_server_cpu_ms_per_req": med(
                "server_cpu_ms_per_req", [r["cached"] for r in runs if "cached" in r]
            ),
        }
    return out


def run(args: argparse.Namespace, root: Path, results: dict[str, Any]) -> None:
    results["thumbor"] = ensure_thumbor(
        Path(args.thumbor_venv), args.thumbor_version, args.thumbor_python
    )
    log(f"thumbor: {results['thumbor']['version']} in {args.thumbor_venv}")
    folder = Path(args.images_dir) if args.images_dir else root / "images"
    inputs = make_inputs(folder, args.images, args.warmup, core_count())
    results["inputs"] = {k: v for k, v in inputs.items() if k not in ("names", "warmup_names")}
    log(
        f"{args.images} images, {inputs['size_mb_min']}-{inputs['size_mb_max']} MB "
        f"(median {inputs['size_mb_median']}), + {args.warmup} for the warm-ups"
    )
    results["thumbor_conf"] = THUMBOR_CONF.format(root=str(folder), quality=QUALITY)
    settle()
    files = [str(folder / name) for name in inputs["names"][:CEILING_IMAGES]]
    results["cpu_ceiling"] = cpu_ceiling(Path(args.thumbor_venv), files)
    log(f"CPU per thumbnail in one process (ms): {results['cpu_ceiling']}")
    measurements: list[dict[str, Any]] = results["measurements"]
    steps: list[tuple[str, Callable[[int], dict[str, Any]]]] = [
        (f"thumbor_p{p}", partial(run_thumbor, args, inputs, root, processes=p))
        for p in args.thumbor_processes
    ]
    if "engine" in args.only:
        steps.append(("assetd_engine", lambda n: run_engine(args, inputs, n)))
    if "http" in args.only:
        steps.append(("assetd_http", lambda n: run_assetd_http(args, inputs, root, n)))
    for n in range(args.runs):
        shift = n % len(steps)
        for _name, step in steps[shift:] + steps[:shift]:  # the order rotates between runs
            result = step(n)
            result["run"] = n
            measurements.append(result)
            cached = result.get("cached")
            log(
                f"run {n} {result['target']}: {result['per_s']} thumbnails/s "
                f"({result['seconds']} s, p50 {result['p50_ms']} ms), CPU "
                f"{result['server_cpu_ms_per_thumb']} ms/thumbnail, peak RSS "
                f"{result['peak_rss_worker_mib']} MiB (worst worker), "
                f"{result['peak_rss_tree_sampled_mib']} MiB (tree); outputs "
                f"{result['outputs']['dims']}; errors {result['errors']}; others' load "
                f"{result['foreign_cpu_cores']} cores"
                + (f"; cached: {cached['per_s']}/s" if cached else "")
            )


# -- report ---------------------------------------------------------------------------------


def markdown(results: dict[str, Any]) -> str:
    out = ["## Run\n", report.machine_section(results)]
    thumbor = results.get("thumbor") or {}
    inputs = results.get("inputs") or {}
    args = results["args"]
    if thumbor:
        pins = dict(p.split("==", 1) for p in thumbor["packages"] if "==" in p)
        pins = {k.lower(): v for k, v in pins.items()}
        out.append(
            f"- thumbor: `{thumbor['version']}` ({thumbor['python']}, Pillow "
            f"{pins.get('pillow', '?')}, tornado {pins.get('tornado', '?')}) in "
            f"`{thumbor['venv']}`; PIL engine, file loader, no storage, no result storage"
        )
    if inputs:
        out.append(
            f"- Inputs: {inputs['count']} JPEGs of {SOURCE_WIDTH}×{SOURCE_HEIGHT}, "
            f"Q{SOURCE_QUALITY}, {inputs['size_mb_min']}–{inputs['size_mb_max']} MB (median "
            f"{inputs['size_mb_median']}); output {WIDTH}×{HEIGHT} JPEG Q{QUALITY}; "
            f"{args['warmup']} more images for the warm-ups"
        )
    out.append(
        f"- HTTP client: httpx, concurrency {args['concurrency']}, a new connection per "
        "request; assetd: `ASSETD_JOBS_IN_PROCESS=false`, otherwise defaults\n"
    )
    summary = results.get("summary") or {}
    refs = [f"thumbor_p{p}" for p in args["thumbor_processes"] if f"thumbor_p{p}" in summary]
    ours = [k for k in ("assetd_engine", "assetd_http") if k in summary]
    if not refs or not ours:
        return "\n".join(out)
    cores = results["machine"].get("cpus")
    ref_key = f"thumbor_p{cores}" if f"thumbor_p{cores}" in refs else refs[0]
    ref = summary[ref_key]
    labels = {
        **{f"thumbor_p{p}": f"thumbor --processes {p}" for p in args["thumbor_processes"]},
        "assetd_engine": f"assetd engine, {args['processes']} worker processes",
        "assetd_http": f"assetd serve --workers {args['assetd_workers']}",
    }
    n = ref["runs"]
    head = (
        "| Workload | "
        + " | ".join(labels[k] + (" (reference)" if k == ref_key else "") for k in refs)
        + " | "
        + " | ".join(labels[k] for k in ours)
        + " | Target | "
        + " | ".join(k.removeprefix("assetd_") for k in ours)
        + " |"
    )
    rows = [head, "|" + "---|" * (2 + len(refs) + 2 * len(ours))]
    info = ["" for _ in ours]

    def row(
        label: str, show: Callable[[dict[str, Any]], str], target: str, marks: list[str]
    ) -> None:
        rows.append(
            f"| {label} | "
            + " | ".join(show(summary[k]) for k in refs)
            + " | "
            + " | ".join(show(summary[k]) for k in ours)
            + f" | {target} | "
            + " | ".join(marks)
            + " |"
        )

    def rate(s: dict[str, Any]) -> str:
        bad = "" if s["outputs_ok"] and not s["errors"] else " **bad outputs/errors**"
        if s is ref:
            return f"{s['per_s']}{bad}"
        return f"{s['per_s']} ({s['per_s'] / ref['per_s']:.2f}×){bad}"

    row(
        f"**thumbnails/s**, {WIDTH} px wide JPEG from {SOURCE_WIDTH}×{SOURCE_HEIGHT} "
        f"(median of {n}; ratio to {labels[ref_key]})",
        rate,
        f"≥ {TARGET_RATIO:g}× thumbor",
        [
            report._verdict(
                summary[k]["per_s"] >= TARGET_RATIO * ref["per_s"]
                and summary[k]["outputs_ok"]
                and not summary[k]["errors"]
            )
            for k in ours
        ],
    )
    row(
        "peak RSS of the worst worker process during the timed part, MiB (VmHWM; max of runs)",
        lambda s: f"{s['peak_rss_worker_mib']}",
        "(info)",
        info,
    )
    row(
        "RSS of the worst worker process just before the timed part (after start-up and "
        "warm-up), MiB",
        lambda s: f"{s['rss_before_worker_mib']}",
        "(info)",
        info,
    )
    row(
        "peak RSS of all the server's / pool's processes, MiB (sampled sum; sum of VmHWM)",
        lambda s: f"{s['peak_rss_tree_sampled_mib']}; {s['peak_rss_tree_hwm_sum_mib']}",
        "(info)",
        info,
    )
    row(
        "CPU ms per thumbnail, server / workers (median)",
        lambda s: f"{s['server_cpu_ms_per_thumb']}",
        "(info)",
        info,
    )
    row(
        "latency p50 / p95 ms (HTTP: per request at the concurrency; engine: per call)",
        lambda s: f"{s['p50_ms']} / {s['p95_ms']}",
        "(info)",
        info,
    )
    row(
        "output bytes, median (one run)",
        lambda s: f"{s['bytes_median']}",
        "(info)",
        info,
    )
    if "assetd_http" in summary and summary["assetd_http"]["cached_per_s"] is not None:
        s = summary["assetd_http"]
        rows.append(
            "| (info) assetd: the same URLs again (cached renditions), /s; CPU ms/request | "
            + " | ".join("" for _ in refs)
            + " | "
            + " | ".join(
                f"{s['cached_per_s']}; {s['cached_server_cpu_ms_per_req']}"
                if k == "assetd_http"
                else ""
                for k in ours
            )
            + " | (info) | "
            + " | ".join("" for _ in ours)
            + " |"
        )
    row(
        "client CPU ms per request (httpx)",
        lambda s: "" if s["client_cpu_ms_per_req"] is None else f"{s['client_cpu_ms_per_req']}",
        "(info)",
        info,
    )
    ceiling = results.get("cpu_ceiling")
    if ceiling:
        rows.append(
            "| (ceiling) one process, no HTTP, CPU ms per thumbnail (median of "
            f"{ceiling['images']} images × {ceiling['repeat']}): whole thumbnail; JPEG load at "
            "1/8 scale only | "
            + " | ".join(
                f"Pillow {ceiling['pillow']['thumbnail_ms']}; {ceiling['pillow']['load_ms']}"
                if k == ref_key
                else ""
                for k in refs
            )
            + " | "
            + " | ".join(
                f"libvips {ceiling['vips']['thumbnail_ms']}; {ceiling['vips']['load_ms']} "
                f"(libvips' own thumbnail(): {ceiling['vips']['vips_thumbnail_ms']})"
                if k == "assetd_engine"
                else ""
                for k in ours
            )
            + " | (ceiling) | "
            + " | ".join("" for _ in ours)
            + " |"
        )
    runs = f"{n} run{'s' if n != 1 else ''}"
    out += [f"\n## Thumbnails ({inputs.get('count')} images, {runs})\n", "\n".join(rows) + "\n"]
    if ceiling and cores:
        out.append(decode_floor(ceiling, cores, ref["per_s"]))
    per_run = [
        "| run | target | thumbnails/s | s | CPU ms/thumb | CPU share by process | "
        "peak RSS worker / tree MiB | outputs | errors | others' load (cores) |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for m in results["measurements"]:
        share = ", ".join(f"{v:.0%}" for v in m["cpu_share_by_process"].values())
        per_run.append(
            f"| {m['run']} | {m['target']} | {m['per_s']} | {m['seconds']} | "
            f"{m['server_cpu_ms_per_thumb']} | {share} | {m['peak_rss_worker_mib']} / "
            f"{m['peak_rss_tree_sampled_mib']} | "
            f"{', '.join(f'{k}: {v}' for k, v in m['outputs']['dims'].items())} | "
            f"{m['errors']} | {m['foreign_cpu_cores']} |"
        )
    out += ["\n### Every measurement\n", "\n".join(per_run) + "\n"]
    return "\n".join(out)


def decode_floor(ceiling: dict[str, Any], cores: int, thumbor_per_s: float) -> str:
    """The bound the 1/8-scale JPEG decode alone puts on thumbnails/s, beside the target."""
    lines = ["### Decode floor\n"]
    needed = TARGET_RATIO * thumbor_per_s
    for name, key in (("libvips (assetd)", "vips"), ("Pillow (thumbor)", "pillow")):
        load_ms = ceiling[key]["load_ms"]
        bound = cores * 1000 / load_ms
        lines.append(
            f"- {name}: the JPEG decode at 1/8 alone costs {load_ms} ms of CPU per image, so "
            f"{cores} cores make at most {bound:.0f} thumbnails/s even if everything else were "
            f"free ({bound / thumbor_per_s:.2f}× the thumbor rate measured)"
        )
    lines.append(
        f"- the target, {TARGET_RATIO:g}× thumbor = {needed:.0f}/s, needs ≤ "
        f"{cores * 1000 / needed:.1f} ms of CPU per thumbnail, decode, resize, encode and HTTP "
        "included\n"
    )
    return "\n".join(lines)


def int_list(text: str) -> list[int]:
    return [int(p) for p in text.split(",") if p.strip()]


def main() -> None:
    cores = core_count()
    parser = argparse.ArgumentParser(
        description="Thumbnails/s and peak RSS beside thumbor",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__,
    )
    parser.add_argument("--images", type=int, default=100, help="measured images (default 100)")
    parser.add_argument("--runs", type=int, default=3, help="repetitions (medians reported)")
    parser.add_argument("--warmup", type=int, default=2 * 2 * cores, help="warm-up images")
    parser.add_argument(
        "--concurrency", type=int, default=2 * cores, help="HTTP requests at a time (2 × cores)"
    )
    parser.add_argument(
        "--processes", type=int, default=cores, help="assetd engine worker processes (cores)"
    )
    parser.add_argument(
        "--assetd-workers", type=int, default=cores, help="assetd serve --workers (cores)"
    )
    parser.add_argument(
        "--thumbor-processes",
        type=int_list,
        default=[cores],
        help="thumbor --processes values, e.g. 2,1 (default: cores); the one equal to the "
        "core count is the reference",
    )
    parser.add_argument("--thumbor-version", default=THUMBOR_VERSION)
    parser.add_argument(
        "--thumbor-venv",
        default=None,
        help="thumbor's own venv (made when missing; default /tmp/assetd-bench-thumbor-VERSION)",
    )
    parser.add_argument("--thumbor-python", default="python3", help="python for thumbor's venv")
    parser.add_argument(
        "--only",
        default=["engine", "http"],
        type=lambda s: [p.strip() for p in s.split(",") if p.strip()],
        help="assetd workloads: subset of engine,http (thumbor always runs)",
    )
    parser.add_argument("--images-dir", default=None, help="keep/reuse the generated images here")
    parser.add_argument("--tmp-dir", default=None, help="parent of the scratch dir")
    parser.add_argument("--keep", action="store_true", help="keep the scratch dir")
    args = parser.parse_args()
    if args.thumbor_venv is None:
        args.thumbor_venv = f"/tmp/assetd-bench-thumbor-{args.thumbor_version}"
    if set(args.only) - {"engine", "http"} or not args.only:
        parser.error("--only takes engine, http or both")
    if min(args.images, args.runs, args.concurrency, args.processes, args.assetd_workers) < 1:
        parser.error("--images, --runs, --concurrency, --processes, --assetd-workers must be ≥ 1")
    if args.images > 1000 or not args.thumbor_processes or min(args.thumbor_processes) < 1:
        parser.error("--images ≤ 1000; --thumbor-processes values ≥ 1")

    log_path = start_log("thumbnails")
    root = Path(tempfile.mkdtemp(prefix="assetd-thumbnails-", dir=args.tmp_dir))
    command = ".venv/bin/python -m bench.thumbnails " + " ".join(sys.argv[1:])
    log(f"command: {command}")
    log(f"scratch dir {root}")
    started = time.time()
    results: dict[str, Any] = {
        "machine": machine_info(),
        "args": dict(vars(args)),
        "command": command.strip(),
        "measurements": [],
    }
    try:
        run(args, root, results)
    finally:
        results["elapsed_s"] = round(time.time() - started, 1)
        results["summary"] = summarize(results["measurements"])
        text = markdown(results)
        json_path, md_path = write_results("thumbnails", results, text)
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)
    print(text)
    log(f"results: {json_path}, {md_path} and {log_path} ({results['elapsed_s']} s)")


if __name__ == "__main__":
    main()
