"""`async-poller demo`: the whole product in under a minute, with no account.

Starts the simulator in-process, creates jobs through its Agent Install endpoint, polls them
with the real `poll_jobs` in scaled time, writes the events to stdout, and checks every
result against the simulator's ground truth. A person watching stderr sees live progress
(on a terminal), then a summary: counts by status, the failed jobs with their reasons, and
the requests used against the budget.
"""

from __future__ import annotations

import sys
from collections import Counter
from dataclasses import dataclass
from typing import BinaryIO, TextIO

import aiohttp

from .._engine.poll import poll_jobs
from .._lucidity.auth import REFRESH_PATH, auth_headers
from ..clock import Clock, SystemClock
from ..config import Config, Credentials, format_duration
from ..events import Result, Summary
from ..outcome import ExitCode, FinalStatus
from ..redact import Secret
from ..simulator import Simulator, SimulatorConfig
from ..simulator.records import max_in_window
from .output import relay
from .progress import ProgressMode, RunStatus, open_status

__all__ = ["create_jobs", "run_demo"]

INSTALL_PATH = "/external/client/api/v1/agent/install"
MAX_LISTED_FAILURES = 10
REASON_WIDTH = 60


async def run_demo(
    *,
    jobs: int = 50,
    seed: int = 7,
    time_scale: float = 60.0,
    progress: ProgressMode = "auto",
    stdout: BinaryIO,
    stderr: TextIO | None = None,
) -> int:
    """Run the demo; 0 when every result matched the simulator's ground truth."""
    stderr = stderr or sys.stderr
    clock = SystemClock(time_scale)
    simulated = SimulatorConfig(
        seed=seed, time_scale=time_scale, queued_s=15.0, preparing_s=20.0, processing_s=120.0
    )
    async with Simulator(simulated, clock=clock) as simulator:
        ids = await create_jobs(simulator.base_url, simulator.refresh_token, jobs)
        config = Config(
            credentials=Credentials(refresh_token=Secret(simulator.refresh_token)),
            base_url=simulator.base_url,
            seed=seed,
        )
        print(
            f"demo: {jobs} agent installs on a simulated Lucidity API, polled at "
            f"{time_scale:g}x speed (events on stdout)",
            file=stderr,
            flush=True,
        )
        setup_requests = len(simulator.requests)
        with open_status(
            progress, heartbeat_s=0, time_scale=time_scale, rate=config.rate, stream=stderr
        ) as status:
            run = await _poll(ids, config, clock, stdout, status)
        truth = {job.id: job.final_status for job in simulator.truth()}
        polling = simulator.requests[setup_requests:]
        busiest = max_in_window([r.at for r in polling], config.rate.period)
    mismatches = [
        job_id
        for job_id in ids
        if job_id not in run.results or run.results[job_id].status != truth[job_id]
    ]
    lines = summary_lines(run.summary, run.results, time_scale=time_scale)
    throttling = (
        f"throttled {run.summary.throttled} times" if run.summary.throttled else "never throttled"
    )
    lines += [
        f"  requests   {run.summary.requests}, at most {busiest} in any {_unit(config)} "
        f"(budget {config.rate}), {throttling}",
        f"  check      FAILED: {len(mismatches)} results differ from the ground truth"
        if mismatches
        else "  check      every result matches the simulator's ground truth",
        f"  stdout     {sum(run.kinds.values())} JSON events: "
        + ", ".join(f"{n} {kind}" for kind, n in run.kinds.items()),
        "             try: async-poller demo 2>/dev/null | jq -c 'select(.event == \"result\")'",
    ]
    print("\n".join(lines), file=stderr, flush=True)
    return ExitCode.INCOMPLETE if mismatches else ExitCode.OK


@dataclass
class _Run:
    summary: Summary
    results: dict[int, Result]
    kinds: Counter[str]


async def _poll(
    ids: list[int], config: Config, clock: Clock, stdout: BinaryIO, status: RunStatus | None
) -> _Run:
    """Poll `ids` to the end, writing the events to `stdout` and showing progress."""
    results: dict[int, Result] = {}
    kinds: Counter[str] = Counter()
    summary: Summary | None = None
    events = poll_jobs(
        ids,
        config,
        clock=clock,
        on_tick=status.on_tick if status else None,
        tick_s=status.tick_s if status else 1.0,
    )
    async for event in relay(events, stdout, status, on_reader_gone=lambda: None):
        kinds[event.name] += 1
        if isinstance(event, Result):
            results[event.job_id] = event
        elif isinstance(event, Summary):
            summary = event
    assert summary is not None, "poll_jobs always ends with a summary"
    return _Run(summary, results, kinds)


def summary_lines(summary: Summary, results: dict[int, Result], *, time_scale: float) -> list[str]:
    """The human summary of a run: counts by status, then the failed jobs and their reasons."""
    lines = [
        "",
        f"demo: {summary.total} jobs polled in {format_duration(round(summary.duration_s))} "
        f"of simulated time ({summary.duration_s / time_scale:.1f}s real)",
    ]
    width = max(len(status) for status in summary.counts)
    lines += [f"  {status:<{width}}  {n:>4}" for status, n in summary.counts.items() if n]
    failed = sorted(
        (r for r in results.values() if r.status in (FinalStatus.FAILED, FinalStatus.CANCELLED)),
        key=lambda result: result.status != FinalStatus.FAILED,
    )
    if failed:
        lines.append("  why they did not complete (the API's reasons):")
        for result in failed[:MAX_LISTED_FAILURES]:
            reason = _one_line(result.reason or "(no reason given)")
            lines.append(f"    {result.status:<9}  {result.job_id}  {reason}")
        if len(failed) > MAX_LISTED_FAILURES:
            lines.append(f"    ... and {len(failed) - MAX_LISTED_FAILURES} more")
    return lines


async def create_jobs(base_url: str, refresh_token: str, count: int) -> list[int]:
    """Create `count` jobs with one Agent Install call, as a user would; return their ids."""
    installs = [
        {
            "cloudProvider": "AWS",
            "cloudProviderAccountId": "123456789012",
            "instanceIds": [f"i-{n:08x}{k}" for k in range(1 + n % 3)],
        }
        for n in range(count)
    ]
    async with aiohttp.ClientSession(base_url) as session:
        async with session.post(REFRESH_PATH, json={"refreshToken": refresh_token}) as response:
            token = (await response.json())["accessToken"]
        headers = auth_headers(token)
        async with session.post(INSTALL_PATH, json=installs, headers=headers) as response:
            response.raise_for_status()
            created = await response.json()
    return [int(job["id"]) for job in created["data"]]


def _unit(config: Config) -> str:
    return {1.0: "second", 60.0: "minute", 3600.0: "hour"}.get(
        config.rate.period, f"{config.rate.period:g}s"
    )


def _one_line(text: str) -> str:
    """`text` on one line without control characters, cut to `REASON_WIDTH`."""
    flat = " ".join("".join(c if c.isprintable() else " " for c in text).split())
    return flat if len(flat) <= REASON_WIDTH else flat[: REASON_WIDTH - 3] + "..."
