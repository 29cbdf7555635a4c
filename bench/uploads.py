"""Big uploads (issue 3): one file in 100 MiB parts over 4 parallel streams, and the same
file by tus, beside nginx's WebDAV PUT of the same file measured in the same run.

    .venv/bin/python -m bench.uploads                          # 2 GiB, 3 runs (~10-15 min)
    .venv/bin/python -m bench.uploads --size 256MiB --runs 1   # smoke run (~1-2 min)

Targets: each assetd upload ≥ 80% of nginx's single-stream PUT MiB/s, and the server's RSS
growth < 64 MiB.

Workloads, each timed by the wall clock from the first request to the last answer:

- nginx PUT (the reference): `curl -T file -H 'Expect:'` of the whole file, one stream. Also,
  as info, the same PUT then an fsync of the stored file (nginx answers before its bytes
  are durable, assetd after), and 4 streams PUTting the 100 MiB part files into separate
  files (one curl process per part, 4 at a time).
- assetd parts: `POST /v1/uploads` (httpx), then the part files PUT to the presigned URLs by
  curl, 4 processes at a time (one per part), then `POST /v1/uploads/{id}/complete` (httpx),
  where the server hashes and fsyncs the assembled file. Each phase is also timed alone.
- assetd tus: the tuspy client (`tusclient.Uploader`, requests underneath) from creation to
  the last PATCH, in 100 MiB PATCHes (`--tus-chunk-mib`) on one stream; tuspy reads each chunk
  into memory and sends it in one call. The last PATCH also turns the upload into a version.
- assetd tus by curl (info): the same protocol with curl, one PATCH per 100 MiB part file, so
  that tus is also seen with nginx's client.

The input is one file of random bytes plus its 100 MiB part files, written once (curl cannot
send a byte range of a file). Before each assetd upload the first 64 bytes of the file and of
its first part change, so assetd never deduplicates (it would skip the write and the fsync).
`sync` and a wait for a quiet machine come before each measurement; the runs interleave
nginx and the assetd servers so that drift in the disk's speed hits them alike. In each run,
each assetd server (`--workers 1`, then `--workers 2`) starts fresh: default settings, a new
data dir, one small parts upload and one small tus upload as a warm-up; it is stopped and its
data dir removed once its uploads are measured.

RSS: before each measurement VmHWM of every server process is reset to its current RSS
(`echo 5 > /proc/PID/clear_refs`); growth is VmHWM after − VmRSS before, the worst process
(with --workers 2 the streams spread over both). VmRSS is also sampled every 50 ms as a cross
check. CPU: server utime+stime from /proc; client CPU is curl's (waited children) plus this
thread's (tuspy). Ceilings in the same run: the disk (write() and write()+fsync() of the file,
as bench.run measures it, and `dd bs=4M conv=fsync`), before and after the transfers.

Output: bench/results/uploads-<UTC>.{json,md,log} (gitignored); the table is also printed.
Only 127.0.0.1 is contacted. The scratch dir (inputs, nginx root, data dirs) is removed.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import os
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from functools import partial
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
    RssSampler,
    log,
    machine_info,
    read_status,
    start_log,
    write_results,
)
from bench.nginx import NginxServer, ensure_nginx
from bench.run import disk_ceiling, generate_file, settle

GiB = 1024 * MiB
AUTH = {"Authorization": f"Bearer {API_KEY}"}
TUS_VERSION = "1.0.0"
OFFSET_TYPE = "application/offset+octet-stream"
RSS_LIMIT_MIB = report.RSS_LIMIT_MIB
UPLOAD_RATIO = report.UPLOAD_RATIO
WORKLOADS = ("nginx_parts", "parts", "tus", "tus_curl")  # nginx's single PUT always runs
# Response headers curl prints after its own figures (%{json}), one per line.
HEADERS_OUT = ("etag", "upload-offset", "x-asset-id", "x-asset-version")
WRITE_OUT = "%{json}\n" + "\n".join(f"%header{{{name}}}" for name in HEADERS_OUT)


def parse_size(text: str) -> int:
    """Bytes from '2GiB', '256MiB', '512M', '1g' (binary units) or a plain number."""
    found = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([kmgt]?)(?:i?b)?\s*", text.lower())
    if not found:
        raise argparse.ArgumentTypeError(f"not a size: {text!r} (e.g. 2GiB, 256MiB)")
    scale = {"": 1, "k": 1024, "m": MiB, "g": GiB, "t": 1024 * GiB}[found.group(2)]
    size = int(float(found.group(1)) * scale)
    if size < MiB:
        raise argparse.ArgumentTypeError("the size must be at least 1 MiB")
    return size


def human(size: int) -> str:
    for unit, scale in (("GiB", GiB), ("MiB", MiB)):
        if size >= scale:
            value = size / scale
            return f"{value:g} {unit}" if value == int(value) else f"{value:.2f} {unit}"
    return f"{size} B"


def mib_s(size: int, seconds: float) -> float:
    return round(size / MiB / seconds, 1)


# -- inputs ---------------------------------------------------------------------------------


class Inputs:
    """The file of random bytes and its part files, made once and fsynced."""

    def __init__(self, folder: Path, size: int, part_size: int) -> None:
        folder.mkdir(parents=True)
        self.size, self.part_size = size, part_size
        self.whole = folder / "big.bin"
        generate_file(self.whole, size)
        self.parts: list[Path] = []
        with open(self.whole, "rb") as source:
            number = 0
            while chunk := source.read(part_size):
                number += 1
                path = folder / f"part-{number:05d}.bin"
                with open(path, "wb") as out:
                    out.write(chunk)
                    out.flush()
                    os.fsync(out.fileno())
                self.parts.append(path)
        self.sha256 = self.refresh()

    def offsets(self) -> list[int]:
        return [i * self.part_size for i in range(len(self.parts))]

    def refresh(self) -> str:
        """New first bytes in the file and in its first part; returns the file's SHA-256."""
        stamp = os.urandom(64)
        for path in (self.whole, self.parts[0]):
            fd = os.open(path, os.O_WRONLY)
            try:
                os.pwrite(fd, stamp, 0)
            finally:
                os.close(fd)
        with open(self.whole, "rb") as handle:
            self.sha256 = hashlib.file_digest(handle, "sha256").hexdigest()
        return self.sha256


