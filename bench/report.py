"""The results as markdown: machine notes, the targets at a glance, then every section."""

from __future__ import annotations

import statistics
from typing import Any

from . import efficiency, headroom, limiters, overhead, scale, startup
from .common import markdown_table

__all__ = ["render"]

Json = dict[str, Any]


def render(results: Json) -> str:
    """The whole results document."""
    machine = results["machine"]
    git = machine["git"]
    packages = ", ".join(f"{k} {v}" for k, v in machine["packages"].items() if v)
    parts = [
        f"# Benchmark results ({'quick' if results['settings']['quick'] else 'full'} run)",
        f"Generated {results['generated']} by `{results['command']}`, commit {git['commit']}"
        + (" with uncommitted changes under async_poller/" if git["async_poller_dirty"] else "")
        + ".",
        f"Machine: {machine['cpu']}, {machine['nproc']} CPUs, {machine['memory_gib']} GiB; "
        f"{machine['implementation']} {machine['python']} on {machine['platform']}; "
        f"{packages}. 1-minute load average before each benchmark: "
        + ", ".join(f"{k} {v}" for k, v in results["load_before"].items())
        + ".",
        "## Targets\n\n"
        + markdown_table(["benchmark", "target", "result", "verdict"], _targets(results)),
    ]
    sections = (
        ("efficiency", "Detection efficiency under a budget", efficiency.render),
        ("headroom", "Detection lag with headroom", headroom.render),
        ("overhead", "Overhead with the budget lifted", overhead.render),
        ("scale", "Scale", scale.render),
        ("limiters", "Behind server rate limiters", limiters.render),
        ("startup", "Start-up", startup.render),
    )
    for key, title, render_section in sections:
        if key in results:
            parts.append(f"## {title}\n\n{render_section(results[key])}")
    return "\n\n".join(parts) + "\n"


def _targets(results: Json) -> list[list[object]]:
    rows: list[list[object]] = []
    if "efficiency" in results:
        runs = results["efficiency"]["runs"]
        ratios = [r["p95_ratio"] for r in runs]
        met = sum(all(r["targets"].values()) for r in runs)
        by_shape: dict[str, list[float]] = {}
        for r in runs:
            by_shape.setdefault(r["shape"], []).append(r["p95_ratio"])
        detail = "; ".join(f"{s} {min(v):.2f} to {max(v):.2f}" for s, v in by_shape.items())
        rows.append(
            [
                "efficiency",
                "p95 lag <= 0.6x round-robin's, no more requests, zero 429s",
                f"p95 ratio median {statistics.median(ratios):.2f} ({detail})",
                f"{met} of {len(runs)} runs met",
            ]
        )
    if "headroom" in results:
        for client in results["headroom"]["clients"]:
            name = client["name"]
            mine = [run["clients"][name] for run in results["headroom"]["runs"]]
            ratios = [figures["p95_ratio"] for figures in mine]
            met = sum(all(figures["targets"].values()) for figures in mine)
            rows.append(
                [
                    f"headroom ({name})",
                    f"p95 lag <= {headroom.TARGET_P95_RATIO:g}x round-robin's, no more requests",
                    f"p95 ratio {min(ratios):.2f} to {max(ratios):.2f} "
                    f"(median {statistics.median(ratios):.2f})",
                    f"{met} of {len(mine)} runs met",
                ]
            )
    if "overhead" in results:
        for loop, figures in results["overhead"]["loops"].items():
            rows.append(
                [
                    f"overhead ({loop})",
                    ">= 0.75x the plain aiohttp loop's requests/s",
                    f"{figures['throughput_ratio']:.2f}x "
                    f"({figures['poll_jobs']['cpu_us_per_request']:.0f} vs "
                    f"{figures['plain']['cpu_us_per_request']:.0f} CPU µs/request)",
                    overhead.verdict(figures),
                ]
            )
    if "scale" in results:
        first = results["scale"]["poll"][0]
        rows.append(
            [
                f"scale ({first['ids']:,} ids)",
                "peak RSS <= 250 MB",
                f"{first.get('max_rss_mb')} MB",
                "met" if first["targets"]["max_rss"] else "missed",
            ]
        )
        rows.append(
            [
                f"scale ({first['ids']:,} ids)",
                "first request within 1.5 s",
                f"{first.get('first_request_s')} s",
                "met" if first["targets"]["first_request"] else "missed",
            ]
        )
        largest = max(results["scale"]["read"], key=lambda r: (r["ids"], r["format"] == "text"))
        rows.append(
            [
                f"scale ({largest['ids']:,} ids, {largest['format']})",
                "read and validated in bounded memory",
                f"{largest['seconds']} s, {largest['memory_mb']} MB "
                f"({largest['bytes_per_id']} bytes/id)",
                "see discussion",
            ]
        )
        for polled in results["scale"]["poll"][1:]:
            rows.append(
                [
                    f"scale ({polled['ids']:,} ids)",
                    "polling supported?",
                    polled["outcome"],
                    "yes" if polled["outcome"].startswith("one result per job") else "no",
                ]
            )
    if "limiters" in results:
        servers = results["limiters"]["rows"]
        met = sum(all(row["targets"].values()) for row in servers)
        worst = max(servers, key=lambda row: row["refused_share"])
        slowest = max(servers, key=lambda row: row["time_ratio"])
        rows.append(
            [
                "behind limiters (window, bucket:1, bucket:5 x 429/503)",
                "every job final, <= 5% refused, run time <= 1.2x window/429",
                f"{sum(r['final'] == r['jobs'] for r in servers)} of {len(servers)} all final; "
                f"most refused {worst['refused_share']:.0%} ({worst['limiter']} "
                f"{worst['refusal']}); slowest {slowest['time_ratio']:.2f}x",
                f"{met} of {len(servers)} rows met",
            ]
        )
    if "startup" in results:
        commands = results["startup"]["commands"]
        rows.append(
            [
                "start-up",
                "`--version` under 150 ms",
                f"{commands['async-poller --version']['median_ms']:.0f} ms "
                f"(python -c pass {commands['python -c pass']['median_ms']:.0f} ms)",
                "met" if results["startup"]["version_target_met"] else "missed",
            ]
        )
    return rows
