"""Summarize a py-spy raw profile: hotspots by thread, package and function.

    py-spy record --pid PID --format raw --gil --threads --full-filenames --nonblocking -o out.txt
    .venv/bin/python -m bench.profile out.txt [--top 25]

Record with `--gil` so that a sample is "Python code holding the GIL" (idle waits and C code
that released the GIL, like SQLite's engine or a write(), do not count). Self time is the leaf
frame; inclusive time counts a function once per stack it is on. Packages are read from the
file path (site-packages/<pkg>, src/assetd/<module>, stdlib). Frames every request goes
through (start-up, the event loop, the middleware chain) are left out of the inclusive list.
"""

from __future__ import annotations

import argparse
import re
from collections import Counter
from pathlib import Path
from typing import Any

_FRAME = re.compile(r"^(?P<name>.*) \((?P<file>[^()]*?)(?::(?P<line>\d+))?\)$")
_THREAD = re.compile(r"^thread \((?P<tid>\d+)\): ?(?P<name>.*)$")
_BORING = re.compile(
    r"^(<module>|main|serve|run|asyncio_run|Runner\.run|Server\.run|Server\.serve|"
    r"Thread\._bootstrap(_inner)?|Thread\.run|Typer.*|Command.*|Context\.invoke|_main|"
    r"TyperGroup.*|get_callback.*|.*Middleware.*__call__|FastAPI\.__call__|"
    r"Starlette\.__call__|RequestResponseCycle\.run_asgi|wrap_app_handling_exceptions.*|"
    r"Router\.__call__|APIRouter\.(app|handle)|_IncludedRouter\..*|APIRoute\.handle|"
    r"request_response\..*|get_request_handler\..*)$"
)


def package_of(filename: str) -> str:
    if "site-packages/" in filename:
        rest = filename.split("site-packages/", 1)[1]
        return rest.split("/", 1)[0].removesuffix(".py")
    if "/src/assetd/" in filename or filename.startswith("assetd/"):
        rest = filename.split("assetd/", 1)[1]
        return "assetd." + rest.split("/", 1)[0].removesuffix(".py")
    if "/lib/python3" in filename:
        rest = filename.split("/lib/python3", 1)[1].split("/", 1)[1]
        return "stdlib." + rest.split("/", 1)[0].removesuffix(".py")
    return filename.rsplit("/", 1)[-1] or "?"


def _parse(frame: str) -> tuple[str, str]:
    match = _FRAME.match(frame.strip())
    if match is None:
        return frame.strip(), "?"
    return match["name"], match["file"]


def summarize(path: Path, top: int = 25) -> dict[str, Any]:
    self_fn: Counter[str] = Counter()
    incl_fn: Counter[str] = Counter()
    self_pkg: Counter[str] = Counter()
    incl_pkg: Counter[str] = Counter()
    threads: Counter[str] = Counter()
    total = 0
    for line in path.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        parts = stack.split(";")
        thread = _THREAD.match(parts[0])
        if thread is not None:
            parts = parts[1:]
        frames = [_parse(f) for f in parts if f]
        if not frames:
            continue
        total += count
        if thread is not None:
            threads[re.sub(r"\d+", "N", thread["name"]) or "?"] += count
        name, filename = frames[-1]
        self_fn[f"{name} [{package_of(filename)}]"] += count
        self_pkg[package_of(filename)] += count
        for key in {f"{n} [{package_of(f)}]" for n, f in frames if not _BORING.match(n)}:
            incl_fn[key] += count
        for pkg in {package_of(f) for _, f in frames}:
            incl_pkg[pkg] += count

    def pct(counter: Counter[str]) -> list[tuple[str, float]]:
        return [(k, round(100 * v / total, 1)) for k, v in counter.most_common(top)]

    return {
        "samples": total,
        "by_thread_pct": pct(threads),
        "self_by_function_pct": pct(self_fn),
        "self_by_package_pct": pct(self_pkg),
        "inclusive_by_function_pct": pct(incl_fn),
        "inclusive_by_package_pct": pct(incl_pkg),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("file", type=Path)
    parser.add_argument("--top", type=int, default=25)
    args = parser.parse_args()
    summary = summarize(args.file, args.top)
    for key, rows in summary.items():
        if key == "samples":
            print(f"samples: {rows}")
            continue
        print(f"\n{key}:")
        for name, share in rows:
            print(f"  {share:5.1f}  {name}")


if __name__ == "__main__":
    main()