def dd_ceiling(source: Path, workdir: Path) -> dict[str, Any]:
    """`dd bs=4M conv=fsync` of the (cached) input to a new file on the same filesystem."""
    settle()
    target = workdir / "dd-ceiling.bin"
    started = time.perf_counter()
    subprocess.run(
        ["dd", f"if={source}", f"of={target}", "bs=4M", "conv=fsync", "status=none"], check=True
    )
    seconds = time.perf_counter() - started
    size = target.stat().st_size
    target.unlink()
    return {"bytes": size, "seconds": round(seconds, 3), "mib_s": mib_s(size, seconds)}


# -- clients --------------------------------------------------------------------------------


def curl_upload(
    path: Path, url: str, body_out: Path, *extra: str, method: str | None = None
) -> dict[str, Any]:
    """One `curl -T` (streams the file from disk); its figures and a few response headers."""
    if not url.startswith(f"http://{HOST}:"):
        raise RuntimeError(f"refusing a non-loopback URL: {url}")
    cmd = ["curl", "-sS", "-o", str(body_out), "-w", WRITE_OUT, "-T", str(path), "-H", "Expect:"]
    if method is not None:
        cmd += ["-X", method]
    done = subprocess.run([*cmd, *extra, url], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"curl failed ({done.returncode}): {done.stderr.strip()}")
    lines = done.stdout.split("\n")
    stats = json.loads(lines[0])
    result: dict[str, Any] = {
        "http_code": int(stats["http_code"]),
        "curl_seconds": float(stats["time_total"]),
        "bytes_up": int(stats["size_upload"]),
        "headers": {k: v for k, v in zip(HEADERS_OUT, lines[1:], strict=False) if v},
    }
    if result["http_code"] >= 300 or result["bytes_up"] != path.stat().st_size:
        body = body_out.read_text(errors="replace")[:500] if body_out.exists() else ""
        raise RuntimeError(f"upload of {path.name} to {url} failed: {result} {body}")
    return result


def curl_parallel(
    jobs: list[tuple[Path, str]], streams: int, bodies: Path, *extra: str
) -> list[dict[str, Any]]:
    """PUT each (file, url) with its own curl process, `streams` at a time, in order."""

    def one(i: int) -> dict[str, Any]:
        path, url = jobs[i]
        result = curl_upload(path, url, bodies / f"body-{i}.txt", *extra)
        result["mib_s"] = mib_s(result["bytes_up"], result["curl_seconds"])
        return result

    with ThreadPoolExecutor(max_workers=streams, thread_name_prefix="curl") as pool:
        return list(pool.map(one, range(len(jobs))))


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


