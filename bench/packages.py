"""Packages (issue 5): import report, install and export of a package of 1,000 assets
(100 MiB of content), in seconds and server RSS, beside what the same bytes cost the disk and
zipfile alone, measured in the same run.

    flock /tmp/assetd-bench.lock .venv/bin/python -m bench.packages            # SQLite (~2-4 min)
    flock /tmp/assetd-bench.lock .venv/bin/python -m bench.packages \\
        --database-url postgresql://postgres@127.0.0.1:5432/assetd_bench_pkg   # PostgreSQL
    ... --assets 200 --total-mib 20                                            # smoke run
    ... --profile      # py-spy (all threads, not only the GIL holder) during the timed phases

The package (made once per invocation in the scratch dir, same disk; its creation is timed as
info): `--assets` entries whose files add up to exactly `--total-mib` MiB, from a fixed seed:

- 35% images: real JPEGs made with pyvips (a gradient + noise, 160-1920 px wide, Q80-90,
  ~2-700 KB), stored in the zip (not deflated);
- 25% documents: text (.txt .md .csv .json, words from a small vocabulary, deflated) and
  office-like binaries (.docx .xlsx .pptx .odt, random bytes, stored);
- 15% scripts (.py .sh .js .lua, generated source text, deflated);
- 25% binaries (.bin .dat .so .wasm .pak .mp3 .wav, random bytes, stored) whose lognormal
  sizes take whatever the other files leave of the total (a few MiB each, up to 12 MiB).

Text sizes are lognormal too (median ~8 KB). Five collections: every entry is in
"Release 2026" (the export selects it), and in one of four by kind. ~15% of the entries
depend on 1-3 earlier entries (no cycles). Entry and collection ids are assetd ids (24 hex),
as in a package exported by another assetd, so install keeps them.

Phases, against a fresh `assetd serve --workers 1` (default settings: SQLite and the local
blob store in a new data dir, or `--database-url`, whose database is dropped and created
first), each after `sync` and a wait for a quiet machine, each timed by the wall clock:

1. upload + import report: `curl -T pkg.zip -X POST /v1/packages?filename=...` (the raw body,
   streamed); the answer (201) holds the report; READY and 1,000 CREATED are checked.
2. install: `POST /v1/packages/{id}/install` `{}` (httpx); status INSTALLED is checked.
3. install again: the same call; nothing changes (UNCHANGED everywhere).
4. export: `POST /v1/packages/export {"collectionId": <Release 2026>}` with `curl -o` to a file
   (streamed); the zip is then checked (manifest of 1,000 entries, every member's SHA-256).
5. (info) the exported zip uploaded into a second tenant (`assetd tenant create`, `assetd key
   create`): its report must be READY with every entry and collection CREATED. Timed.
6. (info) the original zip uploaded as a plain asset into the second tenant (`POST /v1/assets`,
   raw body): what receiving, hashing and storing 100 MiB costs without any package work.

Ceilings, measured in the same run on the package zip (page cache warm, after `sync`): copy
to a new file on the same disk (then its fsync), SHA-256 and SHA-256+MD5 of the file,
`unzip -tqq`, and Python's zipfile reading every member (CRC-checked) and hashing it with
SHA-256 (what the import report must do at least).

RSS: before each phase VmHWM of the server process is reset to its VmRSS (`echo 5 >
/proc/PID/clear_refs`); growth = VmHWM after - VmRSS before; VmRSS is also sampled every 50 ms
(tree peak). CPU: server utime+stime from /proc (all threads, and its event-loop thread).

Output: bench/results/packages-<UTC>.{json,md,log} (gitignored); the table is also printed.
Only 127.0.0.1 is contacted. The scratch dir (package, exports, data dir) is removed.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import random
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from bench import report
from bench.common import (
    API_KEY,
    HOST,
    RESULTS_DIR,
    VENV_BIN,
    AssetdServer,
    Interference,
    MiB,
    PySpy,
    RssSampler,
    log,
    machine_info,
    read_status,
    start_log,
    wait_quiet,
    write_results,
)
from bench.profile import summarize as summarize_profile
from bench.uploads import peak_rss, reset_peak_rss

PG_DEFAULT = f"postgresql://postgres@{HOST}:5432/assetd_bench_pkg"
TENANT2 = "bench2"
ALL_COLLECTION = "Release 2026"
KIND_COLLECTIONS = {
    "image": "Images",
    "document": "Documents",
    "script": "Scripts",
    "binary": "Binaries",
}
WORDS = (
    "asset package release build image render texture model brand logo campaign spring "
    "summer autumn winter north south east west data report summary table figure chart "
    "client server request response token cache index query filter sort page limit offset "
    "alpha beta gamma delta version install export import manifest entry collection tenant "
    "the a of and to in is for on with as by at from that this it be are was not or"
).split()


def mib_s(size: int, seconds: float) -> float:
    return round(size / MiB / seconds, 1) if seconds > 0 else 0.0


# -- the package ----------------------------------------------------------------------------


def hex_id(rnd: random.Random) -> str:
    return f"{rnd.getrandbits(96):024x}"


def jpeg_bytes(rnd: random.Random, seed: int) -> bytes:
    """A real JPEG: a colour gradient with noise; 160-2048 px wide."""
    import pyvips

    width = rnd.choice([160, 240, 320, 320, 480, 640, 640, 800, 1024, 1280, 1920])
    height = int(width * rnd.choice([0.5625, 0.666, 0.75, 1.0]))
    xy = pyvips.Image.xyz(width, height)
    start = [rnd.uniform(0, 255) for _ in range(3)]
    end = [rnd.uniform(0, 255) for _ in range(3)]
    t = (xy[0] * (rnd.uniform(0.3, 1) / width) + xy[1] * (rnd.uniform(0.3, 1) / height)) / 2
    gradient = t * [e - s for s, e in zip(start, end, strict=True)] + start
    noise = pyvips.Image.gaussnoise(width, height, sigma=rnd.uniform(2, 10), mean=0, seed=seed)
    image = (gradient + noise).cast("uchar").copy(interpretation="srgb")
    return bytes(image.jpegsave_buffer(Q=rnd.randint(80, 90), keep="none"))


def text_bytes(rnd: random.Random, size: int, ext: str) -> bytes:
    """About `size` bytes of plausible text or source for the extension."""
    lines: list[str] = []
    total = 0
    n = 0
    while total < size:
        words = rnd.choices(WORDS, k=rnd.randint(4, 14))
        n += 1
        if ext == "csv":
            line = ",".join([str(n), *words[:4], str(rnd.randint(0, 10**6))])
        elif ext == "json":
            line = json.dumps({"n": n, "key": words[0], "value": " ".join(words[1:])}) + ","
        elif ext == "py":
            line = f"def {words[0]}_{n}(x):\n    return x * {n} + len({' '.join(words[1:])!r})\n"
        elif ext == "sh":
            line = f'echo "{" ".join(words)}" >> "${{LOG:-/tmp/{words[0]}.log}}"'
        elif ext == "js":
            line = f"export const {words[0]}{n} = ({words[1]}) => `{' '.join(words[2:])}`;"
        elif ext == "lua":
            line = f'local {words[0]}_{n} = function(x) return x .. "{" ".join(words[1:])}" end'
        elif ext == "md" and n % 12 == 1:
            line = f"\n## {' '.join(words[:4]).title()}\n"
        else:
            line = " ".join(words).capitalize() + "."
        lines.append(line)
        total += len(line) + 1
    return ("\n".join(lines) + "\n").encode()[:size]


def lognormal_size(rnd: random.Random, median: float, sigma: float, low: int, high: int) -> int:
    return int(min(high, max(low, rnd.lognormvariate(0, sigma) * median)))


def build_package(path: Path, count: int, total_bytes: int, seed: int) -> dict[str, Any]:
    """Write the package zip (members one at a time, never the whole package in memory)."""
    rnd = random.Random(seed)
    started = time.perf_counter()
    kinds = (
        ["image"] * round(count * 0.35)
        + ["document"] * round(count * 0.25)
        + ["script"] * round(count * 0.15)
    )
    kinds += ["binary"] * (count - len(kinds))
    rnd.shuffle(kinds)
    collection_ids = {name: hex_id(rnd) for name in [ALL_COLLECTION, *KIND_COLLECTIONS.values()]}

    # Sizes first: images and text are what they are; the random binaries fill up the rest.
    plans: list[dict[str, Any]] = []
    fixed = 0
    for i, kind in enumerate(kinds):
        plan: dict[str, Any] = {"i": i, "kind": kind, "id": hex_id(rnd)}
        if kind == "image":
            plan["ext"] = rnd.choice(["jpg", "jpg", "jpeg"])
            plan["data"] = jpeg_bytes(rnd, seed * 100_000 + i)
            plan["size"] = len(plan["data"])
            plan["type"] = "image"
        elif kind == "document":
            plan["ext"] = rnd.choice(["txt", "md", "csv", "json", "docx", "xlsx", "pptx", "odt"])
            plan["text"] = plan["ext"] in ("txt", "md", "csv", "json")
            plan["size"] = (
                lognormal_size(rnd, 8_000, 1.3, 200, 2 * MiB)
                if plan["text"]
                else lognormal_size(rnd, 60_000, 1.2, 4_000, 4 * MiB)
            )
            plan["type"] = "document"
        elif kind == "script":
            plan["ext"] = rnd.choice(["py", "sh", "js", "lua"])
            plan["text"] = True
            plan["size"] = lognormal_size(rnd, 6_000, 1.2, 100, 1 * MiB)
            plan["type"] = "script"
        else:
            plan["ext"] = rnd.choice(["bin", "dat", "so", "wasm", "pak", "mp3", "wav"])
            plan["type"] = {"mp3": "audio", "wav": "audio"}.get(plan["ext"], "other")
            plan["weight"] = rnd.lognormvariate(0, 1.4)
        if "size" in plan:
            fixed += plan["size"]
        plans.append(plan)
    binaries = [p for p in plans if p["kind"] == "binary"]
    left = total_bytes - fixed
    if left < len(binaries) * 1024:
        raise SystemExit(
            f"images and text take {fixed} bytes of {total_bytes}: raise --total-mib or lower "
            "--assets"
        )
    cap = 12 * MiB
    weights = sum(p["weight"] for p in binaries)
    for p in binaries:
        p["size"] = max(1024, min(cap, int(left * p["weight"] / weights)))
    # Spread the rounding (and anything the cap cut off) over the binaries under the cap.
    for _ in range(100):
        diff = total_bytes - sum(p["size"] for p in plans)
        if diff == 0:
            break
        room = [p for p in binaries if (p["size"] < cap if diff > 0 else p["size"] > 1024)]
        step = diff // len(room) if abs(diff) >= len(room) else (1 if diff > 0 else -1)
        for p in room[: abs(diff) if abs(step) == 1 else len(room)]:
            p["size"] = max(1024, min(cap, p["size"] + step))
    assert sum(p["size"] for p in plans) == total_bytes, "sizes do not add up"

    entries: list[dict[str, Any]] = []
    stored = deflated = 0
    with zipfile.ZipFile(path, "w", allowZip64=True) as archive:
        for plan in plans:
            if "data" in plan:
                data = plan.pop("data")
            elif plan.get("text"):
                data = text_bytes(rnd, plan["size"], plan["ext"])
            else:
                data = rnd.randbytes(plan["size"])
            compress = plan.get("text", False)
            name = f"{rnd.choice(WORDS)}-{rnd.choice(WORDS)}-{plan['i']:04d}.{plan['ext']}"
            member = f"files/{plan['kind']}s/{name}"
            info = zipfile.ZipInfo(member, date_time=(2026, 11, 1, 12, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED if compress else zipfile.ZIP_STORED
            info.external_attr = 0o644 << 16
            archive.writestr(info, data)
            if compress:
                deflated += len(data)
            else:
                stored += len(data)
            earlier = [e["id"] for e in entries]
            depends = (
                rnd.sample(earlier, k=min(len(earlier), rnd.randint(1, 3)))
                if earlier and rnd.random() < 0.15
                else []
            )
            entries.append(
                {
                    "id": plan["id"],
                    "type": plan["type"],
                    "name": name.rsplit(".", 1)[0].replace("-", " "),
                    "description": f"bench asset {plan['i']} ({plan['kind']})",
                    "tags": rnd.sample(WORDS[:40], k=rnd.randint(0, 4)),
                    "metadata": {"project": rnd.choice(WORDS[:12]), "rating": rnd.randint(1, 5)},
                    "file": {
                        "path": member,
                        "sha256": hashlib.sha256(data).hexdigest(),
                        "size": len(data),
                        "filename": name,
                    },
                    "collections": [
                        collection_ids[ALL_COLLECTION],
                        collection_ids[KIND_COLLECTIONS[plan["kind"]]],
                    ],
                    "dependsOn": depends,
                }
            )
        manifest = {
            "formatVersion": 1,
            "name": "bench-package",
            "version": "1.0",
            "description": f"{count} assets, {total_bytes} bytes (bench.packages, seed {seed})",
            "collections": [
                {"id": cid, "name": name, "description": f"bench collection {name}"}
                for name, cid in collection_ids.items()
            ],
            "entries": entries,
        }
        manifest_bytes = json.dumps(manifest, indent=1).encode()
        archive.writestr(
            zipfile.ZipInfo("manifest.json", date_time=(2026, 11, 1, 12, 0, 0)),
            manifest_bytes,
            compress_type=zipfile.ZIP_DEFLATED,
        )
    with open(path, "rb+") as handle:
        os.fsync(handle.fileno())
    seconds = time.perf_counter() - started
    by_kind: dict[str, dict[str, int]] = {}
    for plan in plans:
        k = by_kind.setdefault(plan["kind"], {"count": 0, "bytes": 0})
        k["count"] += 1
        k["bytes"] += plan["size"]
    sizes = sorted(p["size"] for p in plans)
    return {
        "path": str(path),
        "seed": seed,
        "entries": count,
        "collections": len(collection_ids),
        "all_collection_id": collection_ids[ALL_COLLECTION],
        "content_bytes": total_bytes,
        "stored_bytes": stored,
        "deflated_input_bytes": deflated,
        "zip_bytes": path.stat().st_size,
        "manifest_bytes": len(manifest_bytes),
        "by_kind": by_kind,
        "size_p50": sizes[len(sizes) // 2],
        "size_p90": sizes[int(len(sizes) * 0.9)],
        "size_max": sizes[-1],
        "entries_with_dependencies": sum(1 for e in entries if e["dependsOn"]),
        "dependency_links": sum(len(e["dependsOn"]) for e in entries),
        "create_seconds": round(seconds, 3),
    }


# -- ceilings -------------------------------------------------------------------------------


def _timed(action: Callable[[], Any]) -> tuple[float, Any]:
    started = time.perf_counter()
    value = action()
    return time.perf_counter() - started, value


def ceilings(package: Path, scratch: Path) -> dict[str, Any]:
    """What the bytes cost without assetd: the disk, hashing, unzip and zipfile."""
    size = package.stat().st_size
    settle()
    hashlib.sha256(package.read_bytes())  # page cache warm, like the server's fresh artifact
    target = scratch / "copy.zip"
    started = time.perf_counter()
    with open(package, "rb") as src, open(target, "wb") as dst:
        shutil.copyfileobj(src, dst, MiB)
        dst.flush()
        copied = time.perf_counter()
        os.fsync(dst.fileno())
    synced = time.perf_counter()
    target.unlink()
    copy_s, copy_fsync_s = copied - started, synced - started

    def sha256_file() -> str:
        with open(package, "rb") as handle:
            return hashlib.file_digest(handle, "sha256").hexdigest()

    def sha256_md5_file() -> None:
        sha, md5 = hashlib.sha256(), hashlib.md5(usedforsecurity=False)
        with open(package, "rb") as handle:
            while chunk := handle.read(MiB):
                sha.update(chunk)
                md5.update(chunk)

    def zipfile_hash() -> int:
        members = 0
        with zipfile.ZipFile(package) as archive:
            for info in archive.infolist():
                digest = hashlib.sha256()
                with archive.open(info) as stream:
                    while chunk := stream.read(MiB):
                        digest.update(chunk)
                members += 1
        return members

    sha_s, _ = _timed(sha256_file)
    both_s, _ = _timed(sha256_md5_file)
    unzip_s, done = _timed(
        lambda: subprocess.run(["unzip", "-tqq", str(package)], capture_output=True, check=False)
    )
    if done.returncode != 0:
        raise RuntimeError(f"unzip -t failed: {done.stdout!r} {done.stderr!r}")
    zip_s, members = _timed(zipfile_hash)
    return {
        "zip_bytes": size,
        "copy_s": round(copy_s, 3),
        "copy_mib_s": mib_s(size, copy_s),
        "copy_fsync_s": round(copy_fsync_s, 3),
        "copy_fsync_mib_s": mib_s(size, copy_fsync_s),
        "sha256_s": round(sha_s, 3),
        "sha256_mib_s": mib_s(size, sha_s),
        "sha256_md5_s": round(both_s, 3),
        "unzip_t_s": round(unzip_s, 3),
        "zipfile_read_sha256_s": round(zip_s, 3),
        "zipfile_members": members,
    }


# -- clients --------------------------------------------------------------------------------


def curl_json(args: list[str], url: str, body_out: Path) -> dict[str, Any]:
    """One curl call; its figures (%{json}), the x-asset-count header and the body."""
    if not url.startswith(f"http://{HOST}:"):
        raise RuntimeError(f"refusing a non-loopback URL: {url}")
    cmd = ["curl", "-sS", "-o", str(body_out), "-w", "%{json}\n%header{x-asset-count}", *args]
    done = subprocess.run([*cmd, url], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"curl failed ({done.returncode}): {done.stderr.strip()}")
    first, _, count = done.stdout.partition("\n")
    stats = json.loads(first)
    return {
        "http_code": int(stats["http_code"]),
        "curl_seconds": float(stats["time_total"]),
        "starttransfer_s": float(stats["time_starttransfer"]),
        "bytes_up": int(stats["size_upload"]),
        "bytes_down": int(stats["size_download"]),
        "asset_count_header": count.strip() or None,
    }


def upload_package(base_url: str, key: str, package: Path, scratch: Path) -> dict[str, Any]:
    body = scratch / f"upload-{package.stem}.json"
    result = curl_json(
        [
            "-T",
            str(package),
            "-X",
            "POST",
            "-H",
            "Expect:",
            "-H",
            "Content-Type: application/zip",
            "-H",
            f"Authorization: Bearer {key}",
        ],
        f"{base_url}/v1/packages?filename={package.name}",
        body,
    )
    text = body.read_text(errors="replace")
    if result["http_code"] != 201:
        raise RuntimeError(f"POST /v1/packages: {result['http_code']} {text[:1000]}")
    answer = json.loads(text)
    report_ = answer["report"]
    return {
        **result,
        "package_id": answer["id"],
        "report_status": report_["status"],
        "summary": report_["summary"],
        "blockers": report_.get("blockers", [])[:5],
        "findings": len(report_.get("policyFindings", [])),
        "unresolved": len(report_.get("unresolvedDependencies", [])),
        "response_bytes": len(text),
    }


def upload_asset(base_url: str, key: str, path: Path, scratch: Path) -> dict[str, Any]:
    body = scratch / "upload-asset.json"
    result = curl_json(
        [
            "-T",
            str(path),
            "-X",
            "POST",
            "-H",
            "Expect:",
            "-H",
            "Content-Type: application/octet-stream",
            "-H",
            f"Authorization: Bearer {key}",
        ],
        f"{base_url}/v1/assets?filename=plain-{path.name}",
        body,
    )
    if result["http_code"] != 201:
        raise RuntimeError(f"POST /v1/assets: {result['http_code']} {body.read_text()[:500]}")
    return result


def install(base_url: str, key: str, package_id: str) -> dict[str, Any]:
    with httpx.Client(
        base_url=base_url, headers={"Authorization": f"Bearer {key}"}, timeout=None
    ) as client:
        started = time.perf_counter()
        response = client.post(f"/v1/packages/{package_id}/install", json={})
        seconds = time.perf_counter() - started
    if response.status_code != 200:
        raise RuntimeError(f"install: {response.status_code} {response.text[:2000]}")
    answer = response.json()
    return {
        "http_code": response.status_code,
        "client_seconds": round(seconds, 3),
        "status": answer["status"],
        "summary": answer["report"]["summary"],
    }


def export(base_url: str, key: str, collection_id: str, out: Path) -> dict[str, Any]:
    result = curl_json(
        [
            "-X",
            "POST",
            "-H",
            "Content-Type: application/json",
            "-H",
            f"Authorization: Bearer {key}",
            "--data",
            json.dumps({"collectionId": collection_id, "name": "bench-export"}),
        ],
        f"{base_url}/v1/packages/export",
        out,
    )
    if result["http_code"] != 200:
        raise RuntimeError(f"export: {result['http_code']} {out.read_text()[:1000]}")
    return result


def check_export(path: Path, expected_entries: int) -> dict[str, Any]:
    """The exported zip: its manifest's entries, and every member's bytes against it."""
    with zipfile.ZipFile(path) as archive:
        manifest = json.loads(archive.read("manifest.json"))
        bad = 0
        content = 0
        for entry in manifest["entries"]:
            file = entry.get("file")
            if not file:
                continue
            digest = hashlib.sha256()
            with archive.open(file["path"]) as stream:
                while chunk := stream.read(MiB):
                    digest.update(chunk)
            content += file["size"]
            bad += digest.hexdigest() != file["sha256"]
        members = len(archive.infolist())
    return {
        "entries": len(manifest["entries"]),
        "collections": len(manifest["collections"]),
        "members": members,
        "content_bytes": content,
        "sha256_mismatches": bad,
        "dependency_links": sum(len(e.get("dependsOn", [])) for e in manifest["entries"]),
        "ok": bad == 0 and len(manifest["entries"]) == expected_entries,
    }


def find_collection(base_url: str, key: str, name: str) -> str:
    with httpx.Client(
        base_url=base_url, headers={"Authorization": f"Bearer {key}"}, timeout=60
    ) as client:
        response = client.get("/v1/collections", params={"pageSize": 100})
        response.raise_for_status()
        for item in response.json()["items"]:
            if item["name"] == name:
                return str(item["id"])
    raise RuntimeError(f"no collection named {name!r}")


def second_tenant(server: AssetdServer) -> str:
    """A second tenant with a key that may read, write and install; its secret."""
    env = server.env()
    assetd = str(VENV_BIN / "assetd")
    subprocess.run([assetd, "tenant", "create", TENANT2], env=env, check=True, capture_output=True)
    done = subprocess.run(
        [
            assetd,
            "key",
            "create",
            "--tenant",
            TENANT2,
            "--scope",
            "assets:read",
            "--scope",
            "assets:write",
            "--scope",
            "packages:install",
        ],
        env=env,
        check=True,
        capture_output=True,
        text=True,
    )
    return done.stdout.strip().splitlines()[-1].strip()


# -- measuring a phase ----------------------------------------------------------------------


def settle(pids: Callable[[], list[int]] | None = None) -> None:
    """sync (no writeback from the last phase runs into the next), then wait up to 30 s for
    other people's jobs on the machine to quieten down (their load is recorded either way)."""
    os.sync()
    time.sleep(0.5)
    wait_quiet(pids, max_wait_s=30.0)


