"""A/B of 10 KiB uploads (raw client, concurrency 8) between source trees, interleaved.

    .venv/bin/python -m bench.ab_uploads TREE[,TREE…] [--workers 1] [--count 1500] [--rounds 2]

A TREE is a folder holding the `assetd` package, e.g. an export of another commit
(`mkdir /tmp/base && git archive HEAD~3 src | tar -x -C /tmp/base` → `/tmp/base/src`) or
`src` itself. Each round starts a fresh `assetd serve` from every tree in turn (PYTHONPATH),
warms it with 200 uploads, then times `--count` uploads, so that the trees see the same disk
and the same neighbours. `--env '{"ASSETD_JOBS_IN_PROCESS": "false"}'` adds settings;
`--pyspy FILE` records the last tree's server (all threads, GIL holders) with py-spy.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import subprocess
import tempfile
from pathlib import Path
from typing import Any

from bench.common import (
    API_KEY,
    HOST,
    VENV_BIN,
    AssetdServer,
    RawConnection,
    log,
    process_tree,
    run_fixed_count,
    stop_process,
)

UPLOAD_HEADERS = (
    f"Authorization: Bearer {API_KEY}\r\n".encode() + b"Content-Type: application/octet-stream\r\n"
)


async def uploads(server: AssetdServer, count: int, tag: str) -> dict[str, Any]:
    conns = [RawConnection(HOST, server.port) for _ in range(8)]

    async def call(worker: int, i: int) -> int:
        path = f"/v1/assets?filename={tag}-{i}.bin"
        status, _ = await conns[worker].request("POST", path, UPLOAD_HEADERS, os.urandom(10240))
        return status

    assert server.proc is not None
    pid = server.proc.pid
    try:
        return (await run_fixed_count(count, 8, call, lambda: process_tree(pid))).summary()
    finally:
        for conn in conns:
            await conn.close()


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("trees", type=lambda s: s.split(","))
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--count", type=int, default=1500)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--env", type=json.loads, default={})
    parser.add_argument("--pyspy", default=None)
    args = parser.parse_args()

    results: dict[str, list[dict[str, Any]]] = {tree: [] for tree in args.trees}
    for _ in range(args.rounds):
        for tree in args.trees:
            data_dir = Path(tempfile.mkdtemp(prefix="assetd-ab-")) / "data"
            server = AssetdServer(data_dir, workers=args.workers, extra_env=args.env)
            os.environ["PYTHONPATH"] = str(Path(tree).resolve())
            server.start()
            spy = None
            try:
                await uploads(server, 200, "warm")
                if args.pyspy and tree == args.trees[-1]:
                    assert server.proc is not None
                    spy = subprocess.Popen(
                        [str(VENV_BIN / "py-spy"), "record", "--pid", str(server.proc.pid)]
                        + ["--subprocesses", "--format", "raw", "--rate", "200", "--gil"]
                        + ["--nonblocking", "--threads", "--output", args.pyspy],
                        stdout=subprocess.DEVNULL,
                        stderr=subprocess.DEVNULL,
                    )
                    await asyncio.sleep(1)
                result = await uploads(server, args.count, "m")
            finally:
                if spy is not None:
                    spy.send_signal(signal.SIGINT)
                    spy.wait()
                assert server.proc is not None
                stop_process(server.proc)
            results[tree].append(result)
            log(
                f"{tree}: {result['per_s']}/s, server CPU {result['server_cpu_ms_per_req']} "
                f"ms/upload, p95 {result['p95_ms']} ms, errors {result['errors']}, "
                f"others' load {result['foreign_cpu_cores']} cores"
            )
    for tree, runs in results.items():
        rates = ", ".join(str(r["per_s"]) for r in runs)
        cpu = ", ".join(str(r["server_cpu_ms_per_req"]) for r in runs)
        print(f"{tree}: uploads/s {rates}; server CPU ms/upload {cpu}")


if __name__ == "__main__":
    asyncio.run(main())
