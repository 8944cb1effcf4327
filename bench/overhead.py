"""Overhead: async-poller's requests/s and CPU per request, budget lifted, vs a plain aiohttp loop.

The simulator runs in its own process (`async-poller simulate`) with its rate limit lifted
and time slowed 1000x, so that no job moves on and every status request costs the server
the same. Each client runs in a child process of its own (`bench.child`) and measures only
its polling: `poll_jobs` with default concurrency (8), a huge `--rate` and delays of at most
1 ms for a few seconds; the plain loop sends as many requests (one token refresh plus
status requests, 8 in flight, each body parsed). The two run in pairs, back to back, in
alternating order, and each pair gives a ratio: on a shared machine, background load comes
and goes, and the two halves of a pair see much the same of it. The median pair ratio is
the result; the CPU time per request is the figure that background load disturbs least.
The whole CLI (`async-poller poll`, start-up included) is measured once per loop as well.
"""

from __future__ import annotations

import importlib.util
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any, Final

import orjson

from .child import LIFTED_RATE
from .common import (
    Settings,
    SimulatorProcess,
    markdown_table,
    run_measured,
    simulator_process,
    system_busy_s,
)

__all__ = ["render", "run", "verdict"]

Json = dict[str, Any]

TARGET_RATIO: Final = 0.75
NOISY_CPU: Final = 0.1
"""Cores of background load (neither client nor simulator) above which a run is noisy."""
CONCURRENCY: Final = 8


def run(settings: Settings, log: Any = print) -> Json:
    """The overhead section of the results."""
    jobs = 50 if settings.quick else 500
    seconds = 0.3 if settings.quick else 3.0
    repeats = 1 if settings.quick else 7
    uvloop = importlib.util.find_spec("uvloop") is not None and not settings.quick
    loops = ["asyncio"] + (["uvloop"] if uvloop else [])
    section: Json = {
        "jobs": jobs,
        "seconds": seconds,
        "repeats": repeats,
        "concurrency": CONCURRENCY,
        "uvloop_installed": importlib.util.find_spec("uvloop") is not None,
        "loops": {},
    }
    with tempfile.TemporaryDirectory() as scratch:
        ids = Path(scratch) / "ids.txt"
        options = ("--time-scale", "0.001", "--rate-limit", "1000000000", "--rate-window", "1ms")
        with simulator_process(*options, "--jobs", str(jobs), "--jobs-file", str(ids)) as sim:
            for loop in loops:
                figures = _compare(sim, ids, loop, seconds, repeats)
                figures["cli"] = _cli(sim, ids, seconds) if loop == "asyncio" else None
                section["loops"][loop] = figures
                log(
                    f"overhead ({loop}): async-poller {figures['poll_jobs']['requests_per_s']:.0f}"
                    f" req/s vs plain {figures['plain']['requests_per_s']:.0f} req/s "
                    f"(ratio {figures['throughput_ratio']})"
                )
    return section


def _compare(sim: SimulatorProcess, ids: Path, loop: str, seconds: float, repeats: int) -> Json:
    common = ("--ids", str(ids), "--concurrency", str(CONCURRENCY), "--loop", loop)
    store = ids.parent / "budget.db"
    runs: dict[str, list[Json]] = {"poll_jobs": [], "poll_jobs_shared": [], "plain": []}
    requests = 0
    for repeat in range(repeats):
        order = list(runs) if repeat % 2 == 0 else list(reversed(runs))
        for contender in order:
            if contender == "poll_jobs":
                figures = _child(sim, "poll-jobs", "--seconds", str(seconds), *common)
                requests = figures["requests"]
            elif contender == "poll_jobs_shared":
                store.unlink(missing_ok=True)
                sharing = ("--budget-store", str(store))
                figures = _child(sim, "poll-jobs", "--seconds", str(seconds), *sharing, *common)
            else:
                # As many requests as async-poller's latest run (the first pair starts with it).
                figures = _child(sim, "plain", "--requests", str(requests), *common)
            runs[contender].append(figures)
    pairs = list(zip(runs["poll_jobs"], runs["plain"], strict=True))
    throughput = [mine["requests_per_s"] / plain["requests_per_s"] for mine, plain in pairs]
    cpu = [plain["cpu_us_per_request"] / mine["cpu_us_per_request"] for mine, plain in pairs]
    ratio = statistics.median(throughput)
    shared = [
        mine["requests_per_s"] / plain["requests_per_s"]
        for mine, plain in zip(runs["poll_jobs_shared"], runs["plain"], strict=True)
    ]
    foreign = statistics.median(
        run["foreign_cpu_share"] for run in runs["poll_jobs"] + runs["plain"]
    )
    return {name: _medians(found) for name, found in runs.items()} | {
        "noisy": foreign > NOISY_CPU,
        "throughput_ratio": round(ratio, 3),
        "throughput_ratio_range": [round(min(throughput), 3), round(max(throughput), 3)],
        "cpu_ratio": round(statistics.median(cpu), 3),
        "target_met": ratio >= TARGET_RATIO,
        "shared_throughput_ratio": round(statistics.median(shared), 3),
        "shared_target_met": statistics.median(shared) >= TARGET_RATIO,
        "runs": runs,
    }