# -- RSS: VmHWM reset before, read after -----------------------------------------------------


def reset_peak_rss(pids: list[int]) -> dict[int, dict[str, Any]]:
    """VmHWM := VmRSS for each process (clear_refs 5), then its VmRSS as the baseline."""
    before: dict[int, dict[str, Any]] = {}
    for pid in pids:
        reset = True
        try:
            with open(f"/proc/{pid}/clear_refs", "w") as handle:
                handle.write("5")
        except OSError:
            reset = False  # then VmHWM is the process's lifetime peak: an upper bound
        rss = read_status(pid).get("VmRSS")
        if rss is not None:
            before[pid] = {"rss_kib": rss, "hwm_reset": reset}
    return before


def peak_rss(before: dict[int, dict[str, Any]]) -> dict[str, Any]:
    per_process = {}
    for pid, start in before.items():
        status = read_status(pid)
        if "VmHWM" not in status:
            continue
        per_process[str(pid)] = {
            "rss_before_mib": round(start["rss_kib"] / 1024, 1),
            "hwm_mib": round(status["VmHWM"] / 1024, 1),
            "growth_mib": round((status["VmHWM"] - start["rss_kib"]) / 1024, 1),
            "hwm_reset": start["hwm_reset"],
        }
    return {
        "per_process": per_process,
        "max_growth_mib": max((p["growth_mib"] for p in per_process.values()), default=0.0),
        "tree_rss_before_mib": round(sum(s["rss_kib"] for s in before.values()) / 1024, 1),
        "hwm_reset": all(p["hwm_reset"] for p in per_process.values()),
    }