def job_states(data_dir: Path, database_url: str | None) -> dict[str, int]:
    """Background jobs (renditions, extraction) by state, read from assetd's database."""
    sql = "SELECT state, count(*) FROM jobs GROUP BY state"
    if database_url:
        done = subprocess.run(
            ["psql", database_url, "-tAF", "\t", "-c", sql],
            capture_output=True,
            text=True,
            check=True,
        )
        rows = [line.split("\t") for line in done.stdout.splitlines() if line.strip()]
        return {state: int(n) for state, n in rows}
    with contextlib.closing(
        sqlite3.connect(f"file:{data_dir / 'assetd.db'}?mode=ro", uri=True, timeout=30)
    ) as conn:
        return {state: int(n) for state, n in conn.execute(sql)}


def wait_for_jobs(
    data_dir: Path, database_url: str | None, timeout: float = 300.0
) -> dict[str, Any]:
    """Until no job is pending or running (install schedules renditions for the images)."""
    started = time.perf_counter()
    while True:
        states = job_states(data_dir, database_url)
        busy = states.get("pending", 0) + states.get("running", 0)
        if busy == 0 or time.perf_counter() - started > timeout:
            return {"states": states, "drained": busy == 0}
        time.sleep(0.5)


class AllThreadsSpy(PySpy):
    """py-spy on every active thread (not only the GIL holder: SQLite and the hashing in
    worker threads release the GIL, and that is where package work happens)."""

    def __enter__(self) -> AllThreadsSpy:
        binary = self.binary()
        assert binary is not None, "py-spy is missing: uv pip install --python .venv/bin/python"
        self.proc = subprocess.Popen(
            [
                binary,
                "record",
                "--pid",
                str(self.pid),
                "--format",
                "raw",
                "--rate",
                "200",
                "--nonblocking",
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


def phase(
    server: AssetdServer,
    name: str,
    action: Callable[[], dict[str, Any]],
    profile_to: Path | None = None,
) -> dict[str, Any]:
    settle(server.pids)
    before = reset_peak_rss(server.pids())
    spy = AllThreadsSpy(server.pids()[0], profile_to) if profile_to else None
    if spy is not None:
        spy.__enter__()
    try:
        with RssSampler(server.pids) as sampler, Interference(server.pids) as noise:
            started = time.perf_counter()
            result = action()
            seconds = time.perf_counter() - started
    finally:
        if spy is not None:
            spy.__exit__(None, None, None)
    rss = peak_rss(before)
    sampled = sampler.report()
    result.update(
        phase=name,
        seconds=round(seconds, 3),
        server_cpu_s=round(noise.server_cpu_s, 2),
        server_main_thread_cpu_s=round(noise.server_main_thread_cpu_s, 2),
        foreign_cpu_cores=noise.foreign_cores,
        rss={
            "before_mib": rss["tree_rss_before_mib"],
            "hwm_mib": max((p["hwm_mib"] for p in rss["per_process"].values()), default=0.0),
            "growth_mib": rss["max_growth_mib"],
            "hwm_reset": rss["hwm_reset"],
            "sampled_peak_mib": sampled["tree_peak_mib"],
            "sampled_growth_mib": sampled["tree_growth_mib"],
        },
    )
    if profile_to is not None and profile_to.exists():
        result["profile"] = {"file": str(profile_to), **summarize_profile(profile_to, top=15)}
    log(
        f"{name}: {result['seconds']} s; RSS peak {result['rss']['hwm_mib']} MiB (growth "
        f"{result['rss']['growth_mib']}); CPU server {result['server_cpu_s']} s (loop "
        f"{result['server_main_thread_cpu_s']}); others' load {result['foreign_cpu_cores']}"
    )
    return result


# -- the run --------------------------------------------------------------------------------


def recreate_pg(url: str, drop_only: bool = False) -> None:
    name = url.rsplit("/", 1)[1]
    admin = url.rsplit("/", 1)[0] + "/postgres"
    statements = [f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)']
    if not drop_only:
        statements.append(f'CREATE DATABASE "{name}"')
    for sql in statements:
        subprocess.run(["psql", admin, "-v", "ON_ERROR_STOP=1", "-qc", sql], check=True)


def run(args: argparse.Namespace, root: Path, results: dict[str, Any]) -> None:
    package = root / "bench-package.zip"
    log(f"building a package of {args.assets} assets, {args.total_mib} MiB of content")
    info = build_package(package, args.assets, args.total_mib * MiB, args.seed)
    results["package"] = info
    log(
        f"package: {info['zip_bytes']} bytes zip in {info['create_seconds']} s; "
        f"{json.dumps(info['by_kind'])}; {info['dependency_links']} dependency links"
    )
    results["ceilings"] = ceilings(package, root)
    log(f"ceilings: {results['ceilings']}")

    if args.database_url:
        recreate_pg(args.database_url)
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    phases: dict[str, Any] = results["phases"]

    def profile(name: str) -> Path | None:
        return RESULTS_DIR / f"pyspy-packages-{name}-{stamp}.txt" if args.profile else None

    data_dir = root / "data"
    try:
        with AssetdServer(data_dir, workers=1, database_url=args.database_url) as server:
            base = server.base_url
            key2 = second_tenant(server)
            log(f"assetd on {base}, pid {server.proc.pid if server.proc else '?'}")
            idle = sum(read_status(pid).get("VmRSS", 0) for pid in server.pids())
            results["server_rss_idle_mib"] = round(idle / 1024, 1)
            up = phase(
                server,
                "upload_report",
                lambda: upload_package(base, API_KEY, package, root),
                profile("upload"),
            )
            up["mib_s"] = mib_s(info["zip_bytes"], up["seconds"])
            phases["upload_report"] = up
            ok = up["report_status"] == "READY" and up["summary"].get("created") == (
                args.assets + info["collections"]
            )
            log(f"report {up['report_status']} {up['summary']} ok={ok}")
            results["checks"]["report_ready_all_created"] = ok
            package_id = up["package_id"]

            first = phase(
                server, "install", lambda: install(base, API_KEY, package_id), profile("install")
            )
            phases["install"] = first
            results["checks"]["installed"] = first["status"] == "INSTALLED"
            # Installed images get rendition jobs, run in the server's job threads: wait for
            # them (timed, info) so that they do not run into the next phases.
            with RssSampler(server.pids) as sampler, Interference(server.pids) as noise:
                started = time.perf_counter()
                jobs = wait_for_jobs(data_dir, args.database_url)
                jobs["seconds"] = round(time.perf_counter() - started, 3)
            jobs["server_cpu_s"] = round(noise.server_cpu_s, 2)
            jobs["rss_sampled_peak_mib"] = sampler.report()["tree_peak_mib"]
            phases["jobs_after_install"] = jobs
            log(f"jobs after install: {jobs}")
            again = phase(
                server,
                "install_again",
                lambda: install(base, API_KEY, package_id),
                profile("install-again"),
            )
            phases["install_again"] = again
            log(f"install summaries: {first['summary']} then {again['summary']}")

            collection_id = find_collection(base, API_KEY, ALL_COLLECTION)
            exported = root / "export.zip"
            out = phase(
                server,
                "export",
                lambda: export(base, API_KEY, collection_id, exported),
                profile("export"),
            )
            out["zip_bytes"] = exported.stat().st_size
            out["mib_s"] = mib_s(out["zip_bytes"], out["seconds"])
            out["content_mib_s"] = mib_s(info["content_bytes"], out["seconds"])
            out["check"] = check_export(exported, args.assets)
            phases["export"] = out
            results["checks"]["export_complete"] = out["check"]["ok"]
            log(f"export: {out['zip_bytes']} bytes, {out['mib_s']} MiB/s; {out['check']}")

            again_up = phase(
                server, "import_export_tenant2", lambda: upload_package(base, key2, exported, root)
            )
            again_up["mib_s"] = mib_s(out["zip_bytes"], again_up["seconds"])
            phases["import_export_tenant2"] = again_up
            summary = again_up["summary"]
            clean = again_up["report_status"] == "READY" and summary.get("created") == (
                args.assets + out["check"]["collections"]
            )
            results["checks"]["export_imports_cleanly"] = clean
            log(f"tenant 2 report {again_up['report_status']} {summary} clean={clean}")

            plain = phase(
                server, "plain_asset_upload", lambda: upload_asset(base, key2, package, root)
            )
            plain["mib_s"] = mib_s(info["zip_bytes"], plain["seconds"])
            phases["plain_asset_upload"] = plain
            results["data_dir_bytes"] = sum(
                f.stat().st_size for f in data_dir.rglob("*") if f.is_file()
            )
    finally:
        if args.database_url:
            recreate_pg(args.database_url, drop_only=True)


# -- report ---------------------------------------------------------------------------------


def markdown(results: dict[str, Any]) -> str:
    # This script waits up to 30 s for a quiet machine, not the 60 s machine_section says.
    machine = report.machine_section(results).replace("up to 60 s", "up to 30 s")
    out = ["## Run\n", machine]
    info = results.get("package")
    phases = results.get("phases") or {}
    if not info:
        return "\n".join(out)
    db = "PostgreSQL" if results["args"].get("database_url") else "SQLite"
    out.append(
        f"\n## Packages: {info['entries']} assets, {info['content_bytes'] / MiB:g} MiB "
        f"({db}, local store, `assetd serve --workers 1`)\n"
    )
    kinds = ", ".join(
        f"{k} {v['count']} ({v['bytes'] / MiB:.1f} MiB)" for k, v in info["by_kind"].items()
    )
    out.append(
        f"Package: {info['zip_bytes'] / MiB:.1f} MiB zip, {info['entries']} entries ({kinds}), "
        f"{info['collections']} collections, {info['dependency_links']} dependsOn links on "
        f"{info['entries_with_dependencies']} entries; file sizes p50 {info['size_p50']} B, "
        f"p90 {info['size_p90']} B, max {info['size_max']} B; built in "
        f"{info['create_seconds']} s (info).\n"
    )
    rows = [
        "| Phase | s | MiB/s | server CPU s (event loop) | server RSS before → peak, MiB "
        "(growth) | result | others' load |",
        "|---|---|---|---|---|---|---|",
    ]
    labels = {
        "upload_report": "(a) upload + import report, `POST /v1/packages` (curl -T, raw body)",
        "install": "(b) install",
        "install_again": "(c) install again (nothing changes)",
        "export": "(d) export by collection, streamed to a file (curl -o)",
        "import_export_tenant2": "(info) the export's upload + report in a second tenant",
        "plain_asset_upload": "(info) the same zip as a plain asset, `POST /v1/assets`",
    }
    for key, label in labels.items():
        p = phases.get(key)
        if not p:
            continue
        if "report_status" in p:
            outcome = f"{p['report_status']}; {_counts(p['summary'])}"
        elif "status" in p:
            outcome = f"{p['status']}; {_counts(p['summary'])}"
        elif "check" in p:
            c = p["check"]
            outcome = (
                f"{c['entries']} entries, {c['collections']} collections, "
                f"{p['zip_bytes'] / MiB:.1f} MiB; SHA-256 mismatches {c['sha256_mismatches']}"
            )
        else:
            outcome = f"HTTP {p.get('http_code')}"
        rss = p["rss"]
        rows.append(
            f"| {label} | {p['seconds']} | {p.get('mib_s', '')} | {p['server_cpu_s']} "
            f"({p['server_main_thread_cpu_s']}) | {rss['before_mib']} → {rss['hwm_mib']} "
            f"(+{rss['growth_mib']}) | {outcome} | {p['foreign_cpu_cores']} |"
        )
    c = results.get("ceilings") or {}
    if c:
        rows.append(
            f"| (ceiling) copy the zip on the same disk; then with fsync | {c['copy_s']}; "
            f"{c['copy_fsync_s']} | {c['copy_mib_s']}; {c['copy_fsync_mib_s']} | | | | |"
        )
        rows.append(
            f"| (ceiling) SHA-256 of the zip; SHA-256 + MD5 | {c['sha256_s']}; "
            f"{c['sha256_md5_s']} | {c['sha256_mib_s']} | | | | |"
        )
        rows.append(
            f"| (ceiling) `unzip -tqq` (CRC of every member) | {c['unzip_t_s']} | | | | | |"
        )
        rows.append(
            f"| (ceiling) Python zipfile: read every member + SHA-256 | "
            f"{c['zipfile_read_sha256_s']} | "
            f"{mib_s(info['content_bytes'], c['zipfile_read_sha256_s'])} | | | | |"
        )
    out.append("\n".join(rows) + "\n")
    jobs = phases.get("jobs_after_install")
    if jobs:
        out.append(
            f"Background jobs after install (renditions of the images, in the server's job "
            f"threads; waited for before the next phase, info): {jobs['states']}, "
            f"{'drained' if jobs['drained'] else '**not drained**'} {jobs['seconds']} s after "
            f"install answered; server CPU {jobs['server_cpu_s']} s; RSS peak "
            f"{jobs['rss_sampled_peak_mib']} MiB (sampled).\n"
        )
    checks = results.get("checks") or {}
    out.append("Checks: " + ", ".join(f"{k} {'yes' if v else '**NO**'}" for k, v in checks.items()))
    profiles = [(k, p["profile"]) for k, p in phases.items() if "profile" in p]
    for key, prof in profiles:
        out.append(f"\n### py-spy, {key} ({prof['samples']} samples, all active threads)\n")
        out.append(
            "self by package: " + ", ".join(f"{n} {s}%" for n, s in prof["self_by_package_pct"][:8])
        )
        out.append("\ninclusive by function:\n")
        out += [f"- {s}% {n}" for n, s in prof["inclusive_by_function_pct"][:12]]
    return "\n".join(out) + "\n"


def _counts(summary: dict[str, int]) -> str:
    return ", ".join(f"{k} {v}" for k, v in summary.items() if v)


def main() -> None:
    parser = argparse.ArgumentParser(
        description="Package import report, install and export",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__,
    )
    parser.add_argument("--assets", type=int, default=1000, help="entries in the package")
    parser.add_argument("--total-mib", type=int, default=100, help="their content, MiB in all")
    parser.add_argument("--seed", type=int, default=5, help="fixes the package's content")
    parser.add_argument(
        "--database-url",
        default=None,
        help=f"PostgreSQL instead of SQLite, e.g. {PG_DEFAULT} (dropped and created)",
    )
    parser.add_argument("--profile", action="store_true", help="py-spy during timed phases")
    parser.add_argument("--tmp-dir", default=None, help="parent of the scratch dir (same disk!)")
    parser.add_argument("--keep", action="store_true", help="keep the scratch dir")
    args = parser.parse_args()
    if args.database_url and not args.database_url.startswith("postgresql://postgres@127.0.0.1"):
        parser.error("--database-url must be postgresql://postgres@127.0.0.1:.../<db> (dropped)")
    if args.database_url and args.database_url.rsplit("/", 1)[1] in ("postgres", "assetd"):
        parser.error("refusing to drop that database")

    log_path = start_log("packages")
    root = Path(tempfile.mkdtemp(prefix="assetd-packages-", dir=args.tmp_dir))
    log(f"scratch dir {root}")
    command = "flock /tmp/assetd-bench.lock .venv/bin/python -m bench.packages " + " ".join(
        sys.argv[1:]
    )
    started = time.time()
    results: dict[str, Any] = {
        "machine": machine_info(),
        "args": dict(vars(args)),
        "command": command.strip(),
        "phases": {},
        "checks": {},
    }
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    try:
        run(args, root, results)
    except Exception as exc:
        results["error"] = f"{type(exc).__name__}: {exc}"
        log(f"FAILED: {results['error']}")
        raise
    finally:
        results["elapsed_s"] = round(time.time() - started, 1)
        text = markdown(results)
        if "error" in results:
            text += f"\n**The run failed:** {results['error']}\n"
        json_path, md_path = write_results("packages", results, text)
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)
        print(text)
        log(f"results: {json_path}, {md_path} and {log_path} ({results['elapsed_s']} s)")


if __name__ == "__main__":
    main()
