"""Run assetd's benchmarks beside an nginx reference measured in the same run.

    .venv/bin/python -m bench.run                       # everything (~25 min)
    .venv/bin/python -m bench.run --skip-list           # transfers + small files only
    .venv/bin/python -m bench.run --only list --list-sizes 5000
    .venv/bin/python -m bench.run --profile             # + py-spy profiles (not timed)

Workloads (see docs/benchmarks.md for the targets):

- big: a 512 MiB file of random bytes (a fresh one per repetition, so assetd never
  deduplicates), uploaded with `curl -T` (streaming; PUT to nginx, POST raw body to assetd)
  and downloaded with `curl -o /dev/null`; MiB/s and the server's RSS sampled every 50 ms.
  Raw disk speed (write, write+fsync) is measured as the ceiling.
- small: 10 KiB uploads at concurrency 8 and 10 KiB downloads at concurrency 16, a fixed
  number of requests after a warm-up, with httpx and with a minimal asyncio client.
- list: see bench/list_latency.py.

Each assetd figure is taken with `--workers 1` and `--workers 2`. JSON and a markdown table
go to bench/results/ (gitignored).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import json
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from statistics import median
from typing import Any

import httpx

from bench import report
from bench.common import (
    API_KEY,
    HOST,
    AssetdServer,
    Interference,
    MiB,
    PySpy,
    RawConnection,
    RssSampler,
    log,
    machine_info,
    run_fixed_count,
    start_log,
    wait_quiet,
    write_results,
)
from bench.nginx import NginxServer, ensure_nginx

CURL_FORMAT = "%{http_code} %{time_total} %{size_upload} %{size_download} %{time_starttransfer}"
AUTH = {"Authorization": f"Bearer {API_KEY}"}


# -- inputs and the disk ceiling -------------------------------------------------------------


def generate_file(path: Path, size: int) -> str:
    """size random bytes, fsynced (so writeback does not run into the first upload)."""
    digest = hashlib.sha256()
    with open(path, "wb") as handle:
        left = size
        while left:
            chunk = os.urandom(min(MiB, left))
            digest.update(chunk)
            handle.write(chunk)
            left -= len(chunk)
        handle.flush()
        os.fsync(handle.fileno())
    return digest.hexdigest()


def settle(pids: Callable[[], list[int]] | None = None) -> None:
    """Flush dirty pages before a timed transfer, so one run's writeback never hits the next;
    then wait for other people's jobs on this machine to quieten down."""
    os.sync()
    time.sleep(0.5)
    wait_quiet(pids)


def disk_ceiling(source: Path, workdir: Path) -> dict[str, Any]:
    """Copy `source` (in the page cache) to a new file: write() speed and write()+fsync()."""
    settle()
    target = workdir / "disk-ceiling.bin"
    size = source.stat().st_size
    started = time.perf_counter()
    with open(source, "rb") as src, open(target, "wb") as dst:
        while chunk := src.read(MiB):
            dst.write(chunk)
        dst.flush()
        written = time.perf_counter()
        os.fsync(dst.fileno())
    done = time.perf_counter()
    target.unlink()
    return {
        "bytes": size,
        "write_mib_s": round(size / MiB / (written - started), 1),
        "write_fsync_mib_s": round(size / MiB / (done - started), 1),
        "fsync_s": round(done - written, 3),
    }


# -- big transfers with curl -----------------------------------------------------------------


def curl(args: list[str], body_out: str = "/dev/null") -> dict[str, Any]:
    cmd = ["curl", "-sS", "-o", body_out, "-w", CURL_FORMAT, *args]
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"curl failed ({done.returncode}): {done.stderr.strip()}")
    code, total, up, down, first = done.stdout.split()
    return {
        "http_code": int(code),
        "seconds": float(total),
        "bytes_up": int(float(up)),
        "bytes_down": int(float(down)),
        "first_byte_s": float(first),
    }


