"""Markdown tables (figure, reference, target, pass/miss) from a bench results dict."""

from __future__ import annotations

from typing import Any

RSS_LIMIT_MIB = 64
UPLOAD_RATIO = 0.80
DOWNLOAD_RATIO = 0.60
SMALL_UPLOADS_PER_S = 350
SMALL_DOWNLOADS_PER_S = 1000
LIST_P95_MS = {5_000: 5.0, 1_000_000: 20.0}


def _verdict(ok: bool | None) -> str:
    return "n/a" if ok is None else ("**pass**" if ok else "**MISS**")


def _assetd_keys(results: dict[str, Any]) -> list[str]:
    return sorted(k for k in results if k.startswith("assetd_w"))


def _foreign_loads(node: Any) -> list[float]:
    if isinstance(node, dict):
        found = [float(node["foreign_cpu_cores"])] if "foreign_cpu_cores" in node else []
        for value in node.values():
            found += _foreign_loads(value)
        return found
    if isinstance(node, list):
        return [x for item in node for x in _foreign_loads(item)]
    return []


def machine_section(results: dict[str, Any]) -> str:
    m = results.get("machine", {})
    loads = sorted(_foreign_loads({k: v for k, v in results.items() if k != "machine"}))
    lines = [
        f"- Date (UTC): {m.get('date_utc')}; elapsed {results.get('elapsed_s', '?')} s",
        f"- Machine: {m.get('cpus')} x {m.get('cpu')}, {m.get('mem_gib')} GiB RAM, "
        f"{m.get('os')}, kernel {m.get('kernel')}",
        f"- Python {m.get('python')}; {m.get('nginx')}; PostgreSQL {m.get('postgresql')}; "
        f"{m.get('curl', '').split(' (')[0]}",
        f"- assetd commit {m.get('git_commit', '')[:12]}"
        f"{' + uncommitted changes under src/' if m.get('src_modified_vs_commit') else ''}",
        f"- Command: `{results.get('command', '')}`",
    ]
    if loads:
        lines.append(
            f"- CPU used by other processes on the machine during the {len(loads)} measurements "
            f"(cores of 2): median {loads[len(loads) // 2]}, max {loads[-1]} "
            "(each measurement first waits up to 60 s for < 0.3 cores)"
        )
    return "\n".join(lines) + "\n"


def _small_cell(v: dict[str, Any]) -> str:
    return f"{v['per_s']} ({v['p50_ms']} / {v['p95_ms']}; {v['server_cpu_ms_per_req']})"