def measure(pids: Callable[[], list[int]], upload: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """settle, then one upload with the server's RSS and CPU and the client's CPU around it."""
    settle(pids)
    before = reset_peak_rss(pids())
    thread0, kids0 = time.thread_time(), children_cpu()
    with RssSampler(pids) as sampler, Interference(pids) as noise:
        result = upload()
    result["client_cpu_s"] = round(time.thread_time() - thread0 + children_cpu() - kids0, 2)
    result["server_cpu_s"] = round(noise.server_cpu_s, 2)
    result["server_main_thread_cpu_s"] = round(noise.server_main_thread_cpu_s, 2)
    result["foreign_cpu_cores"] = noise.foreign_cores
    result["rss"] = {**peak_rss(before), "sampled": sampler.report()}
    return result


# -- the workloads --------------------------------------------------------------------------


def nginx_put(ng: NginxServer, inputs: Inputs, tag: str, scratch: Path) -> dict[str, Any]:
    """The reference: one PUT of the whole file; then (untimed for MiB/s) an fsync of it."""
    url = f"{ng.base_url}/big/{tag}.bin"
    started = time.perf_counter()
    put = curl_upload(inputs.whole, url, scratch / "nginx-put.txt")
    seconds = time.perf_counter() - started
    stored = ng.root / "big" / f"{tag}.bin"
    synced = time.perf_counter()
    fd = os.open(stored, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    fsync_s = time.perf_counter() - synced
    return {
        "seconds": round(seconds, 3),
        "mib_s": mib_s(inputs.size, seconds),
        "fsync_after_s": round(fsync_s, 3),
        "durable_mib_s": mib_s(inputs.size, seconds + fsync_s),
        "curl": put,
    }


def nginx_parts(
    ng: NginxServer, inputs: Inputs, tag: str, streams: int, scratch: Path
) -> dict[str, Any]:
    jobs = [(p, f"{ng.base_url}/parts/{tag}/{p.name}") for p in inputs.parts]
    started = time.perf_counter()
    parts = curl_parallel(jobs, streams, scratch)
    seconds = time.perf_counter() - started
    return {"seconds": round(seconds, 3), "mib_s": mib_s(inputs.size, seconds), "parts": parts}


def assetd_parts(
    server: AssetdServer, inputs: Inputs, tag: str, streams: int, scratch: Path
) -> dict[str, Any]:
    with httpx.Client(base_url=server.base_url, headers=AUTH, timeout=None) as client:
        started = time.perf_counter()
        created = client.post(
            "/v1/uploads",
            json={
                "filename": f"{tag}.bin",
                "sizeBytes": inputs.size,
                "partSizeBytes": inputs.part_size,
            },
        )
        created_at = time.perf_counter()
        if created.status_code != 201:
            raise RuntimeError(f"POST /v1/uploads: {created.status_code} {created.text[:500]}")
        session = created.json()
        targets = session["parts"]
        sizes = [p.stat().st_size for p in inputs.parts]
        if [t["sizeBytes"] for t in targets] != sizes:
            raise RuntimeError(f"the server's parts {targets} are not the files' {sizes}")
        jobs = [(path, t["url"]) for path, t in zip(inputs.parts, targets, strict=True)]
        parts = curl_parallel(jobs, streams, scratch)
        parts_done = time.perf_counter()
        completed = client.post(f"/v1/uploads/{session['id']}/complete", json={})
        done = time.perf_counter()
    if completed.status_code != 200:
        raise RuntimeError(f"complete: {completed.status_code} {completed.text[:500]}")
    version = completed.json()["version"]
    parts_s = parts_done - created_at
    return {
        "seconds": round(done - started, 3),
        "mib_s": mib_s(inputs.size, done - started),
        "create_s": round(created_at - started, 3),
        "parts_s": round(parts_s, 3),
        "parts_mib_s": mib_s(inputs.size, parts_s),
        "complete_s": round(done - parts_done, 3),
        "sha256_ok": version["sha256"] == inputs.sha256,
        "parts": [
            {k: p[k] for k in ("http_code", "curl_seconds", "mib_s", "headers")} for p in parts
        ],
        "upload_id": session["id"],
    }


def _tus_summary(
    size: int, seconds: float, create_s: float, patches: list[dict[str, Any]]
) -> dict[str, Any]:
    """MiB/s, and the last PATCH's time beyond what its bytes took in the other PATCHes."""
    finalize = None
    if len(patches) > 1:
        rate = median(p["bytes"] / p["seconds"] for p in patches[:-1])
        finalize = round(patches[-1]["seconds"] - patches[-1]["bytes"] / rate, 3)
    return {
        "seconds": round(seconds, 3),
        "mib_s": mib_s(size, seconds),
        "create_s": round(create_s, 3),
        "patches": patches,
        "last_patch_s": patches[-1]["seconds"],
        "last_patch_extra_s": finalize,
    }


def _asset_sha256(server: AssetdServer, asset_id: str | None) -> str | None:
    if asset_id is None:
        return None
    answer = httpx.get(f"{server.base_url}/v1/assets/{asset_id}", headers=AUTH, timeout=60)
    answer.raise_for_status()
    sha = answer.json().get("sha256")
    return str(sha) if sha is not None else None


def assetd_tuspy(server: AssetdServer, inputs: Inputs, tag: str, chunk: int) -> dict[str, Any]:
    from tusclient.client import TusClient

    client = TusClient(f"{server.base_url}/v1/tus", headers=dict(AUTH))
    uploader = client.uploader(
        file_path=str(inputs.whole), chunk_size=chunk, metadata={"filename": f"{tag}.bin"}
    )
    started = time.perf_counter()
    uploader.set_url(uploader.create_url())
    uploader.offset = 0
    created_at = time.perf_counter()
    patches: list[dict[str, Any]] = []
    while uploader.offset < inputs.size:
        offset, sent = uploader.offset, time.perf_counter()
        uploader.upload_chunk()  # type: ignore[no-untyped-call]
        patches.append(
            {"bytes": uploader.offset - offset, "seconds": round(time.perf_counter() - sent, 3)}
        )
    done = time.perf_counter()
    headers: dict[str, str] = uploader.request.response_headers if uploader.request else {}
    result = _tus_summary(inputs.size, done - started, created_at - started, patches)
    result["sha256_ok"] = _asset_sha256(server, headers.get("x-asset-id")) == inputs.sha256
    result["client"] = "tuspy"
    return result


def assetd_tus_curl(
    server: AssetdServer, inputs: Inputs, tag: str, scratch: Path
) -> dict[str, Any]:
    auth = f"Authorization: Bearer {API_KEY}"
    name = base64.b64encode(f"{tag}.bin".encode()).decode()
    with httpx.Client(timeout=None) as client:
        started = time.perf_counter()
        created = client.post(
            f"{server.base_url}/v1/tus",
            headers={
                **AUTH,
                "Tus-Resumable": TUS_VERSION,
                "Upload-Length": str(inputs.size),
                "Upload-Metadata": f"filename {name}",
            },
        )
    created_at = time.perf_counter()
    if created.status_code != 201:
        raise RuntimeError(f"POST /v1/tus: {created.status_code} {created.text[:500]}")
    location = created.headers["location"]
    patches: list[dict[str, Any]] = []
    asset_id = None
    for path, offset in zip(inputs.parts, inputs.offsets(), strict=True):
        sent = time.perf_counter()
        answer = curl_upload(
            path,
            location,
            scratch / "tus-patch.txt",
            "-H",
            f"Content-Type: {OFFSET_TYPE}",
            "-H",
            f"Upload-Offset: {offset}",
            "-H",
            f"Tus-Resumable: {TUS_VERSION}",
            "-H",
            auth,
            method="PATCH",
        )
        seconds = time.perf_counter() - sent
        expected = offset + answer["bytes_up"]
        if answer["headers"].get("upload-offset") != str(expected):
            raise RuntimeError(f"PATCH at {offset}: {answer}, expected offset {expected}")
        asset_id = answer["headers"].get("x-asset-id", asset_id)
        patches.append({"bytes": answer["bytes_up"], "seconds": round(seconds, 3)})
    done = time.perf_counter()
    result = _tus_summary(inputs.size, done - started, created_at - started, patches)
    result["sha256_ok"] = _asset_sha256(server, asset_id) == inputs.sha256
    result["client"] = "curl"
    return result


def warm_up(server: AssetdServer) -> None:
    """One small parts upload and one small tus upload: imports, pools and threads start."""
    from tusclient.client import TusClient

    body = os.urandom(MiB)
    with httpx.Client(base_url=server.base_url, headers=AUTH, timeout=60) as client:
        created = client.post("/v1/uploads", json={"filename": "warm.bin", "sizeBytes": MiB})
        created.raise_for_status()
        session = created.json()
        for part in session["parts"]:
            httpx.put(part["url"], content=body, timeout=60).raise_for_status()
        client.post(f"/v1/uploads/{session['id']}/complete", json={}).raise_for_status()
    with tempfile.NamedTemporaryFile(suffix=".bin") as handle:
        handle.write(os.urandom(MiB))
        handle.flush()
        tus = TusClient(f"{server.base_url}/v1/tus", headers=dict(AUTH))
        tus.uploader(file_path=handle.name, metadata={"filename": "warm.bin"}).upload()


# -- orchestration --------------------------------------------------------------------------


def summarize(measurements: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per target and workload: medians over the runs (the RSS growth: the worst run)."""
    groups: dict[str, list[dict[str, Any]]] = {}
    for m in measurements:
        groups.setdefault(f"{m['target']}/{m['workload']}", []).append(m)
    out = {}
    for key, runs in groups.items():

        def med(field: str, runs: list[dict[str, Any]] = runs) -> float | None:
            values = [r[field] for r in runs if r.get(field) is not None]
            digits = 1 if field.endswith("mib_s") else 3
            return round(median(values), digits) if values else None

        out[key] = {
            "runs": len(runs),
            "mib_s": med("mib_s"),
            "mib_s_all": [r["mib_s"] for r in runs],
            "seconds": med("seconds"),
            "durable_mib_s": med("durable_mib_s"),
            "parts_mib_s": med("parts_mib_s"),
            "create_s": med("create_s"),
            "complete_s": med("complete_s"),
            "last_patch_s": med("last_patch_s"),
            "last_patch_extra_s": med("last_patch_extra_s"),
            "client_cpu_s": med("client_cpu_s"),
            "server_cpu_s": med("server_cpu_s"),
            "server_main_thread_cpu_s": med("server_main_thread_cpu_s"),
            "foreign_cpu_cores_max": max(r["foreign_cpu_cores"] for r in runs),
            "rss_growth_mib": max(r["rss"]["max_growth_mib"] for r in runs),
            "rss_sampled_growth_mib": max(
                r["rss"]["sampled"]["max_process_growth_mib"] for r in runs
            ),
            "rss_before_tree_mib": runs[0]["rss"]["tree_rss_before_mib"],
            "hwm_reset": all(r["rss"]["hwm_reset"] for r in runs),
            "sha256_ok": all(r["sha256_ok"] for r in runs) if "sha256_ok" in runs[0] else None,
        }
    return out


def run(args: argparse.Namespace, root: Path, results: dict[str, Any]) -> None:
    binary = ensure_nginx(allow_install=args.install_nginx)
    size, part_size = args.size, args.part_mib * MiB
    log(f"generating {human(size)} of random bytes and its {human(part_size)} part files")
    inputs = Inputs(root / "inputs", size, part_size)
    scratch = root / "curl"
    scratch.mkdir()
    results["parts"] = len(inputs.parts)
    results["disk"] = {
        "python": disk_ceiling(inputs.whole, root),
        "dd": dd_ceiling(inputs.whole, root),
    }
    log(f"disk before: {results['disk']}")
    measurements: list[dict[str, Any]] = results["measurements"]

    def record(target: str, workload: str, n: int, result: dict[str, Any]) -> None:
        result.update(target=target, workload=workload, run=n)
        measurements.append(result)
        extra = ""
        if "complete_s" in result:
            extra = f" (parts {result['parts_mib_s']} MiB/s, complete {result['complete_s']} s)"
        elif result.get("last_patch_extra_s") is not None:
            extra = f" (last PATCH {result['last_patch_s']} s, +{result['last_patch_extra_s']} s)"
        elif "durable_mib_s" in result:
            extra = f" (then fsync: {result['durable_mib_s']} MiB/s)"
        ok = "" if result.get("sha256_ok", True) else " SHA-256 MISMATCH"
        log(
            f"run {n} {target} {workload}: {result['mib_s']} MiB/s in {result['seconds']} s"
            f"{extra}; RSS growth {result['rss']['max_growth_mib']} MiB; CPU server "
            f"{result['server_cpu_s']} s, client {result['client_cpu_s']} s; others' load "
            f"{result['foreign_cpu_cores']} cores{ok}"
        )

    with NginxServer(root / "nginx", binary=binary) as ng:
        results["nginx_config"] = (ng.workdir / "nginx.conf").read_text()
        for n in range(args.runs):
            tag = f"r{n}"
            put = partial(nginx_put, ng, inputs, tag, scratch)
            record("nginx", "put", n, measure(ng.pids, put))
            shutil.rmtree(ng.root / "big", ignore_errors=True)
            if "nginx_parts" in args.only:
                parts = partial(nginx_parts, ng, inputs, tag, args.streams, scratch)
                record("nginx", "parts", n, measure(ng.pids, parts))
                shutil.rmtree(ng.root / "parts", ignore_errors=True)
            for w in args.workers:
                # One server at a time, removed after its uploads: at most 3 stored copies.
                data_dir = root / f"assetd-w{w}-run{n}"
                with AssetdServer(data_dir, workers=w) as server:
                    warm_up(server)
                    log(f"run {n}: assetd --workers {w} on {server.base_url}, pids {server.pids()}")
                    steps: dict[str, Callable[[], dict[str, Any]]] = {
                        "parts": partial(
                            assetd_parts, server, inputs, f"{tag}-parts", args.streams, scratch
                        ),
                        "tus": partial(
                            assetd_tuspy, server, inputs, f"{tag}-tus", args.tus_chunk_mib * MiB
                        ),
                        "tus_curl": partial(
                            assetd_tus_curl, server, inputs, f"{tag}-tus-curl", scratch
                        ),
                    }
                    for workload, upload in steps.items():
                        if workload in args.only:
                            inputs.refresh()  # new bytes: assetd must not deduplicate
                            record(f"assetd_w{w}", workload, n, measure(server.pids, upload))
                shutil.rmtree(data_dir, ignore_errors=True)
    results["disk_after"] = {
        "python": disk_ceiling(inputs.whole, root),
        "dd": dd_ceiling(inputs.whole, root),
    }
    log(f"disk after: {results['disk_after']}")


# -- report ---------------------------------------------------------------------------------


def markdown(results: dict[str, Any]) -> str:
    out = ["## Run\n", report.machine_section(results)]
    summary = results.get("summary") or {}
    ref = summary.get("nginx/put")
    if not ref:
        return "\n".join(out)
    args = results["args"]
    size = human(args["size"])
    part = human(args["part_mib"] * MiB)
    keys = [f"assetd_w{w}" for w in args["workers"]]
    n = ref["runs"]
    pad = " |" * (2 * len(keys) + 1)
    rows = [
        "| Workload | nginx (reference) | "
        + " | ".join(f"assetd --workers {k.removeprefix('assetd_w')}" for k in keys)
        + " | Target | "
        + " | ".join(f"w{k.removeprefix('assetd_w')}" for k in keys)
        + " |",
        "|" + "---|" * (3 + 2 * len(keys)),
    ]
    nginx_put = ref["mib_s"]

    def cells(workload: str, show: Callable[[dict[str, Any]], str]) -> list[str]:
        return [
            show(summary[f"{k}/{workload}"]) if f"{k}/{workload}" in summary else "" for k in keys
        ]

    def versus(s: dict[str, Any]) -> str:
        bad = "" if s["sha256_ok"] in (True, None) else " **SHA-256 mismatch**"
        durable = s["mib_s"] / ref["durable_mib_s"]
        return f"{s['mib_s']} ({s['mib_s'] / nginx_put:.0%}; {durable:.0%} of PUT+fsync){bad}"

    def verdicts(workload: str, ok: Callable[[dict[str, Any]], bool]) -> list[str]:
        return [
            report._verdict(
                ok(summary[f"{k}/{workload}"]) if f"{k}/{workload}" in summary else None
            )
            for k in keys
        ]

    def row(label: str, reference: str, values: list[str], target: str, marks: list[str]) -> None:
        rows.append(
            f"| {label} | {reference} | "
            + " | ".join(values)
            + f" | {target} | "
            + " | ".join(marks)
            + " |"
        )

    info = ["" for _ in keys]
    streams = args["streams"]
    ratio = f"≥ {UPLOAD_RATIO:.0%} of nginx PUT"
    if any(f"{k}/parts" in summary for k in keys):
        row(
            f"**{size} in {part} parts, {streams} streams**, MiB/s (median of {n}; create + "
            "parts + complete, `curl -T` per part)",
            f"{nginx_put} (one PUT)",
            cells("parts", versus),
            ratio,
            verdicts("parts", lambda s: s["mib_s"] >= UPLOAD_RATIO * nginx_put),
        )
        row(
            "(info) of which: parts alone MiB/s; complete s; create s",
            f"{summary['nginx/parts']['mib_s']} ({streams} streams)"
            if "nginx/parts" in summary
            else "",
            cells("parts", lambda s: f"{s['parts_mib_s']}; {s['complete_s']}; {s['create_s']}"),
            "(info)",
            info,
        )
    if any(f"{k}/tus" in summary for k in keys):
        chunk = human(args["tus_chunk_mib"] * MiB)
        row(
            f"**{size} by tus**, MiB/s (median of {n}; tuspy, {chunk} PATCHes, one stream)",
            f"{nginx_put}",
            cells("tus", versus),
            ratio,
            verdicts("tus", lambda s: s["mib_s"] >= UPLOAD_RATIO * nginx_put),
        )
        row(
            "(info) tus (tuspy): last PATCH s (its time beyond its bytes' share: the version)",
            "",
            cells("tus", lambda s: f"{s['last_patch_s']} (+{s['last_patch_extra_s']})"),
            "(info)",
            info,
        )
    if any(f"{k}/tus_curl" in summary for k in keys):
        row(
            f"(info) {size} by tus with curl, {part} PATCHes (nginx's client), MiB/s; "
            "last PATCH s (+ beyond its share)",
            f"{nginx_put}",
            cells(
                "tus_curl",
                lambda s: f"{versus(s)}; {s['last_patch_s']} (+{s['last_patch_extra_s']})",
            ),
            "(info)",
            info,
        )
    for workload, label in (("parts", "parts"), ("tus", "tus (tuspy)"), ("tus_curl", "tus (curl)")):
        if not any(f"{k}/{workload}" in summary for k in keys):
            continue
        target = f"< {RSS_LIMIT_MIB} MiB" if workload != "tus_curl" else "(info)"
        marks = (
            verdicts(workload, lambda s: s["rss_growth_mib"] < RSS_LIMIT_MIB)
            if workload != "tus_curl"
            else info
        )
        row(
            f"server RSS growth, {label} upload, MiB (max of runs, worst process: VmHWM after − "
            "VmRSS before; 50 ms samples)",
            f"{ref['rss_growth_mib']}",
            cells(
                workload,
                lambda s: (
                    f"{s['rss_growth_mib']} ({s['rss_sampled_growth_mib']}; "
                    f"before {s['rss_before_tree_mib']} tree)"
                    + ("" if s["hwm_reset"] else " HWM not reset")
                ),
            ),
            target,
            marks,
        )

    def cpu(s: dict[str, Any]) -> str:
        return f"{s['server_cpu_s']} ({s['server_main_thread_cpu_s']}) / {s['client_cpu_s']}"

    for workload, label in (("parts", "parts"), ("tus", "tus (tuspy)"), ("tus_curl", "tus (curl)")):
        if any(f"{k}/{workload}" in summary for k in keys):
            nginx_ref = {"parts": "nginx/parts"}.get(workload, "nginx/put")
            row(
                f"(info) CPU s per {label} upload: server (event-loop thread) / client, median",
                cpu(summary[nginx_ref]) if nginx_ref in summary else cpu(ref),
                cells(workload, cpu),
                "(info)",
                info,
            )
    rows.append(
        f"| (info) nginx PUT then fsync of the stored file, MiB/s | {ref['durable_mib_s']} |" + pad
    )
    disk, after = results.get("disk") or {}, results.get("disk_after") or {}
    if disk:

        def ceiling(d: dict[str, Any]) -> str:
            py, dd = d["python"], d["dd"]
            return f"{py['write_mib_s']} / {py['write_fsync_mib_s']} / {dd['mib_s']}"

        rows.append(
            "| (ceiling) disk, same filesystem: write() / write()+fsync() / `dd bs=4M "
            f"conv=fsync`, MiB/s, before; after | {ceiling(disk)}; "
            f"{ceiling(after) if after else '-'} |" + pad
        )
    out += [f"\n## Big uploads ({size}, {n} runs)\n", "\n".join(rows) + "\n"]
    per_run = [
        "| run | server | workload | MiB/s | s | RSS growth MiB | server CPU s | client CPU s "
        "| others' load (cores) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for m in results["measurements"]:
        per_run.append(
            f"| {m['run']} | {m['target']} | {m['workload']} | {m['mib_s']} | {m['seconds']} | "
            f"{m['rss']['max_growth_mib']} | {m['server_cpu_s']} | {m['client_cpu_s']} | "
            f"{m['foreign_cpu_cores']} |"
        )
    out += ["\n### Every measurement\n", "\n".join(per_run) + "\n"]
    return "\n".join(out)


def main() -> None:
    parser = argparse.ArgumentParser(
        description="Big uploads (parts and tus) beside nginx's PUT",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__,
    )
    parser.add_argument("--size", type=parse_size, default=2 * GiB, help="e.g. 2GiB, 256MiB")
    parser.add_argument("--runs", type=int, default=3, help="repetitions (medians reported)")
    parser.add_argument("--part-mib", type=int, default=100, help="part size, MiB")
    parser.add_argument("--streams", type=int, default=4, help="parallel part uploads")
    parser.add_argument("--tus-chunk-mib", type=int, default=100, help="bytes per tus PATCH")
    parser.add_argument(
        "--workers",
        default=[1, 2],
        type=lambda s: [int(p) for p in s.split(",")],
        help="assetd --workers values (default 1,2)",
    )
    parser.add_argument(
        "--only",
        default=list(WORKLOADS),
        type=lambda s: [p.strip() for p in s.split(",") if p.strip()],
        help=f"subset of {','.join(WORKLOADS)} (nginx's single PUT always runs)",
    )
    parser.add_argument(
        "--install-nginx", action="store_true", help="apt-get install nginx when it is missing"
    )
    parser.add_argument("--tmp-dir", default=None, help="parent of the scratch dir (same disk!)")
    parser.add_argument("--keep", action="store_true", help="keep the scratch dir")
    args = parser.parse_args()
    unknown = set(args.only) - set(WORKLOADS)
    if unknown:
        parser.error(f"unknown workloads: {', '.join(sorted(unknown))}")
    if args.runs < 1 or args.streams < 1 or not 5 <= args.part_mib <= 5 * 1024:
        parser.error("--runs and --streams must be ≥ 1, --part-mib 5..5120")

    log_path = start_log("uploads")
    root = Path(tempfile.mkdtemp(prefix="assetd-uploads-", dir=args.tmp_dir))
    os.chmod(root, 0o755)  # nginx workers (www-data) traverse it
    log(f"scratch dir {root}")
    started = time.time()
    results: dict[str, Any] = {
        "machine": machine_info(),
        "args": dict(vars(args)),
        "command": "python -m bench.uploads " + " ".join(sys.argv[1:]),
        "measurements": [],
    }
    try:
        run(args, root, results)
    finally:
        results["elapsed_s"] = round(time.time() - started, 1)
        results["summary"] = summarize(results["measurements"])
        text = markdown(results)
        json_path, md_path = write_results("uploads", results, text)
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)
    print(text)
    log(f"results: {json_path}, {md_path} and {log_path} ({results['elapsed_s']} s)")


if __name__ == "__main__":
    main()