class BigTarget:
    """How to PUT/POST and GET one big file on a server."""

    def __init__(self, name: str, base_url: str, pids: Callable[[], list[int]]) -> None:
        self.name, self.base_url, self.pids = name, base_url, pids

    def upload(self, path: Path, n: int, workdir: Path) -> tuple[dict[str, Any], str]:
        raise NotImplementedError

    def download_args(self, handle: str) -> list[str]:
        raise NotImplementedError


class NginxBig(BigTarget):
    def __init__(self, name: str, base_url: str, pids: Callable[[], list[int]], root: Path) -> None:
        super().__init__(name, base_url, pids)
        self.root = root

    def upload(self, path: Path, n: int, workdir: Path) -> tuple[dict[str, Any], str]:
        url = f"{self.base_url}/big/{path.name}"
        result = curl(["-T", str(path), "-H", "Expect:", url])
        # nginx answers before the bytes are on disk; assetd fsyncs first. For comparison
        # only (not the target's reference): what making nginx's file durable costs after.
        started = time.perf_counter()
        fd = os.open(self.root / "big" / path.name, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        result["fsync_after_s"] = round(time.perf_counter() - started, 3)
        result["durable_mib_s"] = round(
            result["bytes_up"] / MiB / (result["seconds"] + result["fsync_after_s"]), 1
        )
        return result, url

    def download_args(self, handle: str) -> list[str]:
        return [handle]


class AssetdBig(BigTarget):
    def upload(self, path: Path, n: int, workdir: Path) -> tuple[dict[str, Any], str]:
        out = workdir / f"upload-{n}.json"
        result = curl(
            [
                "-X",
                "POST",
                "-T",
                str(path),
                "-H",
                "Expect:",
                "-H",
                "Content-Type: application/octet-stream",
                "-H",
                f"Authorization: Bearer {API_KEY}",
                f"{self.base_url}/v1/assets?filename={path.name}",
            ],
            body_out=str(out),
        )
        body = json.loads(out.read_text())
        result["sha256"] = body.get("sha256")
        return result, f"{self.base_url}/v1/assets/{body['id']}/content"

    def download_args(self, handle: str) -> list[str]:
        return ["-H", f"Authorization: Bearer {API_KEY}", handle]


def big_transfers(
    targets: list[BigTarget],
    inputs: list[tuple[Path, str]],
    workdir: Path,
    download_repeat: int = 1,
) -> dict[str, dict[str, Any]]:
    """Each repetition goes to every server in turn (interleaved, so drift in the disk's
    speed over the run hits all of them alike); then the downloads, likewise."""
    uploads: dict[str, list[dict[str, Any]]] = {t.name: [] for t in targets}
    downloads: dict[str, list[dict[str, Any]]] = {t.name: [] for t in targets}
    handles: dict[str, list[str]] = {t.name: [] for t in targets}
    for n, (path, sha) in enumerate(inputs):
        for target in targets:
            settle(target.pids)
            with RssSampler(target.pids) as rss, Interference(target.pids) as noise:
                result, handle = target.upload(path, n, workdir)
            result["foreign_cpu_cores"] = noise.foreign_cores
            result["server_cpu_s"] = round(noise.server_cpu_s, 2)
            result["server_main_thread_cpu_s"] = round(noise.server_main_thread_cpu_s, 2)
            result["mib_s"] = round(result["bytes_up"] / MiB / result["seconds"], 1)
            result["rss"] = rss.report()
            if "sha256" in result:
                result["sha256_ok"] = result["sha256"] == sha
            if result["http_code"] >= 300 or result["bytes_up"] != path.stat().st_size:
                raise RuntimeError(f"{target.name} upload failed: {result}")
            log(
                f"{target.name} upload {n}: {result['mib_s']} MiB/s, RSS growth "
                f"{result['rss']['max_process_growth_mib']} MiB, server CPU "
                f"{result['server_cpu_s']} s, others' load {noise.foreign_cores} cores"
            )
            uploads[target.name].append(result)
            handles[target.name].append(handle)
    for n in [i for i in range(len(inputs)) for _ in range(download_repeat)]:
        for target in targets:
            settle(target.pids)
            with RssSampler(target.pids) as rss, Interference(target.pids) as noise:
                result = curl(target.download_args(handles[target.name][n]))
            result["foreign_cpu_cores"] = noise.foreign_cores
            result["server_cpu_s"] = round(noise.server_cpu_s, 2)
            result["server_main_thread_cpu_s"] = round(noise.server_main_thread_cpu_s, 2)
            result["mib_s"] = round(result["bytes_down"] / MiB / result["seconds"], 1)
            result["rss"] = rss.report()
            result["file"] = n
            if result["http_code"] != 200 or result["bytes_down"] != inputs[n][0].stat().st_size:
                raise RuntimeError(f"{target.name} download failed: {result}")
            log(
                f"{target.name} download {n}: {result['mib_s']} MiB/s, server CPU "
                f"{result['server_cpu_s']} s, others' load {noise.foreign_cores} cores"
            )
            downloads[target.name].append(result)
    out = {}
    for target in targets:
        # Integrity, untimed: the bytes served are the bytes sent.
        args = shlex.join(["curl", "-sS", *target.download_args(handles[target.name][0])])
        done = subprocess.run(
            f"{args} | sha256sum",
            shell=True,
            capture_output=True,
            text=True,
            check=True,
        )
        ups, downs = uploads[target.name], downloads[target.name]
        durable = [u["durable_mib_s"] for u in ups if "durable_mib_s" in u]
        out[target.name] = {
            "upload_mib_s": round(median(u["mib_s"] for u in ups), 1),
            "upload_durable_mib_s": round(median(durable), 1) if durable else None,
            "download_mib_s": round(median(d["mib_s"] for d in downs), 1),
            "upload_server_cpu_s": round(median(u["server_cpu_s"] for u in ups), 2),
            "upload_main_thread_cpu_s": round(
                median(u["server_main_thread_cpu_s"] for u in ups), 2
            ),
            "download_server_cpu_s": round(median(d["server_cpu_s"] for d in downs), 2),
            "download_main_thread_cpu_s": round(
                median(d["server_main_thread_cpu_s"] for d in downs), 2
            ),
            "upload_rss_growth_mib": max(u["rss"]["max_process_growth_mib"] for u in ups),
            "download_rss_growth_mib": max(d["rss"]["max_process_growth_mib"] for d in downs),
            "integrity_ok": done.stdout.split()[0] == inputs[0][1],
            "uploads": ups,
            "downloads": downs,
        }
    return out


def hash_ceiling(size: int = 256 * MiB) -> dict[str, Any]:
    """sha256 and md5 over 1 MiB batches in one thread: what assetd's ingest thread does."""
    batch = os.urandom(MiB)
    rounds = size // MiB
    out = {}
    for name in ("sha256", "md5"):
        digest = hashlib.new(name)
        started = time.perf_counter()
        for _ in range(rounds):
            digest.update(batch)
        out[f"{name}_mib_s"] = round(rounds / (time.perf_counter() - started), 1)
    both = 1 / (1 / out["sha256_mib_s"] + 1 / out["md5_mib_s"])
    out["sha256_then_md5_mib_s"] = round(both, 1)
    return out


# -- small files ----------------------------------------------------------------------------


class SmallTarget:
    """Request shapes for 10 KiB uploads and downloads, with httpx and the raw client."""

    def __init__(self, name: str, port: int, pids: Callable[[], list[int]], auth: bool) -> None:
        self.name, self.port, self.pids = name, port, pids
        self.auth_header = f"Authorization: Bearer {API_KEY}\r\n".encode() if auth else b""
        self.headers = dict(AUTH) if auth else {}

    def upload_target(self, tag: str, i: int) -> tuple[str, str]:
        """(method, path) of upload number i."""
        raise NotImplementedError

    def handle_from(self, path: str, status: int, body: bytes) -> str:
        """The GET path of what an upload created."""
        raise NotImplementedError


class NginxSmall(SmallTarget):
    def upload_target(self, tag: str, i: int) -> tuple[str, str]:
        return "PUT", f"/small/{tag}/{i}.bin"

    def handle_from(self, path: str, status: int, body: bytes) -> str:
        return path


class AssetdSmall(SmallTarget):
    upload_type = b"Content-Type: application/octet-stream\r\n"

    def upload_target(self, tag: str, i: int) -> tuple[str, str]:
        return "POST", f"/v1/assets?filename={tag}-{i}.bin"

    def handle_from(self, path: str, status: int, body: bytes) -> str:
        return f"/v1/assets/{json.loads(body)['id']}/content"


async def small_workloads(target: SmallTarget, args: argparse.Namespace) -> dict[str, Any]:
    results: dict[str, Any] = {}
    # A fresh random body per request: assetd deduplicates identical content (no write, no
    # fsync), which would flatter it.
    handles: list[str] = []

    async def upload_with_httpx(client: httpx.AsyncClient, tag: str, i: int) -> int:
        method, path = target.upload_target(tag, i)
        body = os.urandom(10 * 1024)
        headers = dict(target.headers)
        if isinstance(target, AssetdSmall):
            headers["Content-Type"] = "application/octet-stream"
        response = await client.request(method, path, content=body, headers=headers)
        if len(handles) < args.small_set and response.status_code < 300:
            handles.append(target.handle_from(path, response.status_code, response.content))
        return response.status_code

    async def run_httpx(kind: str, count: int, concurrency: int, tag: str) -> dict[str, Any]:
        limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
        async with httpx.AsyncClient(
            base_url=f"http://{HOST}:{target.port}", limits=limits, timeout=60
        ) as client:
            if kind == "upload":

                async def call(w: int, i: int) -> int:
                    return await upload_with_httpx(client, tag, i)
            else:

                async def call(w: int, i: int) -> int:
                    path = handles[i % len(handles)]
                    response = await client.get(path, headers=target.headers)
                    if len(response.content) != 10 * 1024:
                        return 598
                    return response.status_code

            return (await run_fixed_count(count, concurrency, call, target.pids)).summary()

    async def run_raw(kind: str, count: int, concurrency: int, tag: str) -> dict[str, Any]:
        conns = [RawConnection(HOST, target.port) for _ in range(concurrency)]
        extra = target.auth_header
        if kind == "upload" and isinstance(target, AssetdSmall):
            extra += AssetdSmall.upload_type

        async def call(w: int, i: int) -> int:
            if kind == "upload":
                method, path = target.upload_target(tag, i)
                status, _ = await conns[w].request(method, path, extra, os.urandom(10 * 1024))
                return status
            status, payload = await conns[w].request("GET", handles[i % len(handles)], extra)
            return status if len(payload) == 10 * 1024 else 598

        try:
            return (await run_fixed_count(count, concurrency, call, target.pids)).summary()
        finally:
            for conn in conns:
                await conn.close()

    log(f"{target.name}: small uploads (warm-up, then {args.small_uploads} x httpx and raw)")
    await run_httpx("upload", 200, 8, "warm")
    wait_quiet(target.pids)
    results["upload_httpx"] = await run_httpx("upload", args.small_uploads, 8, "httpx")
    wait_quiet(target.pids)
    results["upload_raw"] = await run_raw("upload", args.small_uploads, 8, "raw")
    log(f"{target.name}: small downloads over {len(handles)} files")
    await run_httpx("download", 500, 16, "warm")
    wait_quiet(target.pids)
    results["download_httpx"] = await run_httpx("download", args.small_downloads, 16, "")
    wait_quiet(target.pids)
    results["download_raw"] = await run_raw("download", args.small_downloads, 16, "")
    for key, value in results.items():
        log(
            f"  {target.name} {key}: {value['per_s']}/s p50 {value['p50_ms']} ms "
            f"p95 {value['p95_ms']} ms errors {value['errors']} "
            f"server CPU {value['server_cpu_ms_per_req']} ms/req, "
            f"others' load {value['foreign_cpu_cores']} cores"
        )
    results["_handles"] = handles
    return results


async def profile_assetd(
    server: AssetdServer,
    target: AssetdSmall,
    handles: list[str],
    args: argparse.Namespace,
    root: Path,
) -> dict[str, Any]:
    """py-spy on the worker during extra, separately reported workloads (never the timed ones)."""
    from bench import profile

    if PySpy.binary() is None:
        log("py-spy not found (uv pip install py-spy): skipping profiles")
        return {}
    outdir = RESULTS_PROFILE_DIR
    outdir.mkdir(parents=True, exist_ok=True)
    summaries: dict[str, Any] = {}
    pid = server.worker_pids()[0]
    for kind, concurrency in (("upload", 8), ("download", 16)):
        out = outdir / f"pyspy-small-{kind}-w{server.workers}.txt"
        conns = [RawConnection(HOST, target.port) for _ in range(concurrency)]
        auth = target.auth_header

        async def call(
            w: int, i: int, kind: str = kind, conns: list[RawConnection] = conns, auth: bytes = auth
        ) -> int:
            if kind == "upload":
                status, _ = await conns[w].request(
                    "POST",
                    f"/v1/assets?filename=prof-{i}.bin",
                    auth + AssetdSmall.upload_type,
                    os.urandom(10 * 1024),
                )
                return status
            status, _ = await conns[w].request("GET", handles[i % len(handles)], auth)
            return status

        count = min(args.small_uploads, 2000) if kind == "upload" else args.small_downloads
        with PySpy(pid, out):
            result = (await run_fixed_count(count, concurrency, call, server.pids)).summary()
        for conn in conns:
            await conn.close()
        summaries[f"small {kind}"] = {
            "under_profiler": result,
            "file": str(out),
            **profile.summarize(out),
        }
        log(f"profile small {kind}: {out}")
    if "big" in args.only:
        path = root / "inputs" / "profile.bin"
        generate_file(path, args.big_mib * MiB)
        out = outdir / f"pyspy-big-upload-w{server.workers}.txt"
        settle()
        with PySpy(pid, out):
            result, _ = AssetdBig("assetd", server.base_url, server.pids).upload(path, 99, root)
        path.unlink()
        result["mib_s"] = round(result["bytes_up"] / MiB / result["seconds"], 1)
        summaries["big upload"] = {
            "under_profiler": result,
            "file": str(out),
            **profile.summarize(out),
        }
        log(f"profile big upload: {out}")
    return summaries


# -- orchestration --------------------------------------------------------------------------


def run_transfers(args: argparse.Namespace, root: Path, results: dict[str, Any]) -> None:
    nginx_binary = ensure_nginx(allow_install=args.install_nginx)
    inputs_dir = root / "inputs"
    inputs_dir.mkdir()
    only = set(args.only)
    inputs: list[tuple[Path, str]] = []
    if "big" in only:
        log(f"generating {args.repeat} x {args.big_mib} MiB of random bytes in {inputs_dir}")
        for n in range(args.repeat):
            path = inputs_dir / f"big-{n}.bin"
            inputs.append((path, generate_file(path, args.big_mib * MiB)))
        results["disk"] = disk_ceiling(inputs[0][0], root)
        results["disk_after"] = None
        results["hash"] = hash_ceiling()
        log(f"disk: {results['disk']}; hashing: {results['hash']}")

    # All servers up at once (idle ones cost nothing), so big transfers can be interleaved.
    with contextlib.ExitStack() as stack:
        ng = stack.enter_context(NginxServer(root / "nginx", binary=nginx_binary))
        servers = {
            w: stack.enter_context(AssetdServer(root / f"assetd-w{w}", workers=w))
            for w in args.workers
        }
        results["nginx"] = {"config": (ng.workdir / "nginx.conf").read_text(), "pids": ng.pids()}
        for w, server in servers.items():
            log(f"assetd --workers {w} on {server.base_url}, pids {server.pids()}")
            results[f"assetd_w{w}"] = {"pids": server.pids(), "workers": w}
        if "big" in only:
            targets: list[BigTarget] = [NginxBig("nginx", ng.base_url, ng.pids, ng.root)]
            targets += [AssetdBig(f"assetd_w{w}", s.base_url, s.pids) for w, s in servers.items()]
            for name, big in big_transfers(
                targets, inputs, root, download_repeat=args.download_repeat
            ).items():
                results[name]["big"] = big
            shutil.rmtree(ng.root / "big", ignore_errors=True)
            results["disk_after"] = disk_ceiling(inputs[0][0], root)
            log(f"disk after: {results['disk_after']}")
        if "small" in only:
            small = asyncio.run(small_workloads(NginxSmall("nginx", ng.port, ng.pids, False), args))
            small.pop("_handles")
            results["nginx"]["small"] = small
            for w, server in servers.items():
                small_target = AssetdSmall(f"assetd_w{w}", server.port, server.pids, True)
                small = asyncio.run(small_workloads(small_target, args))
                handles = small.pop("_handles")
                results[f"assetd_w{w}"]["small"] = small
                if args.profile and w == 1:
                    results["assetd_w1"]["profile"] = asyncio.run(
                        profile_assetd(server, small_target, handles, args, root)
                    )


RESULTS_PROFILE_DIR = Path(__file__).resolve().parent / "results"


def main() -> None:
    parser = argparse.ArgumentParser(
        description="assetd benchmarks with an nginx reference",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__,
    )
    parser.add_argument(
        "--only",
        default="big,small,list",
        type=lambda s: [p.strip() for p in s.split(",") if p.strip()],
        help="comma-separated subset of big,small,list",
    )
    parser.add_argument("--skip-list", action="store_true", help="same as --only big,small")
    parser.add_argument(
        "--workers",
        default="1,2",
        type=lambda s: [int(p) for p in s.split(",")],
        help="assetd --workers values",
    )
    parser.add_argument("--big-mib", type=int, default=512)
    parser.add_argument("--repeat", type=int, default=3, help="big uploads per server")
    parser.add_argument(
        "--download-repeat", type=int, default=3, help="downloads of each uploaded big file"
    )
    parser.add_argument("--small-uploads", type=int, default=3000)
    parser.add_argument("--small-downloads", type=int, default=5000)
    parser.add_argument("--small-set", type=int, default=256, help="distinct files downloaded")
    parser.add_argument(
        "--list-sizes", default="5000,100000,1000000", type=lambda s: [int(p) for p in s.split(",")]
    )
    parser.add_argument(
        "--list-dbs", default="sqlite,postgresql", type=lambda s: [p.strip() for p in s.split(",")]
    )
    parser.add_argument("--list-requests", type=int, default=300)
    parser.add_argument("--profile", action="store_true", help="py-spy the small workloads")
    parser.add_argument(
        "--install-nginx", action="store_true", help="apt-get install nginx when it is missing"
    )
    parser.add_argument("--tmp-dir", default=None, help="parent of the scratch dir (same disk!)")
    parser.add_argument("--keep", action="store_true", help="keep the scratch dir")
    args = parser.parse_args()
    if args.skip_list:
        args.only = [o for o in args.only if o != "list"]

    log_path = start_log("bench")
    root = Path(tempfile.mkdtemp(prefix="assetd-bench-", dir=args.tmp_dir))
    os.chmod(root, 0o755)  # nginx workers (www-data) traverse it
    log(f"scratch dir {root}")
    started = time.time()
    results: dict[str, Any] = {
        "machine": machine_info(),
        "args": {k: v for k, v in vars(args).items()},
        "command": "python -m bench.run " + " ".join(sys.argv[1:]),
    }
    try:
        if {"big", "small"} & set(args.only):
            run_transfers(args, root, results)
        if "list" in args.only:
            from bench import list_latency

            results["list"] = list_latency.run_all(
                sizes=args.list_sizes,
                dbs=args.list_dbs,
                requests=args.list_requests,
                root=root,
                profile=args.profile,
            )
    finally:
        results["elapsed_s"] = round(time.time() - started, 1)
        markdown = report.markdown(results)
        json_path, md_path = write_results("bench", results, markdown)
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)
    print(markdown)
    log(f"results: {json_path}, {md_path} and {log_path} ({results['elapsed_s']} s)")


if __name__ == "__main__":
    main()