def transfer_section(results: dict[str, Any]) -> str:
    nginx = results.get("nginx")
    keys = _assetd_keys(results)
    if nginx is None or not keys:
        return ""
    head = (
        "| Workload | nginx (reference) | "
        + " | ".join(f"assetd --workers {results[k]['workers']}" for k in keys)
        + " | Target | "
        + " | ".join(f"w{results[k]['workers']}" for k in keys)
        + " |"
    )
    sep = "|" + "---|" * (3 + 2 * len(keys))
    rows = [head, sep]

    def row(
        label: str, ref: str, values: list[str], target: str, verdicts: list[bool | None]
    ) -> None:
        rows.append(
            f"| {label} | {ref} | "
            + " | ".join(values)
            + f" | {target} | "
            + " | ".join(_verdict(v) for v in verdicts)
            + " |"
        )

    disk = results.get("disk")
    if "big" in nginx:
        nb = nginx["big"]
        ups = [results[k]["big"]["upload_mib_s"] for k in keys]
        row(
            f"512 MiB upload, MiB/s (median of {len(nb['uploads'])}, `curl -T`)",
            f"{nb['upload_mib_s']}",
            [f"{u} ({u / nb['upload_mib_s']:.0%})" for u in ups],
            f"≥ {UPLOAD_RATIO:.0%} of nginx",
            [u >= UPLOAD_RATIO * nb["upload_mib_s"] for u in ups],
        )
        if nb.get("upload_durable_mib_s"):
            rows.append(
                f"| (info) nginx PUT then fsync of the stored file, MiB/s | "
                f"{nb['upload_durable_mib_s']} |" + " |" * (2 * len(keys) + 1)
            )
        downs = [results[k]["big"]["download_mib_s"] for k in keys]
        row(
            "512 MiB download, MiB/s (median, `curl -o /dev/null`)",
            f"{nb['download_mib_s']}",
            [f"{d} ({d / nb['download_mib_s']:.0%})" for d in downs],
            f"≥ {DOWNLOAD_RATIO:.0%} of nginx",
            [d >= DOWNLOAD_RATIO * nb["download_mib_s"] for d in downs],
        )
        rss = [results[k]["big"]["upload_rss_growth_mib"] for k in keys]
        base = [results[k]["big"]["uploads"][0]["rss"]["tree_baseline_mib"] for k in keys]
        row(
            "server RSS growth during the 512 MiB upload, MiB (max of runs; worst process)",
            f"{nb['upload_rss_growth_mib']}",
            [f"{r} (baseline {b} tree)" for r, b in zip(rss, base, strict=True)],
            f"< {RSS_LIMIT_MIB} MiB",
            [r < RSS_LIMIT_MIB for r in rss],
        )

        def cpu(big: dict[str, Any]) -> str:
            return (
                f"{big.get('upload_server_cpu_s')} ({big.get('upload_main_thread_cpu_s')}) / "
                f"{big.get('download_server_cpu_s')} ({big.get('download_main_thread_cpu_s')})"
            )

        row(
            "server CPU s per 512 MiB upload / download (of which the event-loop thread), median",
            cpu(nb),
            [cpu(results[k]["big"]) for k in keys],
            "(info)",
            [None for _ in keys],
        )
        drss = [results[k]["big"]["download_rss_growth_mib"] for k in keys]
        row(
            "server RSS growth during the 512 MiB download, MiB",
            f"{nb['download_rss_growth_mib']}",
            [str(r) for r in drss],
            "(info)",
            [None for _ in keys],
        )
        pad = " |" * (2 * len(keys) + 1)
        after = results.get("disk_after") or {}
        if disk:
            rows.append(
                "| (ceiling) disk, same filesystem, write() / write()+fsync(), MiB/s, "
                f"before / after the transfers | {disk['write_mib_s']} / "
                f"{disk['write_fsync_mib_s']}; {after.get('write_mib_s')} / "
                f"{after.get('write_fsync_mib_s')} |" + pad
            )
        hashing = results.get("hash")
        if hashing:
            rows.append(
                "| (ceiling) hashing in one thread: sha256 / md5 / both in turn, MiB/s | "
                f"{hashing['sha256_mib_s']} / {hashing['md5_mib_s']} / "
                f"{hashing['sha256_then_md5_mib_s']} |" + pad
            )
    if "small" in nginx:
        ns = nginx["small"]
        for client in ("httpx", "raw"):
            for kind, goal in (
                ("upload", SMALL_UPLOADS_PER_S),
                ("download", SMALL_DOWNLOADS_PER_S),
            ):
                key = f"{kind}_{client}"
                conc = 8 if kind == "upload" else 16
                ref = ns[key]
                vals = [results[k]["small"][key] for k in keys]
                row(
                    f"10 KiB {kind}s/s, concurrency {conc}, {client} client "
                    f"(p50 / p95 ms; server CPU ms/req)",
                    _small_cell(ref),
                    [
                        _small_cell(v) + (f" {v['errors']} errors" if v["errors"] else "")
                        for v in vals
                    ],
                    f"≥ {goal:,}/s",
                    [v["per_s"] >= goal and v["errors"] == 0 for v in vals],
                )
    return "\n".join(rows) + "\n"