def _child(sim: SimulatorProcess, *args: str) -> Json:
    server_before, machine_before = sim.cpu_s(), system_busy_s()
    done = run_measured([sys.executable, "-m", "bench.child", *args], env=sim.client_env())
    server, machine = sim.cpu_s() - server_before, system_busy_s() - machine_before
    if done.code != 0:
        raise RuntimeError(f"bench.child {args[0]} failed:\n{done.stderr.decode()}")
    figures: Json = orjson.loads(done.stdout)
    figures["server_cpu_share"] = server / done.wall_s
    # Busy CPU on the machine that was neither the client nor the simulator, in cores.
    figures["foreign_cpu_share"] = max(0.0, (machine - server - done.cpu_s) / done.wall_s)
    return _derived(figures)


def _derived(figures: Json) -> Json:
    figures["requests_per_s"] = figures["requests"] / figures["wall_s"]
    figures["cpu_us_per_request"] = figures["cpu_s"] / figures["requests"] * 1e6
    return figures


def _medians(runs: list[Json]) -> Json:
    keys = (
        "requests",
        "requests_per_s",
        "cpu_us_per_request",
        "server_cpu_share",
        "foreign_cpu_share",
        "max_rss_kb",
    )
    return {key: statistics.median(run[key] for run in runs) for key in keys}


def _cli(sim: SimulatorProcess, ids: Path, seconds: float) -> Json:
    """The whole `async-poller poll` process: throughput from its summary, CPU from wait4."""
    done = run_measured(
        [
            sys.executable,
            "-m",
            "async_poller",
            "poll",
            "--rate",
            LIFTED_RATE,
            "--min-delay",
            "0",
            "--max-delay",
            "1ms",
            "--deadline",
            f"{seconds}s",
            "--seed",
            "1",
            "-q",
            str(ids),
        ],
        env=sim.client_env(),
    )
    summary = orjson.loads(done.stdout.splitlines()[-1])
    return {
        "exit_code": done.code,
        "requests": summary["requests"],
        "requests_per_s": summary["requests"] / summary["duration_s"],
        "process_cpu_us_per_request": done.cpu_s / summary["requests"] * 1e6,
        "process_wall_s": done.wall_s,
        "max_rss_kb": done.max_rss_kb,
    }


def _shared_ratio(figures: Json, key: str) -> str:
    return str(figures["shared_throughput_ratio"]) if key == "poll_jobs_shared" else ""


def _shared_verdict(figures: Json, key: str) -> str:
    if key != "poll_jobs_shared":
        return ""
    return "met" if figures["shared_target_met"] else "missed"


def verdict(figures: Json) -> str:
    verdict = "met" if figures["target_met"] else "missed"
    return f"{verdict} (noisy: background load)" if figures.get("noisy") else verdict


def render(section: Json) -> str:
    """The overhead section as markdown."""
    rows: list[list[object]] = []
    for loop, figures in section["loops"].items():
        plain, mine = figures["plain"], figures["poll_jobs"]
        for label, key in (
            ("plain aiohttp loop", "plain"),
            ("async-poller poll_jobs", "poll_jobs"),
            ("poll_jobs, budget shared (SQLite)", "poll_jobs_shared"),
        ):
            found = figures[key]
            rates = [run["requests_per_s"] for run in figures["runs"][key]]
            rows.append(
                [
                    loop,
                    label,
                    round(found["requests"]),
                    f"{found['requests_per_s']:.0f} ({min(rates):.0f} to {max(rates):.0f})",
                    round(found["cpu_us_per_request"]),
                    round(found["server_cpu_share"], 2),
                    round(found["foreign_cpu_share"], 2),
                    (
                        f"{figures['throughput_ratio']} ({figures['throughput_ratio_range'][0]} "
                        f"to {figures['throughput_ratio_range'][1]}); CPU {figures['cpu_ratio']}"
                    )
                    if found is mine
                    else _shared_ratio(figures, key),
                    verdict(figures) if found is mine else _shared_verdict(figures, key),
                ]
            )
        if cli := figures.get("cli"):
            rows.append(
                [
                    loop,
                    "async-poller CLI (whole process, 1 run)",
                    cli["requests"],
                    round(cli["requests_per_s"]),
                    f"{cli['process_cpu_us_per_request']:.0f} (incl. start-up)",
                    "",
                    "",
                    round(cli["requests_per_s"] / plain["requests_per_s"], 3),
                    "",
                ]
            )
    headers = [
        "loop",
        "client",
        "requests",
        "requests/s (range)",
        "CPU µs/request",
        "server CPU",
        "foreign CPU",
        "ratio: median of pairs (range); CPU",
        "target >= 0.75x",
    ]
    note = (
        f"{section['jobs']} jobs, {section['seconds']:g} s per run, {section['repeats']} pairs "
        f"of runs back to back (medians shown), concurrency {section['concurrency']}. The "
        "ratio is async-poller's requests/s over the plain loop's in the same pair; 'CPU' is "
        "the plain loop's CPU µs/request over async-poller's, i.e. the throughput ratio if "
        "the client's CPU were the only limit. "
        "CPU µs/request is the client process's own (user + system) over the measured section. "
        "'server CPU' is the simulator's CPU time over the run (1.0: a core saturated); "
        "'foreign CPU' is what the rest of the machine used meanwhile, in cores (anything "
        "above ~0.1 means a noisy run)."
    )
    if "uvloop" not in section["loops"]:
        note += " No uvloop row: uvloop is not installed, or this is a quick run."
    return note + "\n\n" + markdown_table(headers, rows)
