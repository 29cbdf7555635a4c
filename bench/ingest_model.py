"""A model of assetd's upload ingest, without the network: how fast can 1 MiB batches be
hashed (sha256 + md5) and written + fsynced, in turn in one thread (what assetd's Ingest does:
`_absorb` hashes then writes each batch) or overlapped in several threads?

    .venv/bin/python -m bench.ingest_model [--mib 512] [--rounds 2]

Every variant writes the same number of fresh bytes to the same filesystem and fsyncs at the
end, after `sync` and with the variants interleaved, so the disk's drift hits them alike.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import queue
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from statistics import median

from bench.common import MiB, wait_quiet

BATCH = MiB


def _batches(total_mib: int) -> list[bytes]:
    pool = [os.urandom(BATCH) for _ in range(min(64, total_mib))]
    return [pool[i % len(pool)] for i in range(total_mib)]


def write_only(path: Path, batches: list[bytes]) -> None:
    with open(path, "wb") as handle:
        for batch in batches:
            handle.write(batch)
        handle.flush()
        os.fsync(handle.fileno())


def in_turn(path: Path, batches: list[bytes]) -> None:
    """assetd today: one worker thread per batch does sha256, md5, write; the producer waits
    for the previous batch before handing over the next (one batch in flight)."""
    sha, md5 = hashlib.sha256(), hashlib.md5(usedforsecurity=False)
    with open(path, "wb") as handle:

        def absorb(batch: bytes) -> None:
            sha.update(batch)
            md5.update(batch)
            handle.write(batch)

        pending: threading.Thread | None = None
        for batch in batches:
            if pending is not None:
                pending.join()
            pending = threading.Thread(target=absorb, args=(batch,))
            pending.start()
        if pending is not None:
            pending.join()
        handle.flush()
        os.fsync(handle.fileno())


def _pipeline(path: Path, batches: list[bytes], stages: list[Callable[[bytes], None]]) -> None:
    queues: list[queue.Queue[bytes | None]] = [queue.Queue(maxsize=4) for _ in stages]

    def run(stage: Callable[[bytes], None], q: queue.Queue[bytes | None]) -> None:
        while (item := q.get()) is not None:
            stage(item)

    pairs = zip(stages, queues, strict=True)
    threads = [threading.Thread(target=run, args=pair) for pair in pairs]
    for thread in threads:
        thread.start()
    for batch in batches:
        for q in queues:
            q.put(batch)
    for q in queues:
        q.put(None)
    for thread in threads:
        thread.join()


def overlapped_2(path: Path, batches: list[bytes]) -> None:
    """write in one thread, sha256 then md5 in another, concurrently."""
    sha, md5 = hashlib.sha256(), hashlib.md5(usedforsecurity=False)
    with open(path, "wb") as handle:

        def hash_both(batch: bytes) -> None:
            sha.update(batch)
            md5.update(batch)

        _pipeline(path, batches, [handle.write, hash_both])
        handle.flush()
        os.fsync(handle.fileno())


def overlapped_3(path: Path, batches: list[bytes]) -> None:
    """write, sha256 and md5 each in its own thread, concurrently."""
    sha, md5 = hashlib.sha256(), hashlib.md5(usedforsecurity=False)
    with open(path, "wb") as handle:
        _pipeline(path, batches, [handle.write, sha.update, md5.update])
        handle.flush()
        os.fsync(handle.fileno())


def sha256_only_overlapped(path: Path, batches: list[bytes]) -> None:
    """write in one thread, sha256 only (no md5) in another."""
    sha = hashlib.sha256()
    with open(path, "wb") as handle:
        _pipeline(path, batches, [handle.write, sha.update])
        handle.flush()
        os.fsync(handle.fileno())


VARIANTS: dict[str, Callable[[Path, list[bytes]], None]] = {
    "write + fsync only (ceiling)": write_only,
    "sha256, md5, write in turn, one batch in flight (assetd today)": in_turn,
    "write || (sha256 then md5)": overlapped_2,
    "write || sha256 || md5": overlapped_3,
    "write || sha256 (no md5)": sha256_only_overlapped,
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mib", type=int, default=512)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--tmp-dir", default=None)
    args = parser.parse_args()
    batches = _batches(args.mib)
    speeds: dict[str, list[float]] = {name: [] for name in VARIANTS}
    with tempfile.TemporaryDirectory(prefix="assetd-ingest-", dir=args.tmp_dir) as tmp:
        for _ in range(args.rounds):
            for name, variant in VARIANTS.items():
                path = Path(tmp) / "out.bin"
                os.sync()
                wait_quiet()
                started = time.perf_counter()
                variant(path, batches)
                speeds[name].append(args.mib / (time.perf_counter() - started))
                path.unlink()
    print(
        json.dumps(
            {
                name: {"median_mib_s": round(median(v), 1), "runs": [round(x, 1) for x in v]}
                for name, v in speeds.items()
            },
            indent=1,
        )
    )


if __name__ == "__main__":
    main()