def list_section(results: dict[str, Any]) -> str:
    data = results.get("list")
    if not data:
        return ""
    rows = [
        "| DB | assets | query | HTTP p50 ms | HTTP p95 ms | SQL p50 ms | SQL p95 ms "
        "| index (+ sort) | target p95 | verdict |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for db in ("sqlite", "postgresql"):
        if db not in data:
            continue
        for r in data[db]["results"]:
            target = LIST_P95_MS.get(r["assets"])
            ok = None if target is None else r["http"]["p95_ms"] <= target
            sql = r["sql"]
            index = ", ".join(i.removeprefix("ix_assets_") for i in sql["indexes"]) or "none"
            if sql["sort_in_memory"]:
                index += " + sort"
            rows.append(
                f"| {r['db']} | {r['assets']:,} | {r['query']} | {r['http']['p50_ms']} | "
                f"{r['http']['p95_ms']} | {sql['p50_ms']} | {sql['p95_ms']} | {index} | "
                f"{f'≤ {target:g}' if target else '-'} | {_verdict(ok)} |"
            )
    loads = []
    for db in ("sqlite", "postgresql"):
        if db in data:
            for load in data[db]["loads"]:
                loads.append(
                    f"{db} to {load['assets']:,} (+{load['other_tenant']:,} other "
                    f"tenant): {load['total_s']} s"
                )
    q = "; ".join(
        f"**{name}**: `q={spec['q'] or ''}` `sort={spec['sort'] or ''}`"
        for name, spec in data["queries"].items()
    )
    return (
        "\n".join(rows)
        + "\n\n"
        + f"Queries (pageSize={data['page_size']}, {data['requests']} sequential requests "
        f"after {data['warmup']} warm-up): {q}\n\nLoad times: " + "; ".join(loads) + "\n"
    )


def _profile_table(title: str, summary: dict[str, Any]) -> list[str]:
    under = summary["under_profiler"]
    if "per_s" in under:
        rate = f"{under['per_s']}/s"
    elif "mib_s" in under:
        rate = f"{under['mib_s']} MiB/s"
    else:
        rate = f"p50 {under.get('p50_ms')} ms"
    threads = ", ".join(f"{n} {p}%" for n, p in summary.get("by_thread_pct", []))
    parts = [
        f"**py-spy --gil, {title}** ({summary['samples']} samples; {rate} while profiled; "
        f"threads: {threads})\n",
        "| self % by package | self % by function | inclusive % by function |",
        "|---|---|---|",
    ]
    a = summary["self_by_package_pct"][:15]
    b = summary["self_by_function_pct"][:15]
    c = summary["inclusive_by_function_pct"][:15]
    for i in range(max(len(a), len(b), len(c))):
        cell = [f"{lst[i][1]} {lst[i][0]}" if i < len(lst) else "" for lst in (a, b, c)]
        parts.append("| " + " | ".join(cell) + " |")
    parts.append("")
    return parts


def profile_section(results: dict[str, Any]) -> str:
    parts: list[str] = []
    for key in _assetd_keys(results):
        for kind, summary in (results[key].get("profile") or {}).items():
            if "self_by_function_pct" in summary:
                title = f"{kind}, assetd --workers {results[key]['workers']}"
                parts += _profile_table(title, summary)
    for db in ("sqlite", "postgresql"):
        for summary in (results.get("list") or {}).get(db, {}).get("profiles", []):
            if "self_by_function_pct" in summary:
                title = f"list ({summary['query']}), {db}, {summary['assets']:,} assets"
                parts += _profile_table(title, summary)
    return "\n".join(parts)


def markdown(results: dict[str, Any]) -> str:
    out = ["## Run\n", machine_section(results)]
    transfers = transfer_section(results)
    if transfers:
        out += ["\n## Transfers and small files\n", transfers]
    lists = list_section(results)
    if lists:
        out += ["\n## List latency\n", lists]
    prof = profile_section(results)
    if prof:
        out += ["\n## Profiles\n", prof]
    return "\n".join(out)
